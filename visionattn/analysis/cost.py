"""Analytic cost of the attention operator and of whole presets: FLOPs, and the activations saved for backward.

Conventions (as :mod:`visionattn.models.flops`): a *FLOP* is one multiply or one add, a multiply-add is 2 FLOPs
(``flops = 2 · MACs``); only matmul work counts (softmax, masks, normalising divisions do not).

FLOPs of one operator call (:func:`operator_flops`) are the work *intrinsic to the pattern*, whatever backend runs
it: ``2 · pairs · (head_dim + v_dim)`` per head and image (QKᵀ and AV over the allowed (query, key) pairs,
:func:`pair_count`), plus ``2 · N_q · (2R_a+1) · head_dim`` per axis for relative logits; the linear form on Global
is ``φ(Q)(φ(K)ᵀV)``: ``2·N_k·d·e + 2·N_q·d·e + 2·N_q·d`` (KᵀV, Q·KV, the normaliser). This equals
:func:`visionattn.models.flops.attention_flops` (tested) but needs no tensors, and counts Strided in closed form.

Memory (:func:`saved_bytes`) is an *execution's* property, so the model names the execution (float32 inputs
``(B, *grid, heads, d)``, no key padding) and counts every distinct storage autograd keeps for backward, i.e. what
``torch.autograd.graph.saved_tensors_hooks`` sees (tested to 1 % for ``position=None`` and relative bias):

``reference`` (the reference backend: dense ``(B, heads, N_q, N_k)`` weights, any pattern)
    softmax: head-major copies of q, k, v ``4·B·h·(N_q·d + N_k·d + N_k·e)``; two float32 weight tensors (softmax
    output and the has-key-masked copy) ``2 · 4·B·h·N_q·N_k``; the bool mask ``N_q·N_k`` and has-key ``N_q``.
    linear form: ``q·scale`` and k (both in input layout), copies of φ(q), φ(k) and v, two weight tensors, the row
    sums and their clamp ``2 · 4·B·h·N_q``, the same bool masks. Quadratic in N. Positions are not modelled here.
``blocked-flash`` (the blocked backend when SDPA takes the fused CPU flash kernel: ``head_dim == v_dim``)
    per tile: q, k, v tiles, the output and the float32 log-sum-exp, ``4·B·T·h·(Tq·d + Tk·d + Tk·e + Tq·e + Tq)``,
    plus the float mask when the tiles hold disallowed or out-of-grid slots: ``4·Tq·Tk`` once per group of equal
    tiles (the group plan), ``4·B·T·Tq·Tk`` on the general plan. ``T`` tiles of ``Tq`` query and ``Tk`` key slots
    per set of equal tiles come from the backend itself (:func:`visionattn.ops.blocked_tile_sets`; the general
    plan's padded slots are counted: they are allocated). Linear in N for local patterns; ``O(N·d)`` even for
    Global (one tile).
``blocked-math`` (the blocked backend's own matmul-softmax-matmul when ``v_dim != head_dim`` on CPU)
    per tile: ``q·scale``, kᵀ, the float32 weights and v, ``4·B·T·h·(Tq·d + Tk·d + Tq·Tk + Tk·e)``.
``blocked-biased`` (the blocked backend with a learnable RelativeBias: its own biased attention)
    the int64 table index (``8·Tq·Tk`` per group; ``8·T·Tq·Tk`` and a bool mask on the general plan), q, k, v
    tiles and the float32 weights.
``linear`` (the linear backend, Global, linear form): ``q·scale`` and k (input layout), copies of φ(k), v and
    twice φ(q) (one per einsum), ``Σφ(k)``, ``KᵀV``, the normaliser and its clamp, the numerator:
    ``4·B·h·(3·N_q·d + 2·N_k·d + N_k·e + d + d·e + 2·N_q + N_q·e)``. Linear in N.

RelativeLogits on the blocked backend widen q, k and v by ``Σ_a K_a`` key slots (folded into the dot product) and
keep the q tiles, ``q·rᵀ`` and an int64 index per axis: modelled to ~10 % (how often the q tiles are copied depends
on their strides). Not counted: int64 gather indices of the blocked backend (``O(L)`` per axis, < 0.5 % here).
:func:`peak_bytes` adds the output, the input gradients and the backward pass's largest transients to estimate the
peak memory growth of one forward+backward (an estimate, compared with measurements by ``visionattn bench sweep``).
Whole presets: :func:`preset_cost` (FLOPs from :func:`visionattn.models.flops.count_flops`, activations from
:func:`activation_bytes`; the operator itself is costed analytically, never run).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..models.flops import allowed_pairs
from ..ops import Global, Graph, Pattern, Strided

FORMS = ("softmax", "linear")
POSITIONS = (None, "relative_bias", "relative_logits", "rope")
EXECUTIONS = ("reference", "blocked-flash", "blocked-math", "blocked-biased", "linear")
F32 = 4  # bytes of a float32: every execution above computes (and saves) float32 for float32 inputs


# ---------------------------------------------------------------------------------------------------
# arguments
def _grid(grid, name: str = "grid") -> tuple[int, ...]:
    if isinstance(grid, int) and not isinstance(grid, bool):
        grid = (grid,)
    if not isinstance(grid, (tuple, list)) or not 1 <= len(grid) <= 3:
        raise ValueError(f"{name} must be a tuple of 1-3 positive ints such as (14, 14), got {grid!r}")
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in grid):
        raise ValueError(f"{name} must hold positive ints, got {tuple(grid)!r}")
    return tuple(grid)


def _positive(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class _Shape:
    """One call's sizes after validation: q grid, key grid, B, heads, d, e."""

    q_grid: tuple[int, ...]
    kv_grid: tuple[int, ...]
    batch: int
    heads: int
    head_dim: int
    v_dim: int
    form: str

    @property
    def nq(self) -> int:
        return math.prod(self.q_grid)

    @property
    def nk(self) -> int:
        return math.prod(self.kv_grid)


def _shape(pattern, grid, heads, head_dim, v_dim, batch, form, q_grid) -> _Shape:
    if not isinstance(pattern, Pattern):
        raise TypeError(f"pattern must be a visionattn.ops Pattern (Global(), Window(7), ...), got {pattern!r}")
    kv_grid = _grid(grid)
    q_grid = _grid(pattern.query_grid(kv_grid) if q_grid is None else q_grid, "q_grid")
    pattern.check(q_grid, kv_grid)
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    v_dim = head_dim if v_dim is None else v_dim
    return _Shape(q_grid, kv_grid, _positive(batch, "batch"), _positive(heads, "heads"),
                  _positive(head_dim, "head_dim"), _positive(v_dim, "v_dim"), form)


# ---------------------------------------------------------------------------------------------------
# FLOPs
def pair_count(pattern: Pattern, kv_grid, q_grid=None) -> int:
    """Allowed (query, key) pairs of ``pattern`` on one image = ``pattern.mask(kv_grid, q_grid).sum()``.

    Separable patterns: product over axes of the per-axis counts (:func:`visionattn.models.flops.allowed_pairs`);
    Strided: closed form over the raster offset ``δ = i - j`` (``N - |δ|`` pairs each), ``O(N)`` memory, so
    ``N = 512²`` is fine; Graph: the adjacency's sum."""
    kv_grid = _grid(kv_grid)
    q_grid = _grid(pattern.query_grid(kv_grid) if q_grid is None else q_grid, "q_grid")
    pattern.check(q_grid, kv_grid)
    if isinstance(pattern, Strided):
        n = math.prod(kv_grid)
        delta = torch.arange(-(n - 1), n, dtype=torch.long)
        allowed = (delta.abs() < pattern.local) | (delta % pattern.stride == 0)
        if pattern.causal:
            allowed &= delta >= 0
        return int(((n - delta.abs()) * allowed).sum())
    if isinstance(pattern, Graph):
        return int(pattern.adjacency(math.prod(kv_grid)).sum())
    return allowed_pairs(pattern, kv_grid, q_grid)


def operator_flops(pattern: Pattern, grid, *, heads: int, head_dim: int, v_dim: int | None = None, batch: int = 1,
                   form: str = "softmax", position: str | None = None, q_grid=None) -> int:
    """FLOPs of one ``attention()`` call on ``(batch, *grid, heads, head_dim)`` tokens (module docstring).

    position: None, ``'relative_bias'`` or ``'rope'`` (no multiply-adds), or ``'relative_logits'`` with the
    smallest valid tables (radius ``pattern.max_offset(grid)``, what the layers build)."""
    s = _shape(pattern, grid, heads, head_dim, v_dim, batch, form, q_grid)
    _check_position(position, s.form)
    B, h, d, e = s.batch, s.heads, s.head_dim, s.v_dim
    if s.form == "linear" and isinstance(pattern, Global):
        return B * h * (2 * s.nk * d * e + 2 * s.nq * d * e + 2 * s.nq * d)
    total = B * h * 2 * pair_count(pattern, s.kv_grid, s.q_grid) * (d + e)
    if position == "relative_logits":
        total += B * h * sum(2 * s.nq * (2 * r + 1) * d for r in pattern.max_offset(s.kv_grid))
    return total


# ---------------------------------------------------------------------------------------------------
# memory
def default_execution(pattern: Pattern, form: str = "softmax", head_dim: int = 32, v_dim: int | None = None,
                      position: str | None = None) -> str:
    """The execution ``backend='auto'`` runs on CPU: the blocked backend for softmax on separable patterns
    (``blocked-biased`` with a learnable relative bias, else the flash kernel iff ``v_dim == head_dim``), the linear
    backend for the linear form on Global, the reference otherwise (Strided, Graph, linear form on local patterns)."""
    if form == "linear":
        return "linear" if isinstance(pattern, Global) else "reference"
    if not pattern.separable:
        return "reference"
    if position == "relative_bias":
        return "blocked-biased"
    return "blocked-flash" if (v_dim is None or v_dim == head_dim) else "blocked-math"


@dataclass(frozen=True)
class BlockedTiles:
    """One set of equal tiles the blocked backend runs for a call: ``tiles`` query tiles (per image) of ``q_slots``
    queries, each with a key box of ``k_slots`` keys (out-of-grid slots included); ``masked``: some slot pair is
    disallowed, so a mask exists; ``shared_mask``: that mask is one ``(Tq, Tk)`` matrix for every tile and image
    (the group plan), else one per tile and image; ``axes``: per grid axis ``(tiles whose offsets are stored, query
    slots, key slots)``; ``output_view``: the call returns a view of the saved attention output."""

    tiles: int
    q_slots: int
    k_slots: int
    masked: bool
    axes: tuple[tuple[int, int, int], ...]
    shared_mask: bool = False
    output_view: bool = False


def blocked_tiles(pattern: Pattern, q_grid, kv_grid, tile: int | None = None) -> tuple[BlockedTiles, ...]:
    """The blocked backend's own tile sets for a call (:func:`visionattn.ops.blocked_tile_sets`: one per group of
    equal tiles, or the general plan's one set); ``tile`` defaults to its ``BLOCKED_DEFAULT_TILE`` for the grid's
    dims."""
    from ..ops import blocked_tile_sets

    q_grid, kv_grid = _grid(q_grid, "q_grid"), _grid(kv_grid)
    if not pattern.separable:
        raise ValueError(f"{pattern} is not separable: the blocked backend does not run it (use 'reference')")
    return tuple(BlockedTiles(t.tiles, t.q_slots, t.k_slots, t.masked, t.axes, t.shared_mask, t.output_view)
                 for t in blocked_tile_sets(pattern, q_grid, kv_grid, tile))


def _check_execution(pattern: Pattern, s: _Shape, execution: str, position: str | None) -> None:
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
    if execution == "linear" and not (s.form == "linear" and isinstance(pattern, Global)):
        raise ValueError(f"execution 'linear' runs form='linear' on Global only, got form={s.form!r} on {pattern}")
    if execution.startswith("blocked") and (s.form != "softmax" or not pattern.separable):
        raise ValueError(f"execution {execution!r} runs form='softmax' on separable patterns only, "
                         f"got form={s.form!r} on {pattern}")
    if (execution == "blocked-biased") != (position == "relative_bias") and execution.startswith("blocked"):
        raise ValueError(f"a learnable relative bias runs execution 'blocked-biased' on the blocked backend; got "
                         f"execution={execution!r} with position={position!r}")


def _check_position(position, form: str) -> None:
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    if form == "linear" and position in ("relative_bias", "relative_logits"):
        raise ValueError(f"form='linear' has no logits to add position={position!r} to (use 'rope' or None)")


def saved_bytes(pattern: Pattern, grid, *, heads: int, head_dim: int, v_dim: int | None = None, batch: int = 1,
                form: str = "softmax", position: str | None = None, execution: str | None = None, q_grid=None,
                radius: tuple[int, ...] | None = None, tile: int | None = None) -> int:
    """Bytes of the activations ``execution`` (default :func:`default_execution`) saves for backward in one call
    of float32 ``(batch, *grid, heads, head_dim)`` tokens (module docstring). ``radius``: the relative-logit table
    radius per axis (default ``pattern.max_offset(grid)``); ``tile``: the blocked backend's tile hint."""
    s = _shape(pattern, grid, heads, head_dim, v_dim, batch, form, q_grid)
    _check_position(position, s.form)
    execution = execution or default_execution(pattern, s.form, s.head_dim, s.v_dim, position)
    _check_execution(pattern, s, execution, position)
    B, h, d, e, nq, nk = s.batch, s.heads, s.head_dim, s.v_dim, s.nq, s.nk
    if execution == "reference":
        masks = nq * nk + nq  # bool (1, 1, Nq, Nk) mask and (1, 1, Nq, 1) has-key
        if s.form == "softmax":
            return F32 * B * h * (nq * d + nk * d + nk * e + 2 * nq * nk) + masks
        return F32 * B * h * (2 * nq * d + 2 * nk * d + nk * e + 2 * nq + 2 * nq * nk) + masks
    if execution == "linear":
        return F32 * B * h * (3 * nq * d + 2 * nk * d + nk * e + d + d * e + 2 * nq + nq * e)
    radius = pattern.max_offset(s.kv_grid) if radius is None else tuple(radius)
    return sum(_tiles_saved(t, execution, position, B, h, d, e, radius)
               for t in blocked_tiles(pattern, s.q_grid, s.kv_grid, tile))


def _tiles_saved(t: BlockedTiles, execution: str, position: str | None, B: int, h: int, d: int, e: int,
                 radius: tuple[int, ...]) -> int:
    """Bytes one set of equal tiles saves for backward (module docstring)."""
    per_head, pairs = B * t.tiles * h, t.tiles * t.q_slots * t.k_slots
    tq, tk = t.q_slots, t.k_slots
    index = t.q_slots * t.k_slots if t.shared_mask else pairs  # relative-bias index: once per group, else per tile
    if execution == "blocked-biased":  # flat table index, bool mask (general plan), q, k, v tiles, float32 weights
        mask = 0 if t.shared_mask else (pairs if t.masked else 1)
        return 8 * index + mask + F32 * per_head * (tq * d + tk * d + tk * e + tq * tk)
    extra, widen = 0, 0
    if position == "relative_logits":  # q·r per axis folded into the dot product: q, k, v widened by Σ K_a
        widen = sum(k for _, _, k in t.axes)
        extra = F32 * per_head * tq * (d + sum(2 * r + 1 for r in radius))  # q tiles and q·rᵀ kept by the gathers
        extra += 8 * sum(n * q * k for n, q, k in t.axes)  # int64 gather index per axis
    dq, dv = d + widen, e + widen
    if execution == "blocked-math":
        return F32 * per_head * (tq * dq + tk * dq + tq * tk + tk * dv) + extra
    mask = (F32 * tq * tk if t.shared_mask else F32 * B * pairs) if t.masked else 0
    return F32 * per_head * (tq * dq + tk * dq + tk * dv + tq * dv + tq) + mask + extra


def peak_bytes(pattern: Pattern, grid, *, heads: int, head_dim: int, v_dim: int | None = None, batch: int = 1,
               form: str = "softmax", execution: str | None = None, q_grid=None, tile: int | None = None) -> int:
    """Estimated peak memory growth of one forward+backward beyond q, k, v and the output gradient
    (``position=None``): the saved activations, the gradients of q, k and v, and what backward holds at its peak:
    reference and blocked-math the output and two more weight-sized tensors (the gradients of the weights and of
    the logits); blocked-flash the gradients of the q, k, v tiles; linear the output. (Measured by ``visionattn
    bench sweep``: within ~10 % for the dense and gathered-tile executions; up to 2x high where the tiles are views
    of the inputs, e.g. Global on the blocked backend.)"""
    s = _shape(pattern, grid, heads, head_dim, v_dim, batch, form, q_grid)
    execution = execution or default_execution(pattern, s.form, s.head_dim, s.v_dim)
    saved = saved_bytes(pattern, grid, heads=heads, head_dim=head_dim, v_dim=v_dim, batch=batch, form=form,
                        execution=execution, q_grid=q_grid, tile=tile)
    B, h, d, e, nq, nk = s.batch, s.heads, s.head_dim, s.v_dim, s.nq, s.nk
    grads, out = F32 * B * h * (nq * d + nk * d + nk * e), F32 * B * h * nq * e
    if execution == "reference":
        return saved + grads + out + 2 * F32 * B * h * nq * nk
    if execution == "linear":
        return saved + grads + out
    sets = blocked_tiles(pattern, s.q_grid, s.kv_grid, tile)
    if execution == "blocked-flash":
        return saved + grads + sum(F32 * B * t.tiles * h * (t.q_slots * d + t.k_slots * (d + e)) for t in sets)
    return saved + grads + out + sum(2 * F32 * B * t.tiles * h * t.q_slots * t.k_slots for t in sets)


@dataclass(frozen=True)
class OperatorCost:
    """Cost of one operator call (``position=None``): allowed ``pairs`` (one image), ``flops``/``macs`` (whole
    batch), the ``execution`` the memory figures describe, its ``saved_bytes`` and estimated ``peak_bytes``."""

    pattern: str
    grid: tuple[int, ...]
    batch: int
    heads: int
    head_dim: int
    v_dim: int
    form: str
    execution: str
    pairs: int
    flops: int
    macs: int
    saved_bytes: int
    peak_bytes: int

    def as_row(self) -> dict:
        return asdict(self)


def operator_cost(pattern: Pattern, grid, *, heads: int, head_dim: int, v_dim: int | None = None, batch: int = 1,
                  form: str = "softmax", execution: str | None = None, q_grid=None) -> OperatorCost:
    """FLOPs and memory of one call (see :func:`operator_flops`, :func:`saved_bytes`, :func:`peak_bytes`)."""
    s = _shape(pattern, grid, heads, head_dim, v_dim, batch, form, q_grid)
    execution = execution or default_execution(pattern, s.form, s.head_dim, s.v_dim)
    kw = dict(heads=heads, head_dim=head_dim, v_dim=s.v_dim, batch=batch, form=form, q_grid=s.q_grid)
    flops = operator_flops(pattern, s.kv_grid, **kw)
    return OperatorCost(
        pattern=repr(pattern), grid=s.kv_grid, batch=s.batch, heads=s.heads, head_dim=s.head_dim, v_dim=s.v_dim,
        form=s.form, execution=execution, pairs=pair_count(pattern, s.kv_grid, s.q_grid), flops=flops,
        macs=flops // 2, saved_bytes=saved_bytes(pattern, s.kv_grid, execution=execution, **kw),
        peak_bytes=peak_bytes(pattern, s.kv_grid, execution=execution, **kw))


# ---------------------------------------------------------------------------------------------------
# whole presets
class _SavedCounter:
    """``saved_tensors_hooks`` pack hook: bytes of every distinct storage saved for backward, except the
    storages in ``exclude`` (parameters and buffers are weights, not activations). Saved tensors are kept
    referenced until the counter goes, so a storage freed mid-forward cannot be reused and miscounted."""

    def __init__(self, exclude: set[int]):
        self.exclude, self.storages, self.keep = exclude, {}, []

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in self.exclude:
            self.storages[storage._cdata] = storage.nbytes()
            self.keep.append(t)
        return t

    @property
    def bytes(self) -> int:
        return sum(self.storages.values())


def count_saved_bytes(fn, exclude: tuple[torch.Tensor, ...] = ()) -> tuple[int, object]:
    """``(bytes, fn())``: the distinct storages autograd saves for backward while ``fn()`` runs (a view counts
    its whole storage once), except those of ``exclude``. Works on the meta device (nothing computed)."""
    counter = _SavedCounter({t.untyped_storage()._cdata for t in exclude})
    with torch.autograd.graph.saved_tensors_hooks(counter, lambda t: t):
        out = fn()
    return counter.bytes, out


def _position_name(position) -> str | None:
    """The descriptor's name in :data:`POSITIONS`; a RelativeBias whose table needs no gradient runs like None
    plus a float mask (not modelled: counted as None)."""
    from ..ops import RelativeBias, RelativeLogits, Rope

    if isinstance(position, RelativeBias):
        return "relative_bias" if position.table.requires_grad else None
    if isinstance(position, RelativeLogits):
        return "relative_logits"
    return "rope" if isinstance(position, Rope) else None


class _AttentionSaved:
    """``intercept_attention`` handler: adds the analytic :func:`saved_bytes` of the call's default execution and
    returns zeros ``(B, *q_grid, heads, v_dim)`` (nothing runs). With one flash tile (Global) the real operator
    returns a view of the output it saved, so the zeros' storage goes into ``shared`` (not counted again when the
    next layer saves it)."""

    def __init__(self, shared: set[int]):
        self.bytes = self.calls = 0
        self.shared, self.keep = shared, []

    def __call__(self, call):
        B, heads, d, e = call.q.shape[0], call.heads, call.q.shape[-1], call.v.shape[-1]
        position, radius = _position_name(call.position), getattr(call.position, "radius", None)
        execution = default_execution(call.pattern, call.form, d, e, position)
        self.bytes += saved_bytes(call.pattern, call.kv_grid, heads=heads, head_dim=d, v_dim=e, batch=B,
                                  form=call.form, position=position, execution=execution, q_grid=call.q_grid,
                                  radius=radius)
        self.calls += 1
        out = call.v.new_zeros((B, *call.q_grid, heads, e))
        if execution == "blocked-flash" and any(t.output_view for t in blocked_tiles(call.pattern, call.q_grid,
                                                                                      call.kv_grid)):
            self.shared.add(out.untyped_storage()._cdata)
            self.keep.append(out)
        return out


def activation_bytes(model: torch.nn.Module, img_size: int, batch: int = 1, in_chans: int = 3,
                     frames: int | None = None) -> dict:
    """Activations one eval-mode forward with gradients enabled saves for backward (dropout masks excluded) on
    random images (video models: clips of ``frames`` or the model's ``num_frames``):
    ``dict(total=, attention=, other=, attention_calls=)`` in bytes. ``other``: counted by saved-tensor hooks on
    a real forward (parameters and buffers excluded); ``attention``: every operator call costed by
    :func:`saved_bytes` for the execution ``backend='auto'`` takes on CPU (:func:`default_execution`) and not run
    (its output is zeros). Runs on the model's device; on ``meta`` nothing is computed, but views do not always
    share storage there as on CPU (a few % more)."""
    from ..models.inputs import example_input
    from ..ops import intercept_attention

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = example_input(model, img_size, batch, in_chans, frames=frames, device=device)
    counter = _SavedCounter({t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())})
    attention = _AttentionSaved(counter.exclude)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), intercept_attention(attention), \
                torch.autograd.graph.saved_tensors_hooks(counter, lambda t: t):
            model(x)
    finally:
        model.train(was_training)
    return {"total": counter.bytes + attention.bytes, "attention": attention.bytes, "other": counter.bytes,
            "attention_calls": attention.calls}


def preset_cost(name: str, resolutions, batch: int = 1, device: str = "cpu") -> list[dict]:
    """One row per resolution of a registered preset, built at that ``img_size``: ``name, img_size, params,
    params_m, gmacs`` (multiply-adds ×1e-9, the papers' "GFLOPs"), ``attn_gmacs`` (the operator's share, analytic),
    ``activation_mib`` (saved for backward by one forward, :func:`activation_bytes`), ``attn_activation_mib``,
    ``attention_calls``. The attention operator is never run (analytic FLOPs and memory); the other layers run
    once under ``FlopCounterMode`` and once with saved-tensor hooks on ``device`` (``'meta'``: nothing computed,
    memory a few % high). Example: ``preset_cost("vit_small_patch16_224", [112, 224, 448])``."""
    from ..models import create_model
    from ..models.flops import count_flops, count_params

    if isinstance(resolutions, int):
        resolutions = [resolutions]
    resolutions = [_positive(r, "resolutions[i]") for r in resolutions]
    _positive(batch, "batch")
    rows = []
    for size in resolutions:
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = create_model(name, img_size=size).to(device)
                params = count_params(model)
                flops = count_flops(model, size, batch=batch)
                memory = activation_bytes(model, size, batch=batch)
        except (ValueError, RuntimeError) as err:
            if "unknown model" in str(err):
                raise
            raise ValueError(f"preset_cost({name!r}): resolution {size} fails: {err}") from err
        rows.append({
            "name": name, "img_size": size, "params": params, "params_m": round(params / 1e6, 3),
            "gmacs": round(flops["macs"] / 1e9, 4), "attn_gmacs": round(flops["attention"] / 2e9, 4),
            "activation_mib": round(memory["total"] / 2**20, 2),
            "attn_activation_mib": round(memory["attention"] / 2**20, 2),
            "attention_calls": memory["attention_calls"],
        })
    return rows
