"""Image–caption data (CLIP): the real captioned openclipart drawings and caption files (CSV, folders with ``.txt``
sidecars, WebDataset shards), each read into a :class:`CaptionSource` by :func:`load_caption_source`.

``data.name`` values: ``openclipart`` (Debian ``openclipart-svg``, rasterised once and cached; no path),
``caption_csv`` (a CSV file), ``caption_folder`` (a folder), ``caption_shards`` (a ``.tar``, a brace pattern or a
folder of them).
"""

from __future__ import annotations

from collections.abc import Callable

from .base import CaptionedItem, CaptionSource, caption_lines, decode_caption_text, decode_image_bytes
from .formats import read_caption_csv, read_caption_folder, read_caption_shards, shard_urls
from .openclipart import openclipart_captions, rasterized_openclipart

__all__ = ["CAPTION_DATASETS", "CaptionedItem", "CaptionSource", "caption_lines", "decode_caption_text",
           "decode_image_bytes", "load_caption_source", "openclipart_captions", "rasterized_openclipart",
           "read_caption_csv", "read_caption_folder", "read_caption_shards", "shard_urls", "raster_size"]

CAPTION_DATASETS = {"openclipart": False, "caption_csv": True, "caption_folder": True, "caption_shards": True}
"""``data.name`` → whether it needs ``data.path``."""


def raster_size(img_size: int) -> int:
    """The size openclipart is rasterised at for a model input of ``img_size``: 64 px (one shared cache) up to
    64, the input size above."""
    return max(64, int(img_size))


def load_caption_source(name: str, path: str | None, img_size: int,
                        log: Callable[[str], None] | None = None) -> CaptionSource:
    """Read the caption data named ``name`` (see the module docstring)."""
    if name == "openclipart":
        return openclipart_captions(raster_size(img_size), log=log)
    if name == "caption_csv":
        return read_caption_csv(path, check_size=img_size)
    if name == "caption_folder":
        return read_caption_folder(path, check_size=img_size)
    if name == "caption_shards":
        return read_caption_shards(path)
    raise ValueError(f"caption data: expected one of {list(CAPTION_DATASETS)}, got {name!r}")
