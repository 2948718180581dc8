"""The openclipart drawings as captioned images: rasterised once into a cached ``.npz``, grouped by content, with
captions from title + description + keywords and the category folders each drawing is filed in.

Rasterising all 8,121 SVGs with cairosvg takes ~10 minutes on a busy core, so :func:`rasterized_openclipart` does it
once per (pinned tree digest, size) and keeps the result in the visionattn cache
(``<cache>/openclipart-raster-<digest16>-<size>px.npz``; a file lock makes concurrent processes wait for the one
that renders). Only distinct contents are rendered: 663 files are symlinks and others are byte-identical copies.

:func:`openclipart_captions` (via :func:`clipart_items`) gives one
:class:`~visionattn.data.captions.base.CaptionedItem` per distinct drawing content: its image row, its distinct
non-empty captions (``clipart_caption``: title + description + keywords), the category folders (``subcategory``) its
files are filed in, and a ``group`` shared by drawings with the same ``drawing`` name (the real file's name), so a
split by group keeps copies and same-named variants on one side.

Files that failed to render (41 measured) are skipped and listed with their reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fetch import cache_root
from ..sources.openclipart import OPENCLIPART, clipart_caption, load_openclipart, rasterize_svg
from .base import CaptionedItem, CaptionSource

__all__ = ["RasterizedClipart", "rasterized_openclipart", "clipart_items", "openclipart_captions",
           "raster_cache_path"]

_FORMAT = 1  # bump when the cached arrays change meaning


@dataclass(frozen=True)
class RasterizedClipart:
    """``images`` uint8 ``(K, size, size, 3)`` (drawings on white); ``rows`` int64 ``(N,)``: per record (in
    ``load_openclipart`` order) its image row, -1 when it failed; ``failures``: ``(rel, reason)``; ``records``: the
    records themselves; ``path``: the cache file."""

    images: np.ndarray
    rows: np.ndarray
    failures: list[tuple[str, str]]
    records: list[dict]
    path: Path


def raster_cache_path(size: int, cache_dir: str | os.PathLike | None = None) -> Path:
    digest = OPENCLIPART.trees[""]
    return cache_root(cache_dir) / f"openclipart-raster-{digest[:16]}-{size}px.npz"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another process rendering the same file: wait for it
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _content_keys(records: Sequence[dict]) -> list[str]:
    return [hashlib.sha256(Path(r["path"]).read_bytes()).hexdigest() for r in records]


def _render(records: Sequence[dict], size: int, log: Callable[[str], None] | None) -> dict:
    keys = _content_keys(records)
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    images, content_row, failed = [], {}, {}
    start = time.perf_counter()
    for n, (key, i) in enumerate(first.items()):
        try:
            images.append(rasterize_svg(records[i]["path"], size))
            content_row[key] = len(images) - 1
        except (ValueError, OSError) as err:  # SvgRenderError is a ValueError
            failed[key] = str(err)
        if log is not None and (n + 1) % 500 == 0:
            log(f"openclipart: rendered {n + 1}/{len(first)} distinct drawings at {size} px "
                f"({time.perf_counter() - start:.0f} s)")
    rows = np.asarray([content_row.get(k, -1) for k in keys], dtype=np.int64)
    fail_rel = [r["rel"] for r, k in zip(records, keys, strict=True) if k in failed]
    fail_reason = [failed[k] for k in keys if k in failed]
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return {"format": np.asarray(_FORMAT), "rels": np.asarray([r["rel"] for r in records]), "rows": rows,
            "images": stacked, "failure_rels": np.asarray(fail_rel, dtype=str),
            "failure_reasons": np.asarray(fail_reason, dtype=str)}


def rasterized_openclipart(size: int = 64, *, cache_dir: str | os.PathLike | None = None,
                           records: list[dict] | None = None,
                           log: Callable[[str], None] | None = None) -> RasterizedClipart:
    """Every openclipart record rasterised at ``size`` px (see the module docstring); from the cache after the
    first call. ``records``: ``load_openclipart()``'s list (loaded when None); a cache written for other records (a
    different file list) is an error that names the file to delete."""
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"rasterized_openclipart: size expected an int >= 8, got {size!r}")
    records = load_openclipart(cache_dir=cache_dir) if records is None else records
    path = raster_cache_path(size, cache_dir)
    if not path.is_file():
        with _locked(path):
            if not path.is_file():
                if log is not None:
                    log(f"openclipart: rasterising {len(records)} SVGs at {size} px once (about 10 minutes) into "
                        f"{path}")
                arrays = _render(records, size, log)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
                np.savez_compressed(tmp, **arrays)
                os.replace(tmp, path)  # atomic: readers see the whole file or none
    with np.load(path) as z:
        if int(z["format"]) != _FORMAT or list(z["rels"]) != [r["rel"] for r in records]:
            raise ValueError(f"{path}: the cached rasterisation was made for other openclipart files (or an older "
                             f"format); delete it to render again")
        failures = list(zip(z["failure_rels"].tolist(), z["failure_reasons"].tolist(), strict=True))
        return RasterizedClipart(z["images"], z["rows"], failures, records, path)


def clipart_items(raster: RasterizedClipart) -> tuple[list[CaptionedItem], list[tuple[str, str]]]:
    """One :class:`CaptionedItem` per distinct rendered drawing (files with the same image row), and the skipped
    files ``(rel, reason)``: render failures and drawings whose every caption is empty. Items that share a
    ``drawing`` name get one ``group`` (the smallest name of the connected set), so a split by group keeps a drawing
    and its renamed or edited copies together."""
    by_row: dict[int, list[dict]] = {}
    skipped = list(raster.failures)
    for record, row in zip(raster.records, raster.rows.tolist(), strict=True):
        if row >= 0:
            by_row.setdefault(row, []).append(record)
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for records in by_row.values():  # union the drawing names of one content
        names = sorted({r["drawing"] for r in records})
        for other in names[1:]:
            a, b = root(names[0]), root(other)
            parent[max(a, b)] = min(a, b)
    items = []
    for row, records in sorted(by_row.items()):
        captions = tuple(dict.fromkeys(c for c in (clipart_caption(r) for r in records) if c.strip()))
        rels = [r["rel"] for r in records]
        if not captions:
            skipped += [(rel, "no caption: empty title, description and keywords") for rel in rels]
            continue
        folders = tuple(sorted({r["subcategory"] for r in records}))
        items.append(CaptionedItem(row, captions, group=root(records[0]["drawing"]), name=rels[0], folders=folders))
    return items, skipped


def openclipart_captions(size: int = 64, *, cache_dir: str | os.PathLike | None = None,
                         log: Callable[[str], None] | None = None) -> CaptionSource:
    """The openclipart drawings as a :class:`CaptionSource` (images in memory, ``(K, size, size, 3)``)."""
    raster = rasterized_openclipart(size, cache_dir=cache_dir, log=log)
    items, skipped = clipart_items(raster)
    return CaptionSource(items, f"openclipart ({len(items)} drawings at {size} px)", skipped, array=raster.images)
