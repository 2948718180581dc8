"""Joint image + target transforms for detection (``torchvision.transforms.v2`` on ``tv_tensors``): DETR's recipe
at any scale.

A sample is a dict ``{"image": tv_tensors.Image uint8 (3, H, W), "boxes": tv_tensors.BoundingBoxes (M, 4) XYXY,
"labels": (M,), "masks": tv_tensors.Mask (M, H, W)}`` (masks optional). Training: horizontal / vertical flips,
then a random resize of the shorter side among ``scales`` (longer side capped at ``max_size``), or — with ``crop``,
half of the time — DETR's resize, random-size crop, resize; boxes that the crop empties are dropped with their
labels and masks (``SanitizeBoundingBoxes``); then float and normalisation. Evaluation: the shorter side resized to
``scales[-1]`` (when scales are given), float and normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.transforms import v2

__all__ = ["RandomSizeCrop", "build_detection_transform"]


class RandomSizeCrop(nn.Module):
    """DETR's ``RandomSizeCrop``: crop height and width each drawn uniformly from ``[min_size, min(side, max_size)]``
    (torch's RNG), at a uniformly random place (``v2.RandomCrop``, which moves boxes and masks along)."""

    def __init__(self, min_size: int, max_size: int):
        super().__init__()
        if not 1 <= min_size <= max_size:
            raise ValueError(f"RandomSizeCrop: expected 1 <= min_size <= max_size, got {min_size}, {max_size}")
        self.min_size, self.max_size = min_size, max_size

    def forward(self, sample: dict) -> dict:
        H, W = v2.functional.get_size(sample["image"])
        th = int(torch.randint(min(self.min_size, H), min(H, self.max_size) + 1, ()).item())
        tw = int(torch.randint(min(self.min_size, W), min(W, self.max_size) + 1, ()).item())
        return v2.RandomCrop((th, tw))(sample)


def build_detection_transform(train: bool, mean: Sequence[float], std: Sequence[float], scales: Sequence[int] = (),
                              max_size: int | None = None, crop: bool = False,
                              crop_size: tuple[int, int] = (384, 600), hflip: bool = False,
                              vflip: bool = False) -> v2.Compose:
    """The transform of a split (see the module docstring)."""
    steps: list = []
    scales = [int(s) for s in scales]
    if train:
        if hflip:
            steps.append(v2.RandomHorizontalFlip())
        if vflip:
            steps.append(v2.RandomVerticalFlip())
        if scales:
            resize = v2.RandomShortestSize(scales, max_size=max_size)
            if crop:
                cropped = v2.Compose([v2.RandomShortestSize(scales, max_size=max_size),
                                      RandomSizeCrop(*crop_size), v2.RandomShortestSize(scales, max_size=max_size)])
                steps.append(v2.RandomChoice([resize, cropped]))
            else:
                steps.append(resize)
        elif crop:
            steps.append(v2.RandomApply([RandomSizeCrop(*crop_size)], p=0.5))
        steps.append(v2.SanitizeBoundingBoxes(min_size=1))
    elif scales:
        steps.append(v2.Resize(scales[-1], max_size=max_size))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)
