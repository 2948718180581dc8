"""DETR's 2D sine position encoding of a feature map with padding (Carion et al. 2020, ``PositionEmbeddingSine``).

Each content position gets its 1-based row and column index counted over the *content* only (a cumulative sum of
the non-padding mask), optionally normalised to ``(0, scale]`` by the content's height / width, so the encoding of
an image does not depend on how much padding the batch added. Channels: the first half encode y, the second half x;
inside each half, channel pairs ``(2i, 2i + 1)`` are ``sin`` / ``cos`` of ``pos / temperature^(2i / half)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["sine_position_embedding"]


def sine_position_embedding(padding_mask: Tensor, dim: int, temperature: float = 10000.0, normalize: bool = True,
                            scale: float = 2 * math.pi, dtype: torch.dtype = torch.float32) -> Tensor:
    """``padding_mask`` bool ``(B, H, W)`` (True = padding) → channels-last encoding ``(B, H, W, dim)``.

    ``dim`` must be even (half for y, half for x) and each half even (sin/cos pairs), i.e. a multiple of 4. Values
    at padded positions are defined (the counts stop growing there) but meaningless; attention masks them."""
    if not isinstance(padding_mask, Tensor) or padding_mask.dtype != torch.bool or padding_mask.ndim != 3:
        got = f"{padding_mask.dtype} {tuple(padding_mask.shape)}" if isinstance(padding_mask, Tensor) else padding_mask
        raise ValueError(f"sine_position_embedding: expected a bool padding mask (B, H, W), got {got}")
    if dim % 4:
        raise ValueError(f"sine_position_embedding: dim must be a multiple of 4 (y/x halves of sin/cos pairs), "
                         f"got {dim}")
    half = dim // 2
    content = (~padding_mask).to(torch.float32)  # (B, H, W)
    y = content.cumsum(1)  # (B, H, W): 1-based row among content rows
    x = content.cumsum(2)  # (B, H, W): 1-based column among content columns
    if normalize:
        eps = 1e-6
        y = y / (y[:, -1:, :] + eps) * scale
        x = x / (x[:, :, -1:] + eps) * scale
    i = torch.arange(half, dtype=torch.float32, device=padding_mask.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / half)  # (half,)
    parts = []
    for coord in (y, x):
        angle = coord[..., None] / freq  # (B, H, W, half)
        parts.append(torch.stack((angle[..., 0::2].sin(), angle[..., 1::2].cos()), dim=-1).flatten(-2))
    return torch.cat(parts, dim=-1).to(dtype)  # (B, H, W, dim)
