"""Clip transforms with ``torchvision.transforms.v2`` on ``tv_tensors.Video``: one random crop / flip for every
frame of a clip, then float conversion and normalisation.

Input: ``uint8 (T, 3, H, W)`` (torchvision's video layout); output: float ``(3, T, S, S)`` (the models' layout,
channels before time), ``S = img_size``. Training: ``RandomResizedCrop(S, scale=crop_scale)`` when
``random_resized_crop`` else resize (shorter side) + centre crop; ``RandomHorizontalFlip`` when ``hflip`` (never for
labels that name a direction, such as moving digits'). Evaluation: resize (shorter side to ``S``) + centre crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["build_video_transform", "to_model_layout"]


def build_video_transform(img_size: int, train: bool, *, random_resized_crop: bool = False,
                          crop_scale: tuple[float, float] = (0.08, 1.0), hflip: bool = False,
                          mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)):
    """The clip transform: ``uint8 (T, 3, H, W)`` tensor → float ``(3, T, img_size, img_size)`` normalised."""
    steps = []
    if train and random_resized_crop:
        steps.append(v2.RandomResizedCrop(img_size, scale=tuple(crop_scale), antialias=True))
    else:
        steps += [v2.Resize(img_size, antialias=True), v2.CenterCrop(img_size)]
    if train and hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    pipeline = v2.Compose(steps)

    def transform(frames: Tensor) -> Tensor:
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"video transform: expected uint8 frames (T, 3, H, W), got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        return to_model_layout(pipeline(tv_tensors.Video(frames)))

    return transform


def to_model_layout(video: Tensor) -> Tensor:
    """``(T, C, H, W)`` (torchvision) → ``(C, T, H, W)`` (the video models'), as a plain tensor."""
    return video.as_subclass(Tensor).permute(1, 0, 2, 3).contiguous()
