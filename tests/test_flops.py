"""FLOP counting: the analytic attention cost vs torch's FlopCounterMode on the dense reference, allowed pairs
vs the dense mask, and published model figures (in MACs, as timm and the papers print them)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from visionattn.layers import Attention
from visionattn.models import list_models
from visionattn.models.flops import AttentionCounter, allowed_pairs, attention_flops, count_flops, count_params
from visionattn.ops import Axial, Global, Graph, Halo, Neighborhood, Strided, Window, attention, intercept_attention
from visionattn.ops.call import make_call


def _reference_flops(layer: Attention, x: torch.Tensor) -> tuple[int, int]:
    """(FLOPs of the whole layer on the reference backend, FLOPs of its projections only)."""
    with FlopCounterMode(display=False) as dense:
        layer(x)
    counter = AttentionCounter()
    with intercept_attention(counter), FlopCounterMode(display=False) as rest:
        layer(x)
    return dense.get_total_flops(), rest.get_total_flops(), counter.flops


@pytest.mark.parametrize("position", ["none", "rel_logits"])
@pytest.mark.parametrize("grid", [(37,), (6, 9), (3, 4, 5)])
def test_global_analytic_equals_flop_counter_on_reference(grid, position):
    torch.manual_seed(0)
    layer = Attention(48, 3, Global(), position=position, backend="reference", grid_size=grid)
    x = torch.randn(2, *grid, 48)
    dense, projections, analytic = _reference_flops(layer, x)
    measured = dense - projections  # what FlopCounterMode saw inside the operator: QK^T, AV (and q·r)
    assert measured > 0
    assert abs(analytic - measured) <= 0.01 * measured, (analytic, measured)
    n = math.prod(grid)
    expected = 2 * 3 * (2 * n * n * 16 + 2 * n * n * 16)
    if position == "rel_logits":
        expected += 2 * 3 * sum(2 * n * (2 * (g - 1) + 1) * 16 for g in grid)
    assert analytic == expected


def test_count_flops_of_attention_layer_matches_dense_reference():
    """count_flops on a module = FlopCounterMode on the dense reference for Global (no double counting)."""

    class Wrap(torch.nn.Module):  # images (B, 3, H, W) -> channels-last tokens -> Global attention
        def __init__(self):
            super().__init__()
            self.attn = Attention(3, 1, Global(), backend="reference")

        def forward(self, x):
            return self.attn(x.permute(0, 2, 3, 1))  # (B, H, W, 3)

    model = Wrap()
    counts = count_flops(model, 8, batch=2)
    with FlopCounterMode(display=False) as dense, torch.no_grad():
        model(torch.randn(2, 3, 8, 8))
    assert counts["total"] == dense.get_total_flops()
    assert counts["total"] == counts["attention"] + counts["other"] == counts["flops"]
    assert counts["macs"] == counts["total"] // 2 and counts["attention_calls"] == 1


LOCAL = [
    (Neighborhood(3), (7, 9)),
    (Neighborhood(5, dilation=2, border="pad"), (11, 6)),
    (Neighborhood((3, 5), border="shift"), (6, 8)),
    (Window(4), (9, 10)),
    (Window(4, shift=2), (8, 12)),
    (Halo(4, 1), (9, 8)),
    (Halo(4, 2, stride=2), (8, 12)),
    (Axial(0), (5, 7)),
    (Axial(1), (3, 4, 5)),
    (Global(), (4, 6)),
    (Strided(4, 5), (6, 7)),
]


@pytest.mark.parametrize("pattern,grid", LOCAL, ids=[f"{p}-{g}" for p, g in LOCAL])
def test_allowed_pairs_equal_dense_mask(pattern, grid):
    assert allowed_pairs(pattern, grid) == int(pattern.mask(grid).sum())


@pytest.mark.parametrize("pattern,grid", LOCAL[:7], ids=[f"{p}-{g}" for p, g in LOCAL[:7]])
def test_allowed_pairs_with_key_padding(pattern, grid):
    torch.manual_seed(1)
    pad = torch.rand(3, *grid) < 0.3  # (B, *grid)
    mask = pattern.mask(grid)  # (Nq, Nk)
    expected = sum(int((mask & ~p.reshape(1, -1)).sum()) for p in pad)
    assert allowed_pairs(pattern, grid, key_padding_mask=pad) == expected


def test_graph_pairs_and_large_grid_stays_per_axis():
    edges = torch.tensor([[0, 1], [1, 2], [3, 0]])
    assert allowed_pairs(Graph(edges), (5,)) == 3 + 5
    # a 256x256 grid: a dense mask would be 4.3e9 entries; the per-axis product is instant
    assert allowed_pairs(Neighborhood(7), (256, 256)) == (256 * 7) ** 2
    assert allowed_pairs(Window(8), (256, 256)) == (256 * 8) ** 2


def test_attention_flops_local_pattern_formula():
    q = torch.randn(2, 8, 8, 4, 16)
    v = torch.randn(2, 8, 8, 4, 24)
    call = make_call(q, q, v, Neighborhood(3), None, "softmax", None, None)
    pairs = int(Neighborhood(3).mask((8, 8)).sum())
    assert attention_flops(call) == 2 * 4 * (2 * pairs * 16 + 2 * pairs * 24)


def test_linear_form_global_counts_the_reordered_product():
    q = torch.randn(1, 50, 2, 8)
    call = make_call(q, q, q, Global(), None, "linear", None, None)
    with FlopCounterMode(display=False) as fc:
        attention(q, q, q, Global(), form="linear", backend="linear")
    assert abs(attention_flops(call) - fc.get_total_flops()) <= 0.01 * fc.get_total_flops()


def test_counter_returns_correct_shape_and_nothing_runs():
    counter = AttentionCounter()
    q = torch.randn(2, 4, 4, 3, 4)  # strided Halo: queries on the (4, 4) subgrid
    k = torch.randn(2, 8, 8, 3, 4)
    v = torch.randn(2, 8, 8, 3, 5)
    with intercept_attention(counter):
        out = attention(q, k, v, Halo(4, 1, stride=2))
    assert out.shape == (2, 4, 4, 3, 5) and not out.any() and counter.calls == 1


def _needs(name: str):
    if name not in list_models():
        pytest.skip(f"{name} is not registered yet")


@pytest.mark.parametrize(
    "name,gmacs,tol",
    [
        ("vit_base_patch16_224", 17.6, 0.01),  # timm / DeiT table: 17.6 "GFLOPs" = GMACs
        ("vit_tiny_patch16_224", 1.26, 0.01),
        ("deit_small_patch16_224", 4.6, 0.01),
        ("resnet50", 4.1, 0.02),  # timm: 4.11 GMACs
        ("swin_tiny_patch4_window7_224", 4.5, 0.02),  # Swin paper: 4.5G
    ],
)
def test_known_model_figures(name, gmacs, tol):
    _needs(name)
    from visionattn.models import create_model

    with torch.device("cpu"):
        model = create_model(name)
    counts = count_flops(model, 224)
    assert abs(counts["macs"] / 1e9 - gmacs) <= tol * gmacs, counts


def test_count_flops_matches_timm_for_vit_tiny():
    """Same architecture, same count: our ViT-Ti (attention analytic) vs timm's (SDPA forced to math)."""
    _needs("vit_tiny_patch16_224")
    timm = pytest.importorskip("timm")
    from visionattn.models import create_model

    ours = create_model("vit_tiny_patch16_224")
    theirs = timm.create_model("vit_tiny_patch16_224")
    assert count_params(ours) == count_params(theirs)
    a, b = count_flops(ours, 224)["total"], count_flops(theirs, 224)["total"]
    assert abs(a - b) <= 0.001 * b, (a, b)


def test_summary_rows_count_on_the_meta_device_exactly_as_on_the_cpu():
    """`visionattn models` builds each preset on the meta device; every tiny preset's counts equal a CPU build's."""
    from visionattn.models import create_model, get_preset, list_models
    from visionattn.models.flops import count_flops, count_params
    from visionattn.models.summary import preset_row

    for name in list_models("*_test"):
        row = preset_row(name)
        model = create_model(name)
        counts = count_flops(model, get_preset(name).img_size, batch=1)
        assert row["params"] == count_params(model), name
        assert row["gmacs"] == float(f"{counts['macs'] / 1e9:.4g}"), name
