"""The operator benchmark script runs end to end in --quick mode (Window section only, to stay fast)."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "ops.py")


def test_benchmark_quick_window(tmp_path):
    pytest.importorskip("timm")
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--only", "window", "--dtype", "fp32", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ratio vs timm" in proc.stdout
    assert re.search(r"^fp32\s+fwd\s.*\d+\.\d+x", proc.stdout, re.MULTILINE), proc.stdout[-2000:]
    assert out.exists() and '"section": "window"' in out.read_text()
