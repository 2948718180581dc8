"""Steps 5-6 of ``benchmarks/gpu_check.py``: ``visionattn train --max-steps 30`` four ways in parallel child
processes, then GPU timings with the time left (operator: blocked vs compiled FlexAttention vs dense-mask SDPA;
bf16 matmul peak; ViT-B/16 and Swin-T img/s against timm). The dry run trains one way for one step on CPU and times
one tiny operator case.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_STEPS = 30
# name -> config overrides; each runs `python -m visionattn train OVERRIDES --max-steps 30 --run-dir DIR`
TRAIN_RUNS = {
    "default": [],
    "bf16_swin": ["model.name=swin_test", "run.precision=bf16"],
    "fp16_gradscaler": ["run.precision=fp16"],
    "compiled": ["run.compile=true"],
}


def train_command(python: str, overrides: list[str], run_dir: Path, steps: int = TRAIN_STEPS) -> list[str]:
    return [python, "-m", "visionattn", "train", *overrides, "--max-steps", str(steps), "--run-dir", str(run_dir)]


def _tail(path: Path, chars: int = 2000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:]
    return ""


def _last_metrics(run_dir: Path) -> dict | None:
    for path in sorted(run_dir.rglob("metrics.csv")):
        with contextlib.suppress(OSError, csv.Error):
            rows = list(csv.DictReader(path.open()))
            return rows[-1] if rows else None
    return None


def step_train(ctx) -> dict:
    runs = {"default": TRAIN_RUNS["default"]} if ctx.dry_run else TRAIN_RUNS
    steps = 1 if ctx.dry_run else TRAIN_STEPS
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    out, procs = {}, {}
    for name, overrides in TRAIN_RUNS.items():
        run_dir = ctx.out_dir / "train" / name
        command = train_command(ctx.python, overrides, run_dir, steps)
        out[name] = {"command": " ".join(train_command("python", overrides, Path("<out>") / name))}
        if name not in runs:
            out[name]["status"] = "skipped: dry run (bf16 autocast, fp16 GradScaler and compile are run on CUDA)"
            continue
        out[name]["ran"] = " ".join(command[1:])
        run_dir.mkdir(parents=True, exist_ok=True)
        log, err = (run_dir / "stdout.txt").open("w"), (run_dir / "stderr.txt").open("w")
        procs[name] = (subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=err, start_new_session=True),
                       time.monotonic(), run_dir, log, err)
    try:
        while any(p.poll() is None for p, *_ in procs.values()) and ctx.left() > 3:
            time.sleep(0.5)
    finally:
        for name, (proc, t0, run_dir, log, err) in procs.items():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                out[name]["status"] = "killed: step time box"
            log.close()
            err.close()
            out[name].update(rc=proc.returncode, seconds=round(time.monotonic() - t0, 1),
                             stdout_tail=_tail(run_dir / "stdout.txt"), stderr_tail=_tail(run_dir / "stderr.txt"),
                             files=sorted(p.name for p in run_dir.iterdir())[:20], last_metrics=_last_metrics(run_dir))
            for checkpoint in run_dir.rglob("*.pt"):  # recorded above; not worth carrying back from a loan
                checkpoint.unlink(missing_ok=True)
            ctx.check(f"train {name} ({steps} steps) exits 0", proc.returncode == 0, rc=proc.returncode)
    return out


# -- step 6 ----------------------------------------------------------------------------------------------------------
def step_bench(ctx) -> dict:
    """The speed check's operator and model steps (``benchmarks/gpu_bench.py``, issue 17) with the time left."""
    import gpu_bench  # imported here: gpu_bench imports gpu_check, which imports this module

    out = ctx.partial  # filled as it goes: a cut-short run keeps what it measured
    out["operator"], out["models"] = {}, {}
    gpu_bench.step_operator(ctx, out["operator"])
    gpu_bench.step_models(ctx, out["models"])
    ctx.check("benchmarks ran", bool(out["operator"].get("cases")))
    return out
