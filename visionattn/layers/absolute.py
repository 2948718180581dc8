"""Absolute position encodings, added to the tokens at the embedding (never inside the operator).

Tokens are channels-last ``(B, *grid, dim)`` with ``grid`` = ``(N,)``, ``(H, W)`` or ``(T, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}


def _check_grid(grid, what: str) -> tuple[int, ...]:
    grid = tuple(int(n) for n in grid)
    if not 1 <= len(grid) <= 3 or any(n < 1 for n in grid):
        raise ValueError(f"{what}: grid must be 1-3 positive ints ((N,), (H, W) or (T, H, W)), got {grid}")
    return grid


def sincos_position_embedding(
    grid: tuple[int, ...], dim: int, temperature: float = 10000.0, device=None, dtype=torch.float32
) -> Tensor:
    """Fixed sin-cos embedding (Transformer / MAE style) for a 1D, 2D or 3D grid: ``(1, *grid, dim)``.

    ``dim`` is split into ``len(grid)`` equal groups, group ``a`` encoding the position along axis ``a``. Inside
    a group of size ``g``: channel ``i < g/2`` is ``sin(pos · ω_i)``, channel ``g/2 + i`` is ``cos(pos · ω_i)``
    with ``ω_i = temperature ** (-i / (g/2))`` (MAE's ``get_1d_sincos_pos_embed_from_grid``). Position 0 is
    therefore ``[0, …, 0, 1, …, 1]`` in every group. Needs ``dim`` divisible by ``2 * len(grid)``.
    """
    grid = _check_grid(grid, "sincos_position_embedding")
    dims = len(grid)
    if dim % (2 * dims):
        raise ValueError(
            f"sincos_position_embedding on a {dims}-dim grid needs dim divisible by 2 * {dims} = {2 * dims}, "
            f"got dim={dim}"
        )
    half = dim // (2 * dims)
    omega = temperature ** (-torch.arange(half, dtype=torch.float64, device=device) / half)  # (half,)
    coords = torch.meshgrid(*(torch.arange(n, dtype=torch.float64, device=device) for n in grid), indexing="ij")
    parts = []
    for c in coords:  # c: grid
        angle = c[..., None] * omega  # (*grid, half)
        parts += [angle.sin(), angle.cos()]
    # groups in axis order: [sin_0, cos_0, sin_1, cos_1, ...]
    return torch.cat(parts, dim=-1)[None].to(dtype)  # (1, *grid, dim)


def content_extent(padding_mask: Tensor) -> Tensor:
    """``(B, *grid)`` bool (True = padding) → ``(B, dims)`` int64: per sample and axis, 1 + the last index that
    holds content (0 for an all-padding sample) — the content grid of a sample padded at the end."""
    valid = ~padding_mask
    dims = valid.ndim - 1
    out = []
    for axis in range(dims):
        others = tuple(a + 1 for a in range(dims) if a != axis)
        along = valid.any(dim=others) if others else valid  # (B, L_axis)
        index = torch.arange(1, along.shape[1] + 1, device=valid.device)  # 1-based positions
        out.append((along * index).amax(dim=1))  # (B,)
    return torch.stack(out, dim=1)  # (B, dims)


def _check_tokens(x: Tensor, dims: int, dim: int, what: str) -> None:
    if x.ndim != dims + 2 or x.shape[-1] != dim:
        raise ValueError(
            f"{what} expects channels-last tokens (B, *grid, {dim}) with a {dims}-dim grid, got shape {tuple(x.shape)}"
        )


class LearnedPositionEmbedding(nn.Module):
    """Learned absolute embedding (ViT): ``weight (1, *grid, dim)``, trunc-normal init std 0.02.

    ``forward(x)``: x ``(B, *grid', dim)`` channels-last → ``x + embedding``, the embedding resized to ``grid'``
    when it differs from the trained grid (linear / bicubic / trilinear for 1D / 2D / 3D, ``align_corners=False``,
    antialiased when shrinking, as timm's ``resample_abs_pos_embed`` does, so timm checkpoints behave the same).
    """

    def __init__(self, grid: tuple[int, ...], dim: int):
        super().__init__()
        self.grid = _check_grid(grid, "LearnedPositionEmbedding")
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(1, *self.grid, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def embedding(self, grid: tuple[int, ...]) -> Tensor:
        """The embedding for ``grid``: ``(1, *grid, dim)``, interpolated when ``grid`` is not the trained grid."""
        grid = _check_grid(grid, "LearnedPositionEmbedding")
        if grid == self.grid:
            return self.weight
        if len(grid) != len(self.grid):
            raise ValueError(f"LearnedPositionEmbedding was built for a {len(self.grid)}-dim grid, got grid {grid}")
        dims = len(grid)
        w = self.weight.movedim(-1, 1)  # (1, dim, *grid)
        w = F.interpolate(w.float(), size=grid, mode=_MODES[dims], align_corners=False, antialias=dims == 2)
        return w.movedim(1, -1).to(self.weight.dtype)  # (1, *grid', dim)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, *grid', dim)`` → ``x + embedding``. With ``padding_mask`` ``(B, *grid')`` bool (True = padding,
        content in the leading corner as batching pads at the end), each sample gets the embedding resized to
        its own content extent and placed there (zeros on the padding): the content is embedded exactly as if it
        came alone, whatever the batch's padded size. (One host read of the extents per call with a mask.)"""
        _check_tokens(x, len(self.grid), self.dim, "LearnedPositionEmbedding")
        grid = tuple(x.shape[1:-1])
        if padding_mask is None:
            return x + self.embedding(grid).to(x.dtype)
        if padding_mask.dtype != torch.bool or tuple(padding_mask.shape) != (x.shape[0], *grid):
            raise ValueError(f"LearnedPositionEmbedding: padding_mask must be bool {(x.shape[0], *grid)}, got "
                             f"{padding_mask.dtype} {tuple(padding_mask.shape)}")
        extents = content_extent(padding_mask).tolist()  # per sample, the content grid
        cache: dict[tuple[int, ...], Tensor] = {}
        rows = []
        for extent in map(tuple, extents):
            if extent not in cache:
                size = extent if all(extent) else grid  # an all-padding sample: any embedding will do
                emb = self.embedding(size)  # (1, *size, dim)
                pad = [0, 0]
                for n, e in zip(reversed(grid), reversed(size), strict=True):
                    pad += [0, n - e]
                cache[extent] = F.pad(emb, pad)  # (1, *grid, dim), zeros past the content
            rows.append(cache[extent])
        return x + torch.cat(rows).to(x.dtype)  # (B, *grid, dim)

    def extra_repr(self) -> str:
        return f"grid={self.grid}, dim={self.dim}"


class SinCosPositionEmbedding(nn.Module):
    """Adds the fixed :func:`sincos_position_embedding` for whatever grid ``x (B, *grid, dim)`` has."""

    def __init__(self, dim: int, temperature: float = 10000.0):
        super().__init__()
        self.dim, self.temperature = dim, temperature

    def forward(self, x: Tensor) -> Tensor:
        _check_tokens(x, x.ndim - 2, self.dim, "SinCosPositionEmbedding")
        pos = sincos_position_embedding(tuple(x.shape[1:-1]), self.dim, self.temperature, device=x.device)
        return x + pos.to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, temperature={self.temperature}"


__all__ = ["LearnedPositionEmbedding", "SinCosPositionEmbedding", "content_extent", "sincos_position_embedding"]
