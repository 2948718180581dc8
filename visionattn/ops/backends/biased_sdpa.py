"""Attention with a learnable additive bias, forward and backward by hand.

PyTorch's fused CPU SDPA kernels take an ``attn_mask`` but give it no gradient, so a bias that requires grad
(relative bias tables, relative logits) sends ``scaled_dot_product_attention`` to its unfused math path, which
also scales, checks for -inf and masks in extra passes. This function does the minimum: one ``baddbmm``-like
matmul + add, one softmax, one matmul forward; the textbook backward
``dS = P ⊙ (dP − rowsum(P ⊙ dP))``, with the bias gradient reduced to the bias's broadcast shape. The blocked
backend also uses it when ``v_dim != head_dim`` (fused SDPA needs equal widths; its math path is slower), and
:func:`masked_attention` is the same forward without autograd (inference: nothing saved).
Its twin is the reference backend (tests/test_backends.py compares them forward and backward).

Shapes: q ``(..., Tq, d)``, k ``(..., Tk, d)``, v ``(..., Tk, e)`` (any batch axes, e.g. ``(N, h)``; ``e`` may
differ from ``d``), bias broadcastable to ``(..., Tq, Tk)`` or None (masked pairs hold ``-inf``; every row keeps at
least one finite entry).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _reduce_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum a ``(N, h, Tq, Tk)`` gradient over the dims the bias was broadcast along."""
    dims = [i for i, (g, s) in enumerate(zip(grad.shape, shape, strict=True)) if s == 1 and g != 1]
    return grad.sum(dims, keepdim=True) if dims else grad


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


def masked_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None,
                     scale: float) -> Tensor:
    """``softmax(scale · q kᵀ + bias + mask) v`` without gradients (inference only: nothing is saved); bias and
    mask are additive float tensors broadcastable to ``(..., Tq, Tk)`` (or None), e.g. a position bias and a
    0 / -inf mask, added to the scores in place so their sum is never built."""
    return torch.matmul(_probs(q, k, bias, mask, scale), v)


class _BiasedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, scale: float) -> Tensor:
        probs = _probs(q, k, bias, None, scale)
        ctx.save_for_backward(q, k, v, probs)
        ctx.scale = scale
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.bias_needs_grad = bias is not None and bias.requires_grad
        return torch.matmul(probs, v)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, probs = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_v = torch.matmul(probs.transpose(-1, -2), grad_out)
        grad_probs = torch.matmul(grad_out, v.transpose(-1, -2))
        grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        grad_bias = _reduce_to(grad_scores, ctx.bias_shape) if ctx.bias_needs_grad else None
        if ctx.scale != 1.0:
            grad_scores = grad_scores * ctx.scale  # not in place: grad_bias may be this very tensor
        grad_q = torch.matmul(grad_scores, k)
        grad_k = torch.matmul(grad_scores.transpose(-1, -2), q)
        return grad_q, grad_k, grad_v, grad_bias, None


def biased_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, scale: float) -> Tensor:
    """softmax(scale · q kᵀ + bias) v with gradients for q, k, v and bias (if it requires grad); no bias if None.
    Shapes in the module docstring."""
    return _BiasedAttention.apply(q, k, v, bias, scale)
