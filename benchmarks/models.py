#!/usr/bin/env python
"""Whole-model throughput: our presets vs timm's corresponding models, in the same process, on CPU.

For each pair: parameters and GMACs of both (counted the same way, :func:`visionattn.models.flops.count_flops`,
so equal work is visible), then images/s of

* inference: ``model(x)`` under ``torch.no_grad`` in eval mode;
* a training step: train mode, ``cross_entropy(model(x), y).backward()``, ``SGD.step()``, ``zero_grad``;

at batch 8, fp32 and bf16 (``torch.autocast('cpu', torch.bfloat16)``). Ours and timm's are timed in alternating
order (AB, BA, ...) so machine noise hits both; we quote the median. ``ratio = ours img/s / timm img/s`` (> 1:
we are faster). ``others`` is the share of the machine other processes used meanwhile (noise on a shared box).

Targets (issue 17, fp32, CPU, eager and compiled): Swin-T ≥ 1.1x timm, every other pair ≥ 1.0x (no user pays for
choosing us; the window-attention module itself has its 1.3x target in ``benchmarks/ops.py``).
A preset that is not registered (yet) is skipped with a note.

Usage: ``python benchmarks/models.py [--quick] [--dtype fp32,bf16] [--only swin,halo] [--reps 5] [--out r.json]``
``--quick``: batch 2, fp32, 2 timed rounds, the small models only (ViT-Ti, Swin-T, HaloNet-H0, ResNet-50): < 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from noise import clock, clock_name, cpu_seconds, set_clock, wait_quiet  # noqa: E402  (benchmarks/noise.py)

from visionattn.models import create_model, list_models  # noqa: E402
from visionattn.models.flops import count_flops, count_params  # noqa: E402


@dataclass(frozen=True)
class Pair:
    key: str  # for --only
    label: str
    ours: str  # our preset
    theirs: str  # timm model
    img_size: int
    target: float | None  # fp32 img/s ratio we aim for (None: no target set)
    note: str = ""


PAIRS = (
    Pair("vit", "ViT-Ti/16", "vit_tiny_patch16_224", "vit_tiny_patch16_224", 224, 1.0),
    Pair("deit", "DeiT-S/16", "deit_small_patch16_224", "deit_small_patch16_224", 224, 1.0),
    Pair("swin", "Swin-T", "swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224", 224, 1.1),
    Pair("halo", "HaloNet-H0", "halonet_h0", "halonet_h1", 256, 1.0,
         "timm has no H0; halonet_h1 is its fully attentional HaloNet (every 3x3 is halo attention), like ours"),
    Pair("halo26", "HaloNet-26t", "halonet26t", "halonet26t", 256, 1.0,
         "same layout as timm halonet26t (halo attention in stages 3-4), halo 3 vs timm's 2"),
    Pair("botnet", "BoTNet-26", "botnet26", "botnet26t_256", 256, 1.0,
         "timm's botnet26t_256 has a tiered stem; ours a ResNet stem"),
    Pair("resnet", "ResNet-50", "resnet50", "resnet50", 224, 1.0),
)
QUICK = ("vit", "swin", "halo", "resnet")
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------------
def alternate(cases: dict[str, Callable[[], object]], warmup: int, reps: int) -> dict[str, dict]:
    """Time each callable ``reps`` times in alternating order after ``warmup`` calls each.
    Returns per case ``{'s': median seconds, 'iqr_pct', 'reps', 'others_pct'}``."""
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            cases[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    b0, o0 = cpu_seconds()
    w0 = time.perf_counter()
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = clock()
            cases[name]()
            times[name].append(clock() - t0)
    b1, o1 = cpu_seconds()
    elapsed = time.perf_counter() - w0
    others = float("nan")  # /proc/stat ticks are too coarse below ~1 s
    if elapsed > 1:
        others = 100.0 * max(0.0, (b1 - b0) - (o1 - o0)) / (elapsed * (os.cpu_count() or 1))
    out = {}
    for name, ts in times.items():
        ts.sort()
        med = statistics.median(ts)
        out[name] = {"s": med, "iqr_pct": 100.0 * (ts[(3 * len(ts)) // 4] - ts[len(ts) // 4]) / med, "reps": reps,
                     "others_pct": min(100.0, others)}
    return out


def inference(model: torch.nn.Module, x: torch.Tensor, dtype) -> Callable[[], object]:
    def run():
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            return model(x)

    return run


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, dtype) -> Callable[[], object]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def run():
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return run


# ---------------------------------------------------------------------------------------------------
def machine_line() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"timm {timm.__version__}, python {platform.python_version()}")


def _timm(pair: Pair) -> torch.nn.Module:
    """timm's model at the pair's size (CNNs take no ``img_size``: they run at any size)."""
    try:
        return timm.create_model(pair.theirs, num_classes=1000, img_size=pair.img_size)
    except TypeError:
        return timm.create_model(pair.theirs, num_classes=1000)


def bench_pair(pair: Pair, batch: int, dtypes: list[str], warmup: int, reps: int, quiet: float,
               compile: bool = False) -> dict:
    """Build both models (seeded), count params/MACs, time inference and a training step per dtype.

    ``compile``: both models go through ``torch.compile`` (inductor) after counting, ours with ``fullgraph=True``
    (a graph break in the operator is an error), timm's with its defaults; the warmup calls compile (one graph for
    eval, one for train) and are not timed."""
    torch.manual_seed(0)
    models = {"ours": create_model(pair.ours, num_classes=1000, img_size=pair.img_size), "timm": _timm(pair)}
    row = {"pair": pair.key, "label": pair.label, "ours": pair.ours, "timm": pair.theirs, "img_size": pair.img_size,
           "batch": batch, "target": pair.target, "note": pair.note}
    for side, model in models.items():
        row[f"{side}_params_m"] = count_params(model) / 1e6
        row[f"{side}_gmacs"] = count_flops(model, pair.img_size)["macs"] / 1e9
    row["compiled"] = compile
    if compile:
        torch._dynamo.reset()
        models = {s: torch.compile(m, fullgraph=s == "ours") for s, m in models.items()}
        warmup = max(warmup, 1)
    x = torch.randn(batch, 3, pair.img_size, pair.img_size)
    y = torch.randint(0, 1000, (batch,))
    for dname in dtypes:
        dtype = DTYPES[dname]
        for m in models.values():
            m.eval()
        waited = wait_quiet(quiet)
        res = alternate({s: inference(m, x, dtype) for s, m in models.items()}, warmup, reps)
        for s in models:
            row[f"{dname}_infer_{s}"] = batch / res[s]["s"]
            row[f"{dname}_infer_{s}_iqr_pct"] = res[s]["iqr_pct"]
        row[f"{dname}_infer_others_pct"] = res["ours"]["others_pct"]
        for m in models.values():
            m.train()
        waited += wait_quiet(quiet)
        res = alternate({s: train_step(m, x, y, dtype) for s, m in models.items()}, warmup, reps)
        for s in models:
            row[f"{dname}_train_{s}"] = batch / res[s]["s"]
            row[f"{dname}_train_{s}_iqr_pct"] = res[s]["iqr_pct"]
        row[f"{dname}_train_others_pct"] = res["ours"]["others_pct"]
        row[f"{dname}_waited_s"] = waited
        r = {k: row[f"{dname}_{k}"] for k in ("infer_ours", "infer_timm", "train_ours", "train_timm")}
        print(f"    {pair.label} {dname}: infer {r['infer_ours']:.2f} vs {r['infer_timm']:.2f} img/s, train "
              f"{r['train_ours']:.2f} vs {r['train_timm']:.2f} img/s (ours vs timm; waited {waited:.0f} s for quiet)",
              flush=True)
    return row


def print_rows(rows: list[dict], dtypes: list[str]) -> None:
    print("\n### work: params (M) and GMACs (multiply-adds x 1e-9, timm's 'GFLOPs'), same counter for both")
    header = ["model", "ours", "timm", "img", "params ours", "params timm", "GMACs ours", "GMACs timm"]
    body = [[r["label"], r["ours"], r["timm"], str(r["img_size"]), f"{r['ours_params_m']:.2f}",
             f"{r['timm_params_m']:.2f}", f"{r['ours_gmacs']:.2f}", f"{r['timm_gmacs']:.2f}"] for r in rows]
    _table(header, body, left=3)
    for d in dtypes:
        print(f"\n### {d}: images/s at batch {rows[0]['batch']} (median; ratio = ours / timm; target fp32 only)")
        header = ["model", "infer ours", "infer timm", "ratio", "train ours", "train timm", "ratio", "target",
                  "GMAC/s ratio i/t", "others %"]
        body = []
        for r in rows:
            ri, rt = r[f"{d}_infer_ours"] / r[f"{d}_infer_timm"], r[f"{d}_train_ours"] / r[f"{d}_train_timm"]
            target = "-" if r["target"] is None or d != "fp32" else (
                f">={r['target']:.1f}x " + ("met" if min(ri, rt) >= r["target"] else "MISSED"))
            others = max(r[f"{d}_infer_others_pct"], r[f"{d}_train_others_pct"])
            work = r["ours_gmacs"] / r["timm_gmacs"]  # GMAC/s ratio: img/s ratio scaled by the work per image
            body.append([r["label"], f"{r[f'{d}_infer_ours']:.1f}", f"{r[f'{d}_infer_timm']:.1f}", f"{ri:.2f}x",
                         f"{r[f'{d}_train_ours']:.1f}", f"{r[f'{d}_train_timm']:.1f}", f"{rt:.2f}x", target,
                         f"{ri * work:.2f}x/{rt * work:.2f}x", f"{others:.0f}"])
        _table(header, body)
    notes = [f"{r['label']}: {r['note']}" for r in rows if r["note"]]
    if notes:
        print("\nnotes:\n  " + "\n  ".join(notes))
    print("GMAC/s ratio: ours / timm multiply-adds per second (inference/training), i.e. the img/s ratio scaled by "
          "GMACs ours / GMACs timm; equal to the img/s ratio where the work is equal.")


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> None:
    """Aligned columns; the first ``left`` are text (left-justified), the rest numbers."""
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells))
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 2, fp32, 2 rounds, 4 small models (< 60 s)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 8; 2 with --quick)")
    parser.add_argument("--dtype", default=None, help="comma list of fp32,bf16 (default both; fp32 with --quick)")
    parser.add_argument("--only", default=None, help=f"comma list of {','.join(p.key for p in PAIRS)}")
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per case (default 5; 2 with --quick)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="max seconds to wait for other processes to go quiet before each timing (120; quick: 1)")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="time per call: wall clock, or this process's CPU time (use with --threads 1 on a busy "
                             "shared machine)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile both models (ours fullgraph=True); compile time is in the untimed warmup")
    args = parser.parse_args(argv)
    set_clock(args.clock)
    batch = args.batch or (2 if args.quick else 8)
    reps = args.reps or (2 if args.quick else 5)
    quiet = args.quiet_wait if args.quiet_wait is not None else (1.0 if args.quick else 120.0)
    dtypes = (args.dtype or ("fp32" if args.quick else "fp32,bf16")).split(",")
    bad = [d for d in dtypes if d not in DTYPES]
    keys = args.only.split(",") if args.only else (list(QUICK) if args.quick else [p.key for p in PAIRS])
    unknown = [k for k in keys if k not in {p.key for p in PAIRS}]
    if bad or unknown:
        parser.error(f"--dtype must be from {sorted(DTYPES)} (got {bad}); --only from {[p.key for p in PAIRS]} "
                     f"(got {unknown})")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"visionattn models vs timm, CPU. {machine_line()}")
    print(f"batch {batch}, dtypes {dtypes}, {args.warmup} warmup + {reps} alternating timed rounds per case, "
          f"clock {clock_name()}, {'compiled (inductor)' if args.compile else 'eager'}")
    registered = set(list_models())
    rows, skipped = [], []
    for pair in (p for p in PAIRS if p.key in keys):
        if pair.ours not in registered:
            skipped.append(f"{pair.label}: our preset {pair.ours!r} is not registered")
            continue
        if pair.theirs not in timm.list_models():
            skipped.append(f"{pair.label}: timm has no {pair.theirs!r}")
            continue
        t0 = time.perf_counter()
        rows.append(bench_pair(pair, batch, dtypes, args.warmup, reps, quiet, args.compile))
        print(f"  {pair.label}: {time.perf_counter() - t0:.0f} s", flush=True)
    if rows:
        print_rows(rows, dtypes)
    for line in skipped:
        print(f"skipped {line}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine_line(), "rows": rows, "skipped": skipped}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
