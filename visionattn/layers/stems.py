"""Convolutional stems: images ``(B, C_in, H, W)`` → feature maps ``(B, C, H/4, W/4)`` (NCHW).

The tutorial's guideline is to *reuse* vision components; the stem is the one place where SASA, HaloNet,
BoTNet, Axial-ResNet and the hybrids keep convolutions (attention at full image resolution is too costly and
learns little there). Two designs:

* ``'resnet'``: ResNet's 7×7/2 conv-BN-ReLU + 3×3/2 max-pool (He et al. 2016).
* ``'deep'`` / ``'tiered'``: three 3×3 conv-BN-ReLU (the first with stride 2) + 3×3/2 max-pool, as ResNet-D
  (widths ``(C/2, C/2, C)``) and timm's "tiered" stem of halonet26t/botnet26t (widths ``(3C/8, C/2, C)``).
"""

from __future__ import annotations

from torch import Tensor, nn

STEM_KINDS = ("resnet", "deep", "tiered")


class ConvBnAct(nn.Sequential):
    """``k×k`` conv (no bias, 'same' padding) → BatchNorm → ReLU: ``(B, C_in, H, W)`` → ``(B, C_out, H/s, W/s)``."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 3, stride: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()


class ResNetStem(nn.Module):
    """ResNet stem: ``(B, in_chans, H, W)`` → 7×7/2 conv-BN-ReLU → 3×3/2 max-pool → ``(B, out_chs, H/4, W/4)``.

    Module names (``conv``, ``bn``) map one-to-one onto torchvision/timm ResNet's ``conv1``/``bn1``.
    """

    def __init__(self, in_chans: int = 3, out_chs: int = 64):
        super().__init__()
        self.out_chs = out_chs
        self.conv = nn.Conv2d(in_chans, out_chs, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.bn(self.conv(x))))  # (B, out_chs, H/4, W/4)


class DeepStem(nn.Module):
    """Three 3×3 conv-BN-ReLU (strides 2, 1, 1) + 3×3/2 max-pool: ``(B, in_chans, H, W)`` →
    ``(B, chs[-1], H/4, W/4)``. ``chs``: the three conv widths."""

    def __init__(self, in_chans: int = 3, chs: tuple[int, int, int] = (32, 32, 64)):
        super().__init__()
        if len(chs) != 3 or any(c < 1 for c in chs):
            raise ValueError(f"DeepStem needs three positive conv widths, got {chs}")
        self.out_chs = chs[-1]
        self.conv1 = ConvBnAct(in_chans, chs[0], 3, stride=2)
        self.conv2 = ConvBnAct(chs[0], chs[1], 3)
        self.conv3 = ConvBnAct(chs[1], chs[2], 3)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv3(self.conv2(self.conv1(x))))  # (B, chs[-1], H/4, W/4)


def make_stem(kind: str, out_chs: int = 64, in_chans: int = 3) -> ResNetStem | DeepStem:
    """The stem of ``kind`` (one of :data:`STEM_KINDS`) with ``out_chs`` output channels, reduction 4."""
    if kind == "resnet":
        return ResNetStem(in_chans, out_chs)
    if kind == "deep":
        return DeepStem(in_chans, (out_chs // 2, out_chs // 2, out_chs))
    if kind == "tiered":
        return DeepStem(in_chans, (3 * out_chs // 8, out_chs // 2, out_chs))
    raise ValueError(f"stem must be one of {STEM_KINDS}, got {kind!r}")


__all__ = ["STEM_KINDS", "ConvBnAct", "DeepStem", "ResNetStem", "make_stem"]
