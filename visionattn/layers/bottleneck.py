"""The ResNet bottleneck block whose spatial mixer is data: a 3×3 conv, or the attention operator.

The tutorial's guideline "replace all the spatial mixing convolutions with attention" is one field of a
:class:`MixerSpec`. SASA, HaloNet, BoTNet and Axial-ResNet blocks differ only in the spec they pass; the
attention itself is always :class:`visionattn.layers.Attention` (or :class:`AxialAttention`, two of them).

Layouts: the block keeps ResNet's NCHW maps ``(B, C, H, W)``; the attention mixer converts to channels-last
``(B, H, W, C)`` around the operator and back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from timm.layers import DropPath
from torch import Tensor, nn

from ..ops.patterns import Halo, Pattern
from .attention import Attention, AxialAttention
from .nonlocal_block import NonLocalBlock
from .padding import downsample_mask
from .position import LOCAL_PATTERNS, POSITION_KINDS

MIXER_KINDS = ("conv", "attention", "axial")
DOWNSAMPLE_KINDS = ("pool", "query")


@dataclass(frozen=True)
class MixerSpec:
    """What mixes space inside a bottleneck block.

    kind: ``'conv'`` (a 3×3 conv, ResNet), ``'attention'`` (:class:`Attention` with ``pattern``) or
        ``'axial'`` (:class:`AxialAttention`: height then width, Axial-DeepLab).
    pattern: the operator pattern for ``'attention'`` (``Neighborhood(7, border='pad')`` SASA,
        ``Halo(8, 3)`` HaloNet, ``Global()`` BoTNet).
    position: ``'none'``, ``'rel_bias'``, ``'rel_logits'`` or ``'rope'`` (see :class:`Attention`).
    heads: attention heads (the mid width must be divisible by it).
    downsample: how a stride-2 block downsamples with attention: ``'pool'`` attends at full resolution and
        then 2×2 average-pools (SASA, BoTNet, Axial-DeepLab); ``'query'`` subsamples the queries inside the
        operator (HaloNet's strided ``Halo(block, halo, stride=2)``; Halo patterns only).
    """

    kind: str = "conv"
    pattern: Pattern | None = None
    position: str = "none"
    heads: int = 8
    downsample: str = "pool"

    def __post_init__(self):
        if self.kind not in MIXER_KINDS:
            raise ValueError(f"MixerSpec.kind must be one of {MIXER_KINDS}, got {self.kind!r}")
        if self.kind == "attention" and not isinstance(self.pattern, Pattern):
            raise ValueError(
                f"MixerSpec(kind='attention') needs a Pattern (Global(), Halo(8, 3)...), got {self.pattern!r}"
            )
        if self.kind != "attention" and self.pattern is not None:
            raise ValueError(f"MixerSpec(kind={self.kind!r}) takes no pattern, got {self.pattern}")
        if self.position not in POSITION_KINDS:
            raise ValueError(f"MixerSpec.position must be one of {POSITION_KINDS}, got {self.position!r}")
        if self.downsample not in DOWNSAMPLE_KINDS:
            raise ValueError(f"MixerSpec.downsample must be one of {DOWNSAMPLE_KINDS}, got {self.downsample!r}")
        if self.downsample == "query" and not isinstance(self.pattern, Halo):
            raise ValueError(f"MixerSpec.downsample='query' needs a Halo pattern (strided queries), got {self.pattern}")
        if self.heads < 1:
            raise ValueError(f"MixerSpec.heads must be ≥ 1, got {self.heads}")

    @property
    def is_attention(self) -> bool:
        return self.kind != "conv"


CONV3X3 = MixerSpec("conv")


class AttentionMixer(nn.Module):
    """Spatial attention in NCHW: ``(B, C, H, W)`` → channels-last → operator → ``(B, C, H/s, W/s)``.

    ``stride`` 2 either pools after attending (``spec.downsample='pool'``: 2×2 average pool, ``ceil_mode`` so
    odd grids give ``ceil(H/2)`` like the strided shortcut) or subsamples queries (``'query'``: the Halo
    pattern gets ``stride=2``). ``grid_size``: the largest input grid ``(H, W)``; sizes the relative tables of
    grid-wide patterns (Global, Axial). A larger grid at forward time interpolates those tables when
    ``resize_position`` (what backbones do), else raises the operator's ``ValueError``.
    """

    def __init__(self, dim: int, spec: MixerSpec, stride: int = 1, grid_size: tuple[int, int] | None = None,
                 backend: str = "auto", resize_position: bool = False):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"AttentionMixer stride must be 1 or 2, got {stride}")
        if dim % spec.heads:
            raise ValueError(f"attention mixer width {dim} is not divisible by heads {spec.heads}")
        self.spec, self.stride = spec, stride
        query_stride = stride if spec.downsample == "query" else 1
        common = dict(position=spec.position, grid_size=grid_size, backend=backend, qkv_bias=False, proj=False,
                      resize_position=resize_position)
        if spec.kind == "axial":
            self.attn = AxialAttention(dim, spec.heads, **common)
        else:
            pattern = dataclasses.replace(spec.pattern, stride=query_stride) if query_stride > 1 else spec.pattern
            self.attn = Attention(dim, spec.heads, pattern, dims=None if grid_size else 2, **common)
        pool = stride > 1 and query_stride == 1
        self.pool = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False) if pool else nn.Identity()

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, C, H, W)``; key_padding_mask ``(B, H, W)`` bool (True = padding) → ``(B, C, H/s, W/s)``."""
        x = self.attn(x.permute(0, 2, 3, 1), key_padding_mask=key_padding_mask)  # (B, H', W', C) channels-last
        return self.pool(x.permute(0, 3, 1, 2))  # (B, C, H/s, W/s)


def make_mixer(dim: int, spec: MixerSpec, stride: int = 1, grid_size: tuple[int, int] | None = None,
               backend: str = "auto", resize_position: bool = False) -> nn.Module:
    """The spatial mixer ``(B, dim, H, W)`` → ``(B, dim, H/stride, W/stride)`` that ``spec`` describes."""
    if spec.kind == "conv":
        return nn.Conv2d(dim, dim, 3, stride=stride, padding=1, bias=False)
    needs_grid = spec.position in ("rel_bias", "rel_logits") and (spec.kind == "axial" or not _is_local(spec.pattern))
    return AttentionMixer(dim, spec, stride, grid_size if needs_grid else None, backend, resize_position)


def _is_local(pattern: Pattern) -> bool:
    return isinstance(pattern, LOCAL_PATTERNS)


class BottleneckBlock(nn.Module):
    """ResNet bottleneck (v1.5: stride on the spatial mixer) with a data-described spatial mixer.

    x ``(B, in_chs, H, W)`` → ``(B, out_chs, H/stride, W/stride)``::

        conv1 1×1 → bn1 → ReLU → mixer (3×3 conv or attention, stride) → bn2 → ReLU → conv3 1×1 → bn3
        → DropPath → + shortcut → ReLU

    The shortcut is the identity, or ``downsample`` = 1×1 conv (stride) + BN when the shape changes.
    ``zero_init_last`` zeroes bn3's gamma so each block starts as the identity (Goyal et al. 2017).
    Names (conv1, bn1, mixer, bn2, conv3, bn3, downsample.0/.1) map onto timm's ResNet with ``conv2 → mixer``.
    ``resize_position``: see :class:`AttentionMixer`.
    """

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, stride: int = 1, mixer: MixerSpec = CONV3X3,
                 grid_size: tuple[int, int] | None = None, drop_path: float = 0.0, zero_init_last: bool = True,
                 backend: str = "auto", resize_position: bool = False):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.mixer = make_mixer(mid_chs, mixer, stride, grid_size, backend, resize_position)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        if zero_init_last:
            nn.init.zeros_(self.bn3.weight)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_chs))
        self.act3 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, in_chs, H, W)``; key_padding_mask ``(B, H, W)`` bool, passed to an attention mixer (any mixer
        but a conv, which sees padding through its kernel and ignores the mask)."""
        shortcut = x if self.downsample is None else self.downsample(x)  # (B, out, H/s, W/s)
        x = self.act1(self.bn1(self.conv1(x)))  # (B, mid, H, W)
        if key_padding_mask is not None and not isinstance(self.mixer, nn.Conv2d):
            x = self.mixer(x, key_padding_mask=key_padding_mask)  # (B, mid, H/s, W/s)
        else:
            x = self.mixer(x)  # (B, mid, H/s, W/s)
        x = self.act2(self.bn2(x))
        x = self.bn3(self.conv3(x))  # (B, out, H/s, W/s)
        return self.act3(self.drop_path(x) + shortcut)


class BottleneckStage(nn.Sequential):
    """A ResNet stage: bottleneck (and non-local) blocks in sequence, ``(B, C_in, H, W)`` → ``(B, C, H/s, W/s)``.

    An ``nn.Sequential`` (parameter names ``i.*`` as timm's ``layerN.i.*``) whose forward also carries a key
    padding mask ``(B, H, W)``: each block gets the mask of its input grid; after a stride-2 block the mask is
    downsampled (:func:`~visionattn.layers.padding.downsample_mask`: a token is padding when all it covers is).
    """

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if key_padding_mask is None:
            return super().forward(x)
        mask = key_padding_mask  # (B, H, W)
        for block in self:
            if isinstance(block, (BottleneckBlock, NonLocalBlock)):
                x = block(x, key_padding_mask=mask)
            else:
                x = block(x)
            stride = getattr(block, "stride", 1)
            if stride > 1:
                mask = downsample_mask(mask, stride)  # (B, ceil(H/s), ceil(W/s))
        return x


__all__ = ["CONV3X3", "DOWNSAMPLE_KINDS", "MIXER_KINDS", "AttentionMixer", "BottleneckBlock", "BottleneckStage",
           "MixerSpec", "make_mixer"]
