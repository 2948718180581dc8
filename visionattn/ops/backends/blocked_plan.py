"""The blocked backend's plan: how a separable pattern tiles the grids, built once per (pattern, grids, tile, device).

For every axis the pattern's :class:`~visionattn.ops.patterns.AxisTiling` gives query tiles and key boxes; the
plan holds their products' sizes, the per-axis allowed masks (bool and additive float), which query slots have a
key, the key − query offsets of every slot (relative positions) and how to gather and scatter the tiles.

A plan is built on CPU (it reads values back: ``bool(t.all())``, ``int(...)``) and moved to the device once. The
builders are :func:`visionattn.ops.static.trace_constant`: under ``torch.compile`` they run at trace time and their
results enter the graph as constants, so the backend traces without graph breaks. A plan is plain data: code that
runs per call reads its attributes and never calls methods on it (Dynamo cannot guard methods of a constant).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor

from ..patterns import AxisTiling, Pattern
from ..static import trace_constant


class Gather(NamedTuple):
    """Gather one axis of a tensor into tiles: the axis becomes ``n`` tiles and a tile axis ``T`` is appended last.
    Boxes in arithmetic progression (windows, halo blocks, centred neighborhoods: every tile starts ``step`` after
    the previous one) are a zero-pad + ``unfold`` view (``window = (left pad, right pad, start, span, step)``);
    anything else (NATTEN's inward shifted borders, dilation groups) is an ``index_select`` of the clamped flat
    ``index`` ``(n · T,)`` on the device."""

    index: Tensor | None
    window: tuple[int, int, int, int, int] | None


def _build_gather(index: Tensor, length: int, device: str) -> Gather:
    n, size = index.shape
    valid = index >= 0
    first = valid.int().argmax(dim=1)  # first in-grid slot of each tile (every tile has one)
    starts = index.gather(1, first[:, None])[:, 0] - first  # where each box would start
    step = int(starts[1] - starts[0]) if n > 1 else size
    offset = int(starts[0])
    expected = offset + torch.arange(n)[:, None] * step + torch.arange(size)[None]
    expected = torch.where((expected >= 0) & (expected < length), expected, -1)
    if step > 0 and bool(valid.any(dim=1).all()) and torch.equal(expected, index):
        left, needed = max(0, -offset), offset + (n - 1) * step + size
        return Gather(None, (left, max(0, needed - length), offset + left, needed - offset, step))
    return Gather(index.reshape(-1).clamp_min(0).to(device), None)


def _inverse(index: Tensor, length: int, device: str) -> int | Tensor:
    """Where each query ended up in the flattened tile layout: an offset when the queries sit there in order
    (a ``narrow``), else an index tensor."""
    flat = index.reshape(-1)
    start = int((flat == 0).nonzero()[0])
    if torch.equal(flat[start : start + length], torch.arange(length)):
        return start
    where = torch.empty(length, dtype=torch.long)
    valid = flat >= 0
    where[flat[valid]] = torch.arange(flat.numel())[valid]
    return where.to(device)


def spread(one: Tensor, axis: int, dims: int, groups: int) -> Tensor:
    """Place a per-axis tensor of shape (n_a, T_a[, K_a]) into (n_0..n_D, T_0..T_D[, K_0..K_D])."""
    shape = [1] * (groups * dims)
    for g in range(groups):
        shape[g * dims + axis] = one.shape[g]
    return one.reshape(shape)


class Plan:
    """Everything about a call that depends only on ``key = (pattern, q_grid, kv_grid, tile, device)``.

    ``n``, ``tq``, ``tk``: tiles, query slots, key slots per axis. ``per_axis``: (n_a, T_a, K_a) bool, the 1D rule
    and both slots inside the grid. ``axis_masks``: the same as additive float 0 / -inf on the device. ``deltas``:
    (n_a, T_a, K_a) int64 key − query offsets on the device. ``all_allowed``: every slot pair allowed (no mask).
    ``has_key`` (nT | 1, 1, Tq | 1, 1): the query slot has an allowed key. ``keyless``: some real query has none.
    ``q_gather``, ``k_gather``: one :class:`Gather` per axis. ``q_scatter``: per axis an offset or an index."""

    def __init__(self, pattern: Pattern, q_grid, kv_grid, tile: int, device: str):
        self.key = (pattern, q_grid, kv_grid, tile, device)
        dims = len(kv_grid)
        tilings: list[AxisTiling] = [pattern.axis_tiling(a, q_grid[a], kv_grid[a], tile) for a in range(dims)]
        self.n = tuple(t.q_index.shape[0] for t in tilings)
        self.tq = tuple(t.q_index.shape[1] for t in tilings)
        self.tk = tuple(t.k_index.shape[1] for t in tilings)
        q_valid = torch.ones((), dtype=torch.bool)
        per_axis = []
        self.deltas = []  # per axis (n_a, T_a, K_a) int64 key - query offsets
        for a, t in enumerate(tilings):
            qi, kj = t.q_index[:, :, None], t.k_index[:, None, :]
            one = pattern.axis_allowed(a, qi.clamp_min(0), kj.clamp_min(0), q_grid[a], kv_grid[a])
            per_axis.append(one & (qi >= 0) & (kj >= 0))
            q_valid = q_valid & spread((t.q_index >= 0), a, dims, 2)
            coords = pattern.query_coords(a, q_grid[a])[t.q_index.clamp_min(0)]
            self.deltas.append((t.k_index[:, None, :] - coords[:, :, None]).to(device))
        n_tiles = math.prod(self.n)
        self.per_axis = per_axis
        self.all_allowed = all(bool(one.all()) for one in per_axis)
        q_valid = q_valid.reshape(n_tiles, 1, math.prod(self.tq), 1)
        # Without key padding the mask is the product of the per-axis masks: a float 0 / -inf mask per axis
        # (summed per chunk, never cached whole), has_key (nT | 1, 1, Tq | 1, 1) and whether a real query sees no
        # key. A query slot without an allowed key along an axis keeps that axis' row finite (all 0), so every
        # row of the summed mask has a finite entry (softmax stays finite; such queries output zeros).
        self.axis_masks = [torch.zeros(one.shape).masked_fill_(~one & one.any(-1, keepdim=True), float("-inf"))
                           .to(device) for one in per_axis]
        has_key = functools.reduce(torch.logical_and, [spread(one.any(-1), a, dims, 2)
                                                       for a, one in enumerate(per_axis)])
        has_key = (torch.ones(1, 1, 1, 1, dtype=torch.bool) if self.all_allowed
                   else has_key.reshape(n_tiles, 1, math.prod(self.tq), 1))
        self.keyless = bool((~has_key & q_valid).any())
        self.has_key = has_key.to(device)
        self.device = device
        self.q_gather = [_build_gather(t.q_index, q_grid[a], device) for a, t in enumerate(tilings)]
        self.k_gather = [_build_gather(t.k_index, kv_grid[a], device) for a, t in enumerate(tilings)]
        self.q_scatter = [_inverse(t.q_index, q_grid[a], device) for a, t in enumerate(tilings)]

    @property
    def allowed(self) -> Tensor:
        """Eager convenience for :func:`allowed` of this plan (never used inside a compiled call)."""
        return allowed(*self.key)


@trace_constant(maxsize=128)
def plan(pattern: Pattern, q_grid, kv_grid, tile: int, device: str) -> Plan:
    """The plan of ``key = (pattern, q_grid, kv_grid, tile, device)``, built once (ints, str device)."""
    return Plan(pattern, q_grid, kv_grid, tile, device)


@trace_constant(maxsize=128)
def allowed(pattern: Pattern, q_grid, kv_grid, tile: int, device: str) -> Tensor:
    """(nT, 1, Tq, Tk) bool, or (1, 1, 1, 1) when every pair is allowed (Global and friends never build the
    (Tq, Tk) = N × N mask). Built on first use (key padding and learnable relative bias need it), then cached."""
    p = plan(pattern, q_grid, kv_grid, tile, device)
    if p.all_allowed:
        return torch.ones(1, 1, 1, 1, dtype=torch.bool, device=device)
    dims = len(p.per_axis)
    full = functools.reduce(torch.logical_and, [spread(one, a, dims, 3) for a, one in enumerate(p.per_axis)])
    return full.reshape(math.prod(p.n), 1, math.prod(p.tq), math.prod(p.tk)).to(device)


@trace_constant(maxsize=128)
def bias_index(pattern: Pattern, q_grid, kv_grid, tile: int, device: str, radius: tuple[int, ...]) -> Tensor:
    """Flat relative-bias table index of every (tile, query slot, key slot) ``(nT · Tq · Tk,)`` for a table of
    ``radius``; built once per plan and radius."""
    return table_index(plan(pattern, q_grid, kv_grid, tile, device), radius, None)


def table_index(p: Plan, radius: tuple[int, ...], axes: list[slice] | None) -> Tensor:
    """Flat table index ``(m · Tq · Tk,)`` of the tiles ``axes`` (one slice per axis; None: every tile)."""
    dims, flat = len(radius), 0
    for a, r in enumerate(radius):
        delta = p.deltas[a] if axes is None else p.deltas[a][axes[a]]
        flat = flat * (2 * r + 1) + spread(delta.clamp(-r, r) + r, a, dims, 3)
    return flat.reshape(-1)


def axis_mask(p: Plan, axes: list[slice], dtype: torch.dtype) -> Tensor:
    """Additive mask ``(1, m, 1, Tq, Tk)`` (0 allowed, -inf not) of the tiles ``axes`` (one slice of tiles per axis;
    m = their product), without key padding: the sum of the per-axis masks."""
    dims = len(axes)
    parts = [spread(m[sl].to(dtype), a, dims, 3) for a, (m, sl) in enumerate(zip(p.axis_masks, axes, strict=True))]
    return functools.reduce(torch.add, parts).reshape(1, -1, math.prod(p.tq), math.prod(p.tk))[:, :, None]
