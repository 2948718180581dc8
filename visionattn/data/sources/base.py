"""Shared pieces of the package-data sources: the labelled-images record and the Pascal VOC XML reader."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LabeledImages", "VocAnnotation", "read_voc_xml"]


@dataclass(frozen=True)
class LabeledImages:
    """Images with integer labels.

    images:  uint8, ``(N, H, W)`` gray or ``(N, H, W, 3)`` RGB; a list of such arrays where sizes differ (the
             loader's docstring says which)
    labels:  int64 ``(N,)``, indices into ``classes``
    classes: class names, ``classes[label]``
    source:  where the data came from (package, version, file), for reports
    """

    images: np.ndarray | Sequence[np.ndarray]
    labels: np.ndarray
    classes: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class VocAnnotation:
    """One Pascal VOC XML file.

    filename: the ``<filename>`` it names; width, height: ``<size>`` (pixels)
    boxes:    float32 ``(N, 4)`` xyxy in pixels, as written in the file (``xmin ymin xmax ymax``)
    labels:   the ``<name>`` of each object (N strings)
    """

    filename: str
    width: int
    height: int
    boxes: np.ndarray
    labels: list[str]


def read_voc_xml(path: str | os.PathLike) -> VocAnnotation:
    """Parse a Pascal VOC annotation; ``ValueError`` naming the file and the object when a field is missing."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a well-formed VOC XML file: {err}") from err
    size = root.find("size")
    if size is None:
        raise ValueError(f"{path}: expected a <size> element, got none")
    width, height = (int(float(size.findtext(k, "0"))) for k in ("width", "height"))
    boxes, labels = [], []
    for i, obj in enumerate(root.iter("object")):
        box = obj.find("bndbox")
        try:
            boxes.append([float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")])
        except (AttributeError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: object {i} has no complete <bndbox> (xmin, ymin, xmax, ymax)") from err
        labels.append((obj.findtext("name") or "").strip())
    array = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return VocAnnotation(root.findtext("filename", "").strip(), width, height, array, labels)
