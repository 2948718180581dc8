"""Composed digit scenes as semantic segmentation data: background + 10 digit classes.

The scenes are :class:`~visionattn.data.composed.DigitScenes` (real handwritten digits from scikit-learn's
``load_digits`` pasted on a canvas; only the digits are real). The label map is the scenes' ``semantic`` map:
0 background, ``1 + d`` where digit ``d``'s visible ink is. Train and val scenes draw their digits from disjoint
pools of ``load_digits``.

``fresh=True`` (training): item ``i`` is a new scene drawn from the global numpy RNG, which the trainer seeds per
(run seed, epoch, item), so every epoch shows new scenes and a resumed run the same ones. ``fresh=False``
(validation): item ``i`` is scene ``i`` of the split, the same on every call and machine.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from ..composed import DigitScenes
from .transforms import transformed

__all__ = ["DigitSceneSegmentation", "DIGIT_SCENE_CLASSES"]

DIGIT_SCENE_CLASSES = ["background"] + [str(d) for d in range(10)]


class DigitSceneSegmentation(Dataset):
    """``length`` scenes of ``split`` → ``{"image": (3, H, W) float, "mask": (H, W) int64 in 0..10, "name"}``
    through ``transform``; ``scene_args`` go to :class:`DigitScenes` (size, num_digits, scale, background, ...)."""

    classes = DIGIT_SCENE_CLASSES

    def __init__(self, split: str, length: int, transform, fresh: bool = False, seed: int = 0, **scene_args):
        self.scenes = DigitScenes(split, length, seed=seed, **scene_args)
        self.split, self.transform, self.fresh = split, transform, fresh

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        if self.fresh:
            scene = self.scenes.compose(np.random.default_rng(np.random.randint(0, 2**63 - 1, dtype=np.int64)))
        else:
            scene = self.scenes[index]
        return transformed(self.transform, scene["image"], scene["semantic"], f"{self.split}-{index}")
