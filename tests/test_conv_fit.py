"""Experiment 'conv_as_attention': a relative-position attention layer can express (and learn) a 3×3 convolution.

The construction tests prove the expressivity claim exactly (weights set by hand → output equals ``conv2d``);
the trial tests prove that training finds it (the quick config of ``experiments/conv_as_attention.yaml``).
"""

from __future__ import annotations

import json
import math
import pathlib

import pytest
import torch
import torch.nn.functional as F
import yaml

from visionattn.cli import main
from visionattn.experiments.conv_fit import (
    METRICS,
    OFFSETS,
    apply_layer,
    build_conv_attention,
    check_params,
    effective_kernel,
    offset_attention,
    position_only_bound,
    relative_mse,
    run_trial,
    sample_images,
)
from visionattn.experiments.runner import resolve_entry
from visionattn.experiments.spec import load_spec, plan_runs
from visionattn.layers.attention import Attention
from visionattn.ops import Neighborhood

YAML = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "conv_as_attention.yaml"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the construction: exact expressivity -----------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("position", ["rel_bias", "rel_logits"])
def test_hand_built_layer_equals_conv2d(position, backend):
    """Cordonnier et al.'s construction: one head per offset, value = identity, proj block = kernel slice. The
    whole image is compared (borders included: the layer runs on the zero-padded token grid), odd H ≠ W."""
    g = _gen(1)
    weight, bias = torch.randn(5, 5, 3, 3, generator=g), torch.randn(5, generator=g)
    layer = build_conv_attention(weight, bias, position=position, backend=backend)
    x = torch.randn(2, 5, 7, 9, generator=g)
    expected = F.conv2d(x, weight, bias, padding=1)
    got = apply_layer(layer, x)
    assert got.shape == expected.shape == (2, 5, 7, 9)
    torch.testing.assert_close(got, expected, atol=2e-5 * float(expected.abs().max()), rtol=0)


def test_construction_without_selection_is_not_a_conv():
    """Control for the test above: with margin 0 every head averages its 3×3 window and the output is far from
    the convolution, so the equality above depends on the per-head offset selection."""
    g = _gen(2)
    weight = torch.randn(4, 4, 3, 3, generator=g)
    x = torch.randn(2, 4, 6, 6, generator=g)
    layer = build_conv_attention(weight, position="rel_bias", margin=0.0)
    with torch.no_grad():
        assert float(relative_mse(apply_layer(layer, x), F.conv2d(x, weight, padding=1))) > 0.3


@pytest.mark.parametrize("position", ["rel_bias", "rel_logits"])
def test_readouts_of_the_construction(position):
    """offset_attention sees head h on OFFSETS[h] alone, with no content dependence; effective_kernel gives back W."""
    g = _gen(3)
    weight = torch.randn(4, 4, 3, 3, generator=g)
    layer = build_conv_attention(weight, position=position)
    mean, std = offset_attention(layer, torch.randn(3, 4, 5, 6, generator=g))
    expected = torch.zeros(9, 3, 3)
    for h, (dy, dx) in enumerate(OFFSETS):
        expected[h, dy + 1, dx + 1] = 1.0
    torch.testing.assert_close(mean, expected, atol=1e-6, rtol=0)
    assert float(std.max()) < 1e-6
    torch.testing.assert_close(effective_kernel(layer, mean), weight, atol=1e-6, rtol=0)


def test_any_invertible_position_attention_expresses_the_conv():
    """One-hot heads are sufficient, not necessary: with position-only attention (q = k = 0) the layer is the
    convolution ``K[Δ] = Σ_h A[h, Δ] P_h V_h``; if the (9 heads × 9 offsets) matrix A of soft maps is invertible,
    solving ``Aᵀ M = W`` for the per-head maps ``M_h = P_h V_h`` makes the layer equal conv2d exactly."""
    g = _gen(4)
    c = 3
    weight = torch.randn(c, c, 3, 3, generator=g, dtype=torch.float64)
    layer = Attention(c, 9, Neighborhood(3, border="pad"), position="rel_bias", head_dim=c, backend="reference")
    layer = layer.double()
    with torch.no_grad():
        layer.position.table.copy_(torch.randn(9, 3, 3, generator=g, dtype=torch.float64))  # soft, not one-hot
        a = layer.position.table.flatten(1).softmax(-1)  # (heads, 9): an interior query sees all 9 offsets
        assert float(a.max()) < 0.9
        per_head = torch.linalg.solve(a.T, weight.permute(2, 3, 0, 1).reshape(9, c * c)).reshape(9, c, c)
        layer.qkv.weight.zero_()
        layer.qkv.bias.zero_()
        for h in range(9):
            layer.qkv.weight[2 * 9 * c + h * c : 2 * 9 * c + (h + 1) * c] = torch.eye(c, dtype=torch.float64)
            layer.proj.weight[:, h * c : (h + 1) * c] = per_head[h]
        layer.proj.bias.zero_()
    x = torch.randn(2, c, 5, 7, generator=g, dtype=torch.float64)
    expected = F.conv2d(x, weight, padding=1)
    # the reference backend computes in float32 whatever the input dtype: float32 tolerance
    torch.testing.assert_close(apply_layer(layer, x), expected, atol=2e-5 * float(expected.abs().max()), rtol=0)
    mean, _ = offset_attention(layer, x)
    torch.testing.assert_close(mean.flatten(1).double(), a, atol=1e-6, rtol=0)


def test_position_only_bound():
    """A kernel whose 9 slices span r matrices is reachable with r heads and not with r − 1; with no position
    information only the window average Σ_Δ W[Δ] is reachable."""
    g = _gen(6)
    r = 3
    basis, mix = torch.randn(r, 4, 4, generator=g), torch.randn(9, r, generator=g)
    kernel = torch.einsum("dr,roi->oid", mix, basis).reshape(4, 4, 3, 3)
    assert position_only_bound(kernel, r) < 1e-10
    assert position_only_bound(kernel, r - 1) > 0.01
    bounds = [position_only_bound(torch.randn(4, 4, 3, 3, generator=g), h) for h in range(1, 10)]
    assert bounds[-1] == 0.0 and all(a > b for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    constant = torch.randn(4, 4, 1, 1, generator=g).expand(4, 4, 3, 3)  # the same slice at every offset
    assert position_only_bound(constant, 9, "none") < 1e-10
    assert position_only_bound(kernel, 9, "none") > 0.1


def test_build_conv_attention_rejects_bad_input():
    with pytest.raises(ValueError, match=r"weight must be \(C_out, C_in, 3, 3\), got \(4, 4, 5, 5\)"):
        build_conv_attention(torch.randn(4, 4, 5, 5))
    with pytest.raises(ValueError, match="C_out == C_in, got 3 vs 4"):
        build_conv_attention(torch.randn(3, 4, 3, 3))
    with pytest.raises(ValueError, match="head_dim must be ≥ 4 for rel_logits with C=2, got 2"):
        build_conv_attention(torch.randn(2, 2, 3, 3), position="rel_logits", head_dim=2)
    with pytest.raises(ValueError, match="position must be 'rel_bias' or 'rel_logits', got 'rope'"):
        build_conv_attention(torch.randn(2, 2, 3, 3), position="rope")


# --- params and data --------------------------------------------------------------------------------------------
def test_check_params_names_the_bad_key():
    assert check_params({})["head_dim"] == check_params({})["channels"]
    with pytest.raises(ValueError, match=r"unknown keys \['stpes'\]"):
        check_params({"stpes": 10})
    with pytest.raises(ValueError, match="position must be one of .* got 'rel'"):
        check_params({"position": "rel"})
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        check_params({"steps": 0})
    with pytest.raises(ValueError, match="lr must be a positive number, got -1"):
        check_params({"lr": -1})
    with pytest.raises(ValueError, match="needs channels=3, got 8"):
        check_params({"input": "natural"})
    with pytest.raises(TypeError, match="must be a dict, got list"):
        check_params([])


def test_natural_crops_are_standardised_photographs():
    x = sample_images("natural", 6, 3, 16, _gen(5))
    assert x.shape == (6, 3, 16, 16) and torch.isfinite(x).all()
    assert float(x.std()) > 0.1
    # neighbouring pixels of photographs are strongly correlated, unlike the Gaussian input
    corr = torch.corrcoef(torch.stack([x[..., :-1].flatten(), x[..., 1:].flatten()]))[0, 1]
    assert float(corr) > 0.5
    g = sample_images("gaussian", 6, 3, 16, _gen(5))
    assert abs(float(torch.corrcoef(torch.stack([g[..., :-1].flatten(), g[..., 1:].flatten()]))[0, 1])) < 0.1


# --- the trial: learning finds the convolution ------------------------------------------------------------------
def _quick_params(**overrides) -> dict:
    config = yaml.safe_load(YAML.read_text())
    return {**config["base"], **config["quick"].get("base", {}), **overrides}


def test_yaml_follows_the_runner_schema():
    """The experiment file loads through the runner's validation, its entry is run_trial, and every run it plans
    (full and --quick) has valid params."""
    spec = load_spec(YAML)
    assert spec.name == "conv_as_attention" == YAML.stem
    assert spec.command == "visionattn experiment conv_as_attention"
    assert spec.kind == "function" and spec.seeds == [0, 1, 2]
    assert resolve_entry(spec.entry) is run_trial
    assert spec.metric in METRICS and all(key in METRICS for key in spec.report)
    assert spec.claim and spec.expected and "filled in" not in spec.expected
    plans = plan_runs(spec)
    assert len(plans) == 3 * len(spec.variants) >= 3 * 6
    for plan in plans + plan_runs(spec.with_quick()):
        check_params(plan.params)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``visionattn experiment conv_as_attention --quick`` through the experiment runner: seed 0 of the quick
    config, relative bias (9 heads) and the no-position control. → (exit code, output dir, {variant: metrics})."""
    out = tmp_path_factory.mktemp("conv_as_attention")
    code = main(["experiment", "conv_as_attention", "--quick", "--jobs", "1", "--out", str(out)])
    results = {}
    for path in sorted((out / "runs").glob("*/result.json")):
        result = json.loads(path.read_text())
        results[result["variant"]] = result
    return code, out, results


def test_quick_run_through_the_runner(quick_run):
    code, out, results = quick_run
    assert code == 0
    assert set(results) == set(yaml.safe_load(YAML.read_text())["quick"]["variants"])
    assert all(r["status"] == "ok" and r["seed"] == 0 for r in results.values())
    summary = json.loads((out / "results.json").read_text())
    assert summary["name"] == "conv_as_attention" and summary["failed"] == 0
    assert (out / "summary.md").read_text().count("relative_mse_final") >= 1


def test_quick_trial_learns_the_convolution(quick_run):
    _, out, results = quick_run
    metrics = results["rel_bias_9_heads"]["metrics"]
    assert set(metrics) == set(METRICS)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["relative_mse_initial"] > 0.5  # the random layer is no convolution
    assert metrics["relative_mse_final"] < metrics["relative_mse_initial"] / 30
    assert metrics["relative_mse_final"] < 0.03
    # the learned layer is the kernel itself, read from its attention maps and projections
    assert metrics["kernel_relative_error"] < 0.1
    assert metrics["attention_rank"] == 9.0
    run_dir = out / "runs" / "rel_bias_9_heads__seed0"
    png = run_dir / "conv_fit.png"
    assert png.stat().st_size > 20_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (run_dir / "loss_curve.csv").read_text().splitlines()
    assert rows[0] == "step,train_relative_mse" and len(rows) == 1 + _quick_params()["steps"]
    record = json.loads((run_dir / "attention.json").read_text())
    assert len(record["attention_mean"]) == 9 and record["metrics"] == metrics


def test_no_position_control_cannot_express_it(quick_run):
    """Without position information a query cannot tell its 9 keys apart by offset: the fit stalls."""
    _, _, results = quick_run
    fit = results["rel_bias_9_heads"]["metrics"]
    control = results["no_position_9_heads"]["metrics"]
    assert control["relative_mse_final"] > 0.3
    assert fit["position_only_bound"] == 0.0 and control["position_only_bound"] > 0.5
    assert control["relative_mse_final"] > 10 * fit["relative_mse_final"]
