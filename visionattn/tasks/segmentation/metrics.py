"""Segmentation metrics from one confusion matrix, summed over batches and over ranks.

Over the labelled pixels (label ≠ ``ignore_index``; padding is labelled so): ``confusion[t, p]`` counts pixels of
true class t predicted p. Then, per class c, ``IoU_c = TP / (TP + FP + FN)`` (NaN when the class is neither present
nor predicted) and ``acc_c = TP / (TP + FN)`` (NaN when absent); ``miou`` and ``mean_acc`` are their means over
the non-NaN classes (mmseg's ``nanmean``); ``pixel_acc = trace / total``. ``loss``: mean cross-entropy over the
labelled pixels (unweighted). Metrics also carry ``iou_<class>`` for each class (names made identifier-safe),
e.g. ``iou_nucleus``: a binary task's foreground IoU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...comm import DistInfo, all_reduce_sum
from ..base import Evaluation

__all__ = ["ConfusionMetric", "SegEvalResult", "class_key", "scores_from_confusion", "format_seg_eval"]


def class_key(name: str) -> str:
    """``iou_<name>`` with every run of characters other than letters, digits and ``_`` as one ``_``."""
    return "iou_" + (re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "class")


def scores_from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray | float]:
    """``{"iou": (K,), "acc": (K,), "miou", "mean_acc", "pixel_acc"}`` from a ``(K, K)`` confusion matrix (rows =
    true class); see the module docstring for the NaN rules."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    union = support + predicted - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(support > 0, tp / support, np.nan)
    total = cm.sum()

    def nanmean(v: np.ndarray) -> float:
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    return {"iou": iou, "acc": acc, "miou": nanmean(iou), "mean_acc": nanmean(acc),
            "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan")}


@dataclass
class SegEvalResult:
    """confusion: ``(K, K)`` int64 (rows = true class); iou / acc: ``(K,)`` per class (NaN: see the module
    docstring); pixels: labelled pixels counted."""

    confusion: np.ndarray
    iou: np.ndarray
    acc: np.ndarray
    miou: float
    mean_acc: float
    pixel_acc: float
    loss: float
    pixels: int


class ConfusionMetric:
    """``update(logits (B, K, H, W), batch with "mask" (B, H, W) int64)``; accumulators stay on the logits' device
    until :meth:`compute` (no host sync per batch)."""

    def __init__(self, classes: list[str], ignore_index: int = 255):
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.ignore_index = ignore_index
        self.confusion: torch.Tensor | None = None
        self.loss_sum: torch.Tensor | None = None

    def _zeros(self, device) -> None:
        self.confusion = torch.zeros(self.num_classes ** 2, dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, batch: dict) -> None:
        target = batch["mask"]
        K = self.num_classes
        if logits.ndim != 4 or logits.shape[1] != K or logits.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"segmentation metric: expected logits (B, {K}, H, W) matching labels (B, H, W), got "
                             f"{tuple(logits.shape)} and {tuple(target.shape)}")
        if self.confusion is None:
            self._zeros(logits.device)
        logits = logits.float()
        valid = target != self.ignore_index
        pred = logits.argmax(dim=1)
        self.confusion += torch.bincount(target[valid] * K + pred[valid], minlength=K * K)
        self.loss_sum += F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="sum").double()

    def reduce(self, info: DistInfo) -> None:
        if self.confusion is None:  # this rank saw no samples: contribute zeros to the collective
            self._zeros(info.device if info.world_size > 1 else "cpu")
        if info.world_size > 1:
            self.confusion = all_reduce_sum(self.confusion, info)
            self.loss_sum = all_reduce_sum(self.loss_sum, info)

    def compute(self) -> Evaluation:
        cm = None if self.confusion is None else self.confusion.cpu().view(self.num_classes, -1).numpy()
        pixels = 0 if cm is None else int(cm.sum())
        if pixels == 0:
            raise ValueError("evaluate: no labelled pixels in the validation set (every label is the ignore index "
                             "or the set is empty); expected at least one")
        s = scores_from_confusion(cm)
        result = SegEvalResult(cm, s["iou"], s["acc"], s["miou"], s["mean_acc"], s["pixel_acc"],
                               float(self.loss_sum) / pixels, pixels)
        metrics = {"miou": result.miou, "pixel_acc": result.pixel_acc, "mean_acc": result.mean_acc,
                   "loss": result.loss}
        metrics.update({class_key(c): float(v) for c, v in zip(self.classes, result.iou, strict=True)})
        return Evaluation(metrics, result)


def format_seg_eval(result: SegEvalResult, classes: list[str]) -> str:
    """mIoU, pixel accuracy and a per-class IoU / accuracy table."""
    lines = [f"pixels: {result.pixels}   mIoU: {100 * result.miou:.2f}%   pixel acc: {100 * result.pixel_acc:.2f}%"
             f"   mean acc: {100 * result.mean_acc:.2f}%   loss: {result.loss:.4f}", ""]
    width = max(5, *(len(c) for c in classes))
    lines.append(f"{'class':<{width}}  {'pixels':>9}  {'IoU':>7}  {'acc':>7}")
    support = result.confusion.sum(axis=1)
    for i, name in enumerate(classes):
        iou = "-" if np.isnan(result.iou[i]) else f"{100 * result.iou[i]:.1f}%"
        acc = "-" if np.isnan(result.acc[i]) else f"{100 * result.acc[i]:.1f}%"
        lines.append(f"{name:<{width}}  {int(support[i]):>9}  {iou:>7}  {acc:>7}")
    return "\n".join(lines)
