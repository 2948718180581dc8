"""DINO's multi-crop augmentation with ``torchvision.transforms.v2`` (the paper's ``DataAugmentationDINO``).

One RGB PIL image → ``{"global": (2, C, G, G), "local": (N, C, L, L)}`` float tensors, normalised:

- every crop: ``RandomResizedCrop`` (bicubic; area ``global_scale`` for the globals, ``local_scale`` for the locals),
  horizontal flip (p = 0.5), colour jitter (brightness = contrast = ``jitter``, saturation ``jitter / 2``, hue
  ``jitter / 4``; p = 0.8), grayscale (p = 0.2);
- global 1: Gaussian blur (p = 1.0); global 2: blur (p = 0.1) and solarization (threshold 128, p = 0.2);
  locals: blur (p = 0.5).

The blur's sigma range is the paper's (0.1, 2.0) pixels at 224 scaled to the global crop size ``G`` (so a 28 px
crop blurs with sigma in (0.0125, 0.25)); its kernel covers 3 sigma each side. Randomness comes from torch's RNG
(torchvision draws every parameter there), which the trainer seeds per sample.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import InterpolationMode, v2

__all__ = ["MultiCrop"]

_BICUBIC = InterpolationMode.BICUBIC


def _blur(p: float, global_size: int) -> v2.Transform:
    sigma = (0.1 * global_size / 224, 2.0 * global_size / 224)
    kernel = 2 * math.ceil(3 * sigma[1]) + 1
    return v2.RandomApply([v2.GaussianBlur(kernel, sigma=sigma)], p=p)


class MultiCrop:
    """The transform of the module docstring. ``local_crops`` may be 0 (then ``"local"`` is ``(0, C, L, L)``).
    ``in_chans`` 1 ends with one gray channel. ``blur`` / ``solarize`` / ``hflip`` False drop those steps."""

    def __init__(self, global_size: int, local_size: int, local_crops: int, global_scale=(0.4, 1.0),
                 local_scale=(0.05, 0.4), jitter: float = 0.4, blur: bool = True, solarize: bool = True,
                 hflip: bool = True, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), in_chans: int = 3):
        if in_chans not in (1, 3):
            raise ValueError(f"MultiCrop: in_chans expected 1 or 3, got {in_chans}")
        self.global_size, self.local_size, self.local_crops, self.in_chans = global_size, local_size, local_crops, \
            in_chans
        common = []
        if hflip:
            common.append(v2.RandomHorizontalFlip(p=0.5))
        if jitter > 0:
            common.append(v2.RandomApply([v2.ColorJitter(jitter, jitter, jitter / 2, min(jitter / 4, 0.5))], p=0.8))
        common.append(v2.RandomGrayscale(p=0.2))
        finish = [v2.Grayscale(1)] if in_chans == 1 else []
        finish += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                   v2.Normalize(mean=list(mean)[:in_chans], std=list(std)[:in_chans])]

        def crop(size, scale):
            return v2.RandomResizedCrop(size, scale=tuple(scale), interpolation=_BICUBIC, antialias=True)

        no_op: list = []
        self.global1 = v2.Compose([crop(global_size, global_scale), *common,
                                   *([_blur(1.0, global_size)] if blur else no_op), *finish])
        self.global2 = v2.Compose([crop(global_size, global_scale), *common,
                                   *([_blur(0.1, global_size)] if blur else no_op),
                                   *([v2.RandomSolarize(threshold=128, p=0.2)] if solarize else no_op), *finish])
        self.local = v2.Compose([crop(local_size, local_scale), *common,
                                 *([_blur(0.5, global_size)] if blur else no_op), *finish])

    def __call__(self, image) -> dict[str, torch.Tensor]:
        views = torch.stack([self.global1(image), self.global2(image)])  # (2, C, G, G)
        if self.local_crops:
            local = torch.stack([self.local(image) for _ in range(self.local_crops)])  # (N, C, L, L)
        else:
            local = torch.zeros(0, self.in_chans, self.local_size, self.local_size)
        return {"global": views, "local": local}
