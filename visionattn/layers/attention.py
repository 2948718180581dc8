"""The attention layer: projections around the one mixing operator :func:`visionattn.ops.attention`.

``Attention`` is the only attention module; ViT, SASA, HaloNet, Swin, axial and sparse attention differ only in
the ``pattern`` (and ``position``) they pass, and cross-attention (DETR's decoder) only in where keys and values
come from. Tokens are channels-last ``(B, *grid, C)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import attention
from ..ops.patterns import Axial, Halo, Pattern
from .position import LOCAL_PATTERNS, POSITION_KINDS, make_position
from .resize import resize_relative


def _query_stride(pattern: Pattern) -> int:
    """Query subsampling of the pattern (strided Halo: query ``p`` sits at key position ``p * stride``)."""
    return pattern.stride if isinstance(pattern, Halo) else 1


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _describe(x) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def _infer_dims(pattern: Pattern) -> int | None:
    for name in ("kernel", "size", "block", "dilation"):
        value = getattr(pattern, name, None)
        if isinstance(value, tuple):
            return len(value)
    return None


class Attention(nn.Module):
    """Multi-head attention over a grid with a locality ``pattern``: self-attention, or cross-attention.

    Self-attention: x ``(B, *grid, dim)`` channels-last, grid ``(N,)``, ``(H, W)`` or ``(T, H, W)`` →
    ``(B, *q_grid, dim)`` where ``q_grid = pattern.query_grid(grid)`` (the grid itself, except strided Halo:
    ``ceil(L / stride)`` per axis).

    Cross-attention (DETR's decoder, M-DETR, CLIP-style pooling): queries from x ``(B, *q_grid, dim)``, keys and
    values from ``context`` ``(B, *kv_grid, kv_dim)`` → ``(B, *q_grid, dim)``. With ``Global()`` the two grids
    may differ in size (not in number of dims: flatten both to ``(B, N, C)`` for a set of object queries against
    an image). ``key_padding_mask`` is over the context.

    Steps: projections to ``heads · head_dim`` (one fused ``qkv`` Linear for self-attention; a ``q`` Linear and
    a ``kv`` Linear ``kv_dim → 2 · heads · head_dim`` when built with ``cross=True`` / ``kv_dim`` or when the
    pattern subsamples queries), heads-last reshape to ``(B, *grid, heads, head_dim)``,
    :func:`visionattn.ops.attention`, output ``proj`` Linear and ``proj_drop``.

    Positional embeddings added to queries and keys but not values (DETR: ``q = k = x + pos``, ``v = x``) are
    ``query_pos`` / ``key_pos`` in :meth:`forward`.

    Args:
        dim: channels of x and of the output.
        heads: number of heads. head_dim: channels per head (default ``dim // heads``).
        pattern: a :mod:`visionattn.ops.patterns` pattern (``Global()``, ``Neighborhood(7)``, ``Window(7, 3)``...).
        position: ``'none'``, ``'rel_bias'`` (Swin), ``'rel_logits'`` (SASA/HaloNet/BoTNet) or ``'rope'``.
        form: ``'softmax'`` or ``'linear'`` (linear admits only ``'none'`` or ``'rope'`` positions).
        grid_size: the largest grid the layer will see. Required for relative tables of grid-wide patterns
            (Global, Axial, Strided, Graph), whose tables it sizes; for local patterns (Neighborhood, Window,
            Halo) and RoPE only its number of dims is used.
        dims: grid dims when ``grid_size`` is not given (default: from tuple-valued pattern sizes, else 2).
        backend: operator backend, ``'auto'`` or a name in ``visionattn.ops.BACKENDS``.
        proj: output projection ``heads·head_dim → dim``. ``False`` (bottleneck mixers of SASA / HaloNet / BoTNet,
            whose next 1×1 conv projects anyway) needs ``heads · head_dim == dim``.
        attn_drop: must be 0 — dropout on attention probabilities cannot be applied uniformly inside fused SDPA
            tiles; regularise with ``proj_drop`` or DropPath instead.
        cross: separate ``q`` and ``kv`` projections (cross-attention; ``kv_dim`` implies it).
        kv_dim: channels of ``context`` (default ``dim``).
        resize_position: a grid larger than ``grid_size`` interpolates the relative table of a grid-wide
            pattern to the radius it needs (:func:`visionattn.layers.resize.resize_relative`; what backbones do
            to run at any input size) instead of raising the operator's ``ValueError``.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        pattern: Pattern,
        position: str = "none",
        form: str = "softmax",
        qkv_bias: bool = True,
        grid_size: tuple[int, ...] | None = None,
        backend: str = "auto",
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        head_dim: int | None = None,
        dims: int | None = None,
        proj: bool = True,
        cross: bool = False,
        kv_dim: int | None = None,
        resize_position: bool = False,
    ):
        super().__init__()
        if not isinstance(pattern, Pattern):
            raise TypeError(f"pattern must be a visionattn.ops Pattern (Global(), Window(7), ...), got {pattern!r}")
        if heads < 1 or dim < 1:
            raise ValueError(f"Attention needs dim ≥ 1 and heads ≥ 1, got dim={dim}, heads={heads}")
        if kv_dim is not None and kv_dim < 1:
            raise ValueError(f"Attention kv_dim must be ≥ 1 (the context's channels), got {kv_dim}")
        if head_dim is None:
            if dim % heads:
                raise ValueError(f"dim {dim} is not divisible by heads {heads}; pass head_dim explicitly")
            head_dim = dim // heads
        if position not in POSITION_KINDS:
            raise ValueError(f"position must be one of {POSITION_KINDS}, got {position!r}")
        if form == "linear" and position in ("rel_bias", "rel_logits"):
            raise ValueError(f"form='linear' has no logits to add position={position!r} to; use 'none' or 'rope'")
        if attn_drop:
            raise NotImplementedError(
                f"attn_drop={attn_drop}: dropout on attention probabilities is not supported (the operator's "
                "fused SDPA tiles do not expose them uniformly); use proj_drop or DropPath instead"
            )
        if grid_size is not None:
            grid_size = tuple(int(n) for n in grid_size)
            if dims is not None and dims != len(grid_size):
                raise ValueError(f"dims={dims} disagrees with grid_size {grid_size} ({len(grid_size)} dims)")
        if grid_size is None and position in ("rel_bias", "rel_logits") and not isinstance(pattern, LOCAL_PATTERNS):
            raise ValueError(
                f"position={position!r} with {pattern} needs grid_size (the largest grid the layer will see): "
                f"the relative table of a grid-wide pattern grows with the grid; got grid_size=None"
            )
        if grid_size is None:
            dims = dims or _infer_dims(pattern) or 2
            grid_size = (1,) * dims  # local patterns and RoPE only need the number of dims

        self.dim, self.heads, self.head_dim = dim, heads, head_dim
        self.kv_dim = dim if kv_dim is None else kv_dim
        self.pattern, self.form, self.backend = pattern, form, backend
        self.grid_size = grid_size
        self.resize_position = resize_position
        self.q_stride = _query_stride(pattern)
        inner = heads * head_dim
        self.split = cross or kv_dim is not None or self.q_stride > 1  # separate q and kv projections
        if self.split:
            self.q = nn.Linear(dim, inner, bias=qkv_bias)
            self.kv = nn.Linear(self.kv_dim, 2 * inner, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.position = make_position(position, heads, head_dim, pattern, grid_size)
        if not proj and inner != dim:
            raise ValueError(f"proj=False needs heads·head_dim == dim, got {heads}·{head_dim} = {inner} vs dim {dim}")
        self.proj = nn.Linear(inner, dim) if proj else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop)

    # -- projections ----------------------------------------------------------------------------------
    def _weights(self, which: str) -> tuple[Tensor, Tensor | None]:
        """The ``q``, ``k`` or ``v`` slice of the projection weights: ``(heads·head_dim, in_dim)`` and bias."""
        inner = self.heads * self.head_dim
        if self.split:
            layer, index = (self.q, 0) if which == "q" else (self.kv, "kv".index(which))
        else:
            layer, index = self.qkv, "qkv".index(which)
        rows = slice(index * inner, (index + 1) * inner)
        return layer.weight[rows], None if layer.bias is None else layer.bias[rows]

    def _project(self, x: Tensor, context: Tensor | None, query_pos: Tensor | None,
                 key_pos: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """q ``(B, *q_grid, h, d)``, k and v ``(B, *kv_grid, h, d)``."""
        h, d = self.heads, self.head_dim
        if not self.split and context is None and query_pos is None and key_pos is None:  # plain self-attention
            q, k, v = self.qkv(x).reshape(*x.shape[:-1], 3, h, d).unbind(-3)  # (B, *grid, h, d) each
            return q, k, v
        ctx = x if context is None else context  # (B, *kv_grid, kv_dim)
        xq = x if query_pos is None else x + query_pos  # (B, *grid, dim)
        if self.q_stride > 1:
            xq = xq[(slice(None), *(slice(None, None, self.q_stride) for _ in x.shape[1:-1]))]  # (B, *q_grid, dim)
        q = F.linear(xq, *self._weights("q")).reshape(*xq.shape[:-1], h, d)  # (B, *q_grid, h, d)
        if self.split and key_pos is None:
            k, v = self.kv(ctx).reshape(*ctx.shape[:-1], 2, h, d).unbind(-3)  # (B, *kv_grid, h, d) each
            return q, k, v
        xk = ctx if key_pos is None else ctx + key_pos  # positions go into keys, not values
        k = F.linear(xk, *self._weights("k")).reshape(*ctx.shape[:-1], h, d)  # (B, *kv_grid, h, d)
        v = F.linear(ctx, *self._weights("v")).reshape(*ctx.shape[:-1], h, d)  # (B, *kv_grid, h, d)
        return q, k, v

    def _check(self, x, context, query_pos, key_pos) -> None:
        if not isinstance(x, Tensor) or x.ndim not in (3, 4, 5) or x.shape[-1] != self.dim:
            raise ValueError(f"Attention expects channels-last x (B, *grid, {self.dim}) with a 1-3 dim grid, got "
                             f"{_shape(x)}")
        if context is not None:
            if not isinstance(context, Tensor) or not context.is_floating_point():
                raise TypeError(f"Attention context must be a float tensor (B, *kv_grid, {self.kv_dim}), got "
                                f"{_describe(context)}")
            if context.ndim != x.ndim or context.shape[0] != x.shape[0] or context.shape[-1] != self.kv_dim:
                raise ValueError(
                    f"Attention context must be (B={x.shape[0]}, *kv_grid, {self.kv_dim}) with as many grid dims as "
                    f"x {tuple(x.shape)} (flatten both for a set of queries), got {tuple(context.shape)}"
                )
        elif self.kv_dim != self.dim:
            raise ValueError(f"Attention built with kv_dim={self.kv_dim} ≠ dim={self.dim} needs a context "
                             f"(B, *kv_grid, {self.kv_dim}); got context=None")
        for name, pos, ref in (("query_pos", query_pos, x), ("key_pos", key_pos, x if context is None else context)):
            if pos is None:
                continue
            if not isinstance(pos, Tensor):
                raise TypeError(f"Attention {name} must be a tensor broadcastable to {tuple(ref.shape)}, got "
                                f"{type(pos).__name__}")
            try:
                shape = torch.broadcast_shapes(pos.shape, ref.shape)
            except RuntimeError:
                shape = None
            if shape != ref.shape:
                raise ValueError(f"Attention {name} must broadcast to {tuple(ref.shape)}, got {tuple(pos.shape)}")

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        query_pos: Tensor | None = None,
        key_pos: Tensor | None = None,
        pattern: Pattern | None = None,
        query_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """x ``(B, *grid, dim)`` → ``(B, *q_grid, dim)``.

        context: ``(B, *kv_grid, kv_dim)`` keys/values for cross-attention (default: x itself).
        key_padding_mask: ``(B, *kv_grid)`` bool, True = padding (never attended), over the context.
        query_padding_mask: ``(B, *q_grid)`` bool, True = padded query (its output is zeros). Default: for
            self-attention the key padding mask at the query tokens; for cross-attention none.
        query_pos / key_pos: embeddings added to the inputs of the query / key projections only (broadcastable
            to x / the context); values are projected from the plain inputs (DETR).
        pattern: this call's pattern instead of the layer's (e.g. Swin's window clipped to a small grid); its
            relative table must cover it.
        """
        self._check(x, context, query_pos, key_pos)
        if pattern is None:
            pattern = self.pattern
        elif not isinstance(pattern, Pattern):
            raise TypeError(f"pattern must be a visionattn.ops Pattern or None, got {pattern!r}")
        q, k, v = self._project(x, context, query_pos, key_pos)
        if query_padding_mask is None and context is None and isinstance(key_padding_mask, Tensor):
            # self-attention: the queries are tokens of x (every q_stride-th one), padding where x is padding
            query_padding_mask = key_padding_mask[(slice(None), *(slice(None, None, self.q_stride),) * (x.ndim - 2))]
        position = None if self.position is None else self.position.descriptor()
        if self.resize_position and position is not None:
            position = resize_relative(position, pattern.max_offset(tuple(k.shape[1:-2])))
        out = attention(
            q,
            k,
            v,
            pattern,
            position=position,
            form=self.form,
            backend=self.backend,
            key_padding_mask=key_padding_mask,
            query_padding_mask=query_padding_mask,
        )  # (B, *q_grid, h, d)
        out = out.flatten(-2)  # (B, *q_grid, h * d)
        return self.proj_drop(self.proj(out))  # (B, *q_grid, dim)

    def extra_repr(self) -> str:
        cross = f", kv_dim={self.kv_dim}, cross=True" if self.split and self.q_stride == 1 else ""
        return (
            f"dim={self.dim}, heads={self.heads}, head_dim={self.head_dim}, pattern={self.pattern}, "
            f"form={self.form!r}{cross}"
        )


class AxialAttention(nn.Module):
    """Axial attention (Axial-DeepLab): one :class:`Attention` per axis with pattern ``Axial(axis)``, applied in
    sequence — height then width for the default ``axes=(0, 1)`` — each with its own projections and
    position module, no residual in between (the surrounding block adds it).

    x ``(B, *grid, dim)`` → ``(B, *grid, dim)``. Cost per layer is ``O(N · L_axis)`` instead of ``O(N²)``;
    the composition gives every position a receptive field of the whole grid. Relative tables are sized by
    ``grid_size`` along each layer's axis. Other keyword arguments go to each :class:`Attention`.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        axes: tuple[int, ...] = (0, 1),
        position: str = "none",
        grid_size: tuple[int, ...] | None = None,
        **kwargs,
    ):
        super().__init__()
        axes = tuple(axes)
        if not axes or len(set(axes)) != len(axes) or any(a < 0 for a in axes):
            raise ValueError(f"AxialAttention axes must be distinct non-negative grid axes, got {axes}")
        if grid_size is not None and max(axes) >= len(grid_size):
            raise ValueError(f"AxialAttention axes {axes} out of range for grid_size {tuple(grid_size)}")
        if grid_size is None and "dims" not in kwargs:
            kwargs["dims"] = max(2, max(axes) + 1)
        self.axes = axes
        self.layers = nn.ModuleList(
            [Attention(dim, heads, Axial(a), position=position, grid_size=grid_size, **kwargs) for a in axes]
        )

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, *grid, dim)``; key_padding_mask ``(B, *grid)`` bool (True = padding) → ``(B, *grid, dim)``."""
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask)  # (B, *grid, dim)
        return x


__all__ = ["Attention", "AxialAttention"]
