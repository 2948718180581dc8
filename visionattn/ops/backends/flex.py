"""The flex backend: PyTorch FlexAttention with a block mask built from the pattern and score mods for
relative positions. Meant for GPUs; on CPU it runs forward only (FlexAttention has no CPU backward) and
eagerly (the unfused path), which is what the tests use on small shapes.

Separable patterns become a ``mask_mod`` that unflattens raster indices and looks up the small per-axis
``(L_q, L_k)`` rule tables, so no ``N × N`` tensor is built for them.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from ..call import AttentionCall
from ..patterns import Strided
from ..position import RelativeBias, RelativeLogits
from .base import Backend

try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # pragma: no cover - torch without FlexAttention
    flex_attention = create_block_mask = None

_compiled = None


def _unflatten(index: Tensor, grid: tuple[int, ...]) -> list[Tensor]:
    """Raster index → per-axis indices."""
    out, stride = [], math.prod(grid)
    for n in grid:
        stride //= n
        out.append((index // stride) % n)
    return out


def _mask_mod(call: AttentionCall):
    pattern, q_grid, kv_grid, device = call.pattern, call.q_grid, call.kv_grid, call.q.device
    padding = None if call.key_padding_mask is None else call.key_padding_mask.reshape(call.q.shape[0], -1)
    if pattern.separable:
        tables = [
            pattern.axis_allowed(a, torch.arange(lq)[:, None], torch.arange(lk)[None, :], lq, lk).to(device)
            for a, (lq, lk) in enumerate(zip(q_grid, kv_grid, strict=True))
        ]

        def allowed(b, h, qi, ki):
            ok = None
            for table, qa, ka in zip(tables, _unflatten(qi, q_grid), _unflatten(ki, kv_grid), strict=True):
                ok = table[qa, ka] if ok is None else ok & table[qa, ka]
            return ok
    elif isinstance(pattern, Strided):

        def allowed(b, h, qi, ki):
            ok = ((qi - ki).abs() < pattern.local) | ((qi - ki) % pattern.stride == 0)
            return ok & (ki <= qi) if pattern.causal else ok
    else:
        dense = pattern.mask(kv_grid, q_grid).to(device)

        def allowed(b, h, qi, ki):
            return dense[qi, ki]

    if padding is None:
        return allowed
    return lambda b, h, qi, ki: allowed(b, h, qi, ki) & ~padding[b, ki]


def _score_mod(call: AttentionCall, q: Tensor):
    position, pattern = call.position, call.pattern
    if not isinstance(position, (RelativeBias, RelativeLogits)):
        return None
    q_coords = [pattern.query_coords(a, n).to(q.device) for a, n in enumerate(call.q_grid)]
    radius = position.radius

    def deltas(qi, ki):
        qa, ka = _unflatten(qi, call.q_grid), _unflatten(ki, call.kv_grid)
        return [(ka[a] - q_coords[a][qa[a]]).clamp(-r, r) + r for a, r in enumerate(radius)]

    if isinstance(position, RelativeBias):
        table = position.table.flatten(1)

        def add_bias(score, b, h, qi, ki):
            flat = 0
            for d, r in zip(deltas(qi, ki), radius, strict=True):
                flat = flat * (2 * r + 1) + d
            return score + table[h, flat].to(score.dtype)

        return add_bias
    # RelativeLogits: precompute q · r for every query and offset, look it up per (query, key)
    qr = [torch.einsum("bhqd,rd->bhqr", q, t.to(q.dtype)) for t in position.tables]

    def add_logits(score, b, h, qi, ki):
        for table, d in zip(qr, deltas(qi, ki), strict=True):
            score = score + table[b, h, qi, d]
        return score

    return add_logits


def flex_attention_call(call: AttentionCall) -> Tensor:
    B, h = call.q.shape[0], call.heads
    nq, nk = math.prod(call.q_grid), math.prod(call.kv_grid)
    q = call.q.reshape(B, nq, h, -1).transpose(1, 2)
    k = call.k.reshape(B, nk, h, -1).transpose(1, 2)
    v = call.v.reshape(B, nk, h, -1).transpose(1, 2)
    batch = B if call.key_padding_mask is not None else None
    block_mask = create_block_mask(_mask_mod(call), batch, None, nq, nk, device=str(call.q.device))
    run = flex_attention
    if call.q.is_cuda:
        global _compiled
        _compiled = _compiled or torch.compile(flex_attention)
        run = _compiled
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without torch.compile.*")
        out = run(q, k, v, score_mod=_score_mod(call, q), block_mask=block_mask, scale=call.scale)
    return out.transpose(1, 2).reshape(B, *call.q_grid, h, -1)


def _refuse(call: AttentionCall) -> str | None:
    if flex_attention is None:
        return f"this torch {torch.__version__} has no torch.nn.attention.flex_attention"
    if call.form != "softmax":
        return f"runs form='softmax' only, got form={call.form!r}"
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (call.q, call.k, call.v, *_position_tensors(call))
    )
    if needs_grad and call.q.device.type == "cpu":
        return "FlexAttention has no backward on CPU (inputs require grad); use it under torch.no_grad() or on GPU"
    return None


def _position_tensors(call: AttentionCall) -> tuple[Tensor, ...]:
    position = call.position
    if isinstance(position, RelativeBias):
        return (position.table,)
    if isinstance(position, RelativeLogits):
        return position.tables
    return ()


FLEX = Backend("flex", flex_attention_call, _refuse)
