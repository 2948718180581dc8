"""Patchify stems: images → channels-last token grids (patchify = learnable downsampling)."""

from __future__ import annotations

from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch × patch`` convolution: ``(B, C_in, H, W)`` → ``(B, H/patch, W/patch, dim)``
    channels-last, optionally followed by LayerNorm (Swin). H and W must be multiples of ``patch``."""

    def __init__(self, patch: int, dim: int, in_chans: int = 3, norm: bool = False, norm_eps: float = 1e-5):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        if H % self.patch or W % self.patch:
            raise ValueError(
                f"PatchEmbed: image size {H}×{W} is not a multiple of the patch size {self.patch} "
                f"(expected H and W divisible by {self.patch})"
            )
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, H/p, W/p, dim)
