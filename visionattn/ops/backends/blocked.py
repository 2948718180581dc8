"""The blocked backend: tile the queries, gather a key box per tile, batched attention over the tiles.

For a separable pattern every axis is covered by an :class:`AxisTiling` (query tiles and key boxes); the
nD tiles are their product. Queries, keys and values are gathered into ``(B * n_tiles, heads, tile, d)``,
a per-tile mask built from the pattern's own 1D rules (and position bias) is passed to
``scaled_dot_product_attention``, and the output is scattered back. No ``N × N`` tensor exists: memory
is ``O(N · box)``. Global and Axial fall out as one tile / one tile per line.

Key boxes in arithmetic progression (windows, halo blocks, centred neighborhoods) are views of one zero-padded
copy (a single ``F.pad`` for every axis) + ``unfold``; other boxes (NATTEN's inward-shifted borders, dilation
groups) gather clamped indices. Out-of-grid slots are masked either way, and the only padding values are zeros
made here, so nothing leaks. Key padding masks are gathered like keys. Relative logits are folded into the dot
product (fused kernel); a learnable relative bias goes through :mod:`.biased_sdpa` because fused SDPA gives its
mask no gradient, and so does ``v_dim != head_dim`` (SDPA would take its slower math path).

Without key padding the mask is the product of per-axis masks, so it is built as a sum of per-axis float
(0 / -inf) masks, never as a cached ``(tiles, Tq, Tk)`` tensor. When no gradient is needed the tiles run in
chunks of a few MiB on CPU (:func:`_chunks`): the gathered key boxes are ~(box / tile) times the keys, and
building them all at once costs more in fresh memory pages than in copying. With a gradient (or on a GPU) every
tile runs in one go (autograd saves the q, k, v tiles; ``visionattn.analysis.cost`` models exactly that).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..call import AttentionCall
from ..patterns import AxisTiling, Pattern
from ..position import RelativeBias, RelativeLogits
from .base import Backend
from .biased_sdpa import biased_attention, masked_attention

_TILE = contextvars.ContextVar("visionattn_blocked_tile", default=None)
DEFAULT_TILE = {1: 64, 2: 8, 3: 4}  # query tile per axis for Neighborhood, by grid dims
# Working set of one chunk of tiles when no gradient is needed, per thread, and at most: every tensor of a chunk
# stays below glibc's largest mmap threshold (32 MiB), so its pages are reused from the heap, not faulted in fresh.
_CHUNK_BYTES, _CHUNK_BYTES_MAX = 8 * 2**20, 32 * 2**20


@contextlib.contextmanager
def neighborhood_tile(size: int):
    """Scoped override of the blocked backend's Neighborhood query tile (per axis)."""
    token = _TILE.set(int(size))
    try:
        yield
    finally:
        _TILE.reset(token)


class _Plan:
    """Everything about a call that depends only on (pattern, grids, tile, device): cached."""

    def __init__(self, pattern: Pattern, q_grid, kv_grid, tile: int, device: str):
        dims = len(kv_grid)
        self.tilings: list[AxisTiling] = [
            pattern.axis_tiling(a, q_grid[a], kv_grid[a], tile) for a in range(dims)
        ]
        self.n = tuple(t.q_index.shape[0] for t in self.tilings)
        self.tq = tuple(t.q_index.shape[1] for t in self.tilings)
        self.tk = tuple(t.k_index.shape[1] for t in self.tilings)
        q_valid = torch.ones((), dtype=torch.bool)
        per_axis = []
        self.deltas = []  # per axis (n_a, T_a, K_a) int64 key - query offsets
        for a, t in enumerate(self.tilings):
            qi, kj = t.q_index[:, :, None], t.k_index[:, None, :]
            one = pattern.axis_allowed(a, qi.clamp_min(0), kj.clamp_min(0), q_grid[a], kv_grid[a])
            per_axis.append(one & (qi >= 0) & (kj >= 0))
            q_valid = q_valid & _spread((t.q_index >= 0), a, dims, 2)
            coords = pattern.query_coords(a, q_grid[a])[t.q_index.clamp_min(0)]
            self.deltas.append((t.k_index[:, None, :] - coords[:, :, None]).to(device))
        n_tiles = math.prod(self.n)
        self.per_axis = per_axis  # (n_a, T_a, K_a) bool: the 1D rule and both slots inside the grid
        self.all_allowed = all(bool(one.all()) for one in per_axis)
        self.q_valid = q_valid.reshape(n_tiles, 1, math.prod(self.tq), 1).to(device)
        # Without key padding the mask is the product of the per-axis masks: a float 0 / -inf mask per axis
        # (summed per chunk, never cached whole), has_key (nT | 1, 1, Tq | 1, 1) and whether a real query sees no
        # key. A query slot without an allowed key along an axis keeps that axis' row finite (all 0), so every
        # row of the summed mask has a finite entry (softmax stays finite; such queries output zeros).
        self.axis_masks = [torch.zeros(one.shape).masked_fill_(~one & one.any(-1, keepdim=True), float("-inf"))
                           .to(device) for one in per_axis]
        has_key = functools.reduce(torch.logical_and, [_spread(one.any(-1), a, dims, 2)
                                                       for a, one in enumerate(per_axis)])
        self.has_key = (torch.ones(1, 1, 1, 1, dtype=torch.bool) if self.all_allowed
                        else has_key.reshape(n_tiles, 1, math.prod(self.tq), 1)).to(device)
        self.keyless = bool((~self.has_key & self.q_valid).any())
        self.device = device
        self.bias_index: dict[tuple[int, ...], Tensor] = {}  # relative-bias table index per table radius
        self.q_gather = [_Gather.build(t.q_index, q_grid[a], device) for a, t in enumerate(self.tilings)]
        self.k_gather = [_Gather.build(t.k_index, kv_grid[a], device) for a, t in enumerate(self.tilings)]
        self.q_scatter = [_inverse(t.q_index, q_grid[a], device) for a, t in enumerate(self.tilings)]

    @functools.cached_property
    def allowed(self) -> Tensor:
        """(nT, 1, Tq, Tk) bool, or (1, 1, 1, 1) when every pair is allowed (Global and friends never build the
        (Tq, Tk) = N × N mask). Built on first use: key padding and learnable relative bias need it."""
        if self.all_allowed:
            return torch.ones(1, 1, 1, 1, dtype=torch.bool, device=self.device)
        dims = len(self.per_axis)
        allowed = functools.reduce(torch.logical_and, [_spread(one, a, dims, 3) for a, one in enumerate(self.per_axis)])
        return allowed.reshape(math.prod(self.n), 1, math.prod(self.tq), math.prod(self.tk)).to(self.device)

    def axis_mask(self, axes: list[slice], dtype: torch.dtype) -> Tensor:
        """Additive mask ``(1, m, 1, Tq, Tk)`` (0 allowed, -inf not) of the tiles ``axes`` (one slice of tiles per
        axis; m = their product), without key padding: the sum of the per-axis masks."""
        dims = len(axes)
        parts = [_spread(m[sl].to(dtype), a, dims, 3) for a, (m, sl) in enumerate(zip(self.axis_masks, axes,
                                                                                       strict=True))]
        return functools.reduce(torch.add, parts).reshape(1, -1, math.prod(self.tq), math.prod(self.tk))[:, :, None]


def _spread(one: Tensor, axis: int, dims: int, groups: int) -> Tensor:
    """Place a per-axis tensor of shape (n_a, T_a[, K_a]) into (n_0..n_D, T_0..T_D[, K_0..K_D])."""
    shape = [1] * (groups * dims)
    for g in range(groups):
        shape[g * dims + axis] = one.shape[g]
    return one.reshape(shape)


class _Gather:
    """Gather one axis of a tensor into tiles: the axis ``dim`` becomes ``n`` tiles and a tile axis ``T`` is
    appended last. Boxes in arithmetic progression (windows, halo blocks, centred neighborhoods: every tile
    starts ``step`` after the previous one) are a zero-pad + ``unfold`` view; anything else (NATTEN's inward
    shifted borders, dilation groups) is an ``index_select`` of clamped indices."""

    def __init__(self, index: Tensor | None, window: tuple[int, int, int, int, int] | None):
        self.index, self.window = index, window  # window: (left pad, right pad, start, size, step)

    @staticmethod
    def build(index: Tensor, length: int, device: str) -> _Gather:
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
            return _Gather(None, (left, max(0, needed - length), offset + left, needed - offset, step))
        return _Gather(index.reshape(-1).clamp_min(0).to(device), None)

    def padding(self) -> list[int]:
        """``[left, right]`` zeros this axis needs before :meth:`__call__` (none for an index gather)."""
        return list(self.window[:2]) if self.window is not None else [0, 0]

    def __call__(self, x: Tensor, dim: int, n: int, size: int) -> Tensor:
        """x: already zero-padded by :meth:`padding` along ``dim`` (:func:`_tile_view` pads every axis at once)."""
        if self.index is not None:
            x = x.index_select(dim, self.index).unflatten(dim, (n, size))
            return x.movedim(dim + 1, -1)
        _, _, start, span, step = self.window
        return x.narrow(dim, start, span).unfold(dim, size, step)  # (.., n, .., size) — a view


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


@functools.lru_cache(maxsize=128)
def _plan(pattern: Pattern, q_grid, kv_grid, tile: int, device: str) -> _Plan:
    return _Plan(pattern, q_grid, kv_grid, tile, device)


def _tile_view(x: Tensor, gathers: list[_Gather], n, t) -> Tensor:
    """(B, *grid, h, d) → (B, *n, h, *t, d): a strided view into one zero-padded copy of x (every windowed axis
    padded by a single ``F.pad``); axes gathered by index are copied along that axis."""
    dims = len(n)
    pad = [p for gather in reversed(gathers) for p in gather.padding()]
    if any(pad):
        x = F.pad(x, [0, 0, 0, 0, *pad])
    for a, gather in enumerate(gathers):
        x = gather(x, 1 + a, n[a], t[a])  # axis a → n_a tiles; its tile axis is appended last
    # x: (B, n0.., h, d, t0..)
    return x.permute(0, *range(1, dims + 1), dims + 1, *range(dims + 3, 2 * dims + 3), dims + 2)


def _to_tiles(x: Tensor, gathers: list[_Gather], n, t) -> Tensor:
    """(B, *grid, h, d) → (B * n_tiles, h, prod(t), d)."""
    view = _tile_view(x, gathers, n, t)
    return view.reshape(-1, view.shape[len(n) + 1], math.prod(t), view.shape[-1])


def _from_tiles(o: Tensor, plan: _Plan, B: int, q_grid) -> Tensor:
    """(B * n_tiles, h, prod(tq), d) → (B, *q_grid, h, d)."""
    dims, h, d = len(plan.n), o.shape[1], o.shape[-1]
    o = o.reshape(B, *plan.n, h, *plan.tq, d)
    order = [0, *[s for a in range(dims) for s in (1 + a, dims + 2 + a)], dims + 1, 2 * dims + 2]
    o = o.permute(order).reshape(B, *[n * t for n, t in zip(plan.n, plan.tq, strict=True)], h, d)
    for a, where in enumerate(plan.q_scatter):
        o = o.narrow(1 + a, where, q_grid[a]) if isinstance(where, int) else o.index_select(1 + a, where)
    return o


def _relative_bias(call: AttentionCall, plan: _Plan, axes: list[slice] | None = None) -> Tensor | None:
    """Relative-bias table values in tile layout ``(m, h, Tq, Tk)`` float32, or None: of every tile (the flat table
    index cached per plan and radius), or of the tiles ``axes`` (one slice per axis; its index is not cached).
    (Relative logits are not a bias here: :func:`_fold_relative_logits` puts them inside the dot product.)"""
    position, dims = call.position, call.dims
    if not isinstance(position, RelativeBias):
        return None
    heads, tq, tk = position.table.shape[0], math.prod(plan.tq), math.prod(plan.tk)
    flat = plan.bias_index.get(position.radius) if axes is None else None
    if flat is None:  # flat table index of every (tile, query slot, key slot)
        flat = 0
        for a, r in enumerate(position.radius):
            delta = plan.deltas[a] if axes is None else plan.deltas[a][axes[a]]
            flat = flat * (2 * r + 1) + _spread(delta.clamp(-r, r) + r, a, dims, 3)
        flat = flat.reshape(-1)
        if axes is None:  # built once per plan and radius
            plan.bias_index[position.radius] = flat
    bias = position.table.flatten(1).index_select(1, flat).float()  # (h, m · Tq · Tk)
    return bias.reshape(heads, -1, tq, tk).transpose(0, 1)


def _relative_logits(call: AttentionCall, plan: _Plan, q_tiles: Tensor) -> list[Tensor]:
    """Per axis ``a``: ``q · r^a[Δ_a]`` for every query slot and key-box slot of that axis,
    ``(B * n_tiles, h, Tq, K_a)`` float32 — the relative logits before they are spread over the other axes."""
    dims, B_tiles, h = call.dims, q_tiles.shape[0], q_tiles.shape[1]
    B = B_tiles // math.prod(plan.n)
    out = []
    for a, (table, r) in enumerate(zip(call.position.tables, call.position.radius, strict=True)):
        qr = torch.matmul(q_tiles.float(), table.float().t())  # (B*nT, h, Tq, 2R+1)
        qr = qr.reshape(B, *plan.n, h, *plan.tq, 2 * r + 1)
        index = plan.deltas[a].clamp(-r, r) + r  # (n_a, T_a, K_a)
        shape = [1] * (2 * dims + 3)
        shape[1 + a], shape[dims + 2 + a], shape[-1] = index.shape
        index = index.reshape(shape).expand(*qr.shape[:-1], index.shape[-1])
        out.append(torch.gather(qr, -1, index).reshape(B_tiles, h, -1, index.shape[-1]))  # (B*nT, h, Tq, K_a)
    return out


def _fold_relative_logits(call: AttentionCall, plan: _Plan, q: Tensor, k: Tensor, v: Tensor):
    """Fold ``q · r_Δ`` into the dot product so a fused kernel computes it: per axis, append the query's
    relative logits over the key-box slots to q (divided by the scale) and a one-hot of each key's slot to k;
    then ``scale · q'·k' = scale · q·k + Σ_a q·r^a[Δ_a]``. v is zero-padded to the same width (fused CPU SDPA
    needs equal q and v widths). Returns q', k', v' ``(B*nT, h, T, d + Σ K_a)``."""
    parts_q, parts_k = [q], [k]
    tk = plan.tk
    for a, logits in enumerate(_relative_logits(call, plan, q)):
        parts_q.append((logits / call.scale).to(q.dtype))
        slot = torch.arange(tk[a], device=q.device)  # the key's slot along axis a, for every key of the box
        shape = [1] * len(tk)
        shape[a] = tk[a]
        slot = slot.reshape(shape).expand(*tk).reshape(-1)  # (Tk,)
        onehot = torch.nn.functional.one_hot(slot, tk[a]).to(k.dtype)  # (Tk, K_a)
        parts_k.append(onehot.expand(*k.shape[:2], *onehot.shape))
    extra = sum(p.shape[-1] for p in parts_q[1:])
    return torch.cat(parts_q, -1), torch.cat(parts_k, -1), F.pad(v, (0, extra))


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


def _attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None, scale: float) -> Tensor:
    """``softmax(scale · q kᵀ + bias + mask) v`` on tiles ``(b, m, h, T, .)``; bias ``(1|b, m, 1|h, Tq, Tk)`` and
    mask ``(1|b, m, 1, Tq, Tk)`` additive float or None. With ``v_dim != head_dim`` (in float32 on CPU, as SDPA's
    math path) and no gradient: :func:`masked_attention` (matmul, add, softmax, matmul). Else one float mask: fused
    SDPA when q and v widths agree (or off CPU) and the mask needs no gradient, :func:`biased_attention` otherwise
    (cheaper than SDPA's CPU math path, which ``v_dim != head_dim`` takes; the mask's batch axis stays broadcast)."""
    narrow = v.shape[-1] != q.shape[-1] and q.device.type == "cpu"  # (GPU SDPA kernels take unequal widths)
    if narrow and q.dtype in (torch.bfloat16, torch.float16):
        # float32 on CPU, as SDPA's math path (its bf16 matmuls are several times slower than float32 here)
        up = [None if t is None else t.float() for t in (bias, mask)]
        return _attend(q.float(), k.float(), v.float(), *up, scale).to(q.dtype)
    if narrow and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                       for t in (q, k, v, bias, mask))):
        return masked_attention(q, k, v, bias, mask, scale)
    mask = bias if mask is None else mask if bias is None else bias + mask
    if narrow or (mask is not None and mask.requires_grad):
        return biased_attention(q, k, v, mask, scale)
    b, m = q.shape[:2]
    if mask is not None:
        mask = mask.expand(b, *mask.shape[1:]).reshape(b * m, *mask.shape[2:])
    q, k, v = (t.reshape(b * m, *t.shape[2:]) for t in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return o.reshape(b, m, *o.shape[1:])


def _attend_tiles(call: AttentionCall, plan: _Plan, q: Tensor, k: Tensor, v: Tensor, axes: list[slice],
                  pad: Tensor | None, bias: Tensor | None) -> Tensor:
    """Attention of the tiles ``axes`` (one slice of tiles per grid axis; of every image of the batch axis ``b``):
    q ``(b, m, h, Tq, d)``, k, v ``(b, m, h, Tk, .)``; pad ``(b, m, 1, 1, Tk)`` key padding or None; bias
    ``(m, h, Tq, Tk)`` or None. Returns ``(b, m, h, Tq, e)``; real queries without an allowed key output zeros."""
    bias = None if bias is None else bias.to(q.dtype)[None]
    first = 0
    for sl, n in zip(axes, plan.n, strict=True):
        first = first * n + sl.start
    rows = slice(first, first + q.shape[1])  # the tiles are a box of whole trailing axes: consecutive rows
    if pad is None and (bias is None or not bias.requires_grad):  # separable mask: per-axis float masks, summed
        has_key, keyless = _rows(plan.has_key, rows)[None], plan.keyless
        o = _attend(q, k, v, bias, None if plan.all_allowed else plan.axis_mask(axes, q.dtype), call.scale)
    else:  # key padding or a learnable bias (whose masked_fill keeps the gradient off the masked pairs)
        allowed = _rows(plan.allowed, rows)[None]  # (1, m | 1, 1, Tq | 1, Tk | 1)
        if pad is not None:
            allowed = allowed & ~pad
        has_key = allowed.any(-1, keepdim=True)
        keyless = bool((~has_key & _rows(plan.q_valid, rows)).any())
        base = torch.zeros((), dtype=q.dtype, device=q.device) if bias is None else bias
        o = _attend(q, k, v, base.masked_fill(~(allowed | ~has_key), float("-inf")), None, call.scale)
    return o.masked_fill(~has_key, 0.0) if keyless else o


def _needs_grad(call: AttentionCall) -> bool:
    if not torch.is_grad_enabled():
        return False
    tensors = [call.q, call.k, call.v]
    if isinstance(call.position, RelativeBias):
        tensors.append(call.position.table)
    elif isinstance(call.position, RelativeLogits):
        tensors.extend(call.position.tables)
    return any(t.requires_grad for t in tensors)


def blocked_attention(call: AttentionCall) -> Tensor:
    B = call.q.shape[0]
    tile = _TILE.get() or DEFAULT_TILE[call.dims]
    plan = _plan(call.pattern, call.q_grid, call.kv_grid, tile, str(call.q.device))
    n_tiles = math.prod(plan.n)
    pad = None
    if call.key_padding_mask is not None:
        pad = _to_tiles(call.key_padding_mask[..., None, None], plan.k_gather, plan.n, plan.tk)  # (B*nT,1,Tk,1)
        pad = pad.reshape(B, n_tiles, 1, 1, -1)
    if isinstance(call.position, RelativeLogits) or _needs_grad(call) or call.q.device.type != "cpu":
        return _whole(call, plan, pad)
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
        o = _attend_tiles(call, plan, q, k, v, axes, None if pad is None else pad[b0 : b0 + b, rows],
                          _relative_bias(call, plan, None if out is None else axes))  # one chunk: cached index
        if out is None:
            return _from_tiles(o.reshape(B * n_tiles, h, tq, e), plan, B, call.q_grid)
        out[first : first + count] = o.reshape(count, h, tq, e)
    return _from_tiles(out, plan, B, call.q_grid)


def _whole(call: AttentionCall, plan: _Plan, pad: Tensor | None) -> Tensor:
    """Every tile in one go (what autograd saves for backward: the q, k, v tiles, and SDPA's own tensors)."""
    B, n_tiles = call.q.shape[0], math.prod(plan.n)
    q = _to_tiles(call.q, plan.q_gather, plan.n, plan.tq)
    k = _to_tiles(call.k, plan.k_gather, plan.n, plan.tk)
    v = _to_tiles(call.v, plan.k_gather, plan.n, plan.tk)
    v_dim = v.shape[-1]
    if isinstance(call.position, RelativeLogits):
        q, k, v = _fold_relative_logits(call, plan, q, k, v)
        bias = None
    else:
        bias = _relative_bias(call, plan)  # (nT, h, Tq, Tk) or None
    q, k, v = (t.reshape(B, n_tiles, *t.shape[1:]) for t in (q, k, v))
    axes = [slice(0, n) for n in plan.n]
    o = _attend_tiles(call, plan, q, k, v, axes, pad, bias)[..., :v_dim]
    return _from_tiles(o.reshape(B * n_tiles, *o.shape[2:]), plan, B, call.q_grid)


def _refuse(call: AttentionCall) -> str | None:
    if call.form != "softmax":
        return f"runs form='softmax' only, got form={call.form!r}"
    if not call.pattern.separable:
        return f"{type(call.pattern).__name__} is not separable per axis, so it has no block structure"
    return None


BLOCKED = Backend("blocked", blocked_attention, _refuse)
