"""Relative position tables of grid-wide patterns, resized for a grid larger than the one they were built for.

A ``Global`` / ``Axial`` relative table covers offsets up to the grid a model was built at; a larger input needs
more. As for absolute embeddings (ViT interpolates its position table), the learned table is interpolated to the
needed radius: bicubic on 2D bias tables (timm's ``resize_rel_pos_bias_table``), linear / trilinear on 1D / 3D,
linear along the offset axis of each relative-logits table. The centre (offset 0) stays at the centre. Gradients
flow into the stored table; nothing is written back.
"""

from __future__ import annotations

import torch.nn.functional as F

from ..ops.position import RelativeBias, RelativeLogits

_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}


def resize_relative(position, needed: tuple[int, ...]):
    """``position`` (a ``RelativeBias`` / ``RelativeLogits`` descriptor, or anything else: returned as is) with
    every axis whose radius is below ``needed`` interpolated to radius ``needed`` (axes already covering it keep
    their size)."""
    if isinstance(position, RelativeBias):
        radius = position.radius
        if all(r >= n for r, n in zip(radius, needed, strict=True)):
            return position
        size = tuple(2 * max(r, n) + 1 for r, n in zip(radius, needed, strict=True))
        table = position.table  # (heads, 2R_0+1, ...)
        resized = F.interpolate(table[None].float(), size=size, mode=_MODES[len(size)], align_corners=False)
        return RelativeBias(resized[0].to(table.dtype))  # (heads, *size)
    if isinstance(position, RelativeLogits):
        tables = []
        for table, r, n in zip(position.tables, position.radius, needed, strict=True):
            if r >= n:
                tables.append(table)
                continue
            line = table.t()[None].float()  # (1, head_dim, 2R+1)
            resized = F.interpolate(line, size=2 * n + 1, mode="linear", align_corners=False)
            tables.append(resized[0].t().to(table.dtype))  # (2n+1, head_dim)
        return RelativeLogits(tuple(tables))
    return position


__all__ = ["resize_relative"]
