#!/usr/bin/env python
"""Trees: torchvision Faster R-CNN on the same backbone preset, from scratch, the same tiles, the same wall-clock
training budget as a DETR run, scored with the same COCO evaluation — the race of docs/detection.md.

The DETR side is a finished ``visionattn train`` run (``--detr-run DIR``: its ``config.yaml`` gives the backbone,
tiles, augmentation and normalisation; its ``summary.json`` the training seconds and the val metrics). The Faster
R-CNN side gets exactly those training seconds (evaluation time excluded on both sides): the backbone is the same
registered preset (``visionattn.models.create_model``, random init) under an FPN (``torchvision.ops``), with
torchvision's RPN and RoI heads; AdamW with warmup and a cosine decay over the time budget; the tiles are not
resized (the model's transform has the tile as its fixed size and identity normalisation, the data being normalised
already). Evaluation: every val tile, ``coco_box_metrics`` (faster-coco-eval) as the detection task's metric.

Usage: ``python benchmarks/trees_race.py --detr-run runs/trees [--budget S] [--lr 1e-3] [--out race.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models.detection import FasterRCNN  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.ops import FeaturePyramidNetwork, box_convert  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool  # noqa: E402

from visionattn.models import create_model  # noqa: E402
from visionattn.models.config import spec_overrides  # noqa: E402
from visionattn.tasks.detection.metrics import coco_box_metrics  # noqa: E402


class PresetFPN(nn.Module):
    """A registered preset's stages ``indices`` under an FPN: ``forward(x)`` → ``OrderedDict`` of ``out_channels``
    maps (torchvision's backbone contract for detection models)."""

    def __init__(self, name: str, overrides: dict, indices=(1, 2, 3), out_channels: int = 64):
        super().__init__()
        self.body = create_model(name, num_classes=0, **overrides)
        self.indices = list(indices)
        chans = [self.body.feature_info[i].num_chs for i in self.indices]
        self.fpn = FeaturePyramidNetwork(chans, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x):
        maps = self.body.forward_intermediates(x, indices=self.indices)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def build_frcnn(name: str, overrides: dict, tile: int, num_classes: int) -> FasterRCNN:
    backbone = PresetFPN(name, overrides)
    levels = len(backbone.indices) + 1
    anchors = AnchorGenerator(sizes=tuple((16 * 2 ** i,) for i in range(levels)),
                              aspect_ratios=((0.5, 1.0, 2.0),) * levels)
    return FasterRCNN(backbone, num_classes=num_classes + 1, rpn_anchor_generator=anchors, min_size=tile,
                      max_size=tile, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                      box_detections_per_img=100)


def to_frcnn_targets(batch: dict) -> list[dict]:
    out = []
    for t in batch["target"]:
        h, w = t["size"].tolist()
        boxes = box_convert(t["boxes"], "cxcywh", "xyxy") * torch.tensor([w, h, w, h])
        out.append({"boxes": boxes, "labels": t["labels"] + 1})
    return out


@torch.no_grad()
def evaluate(model: FasterRCNN, data, batch_size: int, classes: list[str]) -> dict:
    model.eval()
    gts, dets = [], []
    for start in range(0, len(data.val), batch_size):
        samples = [data.val[i] for i in range(start, min(len(data.val), start + batch_size))]
        outputs = model([s["image"] for s in samples])
        for s, o in zip(samples, outputs, strict=True):
            t = s["target"]
            gts.append({"image_id": int(t["image_id"]), "size": t["orig_size"].tolist(),
                        "boxes": t["orig_boxes"].numpy(), "labels": t["orig_labels"].numpy()})
            dets.append({"image_id": int(t["image_id"]), "boxes": o["boxes"].numpy(), "scores": o["scores"].numpy(),
                         "labels": (o["labels"] - 1).numpy()})
    model.train()
    metrics, _ = coco_box_metrics(gts, dets, classes, list(range(len(classes))))
    return metrics


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detr-run", required=True, help="run directory of the DETR trees training")
    ap.add_argument("--budget", type=float, default=None, help="training seconds (default: the DETR run's)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=None, help="default: the DETR run's batch size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evals", type=int, default=4, help="evaluations spread over the budget (the best is kept)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from visionattn.tasks import get_task
    from visionattn.train.config import config_from_yaml

    run = Path(args.detr_run)
    cfg = config_from_yaml((run / "config.yaml").read_text(), source=str(run / "config.yaml"))
    summary = json.loads((run / "summary.json").read_text())
    budget = args.budget or float(summary["train_time_s"])
    batch = args.batch or cfg.schedule.batch_size
    task = get_task("detection")(cfg.task)
    data = task.build_data(cfg.data, cfg.run.seed)
    classes = list(data.meta["classes"])
    torch.manual_seed(args.seed)
    model = build_frcnn(cfg.model.name, spec_overrides(cfg.model), cfg.task.tile, len(classes))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"Faster R-CNN on {cfg.model.name} + FPN ({params:.2f}M params), {len(data.train)} train / {len(data.val)} "
          f"val tiles, batch {batch}, {budget:.0f} s of training (the DETR run's), lr {args.lr}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(args.seed)
    spent, step, epoch, best, history = 0.0, 0, 0, None, []
    checkpoints = [budget * (k + 1) / args.evals for k in range(args.evals)]
    model.train()
    while spent < budget:
        order = torch.randperm(len(data.train), generator=g).tolist()
        for start in range(0, len(order) - batch + 1, batch):
            if spent >= budget:
                break
            t0 = time.perf_counter()
            frac = spent / budget
            lr = args.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
            for group in opt.param_groups:
                group["lr"] = lr
            torch.manual_seed(args.seed * 100003 + step)  # augmentation draws
            samples = [data.train[i] for i in order[start:start + batch]]
            b = data.collate(samples)
            losses = model([s["image"] for s in samples], to_frcnn_targets(b))
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            spent += time.perf_counter() - t0
            step += 1
            if step % 50 == 0:
                print(f"step {step}  {spent:.0f}/{budget:.0f} s  loss {float(loss):.3f}  lr {lr:.2e}", flush=True)
            if checkpoints and spent >= checkpoints[0]:
                checkpoints.pop(0)
                metrics = evaluate(model, data, batch, classes)
                history.append({"train_s": round(spent, 1), "step": step, **metrics})
                print(f"eval at {spent:.0f} s: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
                if best is None or metrics["map"] > best["map"]:
                    best = history[-1]
        epoch += 1
    detr = {k[4:]: summary.get(k) for k in ("val_map", "val_map50", "val_map75", "val_ar100")}
    detr_ema = {k[8:]: summary.get(k) for k in ("val_ema_map", "val_ema_map50", "val_ema_map75", "val_ema_ar100")}
    result = {"budget_s": budget, "frcnn_steps": step, "frcnn_epochs": epoch, "frcnn_best": best,
              "frcnn_history": history, "detr_final": detr, "detr_final_ema": detr_ema,
              "detr_best_map": summary.get("best_val_map"), "backbone": cfg.model.name}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
