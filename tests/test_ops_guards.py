"""Operator guards that each kill a mutation the rest of the suite let through (issue 19; docs/testing.md lists the
mutant each test was seen to fail on).

* the linear form's feature map φ = elu + 1 pinned to hand-computed numbers, and one linear-attention output
  written out by hand (every other linear test derives its expectation from the same ``feature_map``);
* a Graph query row without edges outputs exactly zeros on every backend that runs Graph (key padding cannot
  show it: ``attention()`` zeroes padded values first, so a backend that forgets to zero keyless rows still
  averages zeros there);
* key padding together with a learnable relative bias / relative logits, forward and backward, blocked vs reference;
* Neighborhood's shift-border rule against NATTEN's own window-start formula, and blocked vs reference on grids
  several tiles wide;
* Swin's shifted windows against timm's attention mask and timm's model for odd (and even) window sizes.
"""

from __future__ import annotations

import math

import pytest
import torch

from visionattn.ops import (
    BACKENDS,
    Axial,
    BackendUnavailable,
    Global,
    Graph,
    Halo,
    Neighborhood,
    RelativeBias,
    RelativeLogits,
    Rope,
    Window,
    attention,
    attention_probs,
    neighborhood_tile,
    prepare_call,
    rope_frequencies,
)
from visionattn.ops.backends.base import feature_map
from visionattn.ops.call import make_call

HEADS, HEAD_DIM = 2, 8
TOL = {torch.float32: dict(rtol=1e-4, atol=2e-5), torch.bfloat16: dict(rtol=4e-2, atol=4e-2)}  # as test_backends


# -- the linear form, by hand ------------------------------------------------------------------------------------
def test_feature_map_is_elu_plus_one_by_hand():
    x = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 2.0, 10.0])
    # elu(x) + 1 is exp(x) for x <= 0 and x + 1 above
    want = torch.tensor([math.exp(-3.0), math.exp(-1.0), math.exp(-0.5), 1.0, 1.5, 3.0, 11.0])
    torch.testing.assert_close(feature_map(x), want, rtol=1e-6, atol=0)


# q, k, v of one image, one head, head_dim 2, on a 1D grid: 2 queries, 3 keys (Global cross-attention)
_Q = [[1.0, 0.0], [-1.0, 0.5]]
_K = [[0.0, 1.0], [2.0, math.log(0.5)], [-2.0, 0.0]]
_V = [[1.0, -1.0], [4.0, 2.0], [-3.0, 5.0]]


def _linear_by_hand(keys: list[int]) -> list[list[float]]:
    """out_i = Σ_j (φ(q_i)·φ(k_j)) v_j / Σ_j φ(q_i)·φ(k_j), with φ written out for these numbers:
    φ(q0) = (2, 1), φ(q1) = (e⁻¹, 1.5); φ(k0) = (1, 2), φ(k1) = (3, 0.5), φ(k2) = (e⁻², 1)."""
    e1, e2 = math.exp(-1.0), math.exp(-2.0)
    w = [
        [2 * 1 + 1 * 2, 2 * 3 + 1 * 0.5, 2 * e2 + 1 * 1],  # q0 · k0, k1, k2 = 4, 6.5, 2e⁻² + 1
        [e1 * 1 + 1.5 * 2, e1 * 3 + 1.5 * 0.5, e1 * e2 + 1.5 * 1],  # q1
    ]
    out = []
    for row in w:
        total = sum(row[j] for j in keys)
        out.append([sum(row[j] * _V[j][c] for j in keys) / total for c in range(2)])
    return out


@pytest.mark.parametrize("backend", ["linear", "reference"])
def test_linear_attention_output_by_hand(backend):
    q = torch.tensor(_Q).reshape(1, 2, 1, 2)
    k = torch.tensor(_K).reshape(1, 3, 1, 2)
    v = torch.tensor(_V).reshape(1, 3, 1, 2)
    out = attention(q, k, v, Global(), form="linear", backend=backend, scale=1.0)
    torch.testing.assert_close(out.reshape(2, 2), torch.tensor(_linear_by_hand([0, 1, 2])), rtol=1e-6, atol=1e-6)
    # q0's first output, fully by hand: (4·1 + 6.5·4 + (2e⁻² + 1)·(−3)) / (4 + 6.5 + 2e⁻² + 1)
    first = (4 * 1 + 6.5 * 4 - 3 * (2 * math.exp(-2) + 1)) / (11.5 + 2 * math.exp(-2))
    assert abs(float(out[0, 0, 0, 0]) - first) < 1e-6
    padding = torch.tensor([[False, False, True]])  # key 2 dropped
    out = attention(q, k, v, Global(), form="linear", backend=backend, scale=1.0, key_padding_mask=padding)
    torch.testing.assert_close(out.reshape(2, 2), torch.tensor(_linear_by_hand([0, 1])), rtol=1e-6, atol=1e-6)
    assert abs(float(out[0, 0, 0, 0]) - 30 / 10.5) < 1e-6  # (4·1 + 6.5·4) / (4 + 6.5)
    # the default scale of the linear form is 1 (softmax's 1/√d has no meaning for φ(q)·φ(k)): same numbers
    torch.testing.assert_close(attention(q, k, v, Global(), form="linear", backend=backend, key_padding_mask=padding),
                               out, rtol=0, atol=0)


# -- a Graph row without edges ----------------------------------------------------------------------------------
def _graph_backends(call) -> list[str]:
    return [name for name, b in BACKENDS.items() if b.refuse(call) is None]


@pytest.mark.parametrize("form", ["softmax", "linear"])
def test_graph_query_without_edges_outputs_zeros_on_every_backend(form):
    """Query 2 of 6 has no edge (no self loops): its output row is exactly zero; every other row is the
    reference's, and nonzero. No key padding is involved, so the values of every key are nonzero."""
    g = torch.Generator().manual_seed(4)
    edges = torch.tensor([[0, 1], [0, 3], [1, 0], [1, 5], [3, 3], [3, 4], [4, 2], [5, 0], [5, 1], [5, 2]])
    pattern = Graph(edges, self_loops=False)
    q, k = (torch.randn(2, 6, HEADS, HEAD_DIM, generator=g) for _ in range(2))
    v = torch.randn(2, 6, HEADS, HEAD_DIM, generator=g) + 2.0  # no key has small values
    call = make_call(q, k, v, pattern, None, form, None, None)
    names = _graph_backends(call)
    assert "reference" in names and (form == "linear" or "flex" in names)
    with torch.no_grad():  # flex has no CPU backward
        want = BACKENDS["reference"].run(call)
        for name in names:
            out = BACKENDS[name].run(call)
            assert torch.equal(out[:, 2], torch.zeros_like(out[:, 2])), name
            keep = [0, 1, 3, 4, 5]
            assert bool((out[:, keep].abs().amax(dim=(-2, -1)) > 0.1).all()), name
            torch.testing.assert_close(out, want, **TOL[torch.float32], msg=lambda m, n=name: f"{n}: {m}")


# -- key padding with relative positions, with gradients ---------------------------------------------------------
PADDED_CASES = [
    (Neighborhood(3), (7, 6)),
    (Neighborhood(5, border="pad"), (9, 11)),
    (Window(3, shift=1), (7, 8)),
    (Halo(4, 1), (9, 7)),
    (Global(), (5, 7)),
    (Axial(1), (5, 6)),
    (Neighborhood(5), (13,)),
    (Window(2, shift=1), (3, 5, 4)),
]


def _padding(grid, seed) -> torch.Tensor:
    """Seeded random key padding (about a third of the positions) plus a cropped image: image 0 is padded at the
    bottom/end, image 1 at random positions; both have padding and both have valid keys."""
    g = torch.Generator().manual_seed(seed)
    pad = torch.rand(2, *grid, generator=g) < 0.35
    pad[0] = False
    pad[0, grid[0] - max(1, grid[0] // 3):] = True
    assert pad[0].any() and pad[1].any() and (~pad[0]).any() and (~pad[1]).any()
    return pad


def _position(kind, pattern, grid, dtype):
    g = torch.Generator().manual_seed(1)
    radius = pattern.max_offset(grid)
    if kind == "rel_bias":
        leaf = (torch.randn(HEADS, *[2 * r + 1 for r in radius], generator=g)).to(dtype).requires_grad_()
        return RelativeBias(leaf), [leaf]
    leaves = [torch.randn(2 * r + 1, HEAD_DIM, generator=g).to(dtype).requires_grad_() for r in radius]
    return RelativeLogits(tuple(leaves)), leaves


def _run_padded(pattern, grid, kind, backend, dtype, pad):
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, *grid, HEADS, HEAD_DIM, generator=g).to(dtype).requires_grad_() for _ in range(3)]
    position, leaves = _position(kind, pattern, grid, dtype)
    out = attention(*inputs, pattern, position=position, backend=backend, key_padding_mask=pad)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    (out.float() * cotangent).sum().backward()
    return [out.float()] + [t.grad.float() for t in inputs + leaves]


@pytest.mark.parametrize("case", PADDED_CASES, ids=lambda c: f"{c[0]}-{'x'.join(map(str, c[1]))}".replace(" ", ""))
@pytest.mark.parametrize("kind", ["rel_bias", "rel_logits"])
def test_key_padding_with_relative_positions_blocked_matches_reference(case, kind):
    pattern, grid = case
    pad = _padding(grid, seed=len(grid) * 10 + grid[-1])
    want = _run_padded(pattern, grid, kind, "reference", torch.float32, pad)
    got = _run_padded(pattern, grid, kind, "blocked", torch.float32, pad)
    names = ["out", "dq", "dk", "dv"] + [f"dpos{i}" for i in range(len(want) - 4)]
    # a radius-0 logit table (Axial's other axis) adds the same logit to a whole row: its gradient is 0 by design
    checked = [w for w in want if not (kind == "rel_logits" and w.ndim == 2 and w.shape[0] == 1)]
    assert all(float(w.detach().abs().max()) > 1e-3 for w in checked), "a compared tensor is ~0: it tests nothing"
    for name, a, b in zip(names, got, want, strict=True):
        scale = max(float(b.detach().abs().max()), 1.0)
        torch.testing.assert_close(a / scale, b / scale, **TOL[torch.float32], msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("kind", ["rel_bias", "rel_logits"])
def test_key_padding_with_relative_positions_bf16(kind):
    pattern, grid = Neighborhood(3), (7, 6)
    pad = _padding(grid, seed=3)
    want = _run_padded(pattern, grid, kind, "reference", torch.bfloat16, pad)
    got = _run_padded(pattern, grid, kind, "blocked", torch.bfloat16, pad)
    largest = max(max(float(w.detach().abs().max()) for w in want), 1.0)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a / largest, b / largest, **TOL[torch.bfloat16])


# -- Neighborhood's shift border: NATTEN's formula, and grids several tiles wide ---------------------------------
def natten_window_start(index: int, length: int, kernel: int, dilation: int) -> int:
    """NATTEN's ``get_window_start`` (natten/csrc, naive CPU kernels), transcribed: where the dilated window of
    ``index`` starts on an axis of ``length``."""
    nh = kernel // 2
    if dilation <= 1:
        return max(index - nh, 0) + (index + nh >= length) * (length - index - nh - 1)
    ni = index - nh * dilation
    if ni < 0:
        return index % dilation
    if index + nh * dilation >= length:
        imodd = index % dilation
        a = (length // dilation) * dilation
        b = length - a
        if imodd < b:
            return length - b + imodd - 2 * nh * dilation
        return a + imodd - kernel * dilation
    return ni


def natten_rows(length: int, kernel: int, dilation: int) -> list[set[int]]:
    out = []
    for i in range(length):
        start = natten_window_start(i, length, kernel, dilation)
        out.append({start + t * dilation for t in range(kernel)})
    return out


@pytest.mark.parametrize(("length", "kernel", "dilation"), [
    (5, 3, 1), (7, 7, 1), (8, 5, 1), (13, 5, 1), (20, 7, 1), (70, 9, 1), (130, 13, 1),
    (9, 3, 2), (10, 3, 2), (11, 5, 2), (17, 3, 3), (19, 5, 3), (23, 3, 4), (50, 7, 4), (64, 5, 5),
])
def test_neighborhood_shift_rule_equals_natten_window_start(length, kernel, dilation):
    mask = Neighborhood(kernel, dilation=dilation, border="shift").mask((length,))
    rows = [set(row.nonzero().flatten().tolist()) for row in mask]
    assert rows == natten_rows(length, kernel, dilation)
    assert all(len(r) == kernel for r in rows)


def test_neighborhood_shift_rule_2d_is_the_product_of_natten_axes():
    pattern = Neighborhood((5, 3), dilation=(1, 2), border="shift")
    grid = (9, 10)
    mask = pattern.mask(grid).reshape(*grid, *grid)
    rows_h, rows_w = natten_rows(9, 5, 1), natten_rows(10, 3, 2)
    for i in range(9):
        for j in range(10):
            want = {(a, b) for a in rows_h[i] for b in rows_w[j]}
            assert {tuple(p) for p in mask[i, j].nonzero().tolist()} == want


def _fwd_bwd(pattern, grid, backend, kind=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(1, *grid, HEADS, HEAD_DIM, generator=g).requires_grad_() for _ in range(3)]
    leaves, position = [], None
    if kind is not None:
        position, leaves = _position(kind, pattern, grid, torch.float32)
    out = attention(*inputs, pattern, position=position, backend=backend)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(5))).sum().backward()
    return [out] + [t.grad for t in inputs + leaves]


@pytest.mark.parametrize(("pattern", "grid", "tile"), [
    (Neighborhood(9), (150,), None),  # 1D tile 64: three tiles, the last one a partial
    (Neighborhood(5, dilation=3), (140,), None),
    (Neighborhood(5), (19, 23), None),  # 2D tile 8: 3 × 3 tiles
    (Neighborhood(7), (12, 30), None),
    (Neighborhood(3, dilation=2), (17, 9), None),
    (Neighborhood((3, 5)), (10, 21), 4),
    (Neighborhood(3), (9, 6, 10), None),  # 3D tile 4
    (Neighborhood(7), (16, 16), 3),
])
def test_neighborhood_shift_blocked_matches_reference_on_grids_of_many_tiles(pattern, grid, tile):
    with neighborhood_tile(tile or 0):  # 0: the default tile
        got = _fwd_bwd(pattern, grid, "blocked", "rel_bias")
    want = _fwd_bwd(pattern, grid, "reference", "rel_bias")
    for a, b in zip(got, want, strict=True):
        scale = max(float(b.detach().abs().max()), 1.0)
        torch.testing.assert_close(a / scale, b / scale, **TOL[torch.float32])


# -- Swin: timm's mask and timm's model for several window sizes --------------------------------------------------
def timm_shifted_window_mask(grid: tuple[int, int], window: int, shift: int) -> torch.Tensor:
    """The dense (N, N) allowed-pair mask of timm's SwinTransformerBlock(window, shift) on ``grid``: timm's own
    ``attn_mask`` (0 allowed, -100 not) on the rolled, window-partitioned grid, mapped back to the tokens."""
    from timm.models.swin_transformer import SwinTransformerBlock, window_partition

    block = SwinTransformerBlock(dim=4, input_resolution=grid, num_heads=1, window_size=window, shift_size=shift)
    assert block.window_size == (window, window) and block.shift_size == (shift, shift)
    n = math.prod(grid)
    tokens = torch.arange(n, dtype=torch.float32).reshape(1, *grid, 1)
    rolled = torch.roll(tokens, shifts=(-shift, -shift), dims=(1, 2))  # what _attn partitions
    windows = window_partition(rolled, (window, window)).reshape(-1, window * window).long()  # (nW, w²) token ids
    allowed_in_window = block.attn_mask == 0 if shift else torch.ones(len(windows), window**2, window**2).bool()
    out = torch.zeros(n, n, dtype=torch.bool)
    for ids, allowed in zip(windows, allowed_in_window, strict=True):
        out[ids[:, None], ids[None, :]] = allowed
    return out


@pytest.mark.parametrize(("grid", "window"), [
    ((14, 14), 7), ((21, 14), 7), ((28, 21), 7), ((10, 15), 5), ((15, 15), 5), ((9, 9), 3), ((12, 6), 3),
    ((8, 12), 4), ((12, 12), 6),
])
@pytest.mark.parametrize("shifted", [False, True], ids=["W-MSA", "SW-MSA"])
def test_window_equals_timm_swin_mask(grid, window, shifted):
    shift = window // 2 if shifted else 0
    assert torch.equal(Window(window, shift=shift).mask(grid), timm_shifted_window_mask(grid, window, shift))


@pytest.mark.parametrize(("grid", "window"), [((14, 14), 7), ((10, 15), 5), ((9, 12), 3)])
def test_shifted_window_blocked_matches_reference_on_swin_grids(grid, window):
    pattern = Window(window, shift=window // 2)
    got = _fwd_bwd(pattern, grid, "blocked", "rel_bias", seed=2)
    want = _fwd_bwd(pattern, grid, "reference", "rel_bias", seed=2)
    for a, b in zip(got, want, strict=True):
        scale = max(float(b.detach().abs().max()), 1.0)
        torch.testing.assert_close(a / scale, b / scale, **TOL[torch.float32])


@pytest.mark.parametrize(("img_size", "window", "depths"), [(80, 5, (2, 2)), (48, 3, (3, 1)), (56, 7, (2,))],
                         ids=["w5", "w3-odd-depth", "w7"])
def test_small_swin_with_odd_windows_matches_timm(img_size, window, depths):
    """Every block of timm's Swin (regular blocks at even index, shifted at odd) against ours, window sizes 3, 5
    and 7 (shift = window // 2 = 1, 2, 3). Uses the public preset conversion, like tests/test_swin.py."""
    from timm.models.swin_transformer import SwinTransformer

    from visionattn.models.swin import Swin, SwinSpec

    heads = tuple(2 for _ in depths)
    timm_model = SwinTransformer(img_size=img_size, patch_size=4, embed_dim=16, depths=depths, num_heads=heads,
                                 window_size=window, num_classes=5)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in timm_model.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * (1.0 if "relative_position_bias_table" in name else 0.15))
    timm_model.eval()
    spec = SwinSpec(embed_dim=16, depths=depths, heads=heads, window=window, drop_path=0.0)
    ours = Swin(spec, num_classes=5, img_size=img_size).eval()
    ours.load_state_dict(ours.convert_state_dict(timm_model.state_dict()), strict=True)
    shifts = [b.shift_size for layer in timm_model.layers for b in layer.blocks]
    assert any(s != (0, 0) for s in shifts)  # the case has shifted blocks
    x = torch.randn(2, 3, img_size, img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = timm_model(x), ours(x)
    assert want.abs().max() > 0.1
    assert float((got - want).abs().max() / want.abs().max()) < 1e-5


# -- positions, preparation and probabilities pinned to hand-computed values (from mutmut survivors) -----------
def _rotate_by_hand(x: list[float], angles: list[float]) -> list[float]:
    """Rotate-half RoPE of one group: pairs (x[i], x[i + half]) rotated by angles[i]."""
    half = len(x) // 2
    a, b = x[:half], x[half:]
    return ([a[i] * math.cos(t) - b[i] * math.sin(t) for i, t in enumerate(angles)]
            + [a[i] * math.sin(t) + b[i] * math.cos(t) for i, t in enumerate(angles)])


def test_rope_rotates_each_axis_group_by_position_times_frequency():
    freqs = torch.tensor([[1.0, 0.25], [0.5, 2.0]])  # (dims 2, half 2): head_dim 8, a group of 4 per axis
    x = torch.tensor([0.3, -1.2, 0.8, 0.5, 1.5, 0.2, -0.7, 1.1]).expand(1, 2, 3, 1, 8)  # (B, H=2, W=3, heads, 8)
    coords = (torch.tensor([0, 2]), torch.tensor([0, 1, 3]))  # positions of the rows and the columns
    got = Rope(freqs).rotate(x, coords)
    row = x[0, 0, 0, 0].tolist()
    for i, pi in enumerate([0, 2]):
        for j, pj in enumerate([0, 1, 3]):
            want = (_rotate_by_hand(row[:4], [pi * 1.0, pi * 0.25]) + _rotate_by_hand(row[4:], [pj * 0.5, pj * 2.0]))
            torch.testing.assert_close(got[0, i, j, 0], torch.tensor(want), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(got[0, 1, 2, 0], x[0, 1, 2, 0])  # a real rotation, not the identity


def test_rope_frequencies_by_hand():
    torch.testing.assert_close(rope_frequencies(12, 2), torch.tensor([[1.0, 100 ** (-1 / 3), 100 ** (-2 / 3)]] * 2))
    torch.testing.assert_close(rope_frequencies(12, 3), torch.tensor([[1.0, 0.1]] * 3))
    torch.testing.assert_close(rope_frequencies(8, 1, theta=16.0), torch.tensor([[1.0, 0.5, 0.25, 0.125]]))
    assert rope_frequencies(10, 2).shape == (2, 2)  # head_dim // (2 · dims) frequencies per axis
    assert rope_frequencies(12, 2).dtype == torch.float32
    assert rope_frequencies(12, 2, device="meta").device.type == "meta"  # built on the device asked for


def test_relative_bias_lookup_by_hand():
    table = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)  # heads 2, radius (1, 2)
    delta = torch.tensor([[[0, 0], [1, -2], [-1, 2]], [[5, 0], [-4, -9], [0, 1]]])  # (2, 3, D=2)
    got = RelativeBias(table).lookup(delta)
    want = torch.empty(2, 2, 3)
    for i in range(2):
        for j in range(3):
            d0, d1 = (max(-1, min(1, int(delta[i, j, 0]))), max(-2, min(2, int(delta[i, j, 1]))))  # clamped
            want[:, i, j] = table[:, d0 + 1, d1 + 2]
    assert torch.equal(got, want)


def test_prepare_call_zeroes_padding_and_applies_rope():
    g = torch.Generator().manual_seed(12)
    q, k, v = (torch.randn(2, 3, 4, 1, 8, generator=g) for _ in range(3))
    pad = torch.zeros(2, 3, 4, dtype=torch.bool)
    pad[0, 2, :] = pad[1, :, 3] = True
    freqs = rope_frequencies(8, 2)
    # separate q and k tensors: self-attention is said with query_padding_mask (q is k would imply it)
    call = prepare_call(q, k, v, Neighborhood(3), position=Rope(freqs), key_padding_mask=pad, query_padding_mask=pad)
    assert call.form == "softmax" and call.scale == pytest.approx(8 ** -0.5) and call.key_padding_mask is pad
    coords = (torch.arange(3), torch.arange(4))
    keep = ~pad[..., None, None]
    torch.testing.assert_close(call.q, Rope(freqs).rotate(q * keep, coords))  # padded queries carry no signal
    torch.testing.assert_close(call.k, Rope(freqs).rotate(k * keep, coords))
    assert torch.equal(call.v, v * keep)
    assert call.q[pad].abs().max() == 0 and call.k[pad].abs().max() == 0 and call.v[pad].abs().max() == 0
    assert call.q[~pad].abs().min() > 0
    # strided queries (another grid): only keys and values are padded
    pattern = Halo(2, 1, stride=2)
    qs = torch.randn(2, 2, 2, 1, 8, generator=g)
    call = prepare_call(qs, k, v, pattern, form="linear", scale=0.5, key_padding_mask=pad)
    assert torch.equal(call.q, qs) and torch.equal(call.v, v * keep) and (call.form, call.scale) == ("linear", 0.5)


@pytest.mark.parametrize(("pattern", "grid"), [(Neighborhood(3), (5, 6)), (Halo(2, 1, stride=2), (6, 5)),
                                               (Window(3, shift=1), (6, 4)), (Global(), (4, 5)), (Axial(1), (4, 5))])
@pytest.mark.parametrize("kind", ["rel_bias", "rel_logits"])
def test_attention_probs_of_selected_rows_equal_the_full_rows(pattern, grid, kind):
    g = torch.Generator().manual_seed(13)
    q_grid = pattern.query_grid(grid)
    q = torch.randn(2, *q_grid, HEADS, HEAD_DIM, generator=g)
    k, v = (torch.randn(2, *grid, HEADS, HEAD_DIM, generator=g) for _ in range(2))
    position, _ = _position(kind, pattern, grid, torch.float32)
    call = prepare_call(q, k, v, pattern, position=position)
    full = attention_probs(call)
    rows = [math.prod(q_grid) - 1, 0, 3, 7]  # any order, the last query first
    torch.testing.assert_close(attention_probs(call, rows), full[:, :, rows])
    torch.testing.assert_close(attention_probs(call, torch.tensor(rows)), full[:, :, rows])
    out = torch.einsum("bhqk,bkhd->bqhd", full, v.reshape(2, -1, HEADS, HEAD_DIM)).reshape(2, *q_grid, HEADS, -1)
    torch.testing.assert_close(out, attention(q, k, v, pattern, position=position, backend="reference"))


def test_linear_attention_by_hand_with_a_scale_and_a_batch_of_paddings():
    q = torch.tensor(_Q).reshape(1, 2, 1, 2).expand(2, 2, 1, 2) * 2.0  # scale 0.5 undoes the doubling
    k = torch.tensor(_K).reshape(1, 3, 1, 2).expand(2, 3, 1, 2)
    v = torch.tensor(_V).reshape(1, 3, 1, 2).expand(2, 3, 1, 2)
    padding = torch.tensor([[False, False, True], [True, False, False]])  # each image drops another key
    for backend in ("linear", "reference"):
        out = attention(q, k, v, Global(), form="linear", backend=backend, scale=0.5, key_padding_mask=padding)
        torch.testing.assert_close(out[0].reshape(2, 2), torch.tensor(_linear_by_hand([0, 1])), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out[1].reshape(2, 2), torch.tensor(_linear_by_hand([1, 2])), rtol=1e-6, atol=1e-6)


def test_linear_backend_says_why_it_refuses_a_relative_position():
    q = torch.randn(1, 4, 4, 1, 8, generator=torch.Generator().manual_seed(3))
    table = torch.zeros(1, 7, 7)
    with pytest.raises(BackendUnavailable) as info:
        attention(q, q, q, Global(), form="linear", backend="linear", position=RelativeBias(table))
    assert "linear: no logits to add a relative position to (use Rope or no position)" in str(info.value)


def test_auto_follows_the_cpu_order_and_a_refusal_lists_who_accepts():
    """On CPU ``auto`` tries blocked, linear, reference, flex in that order (CUDA puts flex second): a Strided
    softmax call without gradients, which blocked refuses and both reference and flex accept, runs on the reference.
    A forced backend that refuses names every other backend with its reason, or "accepts this call"."""
    from visionattn.ops import Strided
    from visionattn.ops.dispatch import choose_backend

    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 16, HEADS, HEAD_DIM, generator=g) for _ in range(3))
    call = make_call(q, k, v, Strided(local=2, stride=4), None, "softmax", None, None)
    with torch.no_grad():
        assert choose_backend(call, "auto").name == "reference"
        assert choose_backend(call, "flex").name == "flex"  # flex would take it: the order decides
    with pytest.raises(BackendUnavailable) as info:
        choose_backend(call, "blocked")
    lines = dict(line.strip().split(": ", 1) for line in str(info.value).splitlines()[1:])
    assert lines["reference"] == "accepts this call"
    assert "not separable" in lines["blocked"] and lines["linear"] != "accepts this call"


def test_attention_probs_rows_are_checked_and_padded_queries_are_zero():
    """``attention_probs``: a row index outside ``[0, N_q)`` (either end, and exactly N_q) is a named error; padded
    queries (``query_padding_mask``) give all-zero rows, also when rows are selected, while the other rows still
    sum to 1 over the unpadded keys."""
    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(2, 4, 4, HEADS, HEAD_DIM, generator=g) for _ in range(3))
    padding = torch.zeros(2, 4, 4, dtype=torch.bool)
    padding[0, 3, :] = True  # image 0: its last row of the grid is padding
    call = prepare_call(q, k, v, Window(2), key_padding_mask=padding, query_padding_mask=padding)
    for bad in ([16], [-1], [0, 16], [-1, 3]):
        with pytest.raises(ValueError, match=r"rows must index the 16 queries of grid \(4, 4\).*got range"):
            attention_probs(call, bad)
    probs = attention_probs(call)  # (B, h, 16, 16)
    flat = padding.reshape(2, 16)
    assert probs[0][:, flat[0]].abs().sum() == 0  # padded queries: zeros
    torch.testing.assert_close(probs[0][:, ~flat[0]].sum(-1), torch.ones(HEADS, 12))
    assert probs[:, :, :, flat[0]][0].abs().sum() == 0  # padded keys get no weight
    rows = [13, 2, 15]  # two padded queries of image 0 and one real
    picked = attention_probs(call, rows)
    torch.testing.assert_close(picked, probs[:, :, rows])
    assert picked[0, :, [0, 2]].abs().sum() == 0 and picked[1, :, [0, 2]].abs().sum() > 0


def test_input_errors_name_the_argument_and_what_was_expected():
    """Each input error names its argument (q, k, v, key_padding_mask, query_padding_mask, the position type) and
    the expected vs received value, exactly: a message naming the wrong tensor sends the user to the wrong line."""
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 4, 4, HEADS, HEAD_DIM, generator=g) for _ in range(3))
    for name, args in (("k", (q, k.numpy(), v)), ("v", (q, k, [1.0])), ("q", ("q", k, v))):
        with pytest.raises(TypeError, match=rf"^{name} must be a torch.Tensor, got "):
            attention(*args, Global())
    for name in ("key_padding_mask", "query_padding_mask"):
        with pytest.raises(TypeError, match=rf"^{name} must be a bool tensor, got list$"):
            attention(q, k, v, Global(), **{name: [True]})
        with pytest.raises(ValueError, match=rf"^{name} must be bool \(2, 4, 4\) \(True = padding\), got "
                                             r"torch.float32 \(2, 4, 4\)$"):
            attention(q, k, v, Global(), **{name: torch.zeros(2, 4, 4)})
    table = torch.randn(HEADS, 7, 7, generator=g)
    with pytest.raises(TypeError, match=r"^RelativeBias must hold tensors, got list$"):
        attention(q, k, v, Window(2), position=RelativeBias([[0.0]]))
    with pytest.raises(ValueError, match=r"^RelativeBias table sizes must be odd .* got \(6, 6\)$"):
        attention(q, k, v, Window(2), position=RelativeBias(table[:, :6, :6]))
    with pytest.raises(ValueError, match=r"^RelativeBias tensors must be on the device of q, k, v: expected cpu, "
                                         r"got meta \(move the position table or module there, e\.g\. "
                                         r"model\.to\('cpu'\)\)$"):
        attention(q, k, v, Window(2), position=RelativeBias(table.to("meta")))


@pytest.mark.parametrize("backend", ["reference", "blocked"])
def test_nan_in_padded_queries_alone_never_reaches_outputs_or_gradients(backend):
    """Only queries padded (keys all real, e.g. cross-attention from a padded query set): NaN in the padded
    queries' q must not reach any output or any gradient of k and v (the padded q is zeroed before the kernel)."""
    g = torch.Generator().manual_seed(21)
    q, k, v = (torch.randn(2, 4, 4, HEADS, HEAD_DIM, generator=g) for _ in range(3))
    padding = torch.zeros(2, 4, 4, dtype=torch.bool)
    padding[1, :, 3] = True
    q = torch.where(padding[..., None, None], float("nan"), q).requires_grad_()
    k, v = k.requires_grad_(), v.requires_grad_()
    out = attention(q, k, v, Window(2), backend=backend, query_padding_mask=padding)
    assert torch.isfinite(out).all() and out[padding].abs().sum() == 0
    (out * torch.randn(out.shape, generator=g)).sum().backward()
    assert torch.isfinite(k.grad).all() and torch.isfinite(v.grad).all() and torch.isfinite(q.grad[~padding]).all()
