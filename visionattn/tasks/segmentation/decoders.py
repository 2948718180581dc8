"""SETR's decoders (Zheng et al., CVPR 2021, section 3.3), over feature maps from ``forward_intermediates``.

One head contract: a decoder is built from the channels and total strides of the feature maps it reads (the
backbone's ``feature_info`` entries of the chosen stages) and maps ``features: list[(B, C_i, h_i, w_i)]``, in the
order of those stages, to logits ``(B, num_classes, H, W)`` at the requested output size. A single-scale encoder
(ViT: every stage at stride ``patch``) and a multi-scale one (Swin, HaloNet, ResNet: strides 4..32) go through the
same code; only the number of 2x steps and the grids the streams meet on differ.

Each head first normalises its input per position over channels (``LayerNorm2d``, as SETR normalises the encoder's
output tokens; ``input_norm=False`` drops it). "conv-BN-ReLU" below is ``Conv2d(bias=False) → BatchNorm2d → ReLU``
(the paper's "conv + sync batch norm (w/ ReLU)"; under DDP batch statistics are per rank).

* **naive** — ``Z`` = the last selected stage: ``1×1 conv-BN-ReLU (C → ch) → 1×1 conv (ch → K)`` → bilinear
  upsampling to the output size.
* **PUP** (progressive upsampling) — ``n = max(1, ceil(log2(stride)))`` stages of ``3×3 conv-BN-ReLU`` each
  followed by 2× bilinear upsampling (the last stage upsamples to the output size exactly, so a stride that is not
  a power of two or a padded grid still lands on it); then a ``1×1 conv (ch → K)``. SETR-PUP at stride 16: four
  stages.
* **MLA** (multi-level feature aggregation) — ``M`` streams over ``M`` stages (by default evenly spaced through
  the encoder). Stream ``m``: ``a_m = 1×1 conv-BN-ReLU(Z_m)`` (C → ch); top-down aggregation from the deepest
  stream, ``b_M = a_M``, ``b_m = a_m + resize(b_{m+1})`` (the resize is the identity on a single-scale encoder);
  ``c_m = 3×3 conv-BN-ReLU(b_m)`` (ch → ch), ``d_m = 3×3 conv-BN-ReLU(c_m)`` (ch → ch/2) upsampled 4× by bilinear
  interpolation (multi-scale: to 4× the finest stream's grid, at most the output size); the ``d_m`` are
  concatenated (M·ch/2 channels), classified by a ``1×1 conv`` and upsampled to the output size.

The paper's channel plan is ``ch = C/2`` for MLA (halved at the first and third layers) and 256 for the others;
``channels`` sets ``ch`` here. Every upsampling is bilinear with ``align_corners=False``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import Tensor, nn

__all__ = ["DECODERS", "SegHead", "NaiveHead", "PUPHead", "MLAHead", "build_decoder", "conv_bn_relu", "upsample"]

DECODERS = ("naive", "pup", "mla")


def conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    """``Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False) → BatchNorm2d → ReLU``."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def upsample(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size`` (``align_corners=False``); the identity when already there."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _norm(channels: int, enabled: bool) -> nn.Module:
    return LayerNorm2d(channels, eps=1e-6) if enabled else nn.Identity()


class SegHead(nn.Module):
    """Base of the decoders: ``forward(features, size) -> (B, num_classes, *size)``. ``num_inputs``: how many
    feature maps it reads (in the order of the stages chosen for it)."""

    num_inputs: int = 1

    def __init__(self, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"{type(self).__name__}: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes

    def _check(self, features: Sequence[Tensor]) -> None:
        if len(features) != self.num_inputs:
            raise ValueError(f"{type(self).__name__} reads {self.num_inputs} feature map(s), got {len(features)}")


class NaiveHead(SegHead):
    """SETR-naive (see the module docstring); also the auxiliary head on intermediate stages."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, input_norm: bool = True):
        super().__init__(num_classes)
        self.norm = _norm(in_channels, input_norm)
        self.conv = conv_bn_relu(in_channels, channels, 1)
        self.cls = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        self._check(features)
        x = self.conv(self.norm(features[-1]))  # (B, ch, h, w)
        return upsample(self.cls(x), size)  # (B, K, H, W)


def pup_steps(reduction: int) -> int:
    """PUP's number of 2× conv-upsample stages for a feature map at total stride ``reduction``:
    ``max(1, ceil(log2(reduction)))`` (4 at stride 16, 5 at 32)."""
    return max(1, math.ceil(math.log2(max(reduction, 1))))


class PUPHead(SegHead):
    """SETR-PUP (see the module docstring)."""

    def __init__(self, in_channels: int, reduction: int, num_classes: int, channels: int = 256,
                 input_norm: bool = True):
        super().__init__(num_classes)
        self.norm = _norm(in_channels, input_norm)
        steps = pup_steps(reduction)
        self.stages = nn.ModuleList(conv_bn_relu(in_channels if i == 0 else channels, channels, 3)
                                    for i in range(steps))
        self.cls = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        self._check(features)
        x = self.norm(features[-1])  # (B, C, h, w)
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            x = stage(x)  # (B, ch, h', w')
            target = tuple(size) if i == last else (2 * x.shape[-2], 2 * x.shape[-1])
            x = upsample(x, target)
        return self.cls(x)  # (B, K, H, W)


class MLAHead(SegHead):
    """SETR-MLA (see the module docstring). ``in_channels``: the channels of the M streams' inputs, shallow to
    deep."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, channels: int = 256, input_norm: bool = True,
                 up: int = 4):
        super().__init__(num_classes)
        if len(in_channels) < 2:
            raise ValueError(f"MLAHead aggregates at least 2 streams, got {len(in_channels)}")
        if channels < 2:
            raise ValueError(f"MLAHead: channels must be >= 2 (the third layer halves them), got {channels}")
        self.num_inputs = len(in_channels)
        self.up = up
        self.norms = nn.ModuleList(_norm(c, input_norm) for c in in_channels)
        self.reduce = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels)  # a_m
        self.aggregate = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in in_channels)  # c_m
        self.refine = nn.ModuleList(conv_bn_relu(channels, channels // 2, 3) for _ in in_channels)  # d_m
        self.cls = nn.Conv2d(len(in_channels) * (channels // 2), num_classes, 1)

    def forward(self, features: Sequence[Tensor], size: Sequence[int]) -> Tensor:
        self._check(features)
        a = [conv(norm(z)) for z, norm, conv in zip(features, self.norms, self.reduce, strict=True)]
        b: list[Tensor] = [a[-1]]  # top-down: deepest first
        for a_m in reversed(a[:-1]):
            b.append(a_m + upsample(b[-1], a_m.shape[-2:]))
        b.reverse()  # shallow → deep again
        finest = max((t.shape[-2:] for t in b), key=lambda s: s[0] * s[1])
        common = (min(self.up * finest[0], int(size[0])), min(self.up * finest[1], int(size[1])))
        d = [upsample(refine(agg(b_m)), common) for b_m, agg, refine in
             zip(b, self.aggregate, self.refine, strict=True)]  # each (B, ch/2, *common)
        return upsample(self.cls(torch.cat(d, dim=1)), size)  # (B, K, H, W)


def build_decoder(kind: str, in_channels: Sequence[int], reductions: Sequence[int], num_classes: int,
                  channels: int, input_norm: bool = True) -> SegHead:
    """The decoder ``kind`` (one of :data:`DECODERS`) for feature maps of ``in_channels`` at total strides
    ``reductions`` (one entry per map it reads: one for naive / PUP, M for MLA)."""
    if kind not in DECODERS:
        raise ValueError(f"decoder: expected one of {DECODERS}, got {kind!r}")
    if len(in_channels) != len(reductions) or not in_channels:
        raise ValueError(f"build_decoder: expected one channel count and one stride per input, got "
                         f"{list(in_channels)} and {list(reductions)}")
    if kind == "mla":
        return MLAHead(in_channels, num_classes, channels, input_norm)
    if len(in_channels) != 1:
        raise ValueError(f"the {kind} decoder reads one feature map, got {len(in_channels)}")
    if kind == "naive":
        return NaiveHead(in_channels[0], num_classes, channels, input_norm)
    return PUPHead(in_channels[0], reductions[0], num_classes, channels, input_norm)
