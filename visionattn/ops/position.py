"""Positional information inside the operator.

Three kinds, each a frozen descriptor holding tensors (learnable parameters live in the modules of
``visionattn.layers.position``; gradients flow through these descriptors):

* :class:`RelativeBias` (Swin): a learned scalar per head and per query→key offset, added to the logits.
* :class:`RelativeLogits` (SASA, HaloNet, BoTNet): ``q · r_Δ`` with a factorised table per axis,
  ``logit += Σ_a q · r^a[Δ_a]``, shared across heads.
* :class:`Rope`: axial rotary embedding (2D/3D RoPE) applied to ``q`` and ``k`` before the logits.

Offsets are ``Δ = key position − query position`` on the key grid (a strided query sits at
``p * stride``). Logits are ``scale · q·k + bias`` where bias is the table value or ``q · r`` (unscaled,
as in Swin / BoTNet). Absolute encodings are added at the embedding, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class RelativeBias:
    """table: ``(heads, 2R_0+1, ..., 2R_{D-1}+1)``; covers offsets ``|Δ_a| ≤ R_a``."""

    table: Tensor

    @property
    def radius(self) -> tuple[int, ...]:
        return tuple((n - 1) // 2 for n in self.table.shape[1:])

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.table,)

    def lookup(self, delta: Tensor) -> Tensor:
        """delta ``(..., D)`` int64 offsets → bias ``(heads, ...)``. Offsets beyond the table are clamped
        to its edge (the operator checks that allowed pairs never need that)."""
        flat = torch.zeros(delta.shape[:-1], dtype=torch.long, device=delta.device)
        for axis, r in enumerate(self.radius):
            flat = flat * (2 * r + 1) + (delta[..., axis].clamp(-r, r) + r)
        return self.table.flatten(1)[:, flat]


@dataclass(frozen=True, eq=False)
class RelativeLogits:
    """tables: one ``(2R_a+1, head_dim)`` table per grid axis; ``logit += Σ_a q · tables[a][Δ_a + R_a]``."""

    tables: tuple[Tensor, ...]

    @property
    def radius(self) -> tuple[int, ...]:
        return tuple((t.shape[0] - 1) // 2 for t in self.tables)

    def tensors(self) -> tuple[Tensor, ...]:
        return tuple(self.tables)

    @property
    def head_dim(self) -> int:
        return self.tables[0].shape[1]


@dataclass(frozen=True, eq=False)
class Rope:
    """Axial rotary embedding. freqs: ``(D, head_dim // (2D))`` angular frequencies per axis.

    ``head_dim`` is cut into D equal groups, one per axis; inside group ``a`` the two halves form
    complex pairs rotated by ``position_a · freqs[a]`` (the rotate-half convention)."""

    freqs: Tensor

    def tensors(self) -> tuple[Tensor, ...]:
        return (self.freqs,)

    def rotate(self, x: Tensor, coords: tuple[Tensor, ...]) -> Tensor:
        """x ``(B, *grid, heads, head_dim)``; coords: one int64 position vector ``(L_a,)`` per grid axis, on the
        device of x and of ``freqs``."""
        dims = len(coords)
        group = x.shape[-1] // dims
        half = group // 2
        out = []
        for axis, pos in enumerate(coords):
            angle = pos.to(self.freqs.dtype)[:, None] * self.freqs[axis][None, :]  # (L_a, half)
            shape = [1] * (dims + 2) + [half]
            shape[1 + axis] = pos.shape[0]
            cos, sin = angle.cos().reshape(shape).to(x.dtype), angle.sin().reshape(shape).to(x.dtype)
            part = x[..., axis * group : (axis + 1) * group]
            a, b = part[..., :half], part[..., half:]
            out.append(torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1))
        return torch.cat(out, dim=-1)


def rope_frequencies(head_dim: int, dims: int, theta: float = 100.0,
                     device: torch.device | str | None = None) -> Tensor:
    """Standard geometric frequencies ``theta^(-i/half)`` for each axis group: float32 ``(dims, head_dim // (2 dims))``
    on ``device`` (default CPU; built there, no copy)."""
    half = head_dim // (2 * dims)
    base = theta ** (-torch.arange(half, dtype=torch.float32, device=device) / max(half, 1))
    return base[None].repeat(dims, 1)


Position = RelativeBias | RelativeLogits | Rope | None


def position_tensors(position: Position) -> tuple[Tensor, ...]:
    """The tensors a position descriptor holds (tables or frequencies); ``()`` for None."""
    return () if position is None else position.tensors()
