"""M-DETR (Kamath et al. 2021): modulated detection, attention fusing image and text early.

Pieces (all imported from the DETR and CLIP tasks, none copied):

- image: any registered backbone through :class:`~visionattn.tasks.detection.backbone.DetrBackbone`, a 1x1
  projection to ``hidden_dim`` and DETR's 2D sine positions;
- text: the CLIP text tower :class:`~visionattn.models.families.clip_text.TextTransformer` (small, randomly
  initialised; its vocabulary is the grounding tokenizer's), its per-token features resized to ``hidden_dim`` by
  M-DETR's ``FeatureResizer`` (Linear + LayerNorm + dropout);
- the joint encoder: image tokens ``(B, HW, d)`` and text tokens ``(B, L, d)`` **concatenated into one sequence**
  ``(B, HW + L, d)``, DETR's :class:`~visionattn.tasks.detection.transformer.EncoderLayer` (``layers.Attention``
  with the ``Global`` pattern over the 1-D sequence; key padding mask = image padding ++ text padding; text tokens
  get a zero position, as in M-DETR);
- DETR's :class:`~visionattn.tasks.detection.transformer.DecoderLayer` over the joint memory;
- heads: soft token logits ``(B, N, max_text_len + 1)`` (slot ``max_text_len`` = "no object"; slots past the
  batch's text and at text padding are set to -1e4), DETR's 3-layer box MLP (normalised cxcywh), and the
  contrastive-alignment projections of queries and of the encoded text tokens (L2-normalised, ``contrastive_dim``).

Module names follow :class:`~visionattn.tasks.detection.model.Detr` (``backbone``, ``input_proj``,
``query_embed``, ``transformer.encoder/decoder/decoder_norm``, ``bbox_embed``), so a DETR detection checkpoint
fills those parts (:func:`load_detr_parts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...models.families.clip_text import TextSpec, TextTransformer
from ..detection.backbone import DetrBackbone
from ..detection.model import BoxMLP, freeze_batch_norm, load_backbone_weights
from ..detection.position import sine_position_embedding
from ..detection.transformer import DecoderLayer, EncoderLayer

__all__ = ["MDetrSpec", "MDetrOutput", "MDetr", "JointTransformer", "build_mdetr", "load_detr_parts",
           "NO_TEXT_LOGIT"]

NO_TEXT_LOGIT = -1e4  # the token logit of slots that hold no text (finite, so 0 * log p stays 0)


@dataclass(frozen=True)
class MDetrSpec:
    """vocab_size: the tokenizer's; max_text_len: token slots (the "no object" slot is one more); num_queries,
    hidden_dim, heads, enc_layers, dec_layers, ffn_dim, dropout: the joint transformer (DETR's); text_dim,
    text_depth, text_heads: the text tower; contrastive_dim: M-DETR's 64; feature_index: the backbone stage read;
    frozen_bn / train_backbone: as DETR's; backend: the operator backend."""

    vocab_size: int
    max_text_len: int = 32
    num_queries: int = 10
    hidden_dim: int = 128
    heads: int = 8
    enc_layers: int = 2
    dec_layers: int = 2
    ffn_dim: int = 256
    dropout: float = 0.1
    text_dim: int = 64
    text_depth: int = 2
    text_heads: int = 4
    contrastive_dim: int = 64
    feature_index: int = -1
    frozen_bn: bool = False
    train_backbone: bool = True
    backend: str = "auto"


@dataclass
class MDetrOutput:
    """logits ``(B, N, T + 1)`` soft-token logits (T = max_text_len; slot T = no object); boxes ``(B, N, 4)``
    normalised cxcywh; queries ``(B, N, c)`` and tokens ``(B, L, c)`` L2-normalised contrastive embeddings;
    text_padding ``(B, L)`` bool; aux: ``(logits, boxes, queries)`` of decoder layers ``0 .. L_dec - 2``."""

    logits: Tensor
    boxes: Tensor
    queries: Tensor
    tokens: Tensor
    text_padding: Tensor
    aux: list[tuple[Tensor, Tensor, Tensor]] = field(default_factory=list)


class JointTransformer(nn.Module):
    """DETR's encoder and decoder layers over a 1-D joint sequence. ``forward(src (B, S, d), pos (B, S, d), mask
    (B, S) bool | None, query_embed (N, d))`` → ``(hs (L_dec, B, N, d), memory (B, S, d))``."""

    def __init__(self, dim: int, heads: int, enc_layers: int, dec_layers: int, ffn_dim: int, dropout: float,
                 backend: str = "auto"):
        super().__init__()
        if dim % heads or enc_layers < 0 or dec_layers < 1:
            raise ValueError(f"M-DETR transformer: expected hidden_dim divisible by heads, enc_layers >= 0, "
                             f"dec_layers >= 1; got {dim}, {heads}, {enc_layers}, {dec_layers}")
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, ffn_dim, dropout, backend) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(dim, heads, ffn_dim, dropout, backend) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        for p in self.parameters():  # DETR's init
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, pos: Tensor, mask: Tensor | None, query_embed: Tensor) -> tuple[Tensor, Tensor]:
        memory = src
        for layer in self.encoder:
            memory = layer(memory, pos, mask)  # (B, S, d)
        query_pos = query_embed[None].expand(src.shape[0], -1, -1)  # (B, N, d)
        tgt = torch.zeros_like(query_pos)
        outputs = []
        for layer in self.decoder:
            tgt = layer(tgt, memory, pos, query_pos, mask)  # (B, N, d)
            outputs.append(self.decoder_norm(tgt))
        return torch.stack(outputs), memory


class MDetr(nn.Module):
    """``forward(images (B, 3, H, W), padding_mask (B, H, W) | None, tokens (B, L) int64, text_padding (B, L)
    bool)`` → :class:`MDetrOutput` (see the module docstring)."""

    def __init__(self, backbone: DetrBackbone, spec: MDetrSpec):
        super().__init__()
        if spec.num_queries < 1 or spec.max_text_len < 2 or spec.vocab_size < 4:
            raise ValueError(f"M-DETR: expected num_queries >= 1, max_text_len >= 2, vocab_size >= 4; got "
                             f"{spec.num_queries}, {spec.max_text_len}, {spec.vocab_size}")
        self.spec = spec
        d = spec.hidden_dim
        self.backbone = backbone
        self.input_proj = nn.Conv2d(backbone.channels[-1], d, kernel_size=1)
        self.text = TextTransformer(TextSpec(vocab_size=spec.vocab_size, context_length=spec.max_text_len,
                                             dim=spec.text_dim, depth=spec.text_depth, heads=spec.text_heads,
                                             eot_id=2, backend=spec.backend), num_classes=0)
        self.text_resizer = nn.Sequential(nn.Linear(spec.text_dim, d), nn.LayerNorm(d, eps=1e-12),
                                          nn.Dropout(spec.dropout))
        self.query_embed = nn.Embedding(spec.num_queries, d)
        self.transformer = JointTransformer(d, spec.heads, spec.enc_layers, spec.dec_layers, spec.ffn_dim,
                                            spec.dropout, spec.backend)
        self.token_embed = nn.Linear(d, spec.max_text_len + 1)
        self.bbox_embed = BoxMLP(d, d, 4, 3)
        self.contrastive_query = nn.Linear(d, spec.contrastive_dim)
        self.contrastive_token = nn.Linear(d, spec.contrastive_dim)

    @property
    def size_multiple(self) -> int:
        return self.backbone.size_multiple

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.transformer.encoder) + list(self.transformer.decoder)

    def no_weight_decay(self) -> set[str]:
        return {f"text.{n}" for n in self.text.no_weight_decay()}

    def encode_text(self, tokens: Tensor, text_padding: Tensor) -> Tensor:
        """``(B, L)`` ids → ``(B, L, hidden_dim)`` resized text-tower features."""
        if tokens.shape[1] > self.spec.max_text_len:
            raise ValueError(f"M-DETR: {tokens.shape[1]} tokens per caption, expected at most max_text_len "
                             f"{self.spec.max_text_len}")
        return self.text_resizer(self.text.forward_features(tokens, text_padding))  # (B, L, d)

    def forward(self, images: Tensor, padding_mask: Tensor | None, tokens: Tensor, text_padding: Tensor,
                ) -> MDetrOutput:
        B, L = tokens.shape
        src, mask = self.backbone(images, padding_mask)[-1]  # (B, C, h, w), (B, h, w)
        proj = self.input_proj(src)  # (B, d, h, w)
        pos_img = sine_position_embedding(mask, self.spec.hidden_dim, dtype=proj.dtype).flatten(1, 2)  # (B, hw, d)
        img = proj.flatten(2).transpose(1, 2)  # (B, hw, d)
        txt = self.encode_text(tokens, text_padding).to(img.dtype)  # (B, L, d)
        seq = torch.cat([img, txt], dim=1)  # (B, hw + L, d): the one joint sequence
        pos = torch.cat([pos_img, torch.zeros_like(txt)], dim=1)  # text tokens: zero position (M-DETR)
        key_mask = torch.cat([mask.flatten(1), text_padding], dim=1)  # (B, hw + L)
        hs, memory = self.transformer(seq, pos, key_mask if bool(key_mask.any()) else None, self.query_embed.weight)
        hw = img.shape[1]
        tokens_emb = F.normalize(self.contrastive_token(memory[:, hw:]), dim=-1)  # (B, L, c)
        logits = self.token_embed(hs)  # (L_dec, B, N, T + 1)
        T = self.spec.max_text_len
        invalid = torch.ones(B, T + 1, dtype=torch.bool, device=logits.device)
        invalid[:, :L] = text_padding
        invalid[:, T] = False  # the no-object slot
        logits = logits.masked_fill(invalid[None, :, None, :], NO_TEXT_LOGIT)
        boxes = self.bbox_embed(hs).sigmoid()  # (L_dec, B, N, 4)
        queries = F.normalize(self.contrastive_query(hs), dim=-1)  # (L_dec, B, N, c)
        aux = list(zip(logits[:-1], boxes[:-1], queries[:-1], strict=True))
        return MDetrOutput(logits[-1], boxes[-1], queries[-1], tokens_emb, text_padding, aux)


def build_mdetr(backbone_name: str, spec: MDetrSpec, backbone_overrides: dict | None = None,
                pretrained_path: str | None = None) -> MDetr:
    """:class:`MDetr` on the registered preset ``backbone_name`` (weights from ``pretrained_path``, frozen batch
    norms and a frozen backbone as the spec says; DETR's recipe)."""
    from ...models import create_model

    body = create_model(backbone_name, num_classes=0, **(backbone_overrides or {}))
    if pretrained_path is not None:
        load_backbone_weights(body, pretrained_path)
    count = len(body.stages)
    if not -count <= spec.feature_index < count:
        raise ValueError(f"M-DETR: feature_index {spec.feature_index} is out of range for {backbone_name} with "
                         f"{count} stages")
    if spec.frozen_bn:
        freeze_batch_norm(body)
    if not spec.train_backbone:
        body.requires_grad_(False)
    return MDetr(DetrBackbone(body, [spec.feature_index % count]), spec)


def load_detr_parts(model: MDetr, path: str) -> list[str]:
    """Fill the parts M-DETR shares with DETR (backbone, input_proj, query_embed, transformer, bbox_embed) from a
    DETR detection checkpoint of ours (``{"model": state}`` or a state dict); returns the keys loaded. A shape
    mismatch is a ``ValueError`` naming the keys."""
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"task.init_detr {str(path)!r} does not exist (train DETR on digit scenes first: "
                                f"visionattn train task=detection --run-dir runs/detr_digits; or set "
                                f"task.init_detr=null to start the DETR parts from random weights)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    shared = ("backbone.", "input_proj.", "query_embed.", "transformer.", "bbox_embed.")
    take = {k: v for k, v in state.items() if k.startswith(shared) and k in own}
    bad = [f"{k}: ours {tuple(own[k].shape)}, file {tuple(v.shape)}" for k, v in take.items()
           if own[k].shape != v.shape]
    if bad:
        raise ValueError(f"DETR checkpoint {path!r} does not fit this M-DETR: {bad[:4]}")
    if not take:
        raise ValueError(f"DETR checkpoint {path!r} has none of M-DETR's DETR parts {shared}")
    model.load_state_dict(take, strict=False)
    return sorted(take)
