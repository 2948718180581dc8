"""What the caption readers return: images with one or more captions, and what was left out.

A :class:`CaptionSource` holds :class:`CaptionedItem` s whose images are file paths (CSV, folders), rows of an
in-memory uint8 array (rasterised openclipart) or encoded bytes (WebDataset shards, read once). ``image(i)`` gives
item ``i``'s picture as an 8-bit RGB ``PIL.Image`` whatever the storage. Captions are plain ``str``; empty ones were
dropped while reading (counted in ``skipped``), tokenization (and its truncation) is the task's business.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from ..images import BadImage, load_image, to_rgb

__all__ = ["CaptionedItem", "CaptionSource", "decode_caption_text", "caption_lines", "decode_image_bytes"]


@dataclass(frozen=True)
class CaptionedItem:
    """One image and its captions. ``image``: a path (str), a row of :attr:`CaptionSource.array` (int) or an index
    into :attr:`CaptionSource.blobs` (``("blob", i)``). ``group``: items with the same group stay on one side of a
    split (the same drawing filed twice). ``folders``: categories the item is filed in (openclipart)."""

    image: str | int | tuple[str, int]
    captions: tuple[str, ...]
    group: str
    name: str
    folders: tuple[str, ...] = ()


@dataclass
class CaptionSource:
    """items, their storage (``array`` uint8 ``(K, H, W, 3)`` and/or ``blobs`` of encoded images), ``skipped``:
    ``(item, reason)`` of everything left out while reading, ``description``: the data in a few words."""

    items: list[CaptionedItem]
    description: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    array: np.ndarray | None = None
    blobs: list[bytes] = field(default_factory=list)

    def image(self, index: int) -> Image.Image:
        """Item ``index``'s picture as RGB (``BadImage`` naming the item if it cannot be decoded)."""
        item = self.items[index]
        ref = item.image
        if isinstance(ref, tuple):
            return decode_image_bytes(self.blobs[ref[1]], item.name)
        if isinstance(ref, (int, np.integer)):
            return Image.fromarray(self.array[int(ref)])
        return load_image(ref)


def decode_caption_text(data: bytes, where: str) -> str:
    """UTF-8 text (a BOM is dropped); ``ValueError`` naming ``where`` and the bad byte's offset otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: undecodable text: expected UTF-8, got byte 0x{data[err.start]:02x} at offset "
                         f"{err.start}") from None


def caption_lines(text: str) -> list[str]:
    """One caption per non-blank line, whitespace collapsed (``[]``: the text is an empty caption)."""
    return [c for c in (" ".join(line.split()) for line in text.splitlines()) if c]


def decode_image_bytes(data: bytes, name: str) -> Image.Image:
    """Encoded image bytes → 8-bit RGB, as :func:`visionattn.data.load_image` does for files."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
    except Image.UnidentifiedImageError as err:
        raise BadImage(name, f"not an image: {err}") from err
    except Exception as err:  # noqa: BLE001 - Pillow decoders raise many kinds
        raise BadImage(name, f"decode failed: {type(err).__name__}: {err}") from err
    return to_rgb(img, name)
