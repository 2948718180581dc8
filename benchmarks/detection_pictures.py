#!/usr/bin/env python
"""The pictures of docs/detection.md: ground truth beside DETR's detections (and panoptic segments) on the first
validation images of a finished detection run, as its report draws them (``tasks.detection.report.sample_pairs``),
stacked into one PNG.

Usage: ``python benchmarks/detection_pictures.py RUN_DIR/best.pt OUT.png [--count 4] [--threshold 0.5]``
"""

from __future__ import annotations

import argparse
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from visionattn.tasks.detection.report import sample_pairs  # noqa: E402
from visionattn.train.evaluate import model_from_checkpoint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--threshold", type=float, default=None, help="default: the run's task.score_threshold")
    args = ap.parse_args()
    torch.set_num_threads(1)
    restored = model_from_checkpoint(args.checkpoint, task="detection")
    o = restored.task.options
    data = restored.task.build_data(restored.cfg.data, restored.cfg.run.seed)
    threshold = o.score_threshold if args.threshold is None else args.threshold
    item = sample_pairs(restored.model, data, threshold, o.panoptic_threshold, torch.device("cpu"), args.count)
    tiles = [Image.open(io.BytesIO(g.png)).convert("RGB") for g in item.grid]
    width, height = max(t.width for t in tiles), sum(t.height for t in tiles)
    sheet = Image.new("RGB", (width, height), "white")
    y = 0
    for t in tiles:
        sheet.paste(t, (0, y))
        y += t.height
    sheet.save(args.out)
    print(f"{args.out}: {len(tiles)} validation images ({restored.weights} weights); {item.text}")


if __name__ == "__main__":
    main()
