"""Partition a grid into runs of equal tiles and back: views plus one copy, forward and backward.

A *run* (:data:`Run`) cuts every grid axis ``a`` of a tensor ``(B, *grid, h, d)`` into ``count_a`` boxes of
``size_a`` positions, the first starting at ``start_a`` and each ``step_a`` after the previous one. The boxes of a
run become tiles ``(B · Π count_a, h, Π size_a, d)``: ``narrow`` and ``unfold`` views of the tensor, a permute, and
one copy. No index gather, no padding copy: boxes lie inside the grid (the caller clips them).

Two memory layouts of the same ``(N, h, T, d)`` tiles: *heads first* (contiguous; what batched matmuls take without
another copy) and *tokens first* (``(N, T, h, d)`` contiguous, returned transposed). Tokens first copies whole box
rows of ``size · h · d`` contiguous values (about 4x faster than heads first, whose copy moves ``d`` values at a time)
and is the layout fused SDPA reads and writes on CPU; :func:`merge` and the backward passes take either layout.

:func:`split` cuts one tensor into several runs (query tiles or key boxes of the blocked backend's groups) and
:func:`merge` writes runs back into a grid. Both are autograd functions whose backward is the other one, so a
backward pass costs one copy per run too (autograd's own ``narrow`` backward would allocate a zero tensor of the
whole grid for every run). Runs whose boxes do not overlap and cover the grid (``exact``) are written with copies
into an uninitialised tensor; otherwise (halo key boxes overlap, clipped boxes may leave gaps) the gradient is
accumulated into zeros with ``unfold_backward``.

Run format (plain ints, so ``torch.compile`` sees constants): one ``(start, count, size, step)`` per grid axis.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Run = tuple[tuple[int, int, int, int], ...]  # per grid axis (start, count, size, step)


def _box_view(x: Tensor, run: Run) -> Tensor:
    """(B, *grid, h, d) → the run's boxes as a view ``(B, *count, *size, h, d)``."""
    dims = len(run)
    for a, (start, count, size, step) in enumerate(run):
        span = (count - 1) * step + size
        x = x.narrow(1 + a, start, span).unfold(1 + a, size, step)  # axis a → count; size appended last
    # x: (B, *count, h, d, *size)
    return x.permute(0, *range(1, dims + 1), *range(dims + 3, 2 * dims + 3), dims + 1, dims + 2)


def _size(run: Run) -> int:
    """Positions in one box of the run."""
    return math.prod([size for _, _, size, _ in run])


def whole(runs: tuple[Run, ...], shape: tuple[int, ...]) -> bool:
    """One run of one box that is the whole grid of ``shape = (B, *grid, h, d)`` (Global, whole-grid windows)."""
    return len(runs) == 1 and all(count == 1 and size == n for (_, count, size, _), n in zip(runs[0], shape[1:-2],
                                                                                           strict=True))


def _tiles(x: Tensor, run: Run, heads_first: bool) -> Tensor:
    """(B, *grid, h, d) → ``(B · Π count, h, Π size, d)`` in the asked layout: one copy, or a view when the run is
    the whole grid (a part of the grid that happens to be viewable, e.g. one row of one image, is copied too: tiles
    never keep a larger tensor alive)."""
    box = _box_view(x, run)  # (B, *count, *size, h, d)
    h, d, dims = box.shape[-2], box.shape[-1], len(run)
    if whole((run,), tuple(x.shape)):
        return box.reshape(-1, _size(run), h, d).transpose(1, 2)  # (B, h, N, d): a view of x
    if heads_first:
        box = box.permute(0, *range(1, dims + 1), 2 * dims + 1, *range(dims + 1, 2 * dims + 1), 2 * dims + 2)
        return box.reshape(-1, h, _size(run), d).contiguous()  # (N, h, T, d)
    return box.reshape(-1, _size(run), h, d).contiguous().transpose(1, 2)  # (N, T, h, d) memory, (N, h, T, d) view


def _tokens_first(tiles: Tensor) -> bool:
    return tiles.transpose(1, 2).is_contiguous()


def _box_values(tiles: Tensor, run: Run, batch: int) -> Tensor:
    """Tiles ``(N, h, T, e)`` (either layout) as a view ``(B, *count, *size, h, e)`` when tokens first, else as a
    view ``(B, *count, h, *size, e)`` (heads first, or made so by one copy)."""
    counts, sizes = [c for _, c, _, _ in run], [s for _, _, s, _ in run]
    h, e = tiles.shape[1], tiles.shape[-1]
    if _tokens_first(tiles):
        return tiles.transpose(1, 2).reshape(batch, *counts, *sizes, h, e)
    return tiles.contiguous().reshape(batch, *counts, h, *sizes, e)


def _write(out: Tensor, tiles: Tensor, run: Run, accumulate: bool) -> None:
    """Write (``accumulate=False``: copy; else add) the run's tiles into their boxes of ``out (B, *grid, h, d)``."""
    dims = len(run)
    values = _box_values(tiles, run, out.shape[0])
    box = _box_view(out, run)  # (B, *count, *size, h, d): a view of out
    if not _tokens_first(tiles):  # both as (B, *count, h, *size, d)
        box = box.permute(0, *range(1, dims + 1), 2 * dims + 1, *range(dims + 1, 2 * dims + 1), 2 * dims + 2)
    if not accumulate:
        box.copy_(values)
        return
    # overlapping boxes: fold them back axis by axis (last grid axis first) with unfold_backward, from the layout
    # unfold made, (B, *count, h, d, *size), into the region the run spans
    if _tokens_first(tiles):
        g = values.permute(0, *range(1, dims + 1), 2 * dims + 1, 2 * dims + 2, *range(dims + 1, 2 * dims + 1))
    else:
        g = values.permute(0, *range(1, dims + 2), 2 * dims + 2, *range(dims + 2, 2 * dims + 2))
    region = out
    for a, (start, count, size, step) in enumerate(run):
        region = region.narrow(1 + a, start, (count - 1) * step + size)
    for a in reversed(range(dims)):
        shape = list(g.shape[:-1])  # the unfolded tensor without its last box axis (that of axis a)
        shape[1 + a] = region.shape[1 + a]
        g = torch.ops.aten.unfold_backward(g, shape, 1 + a, run[a][2], run[a][3])
    region.add_(g)


def _merge(tiles: tuple[Tensor, ...], runs: tuple[Run, ...], shape: tuple[int, ...], exact: bool) -> Tensor:
    """The runs' tiles written into a new ``shape`` grid tensor ``(B, *grid, h, d)``; ``exact``: every position is
    in exactly one box (then nothing is zero-filled or added)."""
    out = tiles[0].new_empty(shape) if exact else tiles[0].new_zeros(shape)
    for t, run in zip(tiles, runs, strict=True):
        _write(out, t, run, accumulate=not exact)
    return out


class _Split(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, runs: tuple[Run, ...], exact: bool, heads_first: bool):
        ctx.runs, ctx.exact, ctx.shape = runs, exact, tuple(x.shape)
        return tuple([_tiles(x, run, heads_first) for run in runs])

    @staticmethod
    def backward(ctx, *grads):
        if all([g is None for g in grads]):
            return None, None, None, None
        template = [g for g in grads if g is not None][0]
        filled = tuple([template.new_zeros(_tile_shape(ctx.shape, run)) if g is None else g
                        for g, run in zip(grads, ctx.runs, strict=True)])
        return _merge(filled, ctx.runs, ctx.shape, ctx.exact), None, None, None


class _Merge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shape: tuple[int, ...], runs: tuple[Run, ...], *tiles: Tensor):
        ctx.runs, ctx.heads_first = runs, [not _tokens_first(t) for t in tiles]
        return _merge(tiles, runs, shape, exact=True)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return (None, None, *[_tiles(grad, run, hf) for run, hf in zip(ctx.runs, ctx.heads_first, strict=True)])


def _tile_shape(shape: tuple[int, ...], run: Run) -> tuple[int, ...]:
    return (shape[0] * math.prod([c for _, c, _, _ in run]), shape[-2], _size(run), shape[-1])


def tiles(x: Tensor, run: Run, heads_first: bool = True) -> Tensor:
    """One run of :func:`split` without autograd (masks, chunks computed without gradients)."""
    return _tiles(x, run, heads_first)


def write(out: Tensor, tiles: Tensor, run: Run) -> None:
    """Copy one run's tiles ``(B · Π count, h, Π size, e)`` (either layout) into their boxes of
    ``out (B, *grid, h, e)`` (no autograd: chunks of a result computed without gradients)."""
    _write(out, tiles, run, accumulate=False)


def split(x: Tensor, runs: tuple[Run, ...], exact: bool, heads_first: bool = True) -> tuple[Tensor, ...]:
    """x ``(B, *grid, h, d)`` → one ``(B · Π count, h, Π size, d)`` tensor per run (tiles in raster order of their
    boxes, positions in a box in raster order), heads first or tokens first in memory (module docstring).
    ``exact``: the boxes of all runs cover every grid position exactly once (the backward then writes the gradient
    without zero-filling or adding)."""
    return _Split.apply(x, runs, exact, heads_first)


def merge(tiles: tuple[Tensor, ...], runs: tuple[Run, ...], shape: tuple[int, ...]) -> Tensor:
    """The inverse of :func:`split` for runs that cover a grid exactly once (query tiles): tiles
    ``(B · Π count, h, Π size, e)`` per run, either layout → ``shape = (B, *grid, h, e)``. One whole-grid box: a
    view of its tiles (nothing is copied)."""
    if whole(runs, shape):
        B, *grid, h, e = shape
        return tiles[0].reshape(B, h, *grid, e).movedim(1, -2)  # (B, *grid, h, e) view
    return _Merge.apply(tuple(shape), runs, *tiles)
