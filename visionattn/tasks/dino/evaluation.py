"""Evaluating frozen features: extract them over a dataset (every rank its shard, then gathered), score them with
the weighted k-NN and the linear probe (:mod:`~visionattn.tasks.dino.knn`), and watch the teacher for collapse.

Metrics (the primary one is ``knn_top1``): ``knn_top1``, ``knn_top5`` (with 5 or more classes), ``linear_top1``
(``task.linear_probe``), ``teacher_entropy`` (mean per-image entropy of the teacher's centred, sharpened output on
the validation images, nats) and ``teacher_kl_uniform`` (KL of its mean to the uniform). Unlabeled data (no bank,
or labels ``-1``) has no k-NN or probe: those metrics are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ...comm import all_gather_with_grad
from ..base import EvalContext, Evaluation
from ..runtime import autocast_context, to_device
from .knn import knn_scores, linear_probe, topk_correct
from .loss import collapse_message, teacher_stats

__all__ = ["DinoDetails", "extract", "pixel_features", "score_features", "evaluate_model"]


@dataclass
class DinoDetails:
    """What ``Evaluation.details`` holds: the number of bank / validation images, the class count, and the collapse
    warning (None when the teacher looks healthy)."""

    bank: int
    val: int
    classes: int
    collapse: str | None = None


@torch.no_grad()
def extract(fn: Callable[[Tensor], Tensor | tuple[Tensor, ...]], dataset: Dataset, ctx: EvalContext
            ) -> tuple[list[Tensor], Tensor]:
    """``fn(images)`` over ``dataset`` (items ``{"image", "label"}``) under ``ctx``'s autocast, this rank's shard
    gathered from every rank: ``(outputs, labels)``, each output ``(N, ...)`` float32 on ``ctx.device`` for the
    real items only (the padding of uneven shards dropped), ``labels`` ``(N,)`` int64. ``fn`` may return one tensor
    or a tuple."""
    loader, valid = ctx.loader(dataset)
    parts: list[list[Tensor]] = []
    labels, keep = [], []
    seen = 0
    for batch in loader:
        batch = to_device(batch, ctx.device)
        with autocast_context(ctx.device, ctx.precision):
            out = fn(batch["image"])
        out = out if isinstance(out, tuple) else (out,)
        n = int(out[0].shape[0])
        real = n if valid is None else max(0, min(n, valid - seen))
        seen += n
        parts.append([o.float() for o in out])
        labels.append(batch["label"].long())
        keep.append(torch.arange(n, device=ctx.device) < real)
    if not parts:
        raise ValueError(f"DINO evaluation: the dataset of {len(dataset)} items gave no batch")
    outputs = [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))]
    label, mask = torch.cat(labels), torch.cat(keep)
    if ctx.info.distributed:  # equal padded shards on every rank
        outputs = [all_gather_with_grad(o.contiguous(), ctx.info) for o in outputs]
        label = all_gather_with_grad(label, ctx.info)
        mask = all_gather_with_grad(mask.to(torch.uint8), ctx.info).bool()
    return [o[mask] for o in outputs], label[mask]


def pixel_features(mean, std) -> Callable[[Tensor], Tensor]:
    """Raw pixels as features: the model input mapped back to [0, 1] (``x · std + mean``), flattened."""
    def fn(images: Tensor) -> Tensor:
        m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        return (images * s + m).flatten(1)
    return fn


def score_features(bank: Tensor, bank_labels: Tensor, val: Tensor, val_labels: Tensor, classes: int, k: int,
                   temperature: float, probe: bool) -> dict[str, float]:
    """``knn_top1``, ``knn_top5`` (5+ classes) and, if ``probe``, ``linear_top1`` of ``val`` against ``bank``."""
    scores = knn_scores(bank, bank_labels, val, classes, k=k, temperature=temperature)
    n = max(len(val_labels), 1)
    out = {"knn_top1": topk_correct(scores, val_labels, 1) / n}
    if classes >= 5:
        out["knn_top5"] = topk_correct(scores, val_labels, 5) / n
    if probe:
        logits = linear_probe(bank, bank_labels, val, classes)
        out["linear_top1"] = topk_correct(logits, val_labels, 1) / n
    return out


def _classes(meta: dict, *labels: Tensor) -> int:
    names = meta.get("label_names")
    top = max(int(t.max()) for t in labels if t.numel()) + 1
    return max(len(names) if names else 0, top)


def evaluate_model(net: nn.Module, data, ctx: EvalContext, center: Tensor, temp: float, k: int,
                   temperature: float, probe: bool) -> Evaluation:
    """The metrics of the module docstring for a :class:`~visionattn.tasks.dino.head.DinoModel` ``net`` (the
    teacher, in training) on ``data`` (:class:`~visionattn.tasks.dino.data.DinoData`); ``center`` and ``temp`` are
    the loss's current center and teacher temperature. ``net`` runs in eval mode and is put back."""
    was = net.training
    net.eval()
    try:
        def features_and_head(x: Tensor) -> tuple[Tensor, Tensor]:
            f = net.features(x)  # (B, C)
            return f, net.head(f)  # (B, K)

        (val_f, val_out), val_y = extract(features_and_head, data.val, ctx)
        entropy, kl = teacher_stats(val_out, center.to(val_out.device), temp)
        metrics = {"teacher_entropy": float(entropy.mean()), "teacher_kl_uniform": float(kl)}
        bank = getattr(data, "bank", None)
        labelled = bank is not None and bool((val_y >= 0).all())
        if labelled:
            (bank_f,), bank_y = extract(net.features, bank, ctx)
            classes = _classes(data.meta, bank_y, val_y)
            metrics.update(score_features(bank_f, bank_y, val_f, val_y, classes, k, temperature, probe))
        else:
            classes = 0
            metrics.update({"knn_top1": math.nan, **({"linear_top1": math.nan} if probe else {})})
    finally:
        net.train(was)
    K = val_out.shape[-1]
    details = DinoDetails(len(bank) if labelled else 0, len(val_y), classes,
                          collapse_message(metrics["teacher_entropy"], metrics["teacher_kl_uniform"], K))
    return Evaluation(metrics, details)
