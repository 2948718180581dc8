"""One validated operator call: the inputs every backend receives.

``make_call`` checks user input and raises ``ValueError``/``TypeError`` that say expected vs got; backends
then trust the call. Layout: ``q (B, *q_grid, heads, head_dim)``, ``k (B, *kv_grid, heads, head_dim)``,
``v (B, *kv_grid, heads, v_dim)``, grids of 1, 2 or 3 dims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .patterns import Grid, Pattern
from .position import Position, RelativeBias, RelativeLogits, Rope
from .static import static_shape

FORMS = ("softmax", "linear")


@dataclass(frozen=True, eq=False)
class AttentionCall:
    """One validated operator call (what backends, interceptors and observers receive). Grids are Python ints even
    under ``torch.compile`` with dynamic shapes (specialised), since plans are built per grid."""

    q: Tensor
    k: Tensor
    v: Tensor
    pattern: Pattern
    position: Position
    form: str
    scale: float
    key_padding_mask: Tensor | None  # (B, *kv_grid) bool, True = padding (never attended)
    query_padding_mask: Tensor | None = None  # (B, *q_grid) bool, True = padding (input never read, output zeros)

    @property
    def q_grid(self) -> Grid:
        return static_shape(self.q.shape[1:-2])

    @property
    def kv_grid(self) -> Grid:
        return static_shape(self.k.shape[1:-2])

    @property
    def heads(self) -> int:
        return self.q.shape[-2]

    @property
    def dims(self) -> int:
        return len(self.kv_grid)


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _padding_mask(name: str, mask, expected: tuple[int, ...], device) -> Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a bool tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool or tuple(mask.shape) != expected:
        raise ValueError(f"{name} must be bool {expected} (True = padding), got {mask.dtype} {_shape(mask)}")
    return mask.to(device)


def make_call(q, k, v, pattern, position, form, scale, key_padding_mask,
              query_padding_mask=None) -> AttentionCall:
    """Validate the arguments of :func:`visionattn.ops.attention` and build the call. Without a
    ``query_padding_mask``, self-attention written as ``q is k`` (one tensor for both) takes the key padding mask
    for its queries too; any other call has no padded queries unless it says so."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim not in (4, 5, 6):
            raise ValueError(
                f"{name} must be (B, *grid, heads, head_dim) with a 1-3 dim grid, i.e. rank 4, 5 or 6; "
                f"got rank {t.ndim} with shape {_shape(t)}"
            )
    if not isinstance(pattern, Pattern):
        raise TypeError(f"pattern must be a visionattn.ops Pattern (Global(), Window(7), ...), got {pattern!r}")
    if not (q.ndim == k.ndim == v.ndim):
        raise ValueError(f"q, k, v must have the same rank; got {q.ndim}, {k.ndim}, {v.ndim}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must share a dtype; got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not q.is_floating_point():
        raise TypeError(f"q, k, v must be floating point, got {q.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device; got {q.device}, {k.device}, {v.device}")
    if not (q.shape[0] == k.shape[0] == v.shape[0]):
        raise ValueError(f"batch sizes differ: q {q.shape[0]}, k {k.shape[0]}, v {v.shape[0]}")
    if k.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"k and v must match in (B, *grid, heads); got k {_shape(k)} and v {_shape(v)}")
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"heads differ: q has {q.shape[-2]}, k has {k.shape[-2]}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"head_dim mismatch: q has {q.shape[-1]}, k has {k.shape[-1]} (q·k needs equal sizes)")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    q_grid, kv_grid = static_shape(q.shape[1:-2]), static_shape(k.shape[1:-2])
    pattern.check(q_grid, kv_grid)
    key_padding_mask = _padding_mask("key_padding_mask", key_padding_mask, (k.shape[0], *kv_grid), q.device)
    if query_padding_mask is None and key_padding_mask is not None and q is k and q_grid == kv_grid:
        query_padding_mask = key_padding_mask  # one tensor for queries and keys: self-attention
    query_padding_mask = _padding_mask("query_padding_mask", query_padding_mask, (q.shape[0], *q_grid), q.device)
    _check_position(position, pattern, q, kv_grid)
    if scale is None:
        scale = 1.0 if form == "linear" else 1.0 / math.sqrt(q.shape[-1])
    return AttentionCall(q, k, v, pattern, position, form, float(scale), key_padding_mask, query_padding_mask)


def _check_position(position, pattern: Pattern, q: Tensor, kv_grid: Grid) -> None:
    if position is None:
        return
    if isinstance(position, (RelativeBias, RelativeLogits, Rope)):
        for t in position.tensors():
            if not isinstance(t, Tensor):
                raise TypeError(f"{type(position).__name__} must hold tensors, got {type(t).__name__}")
            if t.device != q.device:
                raise ValueError(
                    f"{type(position).__name__} tensors must be on the device of q, k, v: expected {q.device}, "
                    f"got {t.device} (move the position table or module there, e.g. model.to({str(q.device)!r}))"
                )
    dims, heads, head_dim = len(kv_grid), q.shape[-2], q.shape[-1]
    if isinstance(position, Rope):
        expected = (dims, head_dim // (2 * dims))
        if head_dim % (2 * dims):
            raise ValueError(f"Rope on a {dims}-dim grid needs head_dim divisible by {2 * dims}, got {head_dim}")
        if tuple(position.freqs.shape) != expected:
            raise ValueError(f"Rope freqs must be {expected} for head_dim {head_dim}, got {_shape(position.freqs)}")
        return
    if isinstance(position, RelativeBias):
        if position.table.ndim != dims + 1 or position.table.shape[0] != heads:
            raise ValueError(
                f"RelativeBias table must be (heads={heads}, {dims} offset axes), got {_shape(position.table)}"
            )
        sizes = tuple(position.table.shape[1:])
        radius = position.radius
    elif isinstance(position, RelativeLogits):
        if len(position.tables) != dims:
            raise ValueError(f"RelativeLogits needs {dims} tables (one per axis), got {len(position.tables)}")
        for t in position.tables:
            if t.ndim != 2 or t.shape[1] != head_dim:
                raise ValueError(f"RelativeLogits tables must be (2R+1, head_dim={head_dim}), got {_shape(t)}")
        sizes = tuple(t.shape[0] for t in position.tables)
        radius = position.radius
    else:
        raise TypeError(f"position must be None, RelativeBias, RelativeLogits or Rope; got {type(position).__name__}")
    if any(n % 2 == 0 for n in sizes):
        raise ValueError(
            f"{type(position).__name__} table sizes must be odd (2R+1 offsets from -R to R) on every axis, got {sizes}"
        )
    needed = pattern.max_offset(kv_grid)
    if any(r < n for r, n in zip(radius, needed, strict=True)):
        raise ValueError(
            f"{type(position).__name__} covers offsets up to ±{radius} but {pattern} on grid {kv_grid} "
            f"needs ±{needed}; build the table with radius ≥ {needed}"
        )
