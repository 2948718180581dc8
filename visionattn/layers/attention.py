"""The attention layer: projections around the one mixing operator :func:`visionattn.ops.attention`.

``Attention`` is the only attention module; ViT, SASA, HaloNet, Swin, axial and sparse attention differ only in
the ``pattern`` (and ``position``) they pass. Tokens are channels-last ``(B, *grid, C)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..ops import attention
from ..ops.patterns import Axial, Halo, Pattern
from .position import LOCAL_PATTERNS, POSITION_KINDS, make_position


def _query_stride(pattern: Pattern) -> int:
    """Query subsampling of the pattern (strided Halo: query ``p`` sits at key position ``p * stride``)."""
    return pattern.stride if isinstance(pattern, Halo) else 1


def _infer_dims(pattern: Pattern) -> int | None:
    for name in ("kernel", "size", "block", "dilation"):
        value = getattr(pattern, name, None)
        if isinstance(value, tuple):
            return len(value)
    return None


class Attention(nn.Module):
    """Multi-head self-attention over a grid with a locality ``pattern``.

    x ``(B, *grid, dim)`` channels-last, grid ``(N,)``, ``(H, W)`` or ``(T, H, W)`` → ``(B, *q_grid, dim)`` where
    ``q_grid = pattern.query_grid(grid)`` (the grid itself, except strided Halo: ``ceil(L / stride)`` per axis).

    Steps: one fused ``qkv`` Linear ``dim → 3 · heads · head_dim`` (or, when the pattern subsamples queries, a
    ``q`` Linear on ``x[:, ::s, ::s]`` and a ``kv`` Linear on ``x``), heads-last reshape to
    ``(B, *grid, heads, head_dim)``, :func:`visionattn.ops.attention`, output ``proj`` Linear and ``proj_drop``.

    Args:
        dim: channels in and out.
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
    ):
        super().__init__()
        if not isinstance(pattern, Pattern):
            raise TypeError(f"pattern must be a visionattn.ops Pattern (Global(), Window(7), ...), got {pattern!r}")
        if heads < 1 or dim < 1:
            raise ValueError(f"Attention needs dim ≥ 1 and heads ≥ 1, got dim={dim}, heads={heads}")
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
        self.pattern, self.form, self.backend = pattern, form, backend
        self.grid_size = grid_size
        self.q_stride = _query_stride(pattern)
        inner = heads * head_dim
        if self.q_stride > 1:
            self.q = nn.Linear(dim, inner, bias=qkv_bias)
            self.kv = nn.Linear(dim, 2 * inner, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.position = make_position(position, heads, head_dim, pattern, grid_size)
        if not proj and inner != dim:
            raise ValueError(f"proj=False needs heads·head_dim == dim, got {heads}·{head_dim} = {inner} vs dim {dim}")
        self.proj = nn.Linear(inner, dim) if proj else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """x ``(B, *grid, dim)``; key_padding_mask ``(B, *grid)`` bool, True = padding → ``(B, *q_grid, dim)``."""
        if not isinstance(x, Tensor) or x.ndim not in (3, 4, 5) or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"Attention expects channels-last x (B, *grid, {self.dim}) with a 1-3 dim grid, got {got}")
        B, grid, h, d = x.shape[0], tuple(x.shape[1:-1]), self.heads, self.head_dim
        if self.q_stride > 1:
            s = self.q_stride
            xq = x[(slice(None), *(slice(None, None, s) for _ in grid))]  # (B, *q_grid, dim)
            q = self.q(xq).reshape(*xq.shape[:-1], h, d)  # (B, *q_grid, h, d)
            k, v = self.kv(x).reshape(B, *grid, 2, h, d).unbind(-3)  # (B, *grid, h, d) each
        else:
            q, k, v = self.qkv(x).reshape(B, *grid, 3, h, d).unbind(-3)  # (B, *grid, h, d) each
        out = attention(
            q,
            k,
            v,
            self.pattern,
            position=None if self.position is None else self.position.descriptor(),
            form=self.form,
            backend=self.backend,
            key_padding_mask=key_padding_mask,
        )  # (B, *q_grid, h, d)
        out = out.flatten(-2)  # (B, *q_grid, h * d)
        return self.proj_drop(self.proj(out))  # (B, *q_grid, dim)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, heads={self.heads}, head_dim={self.head_dim}, pattern={self.pattern}, "
            f"form={self.form!r}"
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
