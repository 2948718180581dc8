"""The reference backend: dense probabilities (:func:`visionattn.ops.attention_probs`) times v. Slow and obviously
right.

It is the spec the other backends are tested against. It computes in float32 whatever the input dtype and casts the
result back; every tensor it builds lives on the call's device. A query with no allowed key outputs zeros (all
backends agree on that).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..call import AttentionCall
from ..position import RelativeBias, RelativeLogits
from ..probs import attention_probs, bias_from_delta, dense_bias, relative_delta
from .base import Backend

__all__ = ["REFERENCE", "bias_from_delta", "dense_bias", "dense_delta", "reference_attention"]


def dense_delta(call: AttentionCall) -> Tensor:
    """Offsets key − query: ``(N_q, N_k, D)`` int64 on the raster-flattened grids, on the call's device."""
    return relative_delta(call)


def reference_attention(call: AttentionCall) -> Tensor:
    """``attention_probs(call) @ v`` in float32 → ``(B, *q_grid, heads, v_dim)`` in the input dtype."""
    B, heads, nk = call.q.shape[0], call.heads, math.prod(call.kv_grid)
    weights = attention_probs(call)  # (B, h, N_q, N_k) float32
    v = call.v.reshape(B, nk, heads, -1).float()  # (B, N_k, h, e)
    out = torch.einsum("bhqk,bkhd->bqhd", weights, v)  # (B, N_q, h, e)
    return out.reshape(B, *call.q_grid, heads, -1).to(call.q.dtype)


def _refuse(call: AttentionCall) -> str | None:
    if call.form == "linear" and isinstance(call.position, (RelativeBias, RelativeLogits)):
        return "form='linear' has no logits to add a relative bias to (use Rope or no position)"
    return None


REFERENCE = Backend("reference", reference_attention, _refuse)
