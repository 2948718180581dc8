"""The prepared GPU speed check (``benchmarks/gpu_bench.py``, issue 17) in its CPU dry run, so that it never rots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_bench") / "dry.json"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_bench

        rc = gpu_bench.main(["--dry-run", "--out", str(out)])
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return rc, json.loads(out.read_text()) if out.exists() else None


def test_dry_run_passes_and_writes_one_json(dry_run):
    rc, report = dry_run
    assert report is not None and rc == 0, report and report["summary"]
    assert report["dry_run"] is True and report["device"] == "cpu"
    assert list(report["steps"]) == ["versions", "tests", "operator", "models"]
    for name, step in report["steps"].items():
        assert step["status"] == "ok", (name, step["error"])
    assert report["wall_s"] < 120


def test_dry_run_records_every_measurement_it_can_make_on_cpu(dry_run):
    _, report = dry_run
    steps = report["steps"]
    assert "natten" in steps["versions"]["result"]
    groups = steps["tests"]["result"]["groups"]
    assert groups and all(err <= 1.0 for err in groups.values()), groups  # scaled error / tolerance
    cases = steps["operator"]["result"]["cases"]
    assert set(cases) == {"window7_shift3_rel_bias fp32", "neighborhood7 fp32"}
    for entry in cases.values():
        for mode in ("fwd", "fwd+bwd"):
            assert entry[f"blocked {mode}"]["ms"] > 0
    assert steps["models"]["result"]["note"].startswith("skipped: dry run")
