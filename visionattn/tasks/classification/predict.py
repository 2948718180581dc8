"""``visionattn predict`` for a classification checkpoint: the top-k classes of image files.

Each image goes through ``visionattn.data.load_image`` (any mode Pillow reads becomes RGB; unreadable files are a
``BadImage``, reported on the file's line) and the run's evaluation transform (resize to the trained size,
normalise with its mean/std).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .loss import logits_of

__all__ = ["Prediction", "predict_images", "format_predictions"]


@dataclass
class Prediction:
    """``top``: ``(class name, probability)`` pairs, most likely first; ``error``: why the file was not classified
    (then ``top`` is empty)."""

    path: str
    top: list[tuple[str, float]]
    error: str | None = None


@torch.no_grad()
def predict_images(model: nn.Module, classes: Sequence[str], transform, images: Sequence[str], top_k: int = 5,
                   batch_size: int = 64, device: torch.device | str = "cpu") -> list[Prediction]:
    """Classify ``images`` (file paths) with ``model``; one :class:`Prediction` per path, in order."""
    from ...data import BadImage, load_image

    if top_k < 1:
        raise ValueError(f"top_k: expected >= 1, got {top_k}")
    dev = torch.device(device)
    model.to(dev).eval()
    k = min(top_k, len(classes))
    out: list[Prediction | None] = [None] * len(images)
    pending: list[tuple[int, torch.Tensor]] = []

    def flush():
        if not pending:
            return
        x = torch.stack([t for _, t in pending]).to(dev)
        probs = logits_of(model(x)).float().softmax(dim=-1).cpu()
        p, idx = probs.topk(k, dim=-1)
        for row, (i, _) in enumerate(pending):
            out[i] = Prediction(str(images[i]), [(classes[j], float(q)) for q, j in
                                                 zip(p[row].tolist(), idx[row].tolist(), strict=True)])
        pending.clear()

    for i, path in enumerate(images):
        try:
            pending.append((i, transform(load_image(path))))
        except BadImage as err:
            out[i] = Prediction(str(path), [], err.reason)
        if len(pending) >= batch_size:
            flush()
    flush()
    return [p for p in out if p is not None]


def format_predictions(predictions: Sequence[Prediction]) -> list[str]:
    """One line per image: ``path: class p%  class p% ...`` or ``path: error: reason``."""
    lines = []
    for pred in predictions:
        if pred.error:
            lines.append(f"{pred.path}: error: {pred.error}")
            continue
        ranked = "  ".join(f"{name} {100 * prob:.1f}%" for name, prob in pred.top)
        lines.append(f"{pred.path}: {ranked}")
    return lines
