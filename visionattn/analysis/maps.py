"""Attention maps: capture what each attention layer of a model computed, then recompute only the rows asked for.

Capture (:func:`capture_attention`, or :class:`AttentionRecorder` around your own forward) uses
:func:`visionattn.ops.observe_attention`: every backend runs as usual (blocked, flex, ...) and the observer keeps the
prepared :class:`~visionattn.ops.AttentionCall` of each call (``q`` already rotated for RoPE, padded keys
zeroed), detached. The model's outputs are bit-identical with and without capture.

Recomputation (:func:`attention_rows`) rebuilds the softmax (or linear-form) weights of *selected query rows* from
the captured ``q``/``k`` with the reference math, :func:`visionattn.ops.attention_probs`: ``scale · q·k`` + the
position term (RelativeBias table lookup, RelativeLogits ``q·r``), the pattern's allowed keys for those rows, key
padding, normalisation. It never forms the ``N_q × N_k`` matrix when fewer rows are asked for (separable patterns
build the row mask per axis).

Geometry: a logical layer (:class:`MapLayer`) is one ``Attention`` module call, or the height-then-width pair of an
``AxialAttention`` (composed: ``A = A_width · A_height`` per head, rows only). Its key tokens map back to the model
input image: a 2D grid ``(h, w)`` covers the ``H × W`` image with ``ceil(H/h) × ceil(W/w)`` pixels per token
(the layer's reduction; a Swin stage's grid, a ResNet stage's map); a 1D token sequence (ViT, DeiT, DINO, the
R26+ViT hybrid) is ``prefix`` class/distillation tokens followed by the raster-ordered patch grid.

Queries are ``"cls"`` (the first prefix token) or a pixel ``(x, y)`` of the model input (column, row); a pixel
selects the query token whose cell contains it (strided Halo: the query at key position ``p · stride``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ..ops import AttentionCall, Pattern, RelativeBias, RelativeLogits, Rope, attention_probs, observe_attention

Query = str | tuple[int, int]  # "cls" or a pixel (x, y) of the model input

__all__ = ["AttentionCapture", "AttentionRecord", "AttentionRecorder", "MapLayer", "Query", "as_query_list",
           "attention_rows", "capture_attention", "composed_rows", "explorer_rows", "parse_query", "pixel_rows",
           "query_index", "query_maps", "query_rows", "row_mask", "upsample_to_image"]


# -- rows of the attention matrix ----------------------------------------------------------------------------------
def row_mask(pattern: Pattern, q_grid: tuple[int, ...], kv_grid: tuple[int, ...], rows: Tensor) -> Tensor:
    """Allowed keys of the flat query indices ``rows`` ``(Q,)``: bool ``(Q, N_k)``, equal to
    ``pattern.mask(kv_grid, q_grid)[rows]`` (:meth:`Pattern.mask_rows`: separable patterns and Strided never build
    the dense mask; Graph slices its adjacency)."""
    return pattern.mask_rows(tuple(kv_grid), tuple(q_grid), rows)


def attention_rows(call: AttentionCall, rows: Tensor | Sequence[int]) -> Tensor:
    """The attention weights of the flat query indices ``rows`` (into the raster-flattened ``call.q_grid``) over
    every key: float32 ``(B, Q, heads, N_k)``. Rows sum to 1 over allowed, unpadded keys; a query with no allowed
    key is all zeros (the operator outputs zeros there). ``call`` must be a *prepared* call (as the observer
    sees it: RoPE applied). :func:`visionattn.ops.attention_probs` (the reference backend's own math) with the query
    axis first."""
    return attention_probs(call, rows).permute(0, 2, 1, 3)  # (B, h, Q, N_k) -> (B, Q, h, N_k)


def composed_rows(calls: Sequence[AttentionCall], rows: Tensor | Sequence[int]) -> Tensor:
    """Rows of the product ``A_n ··· A_1`` of calls applied in sequence on one grid (axial height then width), per
    head: ``(B, Q, heads, N_k)``. Earlier calls are evaluated only on the keys the later rows reach."""
    weights = attention_rows(calls[-1], rows)  # (B, Q, h, N)
    for call in reversed(calls[:-1]):
        if call.q_grid != call.kv_grid or call.kv_grid != calls[-1].kv_grid:
            raise ValueError(f"composed_rows: calls must share one self-attention grid, got q {call.q_grid} / "
                             f"kv {call.kv_grid} then {calls[-1].kv_grid}")
        support = (weights != 0).flatten(0, 2).any(0).nonzero().squeeze(1)  # (S,) keys reached so far
        earlier = attention_rows(call, support.cpu())  # (B, S, h, N)
        weights = torch.einsum("bqhs,bshn->bqhn", weights[..., support], earlier)
    return weights


# -- capture -------------------------------------------------------------------------------------------------------
def _detached(call: AttentionCall) -> AttentionCall:
    position = call.position
    if isinstance(position, RelativeBias):
        position = RelativeBias(position.table.detach())
    elif isinstance(position, RelativeLogits):
        position = RelativeLogits(tuple(t.detach() for t in position.tables))
    elif isinstance(position, Rope):
        position = Rope(position.freqs.detach())
    kpm = call.key_padding_mask
    return AttentionCall(call.q.detach(), call.k.detach(), call.v.detach(), call.pattern, position, call.form,
                         call.scale, None if kpm is None else kpm.detach())


@dataclass(frozen=True, eq=False)
class AttentionRecord:
    """One observed :func:`~visionattn.ops.attention` call. ``name``: the ``Attention`` module that made it (or
    ``attention_<i>`` for a direct call); ``group``: the enclosing ``AxialAttention`` for its sub-calls, else
    ``name``; ``residual``: the module is the ``attn`` of a ``TransformerBlock`` (a residual token stream)."""

    name: str
    group: str
    residual: bool
    call: AttentionCall


class AttentionRecorder:
    """Context manager: ``with AttentionRecorder(model) as rec: model(x)`` → ``rec.records``, one
    :class:`AttentionRecord` per attention call, in call order. Hooks and the observer are removed on exit."""

    def __init__(self, model: nn.Module):
        from ..layers.attention import Attention, AxialAttention
        from ..layers.transformer import TransformerBlock

        if not isinstance(model, nn.Module):
            raise TypeError(f"AttentionRecorder: model must be a torch.nn.Module, got {type(model).__name__}")
        self.model, self.records = model, []
        modules = dict(model.named_modules())
        self._info: dict[nn.Module, tuple[str, str, bool]] = {}
        for name, module in modules.items():
            if not isinstance(module, Attention):
                continue
            parent_name = name.rsplit(".", 1)[0] if "." in name else ""
            grand_name = parent_name.rsplit(".", 1)[0] if "." in parent_name else ""
            group = name
            if parent_name.endswith("layers") and isinstance(modules.get(grand_name), AxialAttention):
                group = grand_name
            residual = isinstance(modules.get(parent_name), TransformerBlock) and name.endswith(".attn")
            self._info[module] = (name, group, residual)
        self._stack: list[tuple[str, str, bool]] = []
        self._exit = contextlib.ExitStack()

    def _callback(self, call: AttentionCall, out: Tensor) -> None:
        name, group, residual = self._stack[-1] if self._stack else (f"attention_{len(self.records)}",) * 2 + (False,)
        self.records.append(AttentionRecord(name, group, residual, _detached(call)))

    def __enter__(self) -> AttentionRecorder:
        def enter(info):
            def hook(module, args) -> None:
                self._stack.append(info)
            return hook

        def leave(module, args, out) -> None:
            self._stack.pop()

        for module, info in self._info.items():
            pre = module.register_forward_pre_hook(enter(info))
            post = module.register_forward_hook(leave)
            self._exit.callback(pre.remove)
            self._exit.callback(post.remove)
        self._exit.enter_context(observe_attention(self._callback))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.clear()
        self._exit.close()


# -- layers and their geometry -------------------------------------------------------------------------------------
def _split_sequence(length: int, image_size: tuple[int, int], prefix: int | None) -> tuple[int, tuple[int, int]] | None:
    """A 1D token sequence as ``prefix`` tokens + a raster patch grid ``(h, w)`` covering the image with square
    cells of ``r`` pixels (``h = ceil(H/r)``); ``prefix`` None: the smallest prefix (0..8) that fits."""
    H, W = image_size
    for p in [prefix] if prefix is not None else range(0, min(length, 9)):
        n = length - p
        for r in range(1, max(H, W) + 1):
            h, w = -(-H // r), -(-W // r)
            if h * w == n:
                return p, (h, w)
            if h * w < n:
                break
    return None


@dataclass(frozen=True, eq=False)
class MapLayer:
    """A logical attention layer: its calls (one, or the axial sequence) and how its tokens sit on the image.

    ``prefix``: leading non-spatial tokens of a 1D sequence (0 for 2D grids). ``key_grid`` / ``query_grid``:
    the spatial grids ``(h, w)`` (prefix excluded). ``reduction``: image pixels per key token ``(r_h, r_w)``.
    ``unmappable``: why the tokens cannot be placed on the image (3D grids, non-image sequences), else None."""

    name: str
    records: tuple[AttentionRecord, ...]
    prefix: int = 0
    key_grid: tuple[int, int] | None = None
    query_grid: tuple[int, int] | None = None
    reduction: tuple[int, int] | None = None
    unmappable: str | None = None

    @property
    def calls(self) -> tuple[AttentionCall, ...]:
        return tuple(r.call for r in self.records)

    @property
    def heads(self) -> int:
        return self.records[-1].call.heads

    @property
    def pattern(self) -> Pattern:
        return self.records[-1].call.pattern

    def describe(self) -> str:
        patterns = " then ".join(repr(r.call.pattern) for r in self.records)
        grid = f"{self.key_grid[0]}x{self.key_grid[1]}" if self.key_grid else f"{self.records[0].call.kv_grid}"
        extra = f" + {self.prefix} prefix" if self.prefix else ""
        return f"{self.name}: {patterns}, {self.heads} heads, key grid {grid}{extra}"

    def query_rows_of(self, ii: Tensor, jj: Tensor) -> Tensor:
        """Flat query indices (into the last call's query sequence) of spatial query cells ``(ii, jj)``."""
        return self.prefix + ii * self.query_grid[1] + jj


def _geometry(name: str, records: list[AttentionRecord], image_size: tuple[int, int], prefix_hint: int | None):
    call = records[0].call
    H, W = image_size
    if call.dims == 1:
        if call.q_grid != call.kv_grid:
            return MapLayer(name, tuple(records), unmappable=f"1D cross-attention {call.q_grid} → {call.kv_grid}")
        split = _split_sequence(call.kv_grid[0], image_size, prefix_hint)
        if split is None:
            split = _split_sequence(call.kv_grid[0], image_size, None)
        if split is None:
            return MapLayer(name, tuple(records), unmappable=f"a sequence of {call.kv_grid[0]} tokens is not a "
                                                             f"patch grid of the {W}x{H} image (+ up to 8 prefix)")
        prefix, grid = split
        return MapLayer(name, tuple(records), prefix, grid, grid, (-(-H // grid[0]), -(-W // grid[1])))
    if call.dims != 2:
        return MapLayer(name, tuple(records), unmappable=f"a {call.dims}D grid {call.kv_grid} (maps need 2D images)")
    (h, w), q_grid = call.kv_grid, records[-1].call.q_grid
    return MapLayer(name, tuple(records), 0, (h, w), tuple(q_grid), (-(-H // h), -(-W // w)))


def _group(records: list[AttentionRecord]) -> list[list[AttentionRecord]]:
    """Consecutive sub-calls of one AxialAttention form one layer; every other call is its own layer."""
    groups: list[list[AttentionRecord]] = []
    for rec in records:
        prev = groups[-1][-1] if groups else None
        if prev is not None and rec.group != rec.name and rec.group == prev.group and rec.name != prev.name:
            groups[-1].append(rec)
        else:
            groups.append([rec])
    return groups


@dataclass(eq=False)
class AttentionCapture:
    """Captured attention of one forward pass. ``image_size``: model input ``(H, W)``; ``layers``: the logical
    layers (all of them when ``complete``); ``output``: the model's output; ``images``: its input ``(B, 3, H, W)``."""

    model_name: str
    image_size: tuple[int, int]
    layers: list[MapLayer]
    output: object = None
    images: Tensor | None = None
    complete: bool = True
    all_names: list[str] = field(default_factory=list)

    def layer(self, which: int | str | MapLayer) -> MapLayer:
        """A layer by index into ``layers`` (negative from the end), or by name."""
        if isinstance(which, MapLayer):
            return which
        if isinstance(which, str):
            for layer in self.layers:
                if layer.name == which:
                    return layer
            raise ValueError(f"layer {which!r}: expected one of {[layer.name for layer in self.layers]}")
        n = len(self.layers)
        if isinstance(which, bool) or not isinstance(which, int) or not -n <= which < n:
            raise ValueError(f"layer {which!r} out of range: {self.model_name} has {n} captured attention layers, "
                             f"expected an index in [0, {n - 1}] (or -1 for the last)")
        return self.layers[which]

    def pick(self, request) -> list[MapLayer]:
        """Layers for a request: None (all), an index / name / ``"last"``, or a list of them (duplicates dropped)."""
        if request is None:
            return list(self.layers)
        items = [request] if isinstance(request, (int, str)) else list(request)
        return list(dict.fromkeys(self.layers[-1] if item == "last" else self.layer(item) for item in items))


@torch.no_grad()
def capture_attention(model: nn.Module, images: Tensor, layers=None) -> AttentionCapture:
    """Run ``model(images)`` once and capture every attention layer. The forward runs under ``no_grad`` (its
    output, ``capture.output``, is bit-identical to a plain ``no_grad`` forward); the caller chooses train/eval
    mode (``model.eval()`` for deterministic maps). images: ``(B, 3, H, W)``. layers: None (all), or an index / name /
    ``"last"`` / a list of them, to keep only those (rollout needs all). Returns an :class:`AttentionCapture`."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"capture_attention: images must be a (B, C, H, W) tensor, got {got}")
    with AttentionRecorder(model) as recorder:
        output = model(images)
    preset = getattr(model, "preset", None)
    model_name = getattr(preset, "name", None) or type(model).__name__
    if not recorder.records:
        raise ValueError(f"capture_attention: {model_name} made no attention call (a convolutional model?); "
                         f"expected at least one visionattn.ops.attention call in its forward")
    image_size = (int(images.shape[-2]), int(images.shape[-1]))
    hint = getattr(model, "num_prefix_tokens", None)
    all_layers = [_geometry(g[0].group, g, image_size, hint) for g in _group(recorder.records)]
    capture = AttentionCapture(model_name, image_size, all_layers, output, images.detach(),
                               all_names=[layer.name for layer in all_layers])
    if layers is not None:
        capture.layers, capture.complete = capture.pick(layers), False
    return capture


# -- queries → maps ------------------------------------------------------------------------------------------------
def parse_query(text: str) -> Query:
    """``"cls"`` or ``"X,Y"`` (pixel column, row of the model input) → a query; ``ValueError`` otherwise."""
    text = str(text).strip()
    if text.lower() == "cls":
        return "cls"
    parts = text.split(",")
    try:
        x, y = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"query: expected 'cls' or a pixel 'X,Y' (two integers), got {text!r}") from None
    return (x, y)


def pixel_rows(layer: MapLayer, xs: Tensor, ys: Tensor) -> Tensor:
    """Flat query indices (into the layer's last call's query sequence) of the query tokens whose cells hold the
    pixels ``(xs, ys)`` (int64 tensors of one shape, inside the image; not checked here)."""
    call = layer.records[-1].call
    cells = []
    for axis, (pixel, r, n) in enumerate(((ys, layer.reduction[0], layer.query_grid[0]),
                                          (xs, layer.reduction[1], layer.query_grid[1]))):
        coords = call.pattern.query_coords(axis, n) if call.dims == 2 else torch.arange(n)  # query positions on keys
        cells.append((torch.searchsorted(coords, pixel // r, right=True) - 1).clamp(0, n - 1))
    return layer.query_rows_of(*cells)


def query_index(layer: MapLayer, query: Query, image_size: tuple[int, int]) -> int:
    """Flat query index of ``"cls"`` (the first prefix token) or a pixel ``(x, y)`` of the ``(H, W)`` image;
    ``ValueError`` for a layer without class token or a pixel outside the image (expected vs got)."""
    H, W = image_size
    if query == "cls":
        if layer.prefix < 1:
            raise ValueError(f"query 'cls': layer {layer.name} has no class token (its tokens are a "
                             f"{layer.key_grid[0]}x{layer.key_grid[1]} grid); query a pixel X,Y instead")
        return 0
    if not (isinstance(query, tuple) and len(query) == 2 and all(isinstance(v, (int, np.integer)) for v in query)):
        raise ValueError(f"query: expected 'cls' or a pixel (x, y) of ints, got {query!r}")
    x, y = int(query[0]), int(query[1])
    if not (0 <= x < W and 0 <= y < H):
        raise ValueError(f"query pixel (x={x}, y={y}) is outside the {W}x{H} model input: expected 0 <= x < {W} "
                         f"and 0 <= y < {H}")
    return int(pixel_rows(layer, torch.tensor(x), torch.tensor(y)))


def _mappable(capture: AttentionCapture, which) -> MapLayer:
    layer = capture.layer(which)
    if layer.unmappable:
        raise ValueError(f"layer {layer.name} of {capture.model_name} cannot be mapped onto the image: "
                         f"{layer.unmappable}")
    return layer


def as_query_list(queries) -> list:
    """One query (``"cls"`` or ``(x, y)``) or a sequence of them → a list."""
    if isinstance(queries, str) or (isinstance(queries, tuple) and len(queries) == 2
                                    and all(isinstance(v, (int, np.integer)) for v in queries)):
        return [queries]
    return list(queries)


def query_rows(capture: AttentionCapture, layer, queries) -> Tensor:
    """Attention of each query over the layer's spatial keys: float32 ``(B, Q, heads, h, w)`` on the key grid
    (prefix keys such as the class token dropped, so a row sums to at most 1). queries: one query or a list of
    ``"cls"`` / ``(x, y)``. Axial layers give the per-head composition ``A_width[h] · A_height[h]``. The head
    mean is ``.mean(2)``."""
    layer = _mappable(capture, layer)
    queries = as_query_list(queries)
    if not queries:
        raise ValueError("query_rows: expected at least one query ('cls' or (x, y)), got none")
    rows = torch.tensor([query_index(layer, q, capture.image_size) for q in queries], dtype=torch.long)
    weights = composed_rows(layer.calls, rows)[..., layer.prefix:]  # (B, Q, h, h_k * w_k)
    return weights.reshape(*weights.shape[:-1], *layer.key_grid)


def upsample_to_image(maps: Tensor, reduction: tuple[int, int], image_size: tuple[int, int]) -> Tensor:
    """Token maps ``(..., h, w)`` → image maps ``(..., H, W)``: each token fills its ``r_h × r_w`` pixel cell
    (nearest, as DINO's visualisation), cropped to the image."""
    rh, rw = reduction
    out = maps.repeat_interleave(rh, dim=-2).repeat_interleave(rw, dim=-1)
    return out[..., : image_size[0], : image_size[1]]


def query_maps(capture: AttentionCapture, layer, queries) -> Tensor:
    """:func:`query_rows` mapped to image coordinates: float32 ``(B, Q, heads, H, W)`` on the model input."""
    layer = capture.layer(layer)
    return upsample_to_image(query_rows(capture, layer, queries), layer.reduction, capture.image_size)


def explorer_rows(capture: AttentionCapture, layer, batch_index: int = 0,
                  max_bytes: int = 8 << 20) -> tuple[tuple[int, int], np.ndarray]:
    """Rows for the interactive explorer (:mod:`visionattn.analysis.explorer`): a query grid of ``(hq', wq')`` cells
    evenly covering the image — the layer's query grid, subsampled by the smallest step ``s`` (``hq' = ceil(hq/s)``)
    that keeps the rows under ``max_bytes`` — each cell represented by the query token under its centre pixel, and
    each query's attention over the spatial key grid. Returns ``((hq', wq'), attn)``, ``attn`` float32
    ``(heads, hq' * wq', h_k * w_k)`` with queries in raster order."""
    layer = _mappable(capture, layer)
    (H, W), (hq, wq) = capture.image_size, layer.query_grid
    nk = layer.key_grid[0] * layer.key_grid[1]
    budget = max(1, max_bytes // (4 * layer.heads * nk))
    step = max(1, math.ceil(math.sqrt(hq * wq / budget)))
    while math.ceil(hq / step) * math.ceil(wq / step) > budget and step < max(hq, wq):
        step += 1
    hs, ws = math.ceil(hq / step), math.ceil(wq / step)
    ys = ((torch.arange(hs) * 2 + 1) * H // (2 * hs))[:, None]  # centre pixel of each explorer cell
    xs = ((torch.arange(ws) * 2 + 1) * W // (2 * ws))[None, :]
    rows = pixel_rows(layer, xs.expand(hs, ws), ys.expand(hs, ws)).reshape(-1)
    weights = composed_rows(layer.calls, rows)[batch_index, :, :, layer.prefix:]  # (Q, h, N_k)
    return (hs, ws), weights.permute(1, 0, 2).contiguous().cpu().numpy().astype(np.float32)
