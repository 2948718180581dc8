"""The experiment framework (``visionattn experiment``): schema errors, the run plan, the table's numbers against a
hand computation, crashed runs, resume, worker processes, the ordering verdicts, and ``--quick`` runs of the real
experiments (learning happened: accuracy well above chance). Also ``data.train_fraction`` and the experiment
backbone ``exp_attn_resnet`` in every pattern x position.

The framework tests use kind ``function`` with :func:`toy_metric` below (milliseconds per run); the
``--quick`` setting of every train experiment runs in the default suite (conv_as_attention's in test_conv_fit.py).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENTRY = f"{Path(__file__).stem}:toy_metric"


def toy_metric(params: dict, seed: int, out_dir: Path) -> dict:
    """A kind-function entry: ``score = base + 0.1 * seed ** 2`` (a known spread), ``other = 2 * score``; appends
    a line to ``params["counter"]`` per call; ``crash`` raises, ``die`` kills the worker process."""
    if params.get("counter"):
        with open(params["counter"], "a") as f:
            f.write(f"{params['base']} {seed}\n")
    if params.get("crash") and seed in params.get("crash_seeds", [seed]):
        raise RuntimeError(f"toy crash at seed {seed}")
    if params.get("die"):
        os._exit(3)
    (out_dir / "toy.txt").write_text("ok")
    score = float(params["base"]) + float(params.get("offset", 0.0)) + 0.1 * seed**2
    return {"score": score, "other": 2 * score}


def _write(tmp_path: Path, spec: dict, name: str = "toy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _toy_spec(**extra) -> dict:
    spec = {"name": "toy", "claim": "b beats a", "command": "visionattn experiment toy", "seeds": [0, 1, 2],
            "kind": "function", "entry": ENTRY, "metric": "score", "base": {"base": 1.0},
            "variants": {"a": {}, "b": {"base": 2.0}}, "ordering": ["a < b"], "report": ["other"]}
    spec.update(extra)
    return spec


def _run(spec_path: Path, out: Path, jobs: int = 1, **kwargs):
    from visionattn.experiments.runner import run_experiment
    from visionattn.experiments.spec import load_spec

    return run_experiment(load_spec(spec_path), out, jobs=jobs, log=lambda m: None, **kwargs)


# -- schema ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, words", [
    ({"seeds": []}, ["'seeds'", "non-empty list", "[]"]),
    ({"seeds": [0, 0]}, ["'seeds'", "distinct"]),
    ({"kind": "trian"}, ["'kind'", "one of ['train', 'function']", "'trian'"]),
    ({"entry": "no_colon"}, ["'entry'", "module:function", "'no_colon'"]),
    ({"variants": {}}, ["'variants'", "non-empty mapping"]),
    ({"variants": {"a": 3}}, ["'variants.a'", "a mapping", "3"]),
    ({"sweep": {"x": [1, 2], "y": [1]}}, ["'sweep'", "equal length"]),
    ({"sweep": {"x": []}}, ["'sweep.x'", "non-empty list"]),
    ({"ordering": ["a > b"]}, ["'ordering'", "'variant_a < variant_b'", "'a > b'"]),
    ({"ordering": ["a < c"]}, ["'ordering'", "variant names from ['a', 'b']", "'c'"]),
    ({"quick": {"variants": ["zz"]}}, ["'quick.variants'", "'zz'"]),
    ({"quick": {"epochs": 1}}, ["'quick'", "keys from"]),
    ({"plot": {"xscale": "sqrt"}}, ["'plot.xscale'", "'sqrt'"]),
    ({"plot": {"x": 3}}, ["'plot.x'", "a metric key or a list"]),
    ({"metrc": "x"}, ["unknown key 'metrc'", "did you mean 'metric'"]),
    ({"name": "bad name"}, ["'name'", "'bad name'"]),
])
def test_schema_errors_name_file_key_expected_and_got(tmp_path, change, words):
    from visionattn.experiments.spec import SpecError, load_spec

    path = _write(tmp_path, _toy_spec(**change))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message, (word, message)


def test_schema_missing_keys_and_bad_train_config(tmp_path):
    from visionattn.experiments.runner import check_plans
    from visionattn.experiments.spec import SpecError, load_spec, plan_runs

    spec = _toy_spec()
    del spec["metric"], spec["claim"]
    with pytest.raises(SpecError, match=r"missing key\(s\) \['claim', 'metric'\]"):
        load_spec(_write(tmp_path, spec))
    train = {"name": "t", "claim": "c", "command": "visionattn experiment t", "seeds": [0], "kind": "train",
             "metric": "val_top1", "base": {"schedule.epoch": 3}, "variants": {"v": {}}}
    loaded = load_spec(_write(tmp_path, train, "t.yaml"))
    with pytest.raises(SpecError, match=r"variant 'v': unknown config key 'schedule.epoch' \(did you mean 'epochs'"):
        check_plans(loaded, plan_runs(loaded), tmp_path)
    missing_entry = load_spec(_write(tmp_path, _toy_spec(entry="no_such_module_xyz:f"), "m.yaml"))
    with pytest.raises(SpecError, match="cannot import module 'no_such_module_xyz'"):
        check_plans(missing_entry, plan_runs(missing_entry), tmp_path)


def test_plan_expands_variants_zipped_sweep_and_seeds(tmp_path):
    from visionattn.experiments.spec import SpecError, load_spec, plan_runs

    spec = load_spec(_write(tmp_path, _toy_spec(
        base={"base": 1.0, "model.overrides": {"kernel": 3, "heads": 2}, "seed_copy": "${seed}"},
        variants={"a": {"model.overrides.kernel": 5}, "b": {"model": {"overrides": {"heads": 4}}}},
        sweep={"data.train_fraction": [0.1, 1.0], "schedule.epochs": [30, 3]}, seeds=[0, 7])))
    plans = plan_runs(spec)
    assert [(p.variant, p.x, p.seed) for p in plans] == [
        ("a", 0.1, 0), ("a", 0.1, 7), ("a", 1.0, 0), ("a", 1.0, 7),
        ("b", 0.1, 0), ("b", 0.1, 7), ("b", 1.0, 0), ("b", 1.0, 7)]
    first = plans[1]
    assert first.params["model"]["overrides"] == {"kernel": 5, "heads": 2}  # deep merge, dotted key
    assert plans[4].params["model"]["overrides"] == {"kernel": 3, "heads": 4}  # nested key
    assert first.params["data"]["train_fraction"] == 0.1 and first.params["schedule"]["epochs"] == 30  # zipped
    assert first.params["seed_copy"] == 7  # ${seed}
    assert first.run_id == "a__train_fraction-0.1__seed7"
    assert len({p.run_id for p in plans}) == len(plans)
    with pytest.raises(SpecError, match=r"override\(s\) \['schedule.epochs'\] would replace the sweep"):
        plan_runs(spec, {"schedule": {"epochs": 2}})
    quick = spec.with_quick()
    assert quick.variants.keys() == spec.variants.keys()


# -- the table: per-seed rows, mean ± std by hand, a crashed run ----------------------------------------------------
def test_table_numbers_match_a_hand_computation_and_a_crash_is_reported(tmp_path):
    spec = _toy_spec(variants={"a": {}, "b": {"base": 2.0}, "c": {"base": 3.0, "crash": True, "crash_seeds": [1]}},
                     ordering=["a < b", "b < c"])
    result = _run(_write(tmp_path, spec), tmp_path / "out")
    out = tmp_path / "out"
    assert result["failed"] == 1 and result["n_runs"] == 9

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["variant"], r["seed"], r["status"]) for r in rows] == [
        ("a", "0", "ok"), ("a", "1", "ok"), ("a", "2", "ok"), ("b", "0", "ok"), ("b", "1", "ok"), ("b", "2", "ok"),
        ("c", "0", "ok"), ("c", "1", "failed"), ("c", "2", "ok")]
    assert float(rows[2]["score"]) == pytest.approx(1.4) and float(rows[2]["other"]) == pytest.approx(2.8)
    assert "toy crash at seed 1" in rows[7]["error"] and rows[7]["score"] == ""

    # by hand: a = [1.0, 1.1, 1.4]: mean 1.1667, sample std sqrt(((-.1667)^2 + (-.0667)^2 + .2333^2) / 2) = 0.2082
    values = [1.0, 1.1, 1.4]
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    assert (round(mean, 4), round(std, 4)) == (1.1667, 0.2082)
    data = json.loads((out / "results.json").read_text())
    a, b, c = data["summary"]
    assert a["mean"] == pytest.approx(mean) and a["std"] == pytest.approx(std) and a["n"] == 3
    assert b["mean"] == pytest.approx(mean + 1) and b["std"] == pytest.approx(std)
    assert c["n"] == 2 and c["mean"] == pytest.approx(3.2)  # seeds 0 and 2 finished (next test: the details)
    assert [(v["low"], v["high"], v["result"]) for v in data["ordering"]] == [("a", "b", "reproduced"),
                                                                           ("b", "c", "reproduced")]


def test_crashed_seed_group_statistics(tmp_path):
    spec = _toy_spec(variants={"c": {"base": 3.0, "crash": True, "crash_seeds": [1]}}, ordering=[])
    _run(_write(tmp_path, spec), tmp_path / "out")
    (group,) = json.loads((tmp_path / "out" / "results.json").read_text())["summary"]
    assert group["n"] == 2 and group["values"] == {"0": 3.0, "2": pytest.approx(3.4)}
    assert group["mean"] == pytest.approx(3.2) and group["std"] == pytest.approx(math.sqrt(0.08))
    assert "toy crash at seed 1" in group["failed"]["1"]
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "| c | 3.2 ± 0.28 | 2 | s0: 3, s2: 3.4; s1: FAILED |" in text
    assert "## Failed runs" in text and "c seed 1: RuntimeError: toy crash at seed 1" in text
    assert "RuntimeError" in (tmp_path / "out" / "runs" / "c__seed1" / "error.txt").read_text()


def test_summary_markdown_format(tmp_path):
    _run(_write(tmp_path, _toy_spec()), tmp_path / "out")
    lines = (tmp_path / "out" / "summary.md").read_text().splitlines()
    assert lines[0] == "# toy"
    header = lines.index("| variant | score mean ± std | n | per seed | other |")
    assert lines[header + 2] == "| a | 1.167 ± 0.21 | 3 | s0: 1, s1: 1.1, s2: 1.4 | 2.333 ± 0.42 |"
    assert lines[header + 3] == "| b | 2.167 ± 0.21 | 3 | s0: 2, s1: 2.1, s2: 2.4 | 4.333 ± 0.42 |"
    verdict = next(line for line in lines if line.startswith("- `a < b`"))
    # equal spreads 0.21 around means 1 apart: intervals do not overlap; b wins on every seed
    assert "**reproduced**, high confidence" in verdict and "higher on 3/3 seeds" in verdict
    assert (tmp_path / "out" / "toy.png").stat().st_size > 1000


def test_sweep_table_and_plots(tmp_path):
    """A sweep adds its x column and one table row per (variant, value); the plot is a line per variant; plot.x
    adds the trade-off figure; orderings are checked at every sweep value."""
    spec = _toy_spec(seeds=[0, 1], sweep={"offset": [0.0, 5.0], "unused": ["p", "q"]},
                     plot={"x": ["other", "score"], "xscale": "linear", "yscale": "log"})
    result = _run(_write(tmp_path, spec), tmp_path / "out")
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "| variant | offset | score mean ± std | n | per seed | other |" in text
    assert "| b | 5.0 | 7.05 ± 0.071 | 2 | s0: 7, s1: 7.1 |" in text
    assert [(v.point["offset"], v.result) for v in result["verdicts"]] == [(0.0, "reproduced"), (5.0, "reproduced")]
    assert "`a < b` at offset=5.0: **reproduced**" in text
    assert {p.name for p in result["paths"]} >= {"toy.png", "toy_tradeoff.png"}
    assert (tmp_path / "out" / "runs" / "a__offset-5.0__seed1").is_dir()


def test_default_out_dir_separates_settings():
    from visionattn.experiments.cli import default_out_dir, parse_overrides

    assert str(default_out_dir("x", False, {})) == os.path.join("runs", "experiments", "x")
    assert str(default_out_dir("x", True, {})) == os.path.join("runs", "experiments", "x-quick")
    a = default_out_dir("x", False, parse_overrides(["data.name=cifar10"]))
    b = default_out_dir("x", False, parse_overrides(["data.name=lfw"]))
    c = default_out_dir("x", False, {}, seeds=[0])
    assert len({a, b, c}) == 3 and a.name.startswith("x-")
    assert parse_overrides(["a.b=1", "a.c=[1, 2]", "d=x"]) == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    with pytest.raises(ValueError, match="expected key=value"):
        parse_overrides(["=3"])


def test_exit_codes_and_resume_skips_finished_runs(tmp_path, capsys):
    from visionattn.cli import main

    counter = tmp_path / "calls.txt"
    spec = _toy_spec(base={"base": 1.0, "counter": str(counter)},
                     variants={"a": {}, "b": {"base": 2.0, "crash": True, "crash_seeds": [2]}})
    path = _write(tmp_path, spec)
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--out", str(out), "--jobs", "1"]) == 1  # a run failed
    assert len(counter.read_text().splitlines()) == 6
    captured = capsys.readouterr()
    assert "1 of 6 runs failed" in captured.err and "| a | 1.167 ± 0.21 | 3 |" in captured.out
    # again: the five finished runs are skipped, the failed one is retried (and fails again)
    assert main(["experiment", str(path), "--out", str(out), "--jobs", "1"]) == 1
    assert counter.read_text().splitlines()[6:] == ["2.0 2"]
    assert capsys.readouterr().out.count("(finished earlier)") == 5
    # an override changes the params: every run is stale and runs again, into the same directory
    assert main(["experiment", str(path), "--out", str(out), "--jobs", "1", "crash=false"]) == 0
    assert len(counter.read_text().splitlines()) == 13


def test_cli_bad_input_exit_2(tmp_path, capsys):
    from visionattn.cli import main

    assert main(["experiment", "no_such_experiment_xyz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("visionattn experiment: error: no experiment 'no_such_experiment_xyz'")
    assert "posenc_ablation" in err  # the known ones are listed
    path = _write(tmp_path, _toy_spec())
    assert main(["experiment", str(path), "--seeds", "0,x"]) == 2
    assert "--seeds: expected distinct comma-separated ints" in capsys.readouterr().err
    assert main(["experiment", str(path), "--variants", "a,zz"]) == 2
    assert "expected names from ['a', 'b']" in capsys.readouterr().err
    assert main(["experiment", str(path), "--jobs", "0"]) == 2
    assert main(["experiment"]) == 2
    bad = _write(tmp_path, _toy_spec(seeds="0"), "bad.yaml")
    assert main(["experiment", str(bad)]) == 2
    assert "key 'seeds': expected a non-empty list" in capsys.readouterr().err


def test_list_shows_the_experiments_and_their_claims(capsys):
    from visionattn.cli import main

    assert main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("posenc_ablation", "data_regimes", "local_vs_global"):
        assert name in out
    assert "INVALID" not in out
    assert "claim: Relative position encodings matter" in out


def test_worker_processes_and_a_dead_worker(tmp_path):
    """--jobs 2: separate processes (one torch thread each); a worker that dies fails its run only."""
    spec = _toy_spec(seeds=[0], variants={"a": {}, "dead": {"die": True}, "b": {"base": 2.0}})
    result = _run(_write(tmp_path, spec), tmp_path / "out", jobs=2)
    runs = {r["variant"]: r for r in json.loads((tmp_path / "out" / "results.json").read_text())["runs"]}
    assert (runs["a"]["status"], runs["b"]["status"], runs["dead"]["status"]) == ("ok", "ok", "failed")
    assert "worker process died" in runs["dead"]["error"] and result["failed"] == 1
    assert runs["b"]["metrics"] == {"score": 2.0, "other": 4.0}
    assert (tmp_path / "out" / "runs" / "b__seed0" / "toy.txt").read_text() == "ok"


# -- ordering verdicts -------------------------------------------------------------------------------------------
def _group(variant, values):
    from visionattn.experiments.results import Group, mean_std

    mean, std = mean_std(list(values.values()))
    return Group(variant, {}, dict(values), {}, mean, std)


def test_ordering_verdicts():
    from visionattn.experiments.results import check_ordering

    groups = [_group("a", {0: 0.90, 1: 0.91, 2: 0.92}), _group("b", {0: 0.95, 1: 0.96, 2: 0.97}),
              _group("c", {0: 0.89, 1: 0.97, 2: 0.93}), _group("d", {0: 0.50})]
    (high, low, reversed_, single) = check_ordering(groups, [("a", "b"), ("a", "c"), ("b", "a"), ("d", "a")])
    assert (high.result, high.confidence, high.wins, high.pairs) == ("reproduced", "high", 3, 3)
    assert high.diff == pytest.approx(0.05) and high.p_value is None  # identical paired differences: no t-test
    assert (low.result, low.confidence) == ("reproduced", "low") and "overlap" in low.reason
    assert low.p_value is not None and 0 < low.p_value < 1
    assert (reversed_.result, reversed_.confidence) == ("not reproduced", "") and "beyond" in reversed_.reason
    assert (single.result, single.confidence, single.reason) == ("reproduced", "low", "one seed only")


# -- data.train_fraction ---------------------------------------------------------------------------------------
def test_train_fraction_is_a_seeded_stratified_subset():
    from collections import Counter

    from visionattn.data import DataConfig, build_datasets

    full = build_datasets(DataConfig(name="digits", img_size=8))
    part = build_datasets(DataConfig(name="digits", img_size=8, train_fraction=0.1, subset_seed=3))
    again = build_datasets(DataConfig(name="digits", img_size=8, train_fraction=0.1, subset_seed=3))
    other = build_datasets(DataConfig(name="digits", img_size=8, train_fraction=0.1, subset_seed=4))
    assert len(part.val) == len(full.val) and part.val.targets == full.val.targets  # validation untouched
    counts, full_counts = Counter(part.train.targets), Counter(full.train.targets)
    for label, n in full_counts.items():  # per class n - round(0.9 n)
        assert counts[label] == n - round(0.9 * n)
    assert part.train.indices == again.train.indices != other.train.indices
    assert set(part.train.indices) <= set(range(len(full.train)))
    image, label = part.train[5]
    original = full.train[part.train.indices[5]]
    assert label == original[1] and (image == original[0]).all()
    with pytest.raises(ValueError, match=r"DataConfig.train_fraction: expected a number in \(0, 1\], got 0"):
        DataConfig(train_fraction=0)
    with pytest.raises(ValueError, match="DataConfig.subset_seed: expected an int or None"):
        DataConfig(subset_seed="a")


# -- the experiment backbone --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", ["neighborhood", "halo", "window", "axial", "global", "conv"])
def test_attn_resnet_every_position(pattern):
    """exp_attn_resnet_test builds and trains (finite gradients to every parameter) in every pattern x position,
    at the preset's size and at a larger input (absolute embeddings interpolated, windows clipped at build)."""
    import torch

    from visionattn.models import create_model

    positions = ["none"] if pattern == "conv" else ["none", "absolute", "sincos", "rel_bias", "rel_logits", "rope"]
    for position in positions:
        torch.manual_seed(0)
        model = create_model("exp_attn_resnet_test", num_classes=3, img_size=16, pattern=pattern, position=position,
                             kernel=3 if pattern == "neighborhood" else 2)
        x = torch.randn(2, 3, 16, 16)
        out = model(x)
        assert out.shape == (2, 3)
        (out * torch.arange(1.0, 4.0)).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, (pattern, position, missing)
        if position in ("absolute", "sincos"):
            assert any("pos" in n for n, _ in model.named_modules()), "absolute embedding missing"
        with torch.no_grad():  # larger grids: grid-wide relative tables are interpolated
            assert model.eval()(torch.randn(1, 3, 24, 24)).shape == (1, 3)


def test_attn_resnet_spec_errors_and_grids():
    from visionattn.models import create_model
    from visionattn.models.families.experiment_models import AttnResNetSpec

    with pytest.raises(ValueError, match=r"AttnResNetSpec.pattern: expected one of .*got 'swin'"):
        create_model("exp_attn_resnet_test", pattern="swin")
    with pytest.raises(ValueError, match="AttnResNetSpec.stem_stride: expected 2 or 4, got 3"):
        AttnResNetSpec(stem_stride=3)
    with pytest.raises(ValueError, match="mixer width 4 .* not divisible by heads 3"):
        AttnResNetSpec(widths=(16, 32), depths=(1, 1), heads=3)
    with pytest.raises(ValueError, match="'rope' on a 2D grid needs head_dim divisible by 4, got 2"):
        AttnResNetSpec(widths=(16, 32), depths=(1, 1), heads=2, position="rope")
    assert AttnResNetSpec().stage_grids(16) == [(8, 8), (8, 8), (4, 4), (2, 2)]
    model = create_model("exp_attn_resnet", num_classes=10, img_size=16)
    assert [(i.num_chs, i.reduction) for i in model.feature_info] == [(64, 2), (128, 4), (256, 8), (512, 16)]


# -- the real experiments --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["posenc_ablation", "data_regimes", "local_vs_global"])
def test_experiment_files_load_and_every_variant_builds(name, tmp_path):
    import torch

    from visionattn.experiments.runner import check_plans, train_config
    from visionattn.experiments.spec import load_spec, plan_runs
    from visionattn.models import create_model
    from visionattn.train.config import spec_overrides

    spec = load_spec(name)
    assert spec.path == ROOT / "experiments" / f"{name}.yaml" and spec.command == f"visionattn experiment {name}"
    assert spec.seeds == [0, 1, 2] and spec.kind == "train"
    for quick in (False, True):
        chosen = spec.with_quick() if quick else spec
        plans = plan_runs(chosen)
        check_plans(chosen, plans, tmp_path)
        params = {}
        for plan in plans:
            cfg = train_config(plan.params, plan.seed, tmp_path)
            assert cfg.run.seed == plan.seed
            key = (cfg.model.name, json.dumps(cfg.model.overrides, sort_keys=True))
            if key in params:
                continue
            with torch.random.fork_rng(devices=[]):
                model = create_model(cfg.model.name, num_classes=10, img_size=cfg.data.img_size,
                                     **spec_overrides(cfg.model))
            params[key] = sum(p.numel() for p in model.parameters())
    if name == "data_regimes":  # matched parameter counts: within 10% of each other
        counts = list(params.values())[:3]
        assert max(counts) / min(counts) < 1.1, counts


def _check_quick(out: Path, name: str, rows_expected: int, chance: float):
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == rows_expected and all(r["status"] == "ok" for r in rows), rows
    for r in rows:  # learning happened: well above chance on the held-out digits
        assert float(r["val_top1"]) > 2 * chance, r
        assert float(r["params"]) > 0 and float(r["gmacs"]) > 0 and float(r["train_img_per_s"]) > 0
    text = (out / "summary.md").read_text()
    assert f"# {name}" in text and "val_top1 (%) mean ± std" in text
    from PIL import Image

    with Image.open(out / f"{name}.png") as img:
        assert img.size[0] > 300


def test_posenc_ablation_quick(tmp_path, capsys):
    from visionattn.cli import main

    out = tmp_path / "posenc"
    assert main(["experiment", "posenc_ablation", "--quick", "--jobs", "1", "--out", str(out)]) == 0
    _check_quick(out, "posenc_ablation", 2, 0.1)
    assert not list(out.glob("runs/*/*.pt"))  # checkpoints removed after a finished run
    assert "[1/2] none seed 0: val_top1" in capsys.readouterr().out


def test_local_vs_global_quick(tmp_path):
    from visionattn.cli import main

    out = tmp_path / "lvg"
    assert main(["experiment", "local_vs_global", "--quick", "--jobs", "2", "--out", str(out)]) == 0
    _check_quick(out, "local_vs_global", 2, 0.1)
    rows = list(csv.DictReader(open(out / "results.csv")))
    for size in (16, 32, 64):
        assert all(float(r[f"img_per_s_{size}px"]) > 0 for r in rows)
    glob, local = (float(r["gmacs_64px"]) for r in sorted(rows, key=lambda r: r["variant"]))
    assert glob > local  # global attention costs more than 3x3 neighborhoods at 64 px
    assert (out / "local_vs_global_tradeoff.png").is_file()


def test_data_regimes_quick(tmp_path):
    from visionattn.cli import main

    out = tmp_path / "dr"
    assert main(["experiment", "data_regimes", "--quick", "--jobs", "1", "--out", str(out)]) == 0
    _check_quick(out, "data_regimes", 4, 0.1)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert sorted({r["data.train_fraction"] for r in rows}) == ["0.3", "1.0"]
    assert {int(float(r["train_images"])) for r in rows} == {432, 1438}  # per class n - round(0.7 n)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
