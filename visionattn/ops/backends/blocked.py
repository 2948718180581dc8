"""The blocked backend: tile the queries, take a key box per tile, batched attention over the tiles.

For a separable pattern every axis is covered by an :class:`AxisTiling` (query tiles and key boxes); the
nD tiles are their product. No ``N × N`` tensor exists: memory is ``O(N · box)``. Two plans run them:

* **by groups** (:mod:`.blocked_grouped`, plan :mod:`.blocked_groups`), whenever the tiles are contiguous runs on
  every axis: Window and shifted Window at any grid size, Halo, Axial, Global and Neighborhood without dilation.
  Tiles that look alike form a group: their queries and (clipped) key boxes are views of q, k, v plus one copy,
  their mask and relative bias exist once per group and are broadcast (shifted windows need no mask and no roll).
* **general** (this module, plan :mod:`.blocked_plan`), for the rest (dilation, tiny tiles, keyless queries, and
  with :data:`GROUPS` off): every tile has the same box size; queries, keys and values are gathered into
  ``(B * n_tiles, heads, tile, d)``, a per-tile mask built from the pattern's own 1D rules (and position bias) is
  passed to ``scaled_dot_product_attention``, and the output is scattered back.

Key boxes in arithmetic progression (windows, halo blocks, centred neighborhoods) are views of one zero-padded
copy (a single ``F.pad`` for every axis) + ``unfold``; other boxes (NATTEN's inward-shifted borders, dilation
groups) gather clamped indices. Out-of-grid slots are masked either way, and the only padding values are zeros
made here, so nothing leaks. Key padding masks are gathered like keys. Relative logits are folded into the dot
product (fused kernel; the widened head padded to the kernels' multiple of 8); on CPU a learnable relative bias goes
through :mod:`.biased_sdpa` because fused CPU SDPA gives its mask no gradient, and so does ``v_dim != head_dim``
(SDPA would take its slower math path); on CUDA both stay in SDPA (:mod:`.sdpa`: batch chunks below the grid limit,
aligned masks).

Plans (tilings, per-axis masks, gather indices) depend only on (pattern, grids, tile, device): they are built once,
outside any compiled graph (:func:`visionattn.ops.static.trace_constant`), and a call reads no value back from the
device, so ``torch.compile(fullgraph=True)`` traces the backend without a graph break.

Without key padding the mask is the product of per-axis masks, so it is built as a sum of per-axis float
(0 / -inf) masks, never as a cached ``(tiles, Tq, Tk)`` tensor. When no gradient is needed the tiles run in
chunks of a few MiB on CPU (:func:`_chunks`): the gathered key boxes are ~(box / tile) times the keys, and
building them all at once costs more in fresh memory pages than in copying. With a gradient (or on a GPU) every
tile runs in one go (autograd saves the q, k, v tiles; ``visionattn.analysis.cost`` models exactly that).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..call import AttentionCall
from ..position import RelativeBias, RelativeLogits, position_tensors
from .base import Backend
from .blocked_grouped import grouped_attention
from .blocked_groups import group_plan
from .blocked_plan import Gather, Plan, axis_mask, bias_index, table_index
from .blocked_plan import allowed as plan_allowed
from .blocked_plan import plan as _plan
from .partition import whole
from .tile_attention import attend, fold_relative_logits

_TILE = contextvars.ContextVar("visionattn_blocked_tile", default=None)
DEFAULT_TILE = {1: 64, 2: 8, 3: 4}  # query tile per axis for Neighborhood, by grid dims
# ... and when no gradient is needed on CPU: smaller tiles compute fewer masked pairs (7x7 kernel: a 4x4 tile sees a
# 10x10 box, 100 pairs per query instead of 196) and, run in cache-sized chunks, their extra key-box copies are
# cheap (measured, 1 thread, no grad: 32x32 B=8 18.1 vs 20.8 ms, 56x56 B=4 30.2 vs 35.9 ms); with a gradient every
# box is materialised at once and 8 stays fastest (56x56 B=4 fwd+bwd: 4 → 210 ms, 8 → 136 ms)
INFERENCE_TILE = {1: 64, 2: 4, 3: 4}
# Working set of one chunk of tiles when no gradient is needed, per thread, and at most: every tensor of a chunk
# stays below glibc's largest mmap threshold (32 MiB), so its pages are reused from the heap, not faulted in fresh.
_CHUNK_BYTES, _CHUNK_BYTES_MAX = 8 * 2**20, 32 * 2**20
GROUPS = True  # run calls that have a group plan by groups of identical tiles (tests set False: the general plan)


@contextlib.contextmanager
def neighborhood_tile(size: int):
    """Scoped override of the blocked backend's Neighborhood query tile (per axis)."""
    token = _TILE.set(int(size))
    try:
        yield
    finally:
        _TILE.reset(token)


def _gather(g: Gather, x: Tensor, dim: int, n: int, size: int) -> Tensor:
    """Axis ``dim`` of x → ``n`` tiles, the tile axis of ``size`` appended last. x: already zero-padded along
    ``dim`` by the window's padding (:func:`_tile_view` pads every axis at once)."""
    if g.index is not None:
        x = x.index_select(dim, g.index).unflatten(dim, (n, size))
        return x.movedim(dim + 1, -1)
    _, _, start, span, step = g.window
    return x.narrow(dim, start, span).unfold(dim, size, step)  # (.., n, .., size) — a view


def _tile_view(x: Tensor, gathers: list[Gather], n, t) -> Tensor:
    """(B, *grid, h, d) → (B, *n, h, *t, d): a strided view into one zero-padded copy of x (every windowed axis
    padded by a single ``F.pad``); axes gathered by index are copied along that axis."""
    dims = len(n)
    pad = [p for g in reversed(gathers) for p in (g.window[:2] if g.window is not None else (0, 0))]
    if any(pad):
        x = F.pad(x, [0, 0, 0, 0, *pad])
    for a, g in enumerate(gathers):
        x = _gather(g, x, 1 + a, n[a], t[a])  # axis a → n_a tiles; its tile axis is appended last
    # x: (B, n0.., h, d, t0..)
    return x.permute(0, *range(1, dims + 1), dims + 1, *range(dims + 3, 2 * dims + 3), dims + 2)


def _to_tiles(x: Tensor, gathers: list[Gather], n, t) -> Tensor:
    """(B, *grid, h, d) → (B * n_tiles, h, prod(t), d)."""
    view = _tile_view(x, gathers, n, t)
    return view.reshape(-1, view.shape[len(n) + 1], math.prod(t), view.shape[-1])


def _from_tiles(o: Tensor, plan: Plan, B: int, q_grid) -> Tensor:
    """(B * n_tiles, h, prod(tq), d) → (B, *q_grid, h, d)."""
    dims, h, d = len(plan.n), o.shape[1], o.shape[-1]
    o = o.reshape(B, *plan.n, h, *plan.tq, d)
    order = [0, *[s for a in range(dims) for s in (1 + a, dims + 2 + a)], dims + 1, 2 * dims + 2]
    o = o.permute(order).reshape(B, *[n * t for n, t in zip(plan.n, plan.tq, strict=True)], h, d)
    for a, where in enumerate(plan.q_scatter):
        o = o.narrow(1 + a, where, q_grid[a]) if isinstance(where, int) else o.index_select(1 + a, where)
    return o


def _relative_bias(call: AttentionCall, key: tuple, plan: Plan, axes: list[slice] | None = None) -> Tensor | None:
    """Relative-bias table values in tile layout ``(m, h, Tq, Tk)`` float32, or None: of every tile (the flat table
    index cached per plan and radius), or of the tiles ``axes`` (one slice per axis; its index is not cached).
    (Relative logits are not a bias here: :func:`.tile_attention.fold_relative_logits` puts them inside the dot
    product.)"""
    position = call.position
    if not isinstance(position, RelativeBias):
        return None
    heads, tq, tk = position.table.shape[0], math.prod(plan.tq), math.prod(plan.tk)
    flat = bias_index(*key, position.radius) if axes is None else table_index(plan, position.radius, axes)
    bias = position.table.flatten(1).index_select(1, flat).float()  # (h, m · Tq · Tk)
    return bias.reshape(heads, -1, tq, tk).transpose(0, 1)


def _chunks(levels: tuple[int, ...], per_tile: int, budget: int):
    """Split the tiles, flattened over ``levels = (B, n_0, .., n_{D-1})``, into runs of about ``budget // per_tile``
    tiles that are boxes of the leading axes: yields (index into the leading axes, first flat tile, tile count)."""
    units = [math.prod(levels[lv + 1 :]) for lv in range(len(levels))]  # tiles per step along each level
    per = max(1, budget // per_tile)
    level = next(lv for lv, u in enumerate(units) if u <= per)
    step = max(1, per // units[level])
    for prefix in itertools.product(*(range(s) for s in levels[:level])):
        base = sum(i * u for i, u in zip(prefix, units, strict=False))
        for lo in range(0, levels[level], step):
            hi = min(lo + step, levels[level])
            yield (*prefix, slice(lo, hi)), base + lo * units[level], (hi - lo) * units[level]


def _rows(t: Tensor, rows: slice) -> Tensor:
    """Tiles ``rows`` of a per-tile plan tensor ``(nT, ...)``; a broadcast ``(1, ...)`` one stays as it is."""
    return t if t.shape[0] == 1 else t[rows]


def _attend_tiles(call: AttentionCall, key: tuple, plan: Plan, q: Tensor, k: Tensor, v: Tensor, axes: list[slice],
                  pad: Tensor | None, bias: Tensor | None) -> Tensor:
    """Attention of the tiles ``axes`` (one slice of tiles per grid axis; of every image of the batch axis ``b``):
    q ``(b, m, h, Tq, d)``, k, v ``(b, m, h, Tk, .)``; pad ``(b, m, 1, 1, Tk)`` key padding or None; bias
    ``(m, h, Tq, Tk)`` or None. Returns ``(b, m, h, Tq, e)``; real queries without an allowed key output zeros (with
    key padding or a learnable bias every row is zero-filled where it has no key: no value is read back to decide)."""
    bias = None if bias is None else bias.to(q.dtype)[None]
    first = 0
    for sl, n in zip(axes, plan.n, strict=True):
        first = first * n + sl.start
    rows = slice(first, first + q.shape[1])  # the tiles are a box of whole trailing axes: consecutive rows
    if pad is None and (bias is None or not bias.requires_grad):  # separable mask: per-axis float masks, summed
        has_key, keyless = _rows(plan.has_key, rows)[None], plan.keyless
        o = attend(q, k, v, bias, None if plan.all_allowed else axis_mask(plan, axes, q.dtype), call.scale)
    else:  # key padding or a learnable bias (whose masked_fill keeps the gradient off the masked pairs)
        allowed = _rows(plan_allowed(*key), rows)[None]  # (1, m | 1, 1, Tq | 1, Tk | 1)
        if pad is not None:
            allowed = allowed & ~pad
        has_key, keyless = allowed.any(-1, keepdim=True), True  # (1|b, m|1, 1, Tq|1, 1)
        base = torch.zeros((), dtype=q.dtype, device=q.device) if bias is None else bias
        o = attend(q, k, v, base.masked_fill(~(allowed | ~has_key), float("-inf")), None, call.scale)
    return o.masked_fill(~has_key, 0.0) if keyless else o


def _needs_grad(call: AttentionCall) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(t.requires_grad for t in (call.q, call.k, call.v, *position_tensors(call.position)))


def blocked_attention(call: AttentionCall) -> Tensor:
    B = call.q.shape[0]
    chunked = not (_needs_grad(call) or call.q.device.type != "cpu" or torch.compiler.is_compiling())
    tile = _TILE.get() or (INFERENCE_TILE if chunked else DEFAULT_TILE)[call.dims]
    key = (call.pattern, call.q_grid, call.kv_grid, tile, str(call.q.device))
    groups = group_plan(*key) if GROUPS else None
    if groups is not None:
        return grouped_attention(call, key, groups, chunked)
    if _TILE.get() is None:  # the general plan's tile: its no-grad chunks gather boxes whatever the tile
        key = (*key[:3], DEFAULT_TILE[call.dims], key[4])
    plan = _plan(*key)
    n_tiles = math.prod(plan.n)
    pad = None
    if call.key_padding_mask is not None:
        pad = _to_tiles(call.key_padding_mask[..., None, None], plan.k_gather, plan.n, plan.tk)  # (B*nT,1,Tk,1)
        pad = pad.reshape(B, n_tiles, 1, 1, -1)
    if (isinstance(call.position, RelativeLogits) or _needs_grad(call) or call.q.device.type != "cpu"
            or torch.compiler.is_compiling()):
        return _whole(call, key, plan, pad)
    # No gradient: run the tiles in chunks of ~_CHUNK_BYTES, so gathered key boxes never exist all at once (the
    # whole set is ~(box / tile) times the keys, and fresh pages cost more than the copy) and stay in cache.
    views = [_tile_view(x, g, plan.n, t) for x, g, t in ((call.q, plan.q_gather, plan.tq),
                                                         (call.k, plan.k_gather, plan.tk),
                                                         (call.v, plan.k_gather, plan.tk))]
    h, tq, tk, d, e = call.heads, math.prod(plan.tq), math.prod(plan.tk), call.q.shape[-1], call.v.shape[-1]
    per_tile = h * (call.q.element_size() * (tq * d + tk * d + tk * e + tq * e) + 4 * 3 * tq * tk)
    budget = min(_CHUNK_BYTES * max(1, torch.get_num_threads()), _CHUNK_BYTES_MAX)
    chunks = list(_chunks((B, *plan.n), per_tile, budget))
    out = None if len(chunks) == 1 else call.v.new_empty(B * n_tiles, h, tq, e)
    for index, first, count in chunks:
        b0, t0 = divmod(first, n_tiles)
        b, m = (count // n_tiles, n_tiles) if count >= n_tiles else (1, count)
        rows = slice(t0, t0 + m)
        axes = [(index[1 + a] if isinstance(index[1 + a], slice) else slice(index[1 + a], index[1 + a] + 1))
                if 1 + a < len(index) else slice(0, n) for a, n in enumerate(plan.n)]
        q, k, v = (x[index].reshape(b, m, h, -1, x.shape[-1]) for x in views)
        o = _attend_tiles(call, key, plan, q, k, v, axes, None if pad is None else pad[b0 : b0 + b, rows],
                          _relative_bias(call, key, plan, None if out is None else axes))  # one chunk: cached index
        if out is None:
            return _from_tiles(o.reshape(B * n_tiles, h, tq, e), plan, B, call.q_grid)
        out[first : first + count] = o.reshape(count, h, tq, e)
    return _from_tiles(out, plan, B, call.q_grid)


def _whole(call: AttentionCall, key: tuple, plan: Plan, pad: Tensor | None) -> Tensor:
    """Every tile in one go (what autograd saves for backward: the q, k, v tiles, and SDPA's own tensors)."""
    B, n_tiles = call.q.shape[0], math.prod(plan.n)
    q = _to_tiles(call.q, plan.q_gather, plan.n, plan.tq)
    k = _to_tiles(call.k, plan.k_gather, plan.n, plan.tk)
    v = _to_tiles(call.v, plan.k_gather, plan.n, plan.tk)
    v_dim = v.shape[-1]
    if isinstance(call.position, RelativeLogits):
        q, k, v = fold_relative_logits(call, plan, q, k, v)
        bias = None
    else:
        bias = _relative_bias(call, key, plan)  # (nT, h, Tq, Tk) or None
    q, k, v = (t.reshape(B, n_tiles, *t.shape[1:]) for t in (q, k, v))
    axes = [slice(0, n) for n in plan.n]
    o = _attend_tiles(call, key, plan, q, k, v, axes, pad, bias)[..., :v_dim]
    return _from_tiles(o.reshape(B * n_tiles, *o.shape[2:]), plan, B, call.q_grid)


class TileSet(NamedTuple):
    """What the blocked backend runs for one set of equal tiles of a call (cost models read it): ``tiles`` per image
    of ``q_slots`` queries and ``k_slots`` keys each; ``masked``: the tiles have a mask (disallowed or out-of-grid
    slots); ``shared_mask``: one ``(Tq, Tk)`` mask for every tile and image (group plan), else one per tile and
    image; ``axes``: per grid axis ``(tiles whose key − query offsets are stored, query slots, key slots)`` (a
    group stores them once: 1); ``output_view``: the call's output is a view of the attention output (a single
    whole-grid tile)."""

    tiles: int
    q_slots: int
    k_slots: int
    masked: bool
    shared_mask: bool
    axes: tuple[tuple[int, int, int], ...]
    output_view: bool


def tile_sets(pattern, q_grid, kv_grid, tile: int | None = None) -> tuple[TileSet, ...]:
    """The sets of equal tiles the blocked backend runs for a call on these grids (one per group of the group plan,
    else one for the general plan); ``tile``: the Neighborhood tile hint (default :data:`DEFAULT_TILE`)."""
    q_grid, kv_grid = tuple(q_grid), tuple(kv_grid)
    tile = DEFAULT_TILE[len(kv_grid)] if tile is None else tile
    gp = group_plan(pattern, q_grid, kv_grid, tile, "cpu") if GROUPS else None
    if gp is not None:
        view = whole(gp.q_runs, (1, *q_grid, 1, 1))
        return tuple(TileSet(math.prod(g.n), math.prod(g.tq), math.prod(g.tk), g.mask is not None, True,
                             tuple(zip((1,) * len(g.n), g.tq, g.tk, strict=True)), view) for g in gp.groups)
    p = _plan(pattern, q_grid, kv_grid, tile, "cpu")
    n = math.prod(p.n)
    return (TileSet(n, math.prod(p.tq), math.prod(p.tk), not p.all_allowed, False,
                    tuple(zip(p.n, p.tq, p.tk, strict=True)), n == 1),)


def _refuse(call: AttentionCall) -> str | None:
    if call.form != "softmax":
        return f"runs form='softmax' only, got form={call.form!r}"
    if not call.pattern.separable:
        return f"{type(call.pattern).__name__} is not separable per axis, so it has no block structure"
    return None


BLOCKED = Backend("blocked", blocked_attention, _refuse)
