"""Image–caption files: a CSV of (image, caption) rows, a folder of images with ``.txt`` sidecars, WebDataset tar
shards. Each reader returns a :class:`~visionattn.data.captions.base.CaptionSource`; an image may have several
captions in every format.

=============  =====================================================================================================
CSV            rows ``image,caption``; an optional header names the columns (``image``/``path``/``file``/``filepath``
               and ``caption``/``text``/``title``; other columns are ignored); without one, exactly 2 columns. Rows
               that repeat an image add captions to it. Relative paths are resolved against the CSV's folder.
folder         ``root/**/<name>.<image ext>`` with ``root/**/<name>.txt`` beside it: one caption per non-blank line
shards         ``.tar`` files (a file, a brace pattern ``data-{000..009}.tar`` or a folder of them) read with the
               ``webdataset`` package: samples grouped by key, the first image entry (``jpg``, ``png``, ...) and the
               captions of ``txt`` (one per non-blank line) or ``json`` (``"caption"``: str or ``"captions"``: list)
=============  =====================================================================================================

Bad input is skipped, counted and named (``CaptionSource.skipped``, one ``(item, reason)`` each): an empty caption
(the item keeps its other captions), an image without any caption, a caption without an image (a missing file, a
sidecar without its image, a shard sample without an image entry), undecodable text (not UTF-8) and undecodable
images (every image is decoded once while reading, so training never meets a bad file). A file that is not what its
format needs at all (a missing CSV, a CSV without an image column) is a ``ValueError``.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path

from ..folder import check_files
from ..images import IMAGE_EXTENSIONS, BadImage
from .base import CaptionedItem, CaptionSource, caption_lines, decode_caption_text, decode_image_bytes

__all__ = ["read_caption_csv", "read_caption_folder", "read_caption_shards", "IMAGE_COLUMNS", "CAPTION_COLUMNS"]

IMAGE_COLUMNS = ("image", "path", "file", "filepath")
CAPTION_COLUMNS = ("caption", "text", "title")


def _items_from(pairs: dict[str, list[str]], order: list[str], names: dict[str, str], check_size: int,
                skipped: list[tuple[str, str]]) -> list[CaptionedItem]:
    """Image path → captions, in ``order``: items for the images that exist, decode and have a caption."""
    candidates = [p for p in order if pairs[p]]
    skipped += [(names[p], "image without caption (every caption of it was empty)") for p in order if not pairs[p]]
    reasons = check_files(candidates, check_size)
    items = []
    for path, reason in zip(candidates, reasons, strict=True):
        if reason is None:
            items.append(CaptionedItem(path, tuple(pairs[path]), group=names[path], name=names[path]))
        elif reason in ("file not found", "not a regular file"):
            skipped.append((names[path], f"caption without image: {reason}"))
        else:
            skipped.append((names[path], reason))
    return items


# -- CSV ---------------------------------------------------------------------------------------------------------
def _decoded_lines(path: Path, skipped: list[tuple[str, str]]) -> list[tuple[int, str]]:
    """The file's lines as text; lines that are not UTF-8 are skipped and named."""
    out = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            out.append((number, decode_caption_text(raw, f"{path} line {number}")))
        except ValueError as err:
            skipped.append((f"{path} line {number}", str(err).split(": ", 1)[1]))
    return out


def _columns(header: list[str], where: str) -> tuple[int, int] | None:
    lower = [c.strip().lower() for c in header]
    image = next((lower.index(c) for c in IMAGE_COLUMNS if c in lower), None)
    caption = next((lower.index(c) for c in CAPTION_COLUMNS if c in lower), None)
    if image is None and caption is None:
        return None  # not a header: a data row
    if image is None or caption is None:
        missing = "an image column " + "/".join(IMAGE_COLUMNS) if image is None else \
            "a caption column " + "/".join(CAPTION_COLUMNS)
        raise ValueError(f"{where}: the header {header} has no {missing}")
    return image, caption


def read_caption_csv(path: str | os.PathLike, check_size: int = 64) -> CaptionSource:
    """Read a caption CSV (see the module docstring). ``check_size``: the JPEG draft size of the one-time decode."""
    csv_path = Path(path).expanduser()
    where = f"caption csv {str(csv_path)!r}"
    if not csv_path.is_file():
        raise ValueError(f"{where}: expected a CSV file of image,caption rows, got "
                         f"{'a directory' if csv_path.exists() else 'nothing'}")
    skipped: list[tuple[str, str]] = []
    lines = _decoded_lines(csv_path, skipped)
    pairs: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    columns = None
    for (number, _), row in zip(lines, csv.reader([text for _, text in lines]), strict=True):
        if not any(c.strip() for c in row):
            continue
        if columns is None:
            columns = _columns(row, f"{where} line {number}")
            if columns is not None:
                continue  # the header
            columns = (0, 1)
            if len(row) != 2:
                raise ValueError(f"{where} line {number}: expected 2 columns (image,caption) or a header naming "
                                 f"them, got {len(row)}: {row}")
        if max(columns) >= len(row):
            skipped.append((f"{csv_path} line {number}", f"expected at least {max(columns) + 1} columns, got {row}"))
            continue
        image, caption = row[columns[0]].strip(), " ".join(row[columns[1]].split())
        if not image:
            skipped.append((f"{csv_path} line {number}", "caption without image: empty image path"))
            continue
        file = Path(image).expanduser()
        full = str(file if file.is_absolute() else csv_path.parent / file)
        if full not in pairs:
            pairs[full], names[full] = [], image
        if caption:
            if caption not in pairs[full]:
                pairs[full].append(caption)
        else:
            skipped.append((f"{csv_path} line {number}", f"empty caption for {image!r}"))
    if columns is None:
        raise ValueError(f"{where} has no rows; expected image,caption rows")
    items = _items_from(pairs, list(pairs), names, check_size, skipped)
    return CaptionSource(items, f"captions from {csv_path.name}", skipped)


# -- folder with sidecars ------------------------------------------------------------------------------------------
def read_caption_folder(root: str | os.PathLike, check_size: int = 64) -> CaptionSource:
    """Read ``root/**/<name>.<ext>`` images with ``<name>.txt`` captions (see the module docstring)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"caption folder {str(root)!r}: expected a directory, got "
                         f"{'a file' if root.exists() else 'nothing'}")
    images: dict[str, Path] = {}
    texts: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            file = Path(dirpath) / name
            stem = file.relative_to(root).with_suffix("").as_posix()
            if file.suffix.lower() == ".txt":
                texts[stem] = file
            elif file.suffix.lower() in IMAGE_EXTENSIONS:
                if stem in images:
                    raise ValueError(f"caption folder {str(root)!r}: {images[stem].name} and {name} share the "
                                     f"caption file {stem}.txt; expected one image per name")
                images[stem] = file
    skipped = [(str(texts[s]), "caption without image: no image file of that name") for s in texts if s not in
               images]
    pairs: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for stem, file in images.items():
        key = str(file)
        names[key] = file.relative_to(root).as_posix()
        pairs[key] = []
        if stem not in texts:
            skipped.append((names[key], f"image without caption: no {stem}.txt beside it"))
            continue
        try:
            pairs[key] = caption_lines(decode_caption_text(texts[stem].read_bytes(), str(texts[stem])))
        except ValueError as err:
            skipped.append((str(texts[stem]), str(err).split(": ", 1)[1]))
            continue
        if not pairs[key]:
            skipped.append((str(texts[stem]), "empty caption"))
    with_text = {k: v for k, v in pairs.items() if v}
    order = [k for k in pairs if k in with_text]
    items = _items_from(with_text, order, names, check_size, skipped)
    if not images:
        raise ValueError(f"caption folder {str(root)!r} has no image files; expected <name>.<image ext> with "
                         f"<name>.txt beside it")
    return CaptionSource(items, f"captions in {root.name}/", skipped)


# -- WebDataset shards -----------------------------------------------------------------------------------------
def shard_urls(path: str | os.PathLike) -> list[str]:
    """The ``.tar`` files named by ``path``: a file, a folder (its ``*.tar``, sorted) or a brace pattern."""
    text = os.fspath(path)
    if os.path.isdir(text):
        urls = sorted(glob.glob(os.path.join(text, "*.tar")))
    elif "{" in text:
        from braceexpand import braceexpand

        urls = list(braceexpand(text))
    else:
        urls = [text]
    missing = [u for u in urls if not os.path.isfile(u)]
    if not urls or missing:
        raise ValueError(f"webdataset shards {text!r}: expected .tar files, got "
                         f"{'none' if not urls else f'missing {missing[:5]}'}")
    return urls


_IMAGE_KEYS = tuple(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))


def _sample_captions(sample: dict, where: str) -> list[str]:
    if "txt" in sample:
        return caption_lines(decode_caption_text(sample["txt"], f"{where}.txt"))
    data = json.loads(decode_caption_text(sample["json"], f"{where}.json"))
    found = data.get("captions", data.get("caption")) if isinstance(data, dict) else None
    found = [found] if isinstance(found, str) else found
    if not isinstance(found, list) or not all(isinstance(c, str) for c in found):
        raise ValueError(f"{where}.json: expected {{\"caption\": str}} or {{\"captions\": [str, ...]}}, got "
                         f"{str(data)[:80]}")
    return [c for c in (" ".join(c.split()) for c in found) if c]


def read_caption_shards(path: str | os.PathLike) -> CaptionSource:
    """Read WebDataset shards into memory (see the module docstring): encoded images are kept as bytes and
    decoded per item."""
    import webdataset as wds

    urls = shard_urls(path)
    skipped: list[tuple[str, str]] = []
    items: list[CaptionedItem] = []
    blobs: list[bytes] = []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        shard = Path(sample.get("__url__", "?")).name
        where = f"{shard}:{sample['__key__']}"
        image_key = next((k for k in sample if k.lower() in _IMAGE_KEYS), None)
        has_text = "txt" in sample or "json" in sample
        if image_key is None:
            skipped.append((where, "caption without image: the sample has no image entry" if has_text else
                            f"no image and no caption entries (got {sorted(k for k in sample if k[:2] != '__')})"))
            continue
        if not has_text:
            skipped.append((where, "image without caption: the sample has no .txt or .json entry"))
            continue
        try:
            captions = _sample_captions(sample, where)
        except ValueError as err:
            skipped.append((where, str(err).split(": ", 1)[1] if "undecodable" in str(err) else str(err)))
            continue
        if not captions:
            skipped.append((where, "empty caption"))
            continue
        try:
            decode_image_bytes(sample[image_key], where)
        except BadImage as err:
            skipped.append((where, err.reason))
            continue
        blobs.append(bytes(sample[image_key]))
        items.append(CaptionedItem(("blob", len(blobs) - 1), tuple(dict.fromkeys(captions)), group=where,
                                   name=where))
    return CaptionSource(items, f"captions in {len(urls)} webdataset shard(s)", skipped, blobs=blobs)
