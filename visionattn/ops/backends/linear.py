"""The linear backend: drop the softmax and reorder, ``φ(Q) (φ(K)ᵀ V)`` — O(N · d²) instead of O(N² · d).

Rows are normalised by ``φ(q) · Σ_k φ(k)`` (Katharopoulos et al., 2020), so it equals the reference's
``form='linear'`` exactly. Global pattern on any grid (flattened); key padding masks drop keys.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..call import AttentionCall
from ..patterns import Global
from ..position import RelativeBias, RelativeLogits
from .base import Backend, feature_map


def linear_attention(call: AttentionCall) -> Tensor:
    B, h = call.q.shape[0], call.heads
    nq, nk = math.prod(call.q_grid), math.prod(call.kv_grid)
    q = feature_map(call.q.reshape(B, nq, h, -1) * call.scale)
    k = feature_map(call.k.reshape(B, nk, h, -1))
    v = call.v.reshape(B, nk, h, -1)
    if call.key_padding_mask is not None:
        k = k * (~call.key_padding_mask).reshape(B, nk, 1, 1)
    kv = torch.einsum("bkhd,bkhe->bhde", k, v)  # (B, h, d, e): the whole context in d × e numbers
    norm = torch.einsum("bqhd,bhd->bqh", q, k.sum(1))  # (B, Nq, h)
    out = torch.einsum("bqhd,bhde->bqhe", q, kv) / norm.clamp_min(torch.finfo(norm.dtype).tiny)[..., None]
    return out.reshape(B, *call.q_grid, h, -1)


def _refuse(call: AttentionCall) -> str | None:
    if call.form != "linear":
        return f"runs form='linear' only, got form={call.form!r}"
    if not isinstance(call.pattern, Global):
        return f"runs the Global pattern only, got {call.pattern}"
    if isinstance(call.position, (RelativeBias, RelativeLogits)):
        return "no logits to add a relative position to (use Rope or no position)"
    return None


LINEAR = Backend("linear", linear_attention, _refuse)
