"""Phrase grounding of a trained checkpoint on the composed digit phrases: Recall@1/5 (IoU >= 0.5) per phrase type
against the text-blind baseline, on the held-out split (phrase/digit combinations never seen in training) and on
the in-distribution val split, plus a picture of held-out examples (green: ground truth, red: top-1 box).

    python benchmarks/grounding_eval.py runs/grounding_digits/best.pt --picture docs/img/grounding_heldout.png
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from visionattn.comm import LOCAL
from visionattn.data.grounding import digit_phrase_records
from visionattn.tasks.base import EvalContext
from visionattn.tasks.detection.transforms import build_detection_transform
from visionattn.tasks.grounding.data import GroundingCollate, GroundingSamples
from visionattn.tasks.grounding.metrics import format_grounding
from visionattn.tasks.grounding.predict import grounding_examples
from visionattn.tasks.runtime import run_evaluation
from visionattn.train.evaluate import model_from_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--count", type=int, default=500, help="phrases per split")
    ap.add_argument("--picture", type=Path, default=None, help="write a grid of held-out examples here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    r = model_from_checkpoint(args.checkpoint)
    o, cfg = r.task.options, r.cfg
    transform = build_detection_transform(False, r.meta["mean"], r.meta["std"])
    collate = GroundingCollate(r.task.tokenizer, r.task.pad)
    for split in ("heldout", "val"):
        records = digit_phrase_records(split, args.count, size=cfg.data.img_size, num_digits=tuple(o.scene_digits),
                                       scale=tuple(o.scene_scale), heldout_templates=tuple(o.heldout_templates),
                                       seed=cfg.data.seed)
        samples = GroundingSamples(records, transform)
        loader = torch.utils.data.DataLoader(samples, batch_size=100, collate_fn=collate)
        evaluation = run_evaluation(r.model, loader, r.task.eval_forward, r.task.metric(r.meta),
                                    EvalContext(torch.device("cpu"), "fp32", LOCAL, None))
        print(f"== {split} ({'combinations never seen in training' if split == 'heldout' else 'in-distribution'})")
        print(format_grounding(evaluation))
        if split == "heldout" and args.picture is not None:
            from visionattn.tasks.base import TaskData

            item = grounding_examples(r.model, TaskData(samples, samples, r.meta, collate), torch.device("cpu"),
                                      count=16, scale=3, score=o.score, temperature=o.temperature)
            tiles = []
            for g in item.grid:
                tile = torch.from_numpy(__import__("numpy").asarray(Image.open(io.BytesIO(g.png)))).permute(2, 0, 1)
                tiles.append(tile)
                print(f"  picture: {g.caption}  {'hit' if g.ok else 'miss'}")
            grid = make_grid(tiles, nrow=8, padding=4, pad_value=255)
            args.picture.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(grid.permute(1, 2, 0).numpy()).save(args.picture)
            print(f"wrote {args.picture}")


if __name__ == "__main__":
    main()
