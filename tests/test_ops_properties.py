"""Property-based equivalence of the blocked backend and the reference (the spec), forward and backward.

``hypothesis`` draws the pattern and its parameters (Neighborhood kernel / dilation / border, Halo block / halo /
stride, Window size / shift, Axial axis, Global), a 1D/2D/3D grid whose sizes the window/block often does not divide,
the position (none, relative bias, relative logits, RoPE), the dtype (fp32, bf16), batch, heads, a value width
narrower than the head or not, and a random key padding mask. Padded inputs are NaN in the blocked run and random
numbers in the reference run: the outputs and the gradients must agree everywhere (padding never leaks).

Profiles:
  * ``visionattn-ci`` (default): a few dozen derandomized examples, a few seconds; part of the default suite.
  * ``visionattn-slow``: many more random examples, ``@pytest.mark.slow``
    (``.venv/bin/python -m pytest -m slow tests/test_ops_properties.py``).
``VISIONATTN_HYPOTHESIS_EXAMPLES=N`` overrides the number of examples of both (e.g. 2000 for a long soak).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visionattn.ops import (
    Axial,
    Global,
    Halo,
    Neighborhood,
    RelativeBias,
    RelativeLogits,
    Rope,
    Window,
    attention,
    rope_frequencies,
)

TOL = {torch.float32: dict(rtol=1e-4, atol=2e-5), torch.bfloat16: dict(rtol=4e-2, atol=4e-2)}  # as test_backends
_EXAMPLES = os.environ.get("VISIONATTN_HYPOTHESIS_EXAMPLES")
settings.register_profile(
    "visionattn-ci", max_examples=int(_EXAMPLES or 40), deadline=None, derandomize=True, database=None,
    print_blob=True, suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "visionattn-slow", max_examples=int(_EXAMPLES or 3000), deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CI = settings.get_profile("visionattn-ci")
SLOW = settings.get_profile("visionattn-slow")

MAX_SIDE = {1: 23, 2: 10, 3: 6}  # grid side limits per number of dims (keeps the dense reference small)


@dataclass
class Case:
    pattern: object
    grid: tuple[int, ...]
    position: str
    dtype: torch.dtype
    batch: int
    heads: int
    head_dim: int
    v_dim: int
    padding: str  # "none", "random", "crop"
    seed: int

    def __repr__(self):
        return (f"Case({self.pattern}, grid={self.grid}, position={self.position}, dtype={self.dtype}, "
                f"batch={self.batch}, heads={self.heads}, head_dim={self.head_dim}, v_dim={self.v_dim}, "
                f"padding={self.padding}, seed={self.seed})")


def _per_axis(draw, dims, values):
    """One value for every axis, or a single int (the patterns accept both)."""
    if dims > 1 and draw(st.booleans()):
        return tuple(draw(values) for _ in range(dims))
    return draw(values)


def _axis(value, a):
    return value[a] if isinstance(value, tuple) else value


@st.composite
def patterns(draw, grid):
    dims = len(grid)
    kind = draw(st.sampled_from(["neighborhood", "neighborhood", "halo", "window", "window", "axial", "global"]))
    if kind == "global":
        return Global()
    if kind == "axial":
        return Axial(draw(st.integers(0, dims - 1)))
    if kind == "neighborhood":
        border = draw(st.sampled_from(["shift", "pad"]))
        kernel = _per_axis(draw, dims, st.sampled_from([1, 3, 5, 7]))
        dilation = _per_axis(draw, dims, st.integers(1, 3))
        if border == "shift":  # kernel × dilation must fit every axis: shrink what does not
            kernel = tuple(min(_axis(kernel, a), _largest_odd(grid[a])) for a in range(dims))
            dilation = tuple(max(1, min(_axis(dilation, a), grid[a] // kernel[a])) for a in range(dims))
        return Neighborhood(kernel, dilation=dilation, border=border)
    if kind == "halo":
        stride = draw(st.sampled_from([1, 1, 2]))
        block = _per_axis(draw, dims, st.sampled_from([stride, 2 * stride, 3 * stride, 4 * stride]))
        return Halo(block, draw(st.integers(0, 3)), stride=stride)
    size = tuple(draw(st.integers(1, grid[a])) for a in range(dims))  # Window: size ≤ each side
    if draw(st.booleans()):
        return Window(size)
    return Window(size, shift=tuple(draw(st.integers(0, s - 1)) for s in size))


def _largest_odd(n: int) -> int:
    return n if n % 2 else n - 1


@st.composite
def cases(draw):
    dims = draw(st.sampled_from([1, 2, 2, 3]))
    grid = tuple(draw(st.integers(2, MAX_SIDE[dims])) for _ in range(dims))
    pattern = draw(patterns(grid))
    position = draw(st.sampled_from(["none", "rel_bias", "rel_logits", "rope"]))
    head_dim = 12 if position == "rope" else draw(st.sampled_from([4, 8, 12]))  # RoPE: divisible by 2 · dims
    return Case(
        pattern=pattern, grid=grid, position=position,
        dtype=draw(st.sampled_from([torch.float32, torch.float32, torch.bfloat16])),
        batch=draw(st.integers(1, 2)), heads=draw(st.integers(1, 2)), head_dim=head_dim,
        v_dim=draw(st.sampled_from([head_dim, 3])),
        padding=draw(st.sampled_from(["none", "random", "random", "crop"])), seed=draw(st.integers(0, 2**31 - 1)),
    )


def _padding(case: Case) -> torch.Tensor | None:
    """Random key padding (a drawn density) or a cropped image per batch entry; every image keeps a valid key."""
    if case.padding == "none":
        return None
    g = torch.Generator().manual_seed(case.seed + 1)
    if case.padding == "random":
        density = float(torch.rand((), generator=g)) * 0.7
        pad = torch.rand(case.batch, *case.grid, generator=g) < density
    else:
        pad = torch.zeros(case.batch, *case.grid, dtype=torch.bool)
        for b in range(case.batch):
            for a, n in enumerate(case.grid):
                keep = int(torch.randint(1, n + 1, (), generator=g))
                index = [b] + [slice(None)] * len(case.grid)
                index[1 + a] = slice(keep, None)
                pad[tuple(index)] = True
    pad.view(case.batch, -1)[:, 0] = False
    return pad


def _position(case: Case, g: torch.Generator):
    dims = len(case.grid)
    if case.position == "none":
        return None, []
    if case.position == "rope":
        freqs = rope_frequencies(case.head_dim, dims) * (1 + torch.rand(dims, 1, generator=g))
        leaf = freqs.requires_grad_()
        return Rope(leaf), [leaf]
    radius = case.pattern.max_offset(case.grid)
    if case.position == "rel_bias":
        leaf = torch.randn(case.heads, *[2 * r + 1 for r in radius], generator=g).to(case.dtype).requires_grad_()
        return RelativeBias(leaf), [leaf]
    leaves = [torch.randn(2 * r + 1, case.head_dim, generator=g).to(case.dtype).requires_grad_() for r in radius]
    return RelativeLogits(tuple(leaves)), leaves


def _run(case: Case, backend: str, fill: float | None) -> list[torch.Tensor]:
    """Output and gradients (q, k, v, then the position leaves); padded inputs replaced by ``fill``."""
    g = torch.Generator().manual_seed(case.seed)
    q_grid = case.pattern.query_grid(case.grid)
    q = torch.randn(case.batch, *q_grid, case.heads, case.head_dim, generator=g)
    k = torch.randn(case.batch, *case.grid, case.heads, case.head_dim, generator=g)
    v = torch.randn(case.batch, *case.grid, case.heads, case.v_dim, generator=g)
    pad = _padding(case)
    if pad is not None and fill is not None:
        where = pad[..., None, None]
        k, v = torch.where(where, fill, k), torch.where(where, fill, v)
        if q_grid == case.grid:
            q = torch.where(where, fill, q)
    inputs = [t.to(case.dtype).requires_grad_() for t in (q, k, v)]
    position, leaves = _position(case, g)
    self_attention = pad is not None and q_grid == case.grid  # the queries are the tokens: padded where they are
    out = attention(*inputs, case.pattern, position=position, backend=backend, key_padding_mask=pad,
                    query_padding_mask=pad if self_attention else None)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(case.seed + 2))
    (out.float() * cotangent).sum().backward()
    return [out.float()] + [t.grad.float() for t in inputs + leaves]


def check_blocked_equals_reference(case: Case) -> None:
    want = _run(case, "reference", fill=None)
    got = _run(case, "blocked", fill=float("nan"))
    assert float(want[0].detach().abs().max()) > 0.0 and float(want[3].abs().max()) > 0.0, "nothing to compare"
    names = ["out", "dq", "dk", "dv", "dpos0", "dpos1", "dpos2"]
    largest = max(float(w.detach().abs().max()) for w in want)
    for name, a, b in zip(names, got, want, strict=False):
        assert torch.isfinite(a).all(), f"{name}: NaN padding leaked"
        # fp32: each tensor at its own scale; bf16: the call's largest value (a gradient that cancels to ~0 still
        # carries the bf16 rounding of its terms), as tests/test_backends.py does
        scale = max(float(b.detach().abs().max()), 1.0) if case.dtype == torch.float32 else max(largest, 1.0)
        if case.position == "rel_logits" and name.startswith("dpos") and b.shape[0] == 1:
            # a radius-0 logit table adds one constant to a whole row: its gradient is 0 up to the rounding of
            # every logit's gradient, so it is compared at the call's scale (2.1e-5 was seen in fp32)
            scale = max(largest, 1.0)
        tol = TOL[case.dtype]
        if case.dtype == torch.bfloat16 and case.position == "rope" and name.startswith("dpos"):
            # the frequencies' gradient sums dq·(coordinate × rotated q) over every position: the bf16 rounding of
            # dq and dk (within tolerance each) adds up there, seen at 4.03e-2 on a 4×8 grid; allow twice as much
            tol = {key: 2 * value for key, value in tol.items()}
        torch.testing.assert_close(a / scale, b / scale, **tol, msg=lambda m, n=name: f"{n}: {m}")


@CI
@given(case=cases())
def test_blocked_equals_reference_property(case):
    check_blocked_equals_reference(case)


@pytest.mark.slow
@SLOW
@given(case=cases())
def test_blocked_equals_reference_property_slow(case):
    check_blocked_equals_reference(case)


def test_the_strategy_reaches_every_pattern_and_awkward_sizes():
    """The default profile's examples are not all easy ones: every pattern kind, every dims, both dtypes, key
    padding, and grids that the window / block / tile does not divide."""
    seen = []

    @CI
    @given(case=cases())
    def collect(case):
        seen.append(case)

    collect()
    kinds = {type(c.pattern).__name__ for c in seen}
    assert kinds == {"Global", "Neighborhood", "Halo", "Window", "Axial"}, kinds
    assert {len(c.grid) for c in seen} == {1, 2, 3}
    assert {c.dtype for c in seen} == {torch.float32, torch.bfloat16}
    assert {c.position for c in seen} == {"none", "rel_bias", "rel_logits", "rope"}
    assert {c.padding for c in seen} == {"none", "random", "crop"}

    def undivided(c):
        p = c.pattern
        if isinstance(p, Window):
            return any(n % _axis(p.size, a) for a, n in enumerate(c.grid))
        if isinstance(p, Halo):
            return any(n % _axis(p.block, a) for a, n in enumerate(c.grid))
        return False

    assert sum(map(undivided, seen)) >= 5
