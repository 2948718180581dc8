"""The attention probabilities of a call: the operator's math written once, densely (the spec).

:func:`attention_probs` gives the weights of selected query rows (or of all of them) over every key:
``scale · q·k`` plus the position term (RelativeBias table lookup, RelativeLogits ``q·r_Δ``), the pattern's allowed
keys for those rows, key padding, then softmax (or the linear form's ``φ(q)·φ(k)`` normalised per row). The
reference backend is ``attention_probs(call) @ v``; analysis tools (attention maps, the conv-fit experiment) read
rows of the same matrix without running a backend. Everything is built on the call's device, in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .call import AttentionCall
from .position import RelativeBias, RelativeLogits


def feature_map(x: Tensor) -> Tensor:
    """Positive feature map of the linear form, φ(x) = elu(x) + 1 (Katharopoulos et al., 2020)."""
    return F.elu(x) + 1.0


def _grid_coords(per_axis: Sequence[Tensor]) -> Tensor:
    """Raster-ordered coordinates ``(N, D)`` from per-axis coordinate vectors."""
    mesh = torch.meshgrid(*per_axis, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)


def relative_delta(call: AttentionCall, rows: Tensor | None = None) -> Tensor:
    """Offsets key − query ``(Q, N_k, D)`` int64 on the call's device, for the flat query indices ``rows`` ``(Q,)``
    (None: every query, ``Q = N_q``); a strided query sits at ``p · stride`` on the key grid."""
    device, pattern = call.q.device, call.pattern
    coords = [pattern.query_coords(a, n, device=device) for a, n in enumerate(call.q_grid)]
    if rows is None:
        qc = _grid_coords(coords)  # (N_q, D)
    else:
        qi = torch.unravel_index(rows.to(device), call.q_grid)  # one (Q,) index vector per axis
        qc = torch.stack([c[i] for c, i in zip(coords, qi, strict=True)], dim=-1)  # (Q, D)
    kc = _grid_coords([torch.arange(n, device=device) for n in call.kv_grid])  # (N_k, D)
    return kc[None] - qc[:, None]


def bias_from_delta(position: RelativeBias | RelativeLogits, delta: Tensor, q: Tensor) -> Tensor:
    """The relative-position logit bias for offsets ``delta`` ``(Q, N_k, D)`` (key − query) of the queries ``q``
    ``(B, Q, heads, head_dim)`` float32: ``(1, heads, Q, N_k)`` for a RelativeBias table, ``(B, heads, Q, N_k)``
    for RelativeLogits (``q·r_Δ`` summed over axes, offsets clamped to the table radius)."""
    if isinstance(position, RelativeBias):
        return position.lookup(delta).float()[None]
    bias = 0
    for axis, (table, r) in enumerate(zip(position.tables, position.radius, strict=True)):
        qr = torch.einsum("bqhd,rd->bhqr", q, table.float())  # (B, h, Q, 2R+1)
        index = (delta[..., axis].clamp(-r, r) + r).expand(*qr.shape[:2], *delta.shape[:2])  # (B, h, Q, N_k)
        bias = bias + torch.gather(qr, -1, index)
    return bias


def dense_bias(call: AttentionCall, q: Tensor, rows: Tensor | None = None) -> Tensor | None:
    """Additive logit bias ``(B or 1, heads, Q, N_k)`` of the query ``rows`` (None: all) from the position
    descriptor, or None (no position, or Rope: already applied to q and k). q: ``(B, Q, heads, head_dim)``
    float32, the queries of those rows."""
    if not isinstance(call.position, (RelativeBias, RelativeLogits)):
        return None
    return bias_from_delta(call.position, relative_delta(call, rows), q)


def _rows(call: AttentionCall, rows) -> Tensor | None:
    if rows is None:
        return None
    rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    nq = math.prod(call.q_grid)
    if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= nq):
        raise ValueError(f"attention_probs: rows must index the {nq} queries of grid {call.q_grid} (raster order), "
                         f"got range [{int(rows.min())}, {int(rows.max())}]")
    return rows


def attention_probs(call: AttentionCall, rows: Tensor | Sequence[int] | None = None) -> Tensor:
    """Attention probabilities of a *prepared* call (as :func:`visionattn.ops.prepare_call` returns and
    ``observe_attention``/``intercept_attention`` callbacks receive: RoPE applied, padded keys zeroed).

    rows: flat query indices ``(Q,)`` into the raster-flattened ``call.q_grid`` (None: every query). Returns float32
    ``(B, heads, Q, N_k)`` on the call's device. Each row sums to 1 over its allowed, unpadded keys; a query with no
    allowed key, or a padded query, is all zeros (the operator outputs zeros there). Only the asked rows are
    computed: separable patterns build their row masks per axis, never the ``N_q × N_k`` mask. Differentiable in q,
    k and the position tensors. ``attention_probs(call) @ v`` is the reference backend."""
    rows = _rows(call, rows)
    device, B, heads = call.q.device, call.q.shape[0], call.heads
    nq, nk = math.prod(call.q_grid), math.prod(call.kv_grid)
    q = call.q.reshape(B, nq, heads, -1)  # (B, N_q, h, d)
    if rows is not None:
        q = q[:, rows.to(device)]  # (B, Q, h, d)
    q, k = q.float(), call.k.reshape(B, nk, heads, -1).float()  # (B, N_k, h, d)
    if rows is None:
        mask = call.pattern.mask(call.kv_grid, call.q_grid, device=device)  # (N_q, N_k)
    else:
        mask = call.pattern.mask_rows(call.kv_grid, call.q_grid, rows, device=device)  # (Q, N_k)
    mask = mask[None, None]  # (1, 1, Q, N_k)
    if call.key_padding_mask is not None:
        mask = mask & ~call.key_padding_mask.reshape(B, 1, 1, nk)
    has_key = mask.any(-1, keepdim=True)  # (., ., Q, 1)
    if call.query_padding_mask is not None:  # padded queries attend to nothing (the operator outputs zeros)
        padded = call.query_padding_mask.reshape(B, nq)
        padded = padded if rows is None else padded[:, rows.to(device)]
        has_key = has_key & ~padded[:, None, :, None]  # (B, 1, Q, 1)
    if call.form == "softmax":
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * call.scale  # (B, h, Q, N_k)
        bias = dense_bias(call, q, rows)
        if bias is not None:
            scores = scores + bias
        weights = scores.masked_fill(~(mask | ~has_key), float("-inf")).softmax(-1)
    else:
        weights = torch.einsum("bqhd,bkhd->bhqk", feature_map(q * call.scale), feature_map(k))
        weights = weights * mask
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    return torch.where(has_key, weights, torch.zeros_like(weights))
