"""The grounding task's ``task:`` section."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import TaskOptions
from .loss import GroundingWeights
from .model import MDetrSpec

__all__ = ["GroundingOptions", "GROUNDING_DATASETS"]

GROUNDING_DATASETS = ("digit_phrases", "tree_phrases", "grounding_coco")


@dataclass
class GroundingOptions(TaskOptions):
    """M-DETR (``model.name``: the image backbone, any registered preset; ``model.pretrained_path`` its weights):
    num_queries, hidden_dim, heads, enc_layers, dec_layers, ffn_dim, dropout, feature_index, frozen_bn,
    train_backbone (as DETR's); max_text_len (token slots; "no object" is one more), text_dim / text_depth /
    text_heads (the randomly initialised CLIP text tower), contrastive_dim; aux_loss.

    Matching and loss (M-DETR's defaults): token_cost, bbox_cost, giou_cost; token_weight, align_weight,
    bbox_weight, giou_weight, eos_coef, temperature. init_detr: fill backbone / input_proj / query_embed /
    transformer / bbox_embed from a DETR detection checkpoint of ours (None: not used).

    Data (``data.name``): ``digit_phrases`` (composed phrases over digit scenes: ``scenes`` = (train, held-out)
    counts, scene_digits, scene_scale, heldout_templates, train_phrases: phrases per training caption, joined
    with ". " (more linked boxes per image; evaluation captions hold one phrase); evaluation is on the
    ``heldout`` split: phrase/digit combinations, and templates if listed, never seen in training),
    ``tree_phrases`` (composed phrases over deepforest's SOAP tile: crop, crop_stride), ``grounding_coco``
    (M-DETR JSON at ``data.path``, val at ``val_path``, images under ``image_root``).

    score: how boxes are ranked for a phrase, at evaluation and by ``visionattn predict``: ``"token"`` (probability
    mass on the phrase's tokens, M-DETR's soft token prediction) or ``"align"`` (contrastive alignment: per phrase
    token the softmax over queries, averaged); both are reported. score_threshold: ``visionattn predict`` keeps
    boxes whose phrase score reaches it (``--threshold``)."""

    num_queries: int = 6
    hidden_dim: int = 128
    heads: int = 8
    enc_layers: int = 2
    dec_layers: int = 2
    ffn_dim: int = 256
    dropout: float = 0.0
    feature_index: int = -2
    frozen_bn: bool = True
    train_backbone: bool = False
    max_text_len: int = 24
    text_dim: int = 64
    text_depth: int = 2
    text_heads: int = 4
    contrastive_dim: int = 64
    aux_loss: bool = True
    token_cost: float = 1.0
    bbox_cost: float = 5.0
    giou_cost: float = 2.0
    token_weight: float = 1.0
    align_weight: float = 1.0
    bbox_weight: float = 5.0
    giou_weight: float = 2.0
    eos_coef: float = 0.1
    temperature: float = 0.07
    init_detr: str | None = None
    scenes: tuple[int, int] = (8000, 500)
    scene_digits: tuple[int, int] = (1, 4)
    scene_scale: tuple[float, float] = (2.0, 4.0)
    heldout_templates: list[str] = field(default_factory=list)
    train_phrases: int = 1
    crop: int = 128
    crop_stride: int = 32
    val_path: str | None = None
    image_root: str | None = None
    score_threshold: float = 0.3
    score: str = "align"

    def problems(self) -> list[str]:
        out = []

        def need(ok: bool, key: str, expected: str, got) -> None:
            if not ok:
                out.append(f"task.{key}: expected {expected}, got {got!r}")

        need(self.num_queries >= 1, "num_queries", ">= 1", self.num_queries)
        need(self.hidden_dim % 4 == 0 and self.hidden_dim % self.heads == 0, "hidden_dim",
             f"a multiple of 4 and of heads {self.heads}", self.hidden_dim)
        need(self.text_dim % self.text_heads == 0, "text_dim", f"a multiple of text_heads {self.text_heads}",
             self.text_dim)
        need(self.max_text_len >= 2, "max_text_len", ">= 2", self.max_text_len)
        need(0 <= self.dropout < 1, "dropout", "in [0, 1)", self.dropout)
        need(0 < self.eos_coef <= 1, "eos_coef", "in (0, 1]", self.eos_coef)
        need(self.temperature > 0, "temperature", "> 0", self.temperature)
        need(self.train_phrases >= 1, "train_phrases", ">= 1", self.train_phrases)
        need(self.scenes[0] >= 1 and self.scenes[1] >= 1, "scenes", "(train >= 1, heldout >= 1)", self.scenes)
        need(self.score in ("token", "align"), "score", "'token' or 'align'", self.score)
        need(0 <= self.score_threshold <= 1, "score_threshold", "in [0, 1]", self.score_threshold)
        return out

    def spec(self, vocab_size: int) -> MDetrSpec:
        return MDetrSpec(vocab_size=vocab_size, max_text_len=self.max_text_len, num_queries=self.num_queries,
                         hidden_dim=self.hidden_dim, heads=self.heads, enc_layers=self.enc_layers,
                         dec_layers=self.dec_layers, ffn_dim=self.ffn_dim, dropout=self.dropout,
                         text_dim=self.text_dim, text_depth=self.text_depth, text_heads=self.text_heads,
                         contrastive_dim=self.contrastive_dim, feature_index=self.feature_index,
                         frozen_bn=self.frozen_bn, train_backbone=self.train_backbone)

    def weights(self) -> GroundingWeights:
        return GroundingWeights(self.token_weight, self.align_weight, self.bbox_weight, self.giou_weight,
                                self.eos_coef, self.temperature)
