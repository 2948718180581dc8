"""Robust image decoding: every file either becomes an 8-bit RGB ``PIL.Image`` or raises ``BadImage``.

What ``load_image`` does with each kind of input:

=========================  ==========================================================================================
input                      outcome
=========================  ==========================================================================================
RGB                        returned as is (after EXIF orientation is applied)
grayscale ``L``, ``1``     replicated to RGB
``RGBA``/``LA``/``PA``     composited on white, alpha dropped
palette ``P``              expanded to RGB; if it carries transparency (``tRNS``/GIF index), composited on white
RGB/L with a tRNS colour   that colour becomes transparent and is composited on white
16-bit ``I;16*``, ``I``    scaled to 8 bits by ``v / 257`` (full 16-bit range, clipped to [0, 65535])
32-bit float ``F``         values taken as [0, 1], clipped, scaled to 8 bits
``CMYK``, ``YCbCr``, ...   converted by Pillow to RGB
1x1, 1x500, ...            valid: returned as is, the transform resizes it
truncated / corrupt        ``BadImage`` ("decode failed: image file is truncated ...")
not an image               ``BadImage`` ("not an image: cannot identify image file ...")
decompression bomb         ``BadImage`` (Pillow's ``DecompressionBombError``)
missing file               ``BadImage`` ("file not found")
=========================  ==========================================================================================

``load_image(path, draft=size)`` lets JPEG decode at a reduced scale (≥ ``size``): the whole compressed stream is still
read, so truncation is still caught, at a fraction of the cost. Dataset indexing uses it for the one-time check.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["BadImage", "load_image", "to_rgb", "IMAGE_EXTENSIONS"]

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WHITE = (255, 255, 255, 255)


def _openable_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


IMAGE_EXTENSIONS: frozenset[str] = _openable_extensions()
"""Lower-case file extensions (with the dot) that Pillow can open; anything else is not indexed as an image."""


class BadImage(ValueError):
    """A file that cannot be used as an image; ``path`` and ``reason`` are kept for the run summary."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_rgb(img: Image.Image) -> Image.Image:
    arr = np.asarray(img)
    if img.mode == "F":
        scaled = np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0
    else:  # 16-bit modes, and "I" (how older Pillow opens 16-bit PNGs)
        scaled = np.clip(arr.astype(np.float64), 0.0, 65535.0) / 257.0
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L").convert("RGB")


def to_rgb(img: Image.Image, path: str | os.PathLike = "<image>") -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit RGB (see the module table); ``BadImage`` if impossible."""
    mode = img.mode
    if mode == "RGB" and not img.has_transparency_data:
        return img
    if mode in _SIXTEEN_BIT_MODES or mode == "F":
        return _high_bit_depth_to_rgb(img)  # a tRNS colour on a 16-bit image is dropped
    if mode in _ALPHA_MODES or img.has_transparency_data:
        return _composite_on_white(img)
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as err:
        raise BadImage(path, f"unsupported image mode {mode!r}: {err}") from err


def load_image(path: str | os.PathLike, draft: int | None = None) -> Image.Image:
    """Decode ``path`` fully and return an 8-bit RGB image, or raise ``BadImage`` naming the file and the reason.

    ``draft``: let JPEG decode at a reduced scale that stays at least ``draft`` pixels on each side (cheap checks).
    EXIF orientation is applied. Multi-frame files (GIF, TIFF) give their first frame.
    """
    path = Path(path)
    if not path.is_file():
        raise BadImage(path, "file not found" if not path.exists() else "not a regular file")
    try:
        with Image.open(path) as img:
            if draft is not None:
                img.draft(None, (draft, draft))
            img.load()  # full decode: truncated/corrupt data raises here, not mid-epoch
            img = ImageOps.exif_transpose(img)
    except Image.UnidentifiedImageError as err:
        raise BadImage(path, f"not an image: {err}") from err
    except Image.DecompressionBombError as err:
        raise BadImage(path, f"too large: {err}") from err
    except Exception as err:  # noqa: BLE001 - Pillow decoders raise OSError, SyntaxError, EOFError, struct.error, ...
        raise BadImage(path, f"decode failed: {type(err).__name__}: {err}") from err
    if img.width < 1 or img.height < 1:
        raise BadImage(path, f"empty image of size {img.width}x{img.height}")
    return to_rgb(img, path)
