"""Classification metrics: loss, top-1 / top-k, per-class accuracy and the confusion matrix, reduced over ranks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...comm import DistInfo, all_reduce_sum
from ..base import Evaluation

__all__ = ["EvalResult", "TopKMetric", "format_eval"]


@dataclass
class EvalResult:
    """loss: mean cross-entropy (no smoothing). top1 / top5: fractions in [0, 1] (top5 is top-k with
    k = min(5, classes)). confusion: ``(C, C)`` int64 counts, rows = true class, columns = predicted."""

    loss: float
    top1: float
    top5: float
    count: int
    confusion: np.ndarray
    k: int = 5

    @property
    def per_class(self) -> np.ndarray:
        """Accuracy of each true class (NaN for a class with no samples)."""
        totals = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, np.diag(self.confusion) / np.maximum(totals, 1), np.nan)

    def metrics(self) -> dict[str, float]:
        return {"loss": self.loss, "top1": self.top1, "top5": self.top5}


class TopKMetric:
    """``update(logits (B, C), batch with "label" (B,))``; accumulators stay on the logits' device until
    :meth:`compute` (no host sync per batch)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.k = min(5, num_classes)
        self.confusion: torch.Tensor | None = None
        self.loss_sum: torch.Tensor | None = None
        self.topk_correct: torch.Tensor | None = None

    def update(self, logits: torch.Tensor, batch: dict) -> None:
        y = batch["label"]
        logits = logits.float()
        n = self.num_classes
        if self.confusion is None:
            self.confusion = torch.zeros(n * n, dtype=torch.int64, device=logits.device)
            self.loss_sum = torch.zeros((), dtype=torch.float64, device=logits.device)
            self.topk_correct = torch.zeros((), dtype=torch.int64, device=logits.device)
        self.loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        top = logits.topk(self.k, dim=-1).indices
        self.topk_correct += (top == y[:, None]).any(dim=-1).sum()
        self.confusion += torch.bincount(y * n + top[:, 0], minlength=n * n)

    def reduce(self, info: DistInfo) -> None:
        if self.confusion is None:  # this rank saw no samples: contribute zeros to the collective
            self.confusion = torch.zeros(self.num_classes ** 2, dtype=torch.int64)
            self.loss_sum = torch.zeros((), dtype=torch.float64)
            self.topk_correct = torch.zeros((), dtype=torch.int64)
        if info.world_size > 1:
            self.confusion = all_reduce_sum(self.confusion, info)
            self.loss_sum = all_reduce_sum(self.loss_sum, info)
            self.topk_correct = all_reduce_sum(self.topk_correct, info)

    def compute(self) -> Evaluation:
        if self.confusion is None:
            raise ValueError("evaluate: the loader gave no samples; expected a non-empty validation set")
        cm = self.confusion.cpu().view(self.num_classes, self.num_classes).numpy()
        count = int(cm.sum())
        if count == 0:
            raise ValueError("evaluate: the loader gave no samples; expected a non-empty validation set")
        result = EvalResult(loss=float(self.loss_sum) / count, top1=float(np.trace(cm)) / count,
                            top5=float(self.topk_correct) / count, count=count, confusion=cm, k=self.k)
        return Evaluation(result.metrics(), result)


def format_eval(result: EvalResult, classes: list[str]) -> str:
    """Top-1 / top-k and a per-class accuracy table."""
    lines = [f"images: {result.count}   top-1: {100 * result.top1:.2f}%   top-{result.k}: {100 * result.top5:.2f}%"
             f"   loss: {result.loss:.4f}", ""]
    width = max(5, *(len(c) for c in classes))
    lines.append(f"{'class':<{width}}  {'images':>6}  {'correct':>7}  {'accuracy':>8}")
    totals = result.confusion.sum(axis=1)
    for i, name in enumerate(classes):
        acc = result.per_class[i]
        acc_text = "-" if np.isnan(acc) else f"{100 * acc:.1f}%"
        lines.append(f"{name:<{width}}  {int(totals[i]):>6}  {int(result.confusion[i, i]):>7}  {acc_text:>8}")
    return "\n".join(lines)
