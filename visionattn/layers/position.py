"""Learnable (or fixed) positional parameters that feed the operator's position descriptors.

The operator (:mod:`visionattn.ops.position`) takes frozen *descriptors* holding tensors; the modules here own
those tensors as parameters/buffers and hand out a fresh descriptor on every forward (``.descriptor()``), so
gradients flow into the parameters and ``.to()``/``.half()``/``state_dict`` work as usual.

Table sizes (radius ``R_a`` per axis, tables span offsets ``-R_a..R_a``):

* **Local patterns** (``Neighborhood``, ``Window``, ``Halo``): the radius is the pattern's own reach, which
  does not depend on the grid (a Neighborhood with ``border='shift'`` reaches ``(kernel-1)·dilation`` at the
  borders, NATTEN's ``2k-1`` tables). The grid is only used for its number of dims, so one checkpoint serves
  every input size.
* **Grid-wide patterns** (``Global``, ``Axial``, ``Strided``, ``Graph`` and unknown patterns): the reach grows
  with the grid, so the table is sized by ``grid_size``, the *largest* grid the layer will see. A bigger grid
  at forward time raises the operator's ``ValueError`` (covered vs needed radius).
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops import Halo, Neighborhood, Pattern, RelativeBias, RelativeLogits, Rope, Window, rope_frequencies

POSITION_KINDS = ("none", "rel_bias", "rel_logits", "rope")
LOCAL_PATTERNS = (Neighborhood, Window, Halo)


def _radius(radius, name: str) -> tuple[int, ...]:
    radius = (radius,) if isinstance(radius, int) else tuple(radius)
    if not 1 <= len(radius) <= 3 or any(not isinstance(r, int) or r < 0 for r in radius):
        raise ValueError(f"{name} radius must be 1-3 non-negative ints (one per grid axis), got {radius}")
    return radius


class RelativeBiasTable(nn.Module):
    """Swin-style relative position bias: a learned scalar per head and per offset.

    table: ``(heads, 2R_0+1, ..., 2R_{D-1}+1)``, trunc-normal init, std 0.02 (as Swin).
    ``descriptor()`` → :class:`visionattn.ops.RelativeBias`.
    """

    def __init__(self, heads: int, radius: tuple[int, ...]):
        super().__init__()
        self.radius = _radius(radius, "RelativeBiasTable")
        self.table = nn.Parameter(torch.empty(heads, *(2 * r + 1 for r in self.radius)))
        nn.init.trunc_normal_(self.table, std=0.02)

    def descriptor(self) -> RelativeBias:
        return RelativeBias(self.table)

    def extra_repr(self) -> str:
        return f"heads={self.table.shape[0]}, radius={self.radius}"


class RelativeLogitsTable(nn.Module):
    """SASA / HaloNet / BoTNet relative logits ``q · r_Δ``, factorised per axis and shared across heads.

    One ``(2R_a+1, head_dim)`` parameter per grid axis (``tables``), normal init with std ``head_dim ** -0.5``
    (as timm's ``RelPosEmb``). ``descriptor()`` → :class:`visionattn.ops.RelativeLogits`.
    """

    def __init__(self, head_dim: int, radius: tuple[int, ...]):
        super().__init__()
        self.radius = _radius(radius, "RelativeLogitsTable")
        self.head_dim = head_dim
        self.tables = nn.ParameterList(
            [nn.Parameter(torch.randn(2 * r + 1, head_dim) * head_dim**-0.5) for r in self.radius]
        )

    def descriptor(self) -> RelativeLogits:
        return RelativeLogits(tuple(self.tables))

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, radius={self.radius}"


class RotaryEmbedding(nn.Module):
    """Axial rotary embedding (2D/3D RoPE): ``head_dim`` is split into ``dims`` groups, one per grid axis.

    freqs: ``(dims, head_dim // (2 dims))`` from :func:`visionattn.ops.rope_frequencies` — a buffer, or a
    parameter with ``learnable=True`` (RoPE-Mixed style). The descriptor always carries float32 frequencies, so
    positions × frequencies stay exact under ``.half()``/AMP. ``descriptor()`` → :class:`visionattn.ops.Rope`.
    """

    def __init__(self, head_dim: int, dims: int, theta: float = 100.0, learnable: bool = False):
        super().__init__()
        if dims not in (1, 2, 3):
            raise ValueError(f"RotaryEmbedding dims must be 1, 2 or 3, got {dims}")
        if head_dim % (2 * dims):
            raise ValueError(
                f"RotaryEmbedding on a {dims}-dim grid needs head_dim divisible by 2 * dims = {2 * dims}, "
                f"got head_dim={head_dim}"
            )
        self.head_dim, self.dims, self.theta, self.learnable = head_dim, dims, theta, learnable
        freqs = rope_frequencies(head_dim, dims, theta)
        if learnable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs, persistent=False)

    def descriptor(self) -> Rope:
        if self.learnable:
            return Rope(self.freqs.float())
        # recomputed, on the buffer's device (no host copy), so a .half() module still rotates with exact float32
        return Rope(rope_frequencies(self.head_dim, self.dims, self.theta, device=self.freqs.device))

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, dims={self.dims}, theta={self.theta}, learnable={self.learnable}"


# ---------------------------------------------------------------------------------------------------
def _per_axis(value, axis: int, dims: int, name: str, pattern: Pattern) -> int:
    if isinstance(value, tuple):
        if len(value) != dims:
            raise ValueError(f"{pattern}: {name} has {len(value)} entries but the grid has {dims} dims")
        return value[axis]
    return value


def _saturating_length(pattern: Pattern, axis: int, dims: int) -> int:
    """An axis length beyond which a local pattern's reach stops growing (generously above the bound)."""
    if isinstance(pattern, Neighborhood):
        k = _per_axis(pattern.kernel, axis, dims, "kernel", pattern)
        d = _per_axis(pattern.dilation, axis, dims, "dilation", pattern)
        return 2 * k * d + 1
    if isinstance(pattern, Window):
        return 2 * _per_axis(pattern.size, axis, dims, "size", pattern) + 1
    if isinstance(pattern, Halo):
        return 2 * (_per_axis(pattern.block, axis, dims, "block", pattern) + 2 * pattern.halo) + 1
    raise TypeError(f"not a local pattern: {pattern}")


def position_radius(pattern: Pattern, grid_size: tuple[int, ...]) -> tuple[int, ...]:
    """Relative-table radius per axis for ``pattern`` on grids up to ``grid_size``.

    Local patterns: the pattern's full reach (``grid_size`` gives only the number of dims). Other patterns:
    ``pattern.max_offset(grid_size)``.
    """
    grid_size = tuple(int(n) for n in grid_size)
    if not 1 <= len(grid_size) <= 3 or any(n < 1 for n in grid_size):
        raise ValueError(f"grid_size must be 1-3 positive ints, got {grid_size}")
    if isinstance(pattern, LOCAL_PATTERNS):
        dims = len(grid_size)
        probe = tuple(max(n, _saturating_length(pattern, a, dims)) for a, n in enumerate(grid_size))
        return pattern.max_offset(probe)
    return pattern.max_offset(grid_size)


def make_position(
    kind: str, heads: int, head_dim: int, pattern: Pattern, grid_size: tuple[int, ...]
) -> RelativeBiasTable | RelativeLogitsTable | RotaryEmbedding | None:
    """The position module of ``kind`` for ``pattern`` (``None`` for ``kind='none'``).

    kind: one of ``'none'``, ``'rel_bias'`` (Swin), ``'rel_logits'`` (SASA/HaloNet/BoTNet), ``'rope'``.
    grid_size: ``(N,)``, ``(H, W)`` or ``(T, H, W)``; the largest grid the layer will see. Relative tables
    of grid-wide patterns (Global, Axial, Strided, Graph) are sized by it; local patterns (Neighborhood,
    Window, Halo) use it only for the number of dims (see :func:`position_radius`).
    """
    if kind not in POSITION_KINDS:
        raise ValueError(f"position must be one of {POSITION_KINDS}, got {kind!r}")
    if kind == "none":
        return None
    if kind == "rope":
        return RotaryEmbedding(head_dim, dims=len(grid_size))
    radius = position_radius(pattern, grid_size)
    if kind == "rel_bias":
        return RelativeBiasTable(heads, radius)
    return RelativeLogitsTable(head_dim, radius)


__all__ = [
    "LOCAL_PATTERNS",
    "POSITION_KINDS",
    "RelativeBiasTable",
    "RelativeLogitsTable",
    "RotaryEmbedding",
    "make_position",
    "position_radius",
]

