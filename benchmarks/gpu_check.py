"""The prepared GPU check (issue 20): one script, at most 8 minutes, one JSON, most important answers first.

    python benchmarks/gpu_check.py --out gpu_check.json            # on a CUDA machine
    python benchmarks/gpu_check.py --dry-run --out /tmp/dry.json   # on CPU: tiny sizes, CUDA-only probes skipped

Steps, in this order (each time-boxed and failure-isolated: an error or a timeout is recorded in its entry and the
next step runs; the JSON is rewritten after every step, so a cut-short loan still leaves the answers so far):

1. versions: torch, CUDA, cuDNN, GPU, Python, visionattn.
2. backends: every pattern × position × dtype (fp32, bf16) on the device, blocked / flex / linear against the
   reference, forward and backward (flex at head_dim 16, plus the refusal at head_dim 12 and whether Inductor
   really rejects 12).
3. probes: Graph with CUDA edges builds its mask with no sync (item 2); SDPA restricted to fused kernels takes the
   padded relative logits and the learnable bias without "No available kernel" (items 3, 4); a CPU table with CUDA
   inputs is a clear error (item 6); a Swin-T stage-1 batch of 810 (65,610 SDPA batch entries) runs chunked and
   equals a small batch (item 8), and what the unchunked call does (in a child process).
4. sync debug: ``torch.cuda.set_sync_debug_mode("warn")`` over two training steps of swin_test, a SASA model and a
   RoPE model; warnings counted per file:line and per innermost visionattn frame (target: 0 in ``ops/`` at step 2).
5. train: ``python -m visionattn train --max-steps 30`` four ways (default, bf16 swin_test, fp16 + GradScaler,
   compiled), in parallel child processes.
6. bench: with the time left, operator timings (blocked vs compiled FlexAttention vs dense SDPA, bf16, fwd and
   fwd+bwd), bf16 matmul peak, and ViT-B/16 / Swin-T img/s against timm.

Exit status 0 when every step ran and every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from gpu_check_run import step_bench, step_train  # noqa: E402
from gpu_check_steps import step_backends, step_probes, step_sync_debug, step_versions, unchunked_probe  # noqa: E402

BUDGET_S = 480  # the whole check: 8 minutes
STEP_S = {"versions": 20, "backends": 140, "probes": 90, "sync_debug": 60, "train": 170, "bench": None}  # None: rest
DRY_STEP_S = {"versions": 20, "backends": 60, "probes": 30, "sync_debug": 30, "train": 90, "bench": 20}
STEPS = [("versions", step_versions), ("backends", step_backends), ("probes", step_probes),
         ("sync_debug", step_sync_debug), ("train", step_train), ("bench", step_bench)]


class StepTimeout(BaseException):
    """Raised in the main thread when a step overruns its time box (a BaseException, so that the steps' own
    ``except Exception`` isolation of single cases does not swallow it)."""


@contextlib.contextmanager
def time_box(seconds: float):
    """Raise :class:`StepTimeout` after ``seconds`` (SIGALRM: between Python bytecodes, so a long kernel or compile
    is interrupted when it returns to Python). No-op where SIGALRM does not exist."""
    if not hasattr(signal, "SIGALRM") or seconds is None:
        yield
        return

    def expire(signum, frame):
        raise StepTimeout(f"time box of {seconds:.0f} s exceeded")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Context:
    """What every step receives: the device, whether this is a dry run, the output folder, the step's deadline, a
    ``checks`` list that the step appends ``{"name", "ok", ...}`` entries to and a ``partial`` dict for results so
    far."""

    def __init__(self, device: str, dry_run: bool, out_dir: Path, python: str):
        self.device, self.dry_run, self.out_dir, self.python = device, dry_run, out_dir, python
        self.deadline = math.inf
        self.checks: list[dict] = []
        self.partial: dict = {}  # results a step files as it goes: kept when it errors or times out

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, name: str, ok: bool, **details) -> bool:
        self.checks.append({"name": name, "ok": bool(ok), **details})
        return ok


def _write(path: Path, report: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, path)


def run_steps(ctx: Context, report: dict, out: Path, budget: float, only: set[str] | None, steps=None,
              limits=None, tag: str = "gpu_check") -> None:
    """Run ``steps`` (default: this script's :data:`STEPS`) in order, each in its time box (``limits``: per step
    name, None = what is left; default :data:`STEP_S` / :data:`DRY_STEP_S`), rewriting the JSON at ``out`` after
    each; a failure or a timeout is recorded in the step's entry and the next step runs."""
    start = time.monotonic()
    steps = STEPS if steps is None else steps
    limits = limits if limits is not None else DRY_STEP_S if ctx.dry_run else STEP_S
    for name, fn in steps:
        entry = {"status": "skipped", "seconds": 0.0, "result": None, "checks": [], "error": None}
        report["steps"][name] = entry
        left = budget - (time.monotonic() - start)
        if only is not None and name not in only:
            entry["error"] = "not selected (--only)"
            continue
        if left < 5:
            entry["error"] = f"no time left in the {budget:.0f} s budget"
            _write(out, report)
            continue
        box = min(left, limits[name] or left)
        ctx.deadline, ctx.checks, ctx.partial = time.monotonic() + box - 2, [], {}
        t0 = time.monotonic()
        try:
            with time_box(box):
                entry["result"] = fn(ctx)
            entry["status"] = "ok"
        except StepTimeout as e:
            entry["status"], entry["error"] = "timeout", str(e)
        except Exception as e:  # noqa: BLE001 - isolate every failure, record it, go on
            entry["status"] = "error"
            entry["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"
        finally:
            if entry["result"] is None and ctx.partial:
                entry["result"] = {"partial": ctx.partial}
            entry["seconds"] = round(time.monotonic() - t0, 2)
            entry["checks"] = ctx.checks
            if ctx.cuda:
                with contextlib.suppress(Exception):
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
            with contextlib.suppress(Exception):
                torch._dynamo.reset()
        print(f"[{tag}] {name}: {entry['status']} in {entry['seconds']} s, "
              f"{sum(c['ok'] for c in ctx.checks)}/{len(ctx.checks)} checks passed", flush=True)
        _write(out, report)


def summarize(report: dict) -> dict:
    failed = [f"{step}: {c['name']}" for step, e in report["steps"].items() for c in e["checks"] if not c["ok"]]
    deselected = "not selected (--only)"
    not_ok = [f"{step}: {e['status']}" for step, e in report["steps"].items()
              if e["status"] != "ok" and not (e["status"] == "skipped" and e["error"] == deselected)]
    return {"checks": sum(len(e["checks"]) for e in report["steps"].values()), "failed_checks": failed,
            "steps_not_ok": not_ok, "passed": not failed and not not_ok}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_check.json", help="the JSON report (default ./gpu_check.json)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes; CUDA-only probes skipped with a reason")
    p.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for the whole check (default {BUDGET_S})")
    p.add_argument("--only", default=None, help=f"comma list of steps: {','.join(n for n, _ in STEPS)}")
    p.add_argument("--probe-unchunked", action="store_true", help=argparse.SUPPRESS)  # child process of step 3
    args = p.parse_args(argv)
    if args.probe_unchunked:
        print(json.dumps(unchunked_probe()))
        return 0
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("[gpu_check] no CUDA device: running the dry run instead (CUDA-only probes skipped)", flush=True)
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out_dir = out.with_suffix("") if out.suffix else out.with_name(out.name + "_files")
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context("cuda" if cuda else "cpu", dry_run=not cuda, out_dir=out_dir, python=sys.executable)
    report = {"script": "benchmarks/gpu_check.py", "format": 1, "dry_run": ctx.dry_run, "device": ctx.device,
              "host": platform.node(), "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "budget_s": args.budget, "steps": {}}
    t0 = time.monotonic()
    only = None if args.only is None else {s.strip() for s in args.only.split(",") if s.strip()}
    run_steps(ctx, report, out, args.budget, only)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    report["summary"] = summarize(report)
    _write(out, report)
    print(f"[gpu_check] wrote {out} in {report['wall_s']} s; passed: {report['summary']['passed']}", flush=True)
    for line in report["summary"]["failed_checks"] + report["summary"]["steps_not_ok"]:
        print(f"[gpu_check]   not ok: {line}", flush=True)
    return 0 if report["summary"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
