"""Joint image + label-map transforms for semantic segmentation, from ``torchvision.transforms.v2``.

A sample is ``{"image": tv_tensors.Image uint8 (C, H, W), "mask": tv_tensors.Mask int64 (H, W)}``; v2 applies
every geometric op to both, with nearest-neighbour resampling for the ``Mask`` (its kernels always use it) and
bilinear (antialiased) for the image. Only :class:`RandomScale` is ours: v2 has no "scale by a random ratio of the
image's own size" (SETR / mmseg's ``RandomResize(ratio_range=(0.5, 2.0))``).

train: RandomScale(scale_range, base) → RandomCrop(crop, pad_if_needed; image 0, mask ignore) → [RandomHorizontalFlip]
       [→ RandomVerticalFlip] → ToDtype(float32, scale) → Normalize
eval:  [RandomScale((1, 1), base): the long side to ``base``] → ToDtype(float32, scale) → Normalize

``base``: resize each image so that its long side is ``base`` before the random ratio (None: the file's own size).
Padding from the crop is labelled ``ignore_index``, so it never counts in the loss or the metrics.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

__all__ = ["RandomScale", "segmentation_transform", "to_sample", "transformed"]


class RandomScale(v2.Transform):
    """Resize every input by one random ratio drawn uniformly from ``scale_range`` (per call), relative to the
    input's size, or to the size that makes its long side ``base`` when given. Images: bilinear (antialiased);
    masks: nearest (v2's mask kernel). The ratio is drawn from Python's ``random`` (seeded per loader worker)."""

    def __init__(self, scale_range: Sequence[float] = (0.5, 2.0), base: int | None = None):
        super().__init__()
        lo, hi = (float(s) for s in scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"RandomScale: scale_range expected 0 < low <= high, got {tuple(scale_range)}")
        if base is not None and base < 1:
            raise ValueError(f"RandomScale: base expected a positive long side or None, got {base}")
        self.scale_range, self.base = (lo, hi), base

    def make_params(self, flat_inputs: list) -> dict:
        h, w = v2.query_size(flat_inputs)
        ratio = random.uniform(*self.scale_range)
        if self.base is not None:
            ratio *= self.base / max(h, w)
        return {"size": [max(1, round(h * ratio)), max(1, round(w * ratio))]}

    def transform(self, inpt, params: dict):
        return self._call_kernel(TF.resize, inpt, size=params["size"], interpolation=v2.InterpolationMode.BILINEAR,
                                 antialias=True)


def segmentation_transform(train: bool, crop: int | None, mean: Sequence[float], std: Sequence[float],
                           scale_range: Sequence[float] = (0.5, 2.0), base: int | None = None, hflip: bool = True,
                           vflip: bool = False, ignore_index: int = 255) -> v2.Compose:
    """The joint transform of one split (see the module docstring). ``crop``: training crop side (None: no crop,
    e.g. for tiles already cut to size)."""
    ops: list = []
    if train:
        if tuple(scale_range) != (1.0, 1.0) or base is not None:
            ops.append(RandomScale(scale_range, base))
        if crop is not None:
            ops.append(v2.RandomCrop(crop, pad_if_needed=True,
                                     fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}))
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
        if vflip:
            ops.append(v2.RandomVerticalFlip())
    elif base is not None:
        ops.append(RandomScale((1.0, 1.0), base))
    ops += [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(mean=list(mean), std=list(std))]
    return v2.Compose(ops)


def to_sample(image: np.ndarray, mask: np.ndarray) -> dict:
    """``image`` uint8 ``(H, W)`` or ``(H, W, C)`` (channels last; gray becomes 3 channels) and ``mask`` ``(H, W)``
    integers → ``{"image": tv_tensors.Image (3, H, W) uint8, "mask": tv_tensors.Mask (H, W) int64}``, the input of
    :func:`segmentation_transform`."""
    arr = np.asarray(image)
    if not arr.flags.writeable:  # e.g. np.asarray of a PIL image: torch wants writable memory
        arr = arr.copy()
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"to_sample: expected a gray (H, W) or RGB (H, W, 3) image, got shape {arr.shape}")
    img = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)  # (C, H, W)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return {"image": tv_tensors.Image(img.contiguous()),
            "mask": tv_tensors.Mask(torch.from_numpy(np.asarray(mask, dtype=np.int64)))}


def transformed(transform, image: np.ndarray, mask: np.ndarray, name: str) -> dict:
    """``transform(to_sample(image, mask))`` as a plain sample: ``{"image": (3, H, W) float tensor, "mask": (H, W)
    int64 tensor, "name": name}`` (the tv_tensors wrappers dropped, so batches are ordinary tensors)."""
    out = transform(to_sample(image, mask))
    return {"image": out["image"].as_subclass(torch.Tensor), "mask": out["mask"].as_subclass(torch.Tensor),
            "name": name}
