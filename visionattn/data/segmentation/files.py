"""Image + label-map files: a Pascal-VOC-layout folder or a CSV of ``image,mask`` rows, indexed and checked once.

VOC layout (``root``)::

    JPEGImages/<name>.<ext>              the images (any extension Pillow opens)
    SegmentationClass/<name>.png         the label maps (palette / index PNG; RGB with a palette)
    ImageSets/Segmentation/train.txt     optional: the names of each split (else a seeded split by val_fraction)
    ImageSets/Segmentation/val.txt
    class_names.txt                      optional: one class name per line, index = line (labelme writes it)

CSV: rows ``image,mask`` (a first row ``image,mask``, any case, is a header); relative paths are resolved against
the CSV's folder; split by ``val_fraction`` (seeded), or by a third column ``split`` (``train`` / ``val``).

Classes, first match: the ``classes`` argument (``data.classes``), ``class_names.txt`` beside the data, and for a
VOC folder the 21 Pascal VOC classes; a CSV without any is an error.

Every pair is checked when indexed, and each problem is a counted skip naming the file (``skipped``): an image
that is missing or does not decode, a missing mask file, a mask whose size differs from its image's, label values
outside the class list that are not the ignore index, an RGB mask without a palette or with colours outside it.
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..images import IMAGE_EXTENSIONS, BadImage, load_image
from .masks import MaskError, check_mask, read_mask
from .transforms import transformed

__all__ = ["MaskPair", "MaskPairDataset", "VOC_CLASSES", "index_voc", "index_csv", "check_pairs", "read_class_names",
           "seeded_split"]

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


@dataclass(frozen=True)
class MaskPair:
    """One image file and its label-map file; ``name`` identifies it in reports."""

    image: str
    mask: str
    name: str


def read_class_names(path: Path) -> list[str] | None:
    """Class names from a text file (one per line, blanks skipped), or None when there is no such file."""
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return names or None


def seeded_split(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """A seeded shuffle split: ``round(n * val_fraction)`` items (at least 1 when ``n >= 2`` and the fraction is
    positive) to val, the rest to train, each in its original order."""
    n = len(items)
    k = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    chosen = set(random.Random(seed).sample(range(n), k)) if k else set()
    return [x for i, x in enumerate(items) if i not in chosen], [x for i, x in enumerate(items) if i in chosen]


def index_voc(root: str | os.PathLike, val_fraction: float = 0.2, seed: int = 0,
              ) -> tuple[list[MaskPair], list[MaskPair], list[tuple[str, str]]]:
    """``(train, val, skipped)`` pairs of a VOC-layout folder (see the module docstring); images without a mask
    file are skipped (counted), and names listed in a split file without an image too."""
    root = Path(root)
    images_dir, masks_dir = root / "JPEGImages", root / "SegmentationClass"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise ValueError(f"VOC folder {str(root)!r}: expected a folder {d.name}/, got "
                             f"{'a file' if d.exists() else 'nothing'} (layout: JPEGImages/ + SegmentationClass/)")
    images = {p.stem: p for p in sorted(images_dir.iterdir())
              if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS}
    skipped: list[tuple[str, str]] = []

    def pair(name: str) -> MaskPair | None:
        if name not in images:
            skipped.append((str(images_dir / name), "listed in a split file, but no image of that name"))
            return None
        return MaskPair(str(images[name]), str(masks_dir / f"{name}.png"), name)

    sets = root / "ImageSets" / "Segmentation"
    if (sets / "train.txt").is_file() and (sets / "val.txt").is_file():
        splits = [[line.split()[0] for line in (sets / f"{s}.txt").read_text().splitlines() if line.strip()]
                  for s in ("train", "val")]
        train, val = ([p for p in map(pair, names) if p is not None] for names in splits)
    else:
        train, val = seeded_split([p for p in map(pair, images) if p is not None], val_fraction, seed)
    return train, val, skipped


def index_csv(path: str | os.PathLike, val_fraction: float = 0.2, seed: int = 0,
              ) -> tuple[list[MaskPair], list[MaskPair], list[tuple[str, str]]]:
    """``(train, val, skipped)`` pairs of a CSV of ``image,mask[,split]`` rows (see the module docstring); a row
    with fewer than 2 fields or an unknown split is a counted skip naming the row."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"segmentation CSV {str(path)!r}: expected a file, got "
                         f"{'a directory' if path.exists() else 'nothing'}")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["image", "mask"]:
        rows = rows[1:]
    pairs: dict[str, list[MaskPair]] = {"train": [], "val": [], "": []}
    skipped = []
    for i, row in enumerate(rows, start=1):
        if len(row) < 2:
            skipped.append((f"{path}:{i}", f"expected 'image,mask[,split]', got {row!r}"))
            continue
        split = row[2].strip().lower() if len(row) > 2 else ""
        if split not in pairs:
            skipped.append((f"{path}:{i}", f"split must be 'train' or 'val', got {row[2]!r}"))
            continue
        image, mask = (Path(c.strip()) for c in row[:2])
        image, mask = (p if p.is_absolute() else path.parent / p for p in (image, mask))
        pairs[split].append(MaskPair(str(image), str(mask), image.stem))
    train, val = seeded_split(pairs[""], val_fraction, seed)
    return pairs["train"] + train, pairs["val"] + val, skipped


def _image_size(path: str) -> tuple[int, int]:
    """``(H, W)`` of the decoded image (after EXIF orientation); ``BadImage`` if it does not decode."""
    w, h = load_image(path).size
    return h, w


def check_pairs(pairs: Sequence[MaskPair], num_classes: int, palette=None, ignore_index: int = 255,
                ) -> tuple[list[MaskPair], list[tuple[str, str]]]:
    """``(usable pairs, skipped)``: every pair whose image decodes and whose mask reads and fits (size, values;
    see :func:`~visionattn.data.segmentation.masks.check_mask`); the others as ``(file, reason)``."""
    kept, skipped = [], []
    for p in pairs:
        try:
            size = _image_size(p.image)
        except (BadImage, OSError) as err:
            skipped.append((p.image, getattr(err, "reason", str(err))))
            continue
        try:
            check_mask(read_mask(p.mask, palette, ignore_index), num_classes, size, p.mask, ignore_index)
        except MaskError as err:
            skipped.append((err.path, err.reason))
            continue
        kept.append(p)
    return kept, skipped


class MaskPairDataset(Dataset):
    """Checked :class:`MaskPair` files → ``{"image": (3, H, W) float, "mask": (H, W) int64, "name": str}`` after
    ``transform`` (:func:`~visionattn.data.segmentation.transforms.segmentation_transform`)."""

    def __init__(self, pairs: Sequence[MaskPair], transform, palette=None, ignore_index: int = 255):
        self.pairs = list(pairs)
        self.transform = transform
        self.palette = palette
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        p = self.pairs[index]
        image = np.asarray(load_image(p.image))  # (H, W, 3) uint8
        mask = read_mask(p.mask, self.palette, self.ignore_index)  # (H, W) int64
        return transformed(self.transform, image, mask, p.name)
