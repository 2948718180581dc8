#!/usr/bin/env python
"""High-resolution dense inputs (issue 17): ViT-S/16, Swin-T and a Neighborhood model at 512² and 1024², one
forward+backward at batch 1 (train mode, ``sum().backward()`` of the logits), ours against timm at the same size.

* **time**: both models of a pair built in this process and timed in alternating order (AB, BA, ...), median of
  ``--reps`` calls after one warm-up call (the first call also builds attention plans); ``ratio = timm s / ours s``
  (> 1: we are faster). ``--clock cpu`` times this process's CPU time (with ``--threads 1``, the work itself on a
  machine other people's jobs keep busy).
* **peak memory**: each (model, size) in a fresh process (``python benchmarks/highres.py --_mem ...``): after a
  warm-up forward+backward and ``malloc_trim``, the kernel's peak-RSS mark is reset and the growth of ``VmHWM`` over
  one forward+backward is read (activations, gradients and every temporary; the weights exist before). A child
  that dies (out of memory) or runs past ``--mem-timeout`` is recorded as such: "does not train here".

Models are built at the input size (``img_size=S``: our presets fit position tables and windows to it, timm's
ViT/Swin take ``img_size`` likewise; CNNs take any size). The Neighborhood model is SASA-ResNet-26 (every 3x3 conv
of ResNet-26's bottlenecks is 7x7 neighborhood attention); timm has no SASA, so its anchor is timm's ResNet-26,
the convolutional network it replaces.

Usage: ``python benchmarks/highres.py [--sizes 512,1024] [--only vit,swin,sasa] [--reps 3] [--out r.json]``;
``--quick``: test presets at 64² and 128², one rep (seconds; tests/test_benchmarks_quick.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import timm  # noqa: E402
import torch  # noqa: E402
from noise import clock, clock_name, cpu_seconds, set_clock  # noqa: E402  (benchmarks/noise.py)

from visionattn.analysis.sweep import _fixed_mmap_threshold, peak_kib, reset_peak_rss  # noqa: E402
from visionattn.models import create_model  # noqa: E402


@dataclass(frozen=True)
class Pair:
    key: str
    label: str
    ours: str
    theirs: str
    note: str = ""


PAIRS = (
    Pair("vit", "ViT-S/16", "vit_small_patch16_224", "vit_small_patch16_224", "global attention over all patches"),
    Pair("swin", "Swin-T", "swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224",
         "window 7: the grids 128/64/32/16 (512²) and 256/.../32 (1024²) are not multiples of 7 (both pad)"),
    Pair("sasa", "SASA-R26 (Neighborhood 7x7)", "sasa_resnet26", "resnet26",
         "timm has no SASA: its anchor is timm's ResNet-26, the convolutional network SASA replaces"),
)
QUICK = (Pair("vit", "ViT test", "vit_tiny_test", "vit_tiny_patch16_224"),
         Pair("swin", "Swin test", "swin_test", "swin_tiny_patch4_window7_224"))


def build(side: str, pair: Pair, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if side == "ours":
        return create_model(pair.ours, num_classes=1000, img_size=size)
    try:
        return timm.create_model(pair.theirs, num_classes=1000, img_size=size)
    except TypeError:  # CNNs take no img_size: they run at any size
        return timm.create_model(pair.theirs, num_classes=1000)


def step(model: torch.nn.Module, x: torch.Tensor) -> None:
    model(x).sum().backward()
    for p in model.parameters():
        p.grad = None


# ---------------------------------------------------------------------------------------------------
def mem_child(side: str, key: str, size: int, quick: bool, threads: int) -> None:
    """In a fresh process: peak RSS growth of one forward+backward at batch 1 (after a warm-up one), with glibc
    mmapping every block ≥ 64 KiB (RSS follows the live tensors, not heap fragmentation; as ``bench sweep``)."""
    fixed = _fixed_mmap_threshold()
    torch.set_num_threads(threads)
    pair = next(p for p in (QUICK if quick else PAIRS) if p.key == key)
    model = build(side, pair, size).train()
    x = torch.randn(1, 3, size, size)
    step(model, x)  # warm-up: plans, kernels, allocator pools
    before, method = reset_peak_rss()
    t0 = time.perf_counter()
    step(model, x)
    seconds = time.perf_counter() - t0
    print(json.dumps({"peak_growth_mib": (peak_kib(method) - before) / 1024, "method": method, "seconds": seconds,
                      "fixed_mmap_threshold": fixed,
                      "params_m": sum(p.numel() for p in model.parameters()) / 1e6}))


def peak_memory(side: str, pair: Pair, size: int, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--_mem", side, pair.key, str(size), str(args.threads or 1)]
    if args.quick:
        cmd.append("--quick")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.mem_timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {args.mem_timeout} s"}
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.split())[-200:]
        return {"status": f"failed (exit {proc.returncode}: killed: out of memory?)" if proc.returncode < 0 else
                f"failed (exit {proc.returncode}): {tail}"}
    return {"status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1])}


def time_pair(pair: Pair, size: int, reps: int) -> dict:
    models = {side: build(side, pair, size).train() for side in ("ours", "timm")}
    x = torch.randn(1, 3, size, size)
    times: dict[str, list[float]] = {side: [] for side in models}
    first = {}
    for side, model in models.items():
        t0 = clock()
        step(model, x)
        first[side] = clock() - t0
    b0, o0 = cpu_seconds()
    w0 = time.perf_counter()
    for r in range(reps):
        for side in (("ours", "timm") if r % 2 == 0 else ("timm", "ours")):
            t0 = clock()
            step(models[side], x)
            times[side].append(clock() - t0)
    b1, o1 = cpu_seconds()
    elapsed = time.perf_counter() - w0
    others = 100.0 * max(0.0, (b1 - b0) - (o1 - o0)) / (elapsed * (os.cpu_count() or 1))
    out = {f"{side}_s": statistics.median(ts) for side, ts in times.items()}
    out.update({f"{side}_first_s": first[side] for side in first}, others_pct=min(100.0, others))
    out["ratio"] = out["timm_s"] / out["ours_s"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="512,1024")
    p.add_argument("--only", default=None, help="comma list of vit,swin,sasa")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    p.add_argument("--mem-timeout", type=float, default=1800.0, help="seconds per peak-memory child process")
    p.add_argument("--no-memory", action="store_true", help="time only")
    p.add_argument("--quick", action="store_true", help="test presets at 64² and 128², one rep")
    p.add_argument("--out", default=None)
    p.add_argument("--_mem", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._mem:
        side, key, size, threads = args._mem
        mem_child(side, key, int(size), args.quick, int(threads))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    set_clock(args.clock)
    pairs = QUICK if args.quick else PAIRS
    keys = args.only.split(",") if args.only else [q.key for q in pairs]
    sizes = [64, 128] if args.quick else [int(s) for s in args.sizes.split(",")]
    reps = 1 if args.quick else args.reps
    print(f"high-resolution fwd+bwd, batch 1, fp32: torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"timm {timm.__version__}, python {platform.python_version()}, {os.cpu_count()} cores, clock "
          f"{clock_name()}, load avg {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for pair in (q for q in pairs if q.key in keys):
        for size in sizes:
            row = {"pair": pair.key, "label": pair.label, "ours": pair.ours, "timm": pair.theirs, "size": size,
                   "note": pair.note}
            t0 = time.perf_counter()
            try:
                row.update(time_pair(pair, size, reps))
            except RuntimeError as e:  # e.g. out of memory: recorded, the run goes on
                row["time_error"] = " ".join(str(e).split())[:200]
            if not args.no_memory:
                for side in ("ours", "timm"):
                    row[f"{side}_memory"] = peak_memory(side, pair, size, args)
            rows.append(row)
            print(json.dumps(row), f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    print("\n| model | size | ours s | timm s | ratio (timm/ours) | ours peak MiB | timm peak MiB | others % |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mem = {s: (f"{r[f'{s}_memory']['peak_growth_mib']:.0f}" if r.get(f"{s}_memory", {}).get("status") == "ok"
                   else r.get(f"{s}_memory", {}).get("status", "-")) for s in ("ours", "timm")}
        timing = ([f"{r['ours_s']:.2f}", f"{r['timm_s']:.2f}", f"{r['ratio']:.2f}x"] if "ratio" in r
                  else ["-", "-", r.get("time_error", "-")])
        print(f"| {r['label']} | {r['size']}² | {' | '.join(timing)} | {mem['ours']} | {mem['timm']} | "
              f"{r.get('others_pct', float('nan')):.0f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"argv": sys.argv[1:], "clock": clock_name(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
