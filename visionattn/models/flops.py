"""FLOPs of models and of the attention operator, counted correctly for attention.

Convention: a *FLOP* here is one multiply or one add, so a multiply-add is 2 FLOPs (``flops = 2 · MACs``), which
is what ``torch.utils.flop_counter`` counts. timm's and fvcore's tables, and the ViT/DeiT/Swin papers, print
**MACs** under the name "FLOPs" (ViT-B/16 at 224: "17.6 GFLOPs" = 17.6 GMACs = 35.1 GFLOPs here). Every result
below carries both: ``flops`` and ``macs = flops // 2``. Only matmul-like work (linear, conv, bmm, einsum) is
counted, as fvcore/FlopCounterMode do; softmax, norms, activations and additions are not.

Why analytic attention: torch's ``FlopCounterMode`` counts fused SDPA kernels as 0 on CPU, and our blocked
backend computes padded tiles, so counting what it executes would measure the tiling, not the pattern.
:func:`count_flops` therefore runs the model under ``FlopCounterMode`` *and*
:func:`visionattn.ops.intercept_attention`: every operator call is replaced by a zero tensor of the right shape
(nothing executed, nothing double-counted) and costed by :func:`attention_flops`.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ..ops import AttentionCall, Global, Pattern, RelativeLogits, intercept_attention
from .inputs import example_input


def _axis_counts(pattern: Pattern, q_grid: tuple[int, ...], kv_grid: tuple[int, ...]) -> list[Tensor]:
    """Per axis, the 1D allowed matrix ``(L_q, L_k)`` of a separable pattern (int64)."""
    out = []
    for axis, (lq, lk) in enumerate(zip(q_grid, kv_grid, strict=True)):
        allowed = pattern.axis_allowed(axis, torch.arange(lq)[:, None], torch.arange(lk)[None, :], lq, lk)
        out.append(allowed.expand(lq, lk).long())
    return out


def _key_fan_in(pattern: Pattern, q_grid: tuple[int, ...], kv_grid: tuple[int, ...]) -> Tensor:
    """``(N_k,)`` int64: for every key (raster order), how many queries may attend to it.

    Separable patterns: the outer product over axes of the per-axis column sums (O(Σ L_q·L_k), never N×N).
    Others: column sums of the dense mask."""
    if pattern.separable or isinstance(pattern, Global):
        fan = torch.ones((), dtype=torch.long)
        for cols in (c.sum(0) for c in _axis_counts(pattern, q_grid, kv_grid)):  # each (L_k,)
            fan = fan[..., None] * cols
        return fan.reshape(-1)
    return pattern.mask(kv_grid, q_grid).long().sum(0)


def allowed_pairs(
    pattern: Pattern,
    kv_grid: tuple[int, ...],
    q_grid: tuple[int, ...] | None = None,
    key_padding_mask: Tensor | None = None,
) -> int:
    """Number of allowed (query, key) pairs of ``pattern`` on the grids, summed over the batch of
    ``key_padding_mask`` ``(B, *kv_grid)`` (True = padding, never attended) if given, else for one image.

    Separable patterns: the product over axes of the per-axis allowed counts (``pattern.axis_allowed``);
    equals ``pattern.mask(kv_grid, q_grid).sum()`` without building the ``(N_q, N_k)`` mask."""
    kv_grid = tuple(kv_grid)
    q_grid = tuple(pattern.query_grid(kv_grid) if q_grid is None else q_grid)
    if key_padding_mask is None:
        if pattern.separable or isinstance(pattern, Global):
            return math.prod(int(c.sum()) for c in _axis_counts(pattern, q_grid, kv_grid))
        return int(pattern.mask(kv_grid, q_grid).sum())
    fan = _key_fan_in(pattern, q_grid, kv_grid)  # (N_k,)
    keep = (~key_padding_mask.detach().cpu()).reshape(key_padding_mask.shape[0], -1).long()  # (B, N_k)
    return int((keep * fan[None]).sum())


def attention_flops(call: AttentionCall) -> int:
    """FLOPs (multiply and add counted separately: 2 per multiply-add) of one operator call, whole batch.

    softmax form (and linear form on local patterns, which the reference runs densely-masked):
      ``2·pairs·head_dim`` (QKᵀ) ``+ 2·pairs·v_dim`` (AV) per head, where ``pairs`` is the number of allowed
      (query, key) pairs (:func:`allowed_pairs`; keys masked by ``key_padding_mask`` removed), summed over B;
      ``+ 2·N_q·(2R_a+1)·head_dim`` per axis ``a``, head and image for ``RelativeLogits`` (q·r against the table).
      ``RelativeBias`` (a gather and an add) and RoPE (elementwise) add no multiply-adds.
    linear form on Global (the linear backend's ``φ(Q)(φ(K)ᵀV)``):
      ``2·N_k·d·e`` (KᵀV) ``+ 2·N_q·d·e`` (Q·KV) ``+ 2·N_q·d`` (normaliser) per head and image.
    """
    B, heads = call.q.shape[0], call.heads
    head_dim, v_dim = call.q.shape[-1], call.v.shape[-1]
    nq, nk = math.prod(call.q_grid), math.prod(call.kv_grid)
    if call.form == "linear" and isinstance(call.pattern, Global):
        return B * heads * (2 * nk * head_dim * v_dim + 2 * nq * head_dim * v_dim + 2 * nq * head_dim)
    with torch.device("cpu"):  # counts are host arithmetic, also for a model on the meta device
        if call.key_padding_mask is None:
            pairs = B * allowed_pairs(call.pattern, call.kv_grid, call.q_grid)
        else:
            pairs = allowed_pairs(call.pattern, call.kv_grid, call.q_grid, call.key_padding_mask)
    total = heads * (2 * pairs * head_dim + 2 * pairs * v_dim)
    if isinstance(call.position, RelativeLogits):
        total += B * heads * sum(2 * nq * t.shape[0] * head_dim for t in call.position.tables)
    return total


class AttentionCounter:
    """An ``intercept_attention`` handler: adds :func:`attention_flops` of every call to ``flops`` and returns
    zeros ``(B, *q_grid, heads, v_dim)`` derived from ``call.v`` (dtype/device kept), so nothing runs."""

    def __init__(self):
        self.flops = 0
        self.calls = 0

    def __call__(self, call: AttentionCall) -> Tensor:
        self.flops += attention_flops(call)
        self.calls += 1
        B, heads, v_dim = call.v.shape[0], call.heads, call.v.shape[-1]
        return call.v.new_zeros((B, *call.q_grid, heads, v_dim))


def count_flops(model: nn.Module, img_size: int | tuple[int, int], batch: int = 1, in_chans: int = 3,
                frames: int | None = None) -> dict:
    """FLOPs of one forward pass of ``model`` on ``(batch, in_chans, H, W)`` random images (video models:
    ``(batch, in_chans, T, H, W)`` clips of ``frames`` or the model's ``num_frames``;
    :func:`visionattn.models.inputs.example_input`).

    Returns ``dict(total=, flops=, macs=, attention=, other=, attention_calls=)``: ``total`` (= ``flops``),
    ``attention`` and ``other`` in FLOPs (2 per multiply-add); ``macs = total // 2`` is timm's/fvcore's "FLOPs".
    ``attention`` is the analytic cost of every call of the operator (not executed); ``other`` is what
    ``FlopCounterMode`` counts for everything else. Any torch SDPA outside the operator (e.g. in a timm model)
    is forced onto the math path so that its matmuls are counted.
    The model runs in eval mode under ``torch.no_grad`` on its own device; its train/eval mode is restored.
    """
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    x = example_input(model, img_size, batch, in_chans, frames=frames, device=device, dtype=dtype)
    counter = AttentionCounter()
    was_training = model.training
    model.eval()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
            stack.enter_context(intercept_attention(counter))
            mode = stack.enter_context(FlopCounterMode(display=False))
            model(x)
    finally:
        model.train(was_training)
    other = int(mode.get_total_flops())
    total = other + counter.flops
    return {"total": total, "flops": total, "macs": total // 2, "attention": counter.flops, "other": other,
            "attention_calls": counter.calls}


def count_params(model: nn.Module) -> int:
    """Number of parameters (all, trainable or not), as timm counts them."""
    return sum(p.numel() for p in model.parameters())
