"""The cost model (visionattn.analysis.cost, cost_table): analytic FLOPs against FLOPs counted by FlopCounterMode on
executions whose work is exactly the pattern's (only allowed pairs), analytic saved-activation bytes against the
storages saved_tensors_hooks sees on the executions the model names, the tutorial table, and `visionattn bench cost`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from visionattn.analysis.cost import (
    activation_bytes,
    count_saved_bytes,
    default_execution,
    operator_cost,
    operator_flops,
    pair_count,
    peak_bytes,
    preset_cost,
    saved_bytes,
)
from visionattn.analysis.cost_table import cost_table, counted_tutorial_flops, pattern_rows, tutorial_rows
from visionattn.cli import main
from visionattn.models import create_model
from visionattn.models.flops import attention_flops, count_flops, count_params
from visionattn.ops import Axial, Global, Graph, Halo, Neighborhood, Strided, Window, attention
from visionattn.ops.backends.base import feature_map
from visionattn.ops.call import make_call
from visionattn.ops.position import RelativeBias, RelativeLogits


def _graph() -> Graph:
    gen = torch.Generator().manual_seed(3)
    return Graph(torch.randint(0, 20, (31, 2), generator=gen), self_loops=True)


CASES = [  # (pattern, key grid): every pattern, 1-3 dims, odd sizes, borders, partial windows, strided queries
    (Global(), (5, 7)),
    (Global(), (23,)),
    (Global(), (3, 4, 5)),
    (Neighborhood(3), (7, 9)),
    (Neighborhood(5, dilation=2, border="pad"), (11, 6)),
    (Neighborhood((3, 5)), (6, 8)),
    (Neighborhood(3, border="pad"), (3, 4, 5)),
    (Window(4), (9, 10)),
    (Window(4, shift=2), (8, 11)),
    (Window(3), (7,)),
    (Halo(4, 1), (9, 8)),
    (Halo(4, 2, stride=2), (8, 12)),
    (Axial(0), (5, 7)),
    (Axial(1), (3, 4, 5)),
    (Strided(4, 5), (6, 7)),
    (Strided(3, 4, causal=True), (25,)),
    (_graph(), (4, 5)),
]
IDS = [f"{p!r}-{g}" for p, g in CASES]


def _inputs(pattern, grid, B=2, h=2, d=8, e=6, seed=0, requires_grad=False):
    """Seeded random q (B, *q_grid, h, d), k (B, *grid, h, d), v (B, *grid, h, e); v_dim != head_dim on purpose."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, *pattern.query_grid(grid), h, d, generator=gen)
    k = torch.randn(B, *grid, h, d, generator=gen)
    v = torch.randn(B, *grid, h, e, generator=gen)
    return [t.requires_grad_(requires_grad) for t in (q, k, v)]


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as mode:
        fn()
    return int(mode.get_total_flops())


# ---------------------------------------------------------------------------------------------------
# executions whose matmul work is exactly the allowed pairs (test oracles, checked against the reference)
def gathered_attention(q, k, v, pattern, form="softmax"):
    """Only the allowed pairs: queries grouped by their number n of allowed keys; per group each query's keys are
    gathered (B, h, G, n, d), logits (G, 1, d) @ (G, d, n), softmax (or φ-normalised), weights @ (G, n, e)."""
    B, h, d, e = q.shape[0], q.shape[-2], q.shape[-1], v.shape[-1]
    q_grid, kv_grid = tuple(q.shape[1:-2]), tuple(k.shape[1:-2])
    nq, nk = math.prod(q_grid), math.prod(kv_grid)
    scale = 1.0 if form == "linear" else d**-0.5
    mask = pattern.mask(kv_grid, q_grid)  # (Nq, Nk)
    qh, kh, vh = (t.reshape(B, -1, h, t.shape[-1]).transpose(1, 2) for t in (q, k, v))  # (B, h, N, .)
    counts = mask.sum(1)
    out = q.new_zeros(B, h, nq, e)
    for n in counts.unique().tolist():
        if n == 0:
            continue
        rows = (counts == n).nonzero().squeeze(1)  # (G,)
        keys = mask[rows].nonzero()[:, 1].reshape(len(rows), n)  # (G, n), row-major: each query's keys
        qg, kg, vg = qh[:, :, rows] * scale, kh[:, :, keys], vh[:, :, keys]  # (B,h,G,d) (B,h,G,n,d) (B,h,G,n,e)
        if form == "softmax":
            p = (qg.unsqueeze(-2) @ kg.transpose(-1, -2)).softmax(-1)  # (B, h, G, 1, n)
        else:
            w = feature_map(qg).unsqueeze(-2) @ feature_map(kg).transpose(-1, -2)
            p = w / w.sum(-1, keepdim=True)
        out[:, :, rows] = (p @ vg).squeeze(-2)
    assert nk == kh.shape[2]
    return out.transpose(1, 2).reshape(B, *q_grid, h, e)


def block_attention(q, k, v, pattern):
    """Block-diagonal patterns (Window incl. shifted, Axial, Global) as batched per-block matmuls: blocks are
    the distinct mask rows, grouped by size; (nb, s, d) @ (nb, d, s), softmax, @ (nb, s, e)."""
    B, h, d, e = q.shape[0], q.shape[-2], q.shape[-1], v.shape[-1]
    grid = tuple(k.shape[1:-2])
    mask = pattern.mask(grid)
    _, block = torch.unique(mask, dim=0, return_inverse=True)  # (N,) block id of every token
    assert torch.equal(mask, block[:, None] == block[None, :]), f"{pattern} is not block-diagonal on {grid}"
    sizes = torch.bincount(block)
    qh, kh, vh = (t.reshape(B, -1, h, t.shape[-1]).transpose(1, 2) for t in (q, k, v))
    out = q.new_zeros(B, h, qh.shape[2], e)
    for size in sizes.unique().tolist():
        members = torch.stack([(block == b).nonzero().squeeze(1) for b in (sizes == size).nonzero().squeeze(1)])
        qb, kb, vb = qh[:, :, members] * d**-0.5, kh[:, :, members], vh[:, :, members]  # (B, h, nb, s, .)
        out[:, :, members] = (qb @ kb.transpose(-1, -2)).softmax(-1) @ vb
    return out.transpose(1, 2).reshape(B, *grid, h, e)


@pytest.mark.parametrize("form", ["softmax", "linear"])
@pytest.mark.parametrize(("pattern", "grid"), CASES, ids=IDS)
def test_gathered_execution_equals_reference(pattern, grid, form):
    q, k, v = _inputs(pattern, grid, requires_grad=True)
    ours = gathered_attention(q, k, v, pattern, form)
    ref = attention(q, k, v, pattern, form=form, backend="reference")
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(ours, (q, k, v), g)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


BLOCK_CASES = [(Window(4), (9, 10)), (Window(4, shift=2), (8, 11)), (Window(3), (7,)), (Axial(0), (5, 7)),
               (Axial(1), (3, 4, 5)), (Global(), (5, 7))]


@pytest.mark.parametrize(("pattern", "grid"), BLOCK_CASES, ids=[f"{p!r}-{g}" for p, g in BLOCK_CASES])
def test_block_execution_counts_exactly_the_pattern(pattern, grid):
    """Window as batched per-window matmuls (and Axial as per-line ones): equals the reference, and the counted
    FLOPs equal the analytic ones."""
    q, k, v = _inputs(pattern, grid)
    torch.testing.assert_close(block_attention(q, k, v, pattern), attention(q, k, v, pattern, backend="reference"),
                               rtol=1e-5, atol=1e-5)
    counted = _counted(lambda: block_attention(q, k, v, pattern))
    analytic = operator_flops(pattern, grid, heads=2, head_dim=8, v_dim=6, batch=2)
    assert counted > 0 and abs(analytic - counted) <= 0.01 * counted, (analytic, counted)


# ---------------------------------------------------------------------------------------------------
# FLOPs
@pytest.mark.parametrize("form", ["softmax", "linear"])
@pytest.mark.parametrize(("pattern", "grid"), CASES, ids=IDS)
def test_analytic_flops_equal_counted(pattern, grid, form):
    """Counted on an execution doing exactly the pattern's work: the linear backend's two matmuls (+ normaliser)
    for the linear form on Global, else only the allowed pairs (gathered); also the reference for Global softmax."""
    q, k, v = _inputs(pattern, grid)
    if form == "linear" and isinstance(pattern, Global):
        counted = _counted(lambda: attention(q, k, v, pattern, form="linear", backend="linear"))
    else:
        counted = _counted(lambda: gathered_attention(q, k, v, pattern, form))
    if form == "softmax" and isinstance(pattern, Global):
        assert _counted(lambda: attention(q, k, v, pattern, backend="reference")) == counted
    analytic = operator_flops(pattern, grid, heads=2, head_dim=8, v_dim=6, batch=2, form=form)
    assert counted > 0 and abs(analytic - counted) <= 0.01 * counted, (analytic, counted)
    assert operator_cost(pattern, grid, heads=2, head_dim=8, v_dim=6, batch=2, form=form).macs == analytic // 2


def test_relative_logits_flops_equal_counted_on_reference():
    """The q·r term: what the reference backend's einsum against the tables costs beyond QKᵀ and AV."""
    pattern, grid = Halo(4, 1), (9, 8)
    q, k, v = _inputs(pattern, grid, d=8, e=8)
    tables = tuple(torch.randn(2 * r + 1, 8) for r in pattern.max_offset(grid))
    with_pos = _counted(lambda: attention(q, k, v, pattern, position=RelativeLogits(tables), backend="reference"))
    without = _counted(lambda: attention(q, k, v, pattern, backend="reference"))
    kw = dict(heads=2, head_dim=8, batch=2)
    analytic = operator_flops(pattern, grid, position="relative_logits", **kw) - operator_flops(pattern, grid, **kw)
    assert analytic == with_pos - without > 0


def test_naive_formulas_would_be_caught():
    """The comparisons above can fail: textbook shortcuts miss the borders, partial windows and the normaliser."""
    B, h, d, e = 2, 2, 8, 6

    def counted_pairs_flops(pattern, grid):
        q, k, v = _inputs(pattern, grid)
        return _counted(lambda: gathered_attention(q, k, v, pattern))

    naive = {  # pattern, grid, pairs a textbook formula would use
        "neighborhood pad: N·k²": (Neighborhood(5, border="pad"), (7, 9), 63 * 25),
        "shifted window: N·w²": (Window(4, shift=2), (8, 12), 96 * 16),
        "halo: N·(b+2h)²": (Halo(4, 2), (9, 8), 72 * 64),
        "strided: N·(2l-1+N/s)": (Strided(4, 5), (6, 7), 42 * (7 + 42 // 5)),
    }
    for name, (pattern, grid, pairs) in naive.items():
        counted = counted_pairs_flops(pattern, grid)
        assert abs(B * h * 2 * pairs * (d + e) - counted) > 0.01 * counted, name
        assert abs(operator_flops(pattern, grid, heads=h, head_dim=d, v_dim=e, batch=B) - counted) <= 0.01 * counted
    q, k, v = _inputs(Global(), (5, 7))
    counted = _counted(lambda: attention(q, k, v, Global(), form="linear", backend="linear"))
    without_normaliser = B * h * 4 * 35 * d * e
    assert abs(without_normaliser - counted) > 0.01 * counted


@pytest.mark.parametrize("position", [None, "relative_logits"])
@pytest.mark.parametrize(("pattern", "grid"), CASES, ids=IDS)
def test_operator_flops_equal_model_counting(pattern, grid, position):
    """Same figure as visionattn.models.flops.attention_flops (what count_flops uses for whole models)."""
    q, k, v = _inputs(pattern, grid, d=8, e=8)
    pos = None
    if position == "relative_logits":
        pos = RelativeLogits(tuple(torch.randn(2 * r + 1, 8) for r in pattern.max_offset(grid)))
    call = make_call(q, k, v, pattern, pos, "softmax", None, None)
    assert operator_flops(pattern, grid, heads=2, head_dim=8, batch=2, position=position) == attention_flops(call)


@pytest.mark.parametrize(("pattern", "grid"), [*CASES, (Strided(7, 3), (40, 50)), (Strided(5, 9, causal=True),
                                                                                      (33, 31))])
def test_pair_count_equals_dense_mask(pattern, grid):
    assert pair_count(pattern, grid) == int(pattern.mask(grid).sum())


# ---------------------------------------------------------------------------------------------------
# memory
FLASH, MATH = SDPBackend.FLASH_ATTENTION, SDPBackend.MATH
MEMORY_CASES = [  # pattern, grid, execution, backend, forced SDPA kernel, form, v_dim
    (Global(), (5, 7), "reference", "reference", None, "softmax", 6),
    (Window(4), (6, 7), "reference", "reference", None, "softmax", 8),
    (Strided(4, 5), (6, 7), "reference", "reference", None, "softmax", 8),
    (Halo(4, 1, stride=2), (8, 12), "reference", "reference", None, "softmax", 6),
    (Window(4), (6, 7), "reference", "reference", None, "linear", 8),
    (Neighborhood(3), (7, 8), "reference", "reference", None, "linear", 6),
    (Global(), (5, 7), "linear", "linear", None, "linear", 8),
    (Global(), (23,), "linear", "linear", None, "linear", 6),
    (Window(4), (6, 7), "blocked-flash", "blocked", FLASH, "softmax", 8),
    (Neighborhood(3), (9, 11), "blocked-flash", "blocked", FLASH, "softmax", 8),
    (Neighborhood(5, dilation=2, border="pad"), (9, 11), "blocked-flash", "blocked", FLASH, "softmax", 8),
    (Halo(4, 1), (9, 11), "blocked-flash", "blocked", FLASH, "softmax", 8),
    (Halo(4, 1, stride=2), (8, 12), "blocked-flash", "blocked", FLASH, "softmax", 8),
    (Axial(1), (9, 11), "blocked-flash", "blocked", FLASH, "softmax", 8),
    (Global(), (3, 4, 5), "blocked-flash", "blocked", FLASH, "softmax", 8),
    (Global(), (40,), "blocked-flash", "blocked", FLASH, "softmax", 8),
    (Window(4, shift=2), (8, 12), "blocked-flash", "blocked", FLASH, "softmax", 8),
    (Window(4), (6, 7), "blocked-math", "blocked", MATH, "softmax", 6),
    (Neighborhood(3), (9, 11), "blocked-math", "blocked", MATH, "softmax", 8),
    (Global(), (6, 7), "blocked-math", "blocked", MATH, "softmax", 6),
]


def _saved(pattern, grid, backend, kernel, form, e, B=3, h=2, d=8, position=None, params=()):
    q, k, v = _inputs(pattern, grid, B=B, h=h, d=d, e=e, requires_grad=True)
    with sdpa_kernel(kernel) if kernel is not None else contextlib.nullcontext():
        n, out = count_saved_bytes(lambda: attention(q, k, v, pattern, form=form, backend=backend,
                                                     position=position), params)
    assert out.requires_grad
    return n


@pytest.mark.parametrize(("pattern", "grid", "execution", "backend", "kernel", "form", "e"), MEMORY_CASES,
                         ids=[f"{c[2]}-{c[0]!r}-{c[1]}-{c[5]}" for c in MEMORY_CASES])
def test_saved_bytes_equal_hooks(pattern, grid, execution, backend, kernel, form, e):
    counted = _saved(pattern, grid, backend, kernel, form, e)
    model = saved_bytes(pattern, grid, heads=2, head_dim=8, v_dim=e, batch=3, form=form, execution=execution)
    assert counted > 0 and abs(model - counted) <= 0.01 * counted, (model, counted)


@pytest.mark.parametrize("v_dim", [8, 6])
def test_default_execution_is_what_auto_runs(v_dim):
    """backend='auto' on CPU takes the blocked flash kernel iff v_dim == head_dim; the other model is >1 % off."""
    pattern, grid = Window(4), (6, 7)
    counted = _saved(pattern, grid, "auto", None, "softmax", v_dim)
    chosen = default_execution(pattern, "softmax", 8, v_dim)
    assert chosen == ("blocked-flash" if v_dim == 8 else "blocked-math")
    kw = dict(heads=2, head_dim=8, v_dim=v_dim, batch=3)
    assert abs(saved_bytes(pattern, grid, **kw) - counted) <= 0.01 * counted
    other = "blocked-math" if chosen == "blocked-flash" else "blocked-flash"
    assert abs(saved_bytes(pattern, grid, execution=other, **kw) - counted) > 0.01 * counted


@pytest.mark.parametrize(("pattern", "grid"), [(Halo(4, 1), (9, 11)), (Window(4), (9, 11)), (Global(), (5, 6)),
                                               (Halo(4, 1, stride=2), (8, 12))])
def test_saved_bytes_with_relative_positions(pattern, grid):
    """Learnable relative bias (its own biased attention): to 1 %; relative logits folded into flash: to 10 %."""
    radius = pattern.max_offset(grid)
    table = torch.randn(2, *(2 * r + 1 for r in radius), requires_grad=True)
    counted = _saved(pattern, grid, "auto", None, "softmax", 8, B=2, position=RelativeBias(table), params=(table,))
    model = saved_bytes(pattern, grid, heads=2, head_dim=8, batch=2, position="relative_bias")
    assert abs(model - counted) <= 0.01 * counted, (model, counted)
    tables = tuple(torch.randn(2 * r + 1, 8, requires_grad=True) for r in radius)
    counted = _saved(pattern, grid, "auto", None, "softmax", 8, B=2, position=RelativeLogits(tables), params=tables)
    model = saved_bytes(pattern, grid, heads=2, head_dim=8, batch=2, position="relative_logits")
    assert abs(model - counted) <= 0.10 * counted, (model, counted)


def test_memory_grows_quadratically_only_for_dense_weights():
    kw = dict(heads=4, head_dim=32)
    for execution, pattern, low, high in (("reference", Global(), 14, 16.5), ("blocked-flash", Global(), 3.9, 4.1),
                                          ("blocked-flash", Neighborhood(7), 3.5, 4.5), ("linear", Global(), 3.9, 4.1)):
        form = "linear" if execution == "linear" else "softmax"
        small = saved_bytes(pattern, (32, 32), form=form, execution=execution, **kw)
        big = saved_bytes(pattern, (64, 64), form=form, execution=execution, **kw)
        assert low < big / small < high, (execution, pattern, big / small)
        assert peak_bytes(pattern, (64, 64), form=form, execution=execution, **kw) > big


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(TypeError, match="pattern must be"):
        operator_flops("window", (8, 8), heads=1, head_dim=8)
    with pytest.raises(ValueError, match="heads must be a positive int, got 0"):
        operator_flops(Global(), (8, 8), heads=0, head_dim=8)
    with pytest.raises(ValueError, match=r"grid must hold positive ints, got \(0, 5\)"):
        saved_bytes(Global(), (0, 5), heads=1, head_dim=8)
    with pytest.raises(ValueError, match="form must be one of"):
        operator_flops(Global(), (8, 8), heads=1, head_dim=8, form="cosine")
    with pytest.raises(ValueError, match="window 4 does not fit grid axis 0 of length 3"):
        operator_flops(Window(4), (3, 8), heads=1, head_dim=8)
    with pytest.raises(ValueError, match="execution 'blocked-flash' runs form='softmax'"):
        saved_bytes(Global(), (8, 8), heads=1, head_dim=8, form="linear", execution="blocked-flash")
    with pytest.raises(ValueError, match="execution must be one of"):
        saved_bytes(Global(), (8, 8), heads=1, head_dim=8, execution="flash")
    with pytest.raises(ValueError, match="no logits to add position='relative_bias'"):
        operator_flops(Global(), (8, 8), heads=1, head_dim=8, form="linear", position="relative_bias")


# ---------------------------------------------------------------------------------------------------
# whole presets
def test_preset_cost_rows():
    rows = preset_cost("vit_tiny_test", [32, 64])
    assert [r["img_size"] for r in rows] == [32, 64]
    for row in rows:
        model = create_model("vit_tiny_test", img_size=row["img_size"])
        assert row["params"] == count_params(model)
        counts = count_flops(model, row["img_size"])  # on CPU, executing everything but the operator
        assert row["gmacs"] == round(counts["macs"] / 1e9, 4)
        assert row["attn_gmacs"] == round(counts["attention"] / 2e9, 4)
        assert row["attention_calls"] == 2 and row["activation_mib"] > row["attn_activation_mib"] > 0
    assert rows[1]["gmacs"] > 3 * rows[0]["gmacs"]  # 4x the tokens
    with pytest.raises(ValueError, match="resolution 36 fails"):
        preset_cost("vit_tiny_test", [36])
    with pytest.raises(ValueError, match="unknown model"):
        preset_cost("vit_tiny_tset", [32])


@pytest.mark.parametrize(("name", "tolerance"), [("vit_tiny_test", 0.01), ("swin_test", 0.01),
                                                 ("halonet_test", 0.01), ("axial_resnet_test", 0.10)])
def test_activation_bytes_match_a_real_forward(name, tolerance):
    """Attention analytic, the rest counted: against saved_tensors_hooks on a real forward that runs the operator.
    1 % for ViT (flash), Swin (learnable relative bias), HaloNet; 10 % where relative logits dominate (axial)."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    size = model.preset.img_size
    x = torch.randn(1, 3, size, size)
    counted, _ = count_saved_bytes(lambda: model(x), (*model.parameters(), *model.buffers()))
    modelled = activation_bytes(model, size)
    assert abs(modelled["total"] - counted) <= tolerance * counted, (modelled, counted)
    assert modelled["attention_calls"] > 0 and 0 < modelled["attention"] < modelled["total"]


# ---------------------------------------------------------------------------------------------------
# the tutorial table and `visionattn bench cost`
def test_tutorial_table_exact():
    rows = cost_table()
    assert [(r["operation"], r["flops"], r["as_1e"]) for r in rows[:3]] == [
        ("Self-Attention", 4 * 10**9, "4·10^9"), ("RNN (LSTM)", 16 * 10**9, "16·10^9"),
        ("Convolution", 6 * 10**9, "6·10^9")]
    by_name = {r["operation"]: r["flops"] for r in rows[3:]}
    n = d = 1000
    assert by_name["Global (self-attention)"] == 4 * n * n * d
    assert by_name["Neighborhood(3)"] == 4 * n * 3 * d
    assert by_name["Window(8)"] == 4 * n * 8 * d
    assert by_name["Axial, 25x40 grid (H + W passes)"] == 4 * n * (25 + 40) * d
    assert by_name["Global, linear form"] == 4 * n * d * d + 2 * n * d
    assert len(pattern_rows()) == 7


@pytest.mark.parametrize(("length", "dim", "kernel"), [(9, 12, 3), (7, 5, 5)])
def test_tutorial_constant_factors_counted(length, dim, kernel):
    """nn.LSTM, nn.Conv1d and the reference backend counted by FlopCounterMode (meta device) give the factors."""
    counted = counted_tutorial_flops(length, dim, kernel)
    assert counted == {r["operation"]: r["flops"] for r in tutorial_rows(length, dim, kernel)}


def test_cli_bench_cost(capsys):
    assert main(["bench", "cost"]) == 0
    out = capsys.readouterr().out
    for text in ("Self-Attention", "4·10^9", "RNN (LSTM)", "16·10^9", "Convolution", "6·10^9",
                 "length=1000 dim=1000 kernel_width=3", "constant factors:", "-> 16*length*dim^2",
                 "Neighborhood(3)", "Axial, 25x40 grid", "Global, linear form"):
        assert text in out, text
    assert main(["bench", "cost", "--format", "csv", "--length", "64", "--dim", "32", "--kernel", "5"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["flops"]) for r in rows[:3]] == [4 * 64 * 64 * 32, 16 * 64 * 32 * 32, 2 * 5 * 64 * 32 * 32]
    assert rows[4]["operation"] == "Neighborhood(5)" and int(rows[4]["pairs"]) == 64 * 5


def test_cli_bench_cost_errors_and_preset(capsys):
    assert main(["bench", "cost", "--kernel", "4"]) == 2
    assert capsys.readouterr().err.startswith("visionattn bench cost: error: kernel must be odd")
    assert main(["bench", "cost", "--preset", "vit_tiny_test", "--resolutions", "32,x"]) == 2
    assert "--resolutions" in capsys.readouterr().err
    assert main(["bench", "cost", "--preset", "vit_tiny_test", "--resolutions", "32,64"]) == 0
    out = capsys.readouterr().out
    assert "activation_mib" in out and out.count("vit_tiny_test") == 2
