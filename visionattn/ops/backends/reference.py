"""The reference backend: dense scores, dense mask, dense bias, softmax. Slow and obviously right.

It is the spec the other backends are tested against. It computes in float32 whatever the input dtype
and casts the result back. A query with no allowed key outputs zeros (all backends agree on that).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..call import AttentionCall
from ..patterns import _coords
from ..position import RelativeBias, RelativeLogits
from .base import Backend, feature_map


def dense_delta(call: AttentionCall) -> Tensor:
    """Offsets key − query: ``(N_q, N_k, D)`` int64 on the raster-flattened grids."""
    pattern = call.pattern
    qc = _coords(tuple(pattern.query_coords(a, n) for a, n in enumerate(call.q_grid)))
    kc = _coords(tuple(torch.arange(n) for n in call.kv_grid))
    return (kc[None] - qc[:, None]).to(call.q.device)


def dense_bias(call: AttentionCall, q: Tensor) -> Tensor | None:
    """Additive logit bias ``(B or 1, heads, N_q, N_k)`` from the position descriptor, or None.
    q: ``(B, N_q, heads, head_dim)`` float32."""
    if not isinstance(call.position, (RelativeBias, RelativeLogits)):
        return None
    return bias_from_delta(call.position, dense_delta(call), q)


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


def reference_attention(call: AttentionCall) -> Tensor:
    B, heads = call.q.shape[0], call.heads
    nq, nk = math.prod(call.q_grid), math.prod(call.kv_grid)
    q = call.q.reshape(B, nq, heads, -1).float()
    k = call.k.reshape(B, nk, heads, -1).float()
    v = call.v.reshape(B, nk, heads, -1).float()
    mask = call.pattern.mask(call.kv_grid, call.q_grid).to(q.device)[None, None]  # (1, 1, Nq, Nk)
    if call.key_padding_mask is not None:
        mask = mask & ~call.key_padding_mask.reshape(B, 1, 1, nk)
    has_key = mask.any(-1, keepdim=True)  # (., ., Nq, 1)
    if call.form == "softmax":
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * call.scale
        bias = dense_bias(call, q)
        if bias is not None:
            scores = scores + bias
        scores = scores.masked_fill(~(mask | ~has_key), float("-inf"))
        weights = scores.softmax(-1)
    else:
        weights = torch.einsum("bqhd,bkhd->bhqk", feature_map(q * call.scale), feature_map(k))
        weights = weights * mask
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    weights = torch.where(has_key, weights, torch.zeros_like(weights))
    out = torch.einsum("bhqk,bkhd->bqhd", weights, v)
    return out.reshape(B, *call.q_grid, heads, -1).to(call.q.dtype)


def _refuse(call: AttentionCall) -> str | None:
    if call.form == "linear" and isinstance(call.position, (RelativeBias, RelativeLogits)):
        return "form='linear' has no logits to add a relative bias to (use Rope or no position)"
    return None


REFERENCE = Backend("reference", reference_attention, _refuse)
