"""The segmentation task's report sections: per-class IoU, and validation images with their ground-truth and
predicted label maps drawn over them (``overlays.png``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ...plotting import figure, image_png, png_bytes
from ..base import GridImage, ReportItem
from .metrics import SegEvalResult
from .visual import overlay, side_by_side

__all__ = ["iou_table", "overlay_items"]


def iou_table(result: SegEvalResult, classes: Sequence[str]) -> ReportItem:
    """Per class: labelled pixels, IoU and accuracy (recall) on the validation set."""
    support = result.confusion.sum(axis=1)
    rows = [{"class": name, "pixels": int(support[i]), "IoU": float(result.iou[i]), "accuracy": float(result.acc[i])}
            for i, name in enumerate(classes)]
    text = (f"mIoU {100 * result.miou:.2f}% over the classes present or predicted; pixel accuracy "
            f"{100 * result.pixel_acc:.2f}% over {result.pixels} labelled pixels.")
    return ReportItem("Per-class IoU (validation)", text=text, table=rows)


def _display(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised ``(3, H, W)`` tensor as ``(H, W, 3)`` uint8."""
    from ...data.transforms import denormalize_with

    shown = denormalize_with(image[None].float(), mean, std)[0].clamp(0, 1)
    return (shown.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


@torch.no_grad()
def overlay_items(infer: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], samples: Sequence[dict],
                  meta: dict, device: torch.device) -> list[ReportItem]:
    """For each validation sample (``{"image", "mask", "name"}``): image | ground truth | prediction, the label
    maps drawn over the image, as a grid and as one picture (``overlays.png``)."""
    classes, palette, ignore = list(meta["classes"]), meta["palette"], int(meta.get("ignore_index", 255))
    rows, grid = [], []
    for s in samples:
        logits = infer(s["image"][None].to(device), None).float()
        pred = logits.argmax(dim=1)[0].cpu().numpy()
        truth = s["mask"].numpy()
        image = _display(s["image"], meta["mean"], meta["std"])
        valid = truth != ignore
        acc = float((pred[valid] == truth[valid]).mean()) if valid.any() else float("nan")
        panels = [image, overlay(image, truth, palette, ignore_index=ignore), overlay(image, pred, palette)]
        rows.append((s.get("name", ""), panels, acc))
        grid.append(GridImage(image_png(side_by_side(panels), max_side=480), f"{s.get('name', '')}: pixel acc "
                                                                               f"{100 * acc:.1f}%"))
    if not rows:
        return []
    h, w = rows[0][1][0].shape[:2]
    fig = figure(3 * 2.2 * max(w / h, 0.5), 2.2 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (name, panels, acc) in enumerate(rows):
        for c, (panel, title) in enumerate(zip(panels, ("image", "ground truth", "prediction"), strict=True)):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{name}\n{100 * acc:.1f}% px", fontsize=8)
    text = (f"{len(rows)} validation images: the image, the ground-truth label map and the prediction drawn over it "
            f"(classes in the Pascal VOC colour map: " + ", ".join(
                f"{classes[c]} {tuple(palette[c])}" for c in range(min(len(classes), 12))) +
            (" ..." if len(classes) > 12 else "") + "; ignored pixels left undrawn).")
    return [ReportItem("Validation overlays: image | ground truth | prediction", text=text, png=png_bytes(fig),
                       filename="overlays.png"), ReportItem("Validation samples", grid=grid)]
