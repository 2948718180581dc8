#!/usr/bin/env python
"""What a training step of each segmentation model costs: SETR's three decoders on the digit-scene backbone, and
SETR against torchvision's FCN / DeepLabV3 (ResNet-50) on the nuclei tiles.

For each model: parameters, GMACs of one image (``visionattn.models.flops.count_flops``: multiply-adds, attention
counted analytically), and per training step (forward, cross-entropy, backward, AdamW step) at the configs' batch
size the **CPU seconds of this process** (``os.times``: what the step costs, whatever other processes do on a
shared machine) and the wall seconds, median of ``--reps`` steps after one warm-up step. One torch thread, as a
training run uses on 2 cores (1 compute thread + 1 loader worker). ``others`` is the share of the machine other
processes used meanwhile.

Usage: ``python benchmarks/segmentation.py [--quick] [--reps 5] [--out results.json]``
``--quick``: 2 steps per model, the digit-scene decoders and FCN only (a smoke test).
"""

from __future__ import annotations

import argparse
import json
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

from visionattn.models import create_model  # noqa: E402
from visionattn.models.flops import count_flops, count_params  # noqa: E402
from visionattn.tasks.segmentation.baselines import build_torchvision_baseline  # noqa: E402
from visionattn.tasks.segmentation.model import build_segmentation_model  # noqa: E402
from visionattn.train.config import load_config  # noqa: E402

CONFIGS = os.path.join(ROOT, "configs")


def setr_from_config(config: str, decoder: str | None = None):
    """The SETR model, image size, batch and class count a config under configs/ trains."""
    cfg = load_config(os.path.join(CONFIGS, config), [f"task.decoder={decoder}"] if decoder else [])
    classes = 11 if cfg.data.name == "digit_scenes" else 2
    backbone = create_model(cfg.model.name, num_classes=0, img_size=cfg.data.img_size,
                            **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.overrides.items()})
    o = cfg.task
    model = build_segmentation_model(backbone, o.decoder, classes, o.channels, o.stages, o.mla_streams,
                                     o.aux_stages, input_norm=o.input_norm)
    return model, cfg.data.img_size, cfg.schedule.batch_size, classes


def cases(quick: bool):
    out = []
    for decoder in ("naive", "pup", "mla"):
        out.append((f"SETR-{decoder} (digit scenes)", lambda d=decoder: setr_from_config(
            f"segmentation_digits_{d}.yaml")))
    _, size, batch, classes = setr_from_config("segmentation_nuclei.yaml")
    if not quick:
        out.append(("SETR-PUP (nuclei)", lambda: setr_from_config("segmentation_nuclei.yaml")))
    for name in ("torchvision.fcn_resnet50",) + (() if quick else ("torchvision.deeplabv3_resnet50",)):
        out.append((f"{name} (nuclei)", lambda n=name: (build_torchvision_baseline(n, classes, {}), size, batch,
                                                        classes)))
    return out


def step_cost(model, size: int, batch: int, classes: int, reps: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, classes, (batch, size, size))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    cpu, wall, others = [], [], []
    for i in range(reps + 1):
        b0, c0 = cpu_seconds()
        t0 = time.perf_counter()
        out = model(x)
        F.cross_entropy(out, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        b1, c1 = cpu_seconds()
        if i:  # the first step warms up
            cpu.append(c1 - c0)
            wall.append(dt)
            others.append(max(0.0, (b1 - b0) - (c1 - c0)) / (dt * (os.cpu_count() or 1)))
    return {"cpu_s_per_step": statistics.median(cpu), "wall_s_per_step": statistics.median(wall),
            "others": statistics.median(others)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    reps = 2 if args.quick else args.reps
    rows = []
    print(f"{'model':<42} {'params':>8} {'GMACs':>7} {'batch':>5} {'px':>4} {'CPU s/step':>10} {'wall s':>7} "
          f"{'others':>6}")
    for label, build in cases(args.quick):
        model, size, batch, classes = build()
        macs = count_flops(model, size)["macs"] / 1e9
        cost = step_cost(model, size, batch, classes, reps)
        row = {"model": label, "params_m": count_params(model) / 1e6, "gmacs": macs, "batch": batch,
               "img_size": size, **cost}
        rows.append(row)
        print(f"{label:<42} {row['params_m']:>7.2f}M {macs:>7.3f} {batch:>5} {size:>4} "
              f"{cost['cpu_s_per_step']:>10.3f} {cost['wall_s_per_step']:>7.3f} {100 * cost['others']:>5.0f}%")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "threads": 1, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
