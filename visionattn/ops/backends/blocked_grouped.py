"""The blocked backend by groups of identical tiles (the plan is :mod:`.blocked_groups`): Window, shifted Window,
Halo, Axial, Global and Neighborhood calls whose tiles are contiguous runs.

Per group: q, k and v split into tiles (``narrow`` + ``unfold`` views, one copy each: :mod:`.partition`), the
group's one mask ``(Tq, Tk)`` (None for windows, lines, halo blocks: their clipped boxes hold only allowed keys)
and one relative-bias lookup ``(h, Tq, Tk)`` broadcast over every tile and image, one attention call
(:func:`.tile_attention.attend`), and the outputs merged back into the grid (one copy). With gradients the splits and
the merge are autograd functions whose backward is the other one (one copy per group again). Without gradients on
CPU a group whose tiles would take more than a few MiB runs in chunks of whole images or of rows of tiles, written
straight into the output (the same budget as the general plan: key boxes larger than their tiles are never all
materialised at once).

Key padding is the one per-tile mask this path builds: ``(B · n, 1 | h, Tq, Tk)`` from the padded keys of each box
and the group's mask; a query whose keys are all padding outputs zeros.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..call import AttentionCall
from ..position import RelativeBias, RelativeLogits
from .blocked_groups import Group, GroupPlan, group_bias_index
from .partition import Run, merge, split, tiles, write
from .sdpa import fused_bias_grad
from .tile_attention import attend, fold_relative_logits

CHUNK_BYTES, CHUNK_BYTES_MAX = 8 * 2**20, 32 * 2**20  # per thread / at most, as the general plan's chunks


def _group_attention(call: AttentionCall, group: Group, q: Tensor, k: Tensor, v: Tensor, pad: Tensor | None,
                     index: Tensor | None) -> Tensor:
    """One group's (or chunk's) tiles: q ``(N, h, Tq, d)``, k ``(N, h, Tk, d)``, v ``(N, h, Tk, e)``; pad
    ``(N, 1, Tk, 1)`` bool (True = padding) or None; index: the group's flat relative-bias index or None.
    Returns ``(N, h, Tq, e)``."""
    h, e = call.heads, call.v.shape[-1]
    tq, tk = math.prod(group.tq), math.prod(group.tk)
    bias = None
    if isinstance(call.position, RelativeLogits):
        q, k, v = fold_relative_logits(call, group, q, k, v)
    elif index is not None:  # one lookup shared by every tile of the group: (1, 1, h, Tq, Tk)
        table = call.position.table
        bias = table.flatten(1).index_select(1, index).reshape(1, 1, h, tq, tk).to(q.dtype)
    mask = None if group.mask is None else group.mask.to(q.dtype).reshape(1, 1, 1, tq, tk)  # shared by all tiles
    has_key = None
    if pad is not None:  # padded keys: a per-tile mask
        allowed = ~pad.reshape(1, -1, 1, 1, tk)  # (1, N, 1, 1, Tk)
        if group.allowed is not None:
            allowed = allowed & group.allowed
        has_key = allowed.any(-1, keepdim=True)  # (1, N, 1, Tq | 1, 1)
        mask = torch.zeros((), dtype=q.dtype, device=q.device).masked_fill(~(allowed | ~has_key), float("-inf"))
    o = attend(q[None], k[None], v[None], bias, mask, call.scale)[0, ..., :e]  # (N, h, Tq, e)
    return o if has_key is None else o.masked_fill(~has_key[0], 0.0)


def grouped_attention(call: AttentionCall, key: tuple, gp: GroupPlan, chunked: bool) -> Tensor:
    """``(B, *q_grid, h, v_dim)`` of ``call`` by the groups of ``gp`` (``key``: the plan's cache key). ``chunked``:
    no gradient is needed and chunks of tiles may be written into the output as they are computed."""
    position = call.position
    index = group_bias_index(*key, position.radius) if isinstance(position, RelativeBias) else (None,) * len(
        gp.groups)
    pad = None if call.key_padding_mask is None else call.key_padding_mask[..., None, None]  # (B, *kv_grid, 1, 1)
    B, h, e = call.q.shape[0], call.heads, call.v.shape[-1]
    shape = (B, *call.q_grid, h, e)
    heads_first = _heads_first(call)
    if chunked:
        return _chunked(call, gp, index, pad, shape, heads_first)
    qs = split(call.q, gp.q_runs, True, heads_first)  # per group (B·n, h, Tq, d)
    ks = split(call.k, gp.k_runs, gp.k_exact, heads_first)  # (B·n, h, Tk, d)
    vs = split(call.v, gp.k_runs, gp.k_exact, heads_first)  # (B·n, h, Tk, e)
    outs = [_group_attention(call, group, q, k, v, None if pad is None else tiles(pad, run), i)
            for group, q, k, v, run, i in zip(gp.groups, qs, ks, vs, gp.k_runs, index, strict=True)]
    return merge(tuple(outs), gp.q_runs, shape)


def _heads_first(call: AttentionCall) -> bool:
    """The tile layout the attention kernel reads best: heads first (contiguous ``(N, h, T, d)``) for the batched
    matmuls of :func:`.biased_sdpa.biased_attention` / ``masked_attention`` (a learnable bias or ``v_dim != head_dim``
    on CPU) and for the relative-logit fold (it concatenates new tensors anyway); tokens first for fused SDPA."""
    if isinstance(call.position, RelativeLogits):
        return True
    if call.q.device.type != "cpu":
        return False
    learnable = isinstance(call.position, RelativeBias) and call.position.table.requires_grad \
        and torch.is_grad_enabled() and not fused_bias_grad(call.q.device)
    return learnable or call.v.shape[-1] != call.q.shape[-1]


def _chunked(call: AttentionCall, gp: GroupPlan, index, pad: Tensor | None, shape: tuple[int, ...],
             heads_first: bool) -> Tensor:
    """No gradient: each group in chunks of about the byte budget (whole images, or rows of tiles along the first
    grid axis), each chunk's output written into its boxes of the result."""
    q, k, v = call.q, call.k, call.v
    h, d, e = call.heads, q.shape[-1], v.shape[-1]
    budget = min(CHUNK_BYTES * max(1, torch.get_num_threads()), CHUNK_BYTES_MAX)
    out = v.new_empty(shape)
    for group, q_run, k_run, i in zip(gp.groups, gp.q_runs, gp.k_runs, index, strict=True):
        tq, tk = math.prod(group.tq), math.prod(group.tk)
        per_tile = h * (q.element_size() * (tq * d + tk * d + tk * e + tq * e) + 4 * 3 * tq * tk)
        for images, rows in _pieces(shape[0], group.n, per_tile, budget):
            qr, kr = _rows(q_run, rows), _rows(k_run, rows)
            part = group if rows is None else group._replace(n=(rows[1] - rows[0], *group.n[1:]))  # tiles per image
            o = _group_attention(call, part, tiles(q[images], qr, heads_first), tiles(k[images], kr, heads_first),
                                 tiles(v[images], kr, heads_first), None if pad is None else tiles(pad[images], kr), i)
            write(out[images], o, qr)
    return out


def _pieces(batch: int, n: tuple[int, ...], per_tile: int, budget: int):
    """Chunks of a group's tiles ``(batch, *n)`` of about ``budget // per_tile`` tiles: (image slice, rows of the
    first grid axis as (first, stop), or None for all rows)."""
    per, image, row = max(1, budget // per_tile), math.prod(n), math.prod(n[1:])
    if per >= image:
        step = per // image
        for b in range(0, batch, step):
            yield slice(b, min(b + step, batch)), None
        return
    step = max(1, per // row)
    for b in range(batch):
        for r in range(0, n[0], step):
            yield slice(b, b + 1), (r, min(r + step, n[0]))


def _rows(run: Run, rows: tuple[int, int] | None) -> Run:
    """The run restricted to tiles ``rows`` along the first grid axis."""
    if rows is None:
        return run
    (start, _, size, step), rest = run[0], run[1:]
    return ((start + rows[0] * step, rows[1] - rows[0], size, step), *rest)
