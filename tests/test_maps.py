"""Attention maps (``visionattn.analysis.maps``, ``rollout``, ``overlay.threshold_mask``) against the spec.

The spec is the reference backend's dense weight matrix: :func:`dense_weights` rebuilds it for a captured call
with the reference math (``pattern.mask``, ``dense_bias`` of ``ops/backends/reference.py``, softmax or the linear
form) and is itself checked against ``reference_attention`` (weights · v == the reference output). Recomputed rows
(the public ``visionattn.ops.attention_probs`` and ``maps.attention_rows`` on it) must equal its rows for every
pattern, position type and form, ± key padding, both on operator calls and inside models that run the blocked
backend; maps must land on the right pixels; capture must not change the model's outputs.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visionattn.analysis.maps import (
    AttentionRecorder,
    attention_rows,
    capture_attention,
    explorer_rows,
    parse_query,
    query_maps,
    query_rows,
    row_mask,
    upsample_to_image,
)
from visionattn.analysis.overlay import threshold_mask
from visionattn.analysis.rollout import rollout_maps, rollout_matrix
from visionattn.models import create_model
from visionattn.ops import (
    Axial,
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
    attention_probs,
    choose_backend,
    feature_map,
    prepare_call,
    rope_frequencies,
)
from visionattn.ops.backends.reference import dense_bias, reference_attention
from visionattn.ops.patterns import Pattern


# -- the spec: dense weights of the reference backend ---------------------------------------------------------------
def dense_weights(call) -> torch.Tensor:
    """Reference weights ``(B, heads, N_q, N_k)`` of a prepared call, checked against the reference output."""
    B, heads = call.q.shape[0], call.heads
    nq, nk = math.prod(call.q_grid), math.prod(call.kv_grid)
    q = call.q.reshape(B, nq, heads, -1).float()
    k = call.k.reshape(B, nk, heads, -1).float()
    mask = call.pattern.mask(call.kv_grid, call.q_grid)[None, None]
    if call.key_padding_mask is not None:
        mask = mask & ~call.key_padding_mask.reshape(B, 1, 1, nk)
    has_key = mask.any(-1, keepdim=True)
    if call.form == "softmax":
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * call.scale
        bias = dense_bias(call, q)
        if bias is not None:
            scores = scores + bias
        weights = scores.masked_fill(~(mask | ~has_key), float("-inf")).softmax(-1)
    else:
        weights = torch.einsum("bqhd,bkhd->bhqk", feature_map(q * call.scale), feature_map(k)) * mask
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    weights = torch.where(has_key, weights, torch.zeros_like(weights))
    v = call.v.reshape(B, nk, heads, -1).float()
    out = torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(B, *call.q_grid, heads, -1)
    torch.testing.assert_close(out, reference_attention(call).float(), rtol=1e-5, atol=1e-5)
    return weights


def record(fn):
    """The prepared calls made by ``fn()`` (an operator call or a forward)."""
    with AttentionRecorder(nn.Identity()) as rec:
        fn()
    return [r.call for r in rec.records]


def _position(kind: str, pattern: Pattern, kv_grid, heads: int, head_dim: int, gen):
    if kind == "none":
        return None
    if kind == "rope":
        return Rope(rope_frequencies(head_dim, len(kv_grid)))
    radius = pattern.max_offset(kv_grid)
    if kind == "rel_bias":
        return RelativeBias(torch.randn(heads, *(2 * r + 1 for r in radius), generator=gen))
    return RelativeLogits(tuple(torch.randn(2 * r + 1, head_dim, generator=gen) * 0.5 for r in radius))


GRAPH_EDGES = torch.randint(0, 20, (30, 2), generator=torch.Generator().manual_seed(3))
OP_CASES = [  # (pattern, key grid, position, form, key padding)
    (Global(), (5, 4), "none", "softmax", False),
    (Global(), (5, 4), "rel_logits", "softmax", True),
    (Global(), (7,), "rel_bias", "softmax", False),
    (Window(3), (6, 5), "rel_bias", "softmax", False),
    (Window(3, 1), (6, 5), "rel_bias", "softmax", True),
    (Window((3, 2), (2, 1)), (7, 5), "rope", "softmax", False),
    (Halo(2, 1), (6, 5), "rel_logits", "softmax", False),
    (Halo(4, 1, stride=2), (8, 7), "rel_logits", "softmax", False),
    (Neighborhood(3, border="pad"), (6, 5), "rel_logits", "softmax", False),
    (Neighborhood(3, dilation=2), (7, 7), "rel_bias", "softmax", True),
    (Neighborhood(3), (4, 5, 3), "none", "softmax", False),
    (Axial(0), (5, 4), "rel_logits", "softmax", False),
    (Axial(1), (5, 4), "rope", "softmax", False),
    (Strided(3, 4), (20,), "none", "softmax", False),
    (Strided(2, 5, causal=True), (4, 5), "rel_bias", "softmax", False),
    (Graph(GRAPH_EDGES, self_loops=False), (20,), "none", "softmax", False),
    (Global(), (5, 4), "rope", "linear", False),
    (Window(2, 1), (5, 4), "none", "linear", True),
]


@pytest.mark.parametrize("pattern, grid, position, form, padded", OP_CASES, ids=lambda c: repr(c)[:40])
def test_rows_equal_the_reference_matrix_rows(pattern, grid, position, form, padded):
    gen = torch.Generator().manual_seed(0)
    B, heads, d = 2, 2, 8
    q_grid = pattern.query_grid(grid)
    q = torch.randn(B, *q_grid, heads, d, generator=gen)
    k, v = torch.randn(B, *grid, heads, d, generator=gen), torch.randn(B, *grid, heads, d, generator=gen)
    kpm = torch.rand(B, *grid, generator=gen) < 0.3 if padded else None
    pos = _position(position, pattern, grid, heads, d, gen)
    (call,) = record(lambda: attention(q, k, v, pattern, position=pos, form=form, key_padding_mask=kpm))
    dense = dense_weights(call)  # (B, h, Nq, Nk)
    nq = math.prod(q_grid)
    rows = torch.tensor(sorted({0, nq - 1, nq // 2, nq // 3}))
    got = attention_rows(call, rows)  # (B, Q, h, Nk)
    torch.testing.assert_close(got, dense[:, :, rows].permute(0, 2, 1, 3), rtol=1e-5, atol=1e-6)
    assert got.sum(-1).max() <= 1 + 1e-5 and (got > 0).any()
    torch.testing.assert_close(row_mask(pattern, q_grid, grid, rows), pattern.mask(grid, q_grid)[rows], rtol=0,
                               atol=0)


PROBS_PATTERNS = [(Global(), (5, 4)), (Window(3, 1), (6, 5)), (Halo(4, 1, stride=2), (8, 7)),
                  (Neighborhood(3, border="pad"), (6, 5)), (Neighborhood(3, dilation=2), (7, 7)),
                  (Neighborhood(3), (4, 5, 3)), (Axial(0), (5, 4)), (Strided(3, 4), (20,)),
                  (Graph(GRAPH_EDGES), (20,))]
PROBS_KINDS = [("none", "softmax"), ("rel_bias", "softmax"), ("rel_logits", "softmax"), ("rope", "softmax"),
               ("none", "linear"), ("rope", "linear")]


@pytest.mark.parametrize("padded", [False, True], ids=["", "padded"])
@pytest.mark.parametrize("position, form", PROBS_KINDS, ids=lambda c: c)
@pytest.mark.parametrize("pattern, grid", PROBS_PATTERNS, ids=lambda c: repr(c)[:24].replace(" ", ""))
def test_attention_probs_equal_the_reference_backend(pattern, grid, position, form, padded):
    """The public call: rows (and all rows) of ``attention_probs(prepare_call(...))`` equal the reference backend's
    dense weights (whose product with v is the reference output), and are differentiable in q."""
    gen = torch.Generator().manual_seed(4)
    B, heads, d = 2, 2, 12  # 12: RoPE on 1D, 2D and 3D grids
    q_grid = pattern.query_grid(grid)
    q = torch.randn(B, *q_grid, heads, d, generator=gen, requires_grad=True)
    k, v = torch.randn(B, *grid, heads, d, generator=gen), torch.randn(B, *grid, heads, d, generator=gen)
    kpm = torch.rand(B, *grid, generator=gen) < 0.3 if padded else None
    pos = _position(position, pattern, grid, heads, d, gen)
    call = prepare_call(q, k, v, pattern, position=pos, form=form, key_padding_mask=kpm)
    dense = dense_weights(call).detach()  # (B, h, Nq, Nk)
    nq = math.prod(q_grid)
    rows = sorted({0, 1, nq - 1, nq // 2})
    got = attention_probs(call, rows)  # (B, h, Q, Nk)
    torch.testing.assert_close(got.detach(), dense[:, :, rows], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attention_probs(call).detach(), dense, rtol=1e-5, atol=1e-6)
    got.sum().backward() if form == "linear" else (got * torch.randn(got.shape, generator=gen)).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_attention_probs_rows_out_of_range_say_expected_vs_got():
    q = torch.randn(1, 4, 5, 2, 8)
    call = prepare_call(q, q, q, Window(2))
    with pytest.raises(ValueError, match=r"rows must index the 20 queries of grid \(4, 5\).*got range \[3, 20\]"):
        attention_probs(call, [3, 20])


def test_separable_rows_never_build_the_dense_mask(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    calls = []
    for pattern in (Global(), Window(3, 1), Halo(2, 1, stride=2), Neighborhood(3, border="pad"), Axial(1)):
        grid = (6, 6)
        q = torch.randn(1, *pattern.query_grid(grid), 2, 4, generator=gen)
        k = torch.randn(1, *grid, 2, 4, generator=gen)
        calls += record(lambda q=q, k=k, p=pattern: attention(q, k, k, p))
    expected = [dense_weights(c)[:, :, :3].permute(0, 2, 1, 3) for c in calls]

    def refuse(*args, **kwargs):
        raise AssertionError("the dense N_q x N_k mask was built")

    monkeypatch.setattr(Pattern, "mask", refuse)
    monkeypatch.setattr(Global, "mask", refuse)
    for call, want in zip(calls, expected, strict=True):
        torch.testing.assert_close(attention_rows(call, [0, 1, 2]), want, rtol=1e-5, atol=1e-6)


def test_identical_keys_give_uniform_rows_over_the_allowed_keys():
    gen = torch.Generator().manual_seed(2)
    for pattern, grid in ((Halo(4, 1), (8, 8)), (Neighborhood(5, border="pad"), (7, 6)), (Window(4, 2), (8, 8))):
        q = torch.randn(1, *grid, 2, 4, generator=gen)
        k = torch.randn(1, 1, 1, 2, 4, generator=gen).expand(1, *grid, 2, 4)  # one key repeated everywhere
        (call,) = record(lambda q=q, k=k, p=pattern: attention(q, k, k, p))
        rows = torch.arange(math.prod(grid))[::5]
        allowed = pattern.mask(grid)[rows].float()  # (Q, Nk)
        expected = allowed / allowed.sum(-1, keepdim=True)
        got = attention_rows(call, rows)[0]  # (Q, h, Nk)
        torch.testing.assert_close(got, expected[:, None].expand_as(got), rtol=1e-6, atol=1e-7)


# -- models: capture, geometry, agreement with the spec -------------------------------------------------------------
def _model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(name).eval()
    size = model.preset.img_size
    return model, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))


MODELS = ["vit_tiny_test", "deit_tiny_distilled_test", "swin_test", "halonet_test", "sasa_resnet_test",
          "axial_resnet_test", "botnet_test", "r26_vit_test", "coatnet_test"]


def _expected_rows(layer, pixel, image_size):
    """Rows of the dense spec for a pixel query, with the geometry worked out here independently."""
    call = layer.records[-1].call
    H, W = image_size
    if call.dims == 1:  # ViT: prefix tokens then the patch grid
        n = call.kv_grid[0] - layer.prefix
        side = math.isqrt(n)
        r = H // side
        index = layer.prefix + (pixel[1] // r) * side + pixel[0] // r
        grid = (side, side)
    else:
        grid = call.kv_grid
        r = H // grid[0]
        stride = call.pattern.stride if isinstance(call.pattern, Halo) else 1
        index = (pixel[1] // r // stride) * call.q_grid[1] + pixel[0] // r // stride
    weights = dense_weights(call)[:, :, index]  # (B, h, Nk)
    if len(layer.records) == 2:  # axial: A_width · A_height
        weights = torch.einsum("bhm,bhmn->bhn", weights, dense_weights(layer.records[0].call))
    return weights[..., layer.prefix:].reshape(*weights.shape[:2], *grid), r


@pytest.mark.parametrize("name", MODELS)
def test_model_maps_equal_the_dense_reference(name):
    model, x = _model(name)
    with torch.no_grad():  # capture_attention runs under no_grad (SDPA may pick another kernel with grad)
        plain = model(x)
    capture = capture_attention(model, x)
    assert torch.equal(capture.output, plain)  # capture does not change the outputs, bit for bit
    with AttentionRecorder(model) as rec:
        recorded = model(x)
    assert torch.equal(recorded, model(x)) and len(rec.records) == sum(len(la.records) for la in capture.layers)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())  # hooks removed
    H, W = capture.image_size
    pixels = [(0, 0), (W - 1, H // 2), (W // 3, H - 1)]
    for layer in capture.layers:
        for record_ in layer.records:
            if record_.call.dims == 2 and not isinstance(record_.call.pattern, Global):
                assert choose_backend(record_.call).name == "blocked"  # the fast path ran in the model
        got = query_maps(capture, layer, pixels)  # (B, Q, h, H, W)
        assert got.shape == (2, len(pixels), layer.heads, H, W)
        for i, pixel in enumerate(pixels):
            want, r = _expected_rows(layer, pixel, (H, W))  # (B, h, gh, gw)
            want_image = want.repeat_interleave(r, -2).repeat_interleave(r, -1)
            torch.testing.assert_close(got[:, i], want_image, rtol=1e-4, atol=1e-6)
        if layer.prefix:
            cls = query_rows(capture, layer, "cls")[:, 0]
            dense = dense_weights(layer.records[-1].call)[:, :, 0, layer.prefix:]
            torch.testing.assert_close(cls.flatten(-2), dense, rtol=1e-4, atol=1e-6)


def test_axial_layers_compose_height_then_width():
    model, x = _model("axial_resnet_test")
    layer = capture_attention(model, x).layers[0]
    assert [type(r.call.pattern).__name__ + str(r.call.pattern.axis) for r in layer.records] == ["Axial0", "Axial1"]
    assert layer.name.endswith("mixer.attn") and layer.records[0].name.endswith("layers.0")


def test_identical_keys_in_a_vit_give_a_uniform_cls_map():
    model, x = _model("vit_tiny_test")
    for block in model.stages:  # zero the key projection: every key is the same vector
        dim = block.attn.dim
        with torch.no_grad():
            block.attn.qkv.weight[dim:2 * dim] = 0
            block.attn.qkv.bias[dim:2 * dim] = 0
    capture = capture_attention(model, x)
    maps = query_maps(capture, -1, ["cls", (5, 9)])
    n = 16 + 1  # 4x4 patches + the class token
    torch.testing.assert_close(maps, torch.full_like(maps, 1 / n))
    torch.testing.assert_close(rollout_maps(capture, "cls"), torch.full((2, 1, 32, 32), (1 - 2.0 ** -2) / n))


def test_identical_keys_in_swin_give_the_query_window_in_image_pixels():
    model, x = _model("swin_test")
    for block in model.stages[0].blocks:
        dim = block.attn.dim
        with torch.no_grad():
            block.attn.qkv.weight[dim:2 * dim] = 0
            block.attn.qkv.bias[dim:2 * dim] = 0
            block.attn.position.table.zero_()
    capture = capture_attention(model, x)
    # stage 0: 16x16 grid of 4-pixel tokens, windows of 4 tokens; block 1 shifts them by 2 tokens (8 pixels)
    for index, (lo, hi) in ((0, (0, 16)), (1, (8, 24))):
        got = query_maps(capture, index, (10, 12))[:, 0]  # (B, h, 64, 64)
        want = torch.zeros(64, 64)
        want[lo:hi, lo:hi] = 1 / 16
        torch.testing.assert_close(got, want.expand_as(got))


def test_halo_strided_queries_and_unmappable_layers():
    model, x = _model("halonet_test")
    capture = capture_attention(model, x)
    strided = capture.layer(1)
    assert strided.key_grid == (16, 16) and strided.query_grid == (8, 8) and strided.reduction == (4, 4)
    from visionattn.analysis.maps import query_index

    assert query_index(strided, (8, 8), (64, 64)) == 1 * 8 + 1  # key cell (2, 2) is query (1, 1) at stride 2
    (call,) = record(lambda: attention(*(torch.randn(1, 2, 3, 4, 1, 4),) * 3, Global()))  # a 3D grid
    from visionattn.analysis.maps import _geometry

    layer = _geometry("video", [type("R", (), {"call": call})()], (8, 8), None)
    assert "3D" in layer.unmappable


# -- errors --------------------------------------------------------------------------------------------------------
def test_bad_queries_and_layers_say_expected_and_got():
    model, x = _model("swin_test")
    capture = capture_attention(model, x)
    with pytest.raises(ValueError, match=r"x=64, y=3.*expected 0 <= x < 64"):
        query_maps(capture, 0, (64, 3))
    with pytest.raises(ValueError, match="no class token"):
        query_maps(capture, 0, "cls")
    with pytest.raises(ValueError, match=r"layer 6 out of range: swin_test has 6 .*\[0, 5\]"):
        capture.layer(6)
    with pytest.raises(ValueError, match="expected one of"):
        capture.layer("nope")
    with pytest.raises(ValueError, match="'cls' or a pixel 'X,Y'"):
        parse_query("3;4")
    assert parse_query(" 3,4 ") == (3, 4) and parse_query("CLS") == "cls"
    with pytest.raises(ValueError, match="made no attention call"):
        capture_attention(create_model("resnet_test").eval(), torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"images must be a \(B, C, H, W\)"):
        capture_attention(model, torch.randn(3, 64, 64))


# -- rollout -------------------------------------------------------------------------------------------------------
def test_rollout_equals_the_product_of_dense_layers():
    model, x = _model("deit_tiny_distilled_test")
    capture = capture_attention(model, x)
    expected = None
    for layer in capture.layers:
        a = dense_weights(layer.records[0].call).mean(1)  # (B, N, N)
        a = (a + torch.eye(a.shape[-1])) / 2
        a = a / a.sum(-1, keepdim=True)
        expected = a if expected is None else a @ expected
    got = rollout_matrix(capture)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(-1), torch.ones(2, 18))
    maps = rollout_maps(capture, ["cls", (31, 0)])  # (B, 2, 32, 32)
    torch.testing.assert_close(maps[:, 0], upsample_to_image(expected[:, 0, 2:].reshape(2, 4, 4), (8, 8), (32, 32)))
    torch.testing.assert_close(maps[:, 1], upsample_to_image(expected[:, 2 + 3, 2:].reshape(2, 4, 4), (8, 8),
                                                             (32, 32)))


def test_rollout_of_the_hybrid_transformer_stage():
    model, x = _model("r26_vit_test")
    capture = capture_attention(model, x)
    maps = rollout_maps(capture, ["cls", (20, 20)])  # 2x2 tokens of 16 pixels + CLS
    assert maps.shape == (2, 2, 32, 32)
    torch.testing.assert_close(maps[:, :, ::16, ::16].sum((-1, -2)) + rollout_matrix(capture)[:, [0, 4], 0],
                               torch.ones(2, 2))


@pytest.mark.parametrize("name, why", [("swin_test", r"swin_test's layer stages\.0\.blocks\.0\.attn uses Window"),
                                        ("botnet_test", r"botnet_test's layer stages\.3\.0\.mixer\.attn is not"),
                                        ("nonlocal_resnet_test", "nonlocal_resnet_test's layer .* is not"),
                                        ("coatnet_test", "coatnet_test's layer .* is not"),
                                        ("axial_resnet_test", "axial_resnet_test's layer .*Axial")])
def test_rollout_refuses_non_isotropic_models(name, why):
    model, x = _model(name)
    with pytest.raises(ValueError, match="isotropic model") as err:
        rollout_matrix(capture_attention(model, x))
    assert err.match(why)


def test_rollout_needs_every_layer():
    model, x = _model("vit_tiny_test")
    capture = capture_attention(model, x, layers="last")
    assert [la.name for la in capture.layers] == ["stages.1.attn"] and not capture.complete
    with pytest.raises(ValueError, match="layers=None"):
        rollout_matrix(capture)


# -- masks and explorer rows ---------------------------------------------------------------------------------------
def dino_mask(attn: torch.Tensor, threshold: float) -> torch.Tensor:
    """DINO's visualize_attention.py, verbatim in spirit: (heads, N) → bool (heads, N)."""
    val, idx = torch.sort(attn)
    val = val / torch.sum(val, dim=1, keepdim=True)
    cumval = torch.cumsum(val, dim=1)
    th_attn = cumval > (1 - threshold)
    idx2 = torch.argsort(idx)
    return torch.stack([th_attn[h][idx2[h]] for h in range(attn.shape[0])])


def test_threshold_mask_is_dinos_and_keeps_the_smallest_set():
    gen = torch.Generator().manual_seed(4)
    attn = torch.rand(6, 50, generator=gen) ** 3
    for t in (0.3, 0.6, 0.9):
        assert torch.equal(threshold_mask(attn, t), dino_mask(attn, t))
    weights = torch.tensor([[0.2, 0.5, 0.0, 0.3]])
    assert threshold_mask(weights, 0.5).tolist() == [[False, True, False, False]]
    assert threshold_mask(weights, 0.6).tolist() == [[False, True, False, True]]
    assert threshold_mask(weights, 0.81).tolist() == [[True, True, False, True]]
    assert threshold_mask(weights * 7, 0.8).tolist() == [[False, True, False, True]]  # unnormalised is fine
    grid = threshold_mask(attn.reshape(6, 5, 10), 0.6, dims=2)
    assert torch.equal(grid.reshape(6, 50), dino_mask(attn, 0.6))
    assert not threshold_mask(torch.zeros(2, 5), 0.6).any()
    for bad in (0, 1.5, "0.6"):
        with pytest.raises(ValueError, match=r"expected a number in \(0, 1\]"):
            threshold_mask(attn, bad)


def test_explorer_rows_are_query_rows_at_cell_centres_within_budget():
    model, x = _model("swin_test")
    capture = capture_attention(model, x)
    layer = capture.layer(0)  # 16x16 queries and keys, 1 head
    (hq, wq), attn = explorer_rows(capture, 0, batch_index=1, max_bytes=16 * 256 * 4)
    assert (hq, wq) == (4, 4) and attn.shape == (1, 16, 256) and attn.dtype.name == "float32"
    pixels = [((2 * j + 1) * 64 // 8, (2 * i + 1) * 64 // 8) for i in range(4) for j in range(4)]
    want = query_rows(capture, layer, pixels)[1].flatten(-2).permute(1, 0, 2)  # (h, Q, Nk)
    torch.testing.assert_close(torch.from_numpy(attn), want)
    (hq, wq), attn = explorer_rows(capture, 0)
    assert (hq, wq) == (16, 16) and attn.shape == (1, 256, 256)
