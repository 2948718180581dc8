"""Swin's patch merging: the learnable 2× downsampling between stages of a channels-last pyramid."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PatchMerging(nn.Module):
    """Merge each 2×2 neighbourhood: ``(B, H, W, dim)`` → ``(B, H/2, W/2, out_dim)`` (``out_dim`` default ``2·dim``).

    The four neighbours are concatenated along channels in Swin's order ``x0 = (0, 0), x1 = (1, 0),
    x2 = (0, 1), x3 = (1, 1)`` (row offset varies fastest, as timm's reshape-permute and the original
    ``cat([x0, x1, x2, x3])``), then ``LayerNorm(4·dim)`` and a bias-free ``Linear(4·dim → out_dim)``.
    H and W must be even (a ``ValueError`` names the size otherwise).
    """

    def __init__(self, dim: int, out_dim: int | None = None, norm_eps: float = 1e-5):
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim or 2 * dim
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, self.out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"PatchMerging expects channels-last (B, H, W, {self.dim}), got {got}")
        if x.shape[1] % 2 or x.shape[2] % 2:
            x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))  # (B, H + H%2, W + W%2, C), zeros at the end
        B, H, W, C = x.shape
        x = x.reshape(B, H // 2, 2, W // 2, 2, C)  # (B, H/2, dh, W/2, dw, C)
        x = x.permute(0, 1, 3, 4, 2, 5).flatten(3)  # (B, H/2, W/2, dw·dh·C): (0,0), (1,0), (0,1), (1,1)
        return self.reduction(self.norm(x))  # (B, H/2, W/2, out_dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, out_dim={self.out_dim}"


__all__ = ["PatchMerging"]
