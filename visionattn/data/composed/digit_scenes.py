"""Digit scenes: several real handwritten digits composed on one canvas, for detection, instance, semantic and
panoptic segmentation.

The scenes are *composed*: each digit is a real handwritten digit from scikit-learn's ``load_digits`` (8x8,
values 0..16), upsampled 2-6x (bicubic), and pasted at a random place; nothing else in a scene is real. Later
digits are drawn over earlier ones (alpha = the digit's intensity), and the masks follow the drawing order: a
later digit's ink hides the earlier digits' ink under it. A placement is accepted only if no earlier digit loses
more than ``max_occlusion`` of its ink, so every digit stays recognisable; a digit that finds no such place in
``tries`` attempts is left out (a scene has ``num_digits[0]`` digits or fewer only then, and at least one).

Train and val scenes draw their digits from disjoint pools (``digit_pool``): a val scene never shows a digit image
used in training. Item ``i`` of a split is a pure function of (seed, split, i): random access, any length, same
scene on any machine.

Categories (``DIGIT_SCENE_CATEGORIES``): 0 = ``background`` (stuff), 1 + d = digit d (thing), for the semantic map
and the panoptic view; ``labels`` (for boxes and masks) are the digits 0..9 themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from .digit_pool import INK, SPLIT_CODES, digit_pool, render_digit

__all__ = ["DigitScenes", "DIGIT_SCENE_CATEGORIES", "BACKGROUNDS"]

BACKGROUNDS = ("plain", "noise", "texture")

DIGIT_SCENE_CATEGORIES = [{"id": 0, "name": "background", "isthing": 0}] + [
    {"id": 1 + d, "name": str(d), "isthing": 1} for d in range(10)
]


class DigitScenes(Sequence):
    """Composed scenes of real digits; ``scenes[i]`` is a dict:

    image:       uint8 ``(H, W)`` gray, or ``(H, W, 3)`` when ``rgb`` (each digit then has its own colour)
    boxes:       float32 ``(N, 4)`` xyxy in pixels, tight around each digit's *visible* ink: ``x2 = last ink column
                 + 1`` (so ``boxes == masks_to_boxes(masks) + [0, 0, 1, 1]``)
    labels:      int64 ``(N,)`` digit 0..9
    masks:       bool ``(N, H, W)`` visible ink of each digit (occlusion-aware, pairwise disjoint, none empty)
    semantic:    uint8 ``(H, W)``: 0 background, 1 + digit where a digit's ink is (11 classes)
    panoptic:    int32 ``(H, W, 2)``: ``[..., 0]`` category (= semantic), ``[..., 1]`` instance id (0 for the
                 background stuff, k + 1 for digit k): the ``(category, instance)`` layout of torchmetrics'
                 PanopticQuality
    digit_index: int64 ``(N,)`` index of each digit in ``load_digits()``; scale: float32 ``(N,)`` upsampling factor

    Instances are in drawing order (instance N-1 is on top).

    size: canvas ``H = W = size`` or ``(H, W)``; num_digits: inclusive range; scale: upsampling range (digit side
    ``round(8 * scale)`` px, at most the canvas side); max_occlusion: in [0, 1), the share of a digit's ink that
    later digits may hide (0: inks never overlap); background: ``"plain"`` (black), ``"noise"`` (uniform per-pixel
    noise up to ``background_level``) or ``"texture"`` (smooth random blobs up to ``background_level``).
    """

    def __init__(
        self,
        split: str = "train",
        length: int = 1000,
        *,
        size: int | tuple[int, int] = 96,
        num_digits: tuple[int, int] = (2, 5),
        scale: tuple[float, float] = (2.0, 6.0),
        max_occlusion: float = 0.3,
        background: str = "plain",
        background_level: float = 0.35,
        rgb: bool = False,
        seed: int = 0,
        val_fraction: float = 0.25,
        split_seed: int = 0,
        tries: int = 30,
    ):
        self.height, self.width = (size, size) if isinstance(size, int) else tuple(size)
        if split not in ("train", "val"):
            raise ValueError(f"DigitScenes: split expected 'train' or 'val', got {split!r}")
        if length < 0:
            raise ValueError(f"DigitScenes: length expected >= 0, got {length}")
        if not 1 <= num_digits[0] <= num_digits[1]:
            raise ValueError(f"DigitScenes: num_digits expected 1 <= low <= high, got {num_digits}")
        if not 0 < scale[0] <= scale[1] or round(8 * scale[1]) > min(self.height, self.width):
            raise ValueError(
                f"DigitScenes: scale expected 0 < low <= high with 8 * high <= canvas side "
                f"{min(self.height, self.width)}, got {scale}"
            )
        if not 0.0 <= max_occlusion < 1.0:
            raise ValueError(f"DigitScenes: max_occlusion expected in [0, 1), got {max_occlusion}")
        if background not in BACKGROUNDS:
            raise ValueError(f"DigitScenes: background expected one of {BACKGROUNDS}, got {background!r}")
        self.split, self.length, self.seed = split, int(length), int(seed)
        self.num_digits, self.scale, self.max_occlusion = tuple(num_digits), tuple(scale), float(max_occlusion)
        self.background, self.background_level, self.rgb, self.tries = background, background_level, rgb, tries
        self.pool = digit_pool(split, val_fraction, split_seed)
        self.categories = DIGIT_SCENE_CATEGORIES
        self.classes = [str(d) for d in range(10)]  # names of ``labels``

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"DigitScenes: index {index} out of range for length {self.length}")
        index %= self.length
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        return self.compose(rng)

    def compose(self, rng: np.random.Generator) -> dict:
        """One scene from ``rng`` (see the class docstring for the keys)."""
        H, W = self.height, self.width
        channels = 3 if self.rgb else 1
        canvas = self._background(rng, channels)  # (H, W, C) float in [0, 1]
        owner = np.full((H, W), -1, dtype=np.int64)  # instance that owns each ink pixel
        ink_total: list[int] = []
        labels, digit_index, scales = [], [], []
        wanted = int(rng.integers(self.num_digits[0], self.num_digits[1] + 1))
        for _ in range(wanted):
            j = int(rng.integers(len(self.pool)))
            s = float(rng.uniform(*self.scale))
            side = max(1, round(8 * s))
            patch = render_digit(self.pool.images[j], side, side)  # (side, side) in [0, 1]
            ink = patch >= INK
            if not ink.any():
                continue
            color = rng.uniform(0.3, 1.0, size=channels) if self.rgb else rng.uniform(0.7, 1.0, size=1)
            if self.rgb:
                color = color / color.max()  # saturated: the brightest channel at 1
            spot = self._place(rng, owner, ink, ink_total)
            if spot is None:
                continue
            y, x = spot
            region = (slice(y, y + side), slice(x, x + side))
            alpha = patch[..., None]
            canvas[region] = canvas[region] * (1 - alpha) + color * alpha
            k = len(labels)
            owner[region][ink] = k
            ink_total.append(int(ink.sum()))
            labels.append(int(self.pool.labels[j]))
            digit_index.append(int(self.pool.indices[j]))
            scales.append(s)
        return self._targets(canvas, owner, labels, digit_index, scales)

    def _background(self, rng: np.random.Generator, channels: int) -> np.ndarray:
        H, W, level = self.height, self.width, self.background_level
        if self.background == "plain":
            return np.zeros((H, W, channels), dtype=np.float32)
        if self.background == "noise":
            return rng.uniform(0, level, size=(H, W, channels)).astype(np.float32)
        coarse = rng.uniform(0, level, size=(max(2, H // 12), max(2, W // 12), channels)).astype(np.float32)
        layers = [
            np.asarray(Image.fromarray(coarse[..., c]).resize((W, H), Image.Resampling.BICUBIC))
            for c in range(channels)
        ]
        return np.clip(np.stack(layers, axis=-1), 0, level).astype(np.float32)

    def _place(self, rng, owner: np.ndarray, ink: np.ndarray, ink_total: list[int]) -> tuple[int, int] | None:
        """Top-left corner where the patch fits in the canvas and hides at most ``max_occlusion`` of any earlier
        digit's ink; ``None`` after ``tries`` attempts."""
        side = ink.shape[0]
        visible = np.bincount(owner[owner >= 0], minlength=len(ink_total))
        floor = (1.0 - self.max_occlusion) * np.asarray(ink_total)
        for _ in range(self.tries):
            y = int(rng.integers(0, self.height - side + 1))
            x = int(rng.integers(0, self.width - side + 1))
            covered = owner[y : y + side, x : x + side][ink]
            covered = covered[covered >= 0]
            if covered.size == 0:
                return y, x
            if np.all(visible - np.bincount(covered, minlength=len(ink_total)) >= floor):
                return y, x
        return None

    def _targets(self, canvas, owner, labels, digit_index, scales) -> dict:
        n = len(labels)
        masks = owner[None] == np.arange(n)[:, None, None]  # (N, H, W)
        boxes = np.zeros((n, 4), dtype=np.float32)
        for k in range(n):
            rows, cols = np.flatnonzero(masks[k].any(1)), np.flatnonzero(masks[k].any(0))
            boxes[k] = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        labels = np.asarray(labels, dtype=np.int64)
        semantic = np.where(owner >= 0, 1 + labels[np.maximum(owner, 0)] if n else 0, 0).astype(np.uint8)
        panoptic = np.stack([semantic.astype(np.int32), (owner + 1).astype(np.int32)], axis=-1)
        image = np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8)
        return {
            "image": image if self.rgb else image[..., 0],
            "boxes": boxes,
            "labels": labels,
            "masks": masks,
            "semantic": semantic,
            "panoptic": panoptic,
            "digit_index": np.asarray(digit_index, dtype=np.int64),
            "scale": np.asarray(scales, dtype=np.float32),
        }
