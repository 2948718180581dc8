"""MBConv (inverted residual with squeeze-excitation), pre-norm, as in CoAtNet's convolutional stages."""

from __future__ import annotations

import torch.nn.functional as F
from timm.layers import DropPath, SEModule
from torch import Tensor, nn


class MBConv(nn.Module):
    """``(B, in_dim, H, W)`` → ``(B, dim, H/stride, W/stride)``, channels-first (a convolutional block).

    ``x ← shortcut(x) + DropPath(conv1x1(SE(GELU(BN(dwconv3x3_s(GELU(BN(conv1x1(BN(x))))))))))``: pre-norm BN,
    1×1 expansion to ``dim · expand_ratio``, depthwise 3×3 with ``stride`` (CoAtNet's Conv(DepthConv(Conv(Norm(x),
    stride=2))), the stride on the depthwise conv as in timm), squeeze-excitation with ``se_ratio · dim`` hidden
    channels (SiLU), 1×1 projection. Shortcut: identity, or ``Proj(Pool(x))`` — 2×2 average pooling when
    ``stride == 2`` and a 1×1 conv when the width changes. With ``stride == 2``, H and W must be even.
    """

    def __init__(self, in_dim: int, dim: int, stride: int = 1, expand_ratio: float = 4.0, se_ratio: float = 0.25,
                 drop_path: float = 0.0, bn_eps: float = 1e-5):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MBConv stride must be 1 or 2, got {stride}")
        mid = int(dim * expand_ratio)
        self.stride = stride
        self.shortcut_proj = nn.Conv2d(in_dim, dim, 1) if in_dim != dim else nn.Identity()
        self.pre_norm = nn.BatchNorm2d(in_dim, eps=bn_eps)
        self.conv_expand = nn.Conv2d(in_dim, mid, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(mid, eps=bn_eps)
        self.conv_dw = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.norm2 = nn.BatchNorm2d(mid, eps=bn_eps)
        se_dim = max(1, int(se_ratio * dim))
        self.se = SEModule(mid, rd_channels=se_dim, act_layer=nn.SiLU) if se_ratio else nn.Identity()
        self.conv_project = nn.Conv2d(mid, dim, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 2 and (x.shape[-2] % 2 or x.shape[-1] % 2):
            raise ValueError(f"MBConv with stride 2 needs an even H×W, got {x.shape[-2]}×{x.shape[-1]}")
        shortcut = F.avg_pool2d(x, 2) if self.stride == 2 else x  # (B, in_dim, H/s, W/s)
        shortcut = self.shortcut_proj(shortcut)  # (B, dim, H/s, W/s)
        x = self.conv_expand(self.pre_norm(x))  # (B, mid, H, W)
        x = F.gelu(self.norm1(x))
        x = F.gelu(self.norm2(self.conv_dw(x)))  # (B, mid, H/s, W/s)
        x = self.conv_project(self.se(x))  # (B, dim, H/s, W/s)
        return shortcut + self.drop_path(x)


__all__ = ["MBConv"]
