"""Finding clips on disk: a folder of class subfolders of video files, a folder of class subfolders of frame-image
folders, or a CSV of ``path,label`` rows. Every clip is probed once (:func:`~.decode.probe`); a clip that cannot be
used is left out and listed as ``(path, reason)`` (the caller warns and counts them).

Layouts (as torchvision's ImageFolder; hidden files and folders ignored, classes = sorted subfolder names or the
``classes`` given, label ids in that order):

* ``video_folder``: ``root/<class>/<clip>.mp4`` (any of ``VIDEO_EXTENSIONS``; other files are skipped with a reason);
* ``frame_folder``: ``root/<class>/<clip>/<frame images>`` (files directly in a class folder are skipped);
* both: when ``root/train/`` exists it is the training set and ``root/val/`` the validation set;
* ``video_csv``: rows ``path,label`` (a first row ``path,label`` is a header); ``path`` is a video file or a frame
  folder, relative paths resolved against the CSV's folder.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .decode import VIDEO_EXTENSIONS, BadVideo, ClipInfo, probe

__all__ = ["VideoItem", "index_csv", "index_folder", "probe_items"]

_PARALLEL_FROM = 8


@dataclass(frozen=True)
class VideoItem:
    """A usable clip: ``path`` (video file or frame folder), ``label`` (class id), ``frames``, ``height``, ``width``."""

    path: str
    label: int
    frames: int
    height: int
    width: int


def _visible(root: Path, dirs: bool) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() == dirs and not e.name.startswith("."))


def _class_list(found: list[str], classes: Sequence[str] | None, role: str) -> list[str]:
    if classes is None:
        return found
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise ValueError(f"{role}: class folders {unknown} are not in data.classes {list(classes)}")
    return list(classes)


def _candidates(root: Path, kind: str, classes: Sequence[str] | None, skipped: list, role: str):
    if not root.is_dir():
        raise ValueError(f"{role} {str(root)!r}: expected a directory, got {'a file' if root.exists() else 'nothing'}")
    found = _visible(root, dirs=True)
    if not found:
        raise ValueError(f"{role} {str(root)!r} has no class subfolders; expected {root}/<class>/"
                         f"{'<clip>.mp4' if kind == 'video_folder' else '<clip>/<frames>'}")
    classes = _class_list(found, classes, role)
    out = []
    for name in found:
        label, folder = classes.index(name), root / name
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if kind == "frame_folder":
                if entry.is_dir():
                    out.append((entry.path, label))
                else:
                    skipped.append((entry.path, "not a frame folder (frame_folder expects <class>/<clip>/<frames>)"))
            elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in VIDEO_EXTENSIONS:
                out.append((entry.path, label))
            else:
                ext = os.path.splitext(entry.name)[1].lower() or "none"
                skipped.append((entry.path, f"not a video file (extension {ext!r}; expected one of "
                                            f"{sorted(VIDEO_EXTENSIONS)})"))
    return out, classes


def probe_items(candidates: Sequence[tuple[str, int]], skipped: list, verify: bool = True) -> list[VideoItem]:
    """Probe every ``(path, label)`` (threads: decoders release the GIL); usable ones become :class:`VideoItem`,
    the others go to ``skipped`` as ``(path, reason)``. A missing decoder is raised, not skipped."""

    def one(pair):
        try:
            return probe(pair[0], verify)
        except BadVideo as err:
            return err

    if len(candidates) >= _PARALLEL_FROM:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            infos = list(pool.map(one, candidates))
    else:
        infos = [one(c) for c in candidates]
    items = []
    for (path, label), info in zip(candidates, infos, strict=True):
        if isinstance(info, ClipInfo):
            items.append(VideoItem(str(path), int(label), info.frames, info.height, info.width))
        else:
            skipped.append((str(path), info.reason))
    return items


def index_folder(root: str | os.PathLike, kind: str, classes: Sequence[str] | None, skipped: list,
                 verify: bool = True) -> tuple[list[VideoItem], list[VideoItem] | None, list[str]]:
    """``(train items, val items or None (no root/val), classes)`` of a ``video_folder`` / ``frame_folder`` root."""
    root = Path(root)
    role = f"{kind} {str(root)!r}"
    if not (root / "train").is_dir():
        train, classes = _candidates(root, kind, classes, skipped, role)
        return probe_items(train, skipped, verify), None, classes
    has_val = (root / "val").is_dir()
    if classes is None:  # the union of the class folders of train/ and val/
        classes = sorted(set(_visible(root / "train", True)) | (set(_visible(root / "val", True)) if has_val
                                                                 else set()))
    train, classes = _candidates(root / "train", kind, classes, skipped, f"{role} (train)")
    val = _candidates(root / "val", kind, classes, skipped, f"{role} (val)")[0] if has_val else None
    return probe_items(train, skipped, verify), None if val is None else probe_items(val, skipped, verify), classes


def index_csv(path: str | os.PathLike, classes: Sequence[str] | None, skipped: list,
              verify: bool = True) -> tuple[list[VideoItem], list[str]]:
    """``(items, classes)`` of a CSV of ``path,label`` rows (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        got = "a folder" if path.exists() else "nothing"
        raise ValueError(f"video_csv {str(path)!r}: expected a CSV file, got {got}")
    rows = []
    with open(path, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if line == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"video_csv {str(path)!r} line {line}: expected 'path,label', got {row!r}")
            clip = Path(row[0].strip())
            rows.append((str(clip if clip.is_absolute() else path.parent / clip), row[1].strip()))
    if not rows:
        raise ValueError(f"video_csv {str(path)!r} has no rows; expected lines of 'path,label'")
    labels = sorted({label for _, label in rows})
    if classes is not None:
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise ValueError(f"video_csv {str(path)!r}: labels {unknown} are not in data.classes {list(classes)}")
        labels = list(classes)
    return probe_items([(p, labels.index(label)) for p, label in rows], skipped, verify), labels
