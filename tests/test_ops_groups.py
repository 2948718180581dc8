"""The blocked backend's group plan (windows, shifted windows, halo blocks, axial lines, neighborhood tiles as groups of
identical tiles; issue 17 item 1) against the reference (the spec) and against the general plan, forward and
backward, bias-table and relative-logit gradients included, on seeded random data; its structure (shifted windows:
nine groups, no mask, no roll, no gather, one bias lookup per group); NaN padding; the no-grad chunks; the partition
autograd functions on their own.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

from visionattn.ops import Axial, Global, Halo, Neighborhood, RelativeBias, RelativeLogits, Window, attention
from visionattn.ops.backends import blocked, blocked_grouped, blocked_groups, partition

HEADS, HEAD_DIM = 2, 12
TOL = {torch.float32: dict(rtol=1e-4, atol=2e-5), torch.bfloat16: dict(rtol=4e-2, atol=4e-2)}  # as test_backends

CASES = [  # (pattern, grid): windows that divide the grid and that do not, shifted or not, 1D/2D/3D; halo; ...
    (Window(7), (14, 14)),
    (Window(7, 3), (14, 21)),
    (Window(7, 3), (16, 19)),  # 7 divides neither axis: a clipped segment at the end of each
    (Window((4, 3), shift=(2, 1)), (12, 9)),
    (Window(5, 2), (20,)),
    (Window(3, 1), (6, 9, 6)),
    (Halo(4, 2), (13, 10)),
    (Halo(4, 1, stride=2), (16, 12)),
    (Axial(0), (7, 9)),
    (Axial(1), (4, 9, 5)),
    (Global(), (6, 7)),
    (Neighborhood(5), (19, 17)),
    (Neighborhood(7, border="pad"), (18, 20)),
]


def _ids(case):
    return f"{case[0]}-{'x'.join(map(str, case[1]))}".replace(" ", "")


def _run(pattern, grid, kind, backend, dtype=torch.float32, padding=None, fill=None, batch=2):
    """Output and the gradients of q, k, v and the position leaves, on seeded random inputs."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(batch, *pattern.query_grid(grid), HEADS, HEAD_DIM, generator=g)
    k, v = (torch.randn(batch, *grid, HEADS, HEAD_DIM, generator=g) for _ in range(2))
    if fill is not None:
        k, v = (torch.where(padding[..., None, None], fill, t) for t in (k, v))
    q, k, v = (t.to(dtype).requires_grad_() for t in (q, k, v))
    radius = pattern.max_offset(grid)
    leaves, position = [], None
    if kind == "rel_bias":
        leaves = [torch.randn(HEADS, *(2 * r + 1 for r in radius), generator=g).requires_grad_()]
        position = RelativeBias(leaves[0])
    elif kind == "rel_logits":
        leaves = [torch.randn(2 * r + 1, HEAD_DIM, generator=g).requires_grad_() for r in radius]
        position = RelativeLogits(tuple(leaves))
    out = attention(q, k, v, pattern, position=position, backend=backend, key_padding_mask=padding)
    (out.float() * torch.randn(out.shape, generator=g)).sum().backward()
    return [out.float()] + [t.grad.float() for t in (q, k, v, *leaves)]


def _close(got, want, dtype=torch.float32):
    """Per-tensor scaled comparison (as tests/test_backends.py). The scale of a position gradient, and in bf16 of
    every tensor, is the largest reference value of the call: a table entry whose offset every pair shares (radius
    0) sums hundreds of cancelling terms."""
    largest = max(float(w.detach().abs().max()) for w in want)
    for name, a, b in zip(["out", "dq", "dk", "dv", "dpos0", "dpos1", "dpos2"], got, want, strict=False):
        own = dtype == torch.float32 and not name.startswith("dpos")
        scale = max(float(b.detach().abs().max()), 1.0) if own else max(largest, 1.0)
        torch.testing.assert_close(a / scale, b / scale, **TOL[dtype], msg=lambda m, n=name: f"{n}: {m}")


def _group_plan(pattern, grid):
    return blocked_groups.group_plan(pattern, pattern.query_grid(grid), grid, blocked.DEFAULT_TILE[len(grid)], "cpu")


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("kind", ["none", "rel_bias", "rel_logits"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_groups_match_reference_forward_and_backward(case, kind, dtype):
    pattern, grid = case
    assert _group_plan(pattern, grid) is not None  # these cases really take the group plan
    _close(_run(pattern, grid, kind, "blocked", dtype), _run(pattern, grid, kind, "reference", dtype), dtype)


@pytest.mark.parametrize("case", CASES[:4] + CASES[6:7] + CASES[11:12], ids=_ids)
def test_groups_match_the_general_plan(monkeypatch, case):
    """Both plans of the blocked backend agree (forward, input and bias-table gradients) with key padding."""
    pattern, grid = case
    padding = torch.zeros(2, *grid, dtype=torch.bool)
    padding[0, -3:] = True
    padding[1, ..., :2] = True
    grouped = _run(pattern, grid, "rel_bias", "blocked", padding=padding)
    monkeypatch.setattr(blocked, "GROUPS", False)
    _close(grouped, _run(pattern, grid, "rel_bias", "blocked", padding=padding))


class _Calls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def test_shifted_windows_are_nine_maskless_groups_without_roll_or_gather():
    """Swin's shifted windows (56 = 8 · 7, shift 3): nine groups — the big one holds the 7 × 7 whole windows — none
    with a mask; a call gathers nothing, pads nothing and rolls nothing: its only ``index_select`` is the relative
    bias lookup, once per group (not per window)."""
    pattern, grid = Window(7, 3), (56, 56)
    plan = _group_plan(pattern, grid)
    assert len(plan.groups) == 9 and all(g.mask is None for g in plan.groups) and plan.k_exact
    assert [(s.count, s.q_size) for s in plan.segments[0]] == [(1, 3), (7, 7), (1, 4)]
    assert max(g.n for g in plan.groups) == (7, 7)
    q = torch.randn(1, *grid, HEADS, HEAD_DIM, generator=torch.Generator().manual_seed(1))
    table = torch.randn(HEADS, 13, 13, requires_grad=True)
    with _Calls() as calls:
        attention(q, q, q, pattern, position=RelativeBias(table), backend="blocked").sum().backward()
    assert calls.names.count("index_select") == 9
    assert not {"roll", "gather", "pad", "index", "index_add_", "scatter"} & set(calls.names), set(calls.names)


def test_unshifted_windows_that_divide_the_grid_are_one_group():
    plan = _group_plan(Window(7), (28, 14))
    assert len(plan.groups) == 1 and plan.groups[0].n == (4, 2) and plan.groups[0].mask is None


@pytest.mark.parametrize("case", [(Window(7, 3), (14, 14)), (Halo(4, 2), (13, 10)), (Neighborhood(5), (12, 11)),
                                  (Axial(1), (6, 7))], ids=_ids)
def test_nan_padding_never_leaks_through_groups(case):
    """Padded keys and values filled with NaN (or 123) give bit-identical valid outputs and gradients, equal to the
    reference, with a learnable relative bias."""
    pattern, grid = case
    padding = torch.zeros(2, *grid, dtype=torch.bool)
    padding[0, -4:] = True
    padding[1, :, -3:] = True
    nan = _run(pattern, grid, "rel_bias", "blocked", padding=padding, fill=float("nan"))
    other = _run(pattern, grid, "rel_bias", "blocked", padding=padding, fill=123.0)
    for a, b in zip(nan, other, strict=True):
        assert torch.isfinite(a).all() and torch.equal(a, b)
    _close(nan, _run(pattern, grid, "rel_bias", "reference", padding=padding, fill=123.0))


@pytest.mark.parametrize("case", [(Window(7, 3), (14, 21)), (Halo(4, 1), (13, 10)), (Neighborhood(5), (19, 17))],
                         ids=_ids)
@pytest.mark.parametrize("kind", ["none", "rel_bias", "rel_logits"])
@pytest.mark.parametrize("padded", [False, True], ids=["", "padded"])
def test_no_grad_chunks_match_reference(monkeypatch, case, kind, padded):
    """Without gradients a group runs in chunks (here one row of tiles each) written into the output."""
    pattern, grid = case
    padding = None
    if padded:
        padding = torch.zeros(3, *grid, dtype=torch.bool)
        padding[0, -2:] = True
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(3, *grid, HEADS, HEAD_DIM, generator=g) for _ in range(3))
    radius = pattern.max_offset(grid)
    position = None
    if kind == "rel_bias":
        position = RelativeBias(torch.randn(HEADS, *(2 * r + 1 for r in radius), generator=g))
    elif kind == "rel_logits":
        position = RelativeLogits(tuple(torch.randn(2 * r + 1, HEAD_DIM, generator=g) for r in radius))
    pieces, real = [], blocked_grouped._pieces
    monkeypatch.setattr(blocked_grouped, "CHUNK_BYTES", 1)
    monkeypatch.setattr(blocked_grouped, "_pieces", lambda *a: pieces.append(list(real(*a))) or iter(pieces[-1]))
    with torch.no_grad():
        got = attention(q, k, v, pattern, position=position, backend="blocked", key_padding_mask=padding)
        want = attention(q, k, v, pattern, position=position, backend="reference", key_padding_mask=padding)
    assert pieces and all(len(p) >= 3 for p in pieces)  # really chunked: image by image, or rows of tiles
    torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_compiled_shifted_windows_equal_eager_forward_and_backward():
    """``torch.compile(fullgraph=True)`` through the group plan (split / merge autograd functions, shared bias)."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 14, 14, HEADS, HEAD_DIM, generator=g, requires_grad=True) for _ in range(3))
    table = torch.randn(HEADS, 13, 13, generator=g, requires_grad=True)

    def run(q, k, v, table):
        return attention(q, k, v, Window(7, 3), position=RelativeBias(table), backend="blocked")

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(run)(q, k, v, table)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    results = []
    for fn in (torch.compile(run, backend="aot_eager", fullgraph=True), run):
        out = fn(q, k, v, table)
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(4))).sum().backward()
        results.append([out.detach()] + [t.grad.clone() for t in (q, k, v, table)])
        for t in (q, k, v, table):
            t.grad = None
    _close(*results)


# -- the partition autograd functions -----------------------------------------------------------------------------
RUNS_EXACT = (((0, 1, 2, 2), (0, 2, 3, 3)), ((2, 2, 3, 3), (0, 2, 3, 3)), ((0, 8, 1, 1), (6, 1, 1, 1)))  # 8 x 7
RUNS_OVERLAP = (((0, 3, 4, 2), (1, 2, 4, 2)), ((5, 1, 3, 3), (0, 3, 2, 2)))  # halo-like boxes: overlaps and gaps


def test_split_then_merge_is_the_identity_and_splits_are_views_plus_one_copy():
    x = torch.randn(2, 8, 7, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    parts = partition.split(x, RUNS_EXACT, True)
    assert [p.shape for p in parts] == [(4, 3, 6, 4), (8, 3, 9, 4), (16, 3, 1, 4)]
    assert torch.equal(parts[1][1, 2], x[0, 2:5, 3:6, 2].reshape(9, 4))  # image 0, second box of the run
    assert torch.equal(partition.merge(parts, RUNS_EXACT, tuple(x.shape)), x)


@pytest.mark.parametrize("runs, exact", [(RUNS_EXACT, True), (RUNS_OVERLAP, False)], ids=["exact", "overlapping"])
def test_split_and_merge_gradients(runs, exact):
    """gradcheck (float64): split's backward adds overlapping boxes (copies exact ones), merge's is split."""
    x = torch.randn(2, 8, 7, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6),
                    requires_grad=True)
    torch.autograd.gradcheck(lambda t: partition.split(t, runs, exact), (x,))
    if exact:
        parts = [p.detach().requires_grad_() for p in partition.split(x, runs, exact)]
        torch.autograd.gradcheck(lambda *p: partition.merge(p, runs, tuple(x.shape)), tuple(parts))
