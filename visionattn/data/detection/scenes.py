"""Digit scenes (``visionattn.data.composed.DigitScenes``: real scikit-learn digits *composed* on a canvas) as
detection records, made on access (a scene costs about a millisecond, so any number of scenes costs no memory).

Detection: classes ``"0" .. "9"``, one object per digit (its visible-ink box and mask). Panoptic (``stuff=True``):
classes ``"background"`` (stuff) then the digits, i.e. class index = the scenes' category id; the background is one
more object (its mask is every pixel without ink, its box that mask's extent), and ``panoptic`` is the scene's
``(category, instance)`` map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..composed import DIGIT_SCENE_CATEGORIES, DigitScenes
from .records import DetectionRecord

__all__ = ["SceneRecords", "scene_classes"]


def scene_classes(stuff: bool) -> tuple[list[str], list[bool]]:
    """``(classes, isthing)`` of the scene records."""
    if stuff:
        return [c["name"] for c in DIGIT_SCENE_CATEGORIES], [bool(c["isthing"]) for c in DIGIT_SCENE_CATEGORIES]
    return [str(d) for d in range(10)], [True] * 10


class SceneRecords(Sequence):
    """``records[i]`` → the :class:`DetectionRecord` of ``scenes[i]`` (see the module docstring)."""

    def __init__(self, scenes: DigitScenes, stuff: bool = False):
        self.scenes, self.stuff = scenes, stuff
        self.classes, self.isthing = scene_classes(stuff)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> DetectionRecord:
        if not -len(self) <= index < len(self):
            raise IndexError(f"SceneRecords: index {index} out of range for {len(self)} scenes")
        index %= len(self)
        item = self.scenes[index]
        H, W = item["image"].shape[:2]
        boxes, labels, masks = item["boxes"], item["labels"], item["masks"]
        panoptic = None
        if self.stuff:
            background = item["semantic"] == 0  # (H, W)
            rows, cols = np.flatnonzero(background.any(1)), np.flatnonzero(background.any(0))
            if len(rows):
                box = np.array([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], dtype=np.float32)
                boxes = np.concatenate([box, boxes])
                labels = np.concatenate([[-1], labels])
                masks = np.concatenate([background[None], masks])
            labels = labels + 1  # background 0, digit d → 1 + d (the category ids)
            panoptic = item["panoptic"]
        return DetectionRecord(item["image"], (H, W), boxes.astype(np.float32), labels.astype(np.int64), index,
                               f"{self.scenes.split} scene {index}", masks, panoptic)
