#!/usr/bin/env python
"""Video models of the moving-digits configs: clips/s and peak memory of a training step and of inference, on CPU.

For each config under ``configs/`` (default: the single-frame baseline and the four ViViT variants), the model the
config trains (its preset + overrides, ``task.num_frames`` frames of ``data.img_size``, 4 classes) is measured in a
fresh process (forked: each gets its own heap), single-threaded as ``visionattn train`` runs on CPU:

* ``train clips/s``: one update of ``schedule.batch_size`` clips — ``cross_entropy(model(x), y).backward()``,
  ``AdamW.step()``, ``zero_grad`` — median of ``--repeats`` after a warm-up;
* ``eval clips/s``: ``model(x)`` under ``torch.no_grad`` in eval mode, same batch;
* ``peak MiB``: the peak RSS growth of one training update after the warm-up (the kernel's ``VmHWM`` reset, fixed
  glibc mmap threshold: what :mod:`visionattn.analysis.sweep` measures), i.e. activations, gradients and workspace
  of a batch, not the resident weights.

Plus parameters and MACs per clip (:func:`visionattn.models.flops.count_flops`). ``others`` is the share of the
machine other processes used during the case (a shared 2-core box: read throughput with it).

Usage: ``python benchmarks/video.py [--quick] [--configs video_single_frame,video_spatiotemporal] [--repeats 5]
[--out results.json]``; ``--quick``: batch 4, 1 repeat (a smoke test, seconds).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from noise import cpu_seconds  # noqa: E402  (benchmarks/noise.py)

from visionattn.analysis.sweep import _fixed_mmap_threshold, peak_kib, reset_peak_rss  # noqa: E402
from visionattn.models.flops import count_flops, count_params  # noqa: E402
from visionattn.tasks import get_task  # noqa: E402
from visionattn.train.config import load_config  # noqa: E402

CONFIGS = ("video_single_frame", "video_spatiotemporal", "video_factorised_encoder", "video_factorised_self_attention",
           "video_factorised_dot_product")


def build(config: str):
    """(model, batch size, clip shape) of a config, built as its run builds it (4 moving-digit classes)."""
    cfg = load_config(os.path.join(ROOT, "configs", f"{config}.yaml"))
    meta = {"classes": [str(i) for i in range(4)], "img_size": cfg.data.img_size, "num_frames": cfg.task.num_frames}
    torch.manual_seed(0)
    model = get_task("video")(cfg.task).build_model(cfg.model, meta)
    return model, cfg.schedule.batch_size, (3, cfg.task.num_frames, cfg.data.img_size, cfg.data.img_size), cfg


def measure(config: str, batch: int | None, repeats: int, conn) -> None:
    try:
        fixed = _fixed_mmap_threshold()
        torch.set_num_threads(1)
        model, default_batch, shape, _ = build(config)
        batch = batch or default_batch
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))
        y = torch.randint(4, (batch,), generator=torch.Generator().manual_seed(2))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step():
            F.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        model.train()
        step()  # warm-up (and AdamW's state)
        base, method = reset_peak_rss()
        step()
        peak = (peak_kib(method) - base) / 1024
        b0, o0 = cpu_seconds()
        train, infer = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            train.append(time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            model(x)
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                infer.append(time.perf_counter() - t0)
        b1, o1 = cpu_seconds()
        wall = sum(train) + sum(infer)
        others = max(0.0, (b1 - b0) - (o1 - o0)) / (wall * (os.cpu_count() or 1))
        conn.send({"config": config, "batch": batch, "train_clips_s": batch / statistics.median(train),
                   "eval_clips_s": batch / statistics.median(infer), "peak_mib": peak,
                   "memory_method": method + ("+mmap" if fixed else ""), "others": others})
    except Exception as err:  # noqa: BLE001 - reported in the table
        conn.send({"config": config, "error": f"{type(err).__name__}: {err}"})
    finally:
        conn.close()


def run(config: str, batch: int | None, repeats: int) -> dict:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=measure, args=(config, batch, repeats, child), daemon=True)
    proc.start()
    child.close()
    result = parent.recv() if parent.poll(1800) else {"config": config, "error": "timed out"}
    proc.join(10)
    return result


def static_facts(config: str) -> dict:
    model, _, shape, cfg = build(config)
    counts = count_flops(model, shape[-1], frames=shape[1])
    return {"model": cfg.model.name, "frames": shape[1], "params_m": count_params(model) / 1e6,
            "gmacs": counts["macs"] / 1e9, "attn_gmacs": counts["attention"] / 2e9}


def table(rows: list[dict]) -> str:
    lines = ["| config | model | frames | params (M) | MMACs / clip | train clips/s | eval clips/s | peak MiB (train "
             "step) | others |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['config']} | error: {r['error']} ||||||||")
            continue
        lines.append(f"| {r['config']} | {r['model']} | {r['frames']} | {r['params_m']:.3f} | {1e3 * r['gmacs']:.1f} | "
                     f"{r['train_clips_s']:.1f} | {r['eval_clips_s']:.1f} | {r['peak_mib']:.0f} | "
                     f"{100 * r['others']:.0f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=None, help="default: each config's schedule.batch_size")
    parser.add_argument("--quick", action="store_true", help="batch 4, 1 repeat")
    parser.add_argument("--out", default=None, help="write the rows as JSON")
    args = parser.parse_args(argv)
    batch, repeats = (4, 1) if args.quick else (args.batch, args.repeats)
    rows = []
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        row = {**static_facts(config), **run(config, batch, repeats)}
        rows.append(row)
        print(f"{config}: {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})}",
              flush=True)
    print()
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
