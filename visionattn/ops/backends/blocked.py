"""The blocked backend: tile the queries, gather a key box per tile, one batched SDPA call.

For a separable pattern every axis is covered by an :class:`AxisTiling` (query tiles and key boxes); the
nD tiles are their product. Queries, keys and values are gathered into ``(B * n_tiles, heads, tile, d)``,
a per-tile mask built from the pattern's own 1D rules (and position bias) is passed to
``scaled_dot_product_attention``, and the output is scattered back. No ``N × N`` tensor exists: memory
is ``O(N · box)``. Global and Axial fall out as one tile / one tile per line.

Key boxes in arithmetic progression (windows, halo blocks, centred neighborhoods) are zero-pad + ``unfold``
views; other boxes (NATTEN's inward-shifted borders, dilation groups) gather clamped indices. Out-of-grid
slots are masked either way, and the only padding values are zeros made here, so nothing leaks. Key padding
masks are gathered like keys. Relative logits are folded into the dot product (fused kernel); a learnable
relative bias goes through :mod:`.biased_sdpa` because fused SDPA gives its mask no gradient.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..call import AttentionCall
from ..patterns import AxisTiling, Pattern
from ..position import RelativeBias, RelativeLogits
from .base import Backend
from .biased_sdpa import biased_attention

_TILE = contextvars.ContextVar("visionattn_blocked_tile", default=None)
DEFAULT_TILE = {1: 64, 2: 8, 3: 4}  # query tile per axis for Neighborhood, by grid dims


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
        self.all_allowed = all(bool(one.all()) for one in per_axis)
        if self.all_allowed:  # Global and friends: never build the (Tq, Tk) = N × N mask
            self.allowed = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=device)
        else:
            allowed = functools.reduce(torch.logical_and, [_spread(one, a, dims, 3) for a, one in enumerate(per_axis)])
            self.allowed = allowed.reshape(n_tiles, 1, math.prod(self.tq), math.prod(self.tk)).to(device)
        self.q_valid = q_valid.reshape(n_tiles, 1, math.prod(self.tq), 1).to(device)
        self.bias_index: dict[tuple[int, ...], Tensor] = {}  # relative-bias table index per table radius
        self.q_gather = [_Gather.build(t.q_index, q_grid[a], device) for a, t in enumerate(self.tilings)]
        self.k_gather = [_Gather.build(t.k_index, kv_grid[a], device) for a, t in enumerate(self.tilings)]
        self.q_scatter = [_inverse(t.q_index, q_grid[a], device) for a, t in enumerate(self.tilings)]


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

    def __call__(self, x: Tensor, dim: int, n: int, size: int) -> Tensor:
        if self.index is not None:
            x = x.index_select(dim, self.index).unflatten(dim, (n, size))
            return x.movedim(dim + 1, -1)
        left, right, start, span, step = self.window
        if left or right:
            x = F.pad(x, [0, 0] * (x.ndim - dim - 1) + [left, right])
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


def _to_tiles(x: Tensor, gathers: list[_Gather], n, t) -> Tensor:
    """(B, *grid, h, d) → (B * n_tiles, h, prod(t), d)."""
    dims = len(n)
    for a, gather in enumerate(gathers):
        x = gather(x, 1 + a, n[a], t[a])  # axis a → n_a tiles; its tile axis is appended last
    B, h, d = x.shape[0], x.shape[dims + 1], x.shape[dims + 2]  # x: (B, n0.., h, d, t0..)
    order = [0, *range(1, dims + 1), dims + 1, *range(dims + 3, 2 * dims + 3), dims + 2]
    return x.permute(order).reshape(B * math.prod(n), h, math.prod(t), d)


def _from_tiles(o: Tensor, plan: _Plan, B: int, q_grid) -> Tensor:
    """(B * n_tiles, h, prod(tq), d) → (B, *q_grid, h, d)."""
    dims, h, d = len(plan.n), o.shape[1], o.shape[-1]
    o = o.reshape(B, *plan.n, h, *plan.tq, d)
    order = [0, *[s for a in range(dims) for s in (1 + a, dims + 2 + a)], dims + 1, 2 * dims + 2]
    o = o.permute(order).reshape(B, *[n * t for n, t in zip(plan.n, plan.tq, strict=True)], h, d)
    for a, where in enumerate(plan.q_scatter):
        o = o.narrow(1 + a, where, q_grid[a]) if isinstance(where, int) else o.index_select(1 + a, where)
    return o


def _relative_bias(call: AttentionCall, plan: _Plan) -> Tensor | None:
    """Relative-bias table values in tile layout ``(n_tiles, h, Tq, Tk)`` float32, or None. (Relative logits
    are not a bias here: :func:`_fold_relative_logits` puts them inside the dot product.)"""
    position, dims = call.position, call.dims
    if not isinstance(position, RelativeBias):
        return None
    flat = plan.bias_index.get(position.radius)
    if flat is None:  # flat table index of every (tile, query slot, key slot), built once per plan and radius
        flat = 0
        for a, r in enumerate(position.radius):
            flat = flat * (2 * r + 1) + _spread(plan.deltas[a].clamp(-r, r) + r, a, dims, 3)
        flat = plan.bias_index[position.radius] = flat.reshape(-1)
    heads = position.table.shape[0]
    bias = position.table.flatten(1).index_select(1, flat).float()  # (h, n.. · T.. · K..)
    return bias.reshape(heads, math.prod(plan.n), math.prod(plan.tq), -1).transpose(0, 1)


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


def blocked_attention(call: AttentionCall) -> Tensor:
    B = call.q.shape[0]
    tile = _TILE.get() or DEFAULT_TILE[call.dims]
    plan = _plan(call.pattern, call.q_grid, call.kv_grid, tile, str(call.q.device))
    q = _to_tiles(call.q, plan.q_gather, plan.n, plan.tq)
    k = _to_tiles(call.k, plan.k_gather, plan.n, plan.tk)
    v = _to_tiles(call.v, plan.k_gather, plan.n, plan.tk)
    n_tiles = math.prod(plan.n)
    allowed = plan.allowed[None]  # (1, nT, 1, Tq, Tk); batch axis apart until the end
    if call.key_padding_mask is not None:
        pad = _to_tiles(call.key_padding_mask[..., None, None], plan.k_gather, plan.n, plan.tk)  # (B*nT,1,Tk,1)
        allowed = allowed & ~pad.reshape(B, n_tiles, 1, 1, -1)
    v_dim = v.shape[-1]
    if isinstance(call.position, RelativeLogits):
        q, k, v = _fold_relative_logits(call, plan, q, k, v)
        bias = None
    else:
        bias = _relative_bias(call, plan)  # (nT, h, Tq, Tk) or None
    if bias is None and plan.all_allowed and call.key_padding_mask is None:
        o = F.scaled_dot_product_attention(q, k, v, scale=call.scale)[..., :v_dim]
        return _from_tiles(o, plan, B, call.q_grid)
    has_key = allowed.any(-1, keepdim=True)
    if bias is None:
        bias = torch.zeros((), dtype=q.dtype, device=q.device)
    else:
        bias = bias.to(q.dtype).reshape(-1, n_tiles, *bias.shape[1:])
    mask = bias.masked_fill(~(allowed | ~has_key), float("-inf"))  # (1|B, nT, 1|h, Tq, Tk); empty rows stay finite
    if mask.requires_grad:  # fused SDPA gives no bias gradient: our own biased attention, batch kept broadcast
        tiles5 = [t.reshape(B, n_tiles, *t.shape[1:]) for t in (q, k, v)]
        o = biased_attention(*tiles5, mask, call.scale).reshape(B * n_tiles, *q.shape[1:-1], v.shape[-1])
    else:
        mask = mask.expand(B, *mask.shape[1:]).reshape(B * n_tiles, *mask.shape[2:])
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=call.scale)[..., :v_dim]
    if bool((~has_key & plan.q_valid).any()):  # real queries with no allowed key output zeros
        o = o.masked_fill(~has_key.expand(B, *has_key.shape[1:]).reshape(B * n_tiles, 1, -1, 1), 0.0)
    return _from_tiles(o, plan, B, call.q_grid)


def _refuse(call: AttentionCall) -> str | None:
    if call.form != "softmax":
        return f"runs form='softmax' only, got form={call.form!r}"
    if not call.pattern.separable:
        return f"{type(call.pattern).__name__} is not separable per axis, so it has no block structure"
    return None


BLOCKED = Backend("blocked", blocked_attention, _refuse)
