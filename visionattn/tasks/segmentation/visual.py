"""Label maps as pictures: colour masks (palette PNGs) and overlays on the image (torchvision's
``draw_segmentation_masks``), for the report and ``visionattn predict``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["colour_mask", "mask_image", "overlay", "side_by_side"]


def colour_mask(labels: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255) -> np.ndarray:
    """``(H, W)`` class indices → ``(H, W, 3)`` uint8 colours (``palette[c]``; ignored pixels white)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    table[ignore_index % 256] = 255
    return table[np.asarray(labels, dtype=np.int64) % 256]


def mask_image(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> Image.Image:
    """A palette (``P``) PNG image of ``labels`` (``(H, W)`` indices < 256): the pixel values are the classes, the
    palette shows them in colour (the VOC convention, readable back as a label map)."""
    img = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    flat = [v for c in palette for v in c] + [255, 255, 255] * (256 - len(palette))
    img.putpalette(flat[: 256 * 3])
    return img


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5,
            ignore_index: int = 255) -> np.ndarray:
    """``image`` ``(H, W, 3)`` uint8 with every class of ``labels`` ``(H, W)`` drawn in its palette colour at
    ``alpha`` (ignored pixels left as they are) → ``(H, W, 3)`` uint8."""
    from torchvision.utils import draw_segmentation_masks

    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    present = [int(c) for c in torch.unique(labels) if int(c) != ignore_index and int(c) < len(palette)]
    if not present:
        return np.asarray(image, dtype=np.uint8).copy()
    masks = torch.stack([labels == c for c in present])  # (n, H, W)
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.uint8)).permute(2, 0, 1)  # (3, H, W)
    drawn = draw_segmentation_masks(img, masks, alpha=alpha, colors=[tuple(palette[c]) for c in present])
    return drawn.permute(1, 2, 0).numpy()


def side_by_side(panels: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """``(H, W_i, 3)`` uint8 panels of equal height joined left to right with white gaps."""
    h = panels[0].shape[0]
    spacer = np.full((h, gap, 3), 255, dtype=np.uint8)
    out = [panels[0]]
    for p in panels[1:]:
        out += [spacer, p]
    return np.concatenate(out, axis=1)
