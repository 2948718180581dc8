"""The flex backend: PyTorch FlexAttention with a block mask built from the pattern and score mods for
relative positions. Meant for GPUs; on CPU it runs forward only (FlexAttention has no CPU backward) and
eagerly (the unfused path), which is what the CPU tests use on small shapes.

Separable patterns become a ``mask_mod`` that unflattens raster indices and looks up the small per-axis
``(L_q, L_k)`` rule tables, so no ``N × N`` tensor is built for them.

Per plan ``(pattern, q_grid, kv_grid, device)`` (:class:`FlexPlan`, built once): the rule tables and query
coordinates on the device, the mask_mod, the block mask (batch- and head-broadcast), the same blocks without the
full/partial split (for key padding, whose per-call mask_mod then sees every block) and, on CUDA, a compiled
FlexAttention of its own: Dynamo keeps compiled variants and counts recompiles per code object, so one compiled
function shared by every grid and pattern would pass ``recompile_limit`` and silently fall back to eager.

On CUDA every call is compiled, and Inductor's FlexAttention kernels refuse head widths below 16: such calls are
refused with that reason, so ``backend='auto'`` falls back (to reference for Strided and Graph).
"""

from __future__ import annotations

import functools
import itertools
import math
import types
import warnings

import torch
from torch import Tensor

from ..call import AttentionCall
from ..patterns import Pattern, Strided
from ..position import RelativeBias, RelativeLogits, position_tensors
from .base import Backend

try:
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
except ImportError:  # pragma: no cover - torch without FlexAttention
    flex_attention = create_block_mask = BlockMask = None

COMPILED_DEVICES = ("cuda",)  # device types where FlexAttention runs compiled (Inductor kernels)
MIN_COMPILED_HEAD_DIM = 16  # Inductor's FlexAttention refuses q/k/v head widths below this


def _unflatten(index: Tensor, grid: tuple[int, ...]) -> list[Tensor]:
    """Raster index → per-axis indices."""
    out, stride = [], math.prod(grid)
    for n in grid:
        stride //= n
        out.append((index // stride) % n)
    return out


def _pattern_mask_mod(pattern: Pattern, q_grid, kv_grid, device: torch.device):
    """``mask_mod(b, h, q_idx, kv_idx)`` of the pattern alone, its lookup tables built once on ``device``."""
    if pattern.separable:
        tables = [
            pattern.axis_allowed(a, torch.arange(lq, device=device)[:, None], torch.arange(lk, device=device)[None, :],
                                 lq, lk)  # (L_q, L_k) bool
            for a, (lq, lk) in enumerate(zip(q_grid, kv_grid, strict=True))
        ]

        def allowed(b, h, qi, ki):
            ok = None
            for table, qa, ka in zip(tables, _unflatten(qi, q_grid), _unflatten(ki, kv_grid), strict=True):
                ok = table[qa, ka] if ok is None else ok & table[qa, ka]
            return ok

        return allowed
    if isinstance(pattern, Strided):

        def allowed(b, h, qi, ki):
            ok = ((qi - ki).abs() < pattern.local) | ((qi - ki) % pattern.stride == 0)
            return ok & (ki <= qi) if pattern.causal else ok

        return allowed
    dense = pattern.mask(kv_grid, q_grid, device=device)  # (N_q, N_k) bool, built on the device

    def allowed(b, h, qi, ki):
        return dense[qi, ki]

    return allowed


def _flex_run(q, k, v, score_mod, block_mask, scale):
    return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale)


_RUNNER_IDS = itertools.count()


def _compiled_runner():
    """``torch.compile`` of a fresh copy of :func:`_flex_run` (its own code object, so its own compile cache)."""
    code = _flex_run.__code__.replace(co_name=f"_flex_run_{next(_RUNNER_IDS)}")
    fn = types.FunctionType(code, _flex_run.__globals__, code.co_name)
    fn.__qualname__ = code.co_name
    return torch.compile(fn)


class FlexPlan:
    """What a flex call needs that depends only on ``(pattern, q_grid, kv_grid, device)``: ``mask_mod``, ``block_mask``
    (B and H broadcast), ``kv_blocks`` = (kv_num_blocks, kv_indices, BLOCK_SIZE) of every non-empty block (for key
    padding), ``q_coords`` (per axis, on the device) and ``run`` (compiled on :data:`COMPILED_DEVICES`)."""

    def __init__(self, pattern: Pattern, q_grid, kv_grid, device: str):
        dev = torch.device(device)
        nq, nk = math.prod(q_grid), math.prod(kv_grid)
        self.mask_mod = _pattern_mask_mod(pattern, q_grid, kv_grid, dev)
        self.block_mask = create_block_mask(self.mask_mod, None, None, nq, nk, device=device)
        dense = self.block_mask.to_dense()  # (1, 1, Q_blocks, KV_blocks): partial or full blocks
        indices = torch.argsort(dense, dim=-1, descending=True, stable=True).to(torch.int32)
        self.kv_blocks = (dense.sum(-1).to(torch.int32), indices, self.block_mask.BLOCK_SIZE)
        self.q_coords = [pattern.query_coords(a, n, device=dev) for a, n in enumerate(q_grid)]
        self.run = _compiled_runner() if dev.type in COMPILED_DEVICES else _flex_run


@functools.lru_cache(maxsize=64)
def flex_plan(pattern: Pattern, q_grid, kv_grid, device: str) -> FlexPlan:
    """The cached :class:`FlexPlan` (every block mask is built once per plan). Eager calls only: inside an outer
    ``torch.compile`` the block mask is built in the graph (:func:`_traced_block_mask`)."""
    return FlexPlan(pattern, q_grid, kv_grid, device)


def _padded(allowed, padding: Tensor):
    """``mask_mod`` that also drops padded keys; padding ``(B, N_k)`` bool."""

    def mask_mod(b, h, qi, ki):
        return allowed(b, h, qi, ki) & ~padding[b, ki]

    return mask_mod


def _block_mask(call: AttentionCall, plan: FlexPlan):
    """The plan's block mask, or with key padding one whose mask_mod also drops padded keys, over every
    non-empty block of the pattern (built from the cached block lists: no mask evaluation, no host sync)."""
    if call.key_padding_mask is None:
        return plan.block_mask
    num, indices, block = plan.kv_blocks
    seq = (math.prod(call.q_grid), math.prod(call.kv_grid))
    mask_mod = _padded(plan.mask_mod, call.key_padding_mask.reshape(call.q.shape[0], -1))
    return BlockMask.from_kv_blocks(num, indices, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=seq)


def _traced_block_mask(call: AttentionCall, device: torch.device):
    """:func:`_block_mask` inside an outer ``torch.compile``: built in the graph by ``create_block_mask`` (a cached
    block mask would enter the graph as a constant object, which Dynamo cannot guard)."""
    mask_mod = _pattern_mask_mod(call.pattern, call.q_grid, call.kv_grid, device)
    batch = None
    if call.key_padding_mask is not None:
        batch = call.q.shape[0]
        mask_mod = _padded(mask_mod, call.key_padding_mask.reshape(batch, -1))
    return create_block_mask(mask_mod, batch, None, math.prod(call.q_grid), math.prod(call.kv_grid), device=device)


def _score_mod(call: AttentionCall, q_coords: list[Tensor], q: Tensor):
    """``score_mod`` adding the relative position; q_coords: per axis the queries' positions on the key grid."""
    position = call.position
    if not isinstance(position, (RelativeBias, RelativeLogits)):
        return None
    radius, q_grid, kv_grid = position.radius, call.q_grid, call.kv_grid

    def deltas(qi, ki):
        qa, ka = _unflatten(qi, q_grid), _unflatten(ki, kv_grid)
        return [(ka[a] - q_coords[a][qa[a]]).clamp(-r, r) + r for a, r in enumerate(radius)]

    if isinstance(position, RelativeBias):
        table = position.table.flatten(1)  # (h, Π(2R+1))

        def add_bias(score, b, h, qi, ki):
            flat = 0
            for d, r in zip(deltas(qi, ki), radius, strict=True):
                flat = flat * (2 * r + 1) + d
            return score + table[h, flat].to(score.dtype)

        return add_bias
    # RelativeLogits: precompute q · r for every query and offset, look it up per (query, key)
    qr = [torch.einsum("bhqd,rd->bhqr", q, t.to(q.dtype)) for t in position.tables]  # (B, h, N_q, 2R+1) each

    def add_logits(score, b, h, qi, ki):
        for table, d in zip(qr, deltas(qi, ki), strict=True):
            score = score + table[b, h, qi, d]
        return score

    return add_logits


def flex_attention_call(call: AttentionCall) -> Tensor:
    B, h = call.q.shape[0], call.heads
    nq, nk = math.prod(call.q_grid), math.prod(call.kv_grid)
    q = call.q.reshape(B, nq, h, -1).transpose(1, 2)  # (B, h, N_q, d)
    k = call.k.reshape(B, nk, h, -1).transpose(1, 2)  # (B, h, N_k, d)
    v = call.v.reshape(B, nk, h, -1).transpose(1, 2)  # (B, h, N_k, e)
    if torch.compiler.is_compiling():  # inside an outer torch.compile: traced inline, block mask from constants
        device = call.q.device
        q_coords = [call.pattern.query_coords(a, n, device=device) for a, n in enumerate(call.q_grid)]
        out = _flex_run(q, k, v, _score_mod(call, q_coords, q), _traced_block_mask(call, device), call.scale)
    else:
        plan = flex_plan(call.pattern, call.q_grid, call.kv_grid, str(call.q.device))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*without torch.compile.*")
            out = plan.run(q, k, v, _score_mod(call, plan.q_coords, q), _block_mask(call, plan), call.scale)
    return out.transpose(1, 2).reshape(B, *call.q_grid, h, -1)


def _refuse(call: AttentionCall) -> str | None:
    if flex_attention is None:
        return f"this torch {torch.__version__} has no torch.nn.attention.flex_attention"
    if call.form != "softmax":
        return f"runs form='softmax' only, got form={call.form!r}"
    device = call.q.device.type
    if device in COMPILED_DEVICES:
        widths = (call.q.shape[-1], call.v.shape[-1])
        if min(widths) < MIN_COMPILED_HEAD_DIM:
            return (f"compiled FlexAttention on {device} needs head widths ≥ {MIN_COMPILED_HEAD_DIM}, got "
                    f"head_dim {widths[0]} and v_dim {widths[1]}")
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (call.q, call.k, call.v, *position_tensors(call.position))
    )
    if needs_grad and device == "cpu":
        return "FlexAttention has no backward on CPU (inputs require grad); use it under torch.no_grad() or on GPU"
    return None


FLEX = Backend("flex", flex_attention_call, _refuse)
