"""``attention()``: validate, apply rotary positions and key padding, pick a backend, run it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable

import torch
from torch import Tensor

from .backends import AUTO_ORDER, BACKENDS
from .call import AttentionCall, make_call
from .patterns import Pattern
from .position import Position, Rope

_INTERCEPT: contextvars.ContextVar[Callable | None] = contextvars.ContextVar("visionattn_intercept", default=None)
_OBSERVE: contextvars.ContextVar[Callable | None] = contextvars.ContextVar("visionattn_observe", default=None)


@contextlib.contextmanager
def intercept_attention(handler: Callable[[AttentionCall], Tensor]):
    """Scoped: every :func:`attention` call in this context returns ``handler(call)`` (a validated, prepared
    :class:`AttentionCall`) instead of running a backend. Used by analysis tools (analytic FLOP counting,
    attention-map capture); outside the context nothing changes."""
    token = _INTERCEPT.set(handler)
    try:
        yield
    finally:
        _INTERCEPT.reset(token)


@contextlib.contextmanager
def observe_attention(callback: Callable[[AttentionCall, Tensor], None]):
    """Scoped: after every :func:`attention` call in this context has run its backend as usual,
    ``callback(call, output)`` sees the prepared :class:`AttentionCall` (rotary positions applied, padded keys
    zeroed) and the output. Outputs are not changed; the callback must not modify its arguments in place. Used to
    capture attention maps from models that run fused/blocked backends. Nested contexts: the innermost wins."""
    token = _OBSERVE.set(callback)
    try:
        yield
    finally:
        _OBSERVE.reset(token)


class BackendUnavailable(ValueError):
    """No backend (or not the forced one) can run the call; the message lists every backend's reason."""


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pattern: Pattern,
    *,
    position: Position = None,
    form: str = "softmax",
    backend: str = "auto",
    scale: float | None = None,
    key_padding_mask: Tensor | None = None,
    query_padding_mask: Tensor | None = None,
) -> Tensor:
    """The universal mixing operator.

    q: ``(B, *q_grid, heads, head_dim)``; k: ``(B, *kv_grid, heads, head_dim)``; v: ``(B, *kv_grid, heads,
    v_dim)``; grids of 1, 2 or 3 dims (``q_grid`` is ``kv_grid`` except for strided Halo and Global
    cross-attention). pattern: who attends to whom (``visionattn.ops.patterns``). position: None, or a
    ``RelativeBias``, ``RelativeLogits`` or ``Rope`` descriptor. form: ``'softmax'`` or ``'linear'``
    (``φ(q)·φ(k)`` weights, φ = elu + 1, normalised per query). scale: logit scale, default
    ``head_dim ** -0.5`` for softmax and 1 for linear. key_padding_mask: ``(B, *kv_grid)`` bool, True
    marks keys that are never attended (their k and v are zeroed first, so NaN padding is harmless).
    query_padding_mask: ``(B, *q_grid)`` bool, True marks queries that are padding: their q is zeroed first and
    their output is zeros (no gradient reaches their q). Default: the key padding mask when ``q is k`` (one
    tensor: self-attention), else no padded query — pass it for self-attention with separate q and k tensors
    (``layers.Attention`` does), never for cross-attention between two grids of equal size unless meant.
    backend: ``'auto'`` or one of ``reference``, ``blocked``, ``flex``, ``linear``.

    Returns ``(B, *q_grid, heads, v_dim)``. A query with no allowed key outputs zeros, and so does a padded query.
    """
    call = make_call(q, k, v, pattern, position, form, scale, key_padding_mask, query_padding_mask)
    call = _prepare(call)
    handler = _INTERCEPT.get()
    if handler is not None:
        return handler(call)
    out = choose_backend(call, backend).run(call)
    if call.query_padding_mask is not None:
        out = out.masked_fill(call.query_padding_mask[..., None, None], 0.0)
    observer = _OBSERVE.get()
    if observer is not None:
        observer(call, out)
    return out


def prepare_call(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pattern: Pattern,
    *,
    position: Position = None,
    form: str = "softmax",
    scale: float | None = None,
    key_padding_mask: Tensor | None = None,
    query_padding_mask: Tensor | None = None,
) -> AttentionCall:
    """The validated, prepared :class:`AttentionCall` that :func:`attention` would hand its backend (arguments as
    :func:`attention`; RoPE applied to q and k, padded entities zeroed). Pass it to
    :func:`visionattn.ops.attention_probs` for the attention probabilities of the call."""
    return _prepare(make_call(q, k, v, pattern, position, form, scale, key_padding_mask, query_padding_mask))


def _prepare(call: AttentionCall) -> AttentionCall:
    """Rotary positions and padding act on the inputs, identically for every backend: padded keys, values and
    queries are zeroed (the output of padded queries is zeroed after the backend, in :func:`attention`)."""
    q, k, v = call.q, call.k, call.v
    if call.key_padding_mask is not None:
        keep = (~call.key_padding_mask)[..., None, None]
        k, v = torch.where(keep, k, 0.0), torch.where(keep, v, 0.0)
    if call.query_padding_mask is not None:
        q = torch.where(call.query_padding_mask[..., None, None], 0.0, q)
    if isinstance(call.position, Rope):
        pattern, device = call.pattern, q.device
        q = call.position.rotate(q, tuple(pattern.query_coords(a, n, device=device) for a, n in enumerate(call.q_grid)))
        k = call.position.rotate(k, tuple(torch.arange(n, device=device) for n in call.kv_grid))
    if q is call.q and k is call.k and v is call.v:
        return call
    return AttentionCall(q, k, v, call.pattern, call.position, call.form, call.scale, call.key_padding_mask,
                         call.query_padding_mask)


def choose_backend(call: AttentionCall, backend: str = "auto"):
    """The backend that runs ``call``: the forced one, or the first that accepts it in ``AUTO_ORDER``."""
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")
    order = AUTO_ORDER.get(call.q.device.type, AUTO_ORDER["cuda"]) if backend == "auto" else (backend,)
    reasons = {}
    for name in order:
        reason = BACKENDS[name].refuse(call)
        if reason is None:
            return BACKENDS[name]
        reasons[name] = reason
    for name, b in BACKENDS.items():
        reasons.setdefault(name, b.refuse(call) or "accepts this call")
    lines = "\n".join(f"  {name}: {why}" for name, why in reasons.items())
    wanted = "no backend can run" if backend == "auto" else f"backend {backend!r} cannot run"
    raise BackendUnavailable(f"{wanted} {call.pattern} form={call.form!r} on grid {call.kv_grid}:\n{lines}")
