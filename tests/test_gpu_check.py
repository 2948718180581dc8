"""The prepared GPU check (``benchmarks/gpu_check.py``) in its CPU dry run, so that it never rots; and its runner's
failure isolation and time boxes on fake steps."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["versions", "backends", "probes", "sync_debug", "train", "bench"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The dry run in this process (its training run is a child process, as on the GPU): ``(exit status, JSON)``."""
    out = tmp_path_factory.mktemp("gpu_check") / "dry.json"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check

        rc = gpu_check.main(["--dry-run", "--out", str(out)])
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return rc, json.loads(out.read_text()) if out.exists() else None


def test_dry_run_passes_and_writes_one_json(dry_run):
    rc, report = dry_run
    assert report is not None
    assert rc == 0, report["summary"]
    assert report["dry_run"] is True and report["device"] == "cpu" and report["summary"]["passed"]
    assert list(report["steps"]) == STEPS  # in the order the issue asks for
    for name, step in report["steps"].items():
        assert set(step) == {"status", "seconds", "result", "checks", "error"}, name
        assert step["status"] == "ok", (name, step["error"])
        assert all(set(c) >= {"name", "ok"} and c["ok"] for c in step["checks"]), (name, step["checks"])
    assert report["wall_s"] < 120


def test_dry_run_records_every_probe_and_run(dry_run):
    _, report = dry_run
    steps = report["steps"]
    assert steps["versions"]["result"]["torch"]
    backends = steps["backends"]["result"]
    assert any(name.startswith("blocked") for name in backends["errors"])
    assert any(name.startswith("flex") for name in backends["errors"])
    probes = steps["probes"]["result"]
    for key in ("item2_graph", "item3_4_fused_only", "item6_device_check", "item8_big_batch", "unchunked"):
        assert key in probes
    assert probes["item2_graph"].startswith("skipped: CUDA-only")  # CUDA-only probes say why they were skipped
    assert probes["item8_big_batch"]["sdpa_calls"] > 1  # the chunking logic ran (limit shrunk on CPU)
    assert set(steps["sync_debug"]["result"]) >= {"swin_test", "sasa_resnet_test"}
    runs = steps["train"]["result"]
    assert list(runs) == ["default", "bf16_swin", "fp16_gradscaler", "compiled"]
    for run in runs.values():
        assert "visionattn train" in run["command"] and "--max-steps 30" in run["command"], run["command"]
    assert runs["default"]["rc"] == 0 and "ran" in runs["default"]
    assert "run.precision=bf16" in runs["bf16_swin"]["command"]
    assert "model.name=swin_test" in runs["bf16_swin"]["command"]
    assert "run.precision=fp16" in runs["fp16_gradscaler"]["command"]
    assert "run.compile=true" in runs["compiled"]["command"]
    assert runs["compiled"]["status"].startswith("skipped: dry run")
    assert steps["bench"]["result"]["operator"]


def test_runner_isolates_failures_and_time_boxes(tmp_path, monkeypatch):
    """A step that raises and one that overruns its box are recorded (the latter with what it had measured); the steps
    after them still run, and the JSON holds every step's entry."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_check

    def boom(ctx):
        raise RuntimeError("step failed on purpose")

    def slow(ctx):
        ctx.partial["measured_so_far"] = 1
        time.sleep(5)

    def fine(ctx):
        ctx.check("a passing check", True)
        return {"left_s": round(ctx.left(), 1)}

    monkeypatch.setattr(gpu_check, "STEPS", [("versions", boom), ("backends", slow), ("probes", fine)])
    monkeypatch.setattr(gpu_check, "DRY_STEP_S", {"versions": 5, "backends": 0.5, "probes": 5})
    out = tmp_path / "r.json"
    ctx = gpu_check.Context("cpu", dry_run=True, out_dir=tmp_path, python=sys.executable)
    report = {"steps": {}}
    t0 = time.monotonic()
    gpu_check.run_steps(ctx, report, out, budget=30, only=None)
    assert time.monotonic() - t0 < 4
    steps = json.loads(out.read_text())["steps"]
    assert steps["versions"]["status"] == "error" and "step failed on purpose" in steps["versions"]["error"]
    assert steps["backends"]["status"] == "timeout" and "time box" in steps["backends"]["error"]
    assert steps["backends"]["result"] == {"partial": {"measured_so_far": 1}}  # what it had is kept
    assert steps["probes"]["status"] == "ok" and steps["probes"]["checks"][0]["ok"]
    summary = gpu_check.summarize(report)
    assert not summary["passed"] and summary["steps_not_ok"] == ["versions: error", "backends: timeout"]
