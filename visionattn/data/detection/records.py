"""Detection records: one image and its objects, checked once while indexing.

Every format reader (COCO, COCO panoptic, Pascal VOC, CSV, the package-shipped sets) produces
:class:`DetectionRecord` s through :func:`checked_record`, so every annotation problem is handled one way:

=====================================  ============================================================================
problem                                handling
=====================================  ============================================================================
NaN / infinite coordinate              the object is skipped, counted, named (image and object)
zero or negative width / height        skipped, counted, named
box entirely outside the image         skipped, counted, named
box partly outside the image           clipped to the image (kept)
unknown category / label               skipped, counted, named (the known ones are listed)
annotation for a missing image         skipped, counted, named (by the reader: the image id it points to)
image file missing / unreadable        the image is skipped, counted, named
image with no objects                  kept: DETR learns "no object" from it
no usable image at all                 ``ValueError`` naming the source and the first reasons
=====================================  ============================================================================

Skips are ``(item, reason)`` pairs (the training run's ``skipped_files``) and are printed as one warning line each
(:func:`visionattn.data.config.warn_skipped`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DetectionRecord", "Skips", "checked_record", "check_image_file", "require_records"]


@dataclass
class DetectionRecord:
    """One image and its objects.

    image:     a file path, or a uint8 array ``(H, W)`` / ``(H, W, 3)`` (composed or tiled data)
    size:      ``(H, W)`` of that image in pixels
    boxes:     float32 ``(M, 4)`` xyxy pixels, inside the image, positive width and height
    labels:    int64 ``(M,)`` indices into the dataset's classes
    image_id:  an int unique in its dataset (COCO's id, else the record's position)
    name:      what messages call the image (its file name, or ``"scene 12"``)
    masks:     optional bool ``(M, H, W)`` instance masks (segments, for the panoptic head)
    panoptic:  optional int32 ``(H, W, 2)``: per pixel ``(category index, instance id)`` (instance 0 for stuff),
               the ground truth of panoptic quality
    segments:  optional ``(panoptic PNG path, segment ids)``: masks and panoptic map decoded when loaded (COCO
               panoptic, :func:`visionattn.data.detection.coco.load_panoptic`)
    source_index: int64 ``(M,)`` position of each kept object in the list the reader passed in
    """

    image: str | Path | np.ndarray
    size: tuple[int, int]
    boxes: np.ndarray
    labels: np.ndarray
    image_id: int
    name: str
    masks: np.ndarray | None = None
    panoptic: np.ndarray | None = None
    segments: tuple[Path, list[int]] | None = None
    source_index: np.ndarray | None = None


@dataclass
class Skips:
    """Left-out items as ``(item, reason)`` pairs, in the order met."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, item: str, reason: str) -> None:
        self.items.append((str(item), reason))

    def __len__(self) -> int:
        return len(self.items)


def check_image_file(path: str | Path) -> tuple[int, int] | str:
    """``(H, W)`` read from the file's header, or the reason it cannot be used (missing, not an image)."""
    path = Path(path)
    if not path.is_file():
        return "image file not found" if not path.exists() else "not a regular file"
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as err:  # noqa: BLE001 - Pillow raises many kinds for a bad header
        return f"not an image: {type(err).__name__}: {err}"
    if w < 1 or h < 1:
        return f"empty image of size {w}x{h}"
    return h, w


def _describe(box) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"


def checked_record(image, size: tuple[int, int], boxes, labels: Sequence, classes: Sequence[str], image_id: int,
                   name: str, skips: Skips, masks: np.ndarray | None = None, panoptic: np.ndarray | None = None,
                   object_names: Sequence[str] | None = None) -> DetectionRecord:
    """A record whose objects passed the checks of the module table; the others are added to ``skips``.

    boxes: ``(M, 4)`` xyxy pixels (any float); labels: ``M`` class names (str) or indices (int) into ``classes``;
    object_names: how messages name each object (default ``"object i"``)."""
    H, W = int(size[0]), int(size[1])
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(labels) != len(boxes):
        raise ValueError(f"{name}: {len(boxes)} boxes but {len(labels)} labels")
    index = {c: i for i, c in enumerate(classes)}
    keep_boxes, keep_labels, keep = [], [], []
    for i, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        what = object_names[i] if object_names is not None else f"object {i}"
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            cls = int(label) if 0 <= int(label) < len(classes) else None
        else:
            cls = index.get(str(label))
        if cls is None:
            skips.add(name, f"{what}: unknown category {label!r} (known: {', '.join(map(str, classes))})")
            continue
        if not all(math.isfinite(v) for v in box):
            skips.add(name, f"{what}: non-finite box {_describe(box)}")
            continue
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            skips.add(name, f"{what}: box {_describe(box)} has zero or negative size (expected x1 < x2, y1 < y2)")
            continue
        if x2 <= 0 or y2 <= 0 or x1 >= W or y1 >= H:
            skips.add(name, f"{what}: box {_describe(box)} lies outside the {W}x{H} image")
            continue
        keep_boxes.append([max(x1, 0.0), max(y1, 0.0), min(x2, W), min(y2, H)])
        keep_labels.append(cls)
        keep.append(i)
    kept_masks = None if masks is None else np.asarray(masks, dtype=bool)[keep].reshape(len(keep), H, W)
    return DetectionRecord(image, (H, W), np.asarray(keep_boxes, dtype=np.float32).reshape(-1, 4),
                           np.asarray(keep_labels, dtype=np.int64), int(image_id), name, kept_masks, panoptic,
                           source_index=np.asarray(keep, dtype=np.int64))


def require_records(records: Sequence[DetectionRecord], where: str, skips: Skips) -> None:
    """Refuse a source with no usable image (``ValueError`` naming it and the first skip reasons)."""
    if records:
        return
    example = "; ".join(f"{item}: {reason}" for item, reason in skips.items[:3])
    raise ValueError(f"{where} has no usable images ({len(skips)} items skipped{': ' + example if example else ''}); "
                     f"expected at least one image")
