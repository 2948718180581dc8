"""Composed datasets for fast configs and tests: real handwritten digits (scikit-learn ``load_digits``, 8x8,
values 0..16) placed on a canvas, set in motion, or described by template phrases. Only the digits are real; the
scenes, motions and phrases are composed, seeded and deterministic (item i is a pure function of seed, split, i).
Train and val draw their digits from disjoint pools of ``load_digits`` (``digit_pool``).

- ``DigitScenes``: several digits per canvas; boxes, labels, instance masks, semantic map, panoptic view.
- ``MovingDigits``: videos whose labels need time (direction of motion; which digit moves first).
- ``DigitPhrases``: digit scenes with captions whose phrases are linked to boxes; held-out templates/combinations.
"""

from .digit_phrases import DEFAULT_HELDOUT_COMBINATIONS, TEMPLATES, DigitPhrases, scene_phrases
from .digit_pool import INK, DigitPool, digit_pool, render_digit
from .digit_scenes import BACKGROUNDS, DIGIT_SCENE_CATEGORIES, DigitScenes
from .moving_digits import DIRECTIONS, TASKS, MovingDigits

__all__ = [
    "DigitScenes",
    "DIGIT_SCENE_CATEGORIES",
    "BACKGROUNDS",
    "MovingDigits",
    "DIRECTIONS",
    "TASKS",
    "DigitPhrases",
    "TEMPLATES",
    "DEFAULT_HELDOUT_COMBINATIONS",
    "scene_phrases",
    "DigitPool",
    "digit_pool",
    "render_digit",
    "INK",
]
