"""Attention with a learnable additive bias, forward and backward by hand, in cache-sized chunks.

PyTorch's fused CPU SDPA kernels take an ``attn_mask`` but give it no gradient, so a bias that requires grad
(relative bias tables, relative logits) sends ``scaled_dot_product_attention`` to its unfused math path, which
also scales, checks for -inf and masks in extra passes. This function does the minimum: one matmul, scale and add,
one softmax, one matmul forward; the textbook backward ``dS = P ⊙ (dP − rowsum(P ⊙ dP))``, with the bias gradient
reduced to the bias's broadcast shape. The blocked backend also uses it when ``v_dim != head_dim`` (fused SDPA
needs equal widths; its math path is slower), and :func:`masked_attention` is the same forward without autograd
(inference: nothing saved). Its twin is the reference backend (tests/test_backends.py compares them forward and
backward).

**Chunks.** Windows are small (Swin: 49 × 49 scores per window and head), so the score-sized passes (scale, add,
softmax, its backward, the bias-gradient sum) are memory traffic, not arithmetic. The batch is cut into chunks of
about :data:`CHUNK_BYTES` of scores along its leading axis; each chunk's score tensors are made, used and dropped
while they sit in cache, written straight into preallocated outputs (``out=``). Only the probabilities are kept
for backward (as one tensor), and the backward walks the same chunks. Measured on Swin-T stage-1 windows (512
windows × 3 heads, 1 thread): fwd+bwd 63 → 44 ms.

Shapes: q ``(..., Tq, d)``, k ``(..., Tk, d)``, v ``(..., Tk, e)`` (any batch axes, e.g. ``(N, h)``; ``e`` may
differ from ``d``), bias broadcastable to ``(..., Tq, Tk)`` or None (masked pairs hold ``-inf``; every row keeps at
least one finite entry).
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_BYTES = 1 << 20  # float32 scores per chunk: about 1 MiB (stays in L2 with its copies)


def _reduce_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum a gradient over the dims the bias was broadcast along (and over leading dims the bias does not have)."""
    lead = grad.ndim - len(shape)
    if lead:
        grad = grad.sum(tuple(range(lead)))
    dims = [i for i, (g, s) in enumerate(zip(grad.shape, shape, strict=True)) if s == 1 and g != 1]
    return grad.sum(dims, keepdim=True) if dims else grad


def _chunks(q: Tensor, k: Tensor) -> tuple[int, list[slice]]:
    """The batch axis to cut (the first of size > 1, or 0) and its slices of about :data:`CHUNK_BYTES` of scores;
    one slice under ``torch.compile`` (the compiler fuses the passes itself)."""
    lead = q.ndim - 2
    axis = 0
    for i in range(lead):
        if q.shape[i] > 1:
            axis = i
            break
    n = q.shape[axis] if lead else 1
    if torch.compiler.is_compiling() or lead == 0:
        return axis, [slice(0, n)]
    per_row = 4 * q.shape[-2] * k.shape[-2]
    for size in q.shape[axis + 1 : -2]:
        per_row *= size
    step = max(1, CHUNK_BYTES // per_row)
    return axis, [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _part(t: Tensor | None, axis: int, sl: slice, ndim: int) -> Tensor | None:
    """Rows ``sl`` along ``axis`` (an axis of a rank-``ndim`` tensor) of ``t``, right-aligned with it as broadcasting
    is; ``t`` as is where it does not have that axis or broadcasts along it."""
    if t is None:
        return None
    axis -= ndim - t.ndim
    if axis < 0 or t.shape[axis] == 1 or (sl.start == 0 and sl.stop == t.shape[axis]):
        return t
    return t.narrow(axis, sl.start, sl.stop - sl.start)


def _probs(q: Tensor, k: Tensor, bias: Tensor | None, mask: Tensor | None, scale: float) -> Tensor:
    """``softmax(scale · q kᵀ + bias + mask)``, both added in place (None: nothing); softmax in float32, returned
    in q's dtype."""
    scores = torch.matmul(q, k.transpose(-1, -2))
    if scale != 1.0:
        scores.mul_(scale)
    for add in (bias, mask):
        if add is not None:
            scores.add_(add)
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)


def _forward(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None, scale: float,
             keep: bool) -> tuple[Tensor, Tensor | None]:
    """Output ``(..., Tq, e)`` and (``keep``) the probabilities ``(..., Tq, Tk)``, chunk by chunk."""
    axis, parts = _chunks(q, k)
    if len(parts) == 1:
        p = _probs(q, k, bias, mask, scale)
        return torch.matmul(p, v), p if keep else None
    shape = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    out = q.new_empty(*shape, q.shape[-2], v.shape[-1])
    probs = q.new_empty(*shape, q.shape[-2], k.shape[-2]) if keep else None
    n = q.ndim
    for sl in parts:
        p = _probs(_part(q, axis, sl, n), _part(k, axis, sl, n), _part(bias, axis, sl, n), _part(mask, axis, sl, n),
                   scale)
        if probs is not None:
            _part(probs, axis, sl, n).copy_(p)
        torch.matmul(p, _part(v, axis, sl, n), out=_part(out, axis, sl, n))
    return out, probs


def masked_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None,
                     scale: float) -> Tensor:
    """``softmax(scale · q kᵀ + bias + mask) v`` without gradients (inference only: nothing is saved); bias and
    mask are additive float tensors broadcastable to ``(..., Tq, Tk)`` (or None), e.g. a position bias and a
    0 / -inf mask, added to the scores in place so their sum is never built."""
    return _forward(q, k, v, bias, mask, scale, keep=False)[0]


class _BiasedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, scale: float) -> Tensor:
        out, probs = _forward(q, k, v, bias, None, scale, keep=True)
        ctx.save_for_backward(q, k, v, probs)
        ctx.scale = scale
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.bias_needs_grad = bias is not None and bias.requires_grad
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, probs = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        axis, parts = _chunks(q, k)
        if len(parts) == 1:
            return (*_backward(q, k, v, probs, grad_out, ctx.scale, ctx.bias_shape if ctx.bias_needs_grad else None),
                    None)
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        grad_bias, n = None, q.ndim
        for sl in parts:
            rows = [_part(t, axis, sl, n) for t in (q, k, v, probs, grad_out)]
            dq, dk, dv = [_part(t, axis, sl, n) for t in (grad_q, grad_k, grad_v)]
            parts_grad = _backward(*rows, ctx.scale, _chunk_shape(ctx.bias_shape, probs.shape, axis, sl)
                                   if ctx.bias_needs_grad else None, out=(dq, dk, dv))
            if ctx.bias_needs_grad:
                grad_bias = _accumulate(grad_bias, parts_grad[3], ctx.bias_shape, axis, sl, n)
        return grad_q, grad_k, grad_v, grad_bias, None


def _backward(q, k, v, probs, grad_out, scale: float, bias_shape, out=None):
    """Gradients of q, k, v (written into ``out`` when given) and of a bias of ``bias_shape`` (None: no bias grad)
    for one chunk: ``dS = P ⊙ (dP − rowsum(P ⊙ dP))``."""
    dq, dk, dv = out if out is not None else (None, None, None)
    grad_v = torch.matmul(probs.transpose(-1, -2), grad_out, out=dv)
    grad_scores = torch._softmax_backward_data(torch.matmul(grad_out, v.transpose(-1, -2)), probs, -1, probs.dtype)
    grad_bias = None if bias_shape is None else _reduce_to(grad_scores, bias_shape)
    grad_q = torch.matmul(grad_scores, k, out=dq)
    grad_k = torch.matmul(grad_scores.transpose(-1, -2), q, out=dk)
    if scale != 1.0:  # on the (T, d) gradients: smaller than the (T, T) scores
        if out is not None:
            grad_q.mul_(scale)
            grad_k.mul_(scale)
        else:
            grad_q, grad_k = grad_q * scale, grad_k * scale
    return grad_q, grad_k, grad_v, grad_bias


def _chunk_shape(bias_shape: torch.Size, probs_shape: torch.Size, axis: int, sl: slice) -> torch.Size:
    """The bias shape as it broadcasts against one chunk (rows ``sl`` of ``axis``) of the scores."""
    lead = len(probs_shape) - len(bias_shape)
    shape = list(bias_shape)
    if 0 <= axis - lead and bias_shape[axis - lead] != 1:
        shape[axis - lead] = sl.stop - sl.start
    return torch.Size(shape)


def _accumulate(total: Tensor | None, part: Tensor, bias_shape: torch.Size, axis: int, sl: slice,
                ndim: int) -> Tensor:
    """Add one chunk's bias gradient: summed where the bias broadcasts, placed at its rows where it has the axis."""
    if total is None:
        total = part.new_zeros(bias_shape)
    _part(total, axis, sl, ndim).add_(part)
    return total


def biased_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, scale: float) -> Tensor:
    """softmax(scale · q kᵀ + bias) v with gradients for q, k, v and bias (if it requires grad); no bias if None.
    Shapes in the module docstring."""
    return _BiasedAttention.apply(q, k, v, bias, scale)
