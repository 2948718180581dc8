"""Padding masks on token grids: from a pixel mask (batched images of different sizes) to each grid a layer sees.

A padding mask is bool ``(B, *grid)`` with True = padding, the layout of the operator's ``key_padding_mask``.
The rule, everywhere: **a token is padding when everything it covers is padding**; positions beyond the grid
(the ceil of a non-dividing stride, the odd row PatchMerging pads) count as padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def downsample_mask(mask: Tensor, factor: int | tuple[int, ...]) -> Tensor:
    """``(B, *grid)`` bool → ``(B, *ceil(grid / factor))``: a coarse token is padding iff the whole
    ``factor``-wide block of fine positions it covers is padding (out-of-grid positions count as padding).

    ``factor``: one int for every axis, or one per axis (1 keeps an axis)."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.ndim < 2:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"downsample_mask expects a bool mask (B, *grid), got {got}")
    grid = tuple(mask.shape[1:])
    factors = (factor,) * len(grid) if isinstance(factor, int) else tuple(factor)
    if len(factors) != len(grid) or any(int(f) < 1 for f in factors):
        raise ValueError(f"downsample_mask: factor must be ≥ 1 per grid axis of {grid}, got {factor}")
    if all(f == 1 for f in factors):
        return mask
    pad = []
    for n, f in zip(reversed(grid), reversed(factors), strict=True):  # F.pad lists the last axis first
        pad += [0, -n % f]
    padded = F.pad(mask, pad, value=True) if any(pad) else mask  # (B, *ceil(grid / f) · f)
    shape = [mask.shape[0]]
    for n, f in zip(padded.shape[1:], factors, strict=True):
        shape += [n // f, f]
    blocks = padded.reshape(shape)  # (B, g_0, f_0, g_1, f_1, ...)
    return blocks.all(dim=tuple(range(2, 2 * len(grid) + 1, 2)))  # (B, g_0, g_1, ...)


__all__ = ["downsample_mask"]
