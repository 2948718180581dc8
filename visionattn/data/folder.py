"""Image files on disk: an ImageFolder directory or a CSV of ``path,label`` rows.

Folder layout (torchvision ImageFolder): ``root/<class>/**/<image>``; class = subfolder name, classes sorted (or
``DataConfig.classes``). When ``root/train/`` exists it is the training set and ``root/val/`` the validation set;
without ``root/val/`` the training set is split by ``val_fraction``. Hidden files and folders (``.DS_Store``,
``.ipynb_checkpoints``) are ignored; files at the top level of ``root`` are ignored.

CSV: rows ``path,label``; a first row ``path,label`` (any case) is a header; relative paths are resolved against the
CSV's directory; labels are class names; classes = sorted unique labels (or ``DataConfig.classes``, which then
rejects any other label). Split by ``val_fraction``.

Every candidate file is decoded once at index time (``load_image`` with JPEG draft mode, a few threads); a file that
fails is left out, warned about and listed in ``DataBundle.skipped``. So a training epoch never meets a bad file.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .builtin import stratified_split
from .config import DataBundle, DataConfig, make_bundle, warn_skipped
from .images import IMAGE_EXTENSIONS, BadImage, load_image
from .transforms import build_transform

__all__ = ["FileDataset", "index_folder", "build_folder", "build_csv", "check_files"]

_PARALLEL_FROM = 32  # files; below this a thread pool costs more than it saves


class FileDataset(Dataset):
    """``samples``: ``(path, label)`` pairs already checked at index time; items come out as ``(tensor, label)``."""

    def __init__(self, samples: Sequence[tuple[str, int]], classes: list[str], transform: Callable):
        self.samples = [(str(p), int(t)) for p, t in samples]
        self.targets = [t for _, t in self.samples]
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        return self.transform(load_image(path)), target


def _check_one(path: str, img_size: int) -> str | None:
    try:
        load_image(path, draft=img_size)
    except BadImage as err:
        return err.reason
    return None


def check_files(paths: Sequence[str], img_size: int) -> list[str | None]:
    """Decode every file once; per file ``None`` (usable) or the reason it is not. Order follows ``paths``."""
    if len(paths) < _PARALLEL_FROM:
        return [_check_one(p, img_size) for p in paths]
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decoders release the GIL
        return list(pool.map(_check_one, paths, [img_size] * len(paths)))


def _visible_dirs(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _files_under(class_dir: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
    return out


def _keep_usable(
    candidates: list[tuple[str, int]], img_size: int, skipped: list[tuple[str, str]]
) -> list[tuple[str, int]]:
    """Drop (and record in ``skipped``) files without an image extension or that fail to decode."""
    by_ext = []
    for path, label in candidates:
        ext = os.path.splitext(path)[1].lower()
        if ext in IMAGE_EXTENSIONS:
            by_ext.append((path, label))
        else:
            skipped.append((path, f"not an image file extension ({ext or 'none'!r})"))
    reasons = check_files([p for p, _ in by_ext], img_size)
    kept = []
    for (path, label), reason in zip(by_ext, reasons, strict=True):
        if reason is None:
            kept.append((path, label))
        else:
            skipped.append((path, reason))
    return kept


def index_folder(
    root: Path, classes: list[str] | None, img_size: int, skipped: list[tuple[str, str]], role: str = "folder"
) -> tuple[list[tuple[str, int]], list[str]]:
    """Index ``root/<class>/**`` -> (usable ``(path, label)`` samples, class list).

    ``classes`` given: every class subfolder must be in it (label ids follow its order); otherwise the sorted
    subfolder names. Skipped files are appended to ``skipped``."""
    if not root.is_dir():
        raise ValueError(f"{role} {str(root)!r}: expected a directory, got {'a file' if root.exists() else 'nothing'}")
    found = _visible_dirs(root)
    if not found:
        n_files = sum(1 for e in os.scandir(root) if e.is_file())
        raise ValueError(
            f"{role} {str(root)!r} has no class subfolders (found {n_files} files at the top level); "
            f"expected {root}/<class>/<image>"
        )
    if classes is None:
        classes = found
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise ValueError(f"{role} {str(root)!r} has class folder(s) {unknown} outside the class list {classes}")
    label_of = {c: i for i, c in enumerate(classes)}
    candidates = [(f, label_of[c]) for c in found for f in _files_under(root / c)]
    return _keep_usable(candidates, img_size, skipped), classes


def _require_every_class(
    where: str, samples: list[tuple[str, int]], classes: list[str], found: list[str], skipped: list[tuple[str, str]]
) -> None:
    """A class folder whose every file was skipped would leave a class the model never sees: refuse it."""
    present = {t for _, t in samples}
    empty = [c for c in found if classes.index(c) not in present]
    if empty and present:
        warn_skipped(where, skipped)
        examples = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise ValueError(
            f"{where}: class folder(s) {empty} have no usable images; expected at least 1 image per class"
            + (f" (skipped: {examples})" if examples else "")
        )


def _bundle_from_samples(
    where: str, cfg: DataConfig, train_s: list, val_s: list, classes: list[str], skipped: list
) -> DataBundle:
    train = FileDataset(train_s, classes, build_transform(cfg, train=True))
    val = FileDataset(val_s, classes, build_transform(cfg, train=False))
    return make_bundle(where, train, val, classes, cfg.img_size, skipped)


def _split(samples: list[tuple[str, int]], cfg: DataConfig) -> tuple[list, list]:
    train_idx, val_idx = stratified_split([t for _, t in samples], cfg.val_fraction, cfg.seed)
    return [samples[i] for i in train_idx], [samples[i] for i in val_idx]


def build_folder(cfg: DataConfig) -> DataBundle:
    root = Path(cfg.path).expanduser()
    skipped: list[tuple[str, str]] = []
    has_split = (root / "train").is_dir()
    train_root = root / "train" if has_split else root
    where = f"folder {str(train_root)!r}"
    train_s, classes = index_folder(train_root, cfg.classes, cfg.img_size, skipped)
    _require_every_class(where, train_s, classes, _visible_dirs(train_root), skipped)
    if has_split and (root / "val").is_dir():
        val_s, _ = index_folder(root / "val", classes, cfg.img_size, skipped, role="val folder")
        if not val_s and train_s:
            warn_skipped(where, skipped)
            raise ValueError(f"val folder {str(root / 'val')!r} has no usable images; expected at least 1")
    else:
        train_s, val_s = _split(train_s, cfg)
    return _bundle_from_samples(where, cfg, train_s, val_s, classes, skipped)


def _read_csv_rows(csv_path: Path) -> list[tuple[int, str, str]]:
    """-> ``(line number, path, label)`` per data row; blank rows and a ``path,label`` header are dropped."""
    rows = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if not rows and [c.lower() for c in cells] == ["path", "label"]:
                continue  # header
            if len(cells) != 2:
                raise ValueError(f"csv {str(csv_path)!r} line {line_no}: expected 2 columns (path,label), got {row}")
            path, label = cells
            if not path:
                raise ValueError(f"csv {str(csv_path)!r} line {line_no}: expected a file path, got an empty one")
            if not label:
                raise ValueError(f"csv {str(csv_path)!r} line {line_no}: expected a class label for {path!r}, got ''")
            rows.append((line_no, path, label))
    return rows


def build_csv(cfg: DataConfig) -> DataBundle:
    csv_path = Path(cfg.path).expanduser()
    where = f"csv {str(csv_path)!r}"
    if not csv_path.is_file():
        got = "a directory" if csv_path.exists() else "nothing"
        raise ValueError(f"{where}: expected a CSV file of path,label rows, got {got}")
    rows = _read_csv_rows(csv_path)
    if not rows:
        raise ValueError(f"{where} has no rows; expected path,label rows")
    if cfg.classes is not None:
        classes = list(cfg.classes)
        for line_no, _, label in rows:
            if label not in classes:
                raise ValueError(f"{where} line {line_no}: label {label!r} is not in the class list {classes}")
    else:
        classes = sorted({label for _, _, label in rows})
    label_of = {c: i for i, c in enumerate(classes)}
    candidates = []
    for _, path, label in rows:
        p = Path(path).expanduser()
        candidates.append((str(p if p.is_absolute() else csv_path.parent / p), label_of[label]))
    skipped: list[tuple[str, str]] = []
    samples = _keep_usable(candidates, cfg.img_size, skipped)
    train_s, val_s = _split(samples, cfg)
    return _bundle_from_samples(where, cfg, train_s, val_s, classes, skipped)
