"""Zero-shot classification: class names through prompt templates (CLIP's averaged ensemble), images by cosine
similarity; and the zero-shot sets: openclipart's held-out categories, Fashion-MNIST and the digits.

The package sets are grayscale; they are shown to the model as RGB, by default inverted to dark strokes on white (the
look of the drawings it trained on; ``task.zero_shot_invert``), resized by the evaluation transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ...data.captions.base import CaptionSource
from .data import LabeledImages, ZeroShotSet
from .tokenizer import ClipTokenizer

__all__ = ["class_embeddings", "package_zero_shot_set", "heldout_zero_shot_set", "FASHION_NAMES", "DIGIT_NAMES",
           "fill_template"]

FASHION_NAMES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot"]
"""Fashion-MNIST's classes as the words a caption would use (``T-shirt/top`` → ``t-shirt``)."""
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def fill_template(template: str, name: str) -> str:
    """Every ``{}`` of ``template`` replaced by ``name``."""
    return template.replace("{}", name)


@torch.no_grad()
def class_embeddings(model: nn.Module, classes: Sequence[str], templates: Sequence[str], tokenizer: ClipTokenizer,
                     device: torch.device, chunk: int = 256) -> Tensor:
    """``(C, E)`` float32: per class, the mean of its normalised prompt embeddings, normalised again. ``model`` is
    a CLIPModel (or its DDP/FSDP wrapper): it is called as ``model(tokens=...)``, in eval mode."""
    texts = [fill_template(t, c) for c in classes for t in templates]
    was = model.training
    model.eval()
    try:
        parts = [model(tokens=tokenizer(texts[i:i + chunk]).to(device)).text.float()
                 for i in range(0, len(texts), chunk)]
    finally:
        model.train(was)
    per_prompt = torch.cat(parts).reshape(len(classes), len(templates), -1)  # (C, K, E)
    return F.normalize(per_prompt.mean(dim=1), dim=-1)


class GrayImages:
    """``(i) -> PIL RGB`` of uint8 ``(N, H, W)`` gray images, optionally inverted (a class, so workers can pickle
    it)."""

    def __init__(self, images: np.ndarray, invert: bool):
        self.images, self.invert = images, invert

    def __call__(self, i: int) -> Image.Image:
        pixels = self.images[i]
        return Image.fromarray(255 - pixels if self.invert else pixels).convert("RGB")


class SourceImages:
    """``(i) -> PIL RGB``: item ``indices[i]`` of a caption source."""

    def __init__(self, source: CaptionSource, indices: Sequence[int]):
        self.source, self.indices = source, list(indices)

    def __call__(self, i: int) -> Image.Image:
        return self.source.image(self.indices[i])


def package_zero_shot_set(name: str, transform: Callable, limit: int, invert: bool) -> ZeroShotSet:
    """``fashion_mnist`` (the first ``limit`` images of the test split, package ``dataset-fashion-mnist``) or
    ``digits`` (scikit-learn's 8x8 digits, the first ``limit``)."""
    if name == "fashion_mnist":
        from ...data.sources import load_fashion_mnist

        data = load_fashion_mnist("test")
        images, labels, classes = data.images[:limit], data.labels[:limit], FASHION_NAMES
        what = f"Fashion-MNIST test, first {len(labels)}"
    elif name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images[:limit] * (255 / 16)).astype(np.uint8)
        labels, classes = digits.target[:limit], DIGIT_NAMES
        what = f"scikit-learn digits, first {len(labels)}"
    else:
        raise ValueError(f"package zero-shot set: expected 'fashion_mnist' or 'digits', got {name!r}")
    dataset = LabeledImages(GrayImages(images, invert), labels, transform)
    return ZeroShotSet(name, list(classes), dataset, what + (", inverted" if invert else ""))


def heldout_zero_shot_set(source: CaptionSource, indices: Sequence[int], labels: Sequence[int],
                          classes: Sequence[str], transform: Callable) -> ZeroShotSet:
    """The held-out openclipart categories: items ``indices`` of ``source`` labelled ``labels`` (into
    ``classes``)."""
    dataset = LabeledImages(SourceImages(source, indices), labels, transform)
    return ZeroShotSet("heldout", list(classes), dataset, f"{len(indices)} drawings of {len(classes)} held-out "
                                                          f"categories")
