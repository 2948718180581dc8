#!/usr/bin/env python
"""Frozen-feature scores of a DINO checkpoint against its baselines, on the checkpoint's own data and protocol.

Rows (every one scored by the same weighted k-NN, k = ``task.knn_k``, T = ``task.knn_temperature``, cosine, and
the same linear probe, on the same bank of training images and the same validation images):

* DINO teacher and DINO student (the checkpoint);
* the same architecture at the initialisation the run started from (its seed);
* raw pixels (the image in [0, 1], flattened);
* ``--supervised CKPT``: a classification checkpoint's pooled backbone features (the class token / pooled map,
  before its classifier), and its own validation top-1 (the supervised model's classifier).

Usage::

    python benchmarks/dino_eval.py runs/dino/best.pt [--supervised runs/sup/best.pt] [--bank-size N]
                                   [--device cpu] [--out results.json]

Prints a markdown table; ``--out`` also writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from visionattn.tasks.dino.evaluation import extract, pixel_features, score_features  # noqa: E402
from visionattn.tasks.dino.head import pooled_features  # noqa: E402
from visionattn.tasks.dino.report import _context  # noqa: E402
from visionattn.train.evaluate import model_from_checkpoint  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a DINO training checkpoint (best.pt, ckpt-*.pt)")
    p.add_argument("--supervised", metavar="CKPT", help="a classification checkpoint trained on the same data")
    p.add_argument("--bank-size", type=int, default=None, help="k-NN bank / probe training images (default: the "
                                                               "run's task.eval_bank_size)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    restored = model_from_checkpoint(args.checkpoint, weights="model", task="dino")
    task, cfg = restored.task, restored.cfg
    if args.bank_size is not None:
        task.options = dataclasses.replace(task.options, eval_bank_size=args.bank_size)
    data = task.build_data(cfg.data, cfg.run.seed)
    task._model_cfg = cfg.model  # random_init_model rebuilds the run's architecture at its seed
    ctx = _context(device)
    o = task.options
    (bank_y_cache, val_y_cache) = (None, None)
    rows = []

    def score(name, fn):
        nonlocal bank_y_cache, val_y_cache
        t = time.perf_counter()
        (bank_f,), bank_y = extract(fn, data.bank, ctx)
        (val_f,), val_y = extract(fn, data.val, ctx)
        bank_y_cache, val_y_cache = bank_y, val_y
        classes = max(len(data.meta.get("label_names") or []), int(bank_y.max()) + 1)
        scores = score_features(bank_f, bank_y, val_f, val_y, classes, o.knn_k, o.knn_temperature, True)
        rows.append({"features": name, "dim": int(bank_f.shape[1]), **scores, "seconds": time.perf_counter() - t})
        print(f"  {name}: {scores}", file=sys.stderr, flush=True)

    student = restored.model.to(device).eval()
    teacher = task._scored(student).to(device).eval()
    score("DINO teacher", teacher.features)
    score("DINO student", student.features)
    score("same architecture, random init", task.random_init_model(data.meta).to(device).eval().features)
    score("raw pixels", pixel_features(data.meta["mean"], data.meta["std"]))
    if args.supervised:
        from visionattn.train.evaluate import evaluate_checkpoint

        sup = model_from_checkpoint(args.supervised, task="classification")
        model = sup.model.to(device).eval()
        score(f"supervised ({sup.cfg.model.name}, {sup.cfg.schedule.epochs} epochs) features",
              lambda x: pooled_features(model, x))
        evaluation, _ = evaluate_checkpoint(args.supervised, device=args.device)
        rows.append({"features": "supervised classifier itself", "top1": evaluation.metrics["top1"]})
    print(f"\nbank {len(data.bank)} / val {len(data.val)} images of {cfg.data.name}; k-NN k={o.knn_k} "
          f"T={o.knn_temperature}; linear probe = logistic regression on standardised frozen features\n")
    print("| features | k-NN top-1 | k-NN top-5 | linear top-1 |")
    print("|---|---|---|---|")
    for r in rows:
        if "top1" in r:
            print(f"| {r['features']} | | | {100 * r['top1']:.2f}% (its classifier) |")
        else:
            print(f"| {r['features']} | {100 * r['knn_top1']:.2f}% | {100 * r.get('knn_top5', float('nan')):.2f}% "
                  f"| {100 * r['linear_top1']:.2f}% |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "bank": len(data.bank), "val": len(data.val), "rows": rows}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
