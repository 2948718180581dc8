"""Steps 5-6 of ``benchmarks/gpu_check.py``: ``visionattn train --max-steps 30`` four ways in parallel child
processes, then GPU timings with the time left (operator: blocked vs compiled FlexAttention vs dense-mask SDPA;
bf16 matmul peak; ViT-B/16 and Swin-T img/s against timm). The dry run trains one way for one step on CPU and times
one tiny operator case.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from visionattn.ops import Global, Halo, Neighborhood, RelativeBias, Window, attention

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
def _timer(ctx):
    """``time(fn, reps) -> median ms`` with CUDA events on the GPU, perf_counter on CPU."""
    def cuda_ms(fn, reps):
        start, end, times = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True), []
        for _ in range(reps):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    def cpu_ms(fn, reps):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(times)

    return cuda_ms if ctx.cuda else cpu_ms


def _measure(ctx, fn, reps) -> dict:
    t0 = time.perf_counter()
    fn()  # first call: plans, compiles
    if ctx.cuda:
        torch.cuda.synchronize()
    first = time.perf_counter() - t0
    fn()
    return {"first_call_s": round(first, 2), "ms": round(_timer(ctx)(fn, reps), 3)}


def _op_cases(ctx):
    if ctx.dry_run:
        return [("window_rel_bias", Window(3, 1), (8, 8), 2, 2, 8, True)]
    # label, pattern, grid, batch, heads, head_dim, relative bias (Swin)
    return [("swin_window7_shift3_rel_bias_56", Window(7, 3), (56, 56), 32, 3, 32, True),
            ("neighborhood7_56", Neighborhood(7), (56, 56), 32, 3, 32, False),
            ("halo8_3_56", Halo(8, 3), (56, 56), 32, 3, 32, False),
            ("global_vit_s_14", Global(), (14, 14), 128, 6, 64, False)]


def _dense_sdpa(q, k, v, mask):
    """SDPA over the flattened grid with the pattern's dense ``(N, N)`` mask (None: Global)."""
    B, h, d = q.shape[0], q.shape[-2], q.shape[-1]
    qt, kt, vt = (t.reshape(B, -1, h, d).transpose(1, 2) for t in (q, k, v))  # (B, h, N, d)
    return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask)


def _op_bench(ctx, out: dict) -> dict:
    device = ctx.device
    dtype = torch.bfloat16 if ctx.cuda else torch.float32
    reps = 3 if ctx.dry_run else 10
    for label, pattern, grid, B, h, d, biased in _op_cases(ctx):
        if ctx.left() < 30:
            out[label] = "skipped: time"
            continue
        gen = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(B, *grid, h, d, generator=gen).to(device, dtype).requires_grad_() for _ in range(3))
        table = torch.zeros(h, 13, 13, device=device, requires_grad=True) if biased else None
        position = RelativeBias(table) if biased else None
        entry = out[label] = {}
        n = grid[0] * grid[1]
        mask = None if isinstance(pattern, Global) else pattern.mask(grid, device=device)  # (N, N): naive SDPA
        runs = {"blocked": functools.partial(attention, q, k, v, pattern, position=position)}
        if ctx.cuda:
            runs["flex"] = functools.partial(attention, q, k, v, pattern, position=position, backend="flex")
            runs["sdpa_dense_mask"] = functools.partial(_dense_sdpa, q, k, v, mask)
        for name, fn in runs.items():
            for mode in ("fwd", "fwd+bwd"):
                if ctx.left() < 20:
                    entry[f"{name} {mode}"] = "skipped: time"
                    continue
                try:
                    if mode == "fwd":
                        with torch.no_grad():
                            entry[f"{name} {mode}"] = _measure(ctx, fn, reps)
                    else:
                        entry[f"{name} {mode}"] = _measure(ctx, lambda f=fn: f().float().sum().backward(), reps)
                except Exception as e:  # noqa: BLE001
                    entry[f"{name} {mode}"] = f"{type(e).__name__}: {str(e)[:200]}"
        if isinstance(pattern, Global) and isinstance(entry.get("blocked fwd"), dict):
            entry["global_fwd_tflops"] = round(4 * B * h * n * n * d / entry["blocked fwd"]["ms"] / 1e9, 1)
    return out


def _matmul_peak(ctx) -> float | None:
    if not ctx.cuda:
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = _measure(ctx, lambda: a @ a, 10)["ms"]
    return round(2 * 8192**3 / ms / 1e9, 1)


def _model_bench(ctx, out: dict) -> dict:
    if not ctx.cuda:
        out["note"] = "skipped: dry run (whole-model img/s is a GPU measurement)"
        return out
    from visionattn.models import create_model

    try:
        import timm
    except ImportError:
        timm = None
    for ours, theirs, batch in (("vit_base_patch16_224", "vit_base_patch16_224", 64),
                                ("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224", 64)):
        for who, build in (("visionattn", lambda n=ours: create_model(n)),
                           ("timm", (lambda n=theirs: timm.create_model(n, pretrained=False)) if timm else None)):
            key = f"{ours} {who}"
            if build is None or ctx.left() < 25:
                out[key] = "skipped: " + ("no timm" if build is None else "time")
                continue
            try:
                model = build().cuda()
                x = torch.randn(batch, 3, 224, 224, device="cuda")
                opt = torch.optim.SGD(model.parameters(), lr=1e-4)

                def infer(m=model, x=x):
                    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
                        m.eval()(x)

                def train(m=model, x=x, opt=opt):
                    with torch.autocast("cuda", torch.bfloat16):
                        m.train()(x).float().mean().backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)

                out[key] = {mode: round(batch / (_measure(ctx, fn, 5)["ms"] / 1e3), 1)
                            for mode, fn in (("infer_img_s", infer), ("train_img_s", train))}
                del model, opt
                torch.cuda.empty_cache()
            except Exception as e:  # noqa: BLE001
                out[key] = f"{type(e).__name__}: {str(e)[:200]}"
    return out


def step_bench(ctx) -> dict:
    out = ctx.partial  # filled as it goes: a cut-short run keeps what it measured
    out["matmul_bf16_tflops"] = _matmul_peak(ctx)
    out["operator"] = {}
    _op_bench(ctx, out["operator"])
    out["models"] = {}
    _model_bench(ctx, out["models"])
    ctx.check("benchmarks ran", bool(out["operator"]))
    return out
