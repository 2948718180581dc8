"""The CUDA-shaped fast paths, run on the CPU by moving their switches (issue 20, items 1, 3, 4, 5 and 8).

Each path is compared with the reference backend forward and backward on seeded random data: SDPA in chunks below
CUDA's grid limit, relative logits padded to the fused kernels' width, a learnable bias kept in SDPA (as on CUDA,
whose memory-efficient kernel differentiates its mask) with row-aligned masks, and flex's dispatch rule, block-mask
cache and per-plan compiled runner.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visionattn.ops import (
    BackendUnavailable,
    Global,
    Graph,
    Halo,
    Neighborhood,
    RelativeBias,
    RelativeLogits,
    Strided,
    Window,
    attention,
    choose_backend,
)
from visionattn.ops.backends import blocked, flex, sdpa, tile_attention
from visionattn.ops.call import make_call

HEADS = 2
TOL = dict(rtol=1e-4, atol=2e-5)


def _inputs(pattern, grid, head_dim=12, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, *pattern.query_grid(grid), HEADS, head_dim, generator=g)
    k, v = (torch.randn(batch, *grid, HEADS, head_dim, generator=g) for _ in range(2))
    return q, k, v


def _position(kind, pattern, grid, head_dim=12):
    g = torch.Generator().manual_seed(1)
    radius = pattern.max_offset(grid)
    if kind == "rel_bias":
        leaves = [torch.randn(HEADS, *(2 * r + 1 for r in radius), generator=g).requires_grad_()]
        return RelativeBias(leaves[0]), leaves
    if kind == "rel_logits":
        leaves = [torch.randn(2 * r + 1, head_dim, generator=g).requires_grad_() for r in radius]
        return RelativeLogits(tuple(leaves)), leaves
    return None, []


def _fwd_bwd(pattern, grid, kind, backend, padding=None, head_dim=12):
    """Output and the gradients of q, k, v and the position leaves."""
    inputs = [t.requires_grad_() for t in _inputs(pattern, grid, head_dim)]
    position, leaves = _position(kind, pattern, grid, head_dim)
    out = attention(*inputs, pattern, position=position, backend=backend, key_padding_mask=padding)
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out * cot).sum().backward()
    return [out] + [t.grad for t in inputs + leaves]


def _assert_equal(got, want):
    for name, a, b in zip(["out", "dq", "dk", "dv", "dpos0", "dpos1"], got, want, strict=False):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"{n}: {m}")


def _padding(grid, batch=3):
    padding = torch.zeros(batch, *grid, dtype=torch.bool)
    padding[0, -2:] = True
    padding[1, ..., -1] = True
    return padding


# -- item 8: SDPA batch = B × tiles, chunked below the grid limit ----------------------------------------------------
@pytest.mark.parametrize("kind", ["none", "rel_bias", "rel_logits"])
@pytest.mark.parametrize("padded", [False, True], ids=["", "padded"])
@pytest.mark.parametrize("case", [(Window(3, 1), (7, 8)), (Neighborhood(3), (17, 13)), (Halo(2, 1), (6, 5))],
                         ids=lambda c: f"{c[0]}".replace(" ", ""))
def test_sdpa_in_chunks_equals_one_call_and_the_reference(monkeypatch, case, kind, padded):
    """With the limit set to 5 (tiles × images ≫ 5) SDPA runs in several chunks; forward and backward equal the
    unchunked run and the reference."""
    pattern, grid = case
    padding = _padding(grid) if padded else None
    want = _fwd_bwd(pattern, grid, kind, "reference", padding)
    whole = _fwd_bwd(pattern, grid, kind, "blocked", padding)
    calls = []
    real = F.scaled_dot_product_attention

    def counting(q, *args, **kwargs):
        calls.append(q.shape[0])
        return real(q, *args, **kwargs)

    monkeypatch.setattr(sdpa, "SDPA_MAX_BATCH", 5)
    monkeypatch.setattr(sdpa, "FUSED_BIAS_GRAD_DEVICES", ("cpu",))  # a learnable bias stays in SDPA too
    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    chunked = _fwd_bwd(pattern, grid, kind, "blocked", padding)
    assert len(calls) > 1 and max(calls) <= 5
    _assert_equal(chunked, whole)
    _assert_equal(chunked, want)


# -- item 3: relative logits folded into the dot product, width padded to the kernels' multiple ----------------------
@pytest.mark.parametrize("head_dim", [12, 16, 20])
@pytest.mark.parametrize("case", [(Neighborhood(7), (9, 11)), (Halo(4, 2), (9, 7)), (Neighborhood(5), (13,)),
                                  (Halo(2, 1), (5, 4, 3))], ids=lambda c: f"{c[0]}-{c[1]}".replace(" ", ""))
def test_relative_logits_width_is_padded_and_equals_the_reference(monkeypatch, case, head_dim):
    """SASA / HaloNet widths (head_dim + Σ K_a, e.g. 12 + 22) reach SDPA padded to a multiple of 8 for q and k where
    the fused kernels need it (CUDA; here the CPU stands in); forward and backward (q, k, v and the tables) equal the
    reference and the unpadded fold (what the CPU runs: its kernel takes any width)."""
    pattern, grid = case
    widths = []
    real = sdpa.sdpa
    monkeypatch.setattr(tile_attention, "sdpa",
                        lambda q, k, v, *a: widths.append((q.shape[-1], k.shape[-1], v.shape[-1])) or real(q, k, v, *a))
    plain = _fwd_bwd(pattern, grid, "rel_logits", "blocked", head_dim=head_dim)
    unpadded = [w for w, _, _ in widths]
    assert widths and all(w == wk == wv > head_dim for w, wk, wv in widths)  # CPU: no padding, v as wide as q
    widths.clear()
    monkeypatch.setattr(sdpa, "WIDTH_PAD_DEVICES", ("cpu",))
    padded = _fwd_bwd(pattern, grid, "rel_logits", "blocked", head_dim=head_dim)
    assert widths and all(w % sdpa.WIDTH_MULTIPLE == 0 and w == wk == wv for w, wk, wv in widths)  # CPU: v too
    assert [w for w, _, _ in widths] == [-(-w // 8) * 8 for w in unpadded]
    _assert_equal(padded, _fwd_bwd(pattern, grid, "rel_logits", "reference", head_dim=head_dim))
    _assert_equal(padded, plain)


# -- item 4: a learnable bias stays in SDPA where the kernel differentiates the mask; aligned mask rows --------------
@pytest.mark.parametrize("padded", [False, True], ids=["", "padded"])
@pytest.mark.parametrize("case", [(Window(3, 1), (7, 8)), (Window(4), (8, 8)), (Neighborhood(3), (7, 6)),
                                  (Global(), (5, 6))], ids=lambda c: f"{c[0]}".replace(" ", ""))
def test_learnable_bias_in_sdpa_with_aligned_masks_equals_the_reference(monkeypatch, case, padded):
    """The CUDA configuration on CPU: the bias goes to SDPA (never to biased_attention) and the per-image mask copy
    is made into a 16-aligned buffer; forward and backward, bias-table gradient included, equal the reference."""
    pattern, grid = case
    padding = _padding(grid) if padded else None
    want = _fwd_bwd(pattern, grid, "rel_bias", "reference", padding)
    monkeypatch.setattr(sdpa, "FUSED_BIAS_GRAD_DEVICES", ("cpu",))
    monkeypatch.setattr(sdpa, "ALIGN_DEVICES", ("cpu",))

    def forbidden(*args, **kwargs):
        raise AssertionError("biased_attention used where SDPA differentiates the mask")

    monkeypatch.setattr(tile_attention, "biased_attention", forbidden)
    strides = []
    real = sdpa.sdpa
    monkeypatch.setattr(tile_attention, "sdpa", lambda q, k, v, mask, scale: strides.append(
        (mask.stride(-2), mask.shape[-2])) or real(q, k, v, mask, scale))
    _assert_equal(_fwd_bwd(pattern, grid, "rel_bias", "blocked", padding), want)
    assert strides and all(s % sdpa.MASK_ALIGN == 0 or rows == 1 for s, rows in strides)  # 1 row: no row stride


def test_batch_mask_aligns_rows_and_keeps_values():
    mask = torch.randn(1, 4, 1, 5, 7)  # (1, m, 1, Tq, Tk): shared by the batch
    plain = sdpa.batch_mask(mask, 3)
    assert plain.shape == (12, 1, 5, 7) and torch.equal(plain[4:8], mask[0])
    sdpa_aligned = sdpa.ALIGN_DEVICES
    try:
        sdpa.ALIGN_DEVICES = ("cpu",)
        aligned = sdpa.batch_mask(mask, 3)
    finally:
        sdpa.ALIGN_DEVICES = sdpa_aligned
    assert aligned.stride(-2) % sdpa.MASK_ALIGN == 0 and torch.equal(aligned, plain)


# -- item 1: flex on CUDA refuses head widths below 16 so that auto falls back ----------------------------------------
def _cuda_like(monkeypatch):
    """Make the CPU behave like CUDA for dispatch: flex compiled, CUDA's auto order."""
    from visionattn.ops import backends

    monkeypatch.setattr(flex, "COMPILED_DEVICES", ("cpu",))
    monkeypatch.setitem(backends.AUTO_ORDER, "cpu", backends.AUTO_ORDER["cuda"])


@pytest.mark.parametrize("pattern", [Strided(3, 4), Graph(torch.tensor([[0, 3], [5, 1]]))], ids=repr)
def test_flex_refuses_narrow_heads_when_compiled_and_auto_falls_back(monkeypatch, pattern):
    _cuda_like(monkeypatch)
    with torch.no_grad():
        narrow = make_call(*_inputs(pattern, (12,), head_dim=12), pattern, None, "softmax", None, None)
        wide = make_call(*_inputs(pattern, (12,), head_dim=16), pattern, None, "softmax", None, None)
        reason = flex.FLEX.refuse(narrow)
        assert "≥ 16" in reason and "head_dim 12" in reason
        assert choose_backend(narrow).name == "reference"
        assert choose_backend(wide).name == "flex"
        with pytest.raises(BackendUnavailable, match=r"flex: compiled FlexAttention on cpu needs head widths ≥ 16"):
            choose_backend(narrow, "flex")
    v_narrow = make_call(*_inputs(pattern, (12,), head_dim=16)[:2], _inputs(pattern, (12,), head_dim=8)[2],
                         pattern, None, "softmax", None, None)
    assert "v_dim 8" in flex.FLEX.refuse(v_narrow)


def test_flex_on_the_cpu_keeps_narrow_heads():
    call = make_call(*_inputs(Strided(3, 4), (12,)), Strided(3, 4), None, "softmax", None, None)
    with torch.no_grad():
        assert flex.FLEX.refuse(call) is None


# -- item 5: flex block masks cached per plan, one compiled runner per plan -----------------------------------------
def test_flex_builds_each_block_mask_once(monkeypatch):
    """Repeated calls (± key padding, any batch) build no block mask after the first per plan; with padding they
    reuse the plan's blocks and still equal the reference."""
    flex.flex_plan.cache_clear()
    real, built = flex.create_block_mask, []
    monkeypatch.setattr(flex, "create_block_mask", lambda *a, **k: built.append(a[3:5]) or real(*a, **k))
    pattern, grid = Window(3, 1), (7, 8)
    padding = _padding(grid)
    position, _ = _position("rel_bias", pattern, grid)
    with torch.no_grad():
        for batch in (3, 3, 3):
            q, k, v = _inputs(pattern, grid, batch=batch)
            for pad in (None, padding):
                got = attention(q, k, v, pattern, position=position, backend="flex", key_padding_mask=pad)
                want = attention(q, k, v, pattern, position=position, backend="reference", key_padding_mask=pad)
                torch.testing.assert_close(got, want, **TOL)
        assert built == [(56, 56)]
        q, k, v = _inputs(Neighborhood(3), (6, 6))
        attention(q, k, v, Neighborhood(3), backend="flex")
        attention(q, k, v, Neighborhood(3), backend="flex")
    assert built == [(56, 56), (36, 36)]


def test_flex_compiles_once_per_plan(monkeypatch):
    """Where flex is compiled, each plan gets its own compiled function (its own code object, so its own Dynamo
    cache and recompile budget), made once; the compiled function is what runs."""
    flex.flex_plan.cache_clear()
    monkeypatch.setattr(flex, "COMPILED_DEVICES", ("cpu",))
    compiled, ran = [], []
    real = torch.compile

    def fake_compile(fn, **kwargs):
        if not fn.__code__.co_name.startswith("_flex_run"):  # eager FlexAttention compiles its own HOP wrapper
            return real(fn, **kwargs)
        compiled.append(fn)
        return lambda *args: ran.append(fn.__code__.co_name) or fn(*args)

    monkeypatch.setattr(torch, "compile", fake_compile)
    with torch.no_grad():
        for pattern, grid in ((Window(3), (6, 6)), (Window(3), (6, 6)), (Strided(3, 4), (12,)), (Window(3), (6, 6))):
            q, k, v = _inputs(pattern, grid, head_dim=16)
            got = attention(q, k, v, pattern, backend="flex")
            torch.testing.assert_close(got, attention(q, k, v, pattern, backend="reference"), **TOL)
    assert len(compiled) == 2 and compiled[0].__code__ is not compiled[1].__code__
    assert len(ran) == 4 and len(set(ran)) == 2
    flex.flex_plan.cache_clear()


@pytest.mark.parametrize("groups", [True, False], ids=["group-plan", "general-plan"])
def test_blocked_plan_is_built_once_per_key(monkeypatch, groups):
    from visionattn.ops.backends import blocked_groups

    monkeypatch.setattr(blocked, "GROUPS", groups)
    built = blocked_groups.group_plan if groups else blocked._plan
    built.cache_clear()
    q, k, v = _inputs(Window(3, 1), (7, 8))
    for _ in range(3):
        attention(q, k, v, Window(3, 1), backend="blocked")
    info = built.cache_info()
    assert info.misses == 1 and info.hits >= 2
    assert blocked._plan(Window(3, 1), (7, 8), (7, 8), 8, "cpu").n == (3, 4)  # shifted: 3 × 4 windows
    segments = blocked_groups.group_plan(Window(3, 1), (7, 8), (7, 8), 8, "cpu").segments
    assert [[(s.count, s.q_size) for s in axis] for axis in segments] == [[(1, 1), (2, 3)], [(1, 1), (2, 3), (1, 1)]]
