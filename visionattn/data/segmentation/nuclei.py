"""Binary nuclei segmentation on the stardist 0.9.2 image (``visionattn.data.sources.load_nuclei``: one real
512x512 fluorescence image, 125 labelled nuclei, 2018 Data Science Bowl), tiled with a spatially disjoint split.

Split: the right-most columns are validation, the rest training, at a column that is a multiple of the tile side
(``val_width = tile * max(1, round(512 * val_fraction / tile))``); no pixel is in both (a nucleus cut by the line has
its two parts in different splits). Validation = the non-overlapping tiles of its strip (``512 / tile`` rows x
``val_width / tile`` columns); training = ``length`` random crops of ``tile x tile`` from the training part per
epoch, with random flips (the transform's), drawn from the RNGs the trainer seeds per item.

Intensities: the uint16 image (0..235 here) is scaled by its 1st and 99.8th percentiles of the *training* part to
[0, 1] and clipped (StarDist's normalisation), then stored as uint8 and replicated to 3 channels. Labels: 0
background, 1 nucleus (any instance id > 0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from .transforms import transformed

__all__ = ["NUCLEI_CLASSES", "NucleiTiles", "percentile_normalize", "split_column"]

NUCLEI_CLASSES = ["background", "nucleus"]


def percentile_normalize(image: np.ndarray, reference: np.ndarray | None = None, low: float = 1.0,
                         high: float = 99.8) -> np.ndarray:
    """``image`` scaled so that the ``low`` / ``high`` percentiles of ``reference`` (default: itself) map to 0 / 255,
    clipped, as uint8."""
    ref = image if reference is None else reference
    lo, hi = np.percentile(ref.astype(np.float64), [low, high])
    scaled = (image.astype(np.float64) - lo) / max(hi - lo, 1e-12)
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


def split_column(width: int, tile: int, val_fraction: float) -> int:
    """The first validation column: ``width - tile * max(1, round(width * val_fraction / tile))``; ``ValueError``
    when that leaves less than one tile for training."""
    val_width = tile * max(1, round(width * val_fraction / tile))
    if width - val_width < tile:
        raise ValueError(f"nuclei: a {width}-pixel image with tiles of {tile} and val_fraction {val_fraction} leaves "
                         f"{width - val_width} columns for training; expected at least one tile")
    return width - val_width


class NucleiTiles(Dataset):
    """Tiles of the nuclei image (see the module docstring). ``split``: ``"train"`` (``length`` random crops per
    epoch) or ``"val"`` (the fixed tiles; ``length`` is ignored). ``transform`` runs after the crop (training:
    flips + normalisation; validation: normalisation)."""

    classes = NUCLEI_CLASSES

    def __init__(self, nuclei: dict, split: str, tile: int, transform, length: int = 0, val_fraction: float = 0.25):
        if split not in ("train", "val"):
            raise ValueError(f"NucleiTiles: split expected 'train' or 'val', got {split!r}")
        image, labels = np.asarray(nuclei["image"]), np.asarray(nuclei["labels"])
        H, W = labels.shape
        if tile < 1 or tile > H:
            raise ValueError(f"NucleiTiles: tile expected in 1..{H}, got {tile}")
        col = split_column(W, tile, val_fraction)
        self.split_col = col
        self.image = percentile_normalize(image, reference=image[:, :col])  # (H, W) uint8
        self.mask = (labels > 0).astype(np.int64)  # (H, W)
        self.split, self.tile, self.transform = split, tile, transform
        if split == "train":
            if length < 1:
                raise ValueError(f"NucleiTiles: the training split needs length >= 1 crops per epoch, got {length}")
            self.length = length
            self.crop = v2.RandomCrop(tile)
        else:
            self.corners = [(y, x) for y in range(0, H - tile + 1, tile) for x in range(col, W - tile + 1, tile)]
            self.length = len(self.corners)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"NucleiTiles: index {index} out of range for {self.length} {self.split} tiles")
        t = self.tile
        if self.split == "train":
            region = {"image": tv_tensors.Image(torch.from_numpy(self.image[None, :, : self.split_col])),
                      "mask": tv_tensors.Mask(torch.from_numpy(self.mask[:, : self.split_col]))}
            crop = self.crop(region)
            image, mask, name = crop["image"][0].numpy(), crop["mask"].numpy(), f"train-{index}"
        else:
            y, x = self.corners[index]
            image, mask, name = self.image[y: y + t, x: x + t], self.mask[y: y + t, x: x + t], f"val-y{y}-x{x}"
        return transformed(self.transform, image, mask, name)
