"""Attention patterns: who attends to whom on a grid.

A pattern is a small frozen dataclass. Its *spec* is :meth:`Pattern.mask`, the dense boolean matrix
``(N_q, N_k)`` of allowed query→key pairs on a grid flattened in raster (C) order. Every backend must
reproduce exactly that set.

Most patterns are *separable*: a query ``p`` may see key ``j`` iff, on every grid axis ``a``, the 1D rule
``axis_allowed(a, p_a, j_a)`` holds. For those, :meth:`axis_tiling` also says how the blocked backend covers
the axis with query tiles and key boxes (``AxisTiling``); the boxes may be larger than the true key set,
the 1D rule masks the rest, so a tiling can only be wrong by being too small, which the tests catch.

Grids are tuples ``(N,)``, ``(H, W)`` or ``(T, H, W)``. The query grid usually equals the key grid; it
differs for strided Halo attention (queries subsampled) and for Global cross-attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from .static import trace_constant

Grid = tuple[int, ...]

BORDERS = ("shift", "pad")


@dataclass(frozen=True, eq=False)
class AxisTiling:
    """How the blocked backend covers one axis.

    q_index: ``(n_tiles, q_tile)`` int64, query index of each tile slot, ``-1`` for an empty slot.
    k_index: ``(n_tiles, k_tile)`` int64, key index of each box slot, ``-1`` outside the grid.
    Every query index appears exactly once in ``q_index``.
    """

    q_index: Tensor
    k_index: Tensor


def _mark_outside(index: Tensor, length: int) -> Tensor:
    """Replace indices outside ``[0, length)`` by -1."""
    return torch.where((index >= 0) & (index < length), index, torch.full_like(index, -1))


def _ones(qi: Tensor, kj: Tensor) -> Tensor:
    """All-True bool of ``qi`` and ``kj`` broadcast together, on their device."""
    return torch.ones(torch.broadcast_shapes(qi.shape, kj.shape), dtype=torch.bool, device=qi.device)


def _whole_axis(q_len: int, kv_len: int) -> AxisTiling:
    """One tile holding every query, one box holding every key."""
    return AxisTiling(torch.arange(q_len)[None], torch.arange(kv_len)[None])


def _per_axis(value, axis: int) -> int:
    return value[axis] if isinstance(value, tuple) else value


class Pattern:
    """Base class. Subclasses define the 1D rule (separable) or :meth:`mask` (non-separable)."""

    separable: ClassVar[bool] = True
    dims: ClassVar[tuple[int, ...]] = (1, 2, 3)

    # -- contract ---------------------------------------------------------------------------------
    def query_grid(self, kv_grid: Grid) -> Grid:
        """The query grid this pattern expects for a key grid (same grid unless subsampled)."""
        return kv_grid

    def check(self, q_grid: Grid, kv_grid: Grid) -> None:
        """Raise ``ValueError`` (expected vs got) if the pattern cannot run on these grids."""
        if len(kv_grid) not in self.dims:
            raise ValueError(f"{self} works on grids with {self.dims} dims; got a {len(kv_grid)}-dim grid {kv_grid}")
        for name in ("kernel", "size", "shift", "block", "dilation"):
            value = getattr(self, name, None)
            if isinstance(value, tuple) and len(value) != len(kv_grid):
                raise ValueError(
                    f"{self}: {name} has {len(value)} entries but the grid {kv_grid} has {len(kv_grid)} dims"
                )
        expected = self.query_grid(kv_grid)
        if tuple(q_grid) != tuple(expected):
            raise ValueError(f"{self} on key grid {kv_grid} expects query grid {expected}, got {tuple(q_grid)}")

    def axis_allowed(self, axis: int, qi: Tensor, kj: Tensor, q_len: int, kv_len: int) -> Tensor:
        """1D rule on one axis: bool tensor, broadcasting ``qi`` (query index) against ``kj`` (key index)."""
        raise NotImplementedError

    def axis_tiling(self, axis: int, q_len: int, kv_len: int, tile: int) -> AxisTiling:
        """Query tiles and key boxes for the blocked backend; ``tile`` is a size hint (Neighborhood)."""
        raise NotImplementedError

    def query_coords(self, axis: int, q_len: int, device: torch.device | str | None = None) -> Tensor:
        """Position of each query on the key grid along ``axis`` (int64 ``(q_len,)`` on ``device``, default CPU);
        used for relative offsets."""
        return torch.arange(q_len, device=device)

    # -- derived, shared by every pattern ---------------------------------------------------------
    def mask(self, kv_grid: Grid, q_grid: Grid | None = None, device: torch.device | str | None = None) -> Tensor:
        """Dense ``(N_q, N_k)`` bool mask on raster-flattened grids: the spec every backend must match. Built on
        ``device`` (default CPU) from the per-axis rules, with no host synchronisation."""
        q_grid = tuple(self.query_grid(kv_grid) if q_grid is None else q_grid)
        full = torch.ones((), dtype=torch.bool, device=device)
        for axis, (lq, lk) in enumerate(zip(q_grid, kv_grid, strict=True)):
            qi, kj = torch.arange(lq, device=device)[:, None], torch.arange(lk, device=device)[None, :]
            one = self.axis_allowed(axis, qi, kj, lq, lk)  # (L_q, L_k)
            # full: (q_0..q_{a-1}, k_0..k_{a-1}) -> add axis a to both sides
            full = full.unsqueeze(axis).unsqueeze(-1) & _place(one, axis, len(kv_grid))
        return full.reshape(math.prod(q_grid), math.prod(kv_grid))

    def mask_rows(self, kv_grid: Grid, q_grid: Grid, rows: Tensor,
                  device: torch.device | str | None = None) -> Tensor:
        """Rows of :meth:`mask` for the raster-flattened query indices ``rows`` ``(Q,)``: bool ``(Q, N_k)`` on
        ``device`` (default: ``rows``' device), equal to ``mask(kv_grid, q_grid)[rows]`` without building the
        ``(N_q, N_k)`` mask for separable patterns (their 1D rules are combined axis by axis on the rows'
        coordinates)."""
        device = rows.device if device is None else device
        rows = rows.to(device)
        if not self.separable:
            return self.mask(kv_grid, q_grid, device=device)[rows]
        qi = torch.unravel_index(rows, tuple(q_grid))  # one (Q,) index vector per axis
        out = torch.ones(len(rows), 1, dtype=torch.bool, device=device)
        for axis, (lq, lk) in enumerate(zip(q_grid, kv_grid, strict=True)):
            kj = torch.arange(lk, device=device)[None, :]
            one = self.axis_allowed(axis, qi[axis][:, None], kj, lq, lk)  # (Q, L_k)
            out = (out[:, :, None] & one.expand(len(rows), lk)[:, None, :]).reshape(len(rows), -1)
        return out

    def max_offset(self, kv_grid: Grid) -> tuple[int, ...]:
        """Largest |key - query| position offset per axis over allowed pairs (size of relative tables)."""
        return _max_offset(self, tuple(kv_grid))

    def _max_offset(self, kv_grid: Grid) -> tuple[int, ...]:
        q_grid = self.query_grid(kv_grid)
        if self.separable:  # per axis, never the dense mask
            out = []
            for axis, (lq, lk) in enumerate(zip(q_grid, kv_grid, strict=True)):
                allowed = self.axis_allowed(axis, torch.arange(lq)[:, None], torch.arange(lk)[None, :], lq, lk)
                delta = (torch.arange(lk)[None, :] - self.query_coords(axis, lq)[:, None]).abs()
                out.append(int(torch.where(allowed, delta, 0).max()))
            return tuple(out)
        allowed = self.mask(kv_grid, q_grid)
        qc = _coords(tuple(self.query_coords(a, n) for a, n in enumerate(q_grid)))  # (Nq, D)
        kc = _coords(tuple(torch.arange(n) for n in kv_grid))  # (Nk, D)
        delta = (kc[None] - qc[:, None]).abs()  # (Nq, Nk, D)
        delta = torch.where(allowed[..., None], delta, torch.zeros_like(delta))
        return tuple(int(x) for x in delta.amax(dim=(0, 1)))


@trace_constant(maxsize=512)
def _max_offset(pattern: Pattern, kv_grid: Grid) -> tuple[int, ...]:
    return pattern._max_offset(kv_grid)


def _place(one: Tensor, axis: int, dims: int) -> Tensor:
    """Reshape a ``(Lq, Lk)`` axis mask to broadcast into a ``(q_0..q_a, k_0..k_a)`` running mask."""
    lq, lk = one.shape
    shape = [1] * axis + [lq] + [1] * axis + [lk]
    return one.reshape(shape)


def _coords(per_axis: tuple[Tensor, ...]) -> Tensor:
    """Raster-ordered coordinates ``(N, D)`` from per-axis coordinate vectors."""
    mesh = torch.meshgrid(*per_axis, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Global(Pattern):
    """Every query attends to every key (ViT). The query grid may differ from the key grid
    (cross-attention); relative positions then use the query's own index."""

    def query_grid(self, kv_grid: Grid) -> Grid:
        return kv_grid

    def check(self, q_grid: Grid, kv_grid: Grid) -> None:
        if len(q_grid) != len(kv_grid):
            raise ValueError(f"Global(): query grid {q_grid} and key grid {kv_grid} must have the same dims")

    def mask(self, kv_grid: Grid, q_grid: Grid | None = None, device: torch.device | str | None = None) -> Tensor:
        q_grid = kv_grid if q_grid is None else q_grid
        return torch.ones(math.prod(q_grid), math.prod(kv_grid), dtype=torch.bool, device=device)

    def axis_allowed(self, axis, qi, kj, q_len, kv_len):
        return _ones(qi, kj)

    def axis_tiling(self, axis, q_len, kv_len, tile):
        return _whole_axis(q_len, kv_len)


@dataclass(frozen=True)
class Neighborhood(Pattern):
    """SASA / neighborhood attention: each query sees the ``kernel``-wide box of keys around it.

    ``kernel`` and ``dilation`` are ints or per-axis tuples; kernels are odd. With dilation ``d`` a query
    only sees keys of its own residue class ``i mod d``, spaced ``d`` apart.

    Borders (``border=``):
      * ``"shift"`` (NATTEN): the window is shifted inward so every query sees exactly ``kernel`` keys per
        axis. Needs at least ``kernel * dilation`` positions per axis, else a ``ValueError``.
      * ``"pad"`` (SASA): the window stays centred; positions beyond the border are zero padding in SASA.
        Here they are *masked*: border queries see fewer keys and padding never enters the result.
        A kernel wider than the grid is allowed and degenerates to Global on that axis.
    """

    kernel: int | tuple[int, ...] = 7
    dilation: int | tuple[int, ...] = 1
    border: str = "shift"

    def __post_init__(self):
        kernels = self.kernel if isinstance(self.kernel, tuple) else (self.kernel,)
        dilations = self.dilation if isinstance(self.dilation, tuple) else (self.dilation,)
        if any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"Neighborhood kernel must be odd and positive, got {self.kernel}")
        if any(d < 1 for d in dilations):
            raise ValueError(f"Neighborhood dilation must be ≥ 1, got {self.dilation}")
        if self.border not in BORDERS:
            raise ValueError(f"Neighborhood border must be one of {BORDERS}, got {self.border!r}")

    def check(self, q_grid, kv_grid):
        super().check(q_grid, kv_grid)
        if self.border != "shift":
            return
        for axis, length in enumerate(kv_grid):
            k, d = _per_axis(self.kernel, axis), _per_axis(self.dilation, axis)
            if k * d > length:
                raise ValueError(
                    f"{self}: kernel {k} × dilation {d} = {k * d} is larger than grid axis {axis} of length "
                    f"{length} (border='shift' needs kernel × dilation ≤ length; use border='pad' or Global)"
                )

    def axis_allowed(self, axis, qi, kj, q_len, kv_len):
        k, d = _per_axis(self.kernel, axis), _per_axis(self.dilation, axis)
        radius = k // 2
        same_class = (qi % d) == (kj % d)
        if self.border == "pad":
            return same_class & ((kj - qi).abs() <= radius * d)
        group = qi % d
        group_len = (kv_len - group + d - 1) // d  # positions in this residue class
        start = torch.clamp(torch.minimum(qi // d - radius, group_len - k), min=0)
        return same_class & (kj // d >= start) & (kj // d < start + k)

    def axis_tiling(self, axis, q_len, kv_len, tile):
        k, d = _per_axis(self.kernel, axis), _per_axis(self.dilation, axis)
        radius = k // 2
        q_rows, k_rows = [], []
        for group in range(min(d, kv_len)):
            positions = torch.arange(group, kv_len, d)
            group_len = len(positions)
            t = max(1, min(tile, group_len))
            box = min(t + k - 1, group_len) if self.border == "shift" else t + k - 1
            for first in range(0, group_len, t):
                q_slots = torch.arange(first, first + t)
                if self.border == "shift":
                    start = max(0, min(first - radius, group_len - box))
                else:
                    start = first - radius
                k_slots = torch.arange(start, start + box)
                q_rows.append(torch.where(q_slots < group_len, group + d * q_slots, -1))
                k_rows.append(torch.where((k_slots >= 0) & (k_slots < group_len), group + d * k_slots, -1))
        width_q = max(len(r) for r in q_rows)
        width_k = max(len(r) for r in k_rows)
        return AxisTiling(_stack_padded(q_rows, width_q), _stack_padded(k_rows, width_k))


def _stack_padded(rows: list[Tensor], width: int) -> Tensor:
    """Stack 1D index rows of different lengths, padding with -1."""
    out = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


@dataclass(frozen=True)
class Halo(Pattern):
    """HaloNet blocked local attention: queries in non-overlapping ``block``-wide blocks; each block sees
    the keys of its block plus ``halo`` positions on every side (masked beyond the border; HaloNet
    zero-pads there). ``stride`` subsamples the queries (downsampling): the query grid is
    ``ceil(L / stride)`` per axis and query ``p`` sits at key position ``p * stride``."""

    block: int | tuple[int, ...] = 8
    halo: int = 3
    stride: int = 1

    def __post_init__(self):
        blocks = self.block if isinstance(self.block, tuple) else (self.block,)
        if any(b < 1 for b in blocks) or self.halo < 0 or self.stride < 1:
            raise ValueError(f"Halo needs block ≥ 1, halo ≥ 0, stride ≥ 1; got {self}")
        if any(b % self.stride for b in blocks):
            raise ValueError(f"Halo block {self.block} must be a multiple of stride {self.stride}")

    def query_grid(self, kv_grid):
        return tuple(-(-n // self.stride) for n in kv_grid)

    def query_coords(self, axis, q_len, device=None):
        return torch.arange(q_len, device=device) * self.stride

    def axis_allowed(self, axis, qi, kj, q_len, kv_len):
        b = _per_axis(self.block, axis)
        start = (qi * self.stride) // b * b - self.halo
        return (kj >= start) & (kj < start + b + 2 * self.halo)

    def axis_tiling(self, axis, q_len, kv_len, tile):
        b = _per_axis(self.block, axis)
        n = -(-kv_len // b)
        q_tile = b // self.stride
        q_index = _mark_outside(torch.arange(n * q_tile).reshape(n, q_tile), q_len)
        k_index = torch.arange(n)[:, None] * b - self.halo + torch.arange(b + 2 * self.halo)[None]
        return AxisTiling(q_index, _mark_outside(k_index, kv_len))


@dataclass(frozen=True)
class Window(Pattern):
    """Swin windows: the grid is cut into non-overlapping ``size``-wide windows; a query sees its window.

    ``shift`` moves the window grid by ``shift`` positions (Swin's shifted windows): on each axis
    query ``i`` and key ``j`` share a window iff ``floor((i - shift) / size) == floor((j - shift) / size)``.
    This is exactly Swin's roll-and-mask at the borders: the wrapped-around pieces are never joined.
    Axes that ``size`` does not divide are padded at the end, and padding is masked (Swin v1 does not).
    """

    size: int | tuple[int, ...] = 7
    shift: int | tuple[int, ...] = 0

    def __post_init__(self):
        sizes = self.size if isinstance(self.size, tuple) else (self.size,)
        shifts = self.shift if isinstance(self.shift, tuple) else (self.shift,)
        if any(s < 1 for s in sizes):
            raise ValueError(f"Window size must be ≥ 1, got {self.size}")
        if any(not 0 <= sh < max(sizes) for sh in shifts):
            raise ValueError(f"Window shift must be in [0, size), got shift={self.shift} size={self.size}")

    def check(self, q_grid, kv_grid):
        super().check(q_grid, kv_grid)
        for axis, length in enumerate(kv_grid):
            size, shift = _per_axis(self.size, axis), _per_axis(self.shift, axis)
            if size > length:
                raise ValueError(
                    f"{self}: window {size} does not fit grid axis {axis} of length {length} "
                    f"(expected size ≤ {length}; Swin clips the window to the grid: use Window({length}))"
                )
            if shift >= size:
                raise ValueError(f"{self}: shift {shift} on axis {axis} must be < window size {size}")

    def axis_allowed(self, axis, qi, kj, q_len, kv_len):
        size, shift = _per_axis(self.size, axis), _per_axis(self.shift, axis)
        return torch.div(qi - shift, size, rounding_mode="floor") == torch.div(kj - shift, size, rounding_mode="floor")

    def axis_tiling(self, axis, q_len, kv_len, tile):
        size, shift = _per_axis(self.size, axis), _per_axis(self.shift, axis)
        offset = shift - size if shift else 0
        n = -(-(kv_len - offset) // size)
        index = _mark_outside(offset + torch.arange(n * size).reshape(n, size), kv_len)
        return AxisTiling(index, index)


@dataclass(frozen=True)
class Axial(Pattern):
    """Attention along one grid axis: query and key must agree on every other axis (Axial-DeepLab).
    Height-then-width axial attention is two of these in sequence (``visionattn.layers.AxialAttention``)."""

    axis: int = 0

    def check(self, q_grid, kv_grid):
        super().check(q_grid, kv_grid)
        if not 0 <= self.axis < len(kv_grid):
            raise ValueError(f"{self}: axis {self.axis} out of range for a {len(kv_grid)}-dim grid {kv_grid}")

    def axis_allowed(self, axis, qi, kj, q_len, kv_len):
        if axis == self.axis:
            return _ones(qi, kj)
        return qi == kj

    def axis_tiling(self, axis, q_len, kv_len, tile):
        if axis == self.axis:
            return _whole_axis(q_len, kv_len)
        index = torch.arange(kv_len)[:, None]
        return AxisTiling(index, index)


def axial_patterns(dims: int = 2) -> tuple[Axial, ...]:
    """The axial composition in application order: height then width (then time first for 3D)."""
    return tuple(Axial(axis) for axis in range(dims))


@dataclass(frozen=True)
class Causal(Pattern):
    """Causal (autoregressive) attention on a sequence: query ``i`` sees the keys ``j <= i`` (GPT, CLIP's text
    tower). 1-D grids only, the query grid equal to the key grid. Position 0 always sees itself, so no query is
    keyless. The blocked backend covers the axis with one tile and one key box (a dense triangle masked by the 1D
    rule, one SDPA call); FlexAttention skips the blocks above the diagonal; the linear backend (``Q(KᵀV)`` sums over
    every key) refuses it, so the causal linear form runs on the reference."""

    dims: ClassVar[tuple[int, ...]] = (1,)

    def axis_allowed(self, axis, qi, kj, q_len, kv_len):
        return kj <= qi

    def axis_tiling(self, axis, q_len, kv_len, tile):
        return _whole_axis(q_len, kv_len)


# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strided(Pattern):
    """Sparse Transformer's strided pattern on the raster-flattened grid (any dims): query ``i`` sees key
    ``j`` iff ``|i - j| < local`` (a band in raster order) or ``(i - j) mod stride == 0`` (a strided
    column). With ``local = stride = W`` on an ``(H, W)`` grid and ``causal=True`` that is the paper's
    "previous W positions and the column above"; non-causal, the band reaches into the neighbouring rows."""

    local: int = 8
    stride: int = 8
    causal: bool = False
    separable: ClassVar[bool] = False

    def __post_init__(self):
        if self.local < 1 or self.stride < 1:
            raise ValueError(f"Strided needs local ≥ 1 and stride ≥ 1, got {self}")

    def mask(self, kv_grid, q_grid=None, device=None):
        return self.mask_rows(kv_grid, kv_grid, torch.arange(math.prod(kv_grid), device=device))

    def mask_rows(self, kv_grid, q_grid, rows, device=None):
        rows = rows if device is None else rows.to(device)
        i, j = rows[:, None], torch.arange(math.prod(kv_grid), device=rows.device)[None, :]
        allowed = ((i - j).abs() < self.local) | ((i - j) % self.stride == 0)
        return allowed & (j <= i) if self.causal else allowed


@dataclass(frozen=True, eq=False)
class Graph(Pattern):
    """Arbitrary sets and graphs: query ``i`` sees key ``j`` iff the edge ``(i, j)`` exists.

    ``edges``: ``(E, 2)`` int64 of (query, key) index pairs on the raster-flattened grid, or a dense
    ``(N, N)`` bool adjacency, on any device. ``self_loops`` adds ``(i, i)``. A query with no edge outputs zeros.

    The edges are checked once per token count (reading their range back from the device once); after that the
    adjacency of each ``(N, device)`` is built once, on that device, and kept: per call there is no host sync and
    no copy. Do not modify ``edges`` in place after the first call."""

    edges: Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.long))
    self_loops: bool = True
    separable: ClassVar[bool] = False

    def __post_init__(self):
        object.__setattr__(self, "_checked", set())  # token counts whose edges passed the checks
        object.__setattr__(self, "_adjacency", {})  # (n, device) -> (n, n) bool on that device

    def _check_edges(self, n: int) -> None:
        """Raise ``TypeError``/``ValueError`` (expected vs got) unless the edges fit ``n`` tokens; once per n."""
        if n in self._checked:
            return
        edges = self.edges
        if not isinstance(edges, torch.Tensor) or edges.dtype not in (torch.bool, torch.int32, torch.int64):
            got = edges.dtype if isinstance(edges, torch.Tensor) else type(edges).__name__
            raise TypeError(f"Graph edges must be an int64 (E, 2) tensor or a bool (N, N) adjacency, got {got}")
        if edges.dtype == torch.bool:
            if tuple(edges.shape) != (n, n):
                raise ValueError(f"Graph adjacency must be ({n}, {n}) for {n} tokens, got {tuple(edges.shape)}")
        else:
            if edges.ndim != 2 or edges.shape[1] != 2:
                raise ValueError(f"Graph edges must be (E, 2) int64 pairs, got shape {tuple(edges.shape)}")
            if edges.numel():
                low, high = (int(x) for x in torch.aminmax(edges))  # the one host sync, once per n
                if low < 0 or high >= n:
                    raise ValueError(f"Graph edges must index tokens in [0, {n}), got range [{low}, {high}]")
        self._checked.add(n)

    def adjacency(self, n: int, device: torch.device | str | None = None) -> Tensor:
        """Dense ``(n, n)`` bool adjacency on ``device`` (default CPU); raises ``ValueError`` on bad edges. Built
        on the device from the edges (no host sync) once per ``(n, device)``; the returned tensor is shared, so do
        not modify it in place."""
        self._check_edges(n)
        device = torch.device("cpu") if device is None else torch.device(device)
        key = (n, str(device))
        adj = self._adjacency.get(key)
        if adj is not None:
            return adj
        edges = self.edges.to(device)
        if edges.dtype == torch.bool:
            adj = edges.clone()
        else:
            adj = torch.zeros(n, n, dtype=torch.bool, device=device)
            adj[edges[:, 0].long(), edges[:, 1].long()] = True  # index_put on the device: no sync
        if self.self_loops:
            adj |= torch.eye(n, dtype=torch.bool, device=device)
        self._adjacency[key] = adj
        return adj

    def check(self, q_grid, kv_grid):
        super().check(q_grid, kv_grid)
        self._check_edges(math.prod(kv_grid))

    def mask(self, kv_grid, q_grid=None, device=None):
        return self.adjacency(math.prod(kv_grid), device)

    def __repr__(self):
        return f"Graph(edges={tuple(self.edges.shape)}, self_loops={self.self_loops})"


def describe(pattern: Pattern) -> str:
    """Short human name used in tables and errors."""
    return repr(pattern)
