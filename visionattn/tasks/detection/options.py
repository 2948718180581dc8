"""The detection task's ``task:`` section: DETR's sizes, matcher costs and loss weights, the panoptic head, the
augmentation recipe, and the knobs of the package-shipped datasets."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base import TaskOptions
from .loss import LossWeights
from .model import DetrSpec

__all__ = ["DetectionOptions"]


@dataclass
class DetectionOptions(TaskOptions):
    """DETR (``model.name`` is the backbone, any registered preset; ``model.overrides`` its spec fields):
    num_queries, hidden_dim, heads, enc_layers, dec_layers, ffn_dim, dropout; feature_index: the backbone stage the
    transformer reads (-1: the last); aux_loss: a loss at every decoder layer; frozen_bn: the backbone's batch norms
    frozen (DETR's FrozenBatchNorm2d; with ``model.pretrained_path``); train_backbone: False trains the transformer
    and heads on a fixed backbone (DETR's ``lr_backbone=0``).

    Matching and loss (DETR's defaults): class_cost, bbox_cost, giou_cost; ce_weight, bbox_weight, giou_weight,
    eos_coef ("no object" weight in the cross-entropy); mask_weight (focal) and dice_weight for the panoptic head.

    Panoptic head: masks (train it; the data must have masks), freeze_detr (DETR's second stage: train only the
    head), init_checkpoint (start from these DETR weights: one of our checkpoints, or a Hugging Face / official DETR
    state dict; a detection checkpoint may lack the panoptic head), panoptic_threshold (DETR's 0.85: queries kept
    for the panoptic map), stuff (the digit scenes' background as a stuff class).

    Augmentation (training only; DETR's recipe at any scale): scales (shorter side chosen at random among these;
    empty = keep the size), max_size (longer side cap), crop (DETR's random-size crop, of sides in crop_size, between
    two resizes, with probability 0.5), vflip; ``data.hflip`` flips horizontally. Evaluation resizes the shorter side
    to ``scales[-1]`` (or keeps the size).

    Data (``data.name``): ``digit_scenes`` (scenes: train / val counts, scene_size = ``data.img_size``,
    scene_digits, scene_scale, scene_occlusion, scene_background), ``trees`` (tile, tile_stride), ``labelme``,
    ``coco`` / ``coco_panoptic`` / ``voc`` / ``csv`` at ``data.path`` with val_path (else ``data.val_fraction`` of the
    images, seeded), image_root (COCO / VOC images), png_root (COCO panoptic PNGs).

    score_threshold: detections drawn in reports and by ``visionattn predict`` (``--threshold`` overrides)."""

    num_queries: int = 100
    hidden_dim: int = 256
    heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    ffn_dim: int = 2048
    dropout: float = 0.1
    feature_index: int = -1
    aux_loss: bool = True
    frozen_bn: bool = False
    train_backbone: bool = True
    class_cost: float = 1.0
    bbox_cost: float = 5.0
    giou_cost: float = 2.0
    ce_weight: float = 1.0
    bbox_weight: float = 5.0
    giou_weight: float = 2.0
    eos_coef: float = 0.1
    mask_weight: float = 1.0
    dice_weight: float = 1.0
    masks: bool = False
    freeze_detr: bool = False
    init_checkpoint: str | None = None
    panoptic_threshold: float = 0.85
    stuff: bool = False
    scales: list[int] = field(default_factory=list)
    max_size: int | None = None
    crop: bool = False
    crop_size: tuple[int, int] = (384, 600)
    vflip: bool = False
    scenes: tuple[int, int] = (4000, 500)
    scene_digits: tuple[int, int] = (2, 5)
    scene_scale: tuple[float, float] = (2.0, 6.0)
    scene_occlusion: float = 0.3
    scene_background: str = "plain"
    tile: int = 256
    tile_stride: int | None = None
    val_path: str | None = None
    image_root: str | None = None
    png_root: str | None = None
    score_threshold: float = 0.5

    def problems(self) -> list[str]:
        """Value checks the types alone do not express, as ``key: expected ..., got ...`` lines."""
        out = []

        def need(ok: bool, key: str, expected: str, got) -> None:
            if not ok:
                out.append(f"task.{key}: expected {expected}, got {got!r}")

        need(self.num_queries >= 1, "num_queries", ">= 1", self.num_queries)
        need(self.hidden_dim >= 4 and self.hidden_dim % 4 == 0, "hidden_dim", "a multiple of 4", self.hidden_dim)
        need(self.heads >= 1 and self.hidden_dim % self.heads == 0, "heads", f"a divisor of hidden_dim "
             f"{self.hidden_dim}", self.heads)
        need(self.enc_layers >= 0 and self.dec_layers >= 1, "enc_layers/dec_layers", ">= 0 and >= 1",
             (self.enc_layers, self.dec_layers))
        need(self.ffn_dim >= 1, "ffn_dim", ">= 1", self.ffn_dim)
        need(0 <= self.dropout < 1, "dropout", "in [0, 1)", self.dropout)
        costs = (self.class_cost, self.bbox_cost, self.giou_cost)
        need(min(costs) >= 0 and max(costs) > 0, "class_cost/bbox_cost/giou_cost", ">= 0, not all 0", costs)
        weights = (self.ce_weight, self.bbox_weight, self.giou_weight, self.mask_weight, self.dice_weight)
        need(min(weights) >= 0, "*_weight", ">= 0", weights)
        need(0 < self.eos_coef <= 1, "eos_coef", "in (0, 1]", self.eos_coef)
        need(not self.freeze_detr or self.masks, "freeze_detr", "only with task.masks=true", self.freeze_detr)
        need(0 <= self.panoptic_threshold < 1, "panoptic_threshold", "in [0, 1)", self.panoptic_threshold)
        need(0 <= self.score_threshold <= 1, "score_threshold", "in [0, 1]", self.score_threshold)
        need(all(s >= 8 for s in self.scales), "scales", "sides >= 8", self.scales)
        need(self.max_size is None or self.max_size >= max(self.scales, default=8), "max_size",
             "None or >= every scale", self.max_size)
        need(8 <= self.crop_size[0] <= self.crop_size[1], "crop_size", "8 <= low <= high", self.crop_size)
        need(self.scenes[0] >= 1 and self.scenes[1] >= 1, "scenes", "(train >= 1, val >= 1)", self.scenes)
        need(1 <= self.scene_digits[0] <= self.scene_digits[1], "scene_digits", "1 <= low <= high",
             self.scene_digits)
        need(self.tile >= 16, "tile", ">= 16", self.tile)
        need(self.tile_stride is None or self.tile_stride >= 1, "tile_stride", "None or >= 1", self.tile_stride)
        return out

    def detr_spec(self, num_classes: int) -> DetrSpec:
        return DetrSpec(num_classes=num_classes, num_queries=self.num_queries, hidden_dim=self.hidden_dim,
                        heads=self.heads, enc_layers=self.enc_layers, dec_layers=self.dec_layers,
                        ffn_dim=self.ffn_dim, dropout=self.dropout, feature_index=self.feature_index,
                        masks=self.masks, frozen_bn=self.frozen_bn, train_backbone=self.train_backbone)

    def loss_weights(self) -> LossWeights:
        return LossWeights(ce=self.ce_weight, bbox=self.bbox_weight, giou=self.giou_weight, mask=self.mask_weight,
                           dice=self.dice_weight, eos_coef=self.eos_coef)
