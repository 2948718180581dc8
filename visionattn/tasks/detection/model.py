"""DETR (Carion et al. 2020): any registered backbone, a 1×1 projection, 2D sine positions, the transformer of
:mod:`.transformer`, a class head with "no object" and a 3-layer box MLP; optionally the panoptic head of
:mod:`.segmentation`. The converter from Hugging Face ``transformers`` and official DETR state dicts is here too.

Outputs (:class:`DetrOutput`): class logits ``(B, N, K + 1)`` (index ``K`` = no object), boxes ``(B, N, 4)`` as
``(cx, cy, w, h)`` in ``[0, 1]`` relative to each image's unpadded size, the same pair for every earlier decoder
layer (the auxiliary losses), and mask logits ``(B, N, h, w)`` at the finest FPN map's stride when the panoptic
head is on (None otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import DetrBackbone
from .position import sine_position_embedding
from .segmentation import AttentionMap, MaskHead
from .transformer import DetrTransformer

__all__ = ["DetrSpec", "DetrOutput", "Detr", "BoxMLP", "build_detr", "convert_detr_state_dict", "freeze_batch_norm",
           "load_backbone_weights", "load_detr_weights"]


@dataclass(frozen=True)
class DetrSpec:
    """num_classes: object classes K (the head has K + 1 outputs). num_queries: object queries N. hidden_dim,
    heads, enc_layers, dec_layers, ffn_dim, dropout: the transformer. feature_index: the backbone stage whose map the
    transformer reads (-1: the last, DETR's C5; -2: the stride-16 map, the cheap cousin of DETR-DC5). masks: the
    panoptic head (it also reads up to three stages before ``feature_index``, DETR's FPN inputs). backend: the
    operator backend.
    frozen_bn: the backbone's batch norms become ``torchvision.ops.FrozenBatchNorm2d`` (DETR's choice: statistics
    and affine parameters fixed, as loaded). train_backbone: False freezes the backbone (DETR's ``lr_backbone=0``)."""

    num_classes: int
    num_queries: int = 100
    hidden_dim: int = 256
    heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    ffn_dim: int = 2048
    dropout: float = 0.1
    feature_index: int = -1
    masks: bool = False
    backend: str = "auto"
    frozen_bn: bool = False
    train_backbone: bool = True


@dataclass
class DetrOutput:
    """logits ``(B, N, K + 1)``; boxes ``(B, N, 4)`` normalised cxcywh; aux: ``(logits, boxes)`` of decoder layers
    ``0 .. L-2``; masks: ``(B, N, h, w)`` logits or None."""

    logits: Tensor
    boxes: Tensor
    aux: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    masks: Tensor | None = None


class BoxMLP(nn.Module):
    """``layers`` Linear layers with ReLU between: ``(…, in) → (…, out)`` (DETR's box head: 3 layers, out 4)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out_dim], strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class Detr(nn.Module):
    """``forward(images (B, 3, H, W), padding_mask (B, H, W) bool | None)`` → :class:`DetrOutput`.

    ``backbone``: a :class:`DetrBackbone` whose last index is the transformer's input (with ``spec.masks``, the
    three before it feed the mask head, coarse to fine)."""

    def __init__(self, backbone: DetrBackbone, spec: DetrSpec):
        super().__init__()
        if spec.num_classes < 1 or spec.num_queries < 1:
            raise ValueError(f"DETR: expected num_classes >= 1 and num_queries >= 1, got {spec.num_classes}, "
                             f"{spec.num_queries}")
        if spec.masks and (spec.hidden_dim + spec.heads) % 8:
            raise ValueError(f"DETR's panoptic head group-normalises hidden_dim + heads channels in 8 groups: "
                             f"expected hidden_dim + heads divisible by 8, got {spec.hidden_dim} + {spec.heads}")
        if spec.masks and len(backbone.indices) < 2:
            raise ValueError(f"DETR's panoptic head needs backbone maps before the transformer's (DETR: 3); the "
                             f"backbone gives stages {backbone.indices}")
        self.spec = spec
        d = spec.hidden_dim
        self.backbone = backbone
        self.input_proj = nn.Conv2d(backbone.channels[-1], d, kernel_size=1)
        self.query_embed = nn.Embedding(spec.num_queries, d)
        self.transformer = DetrTransformer(d, spec.heads, spec.enc_layers, spec.dec_layers, spec.ffn_dim,
                                           spec.dropout, spec.backend)
        self.class_embed = nn.Linear(d, spec.num_classes + 1)
        self.bbox_embed = BoxMLP(d, d, 4, 3)
        if spec.masks:
            self.bbox_attention = AttentionMap(d, spec.heads)
            self.mask_head = MaskHead(d + spec.heads, backbone.channels[-2::-1][:3], d)

    @property
    def size_multiple(self) -> int:
        """Pad batches to a multiple of this (see :class:`DetrBackbone`)."""
        return self.backbone.size_multiple

    def fsdp_units(self) -> list[nn.Module]:
        """FSDP2 units: the backbone's blocks, then each transformer layer."""
        units = list(self.backbone.body.fsdp_units()) if hasattr(self.backbone.body, "fsdp_units") else []
        return units + list(self.transformer.encoder) + list(self.transformer.decoder)

    def forward(self, images: Tensor, padding_mask: Tensor | None = None) -> DetrOutput:
        feats = self.backbone(images, padding_mask)  # [(map (B, C_i, H_i, W_i), mask (B, H_i, W_i))]
        src, mask = feats[-1]
        proj = self.input_proj(src)  # (B, d, H, W)
        pos = sine_position_embedding(mask, self.spec.hidden_dim, dtype=proj.dtype)  # (B, H, W, d)
        tokens = proj.permute(0, 2, 3, 1)  # (B, H, W, d)
        key_mask = mask if bool(mask.any()) else None
        hs, memory = self.transformer(tokens, key_mask, self.query_embed.weight, pos)  # (L, B, N, d), (B, H, W, d)
        logits = self.class_embed(hs)  # (L, B, N, K + 1)
        boxes = self.bbox_embed(hs).sigmoid()  # (L, B, N, 4)
        out = DetrOutput(logits[-1], boxes[-1], list(zip(logits[:-1], boxes[:-1], strict=True)))
        if self.spec.masks:
            attn = self.bbox_attention(hs[-1], memory, key_mask)  # (B, N, heads, H, W)
            fpns = [f for f, _ in feats[-2::-1][:3]]  # coarse to fine
            out.masks = self.mask_head(proj, attn, fpns)  # (B, N, h, w)
        return out

    def freeze_detection(self) -> None:
        """DETR's second panoptic stage: train only the attention map and the mask head."""
        if not self.spec.masks:
            raise ValueError("freeze_detection: this DETR has no panoptic head to train")
        for name, p in self.named_parameters():
            if not name.startswith(("bbox_attention.", "mask_head.")):
                p.requires_grad_(False)


def build_detr(backbone_name: str, spec: DetrSpec, backbone_overrides: dict | None = None,
               pretrained_path: str | None = None) -> Detr:
    """A :class:`Detr` on the registered preset ``backbone_name`` (built without a classifier, spec fields replaced
    by ``backbone_overrides``, weights from ``pretrained_path`` if given)."""
    from ...models import create_model

    body = create_model(backbone_name, num_classes=0, **(backbone_overrides or {}))
    if pretrained_path is not None:
        load_backbone_weights(body, pretrained_path)
    count = len(body.stages)
    last = spec.feature_index % count if -count <= spec.feature_index < count else spec.feature_index
    if not 0 <= last < count:
        raise ValueError(f"DETR: feature_index {spec.feature_index} is out of range for {backbone_name} with "
                         f"{count} stages")
    indices = list(range(max(0, last - 3), last + 1)) if spec.masks else [last]
    if spec.frozen_bn:
        freeze_batch_norm(body)
    if not spec.train_backbone:
        body.requires_grad_(False)
    return Detr(DetrBackbone(body, indices), spec)


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` under ``module`` (in place) by ``torchvision.ops.FrozenBatchNorm2d`` with
    the same statistics, affine parameters and epsilon."""
    from torchvision.ops import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    source = getattr(child, key)
                    if source is not None:
                        getattr(frozen, key).copy_(source)
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)
    return module


def load_backbone_weights(body: nn.Module, path: str | Path) -> None:
    """A backbone checkpoint (ours, e.g. a classification run's ``best.pt``, or timm's / DINO's) into ``body``,
    its classifier left out (the detector has none); other keys must fit exactly (``ValueError`` naming them)."""
    from ...models.checkpoint import check_state_dict, read_state_dict

    state = read_state_dict(path)
    convert = getattr(body, "convert_state_dict", None)
    if set(state) != set(body.state_dict()) and callable(convert):
        state = convert(state)
    heads = tuple(f"{name}." for name in getattr(body, "classifier_names", ("head",)))
    state = {k: v for k, v in state.items() if not k.startswith(heads)}
    check_state_dict(body, state, f"backbone checkpoint {str(path)!r}")
    body.load_state_dict(state, strict=True)


# -- converters: Hugging Face transformers / official DETR state dicts → ours ----------------------------------------
_HF_RULES = [  # (pattern, replacement) on keys with the "model." / "detr.model." wrapper removed
    (r"^backbone\.model\.", "backbone.body."),
    (r"^input_projection\.", "input_proj."),
    (r"^query_position_embeddings\.", "query_embed."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.o_proj\.", r"transformer.encoder.\1.self_attn.proj."),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"transformer.encoder.\1.norm1."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"transformer.encoder.\1.norm2."),
    (r"^encoder\.layers\.(\d+)\.mlp\.", r"transformer.encoder.\1.mlp."),
    (r"^decoder\.layers\.(\d+)\.self_attn\.o_proj\.", r"transformer.decoder.\1.self_attn.proj."),
    (r"^decoder\.layers\.(\d+)\.encoder_attn\.o_proj\.", r"transformer.decoder.\1.cross_attn.proj."),
    (r"^decoder\.layers\.(\d+)\.encoder_attn\.q_proj\.", r"transformer.decoder.\1.cross_attn.q."),
    (r"^decoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"transformer.decoder.\1.norm1."),
    (r"^decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.", r"transformer.decoder.\1.norm2."),
    (r"^decoder\.layers\.(\d+)\.final_layer_norm\.", r"transformer.decoder.\1.norm3."),
    (r"^decoder\.layers\.(\d+)\.mlp\.", r"transformer.decoder.\1.mlp."),
    (r"^decoder\.layernorm\.", "transformer.decoder_norm."),
    (r"^class_labels_classifier\.", "class_embed."),
    (r"^bbox_predictor\.", "bbox_embed."),
    (r"^bbox_attention\.q_proj\.", "bbox_attention.q."),
    (r"^bbox_attention\.k_proj\.", "bbox_attention.k."),
    (r"^mask_head\.conv1\.(conv|norm)\.", r"mask_head.blocks.0.\1."),
    (r"^mask_head\.conv2\.(conv|norm)\.", r"mask_head.blocks.1.\1."),
    (r"^mask_head\.fpn_stages\.(\d+)\.fpn_adapter\.", lambda m: f"mask_head.adapters.{m.group(1)}."),
    (r"^mask_head\.fpn_stages\.(\d+)\.refine\.(conv|norm)\.", lambda m: f"mask_head.blocks.{int(m.group(1)) + 2}."
                                                                           f"{m.group(2)}."),
    (r"^mask_head\.output_conv\.", "mask_head.out."),
]
_HF_FUSED = [  # (pattern of the q/k/v piece, our fused key, order of the pieces)
    (r"^encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", "transformer.encoder.{}.self_attn.qkv.{}",
     "qkv"),
    (r"^decoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", "transformer.decoder.{}.self_attn.qkv.{}",
     "qkv"),
    (r"^decoder\.layers\.(\d+)\.encoder_attn\.([kv])_proj\.(weight|bias)$", "transformer.decoder.{}.cross_attn.kv.{}",
     "kv"),
]
_OFFICIAL_RULES = [
    (r"^backbone\.0\.body\.", "backbone.body."),
    (r"^transformer\.encoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$",
     r"transformer.encoder.\1.self_attn.qkv.\2"),
    (r"^transformer\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer.encoder.\1.self_attn.proj."),
    (r"^transformer\.decoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$",
     r"transformer.decoder.\1.self_attn.qkv.\2"),
    (r"^transformer\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer.decoder.\1.self_attn.proj."),
    (r"^transformer\.decoder\.layers\.(\d+)\.multihead_attn\.out_proj\.", r"transformer.decoder.\1.cross_attn.proj."),
    (r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.linear1\.", r"transformer.\1.\2.mlp.fc1."),
    (r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.linear2\.", r"transformer.\1.\2.mlp.fc2."),
    (r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.(norm\d)\.", r"transformer.\1.\2.\3."),
    (r"^transformer\.decoder\.norm\.", "transformer.decoder_norm."),
    (r"^(input_proj|query_embed|class_embed|bbox_embed)\.", r"\1."),
    (r"^bbox_attention\.q_linear\.", "bbox_attention.q."),
    (r"^bbox_attention\.k_linear\.", "bbox_attention.k."),
    (r"^mask_head\.lay(\d)\.", lambda m: f"mask_head.blocks.{int(m.group(1)) - 1}.conv."),
    (r"^mask_head\.gn(\d)\.", lambda m: f"mask_head.blocks.{int(m.group(1)) - 1}.norm."),
    (r"^mask_head\.adapter(\d)\.", lambda m: f"mask_head.adapters.{int(m.group(1)) - 1}."),
    (r"^mask_head\.out_lay\.", "mask_head.out."),
]
_OFFICIAL_SPLIT = r"^transformer\.decoder\.layers\.(\d+)\.multihead_attn\.in_proj_(weight|bias)$"


def _detect_format(keys) -> str:
    """``"hf"``, ``"official"``, ``"ours"`` or ``"unknown"`` from the key names."""
    stripped = [re.sub(r"^detr\.", "", k) for k in keys]
    if any(k.endswith("input_projection.weight") for k in keys):
        return "hf"
    if any(k.startswith(("transformer.encoder.layers.", "transformer.decoder.layers.")) for k in stripped):
        return "official"
    if any(k.startswith("transformer.decoder.0.") for k in keys):
        return "ours"
    return "unknown"


def _apply_rules(key: str, rules) -> str | None:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return None


def convert_detr_state_dict(state_dict: dict, model: Detr | None = None) -> dict:
    """A DETR state dict → our names. Accepts Hugging Face ``DetrForObjectDetection`` / ``DetrForSegmentation``
    (``model.…`` / ``detr.model.…``), official DETR (``backbone.0.body.…``, ``transformer.…``; panoptic:
    ``detr.…`` + ``bbox_attention`` / ``mask_head``) and ours (returned as is). Attention projections are fused
    into our ``qkv`` / ``q`` + ``kv`` layouts; backbone keys go through ``model.backbone.body.convert_state_dict``
    when ``model`` is given (timm/torchvision ResNet names → ours). Unknown keys raise a ``ValueError`` naming
    them."""
    keys = list(state_dict)
    fmt = _detect_format(keys)
    if fmt == "ours":
        return dict(state_dict)
    if fmt == "unknown":
        raise ValueError(f"convert_detr_state_dict: not a DETR state dict (ours, Hugging Face or official); first "
                         f"keys {keys[:5]}")
    out, fused, unknown = {}, {}, []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked") and "backbone" not in key:
            continue
        if fmt == "hf":
            k = re.sub(r"^(detr\.)?model\.", "", key)
            k = re.sub(r"^detr\.", "", k)  # DetrForSegmentation's class/box heads: detr.class_labels_classifier
            for pattern, target, order in _HF_FUSED:
                m = re.match(pattern, k)
                if m:
                    fused.setdefault(target.format(m.group(1), m.group(3)), {})[m.group(2)] = (order, value)
                    break
            else:
                new = _apply_rules(k, _HF_RULES)
                (unknown.append(key) if new is None else out.__setitem__(new, value))
            continue
        k = re.sub(r"^detr\.", "", key)
        m = re.match(_OFFICIAL_SPLIT, k)
        if m:
            d = value.shape[0] // 3
            out[f"transformer.decoder.{m.group(1)}.cross_attn.q.{m.group(2)}"] = value[:d]
            out[f"transformer.decoder.{m.group(1)}.cross_attn.kv.{m.group(2)}"] = value[d:]
            continue
        new = _apply_rules(k, _OFFICIAL_RULES)
        (unknown.append(key) if new is None else out.__setitem__(new, value))
    for target, pieces in fused.items():
        order = next(iter(pieces.values()))[0]
        if sorted(pieces) != sorted(order):
            raise ValueError(f"convert_detr_state_dict: {target} needs the {list(order)} projections, found "
                             f"{sorted(pieces)}")
        out[target] = torch.cat([pieces[c][1] for c in order], dim=0)
    if unknown:
        raise ValueError(f"convert_detr_state_dict: {len(unknown)} {fmt} keys have no counterpart in ours, e.g. "
                         f"{unknown[:5]}")
    if model is not None:
        body = model.backbone.body
        backbone = {k[len("backbone.body."):]: v for k, v in out.items() if k.startswith("backbone.body.")}
        if backbone and callable(getattr(body, "convert_state_dict", None)):
            converted = body.convert_state_dict(backbone)
            out = {k: v for k, v in out.items() if not k.startswith("backbone.body.")}
            out.update({f"backbone.body.{k}": v for k, v in converted.items()})
    return out


def load_detr_weights(model: Detr, source: str | Path | dict, strict: bool = True) -> list[str]:
    """Load a DETR checkpoint into ``model``: a state dict, or a file (``weights_only`` load; an official DETR
    checkpoint's ``{"model": ...}`` and our training checkpoints' ``{"model": ..., "ema": ...}`` are unwrapped).
    Backbone stages the model dropped are ignored. ``strict=False`` allows a missing panoptic head (starting
    panoptic training from a detection checkpoint). Returns the missing keys; a shape mismatch or an unexpected key
    is a ``ValueError`` naming them."""
    state = source
    if not isinstance(source, dict):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"DETR weights {str(path)!r} do not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state.get("model"), dict):
        state = state["model"]
    converted = convert_detr_state_dict(state, model)
    own = model.state_dict()
    kept = set(f"backbone.body.stages.{i}." for i in range(len(model.backbone.body.stages)))
    converted = {k: v for k, v in converted.items()
                 if not (k.startswith("backbone.body.stages.") and not any(k.startswith(p) for p in kept))}
    unexpected = sorted(k for k in converted if k not in own)
    mismatched = [f"{k}: ours {tuple(own[k].shape)}, file {tuple(v.shape)}" for k, v in converted.items()
                  if k in own and own[k].shape != v.shape]
    for k in own:  # frozen-BN sources (HF, official) keep no batch counters
        if k not in converted and k.endswith("num_batches_tracked"):
            converted[k] = own[k]
    missing = sorted(k for k in own if k not in converted)
    if not strict:
        missing_bad = [k for k in missing if not k.startswith(("bbox_attention.", "mask_head."))]
    else:
        missing_bad = missing
    if unexpected or mismatched or missing_bad:
        raise ValueError(f"DETR weights do not fit this model: {len(missing_bad)} missing (e.g. {missing_bad[:4]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:4]}), shape mismatches {mismatched[:4]}")
    model.load_state_dict(converted, strict=False)
    return missing
