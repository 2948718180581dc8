"""The blocked backend's group plan: the query tiles of a call sorted into groups of identical tiles.

Along each grid axis the pattern's :class:`~visionattn.ops.patterns.AxisTiling` gives query tiles and key boxes.
Clipped to the grid (no slot outside it) and trimmed to the keys some query of the tile may see, consecutive tiles
that look the same — equal query and key counts, the same 1D allowed matrix, the same key − query offsets, evenly
spaced — form a *segment* (:class:`Segment`). A group is one segment per axis; its tiles share

* their layout: queries and key boxes are ``narrow`` + ``unfold`` views of q, k, v, one copy each
  (:mod:`.partition`), never a gather and never a padded copy;
* their mask: one ``(Tq, Tk)`` matrix (None when every pair is allowed) broadcast over tiles and images, so no
  per-tile or per-image mask exists;
* their relative offsets: a relative bias is looked up once per group, ``(h, Tq, Tk)``, not once per tile.

Swin's shifted windows on an ``L = n·S`` axis are three segments: the piece ``[0, s)``, ``n − 1`` whole windows
from ``s`` and the piece ``[L − S + s, L)``; the cyclic shift's mask only ever separates those pieces, which here
are tiles of their own, so shifted windows need no mask, no roll and no padding (2D: nine groups, the big one
holding ``(n − 1)²`` windows). A size the window does not divide adds one clipped segment at the end. Halo is
first / interior / last block per axis (border boxes clipped instead of masked), Axial one line per tile, Global
one tile, Neighborhood first / interior / last tile per axis with one shared mask each.

A call gets a group plan only when it pays: every tile's queries and keys are contiguous runs on each axis (not
dilation), every query has a key, at most :data:`MAX_GROUPS` groups, and tiles of at least
:data:`MIN_TILE_QUERIES` queries on average (so not Neighborhood with a 1-query tile hint); otherwise
:func:`group_plan` returns None and the backend runs its general tile plan (:mod:`.blocked_plan`).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor

from ..patterns import Pattern
from ..static import trace_constant
from .partition import Run

MAX_GROUPS = 64
MIN_TILE_QUERIES = 4


class Segment(NamedTuple):
    """``count`` equal tiles along one axis: tile ``t`` holds queries ``q_start + t·q_size + [0, q_size)`` and the key
    box ``k_start + t·k_step + [0, k_size)``; ``allowed`` ``(q_size, k_size)`` bool (None: all pairs allowed) and
    ``delta`` ``(q_size, k_size)`` int64 key − query offsets are the same for every tile (CPU tensors)."""

    count: int
    q_start: int
    q_size: int
    k_start: int
    k_size: int
    k_step: int
    allowed: Tensor | None
    delta: Tensor


def _contiguous(index: Tensor) -> bool:
    return bool(torch.equal(index, torch.arange(int(index[0]), int(index[0]) + len(index))))


def _axis_tiles(pattern: Pattern, axis: int, q_len: int, kv_len: int, tile: int) -> list[tuple] | None:
    """Per tile ``(q_start, q_size, k_start, k_size, allowed, delta)`` with clipped, trimmed boxes, in query order;
    None when a tile's queries or keys are not one contiguous run, or a query has no key."""
    tiling = pattern.axis_tiling(axis, q_len, kv_len, tile)
    coords = pattern.query_coords(axis, q_len)
    tiles = []
    for q_row, k_row in zip(tiling.q_index, tiling.k_index, strict=True):
        q, k = q_row[q_row >= 0], k_row[k_row >= 0]
        if len(q) == 0:
            continue
        if len(k) == 0 or not _contiguous(q) or not _contiguous(k):
            return None
        allowed = pattern.axis_allowed(axis, q[:, None], k[None, :], q_len, kv_len)  # (q, k) bool
        if not bool(allowed.any(1).all()):
            return None
        used = allowed.any(0).nonzero()[:, 0]
        k, allowed = k[int(used[0]) : int(used[-1]) + 1], allowed[:, int(used[0]) : int(used[-1]) + 1]  # trimmed
        delta = k[None, :] - coords[q][:, None]
        tiles.append((int(q[0]), len(q), int(k[0]), len(k), None if bool(allowed.all()) else allowed, delta))
    return tiles


def _same(a: Tensor | None, b: Tensor | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


def axis_segments(pattern: Pattern, axis: int, q_len: int, kv_len: int, tile: int) -> list[Segment] | None:
    """The tiles of one axis as segments of equal, evenly spaced tiles (see the module docstring), or None."""
    tiles = _axis_tiles(pattern, axis, q_len, kv_len, tile)
    if tiles is None:
        return None
    segments: list[Segment] = []
    for q0, nq, k0, nk, allowed, delta in tiles:
        last = segments[-1] if segments else None
        if last is not None and last.q_size == nq and last.k_size == nk and _same(last.allowed, allowed) \
                and torch.equal(last.delta, delta) and q0 == last.q_start + last.count * nq:
            step = k0 - (last.k_start + (last.count - 1) * last.k_step)
            if step >= 1 and (last.count == 1 or step == last.k_step):
                segments[-1] = last._replace(count=last.count + 1, k_step=step)
                continue
        segments.append(Segment(1, q0, nq, k0, nk, nk, allowed, delta))
    return segments


class Group(NamedTuple):
    """One segment per axis. ``n``, ``tq``, ``tk``: tiles, query slots, key slots per axis (``n``/``tq``/``tk``/
    ``deltas`` are what the relative-logit fold of :mod:`.blocked` reads). ``deltas``: per axis ``(1, tq_a, tk_a)``
    int64 on the device. ``mask``: additive float32 ``(Tq, Tk)`` (0 / -inf) on the device or None; ``allowed``: the
    same as bool, or None."""

    n: tuple[int, ...]
    tq: tuple[int, ...]
    tk: tuple[int, ...]
    deltas: tuple[Tensor, ...]
    mask: Tensor | None
    allowed: Tensor | None


class GroupPlan(NamedTuple):
    """``groups``; ``q_runs`` / ``k_runs``: their query tiles and key boxes as :data:`.partition.Run`;
    ``k_exact``: the key boxes cover every key exactly once (windows, lines), so their gradients are copied, not
    accumulated; ``segments``: per axis, for tests and the cost model."""

    groups: tuple[Group, ...]
    q_runs: tuple[Run, ...]
    k_runs: tuple[Run, ...]
    k_exact: bool
    segments: tuple[tuple[Segment, ...], ...]


def _spread(one: Tensor, axis: int, dims: int) -> Tensor:
    """A per-axis ``(tq_a, tk_a)`` tensor placed into ``(tq_0..tq_D, tk_0..tk_D)``."""
    shape = [1] * (2 * dims)
    shape[axis], shape[dims + axis] = one.shape
    return one.reshape(shape)


def _group(segs: tuple[Segment, ...], device: str) -> Group:
    dims = len(segs)
    tq, tk = tuple(s.q_size for s in segs), tuple(s.k_size for s in segs)
    allowed = None
    if any(s.allowed is not None for s in segs):
        parts = [_spread(torch.ones(s.q_size, s.k_size, dtype=torch.bool) if s.allowed is None else s.allowed, a, dims)
                 for a, s in enumerate(segs)]
        allowed = functools.reduce(torch.logical_and, parts).reshape(math.prod(tq), math.prod(tk))
    mask = None if allowed is None else torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf")).to(device)
    return Group(tuple(s.count for s in segs), tq, tk, tuple(s.delta[None].to(device) for s in segs), mask,
                 None if allowed is None else allowed.to(device))


def _covers_once(segments: list[Segment], kv_len: int) -> bool:
    seen = torch.zeros(kv_len, dtype=torch.long)
    for s in segments:
        for t in range(s.count):
            seen[s.k_start + t * s.k_step : s.k_start + t * s.k_step + s.k_size] += 1
    return bool((seen == 1).all())


@trace_constant(maxsize=128)
def group_plan(pattern: Pattern, q_grid, kv_grid, tile: int, device: str) -> GroupPlan | None:
    """The group plan of a blocked call, or None when the general tile plan runs it (module docstring)."""
    if not pattern.separable:
        return None
    per_axis = []
    for a, (lq, lk) in enumerate(zip(q_grid, kv_grid, strict=True)):
        segments = axis_segments(pattern, a, lq, lk, tile)
        if segments is None:
            return None
        per_axis.append(segments)
    n_groups = math.prod(len(s) for s in per_axis)
    n_tiles = math.prod(sum(s.count for s in segs) for segs in per_axis)
    if n_groups > MAX_GROUPS or math.prod(q_grid) < MIN_TILE_QUERIES * n_tiles:
        return None
    groups, q_runs, k_runs = [], [], []
    for segs in _product(per_axis):
        groups.append(_group(segs, device))
        q_runs.append(tuple((s.q_start, s.count, s.q_size, s.q_size) for s in segs))
        k_runs.append(tuple((s.k_start, s.count, s.k_size, s.k_step) for s in segs))
    exact = all(_covers_once(segs, lk) for segs, lk in zip(per_axis, kv_grid, strict=True))
    return GroupPlan(tuple(groups), tuple(q_runs), tuple(k_runs), exact, tuple(tuple(s) for s in per_axis))


def _product(per_axis: list[list[Segment]]):
    if not per_axis:
        yield ()
        return
    for first in per_axis[0]:
        for rest in _product(per_axis[1:]):
            yield (first, *rest)


@trace_constant(maxsize=128)
def group_bias_index(pattern: Pattern, q_grid, kv_grid, tile: int, device: str,
                     radius: tuple[int, ...]) -> tuple[Tensor, ...]:
    """Per group the flat relative-bias table index ``(Tq · Tk,)`` of a table of ``radius`` (one lookup per group)."""
    plan = group_plan(pattern, q_grid, kv_grid, tile, device)
    out = []
    for g in plan.groups:
        dims, flat = len(radius), 0
        for a, r in enumerate(radius):
            flat = flat * (2 * r + 1) + _spread(g.deltas[a][0].clamp(-r, r) + r, a, dims)
        out.append(flat.reshape(-1))
    return tuple(out)
