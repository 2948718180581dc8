#!/usr/bin/env python
"""Zero-shot classification of the *seen* categories: a diagnostic for the held-out zero-shot result.

The held-out categories test transfer to names the model never saw as a folder. This asks the easier question with
the same machinery (class names through the prompt ensemble, images by cosine similarity): are the validation
drawings (never trained on, but of categories whose drawings were) classified by their category's *name*? Classes:
every category folder (its last part, ``_`` as spaces) with at least ``--min-images`` validation drawings filed in
exactly one such folder. Above chance here and at chance on the held-out categories means the classifier works for
names the captions ground and does not transfer; at chance here means the text side of class names is not learned.

Usage: ``python benchmarks/clip_zeroshot_seen.py --checkpoint runs/clip/best.pt [--min-images 10]``; prints
chance, the same towers at random init (the run's ``run.seed``) and the checkpoint, top-1 and balanced accuracy.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from visionattn.comm import LOCAL  # noqa: E402
from visionattn.tasks import EvalContext  # noqa: E402
from visionattn.tasks.classification.metrics import TopKMetric  # noqa: E402
from visionattn.tasks.clip.zeroshot import class_embeddings, heldout_zero_shot_set  # noqa: E402
from visionattn.tasks.runtime import run_evaluation  # noqa: E402
from visionattn.train.evaluate import model_from_checkpoint  # noqa: E402
from visionattn.train.state import seed_everything  # noqa: E402


def _name(folder: str) -> str:
    return folder.rsplit("/", 1)[-1].replace("_", " ")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a clip run's best.pt / ckpt-*.pt")
    parser.add_argument("--min-images", type=int, default=10, help="validation drawings a class needs")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    restored = model_from_checkpoint(args.checkpoint, task="clip")
    task, cfg = restored.task, restored.cfg
    data = task.build_data(task.eval_data_config(cfg.data, restored.meta), cfg.run.seed)
    val, source = data.val, data.val.source
    counts = Counter(_name(f) for i in val.indices for f in source.items[i].folders)
    classes = sorted(c for c, n in counts.items() if n >= args.min_images)
    index = {c: k for k, c in enumerate(classes)}
    picked, labels = [], []
    for i in val.indices:
        names = {_name(f) for f in source.items[i].folders} & set(classes)
        if len(names) == 1:
            picked.append(i)
            labels.append(index[names.pop()])
    zs = heldout_zero_shot_set(source, picked, labels, classes, val.transform)

    def loader(dataset):
        return torch.utils.data.DataLoader(dataset, batch_size=256, shuffle=False, collate_fn=data.collate), None

    ctx = EvalContext(torch.device("cpu"), "fp32", LOCAL, loader)

    def score(model):
        model.eval()
        weights = class_embeddings(model, classes, task.options.templates, task.tokenizer, ctx.device)

        def forward(m, batch):
            return 100.0 * m(images=batch["image"]).image.float() @ weights.t()

        result = run_evaluation(model, loader(zs.dataset)[0], forward, TopKMetric(len(classes)), ctx)
        return result.metrics["top1"], float(np.nanmean(result.details.per_class))

    seed_everything(cfg.run.seed)
    start = task.build_model(cfg.model, data.meta)
    rows = {"chance": (1 / len(classes), 1 / len(classes)), "random init": score(start),
            "trained": score(restored.model)}
    share = Counter(labels).most_common(1)[0]
    print(f"{len(picked)} validation drawings of {len(classes)} seen categories (>= {args.min_images} each; largest "
          f"{classes[share[0]]!r} {100 * share[1] / len(picked):.1f}%): {', '.join(classes)}")
    print(f"{'':<14}{'top-1':>9}{'balanced':>10}")
    for name, (top1, balanced) in rows.items():
        print(f"{name:<14}{100 * top1:>8.2f}%{100 * balanced:>9.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
