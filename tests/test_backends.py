"""Every fast backend equals the reference backend, forward and backward, on seeded awkward shapes.

Cases: every pattern on 1D/2D/3D grids whose sizes do not divide the tile/window/block (so padding and
borders are exercised) × every position kind × every backend that accepts the call × fp32 and bf16.
"""

from __future__ import annotations

import math

import pytest
import torch

from visionattn.ops import (
    Axial,
    BackendUnavailable,
    Global,
    Graph,
    Halo,
    Neighborhood,
    RelativeBias,
    RelativeLogits,
    Rope,
    Strided,
    Window,
    attention,
    choose_backend,
    neighborhood_tile,
    rope_frequencies,
)
from visionattn.ops.call import make_call

HEADS, HEAD_DIM = 2, 12  # 12 is divisible by 2·dims for RoPE on 1D, 2D and 3D grids


def _random_graph(n: int, seed: int = 0) -> Graph:
    g = torch.Generator().manual_seed(seed)
    edges = torch.randint(0, n, (3 * n, 2), generator=g)
    return Graph(edges)


CASES = [
    (Global(), (11,)),
    (Neighborhood(5), (13,)),
    (Neighborhood(3, dilation=2, border="pad"), (11,)),
    (Neighborhood(3, dilation=3), (13,)),
    (Halo(4, 2), (11,)),
    (Halo(4, 1, stride=2), (11,)),
    (Window(4, shift=2), (11,)),
    (Strided(3, 4), (10,)),
    (_random_graph(9), (9,)),
    (Global(), (5, 7)),
    (Neighborhood(3), (7, 6)),
    (Neighborhood(5), (9, 11)),
    (Neighborhood((3, 5), dilation=(2, 1), border="pad"), (9, 8)),
    (Neighborhood(3, dilation=2), (8, 7)),
    (Halo(4, 1), (9, 7)),
    (Halo(4, 2, stride=2), (9, 10)),
    (Window(3), (7, 8)),
    (Window(3, shift=1), (7, 8)),
    (Window((2, 4), shift=(1, 3)), (5, 9)),
    (Axial(0), (5, 6)),
    (Axial(1), (5, 6)),
    (Strided(5, 5), (5, 5)),
    (Global(), (3, 4, 5)),
    (Neighborhood(3), (3, 5, 4)),
    (Neighborhood(3, border="pad"), (4, 3, 5)),
    (Window(2, shift=1), (3, 5, 4)),
    (Halo(2, 1), (5, 4, 3)),
    (Axial(2), (3, 4, 5)),
]
POSITIONS = ["none", "rel_bias", "rel_logits", "rope"]
TOL = {torch.float32: dict(rtol=1e-4, atol=2e-5), torch.bfloat16: dict(rtol=4e-2, atol=4e-2)}


def _case_id(case):
    pattern, grid = case
    return f"{pattern}-{'x'.join(map(str, grid))}".replace(" ", "")


def _inputs(pattern, grid, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q_grid = pattern.query_grid(grid)
    q = torch.randn(2, *q_grid, HEADS, HEAD_DIM, generator=g)
    k = torch.randn(2, *grid, HEADS, HEAD_DIM, generator=g)
    v = torch.randn(2, *grid, HEADS, HEAD_DIM, generator=g)
    return [t.to(dtype) for t in (q, k, v)]


def _position(kind, pattern, grid, seed=1):
    """Fresh leaf tensors for the position descriptor (so each run has its own .grad)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "none":
        return None, []
    if kind == "rope":
        freqs = rope_frequencies(HEAD_DIM, len(grid)) * (1 + torch.rand(len(grid), 1, generator=g))
        leaf = freqs.requires_grad_()
        return Rope(leaf), [leaf]
    radius = pattern.max_offset(grid)
    if kind == "rel_bias":
        leaf = torch.randn(HEADS, *[2 * r + 1 for r in radius], generator=g).requires_grad_()
        return RelativeBias(leaf), [leaf]
    leaves = [torch.randn(2 * r + 1, HEAD_DIM, generator=g).requires_grad_() for r in radius]
    return RelativeLogits(tuple(leaves)), leaves


def _run(pattern, grid, kind, backend, dtype, grad, key_padding_mask=None, form="softmax"):
    """Output and gradients (inputs, then position leaves) of one backend on the seeded case."""
    inputs = [t.clone().requires_grad_(grad) for t in _inputs(pattern, grid, dtype)]
    position, leaves = _position(kind, pattern, grid)
    with torch.set_grad_enabled(grad):
        out = attention(*inputs, pattern, position=position, backend=backend, form=form,
                        key_padding_mask=key_padding_mask)
    if not grad:
        return [out.float()]
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out.float() * cotangent).sum().backward()
    return [out.float()] + [t.grad.float() for t in inputs + leaves]


def _accepts(backend, pattern, grid, kind, dtype, grad, form="softmax"):
    q, k, v = (t.requires_grad_(grad) for t in _inputs(pattern, grid, dtype))
    position, _ = _position(kind, pattern, grid)
    with torch.set_grad_enabled(grad):
        call = make_call(q, k, v, pattern, position, form, None, None)
        try:
            choose_backend(call, backend)
            return True
        except BackendUnavailable:
            return False


def _compare(got, want, dtype):
    """Per-tensor scaled comparison. In bf16 the scale is the largest reference value of the whole call:
    a gradient that cancels to ~0 (e.g. a radius-0 relative table) carries bf16 rounding of its terms."""
    assert len(got) == len(want)
    names = ["out", "dq", "dk", "dv", "dpos0", "dpos1", "dpos2"]
    largest = max(float(b.detach().abs().max()) for b in want)
    for name, a, b in zip(names, got, want, strict=False):
        scale = max(float(b.detach().abs().max()), 1.0) if dtype == torch.float32 else max(largest, 1.0)
        torch.testing.assert_close(a / scale, b / scale, **TOL[dtype], msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("kind", POSITIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_blocked_matches_reference(case, kind, dtype):
    pattern, grid = case
    if not pattern.separable:
        assert not _accepts("blocked", pattern, grid, kind, dtype, True)
        pytest.skip("blocked refuses non-separable patterns (checked above)")
    want = _run(pattern, grid, kind, "reference", dtype, grad=True)
    got = _run(pattern, grid, kind, "blocked", dtype, grad=True)
    _compare(got, want, dtype)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("kind", POSITIONS)
def test_flex_matches_reference_forward(case, kind):
    """FlexAttention has no CPU backward: forward under no_grad here. Backward on CUDA (head_dim 16; 12 is refused
    there, see tests/test_ops_fast_paths.py) is step 2 of benchmarks/gpu_check.py."""
    pattern, grid = case
    want = _run(pattern, grid, kind, "reference", torch.float32, grad=False)
    got = _run(pattern, grid, kind, "flex", torch.float32, grad=False)
    _compare(got, want, torch.float32)


@pytest.mark.parametrize("grid", [(13,), (5, 7), (3, 4, 5)])
@pytest.mark.parametrize("kind", ["none", "rope"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_linear_form_matches_reference(grid, kind, dtype):
    want = _run(Global(), grid, kind, "reference", dtype, grad=True, form="linear")
    got = _run(Global(), grid, kind, "linear", dtype, grad=True, form="linear")
    _compare(got, want, dtype)


@pytest.mark.parametrize("backend", ["reference", "blocked", "linear"])
@pytest.mark.parametrize("case", [(Global(), (6, 7)), (Neighborhood(3), (6, 7)), (Window(3, 1), (6, 7))], ids=_case_id)
def test_nan_in_padded_positions_never_leaks(backend, case):
    """Padded entities filled with NaN give bit-identical outputs and input gradients at valid positions."""
    pattern, grid = case
    form = "linear" if backend == "linear" else "softmax"
    if backend == "linear" and not isinstance(pattern, Global):
        pytest.skip("linear backend runs the Global pattern only")
    g = torch.Generator().manual_seed(3)
    padding = torch.zeros(2, *grid, dtype=torch.bool)
    padding[0, 4:, :] = True  # image 0 is 4 rows high, padded to 6
    padding[1, :, 5:] = True  # image 1 is 5 columns wide
    valid = ~padding
    results = []
    for fill in (float("nan"), 123.0):
        q, k, v = (torch.randn(2, *grid, HEADS, HEAD_DIM, generator=torch.Generator().manual_seed(s)) for s in range(3))
        q, k, v = (torch.where(padding[..., None, None], fill, t).requires_grad_() for t in (q, k, v))
        out = attention(q, k, v, pattern, backend=backend, form=form, key_padding_mask=padding,
                        query_padding_mask=padding)  # self-attention with separate q, k tensors: say so
        cot = torch.randn(out.shape, generator=g.manual_seed(5))
        (out * cot * valid[..., None, None]).sum().backward()
        results.append([out[valid], q.grad[valid], k.grad[valid], v.grad[valid]])
    for a, b in zip(*results, strict=True):
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)


def test_padding_mask_equals_cropped_image_for_global():
    """A padded image with a key padding mask attends exactly like the image alone at its own size."""
    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(1, 6, 7, HEADS, HEAD_DIM, generator=g) for _ in range(3))
    padding = torch.zeros(1, 6, 7, dtype=torch.bool)
    padding[:, 4:] = True
    padding[:, :, 5:] = True
    full = attention(q, k, v, Global(), backend="blocked", key_padding_mask=padding)
    alone = attention(q[:, :4, :5], k[:, :4, :5], v[:, :4, :5], Global(), backend="reference")
    torch.testing.assert_close(full[:, :4, :5], alone)


@pytest.mark.parametrize("backend", ["reference", "blocked", "flex"])
def test_query_without_keys_outputs_zeros(backend):
    """Cross-attention where every key of one image is padding: that image's outputs are zeros, not NaN."""
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 4, HEADS, HEAD_DIM, generator=g)
    k, v = (torch.randn(2, 6, HEADS, HEAD_DIM, generator=g) for _ in range(2))
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[1] = True
    with torch.no_grad():
        out = attention(q, k, v, Global(), backend=backend, key_padding_mask=padding)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert out[0].abs().sum() > 0


def test_auto_picks_the_fast_backend_on_cpu():
    q, k, v = _inputs(Window(3), (6, 6), torch.float32)
    assert choose_backend(make_call(q, k, v, Window(3), None, "softmax", None, None)).name == "blocked"
    assert choose_backend(make_call(q, k, v, Global(), None, "linear", None, None)).name == "linear"
    assert choose_backend(make_call(q, k, v, Strided(3, 6), None, "softmax", None, None)).name == "reference"


def test_blocked_never_builds_the_dense_mask(monkeypatch):
    """The blocked path must not call Pattern.mask (the N×N spec) for local patterns."""
    def forbidden(*args, **kwargs):
        raise AssertionError("blocked backend built the dense mask")

    monkeypatch.setattr(Neighborhood, "mask", forbidden)
    q, k, v = _inputs(Neighborhood(7), (40, 40), torch.float32)
    out = attention(q, k, v, Neighborhood(7), backend="blocked")
    assert out.shape == q.shape


NEIGHBORHOOD_CASES = [case for case in CASES if isinstance(case[0], Neighborhood)]


@pytest.mark.parametrize("case", NEIGHBORHOOD_CASES, ids=_case_id)
@pytest.mark.parametrize("tile", [1, 2, 3, 5])
@pytest.mark.parametrize("kind", ["none", "rel_logits"])
def test_blocked_neighborhood_any_tile_size(case, tile, kind):
    """Small tiles put many tile borders inside the grid: each tile's key box must cover its queries."""
    pattern, grid = case
    want = _run(pattern, grid, kind, "reference", torch.float32, grad=True)
    with neighborhood_tile(tile):
        got = _run(pattern, grid, kind, "blocked", torch.float32, grad=True)
    _compare(got, want, torch.float32)


def test_global_plan_holds_no_quadratic_mask():
    """Global on a 128×128 grid: one tile of 16384 queries × 16384 keys, but no N×N boolean is ever built."""
    from visionattn.ops.backends.blocked import _plan

    plan = _plan(Global(), (128, 128), (128, 128), 8, "cpu")
    assert plan.all_allowed and plan.allowed.numel() == 1
    padding = torch.zeros(1, 128, 128, dtype=torch.bool)
    padding[:, 100:] = True
    q = torch.randn(1, 128, 128, 1, 8, generator=torch.Generator().manual_seed(0))
    out = attention(q, q, q, Global(), backend="blocked", key_padding_mask=padding)
    want = attention(q[:, :100], q[:, :100], q[:, :100], Global(), backend="blocked")
    torch.testing.assert_close(out[:, :100], want)


# ---------------------------------------------------------------------------------------------------
# blocked: no-grad chunks of tiles, v_dim != head_dim (matmul-softmax-matmul instead of SDPA's math path)
V_DIM = 5  # narrower than HEAD_DIM: the blocked backend's own matmul path, forward and backward
SEPARABLE = [case for case in CASES if case[0].separable]


def _inputs_v(pattern, grid, v_dim, dtype=torch.float32, batch=3, seed=4):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, *pattern.query_grid(grid), HEADS, HEAD_DIM, generator=g)
    k = torch.randn(batch, *grid, HEADS, HEAD_DIM, generator=g)
    v = torch.randn(batch, *grid, HEADS, v_dim, generator=g)
    return [t.to(dtype) for t in (q, k, v)]


def _force_chunk_tiles(monkeypatch, tiles):
    """Make the no-grad path run chunks of ``tiles(n_tiles_per_image)`` tiles; returns, per blocked call, the
    number of tiles (batch included), the chunk size asked for and the chunks it ran."""
    from visionattn.ops.backends import blocked

    monkeypatch.setattr(blocked, "GROUPS", False)  # the general plan's chunks (groups: tests/test_ops_groups.py)
    real, seen = blocked._chunks, []

    def chunks(levels, per_tile, budget):
        size = tiles(math.prod(levels[1:]))
        out = list(real(levels, per_tile, per_tile * size))
        seen.append((math.prod(levels), size, out))
        return iter(out)

    monkeypatch.setattr(blocked, "_chunks", chunks)
    return seen


CHUNK_SIZES = {"1tile": lambda n: 1, "3tiles": lambda n: 3, "1image": lambda n: n + 1, "2images": lambda n: 2 * n}


@pytest.mark.parametrize("case", SEPARABLE, ids=_case_id)
@pytest.mark.parametrize("chunk", list(CHUNK_SIZES))
@pytest.mark.parametrize("kind", ["none", "rel_bias", "rope"])
@pytest.mark.parametrize("v_dim", [HEAD_DIM, V_DIM])
def test_blocked_no_grad_chunks_match_reference(monkeypatch, case, chunk, kind, v_dim):
    """No gradient: the tiles run in chunks (one tile, three tiles, whole images, two images of three) that cut
    through tile rows, grid axes and the batch; every chunking equals the reference."""
    pattern, grid = case
    q, k, v = _inputs_v(pattern, grid, v_dim)
    position, _ = _position(kind, pattern, grid)
    with torch.no_grad():
        want = attention(q, k, v, pattern, position=position, backend="reference")
        seen = _force_chunk_tiles(monkeypatch, CHUNK_SIZES[chunk])
        got = attention(q, k, v, pattern, position=position, backend="blocked")
    (n_tiles, size, chunks), = seen
    assert sum(count for _, _, count in chunks) == n_tiles and all(count <= size for _, _, count in chunks)
    assert len(chunks) > 1 or n_tiles <= size  # really chunked
    _compare([got], [want], torch.float32)


@pytest.mark.parametrize(("levels", "per"), [((3,), 1), ((2, 5), 3), ((2, 3, 4), 5), ((2, 3, 4), 12),
                                             ((2, 3, 4), 13), ((3, 2, 2, 2), 7), ((1, 7), 100)])
def test_chunks_cover_every_tile_once_in_order(levels, per):
    """Each chunk is a box of the leading axes whose tiles are the flat run (first, first + count)."""
    from visionattn.ops.backends.blocked import _chunks

    flat = torch.arange(math.prod(levels)).reshape(levels)
    expected_start = 0
    for index, first, count in _chunks(levels, 10, 10 * per):
        assert first == expected_start and 1 <= count <= max(per, 1)
        assert torch.equal(flat[index].reshape(-1), torch.arange(first, first + count))
        expected_start += count
    assert expected_start == flat.numel()


@pytest.mark.parametrize("case", SEPARABLE, ids=_case_id)
@pytest.mark.parametrize("kind", POSITIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_blocked_narrow_values_match_reference(case, kind, dtype):
    """v_dim < head_dim with gradients: forward and the gradients of q, k, v and the position leaves."""
    pattern, grid = case
    results = []
    for backend in ("reference", "blocked"):
        inputs = [t.requires_grad_() for t in _inputs_v(pattern, grid, V_DIM, dtype, batch=2)]
        position, leaves = _position(kind, pattern, grid)
        out = attention(*inputs, pattern, position=position, backend=backend)
        cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
        (out.float() * cotangent).sum().backward()
        results.append([out.float()] + [t.grad.float() for t in inputs + leaves])
    _compare(results[1], results[0], dtype)


@pytest.mark.parametrize("grad", [True, False], ids=["fwd+bwd", "no-grad-chunks"])
@pytest.mark.parametrize("case", [(Global(), (6, 7)), (Neighborhood(3), (6, 7)), (Window(3, 1), (6, 7)),
                                  (Neighborhood(5, border="pad"), (6, 7))], ids=_case_id)
def test_blocked_narrow_values_nan_padding_never_leaks(monkeypatch, case, grad):
    """v_dim < head_dim with key padding filled with NaN (or 123): bit-identical valid outputs (and input
    gradients), finite, equal to the reference; without gradient in chunks of one tile."""
    pattern, grid = case
    padding = torch.zeros(2, *grid, dtype=torch.bool)
    padding[0, 4:, :] = True
    padding[1, :, 5:] = True
    valid = ~padding
    if not grad:
        seen = _force_chunk_tiles(monkeypatch, lambda n: 1)
    results = []
    for backend, fill in (("blocked", float("nan")), ("blocked", 123.0), ("reference", 0.0)):
        g = torch.Generator().manual_seed(8)
        q, k = (torch.randn(2, *grid, HEADS, HEAD_DIM, generator=g) for _ in range(2))
        v = torch.randn(2, *grid, HEADS, V_DIM, generator=g)
        q, k, v = (torch.where(padding[..., None, None], fill, t).requires_grad_(grad) for t in (q, k, v))
        with torch.set_grad_enabled(grad):
            out = attention(q, k, v, pattern, backend=backend, key_padding_mask=padding, query_padding_mask=padding)
        if grad:
            cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
            (out * cot * valid[..., None, None]).sum().backward()
            results.append([out[valid], q.grad[valid], k.grad[valid], v.grad[valid]])
        else:
            results.append([out[valid]])
    if not grad:
        assert len(seen) == 2 and all(len(chunks) > 1 for _, _, chunks in seen)
    for a, b, ref in zip(*results, strict=True):
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)
        torch.testing.assert_close(a, ref, **TOL[torch.float32])


@pytest.mark.parametrize("v_dim", [HEAD_DIM, V_DIM])
def test_blocked_chunks_query_without_keys_outputs_zeros(monkeypatch, v_dim):
    """No gradient, chunks of one tile: an image whose keys are all padding outputs zeros, the other attends.
    The backends run the call directly, so the padded values are not zeroed first (as attention() does)."""
    from visionattn.ops.backends import BACKENDS

    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 9, HEADS, HEAD_DIM, generator=g)
    k = torch.randn(2, 9, HEADS, HEAD_DIM, generator=g)
    v = torch.randn(2, 9, HEADS, v_dim, generator=g) + 3.0
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[1] = True
    padding[0, 2] = True
    call = make_call(q, k, v, Neighborhood(3, border="pad"), None, "softmax", None, padding)
    seen = _force_chunk_tiles(monkeypatch, lambda n: 1)
    with torch.no_grad(), neighborhood_tile(2):
        out = BACKENDS["blocked"].run(call)
        want = BACKENDS["reference"].run(call)
    assert len(seen[0][2]) == 10  # 5 tiles of 2 queries per image
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    torch.testing.assert_close(out, want, **TOL[torch.float32])


def test_blocked_large_no_grad_call_runs_in_chunks(monkeypatch):
    """A non-local-means-sized call (Neighborhood 21 with padding, wide q/k, v of 3 channels): the real budget
    splits it into several chunks, and the result equals the reference."""
    from visionattn.ops.backends import blocked

    monkeypatch.setattr(blocked, "GROUPS", False)  # the general plan (groups: tests/test_ops_groups.py)
    real, seen = blocked._chunks, []
    monkeypatch.setattr(blocked, "_chunks", lambda *a: seen.append(list(real(*a))) or iter(seen[-1]))
    g = torch.Generator().manual_seed(9)
    q, k = (torch.randn(1, 40, 44, 1, 148, generator=g) * 0.1 for _ in range(2))
    v = torch.rand(1, 40, 44, 1, 3, generator=g)
    pattern = Neighborhood(21, border="pad")
    with torch.no_grad():
        got = attention(q, k, v, pattern, scale=1.0, backend="blocked")
        want = attention(q, k, v, pattern, scale=1.0, backend="reference")
    assert len(seen) == 1 and len(seen[0]) > 1
    torch.testing.assert_close(got, want, **TOL[torch.float32])
