"""Single-digit scenes as a classification dataset: one real scikit-learn digit *composed* on a canvas at a random
place and scale (``DigitScenes`` with one digit), labelled with that digit.

This is the backbone pretraining of the DETR digit-scene configs, DETR's "ImageNet-pretrained backbone" at this
scale: a classifier of digits that fill their image (the built-in ``digits``) learns features tied to that one
position and size, which do not transfer to digits anywhere on a larger canvas (a linear probe of such a ResNet's
pooled features scores 0.24 on one-digit 64 px scenes, measured), while these scenes teach position- and
scale-invariant digit features. Train and val digits come from disjoint pools, as in every composed set.
"""

from __future__ import annotations

from PIL import Image
from torch.utils.data import Dataset

from ..composed import DigitScenes

__all__ = ["DigitSingles", "build_digit_singles", "SINGLES_LENGTHS"]

SINGLES_LENGTHS = {"train": 12000, "val": 1000}
"""Scenes per split (fixed: item i is a pure function of seed, split and i)."""


class DigitSingles(Dataset):
    """``singles[i]`` → ``(transform(RGB image), digit)``. ``targets`` (every item's label) is composed once, on
    first use (about a millisecond per scene; nothing in training needs it). Digit side ``8 * scale`` pixels,
    ``scale`` in ``(2, size / 16)``."""

    def __init__(self, split: str, length: int, size: int, transform, seed: int = 0):
        if size < 32:
            raise ValueError(f"digit_singles: img_size expected >= 32 (digits of 16 px and more), got {size}")
        self.scenes = DigitScenes(split, length, size=size, num_digits=(1, 1), scale=(2.0, size / 16), seed=seed)
        self.transform = transform
        self.classes = [str(d) for d in range(10)]
        self._targets: list[int] | None = None

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def targets(self) -> list[int]:
        if self._targets is None:
            self._targets = [int(self.scenes[i]["labels"][0]) for i in range(len(self))]
        return self._targets

    def __getitem__(self, index: int):
        item = self.scenes[index]
        return self.transform(Image.fromarray(item["image"]).convert("RGB")), int(item["labels"][0])


def build_digit_singles(cfg):
    """``data.name=digit_singles`` for the classification task: a :class:`~visionattn.data.DataBundle` of
    ``SINGLES_LENGTHS`` scenes of ``cfg.img_size`` pixels, transformed as every classification dataset is."""
    from ..config import DataBundle
    from ..transforms import build_transform

    train = DigitSingles("train", SINGLES_LENGTHS["train"], cfg.img_size, build_transform(cfg, True, 3), cfg.seed)
    val = DigitSingles("val", SINGLES_LENGTHS["val"], cfg.img_size, build_transform(cfg, False, 3), cfg.seed)
    # every class occurs (the pools hold every digit): no indexing pass is needed to check it
    return DataBundle(train, val, list(train.classes), cfg.img_size, [], 3)
