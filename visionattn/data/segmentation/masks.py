"""Label maps for semantic segmentation: reading mask files and checking them against their image and classes.

A mask file holds one class index per pixel (``ignore_index``, 255 by default, marks pixels that count for
nothing: VOC's object borders, labelme's ``__ignore__`` regions, padding):

================================  ===============================================================================
file                              read as
================================  ===============================================================================
palette PNG (``P``, VOC)           the palette *indices* (the colours only display them)
grayscale PNG (``L``, ``I;16``)    the values
RGB / RGBA PNG                     colours mapped to indices by a palette ``[[r, g, b], ...]`` (index = class);
                                   without one, or with a colour the palette lacks: :class:`MaskError`
================================  ===============================================================================

:class:`MaskError` (a ``ValueError``) names the file and says expected vs got; datasets turn it into a counted
skip (``TaskData.skipped``) so that one bad file does not stop a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["MaskError", "read_mask", "check_mask", "colours_to_indices", "IGNORE_INDEX"]

IGNORE_INDEX = 255


class MaskError(ValueError):
    """A mask that cannot be used: ``path`` and ``reason`` (also the message, after the path)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def colours_to_indices(rgb: np.ndarray, palette: Sequence[Sequence[int]], path: str | os.PathLike = "<mask>",
                       ignore_colour: Sequence[int] | None = None, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``(H, W, 3)`` uint8 colours → ``(H, W)`` int64 indices into ``palette`` (a list of ``[r, g, b]``, index =
    class). ``ignore_colour`` (e.g. VOC's border ``[224, 224, 192]``) becomes ``ignore_index``. A colour in neither
    is a :class:`MaskError` listing up to five of them."""
    table = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2].astype(np.int64)
    keys = (table[:, 0] << 16) | (table[:, 1] << 8) | table[:, 2]
    if len(np.unique(keys)) != len(keys):
        raise ValueError(f"palette: expected distinct colours, got {table.tolist()}")
    out = np.full(codes.shape, -1, dtype=np.int64)
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], codes), 0, len(keys) - 1)
    hit = keys[order][pos] == codes
    out[hit] = order[pos[hit]]
    if ignore_colour is not None:
        ic = (int(ignore_colour[0]) << 16) | (int(ignore_colour[1]) << 8) | int(ignore_colour[2])
        out[codes == ic] = ignore_index
    if (out < 0).any():
        unknown = np.unique(codes[out < 0])[:5]
        shown = [[int(c >> 16), int((c >> 8) & 255), int(c & 255)] for c in unknown]
        raise MaskError(path, f"colours {shown} are not in the palette of {len(table)} classes "
                              f"(expected one of {table.tolist()[:8]}{' ...' if len(table) > 8 else ''})")
    return out


def read_mask(path: str | os.PathLike, palette: Sequence[Sequence[int]] | None = None,
              ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The label map of ``path`` as ``(H, W)`` int64 (see the module table); :class:`MaskError` when the file is
    missing, unreadable, an RGB mask without a palette, or holds colours outside it."""
    path = Path(path)
    if not path.is_file():
        raise MaskError(path, "mask file not found" if not path.exists() else "mask path is not a regular file")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("RGB", "RGBA"):
                if palette is None:
                    raise MaskError(path, f"an {mode} colour mask needs a palette mapping colours to classes "
                                          f"(task.palette: [[r, g, b], ...]); expected an index or palette PNG")
                return colours_to_indices(np.asarray(im.convert("RGB")), palette, path, ignore_index=ignore_index)
            if mode in ("P", "L", "1", "I", "I;16", "I;16L", "I;16B", "I;16N"):
                return np.asarray(im).astype(np.int64)
            raise MaskError(path, f"unsupported mask mode {mode!r}; expected a palette (P), grayscale (L / I;16) "
                                  f"or RGB PNG")
    except MaskError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises many kinds for a corrupt file
        raise MaskError(path, f"not a readable mask: {type(err).__name__}: {err}") from err


def check_mask(mask: np.ndarray, num_classes: int, image_size: tuple[int, int] | None = None,
               path: str | os.PathLike = "<mask>", ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``mask`` unchanged if it fits: ``(H, W)`` equal to ``image_size`` (``(H, W)`` of its image, when given) and
    every value in ``0..num_classes-1`` or ``ignore_index``; otherwise a :class:`MaskError` saying expected vs got
    (sizes as ``W x H``, the offending values and how many pixels hold them)."""
    if mask.ndim != 2:
        raise MaskError(path, f"expected a 2-D label map, got shape {mask.shape}")
    if image_size is not None and tuple(mask.shape) != tuple(image_size):
        raise MaskError(path, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image's "
                              f"{image_size[1]}x{image_size[0]} (W x H)")
    bad = (mask != ignore_index) & ((mask < 0) | (mask >= num_classes))
    if bad.any():
        values, counts = np.unique(mask[bad], return_counts=True)
        listing = ", ".join(f"{int(v)} ({int(c)} px)" for v, c in zip(values[:5], counts[:5], strict=True))
        raise MaskError(path, f"label values {listing} are outside the {num_classes} classes (expected 0.."
                              f"{num_classes - 1} or the ignore index {ignore_index})")
    return mask
