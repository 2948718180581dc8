"""Batching dict samples whose images differ in size: pad to the largest, and say where the padding is.

The padding mask is ``(B, H, W)`` bool, True = padding (the convention of ``ops.attention``'s ``key_padding_mask``
and of DETR's ``NestedTensor``); backbones and attention layers downsample it to their token grids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import default_collate

__all__ = ["pad_images", "collate_padded"]


def pad_images(images: Sequence[Tensor], multiple: int = 1, value: float = 0.0) -> tuple[Tensor, Tensor]:
    """``[(C, H_i, W_i)]`` → ``(B, C, H, W)`` images placed at the top-left of zero (``value``) canvases, and the
    ``(B, H, W)`` bool padding mask (True = padding). ``H``, ``W`` are the largest sizes rounded up to
    ``multiple`` (a backbone's total stride, so every token grid is whole)."""
    if not images:
        raise ValueError("pad_images: expected at least one image, got none")
    if multiple < 1:
        raise ValueError(f"pad_images: multiple must be >= 1, got {multiple}")
    channels = {int(im.shape[0]) for im in images}
    if any(im.ndim != 3 for im in images) or len(channels) != 1:
        raise ValueError(f"pad_images: expected (C, H, W) images with one channel count, got shapes "
                         f"{[tuple(im.shape) for im in images]}")
    H = max(int(im.shape[1]) for im in images)
    W = max(int(im.shape[2]) for im in images)
    H, W = -(-H // multiple) * multiple, -(-W // multiple) * multiple
    first = images[0]
    out = torch.full((len(images), first.shape[0], H, W), value, dtype=first.dtype)  # (B, C, H, W)
    mask = torch.ones(len(images), H, W, dtype=torch.bool)  # (B, H, W), True = padding
    for i, im in enumerate(images):
        h, w = im.shape[1:]
        out[i, :, :h, :w] = im
        mask[i, :h, :w] = False
    return out, mask


def collate_padded(samples: Sequence[dict], multiple: int = 1, per_sample: Sequence[str] = ()) -> dict:
    """Dict samples → a batch: ``"image"`` padded by :func:`pad_images` (``"padding_mask"`` added), keys in
    ``per_sample`` kept as lists (targets of different lengths: boxes, captions), every other key through
    ``default_collate``."""
    if not samples:
        raise ValueError("collate_padded: expected at least one sample, got none")
    keys = list(samples[0])
    missing = [(i, k) for i, s in enumerate(samples) for k in keys if k not in s]
    if missing:
        raise ValueError(f"collate_padded: every sample needs the keys {keys}; missing {missing[:5]}")
    batch = {}
    images, mask = pad_images([s["image"] for s in samples], multiple)
    batch["image"], batch["padding_mask"] = images, mask
    for key in keys:
        if key == "image":
            continue
        values = [s[key] for s in samples]
        batch[key] = list(values) if key in per_sample else default_collate(values)
    return batch
