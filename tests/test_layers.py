"""The layers around the operator: Attention / AxialAttention, position modules, absolute embeddings.

The central check is the *reference twin*: the module (backend='auto') must equal a hand-written
``qkv Linear → attention(..., backend='reference') → proj`` with the module's own weights, forward and
backward, so every reshape and the query subsampling of strided Halo are right.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from visionattn.layers import (
    POSITION_KINDS,
    Attention,
    AxialAttention,
    LearnedPositionEmbedding,
    RelativeBiasTable,
    RelativeLogitsTable,
    RotaryEmbedding,
    SinCosPositionEmbedding,
    make_position,
    position_radius,
    sincos_position_embedding,
)
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
)

DIM, HEADS = 24, 2  # head_dim 12: divisible by 2·dims for RoPE on 1D, 2D and 3D grids


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny shapes: intra-op threads only add contention on a shared 2-core machine (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _graph(n: int, seed: int = 0) -> Graph:
    g = torch.Generator().manual_seed(seed)
    return Graph(torch.randint(0, n, (2 * n, 2), generator=g))


# (pattern, grid, expected query grid)
CASES = [
    (Global(), (7,), (7,)),
    (Global(), (4, 5), (4, 5)),
    (Global(), (2, 3, 4), (2, 3, 4)),
    (Neighborhood(3), (9,), (9,)),
    (Neighborhood(3), (5, 6), (5, 6)),
    (Neighborhood((3, 3, 3)), (3, 4, 5), (3, 4, 5)),
    (Neighborhood(3, dilation=2, border="pad"), (6, 7), (6, 7)),
    (Halo(4, 1), (10,), (10,)),
    (Halo(4, 1), (6, 7), (6, 7)),
    (Halo(4, 1, stride=2), (11,), (6,)),
    (Halo(4, 1, stride=2), (6, 7), (3, 4)),
    (Halo(2, 1, stride=2), (3, 4, 5), (2, 2, 3)),
    (Window(4, shift=2), (9,), (9,)),
    (Window(3, shift=1), (5, 7), (5, 7)),
    (Window(2, shift=1), (3, 4, 5), (3, 4, 5)),
    (Axial(0), (4, 5), (4, 5)),
    (Axial(1), (4, 5), (4, 5)),
    (Axial(2), (2, 3, 4), (2, 3, 4)),
    (Strided(3, 4), (10,), (10,)),
    (Strided(4, 4), (3, 4), (3, 4)),
    (_graph(8), (8,), (8,)),
    (_graph(12, seed=1), (3, 4), (3, 4)),
]
IDS = [f"{p}-{g}" for p, g, _ in CASES]


def _x(grid, seed=0, batch=2, dim=DIM):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *grid, dim, generator=g)


def _layer(pattern, grid, position, seed=0, **kwargs):
    torch.manual_seed(seed)
    return Attention(DIM, HEADS, pattern, position=position, grid_size=grid, **kwargs)


# -- shapes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("position", POSITION_KINDS)
@pytest.mark.parametrize(("pattern", "grid", "q_grid"), CASES, ids=IDS)
def test_attention_shapes(pattern, grid, q_grid, position):
    layer = _layer(pattern, grid, position)
    out = layer(_x(grid))
    assert out.shape == (2, *q_grid, DIM)
    assert tuple(pattern.query_grid(grid)) == q_grid
    assert torch.isfinite(out).all()


def test_linear_form_shapes():
    for grid in [(7,), (4, 5), (2, 3, 4)]:
        for position in ("none", "rope"):
            out = _layer(Global(), grid, position, form="linear")(_x(grid))
            assert out.shape == (2, *grid, DIM)


# -- the reference twin ----------------------------------------------------------------------------
def _twin(layer: Attention, x: torch.Tensor, key_padding_mask=None) -> torch.Tensor:
    """qkv Linear → attention(backend='reference') → proj, written out by hand with the layer's weights."""
    B, grid, h, d = x.shape[0], tuple(x.shape[1:-1]), layer.heads, layer.head_dim
    if layer.q_stride > 1:
        s = layer.q_stride
        xq = x[(slice(None), *(slice(None, None, s) for _ in grid))]
        q = F.linear(xq, layer.q.weight, layer.q.bias).reshape(*xq.shape[:-1], h, d)
        kv = F.linear(x, layer.kv.weight, layer.kv.bias)
        k, v = kv[..., : h * d].reshape(B, *grid, h, d), kv[..., h * d :].reshape(B, *grid, h, d)
    else:
        qkv = F.linear(x, layer.qkv.weight, layer.qkv.bias)
        q, k, v = (qkv[..., i * h * d : (i + 1) * h * d].reshape(B, *grid, h, d) for i in range(3))
    position = layer.position
    if isinstance(position, RelativeBiasTable):
        desc = RelativeBias(position.table)
    elif isinstance(position, RelativeLogitsTable):
        desc = RelativeLogits(tuple(position.tables))
    elif isinstance(position, RotaryEmbedding):
        desc = Rope(position.freqs)
    else:
        desc = None
    query_padding_mask = None  # self-attention: the queries are the (every q_stride-th) tokens, padded where x is
    if key_padding_mask is not None:
        query_padding_mask = key_padding_mask[(slice(None), *(slice(None, None, layer.q_stride) for _ in grid))]
    out = attention(
        q, k, v, layer.pattern, position=desc, form=layer.form, backend="reference", key_padding_mask=key_padding_mask,
        query_padding_mask=query_padding_mask,
    )
    out = out.reshape(*out.shape[:-2], h * d)
    return F.linear(out, layer.proj.weight, layer.proj.bias)


def _check_twin(layer, x, key_padding_mask=None):
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out = layer(x1, key_padding_mask=key_padding_mask)
    g = torch.Generator().manual_seed(123)
    cot = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * cot).sum(), [x1, *layer.parameters()])
    ref = _twin(layer, x2, key_padding_mask)
    ref_grads = torch.autograd.grad((ref * cot).sum(), [x2, *layer.parameters()])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    names = ["x", *(n for n, _ in layer.named_parameters())]
    for name, a, b in zip(names, grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"grad of {name}: {m}")


TWIN_CASES = [CASES[i] for i in (1, 2, 4, 5, 6, 8, 10, 11, 13, 14, 15, 19, 21)]


@pytest.mark.parametrize("position", POSITION_KINDS)
@pytest.mark.parametrize(("pattern", "grid", "q_grid"), TWIN_CASES, ids=[f"{p}-{g}" for p, g, _ in TWIN_CASES])
def test_attention_equals_reference_twin(pattern, grid, q_grid, position):
    layer = _layer(pattern, grid, position, seed=1)
    _check_twin(layer, _x(grid, seed=2))


def test_twin_with_key_padding_mask_and_linear_form():
    grid = (5, 6)
    g = torch.Generator().manual_seed(3)
    pad = torch.rand(2, *grid, generator=g) < 0.3
    _check_twin(_layer(Neighborhood(3), grid, "rel_bias"), _x(grid, seed=4), key_padding_mask=pad)
    _check_twin(_layer(Global(), grid, "rope", form="linear"), _x(grid, seed=5))
    _check_twin(_layer(Halo(4, 1, stride=2), grid, "rel_logits"), _x(grid, seed=6))


def test_separate_head_dim_and_no_qkv_bias():
    layer = _layer(Window(3), (6, 6), "rel_bias", head_dim=8, qkv_bias=False)
    assert layer.qkv.bias is None and layer.qkv.out_features == 3 * HEADS * 8
    _check_twin(layer, _x((6, 6), seed=7))


# -- gradients reach every parameter ---------------------------------------------------------------
@pytest.mark.parametrize("position", POSITION_KINDS)
@pytest.mark.parametrize(
    ("pattern", "grid"), [(Global(), (4, 5)), (Neighborhood(3), (5, 6)), (Halo(4, 1, stride=2), (6, 7))]
)
def test_every_parameter_gets_a_gradient(pattern, grid, position):
    layer = _layer(pattern, grid, position)
    if position == "rope":  # make the frequencies learnable so they are checked too
        layer.position = RotaryEmbedding(layer.head_dim, len(grid), learnable=True)
    out = layer(_x(grid))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


# -- radius, grid_size and errors ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "dims", "expected"),
    [
        (Neighborhood(3), 2, (2, 2)),  # border='shift' reaches (k-1)·d at the borders
        (Neighborhood(3, dilation=2, border="pad"), 1, (2,)),
        (Window(4, shift=2), 2, (3, 3)),
        (Halo(4, 1), 1, (4,)),
        (Halo(4, 2, stride=2), 3, (5, 5, 5)),
    ],
)
def test_local_radius_does_not_depend_on_grid(pattern, dims, expected):
    for n in (1, 3, 8, 40):
        assert position_radius(pattern, (n,) * dims) == expected
    assert make_position("rel_bias", HEADS, 12, pattern, (5,) * dims).table.shape[1:] == tuple(
        2 * r + 1 for r in expected
    )
    # no grid_size needed for local patterns: the layer then sees any grid
    layer = Attention(DIM, HEADS, pattern, position="rel_logits", dims=dims)
    assert layer(_x((9,) * dims)).shape[0] == 2


def test_global_tables_sized_by_grid_size():
    assert position_radius(Global(), (4, 6)) == (3, 5)
    assert position_radius(Axial(1), (4, 6)) == (0, 5)
    table = make_position("rel_bias", 3, 12, Global(), (4, 6))
    assert isinstance(table, RelativeBiasTable) and table.table.shape == (3, 7, 11)
    logits = make_position("rel_logits", 3, 12, Global(), (4, 6))
    assert [tuple(t.shape) for t in logits.tables] == [(7, 12), (11, 12)]
    assert make_position("none", 3, 12, Global(), (4, 6)) is None
    assert isinstance(make_position("rope", 3, 12, Global(), (4, 6)).descriptor(), Rope)
    with pytest.raises(ValueError, match="position must be one of"):
        make_position("absolute", 3, 12, Global(), (4, 6))


def test_grid_size_required_for_grid_wide_relative_tables():
    for pattern in (Global(), Axial(0), Strided(4, 4)):
        for position in ("rel_bias", "rel_logits"):
            with pytest.raises(ValueError, match="needs grid_size"):
                Attention(DIM, HEADS, pattern, position=position)
        Attention(DIM, HEADS, pattern, position="rope")  # RoPE needs no grid_size
        Attention(DIM, HEADS, pattern)


def test_bigger_grid_than_table_is_a_clear_error():
    layer = _layer(Global(), (4, 4), "rel_bias")
    layer(_x((3, 4)))  # smaller is fine
    with pytest.raises(ValueError, match=r"covers offsets up to ±\(3, 3\).*needs ±\(4, 3\)"):
        layer(_x((5, 4)))


def test_constructor_and_input_errors():
    with pytest.raises(NotImplementedError, match="proj_drop or DropPath"):
        Attention(DIM, HEADS, Global(), attn_drop=0.1)
    with pytest.raises(ValueError, match="form='linear'"):
        Attention(DIM, HEADS, Global(), position="rel_bias", form="linear", grid_size=(4, 4))
    with pytest.raises(ValueError, match="not divisible by heads"):
        Attention(10, 3, Global())
    with pytest.raises(ValueError, match="position must be one of"):
        Attention(DIM, HEADS, Global(), position="rel")
    with pytest.raises(TypeError, match="Pattern"):
        Attention(DIM, HEADS, "global")
    with pytest.raises(ValueError, match="divisible by 2 \\* dims = 6"):
        Attention(20, 2, Neighborhood(3), position="rope", dims=3)
    layer = Attention(DIM, HEADS, Global())
    with pytest.raises(ValueError, match=r"\(B, \*grid, 24\).*got \(2, 4, 5, 16\)"):
        layer(torch.randn(2, 4, 5, 16))


def test_key_padding_mask_ignores_nan_padding():
    grid = (5, 6)
    layer = _layer(Neighborhood(3), grid, "rel_bias")
    x = _x(grid, seed=8)
    pad = torch.zeros(2, *grid, dtype=torch.bool)
    pad[:, -1] = True
    pad[:, :, -2:] = True
    x_nan = x.masked_fill(pad[..., None], float("nan"))
    a, b = layer(x, key_padding_mask=pad), layer(x_nan, key_padding_mask=pad)
    torch.testing.assert_close(a[~pad], b[~pad])


# -- AxialAttention --------------------------------------------------------------------------------
@pytest.mark.parametrize("position", ["none", "rel_bias", "rope"])
def test_axial_attention_is_height_then_width(position):
    grid = (4, 5)
    torch.manual_seed(0)
    axial = AxialAttention(DIM, HEADS, position=position, grid_size=grid)
    assert [layer.pattern for layer in axial.layers] == [Axial(0), Axial(1)]
    x = _x(grid, seed=9)
    out = axial(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, axial.layers[1](axial.layers[0](x)))
    # height then width is not width then height
    assert not torch.allclose(out, axial.layers[0](axial.layers[1](x)))
    # each layer is its reference twin
    _check_twin(axial.layers[0], x)


def test_axial_attention_3d_and_errors():
    axial = AxialAttention(DIM, HEADS, axes=(0, 1, 2), position="rel_logits", grid_size=(2, 3, 4))
    assert axial(_x((2, 3, 4))).shape == (2, 2, 3, 4, DIM)
    assert [t.radius for t in (layer.position for layer in axial.layers)] == [(1, 0, 0), (0, 2, 0), (0, 0, 3)]
    with pytest.raises(ValueError, match="out of range"):
        AxialAttention(DIM, HEADS, axes=(0, 2), grid_size=(4, 4))
    with pytest.raises(ValueError, match="distinct"):
        AxialAttention(DIM, HEADS, axes=(1, 1))


# -- position modules ------------------------------------------------------------------------------
def test_position_module_inits():
    torch.manual_seed(0)
    bias = RelativeBiasTable(4, (20, 20))
    assert bias.table.shape == (4, 41, 41)
    assert abs(bias.table.std().item() - 0.02) < 0.003
    logits = RelativeLogitsTable(64, (30, 30))
    for t in logits.tables:
        assert t.shape == (61, 64)
        assert abs(t.std().item() - 64**-0.5) < 0.02
    assert isinstance(bias.descriptor(), RelativeBias) and bias.descriptor().table is bias.table
    assert logits.descriptor().radius == (30, 30)
    with pytest.raises(ValueError, match="radius"):
        RelativeBiasTable(4, (1, 2, 3, 4))


def test_rotary_embedding_module():
    rope = RotaryEmbedding(12, 2)
    assert not list(rope.parameters())
    assert rope.descriptor().freqs.shape == (2, 3)
    learned = RotaryEmbedding(12, 2, learnable=True)
    assert [n for n, _ in learned.named_parameters()] == ["freqs"]
    half = RotaryEmbedding(12, 2, theta=10.0).half()
    torch.testing.assert_close(half.descriptor().freqs, RotaryEmbedding(12, 2, theta=10.0).descriptor().freqs)
    assert half.descriptor().freqs.dtype == torch.float32
    with pytest.raises(ValueError, match="divisible by 2 \\* dims = 4"):
        RotaryEmbedding(10, 2)


def _rotate_at(rope: Rope, x: torch.Tensor, pos: tuple[int, ...]) -> torch.Tensor:
    """Rotate one vector x (head_dim,) as if it sat at grid position ``pos``."""
    coords = tuple(torch.tensor([p]) for p in pos)
    return rope.rotate(x.reshape(1, *([1] * len(pos)), 1, -1), coords).reshape(-1)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_rope_scores_depend_only_on_relative_offset(dims):
    rope = RotaryEmbedding(12, dims).descriptor()
    g = torch.Generator().manual_seed(dims)
    q, k = torch.randn(12, generator=g, dtype=torch.float64), torch.randn(12, generator=g, dtype=torch.float64)
    rope = Rope(rope.freqs.double())
    p, j = (3, 1, 4)[:dims], (0, 5, 2)[:dims]
    base = _rotate_at(rope, q, p) @ _rotate_at(rope, k, j)
    for shift in [(1, 2, 3), (-2, 7, 0), (10, -4, 5)]:
        s = shift[:dims]
        ps, js = tuple(a + b for a, b in zip(p, s, strict=True)), tuple(a + b for a, b in zip(j, s, strict=True))
        torch.testing.assert_close(_rotate_at(rope, q, ps) @ _rotate_at(rope, k, js), base)
    # and it does depend on the offset itself
    j2 = tuple(a + 1 for a in j)
    assert not torch.allclose(_rotate_at(rope, q, p) @ _rotate_at(rope, k, j2), base)
    # rotation preserves the norm
    torch.testing.assert_close(_rotate_at(rope, q, p).norm(), q.norm())


# -- absolute embeddings ---------------------------------------------------------------------------
def test_sincos_values_by_hand():
    dim = 8
    pe = sincos_position_embedding((5,), dim)
    assert pe.shape == (1, 5, 8)
    torch.testing.assert_close(pe[0, 0], torch.tensor([0.0] * 4 + [1.0] * 4))  # sin 0 = 0, cos 0 = 1
    omega = torch.tensor([10000.0 ** (-i / 4) for i in range(4)], dtype=torch.float64)
    expected3 = torch.cat([(3 * omega).sin(), (3 * omega).cos()]).float()
    torch.testing.assert_close(pe[0, 3], expected3)
    assert math.isclose(pe[0, 1, 0].item(), math.sin(1.0), rel_tol=1e-6)
    # 2D: first half encodes the row, second half the column
    pe2 = sincos_position_embedding((3, 4), 8)
    assert pe2.shape == (1, 3, 4, 8)
    row = sincos_position_embedding((3,), 4)[0]
    col = sincos_position_embedding((4,), 4)[0]
    torch.testing.assert_close(pe2[0, 2, 1], torch.cat([row[2], col[1]]))
    torch.testing.assert_close(pe2[0, 0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0] * 2))


def test_sincos_3d_and_errors():
    pe = sincos_position_embedding((2, 3, 4), 12)
    assert pe.shape == (1, 2, 3, 4, 12)
    torch.testing.assert_close(pe[0, 1, 2, 3, 8:], sincos_position_embedding((4,), 4)[0, 3])
    assert len({tuple(v.tolist()) for v in pe.reshape(-1, 12)}) == 24  # every position distinct
    with pytest.raises(ValueError, match="divisible by 2 \\* 3 = 6, got dim=8"):
        sincos_position_embedding((2, 3, 4), 8)
    with pytest.raises(ValueError, match="grid must be"):
        sincos_position_embedding((2, 2, 2, 2), 16)
    module = SinCosPositionEmbedding(12)
    x = _x((3, 4), dim=12)
    torch.testing.assert_close(module(x), x + sincos_position_embedding((3, 4), 12))
    with pytest.raises(ValueError, match="channels-last"):
        module(_x((3, 4), dim=8))


def test_learned_position_embedding_identity_and_interpolation():
    torch.manual_seed(0)
    emb = LearnedPositionEmbedding((8, 8), 16)
    assert emb.weight.shape == (1, 8, 8, 16)
    x = _x((8, 8), dim=16)
    torch.testing.assert_close(emb(x), x + emb.weight)
    torch.testing.assert_close(emb.embedding((8, 8)), emb.weight)
    # a smooth embedding resized to a new grid keeps its corners (within a cell's variation)
    with torch.no_grad():
        emb.weight.copy_(sincos_position_embedding((8, 8), 16, temperature=100.0))
    big = emb.embedding((16, 12))
    assert big.shape == (1, 16, 12, 16)
    step = (emb.weight[0, 1:] - emb.weight[0, :-1]).abs().max()
    for (i, j), (bi, bj) in [((0, 0), (0, 0)), ((7, 7), (15, 11)), ((0, 7), (0, 11)), ((7, 0), (15, 0))]:
        assert (big[0, bi, bj] - emb.weight[0, i, j]).abs().max() < step
    out = emb(_x((16, 12), dim=16))
    assert out.shape == (2, 16, 12, 16)
    # same as timm-style bicubic resize done by hand
    manual = F.interpolate(
        emb.weight.permute(0, 3, 1, 2), size=(16, 12), mode="bicubic", align_corners=False, antialias=True
    )
    torch.testing.assert_close(big, manual.permute(0, 2, 3, 1))
    # gradients flow through the interpolation
    emb.weight.grad = None
    emb(_x((5, 6), dim=16)).sum().backward()
    assert emb.weight.grad is not None and emb.weight.grad.abs().sum() > 0


def test_learned_position_embedding_1d_3d_and_errors():
    e1 = LearnedPositionEmbedding((6,), 8)
    assert e1(_x((9,), dim=8)).shape == (2, 9, 8)
    e3 = LearnedPositionEmbedding((2, 3, 4), 8)
    assert e3(_x((4, 3, 2), dim=8)).shape == (2, 4, 3, 2, 8)
    torch.testing.assert_close(e3.embedding((2, 3, 4)), e3.weight)
    with pytest.raises(ValueError, match="channels-last"):
        e3(_x((4, 3), dim=8))


# -- larger grids, per-call patterns, padded embeddings -------------------------------------------------------
def test_resize_position_interpolates_grid_wide_tables():
    from visionattn.layers.resize import resize_relative

    layer = _layer(Global(), (4, 4), "rel_bias", resize_position=True)
    out = layer(_x((6, 5)))  # needs ±(5, 4), the table covers ±(3, 3): interpolated
    assert out.shape == (2, 6, 5, DIM) and torch.isfinite(out).all()
    table = layer.position.table  # (heads, 7, 7)
    resized = resize_relative(RelativeBias(table), (5, 4)).table  # (heads, 11, 9)
    assert resized.shape == (HEADS, 11, 9)
    torch.testing.assert_close(resized[:, 5, 4], table[:, 3, 3])  # offset 0 stays offset 0
    assert resize_relative(RelativeBias(table), (2, 3)).table is table  # covered: untouched
    # equal to the operator with the interpolated table, and gradients reach the stored table
    x = _x((6, 5))
    q, k, v = layer.qkv(x).reshape(2, 6, 5, 3, HEADS, DIM // HEADS).unbind(-3)
    ref = layer.proj(attention(q, k, v, Global(), position=RelativeBias(resized), backend="reference").flatten(-2))
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)
    layer(x).sum().backward()
    assert layer.position.table.grad is not None and layer.position.table.grad.abs().sum() > 0
    logits = RelativeLogits((torch.randn(5, 12), torch.randn(3, 12)))
    grown = resize_relative(logits, (4, 1))
    assert [t.shape[0] for t in grown.tables] == [9, 3] and grown.tables[1] is logits.tables[1]
    torch.testing.assert_close(grown.tables[0][4], logits.tables[0][2])


def test_pattern_of_one_call_replaces_the_layers():
    layer = _layer(Window(4), (8, 8), "rel_bias")
    x = _x((3, 5))  # a grid smaller than the window: the layer's pattern does not fit
    with pytest.raises(ValueError, match="does not fit"):
        layer(x)
    out = layer(x, pattern=Window((3, 4)))  # a smaller window: the table's centre covers it
    q, k, v = layer.qkv(x).reshape(2, 3, 5, 3, HEADS, DIM // HEADS).unbind(-3)
    ref = attention(q, k, v, Window((3, 4)), position=layer.position.descriptor(), backend="reference")
    torch.testing.assert_close(out, layer.proj(ref.flatten(-2)), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="Pattern or None"):
        layer(x, pattern="window")


def test_learned_embedding_fitted_to_each_samples_content():
    from visionattn.layers.absolute import content_extent

    emb = LearnedPositionEmbedding((4, 4), 8)
    x = torch.zeros(2, 6, 5, 8)
    mask = torch.ones(2, 6, 5, dtype=torch.bool)
    mask[0, :3, :2] = False  # content 3×2
    mask[1] = False  # full 6×5
    assert content_extent(mask).tolist() == [[3, 2], [6, 5]]
    out = emb(x, padding_mask=mask)
    torch.testing.assert_close(out[0, :3, :2], emb.embedding((3, 2))[0])
    assert out[0, 3:].abs().sum() == 0 and out[0, :, 2:].abs().sum() == 0
    torch.testing.assert_close(out[1], emb(x[1:])[0])
    with pytest.raises(ValueError, match=r"padding_mask must be bool \(2, 6, 5\)"):
        emb(x, padding_mask=mask[:, :5])
