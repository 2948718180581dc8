"""SETR: any backbone of the Backbone contract + one of SETR's decoders + auxiliary heads.

The model reads only ``backbone.forward_intermediates(x, indices, padding_mask)`` and ``backbone.feature_info``,
so a ViT (every stage at stride ``patch``, any input size whose sides are multiples of the patch: the position
table is interpolated) and a multi-scale backbone (Swin, HaloNet, ResNet: strides 4..32) take the same heads.

Stages are the backbone's (ViT: one per Transformer block). Defaults: naive and PUP read the last stage; MLA reads
``mla_streams`` stages evenly spaced through the encoder (SETR: layers 6, 12, 18, 24 of ViT-L's 24, i.e. indices
``(m + 1) * L // M - 1``). Auxiliary heads (SETR trains with them, weight 0.4 each in its released configs) are
naive heads on further stages; their logits are used by the loss only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .decoders import DECODERS, NaiveHead, build_decoder

__all__ = ["SegmentationModel", "TrainForward", "evenly_spaced", "build_segmentation_model", "freeze_unused"]


def evenly_spaced(num_stages: int, count: int) -> list[int]:
    """``count`` stage indices spread evenly over ``num_stages``, ending at the last: ``(m + 1) * L // M - 1``
    (L = 24, M = 4 → 5, 11, 17, 23). ``ValueError`` when there are fewer stages than streams."""
    if count < 1 or num_stages < count:
        raise ValueError(f"{count} evenly spaced stages need a backbone with at least {count} stages, got "
                         f"{num_stages}")
    return [(m + 1) * num_stages // count - 1 for m in range(count)]


def _normalise(indices: Sequence[int], num_stages: int, what: str) -> list[int]:
    out = []
    for i in indices:
        if not -num_stages <= int(i) < num_stages:
            raise ValueError(f"{what}: stage index {i} is out of range for a backbone with {num_stages} stages "
                             f"(expected -{num_stages}..{num_stages - 1})")
        out.append(int(i) % num_stages)
    return out


class SegmentationModel(nn.Module):
    """``forward(x (B, 3, H, W), padding_mask (B, H, W) bool | None) -> logits (B, num_classes, H, W)``.

    ``forward_train`` also returns the auxiliary heads' logits (each ``(B, num_classes, H, W)``), always as a
    ``(logits, [aux...])`` pair (an empty list without auxiliary heads). ``padding_mask`` (True = padding) reaches
    the backbone's attention as a key padding mask; logits at padded pixels are not meaningful. Inputs whose sides
    are not multiples of the backbone's ``input_multiple`` (ViT: the patch) are padded at the bottom / right for
    the backbone (the padding masked as above) and the logits cropped back to ``(H, W)``."""

    def __init__(self, backbone: nn.Module, head: nn.Module, head_stages: Sequence[int],
                 aux_heads: Sequence[nn.Module] = (), aux_stages: Sequence[int] = ()):
        super().__init__()
        count = len(backbone.feature_info)
        self.backbone = backbone
        self.head = head
        self.head_stages = _normalise(head_stages, count, "decoder stages")
        self.aux_heads = nn.ModuleList(aux_heads)
        self.aux_stages = _normalise(aux_stages, count, "auxiliary stages")
        if len(self.aux_heads) != len(self.aux_stages):
            raise ValueError(f"expected one auxiliary head per auxiliary stage, got {len(self.aux_heads)} heads "
                             f"for stages {self.aux_stages}")
        self.num_classes = head.num_classes
        self.input_multiple = int(getattr(backbone, "input_multiple", 1))

    def _features(self, x: Tensor, padding_mask: Tensor | None, with_aux: bool) -> dict[int, Tensor]:
        wanted = sorted(set(self.head_stages) | (set(self.aux_stages) if with_aux else set()))
        maps = self.backbone.forward_intermediates(x, indices=wanted, padding_mask=padding_mask)
        return dict(zip(wanted, maps, strict=True))

    def _pad(self, x: Tensor, padding_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``x`` zero-padded at the bottom / right to a multiple of the backbone's ``input_multiple``, and the
        padding mask extended to say so (None stays None when no padding is needed)."""
        m = self.input_multiple
        H, W = x.shape[-2:]
        dh, dw = -H % m, -W % m
        if not (dh or dw):
            return x, padding_mask
        if padding_mask is None:
            padding_mask = torch.zeros(x.shape[0], H, W, dtype=torch.bool, device=x.device)
        return F.pad(x, (0, dw, 0, dh)), F.pad(padding_mask, (0, dw, 0, dh), value=True)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        H, W = x.shape[-2:]
        x, padding_mask = self._pad(x, padding_mask)
        feats = self._features(x, padding_mask, with_aux=False)
        return self.head([feats[i] for i in self.head_stages], x.shape[-2:])[..., :H, :W]  # (B, K, H, W)

    def forward_train(self, x: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        H, W = x.shape[-2:]
        x, padding_mask = self._pad(x, padding_mask)
        feats = self._features(x, padding_mask, with_aux=True)
        logits = self.head([feats[i] for i in self.head_stages], x.shape[-2:])[..., :H, :W]
        aux = [head([feats[i]], x.shape[-2:])[..., :H, :W]
               for head, i in zip(self.aux_heads, self.aux_stages, strict=True)]
        return logits, aux

    def no_weight_decay(self) -> set[str]:
        """The backbone's (position tables, tokens), under ``backbone.``."""
        inner = getattr(self.backbone, "no_weight_decay", None)
        return {f"backbone.{n}" for n in inner()} if callable(inner) else set()

    def fsdp_units(self) -> list[nn.Module]:
        """The backbone's repeated blocks (the heads are small and stay with the root)."""
        return list(self.backbone.fsdp_units())


class TrainForward(nn.Module):
    """``forward(x, padding_mask)`` → ``model.forward_train(...)``: the module the trainer wraps for DDP, so that
    the auxiliary heads' parameters are used through ``forward``. Parameter names are the model's under
    ``model.``."""

    def __init__(self, model: SegmentationModel):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        return self.model.forward_train(x, padding_mask)


def freeze_unused(model: SegmentationModel, size: int) -> list[str]:
    """Freeze (``requires_grad_(False)``) the parameters that ``forward_train`` never uses, found by one forward and
    backward of two random ``size x size`` images in eval mode (no BatchNorm statistics change, the RNG states are
    restored): the backbone's final norm, which only ``forward_features`` applies, and any stage after the deepest
    one the heads read. DDP requires every trained parameter to get a gradient, and weight decay would otherwise
    shrink them for nothing. Returns their names."""
    was = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        logits, aux = model.forward_train(torch.randn(2, 3, size, size))
        (logits.sum() + sum(a.sum() for a in aux)).backward()
    model.train(was)
    frozen = []
    for name, p in model.named_parameters():
        if p.requires_grad and p.grad is None:
            p.requires_grad_(False)
            frozen.append(name)
        p.grad = None
    return frozen


def build_segmentation_model(backbone: nn.Module, decoder: str, num_classes: int, channels: int = 256,
                             stages: Sequence[int] | None = None, mla_streams: int = 4,
                             aux_stages: Sequence[int] = (), aux_channels: int | None = None,
                             input_norm: bool = True) -> SegmentationModel:
    """SETR on ``backbone``: ``decoder`` one of ``naive`` / ``pup`` / ``mla`` reading ``stages`` (default: the last
    stage; MLA: ``mla_streams`` evenly spaced), plus a naive auxiliary head on each of ``aux_stages``
    (``aux_channels`` wide, default ``channels``)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder: expected one of {DECODERS}, got {decoder!r}")
    info = list(backbone.feature_info)
    if stages is None:
        stages = evenly_spaced(len(info), mla_streams) if decoder == "mla" else [len(info) - 1]
    stages = _normalise(stages, len(info), "decoder stages")
    if decoder != "mla" and len(stages) != 1:
        raise ValueError(f"the {decoder} decoder reads one stage, got stages {stages}")
    if decoder == "mla" and len(set(stages)) != len(stages):
        raise ValueError(f"MLA streams need distinct stages, got {stages}")
    head = build_decoder(decoder, [info[i].num_chs for i in stages], [info[i].reduction for i in stages],
                         num_classes, channels, input_norm)
    aux_stages = _normalise(aux_stages, len(info), "auxiliary stages")
    aux = [NaiveHead(info[i].num_chs, num_classes, aux_channels or channels, input_norm) for i in aux_stages]
    return SegmentationModel(backbone, head, stages, aux, aux_stages)
