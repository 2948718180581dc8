"""Real handwritten digits for the composed datasets: scikit-learn's ``load_digits`` (1,797 8x8 images, values
0..16, UCI optical recognition of handwritten digits), split once into disjoint train / val pools so that a
composed validation item never shows a digit image used in training."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["DigitPool", "digit_pool", "render_digit", "INK", "SPLIT_CODES"]

INK = 0.3
"""A rendered pixel is ink when its intensity (0..1, i.e. the digit's 0..16 divided by 16, after resizing) is at
least this; masks and boxes are made of ink pixels."""

SPLIT_CODES = {"train": 0, "val": 1, "heldout": 2}
"""Mixed into each item's seed so that splits never share a random stream."""


@dataclass(frozen=True)
class DigitPool:
    """images: float32 ``(M, 8, 8)`` in [0, 1]; labels: int64 ``(M,)`` 0..9; indices: int64 ``(M,)`` positions in
    ``load_digits()``; split: ``"train"`` or ``"val"``."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    split: str

    def __len__(self) -> int:
        return len(self.labels)


@functools.lru_cache(maxsize=8)
def digit_pool(split: str, val_fraction: float = 0.25, split_seed: int = 0) -> DigitPool:
    """The ``"train"`` or ``"val"`` digits: a seeded stratified split of ``load_digits`` (``val_fraction`` of each
    class to val). Same arguments, same pool, on any machine; the two pools are disjoint."""
    from sklearn.datasets import load_digits

    from ..builtin import stratified_split

    if split not in ("train", "val"):
        raise ValueError(f"digit_pool: split expected 'train' or 'val', got {split!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"digit_pool: val_fraction expected in (0, 1), got {val_fraction}")
    digits = load_digits()
    labels = np.asarray(digits.target, dtype=np.int64)
    train, val = stratified_split(labels, val_fraction, split_seed)
    idx = train if split == "train" else val
    pool = DigitPool((digits.images[idx] / 16.0).astype(np.float32), labels[idx], idx.astype(np.int64), split)
    for array in (pool.images, pool.labels, pool.indices):
        array.setflags(write=False)  # the pool is cached and shared: nobody may change it
    return pool


def render_digit(image8: np.ndarray, height: int, width: int) -> np.ndarray:
    """An 8x8 digit in [0, 1] resized (bicubic) to float32 ``(height, width)``, clipped to [0, 1]."""
    resized = Image.fromarray(np.asarray(image8, dtype=np.float32)).resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
