"""The GPU speed check (issue 17): one script, at most 8 minutes, one JSON, the most important answers first.

    python benchmarks/gpu_bench.py --out gpu_bench.json            # on a CUDA machine
    python benchmarks/gpu_bench.py --dry-run --out /tmp/dry.json   # on CPU: tiny sizes (tests/test_gpu_bench.py)

Steps, each time-boxed and failure-isolated by ``gpu_check``'s runner (the JSON is rewritten after every step):

1. versions: torch, CUDA, cuDNN, GPU, triton, timm, and whether NATTEN imports (it is only compared when installed:
   the machine has no network).
2. tests: the operator on the device against the reference (the spec), forward and backward with the gradients of
   the inputs and of the position tables: ``gpu_check``'s backend matrix (every pattern × position × fp32/bf16,
   blocked / linear / flex) and the group plan's own cases (Swin's shifted windows on grids they divide, halo
   blocks, neighborhood tiles, axial lines) with NaN key padding, explicit query padding and a learnable bias.
3. operator: per case, fp32 and bf16, forward and forward+backward: the blocked backend against compiled
   FlexAttention (the flex backend: one compiled runner and cached block mask per plan), PyTorch SDPA over the
   dense ``(N, N)`` mask, and NATTEN's ``na2d`` for Neighborhood when installed; the matmul peak (fp32, bf16) and
   Global's share of it. Targets recorded (not checks): every local pattern ≤ FlexAttention's time, Global ≥ 50 % of
   the bf16 matmul peak.
4. models: ViT-B/16 and Swin-T, ours against timm, images/s in inference and one training step (bf16 autocast,
   batch 64), eager; target ≥ 1.0x timm.

CUDA times are medians of CUDA-event timings after a warm-up call (first call = plans / compiles, recorded). The dry
run times one tiny case per kind on CPU with the wall clock and skips what only a GPU answers, saying so. Exit status
0 when every step ran and every correctness check passed (missed speed targets do not fail the script).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from gpu_check import Context, _write, run_steps, summarize  # noqa: E402  (benchmarks/gpu_check.py)
from gpu_check_steps import _compare, _run, step_backends, step_versions  # noqa: E402

from visionattn.ops import Axial, Global, Halo, Neighborhood, RelativeBias, RelativeLogits, Window, attention  # noqa: E402

BUDGET_S = 480
STEP_S = {"versions": 20, "tests": 150, "operator": 190, "models": None}  # None: what is left
DRY_STEP_S = {"versions": 20, "tests": 60, "operator": 40, "models": 20}


# -- step 1 ----------------------------------------------------------------------------------------------------------
def step_env(ctx) -> dict:
    out = step_versions(ctx)
    try:
        import natten

        out["natten"] = getattr(natten, "__version__", "installed")
    except Exception as e:  # noqa: BLE001 - any import failure means: not compared
        out["natten"] = f"not available ({type(e).__name__}: {str(e)[:120]})"
    return out


# -- step 2 ----------------------------------------------------------------------------------------------------------
GROUP_CASES = [(Window(7, 3), (14, 21)), (Window(7), (14, 14)), (Window(7, 3), (16, 19)), (Halo(4, 2), (13, 10)),
               (Neighborhood(5), (19, 17)), (Axial(1), (4, 9, 5))]


def step_tests(ctx) -> dict:
    """gpu_check's backend matrix, then the group plan's cases with padding (NaN keys/values, padded queries)."""
    out = {"matrix": "dry run: covered by tests/test_gpu_check.py" if ctx.dry_run else step_backends(ctx)}
    failures, errors = [], {}
    cases = GROUP_CASES[:2] if ctx.dry_run else GROUP_CASES
    dtypes = [torch.float32] if ctx.dry_run else [torch.float32, torch.bfloat16]
    for pattern, grid in cases:
        padding = torch.zeros(2, *grid, dtype=torch.bool, device=ctx.device)
        padding[0, -3:] = True
        padding[1, ..., :2] = True
        for dtype in dtypes:
            for kind in ("none", "rel_bias", "rel_logits"):
                if ctx.left() < 10:
                    break
                name = f"groups {pattern} {grid} {kind} {dtype} padded"
                want = _run(pattern, grid, kind, "reference", dtype, ctx.device, 16, padding=padding)
                _compare(ctx, name, functools.partial(_run, pattern, grid, kind, "blocked", dtype, ctx.device, 16,
                                                      padding=padding, nan=True), want, dtype, failures, errors)
    ctx.check("group plan equals the reference (fwd+bwd, NaN padding)", not failures, failed=failures[:20])
    out["groups"] = errors
    return out


# -- step 3 ----------------------------------------------------------------------------------------------------------
def _timer(ctx):
    """``(fn, reps) -> median ms``: CUDA events on the GPU, the wall clock on CPU."""
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


def measure(ctx, fn, reps: int) -> dict:
    """First call (plans, compiles) in seconds, then the median of ``reps`` calls in ms."""
    t0 = time.perf_counter()
    fn()
    if ctx.cuda:
        torch.cuda.synchronize()
    first = time.perf_counter() - t0
    return {"first_call_s": round(first, 2), "ms": round(_timer(ctx)(fn, reps), 4)}


def op_cases(dry_run: bool) -> list[tuple]:
    """(label, pattern, grid, batch, heads, head_dim, position kind) — Swin-T stage 1, SASA/NATTEN, HaloNet, ViT-B."""
    if dry_run:
        return [("window7_shift3_rel_bias", Window(7, 3), (14, 14), 2, 2, 16, "rel_bias"),
                ("neighborhood7", Neighborhood(7), (14, 14), 1, 2, 16, None)]
    return [("swin_t_stage1_window7_shift3_rel_bias", Window(7, 3), (56, 56), 64, 3, 32, "rel_bias"),
            ("neighborhood7_56", Neighborhood(7), (56, 56), 32, 4, 32, None),
            ("neighborhood7_32", Neighborhood(7), (32, 32), 64, 4, 32, None),
            ("halo8_3_rel_logits_32", Halo(8, 3), (32, 32), 32, 8, 32, "rel_logits"),
            ("axial_56", Axial(1), (56, 56), 32, 4, 32, None),
            ("global_vit_b_14", Global(), (14, 14), 128, 12, 64, None)]


def _position(kind, pattern, grid, heads, head_dim, device):
    radius = pattern.max_offset(grid)
    if kind == "rel_bias":
        return RelativeBias(torch.zeros(heads, *(2 * r + 1 for r in radius), device=device, requires_grad=True))
    if kind == "rel_logits":
        return RelativeLogits(tuple(torch.zeros(2 * r + 1, head_dim, device=device, requires_grad=True)
                                    for r in radius))
    return None


def _dense_sdpa(pattern, grid, q, k, v):
    """SDPA over the flattened grid with the pattern's dense ``(N, N)`` bool mask (None for Global)."""
    B, h, d = q.shape[0], q.shape[-2], q.shape[-1]
    mask = None if isinstance(pattern, Global) else pattern.mask(grid, device=q.device)
    qt, kt, vt = (t.reshape(B, -1, h, d).transpose(1, 2) for t in (q, k, v))  # (B, h, N, d)
    return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask).transpose(1, 2)


def _natten(pattern, q, k, v):
    """NATTEN's fused 2D neighborhood attention (its layout ``(B, H, W, heads, d)`` is ours)."""
    import natten

    return natten.functional.na2d(q, k, v, kernel_size=pattern.kernel, dilation=pattern.dilation)


def _implementations(ctx, label, pattern, grid, position):
    runs = {"blocked": lambda q, k, v: attention(q, k, v, pattern, position=position, backend="blocked")}
    if ctx.cuda:
        runs["flex_compiled"] = lambda q, k, v: attention(q, k, v, pattern, position=position, backend="flex")
        if position is None:
            runs["sdpa_dense_mask"] = functools.partial(_dense_sdpa, pattern, grid)
        if isinstance(pattern, Neighborhood) and pattern.border == "shift" and position is None:
            with contextlib.suppress(ImportError):
                import natten  # noqa: F401

                runs["natten"] = functools.partial(_natten, pattern)
    return runs


def step_operator(ctx, out: dict | None = None) -> dict:
    out = ctx.partial if out is None else out
    device, reps = ctx.device, 3 if ctx.dry_run else 20
    peaks = out["matmul_tflops"] = {}
    if ctx.cuda:
        for dname, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a = torch.randn(8192, 8192, device=device, dtype=dtype)
            peaks[dname] = round(2 * 8192**3 / measure(ctx, lambda a=a: a @ a, 10)["ms"] / 1e9, 1)
    dtypes = {"fp32": torch.float32} if ctx.dry_run else {"fp32": torch.float32, "bf16": torch.bfloat16}
    cases, targets = out.setdefault("cases", {}), out.setdefault("targets", [])
    for label, pattern, grid, B, h, d, kind in op_cases(ctx.dry_run):
        for dname, dtype in dtypes.items():
            entry = cases[f"{label} {dname}"] = {"batch": B, "heads": h, "head_dim": d, "grid": list(grid)}
            g = torch.Generator().manual_seed(0)
            q, k, v = (torch.randn(B, *grid, h, d, generator=g).to(device, dtype).requires_grad_() for _ in range(3))
            position = _position(kind, pattern, grid, h, d, device)
            for name, fn in _implementations(ctx, label, pattern, grid, position).items():
                for mode in ("fwd", "fwd+bwd"):
                    if ctx.left() < 15:
                        entry[f"{name} {mode}"] = "skipped: time"
                        continue
                    try:
                        if mode == "fwd":
                            with torch.no_grad():
                                entry[f"{name} {mode}"] = measure(ctx, functools.partial(fn, q, k, v), reps)
                        else:
                            entry[f"{name} {mode}"] = measure(ctx, functools.partial(_backward, fn, q, k, v), reps)
                    except Exception as e:  # noqa: BLE001 - record and go on (e.g. flex out of shared memory)
                        entry[f"{name} {mode}"] = f"{type(e).__name__}: {str(e)[:200]}"
            _targets(entry, label, dname, pattern, grid, B, h, d, peaks, targets)
    return out


def _backward(fn, q, k, v) -> None:
    fn(q, k, v).float().sum().backward()


def _targets(entry, label, dname, pattern, grid, B, h, d, peaks, targets) -> None:
    ms = {key: value["ms"] for key, value in entry.items() if isinstance(value, dict)}
    for mode in ("fwd", "fwd+bwd"):
        ours, flex = ms.get(f"blocked {mode}"), ms.get(f"flex_compiled {mode}")
        if ours and flex and not isinstance(pattern, Global):
            entry[f"flex/blocked {mode}"] = round(flex / ours, 3)
            targets.append({"target": f"{label} {dname} {mode}: blocked ≤ compiled FlexAttention",
                            "ratio": round(flex / ours, 3), "met": ours <= flex})
    if isinstance(pattern, Global) and dname == "bf16" and ms.get("blocked fwd") and peaks.get("bf16"):
        n = grid[0] * grid[1]
        tflops = 4 * B * h * n * n * d / ms["blocked fwd"] / 1e9
        entry["tflops_fwd"] = round(tflops, 1)
        targets.append({"target": "Global bf16 forward ≥ 50 % of the bf16 matmul peak",
                        "share": round(tflops / peaks["bf16"], 3), "met": tflops >= 0.5 * peaks["bf16"]})


# -- step 4 ----------------------------------------------------------------------------------------------------------
def step_models(ctx, out: dict | None = None) -> dict:
    out = ctx.partial if out is None else out
    if not ctx.cuda:
        out["note"] = "skipped: dry run (whole-model img/s against timm is a GPU measurement)"
        return out
    import timm

    from visionattn.models import create_model

    batch, targets = 64, out.setdefault("targets", [])
    for name in ("vit_base_patch16_224", "swin_tiny_patch4_window7_224"):
        row = out[name] = {}
        for who, build in (("visionattn", functools.partial(create_model, name)),
                           ("timm", functools.partial(timm.create_model, name))):
            if ctx.left() < 25:
                row[who] = "skipped: time"
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

                row[who] = {mode: round(batch / (measure(ctx, fn, 5)["ms"] / 1e3), 1)
                            for mode, fn in (("infer_img_s", infer), ("train_img_s", train))}
                del model, opt
                torch.cuda.empty_cache()
            except Exception as e:  # noqa: BLE001
                row[who] = f"{type(e).__name__}: {str(e)[:200]}"
        if all(isinstance(row.get(w), dict) for w in ("visionattn", "timm")):
            for mode in ("infer_img_s", "train_img_s"):
                ratio = row["visionattn"][mode] / row["timm"][mode]
                targets.append({"target": f"{name} {mode} ≥ 1.0x timm", "ratio": round(ratio, 3), "met": ratio >= 1.0})
    return out


STEPS = [("versions", step_env), ("tests", step_tests), ("operator", step_operator), ("models", step_models)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_bench.json", help="the JSON report (default ./gpu_bench.json)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes; GPU-only measurements skipped")
    p.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for the whole run (default {BUDGET_S})")
    p.add_argument("--only", default=None, help=f"comma list of steps: {','.join(n for n, _ in STEPS)}")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("[gpu_bench] no CUDA device: running the dry run instead", flush=True)
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    ctx = Context("cuda" if cuda else "cpu", dry_run=not cuda, out_dir=out.parent, python=sys.executable)
    report = {"script": "benchmarks/gpu_bench.py", "format": 1, "dry_run": ctx.dry_run, "device": ctx.device,
              "host": platform.node(), "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "budget_s": args.budget, "steps": {}}
    t0 = time.monotonic()
    only = None if args.only is None else {s.strip() for s in args.only.split(",") if s.strip()}
    run_steps(ctx, report, out, args.budget, only, steps=STEPS, limits=DRY_STEP_S if ctx.dry_run else STEP_S,
              tag="gpu_bench")
    report["wall_s"] = round(time.monotonic() - t0, 1)
    report["summary"] = summarize(report)
    report["targets"] = [t for e in report["steps"].values() if isinstance(e.get("result"), dict)
                         for t in e["result"].get("targets", [])]
    _write(out, report)
    print(f"[gpu_bench] wrote {out} in {report['wall_s']} s; passed: {report['summary']['passed']}", flush=True)
    for t in report["targets"]:
        print(f"[gpu_bench]   target {'met' if t['met'] else 'MISSED'}: {t}", flush=True)
    for line in report["summary"]["failed_checks"] + report["summary"]["steps_not_ok"]:
        print(f"[gpu_bench]   not ok: {line}", flush=True)
    return 0 if report["summary"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
