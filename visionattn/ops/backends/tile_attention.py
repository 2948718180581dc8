"""Attention on batches of tiles: the kernels both blocked plans (:mod:`.blocked`, :mod:`.blocked_grouped`) call.

:func:`attend` picks, per call, fused SDPA (:mod:`.sdpa`), :func:`.biased_sdpa.biased_attention` (a learnable bias
on CPU, where fused SDPA gives its mask no gradient, and ``v_dim != head_dim``) or
:func:`.biased_sdpa.masked_attention` (``v_dim != head_dim`` without gradient). :func:`fold_relative_logits` puts
relative logits ``q · r_Δ`` inside the dot product so that a fused kernel computes them. Tiles are
``(b, m, h, T, d)``: ``b`` images (or 1), ``m`` tiles; a plan object supplies ``n`` (tiles per axis), ``tq``,
``tk`` (slots per axis) and ``deltas`` (per axis key − query offsets, ``(n_a | 1, tq_a, tk_a)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..call import AttentionCall
from ..static import trace_constant
from .biased_sdpa import biased_attention, masked_attention
from .sdpa import batch_mask, fused_bias_grad, fused_width, sdpa


def _relative_logits(call: AttentionCall, plan, q_tiles: Tensor) -> list[Tensor]:
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


def fold_relative_logits(call: AttentionCall, plan, q: Tensor, k: Tensor, v: Tensor):
    """Fold ``q · r_Δ`` into the dot product so a fused kernel computes it: per axis, append the query's
    relative logits over the key-box slots to q (divided by the scale) and a one-hot of each key's slot to k;
    then ``scale · q'·k' = scale · q·k + Σ_a q·r^a[Δ_a]``. On CUDA the width ``d + Σ K_a`` is zero-padded to
    :func:`.sdpa.fused_width` (a multiple of 8: fused SDPA kernels refuse other widths with a mask and fall back to
    the math path). On CPU v is zero-padded to the same width (fused CPU SDPA needs equal q and v widths); elsewhere
    it stays as it is. Returns q', k' ``(B*nT, h, T, W)`` and v'."""
    parts_q = [q] + [(logits / call.scale).to(q.dtype) for logits in _relative_logits(call, plan, q)]
    width = sum(p.shape[-1] for p in parts_q)
    pad = fused_width(width, q.device) - width
    if pad:
        parts_q.append(q.new_zeros(*q.shape[:-1], pad))
    slots = _key_slots(plan.tk, pad, str(k.device), k.dtype)  # (Tk, Σ K_a + pad)
    q = torch.cat(parts_q, -1)  # (B*nT, h, Tq, W)
    k = torch.cat([k, slots.expand(*k.shape[:2], *slots.shape)], -1)  # (B*nT, h, Tk, W)
    if q.device.type == "cpu" and v.shape[-1] != q.shape[-1]:
        v = F.pad(v, (0, q.shape[-1] - v.shape[-1]))
    return q, k, v


@trace_constant(maxsize=128)
def _key_slots(tk: tuple[int, ...], pad: int, device: str, dtype: torch.dtype) -> Tensor:
    """What folded relative logits append to every key: per axis ``a`` the one-hot ``(Tk, K_a)`` of the key's slot
    along ``a`` (keys of a box in raster order), then ``pad`` zeros: ``(Tk, Σ K_a + pad)``, built once."""
    parts = []
    for a, n in enumerate(tk):
        slot = torch.arange(n).reshape([n if i == a else 1 for i in range(len(tk))]).expand(*tk).reshape(-1)  # (Tk,)
        parts.append(F.one_hot(slot, n))  # (Tk, K_a)
    parts.append(torch.zeros(math.prod(tk), pad, dtype=torch.long))
    return torch.cat(parts, -1).to(device=device, dtype=dtype)


def attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None, scale: float) -> Tensor:
    """``softmax(scale · q kᵀ + bias + mask) v`` on tiles ``(b, m, h, T, .)``; bias ``(1|b, m, 1|h, Tq, Tk)`` and
    mask ``(1|b, m, 1, Tq, Tk)`` additive float or None. With ``v_dim != head_dim`` (in float32 on CPU, as SDPA's
    math path) and no gradient: :func:`masked_attention` (matmul, add, softmax, matmul). Else one float mask: fused
    SDPA when q and v widths agree (or off CPU) and the mask needs no gradient (or the device's fused kernel gives it
    one: CUDA), :func:`biased_attention` otherwise (cheaper than SDPA's CPU math path, which ``v_dim != head_dim``
    takes; the mask's batch axis stays broadcast). SDPA runs via :func:`.sdpa.sdpa` (chunks below CUDA's grid
    limit)."""
    narrow = v.shape[-1] != q.shape[-1] and q.device.type == "cpu"  # (GPU SDPA kernels take unequal widths)
    if narrow and q.dtype in (torch.bfloat16, torch.float16):
        # float32 on CPU, as SDPA's math path (its bf16 matmuls are several times slower than float32 here)
        up = [None if t is None else t.float() for t in (bias, mask)]
        return attend(q.float(), k.float(), v.float(), *up, scale).to(q.dtype)
    if narrow and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                                       for t in (q, k, v, bias, mask))):
        return masked_attention(q, k, v, bias, mask, scale)
    mask = bias if mask is None else mask if bias is None else bias + mask
    if narrow or (mask is not None and mask.requires_grad and not fused_bias_grad(q.device)):
        return biased_attention(q, k, v, mask, scale)
    b, m = q.shape[:2]
    if mask is not None:
        mask = batch_mask(mask, b)  # (b·m, 1|h, Tq, Tk)
    q, k, v = (t.reshape(b * m, *t.shape[2:]) for t in (q, k, v))  # (b·m, h, T, .)
    o = sdpa(q, k, v, mask, scale)  # (b·m, h, Tq, e)
    return o.reshape(b, m, *o.shape[1:])


