"""``visionattn predict`` for a DINO checkpoint: k-NN labels of image files from the run's training data, and
their embeddings.

Each file goes through ``load_image`` (unreadable files are reported on their line and counted) and the run's
evaluation transform; its teacher features vote among the run's k-NN bank (the training images of the checkpoint's
data config, without augmentation; ``task.knn_k`` neighbours, ``task.knn_temperature``) and the ``--top-k`` labels
are printed with their share of the votes. ``--out DIR`` also writes ``embeddings.npz`` (``paths``, L2-normalised
``features`` ``(N, C)``). Unlabeled training data has no labels to vote: the embeddings are the output, so
``--out`` is required then. ``--text`` and ``--threshold`` are other tasks' options and are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..base import PredictOptions, PredictOutput
from .data import build_dino_data
from .evaluation import extract
from .knn import knn_scores
from .report import _context

__all__ = ["predict_knn"]


@torch.no_grad()
def predict_knn(task, net, meta: dict, data, inputs: Sequence[str], options: PredictOptions,
                device: torch.device) -> PredictOutput:
    from ...data import BadImage, build_transform, load_image

    if options.texts or options.threshold is not None:
        raise ValueError("dino predict takes image files, --top-k and --out; --text and --threshold are for other "
                         "tasks")
    if options.top_k < 1:
        raise ValueError(f"--top-k: expected >= 1, got {options.top_k}")
    transform = build_transform(data, train=False, in_chans=3)
    tensors, lines, errors, order = [], {}, 0, []
    for i, path in enumerate(inputs):
        try:
            tensors.append(transform(load_image(path)))
            order.append(i)
        except BadImage as err:
            lines[i] = f"{path}: error: {err.reason}"
            errors += 1
    net = net.to(device).eval()
    feats = torch.zeros(0, 1)
    if tensors:
        x = torch.stack(tensors)
        feats = torch.cat([net.features(c.to(device)).float() for c in x.split(options.batch_size)])
    labelled = meta.get("label_names") is not None
    if not labelled and options.out_dir is None:
        raise ValueError("this DINO checkpoint was trained on unlabeled images: there are no labels to vote; "
                         "give --out DIR to write the embeddings")
    if labelled and tensors:
        dino = build_dino_data(data, task.options)
        (bank_f,), bank_y = extract(net.features, dino.bank, _context(device))
        names = list(meta["label_names"])
        scores = knn_scores(bank_f, bank_y, feats, len(names), task.options.knn_k, task.options.knn_temperature)
        share = scores / scores.sum(1, keepdim=True).clamp_min(1e-30)
        top, idx = share.topk(min(options.top_k, len(names)), dim=1)
        for row, i in enumerate(order):
            ranked = "  ".join(f"{names[j]} {100 * float(p):.1f}%" for p, j in zip(top[row], idx[row], strict=True))
            lines[i] = f"{inputs[i]}: k-NN {ranked}"
    else:
        for i in order:
            lines[i] = f"{inputs[i]}: embedding ({feats.shape[1]},)"
    files = []
    if options.out_dir is not None and tensors:
        out = Path(options.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "embeddings.npz"
        np.savez(path, paths=np.array([str(inputs[i]) for i in order]),
                 features=F.normalize(feats, dim=1).cpu().numpy())
        files.append(path)
    return PredictOutput([lines[i] for i in range(len(inputs))], errors=errors, files=files)
