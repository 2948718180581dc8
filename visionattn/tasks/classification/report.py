"""The classification task's report sections: the confusion matrix with per-class accuracy, and a grid of
validation images marked right or wrong."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...plotting import figure, image_png, png_bytes
from ..base import GridImage, ReportItem

__all__ = ["confusion_png", "confusion_items", "sample_grid"]


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def confusion_png(confusion: np.ndarray, classes: Sequence[str]) -> bytes:
    """The confusion matrix (rows: true class, columns: predicted), coloured by the fraction of each row so rare
    classes read as clearly as common ones, with counts written in the cells when there are at most 20 classes."""
    cm = np.asarray(confusion, dtype=np.float64)
    n = cm.shape[0]
    if cm.shape != (n, n) or len(classes) != n:
        raise ValueError(f"confusion: expected shape ({len(classes)}, {len(classes)}) for {len(classes)} classes, "
                         f"got {cm.shape}")
    if not np.all(np.isfinite(cm)) or np.any(cm < 0):
        raise ValueError("confusion: expected non-negative finite counts")
    row = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, row, out=np.zeros_like(cm), where=row > 0)
    side = min(max(4.0, 0.45 * n + 2.5), 22.0)
    fig = figure(side + 1.2, side)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    total = cm.sum()
    acc = np.trace(cm) / total if total > 0 else float("nan")
    ax.set_title(f"confusion matrix: {int(total)} samples, accuracy {acc:.2%}")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 40:
        ticks = np.arange(n)
        labels = [_short(c) for c in classes]
        long_names = max(map(len, labels), default=0) > 2
        ax.set_xticks(ticks, labels, rotation=45 if long_names else 0, ha="right" if long_names else "center",
                      fontsize=8 if n > 15 else 10)
        ax.set_yticks(ticks, labels, fontsize=8 if n > 15 else 10)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black")
    return png_bytes(fig)


def confusion_items(confusion: np.ndarray, classes: Sequence[str]) -> list[ReportItem]:
    """The confusion-matrix picture and the per-class table (samples, correct, recall, precision)."""
    cm = np.asarray(confusion, dtype=np.int64)
    support, correct, predicted = cm.sum(axis=1), np.diag(cm), cm.sum(axis=0)
    rows = []
    for i, name in enumerate(classes):
        rows.append({"class": name, "samples": int(support[i]), "correct": int(correct[i]),
                     "accuracy (recall)": correct[i] / support[i] if support[i] else float("nan"),
                     "precision": correct[i] / predicted[i] if predicted[i] else float("nan")})
    return [ReportItem("Confusion matrix (validation)", png=confusion_png(cm, classes), filename="confusion.png"),
            ReportItem("Per-class accuracy (validation)", table=rows)]


@torch.no_grad()
def sample_grid(model: nn.Module, images: torch.Tensor, shown: torch.Tensor, labels: Sequence[int],
                classes: Sequence[str], device: torch.device) -> ReportItem:
    """``images`` (n, C, H, W) normalised model inputs with true ``labels``, ``shown`` (n, 3, H, W) in [0, 1]: a
    grid of the pictures with the true class, the prediction when wrong, and a green / red frame."""
    was = model.training
    model.eval()
    from .loss import logits_of

    pred = logits_of(model(images.to(device))).argmax(dim=-1).cpu().tolist()
    model.train(was)
    grid, right = [], 0
    for image, true, p in zip(shown, labels, pred, strict=True):
        ok = int(true) == int(p)
        right += ok
        caption = f"{'✓' if ok else '✗'} true: {classes[true]}" + ("" if ok else f" · pred: {classes[p]}")
        grid.append(GridImage(image_png(image), caption, ok))
    text = (f"{right} of {len(grid)} shown predictions are right (green ✓); wrong ones (red ✗) show the predicted "
            f"class.")
    return ReportItem("Validation samples", text=text, grid=grid)
