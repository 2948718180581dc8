"""Moving digits: short videos of real handwritten digits set in motion, with labels that need time to solve.

The videos are *composed*: the digits are real (scikit-learn ``load_digits``, 8x8, values 0..16, upsampled with
bicubic interpolation), the motion is made up. The canvas is a torus: a digit leaving one edge re-enters at the
opposite edge, and every start position is equally likely, so in every frame each digit's position is uniform
over the canvas whatever the motion. That is what makes a single frame carry no information about the label:

- ``task="direction"``: one digit moves in a straight line at a constant integer speed; label = direction
  (0 right, 1 left, 2 down, 3 up). Any single frame (at any fixed index) has the same distribution for all four
  directions, so a single-frame model is at chance (25 %). Averaging frames cannot tell right from left either
  (a clip and its time reversal have the same frames), but the spread of positions reveals the axis.
- ``task="digit_direction"``: the same videos, label = ``4 * digit + direction`` (40 classes); a single frame
  can read the digit but not the direction: at most 25 % of the digit accuracy.
- ``task="order"``: two digits of different classes; one moves during frames ``0..k`` then stops, the other
  moves during frames ``k..T-1`` (``k`` uniform in ``1..T-2``, directions and speeds random); label = the class of
  the digit that moved first. Every frame shows both digits at uniformly distributed positions, so no single
  frame, and no unordered set of frames (a clip reversed in time is an equally likely clip with the other label),
  tells the order: a single-frame model is at 50 % at best (it can only guess between the two digits it sees).

Train and val videos draw digits from disjoint pools (``digit_pool``). Item ``i`` of a split is a pure function
of (seed, split, i).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .digit_pool import SPLIT_CODES, digit_pool, render_digit

__all__ = ["MovingDigits", "DIRECTIONS", "TASKS"]

DIRECTIONS = ("right", "left", "down", "up")
_STEP = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]], dtype=np.int64)  # (dy, dx) per direction
TASKS = ("direction", "digit_direction", "order")


class MovingDigits(Sequence):
    """Videos of moving real digits; ``videos[i]`` is a dict:

    video:       uint8 ``(T, H, W)``, bright digits on black (plus ``noise`` if set)
    label:       int, see the module docstring (``classes[label]`` names it)
    digits:      int64 ``(K,)`` the class of each digit (K = 1, or 2 for ``"order"``)
    positions:   int64 ``(T, K, 2)`` top-left (y, x) of each digit's square patch in each frame, modulo (H, W)
    directions:  int64 ``(K,)`` index into ``DIRECTIONS`` of each digit's motion; speeds: int64 ``(K,)`` px/frame
    moving:      bool ``(T - 1, K)`` whether digit k moves between frame t and t + 1
    first:       int, index of the digit that moves first (``"order"``; 0 otherwise)
    digit_index: int64 ``(K,)`` index of each digit in ``load_digits()``

    num_frames: T (>= 3 for ``"order"``); size: ``H = W = size`` or ``(H, W)``; scale: upsampling range (patch side
    ``round(8 * scale)``); speed: inclusive integer range in px/frame; noise: std of Gaussian noise per pixel and
    frame, in units of full intensity (0 = none).
    """

    def __init__(
        self,
        split: str = "train",
        length: int = 1000,
        *,
        task: str = "direction",
        num_frames: int = 8,
        size: int | tuple[int, int] = 32,
        scale: tuple[float, float] = (2.0, 2.5),
        speed: tuple[int, int] = (2, 3),
        noise: float = 0.0,
        seed: int = 0,
        val_fraction: float = 0.25,
        split_seed: int = 0,
    ):
        self.height, self.width = (size, size) if isinstance(size, int) else tuple(size)
        if split not in ("train", "val"):
            raise ValueError(f"MovingDigits: split expected 'train' or 'val', got {split!r}")
        if task not in TASKS:
            raise ValueError(f"MovingDigits: task expected one of {TASKS}, got {task!r}")
        if num_frames < (3 if task == "order" else 2):
            raise ValueError(f"MovingDigits: num_frames expected >= {3 if task == 'order' else 2}, got {num_frames}")
        if not 0 < scale[0] <= scale[1] or round(8 * scale[1]) > min(self.height, self.width):
            raise ValueError(f"MovingDigits: scale expected 0 < low <= high, 8 * high <= canvas side, got {scale}")
        if not 1 <= speed[0] <= speed[1]:
            raise ValueError(f"MovingDigits: speed expected integers 1 <= low <= high, got {speed}")
        if noise < 0:
            raise ValueError(f"MovingDigits: noise expected >= 0, got {noise}")
        self.split, self.length, self.task, self.num_frames = split, int(length), task, int(num_frames)
        self.scale, self.speed, self.noise, self.seed = tuple(scale), tuple(speed), float(noise), int(seed)
        self.pool = digit_pool(split, val_fraction, split_seed)

    @property
    def classes(self) -> list[str]:
        if self.task == "direction":
            return [f"moving {d}" for d in DIRECTIONS]
        if self.task == "digit_direction":
            return [f"{digit} moving {d}" for digit in range(10) for d in DIRECTIONS]
        return [f"{digit} moves first" for digit in range(10)]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not -self.length <= index < self.length:
            raise IndexError(f"MovingDigits: index {index} out of range for length {self.length}")
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index % self.length])
        return self.compose(rng)

    def compose(self, rng: np.random.Generator) -> dict:
        T, H, W = self.num_frames, self.height, self.width
        k_digits = 2 if self.task == "order" else 1
        picks = self._pick_digits(rng, k_digits)
        directions = rng.integers(0, 4, size=k_digits)
        speeds = rng.integers(self.speed[0], self.speed[1] + 1, size=k_digits)
        moving = np.ones((T - 1, k_digits), dtype=bool)
        first = 0
        if self.task == "order":
            first = int(rng.integers(2))
            switch = int(rng.integers(1, T - 1))  # the first mover moves on steps 0..switch-1, the other after
            moving[:, first] = np.arange(T - 1) < switch
            moving[:, 1 - first] = np.arange(T - 1) >= switch
        steps = _STEP[directions] * speeds[:, None]  # (K, 2)
        start = np.stack([rng.integers(0, H, size=k_digits), rng.integers(0, W, size=k_digits)], axis=-1)
        offsets = np.concatenate([np.zeros((1, k_digits, 2), np.int64), np.cumsum(moving[..., None] * steps, 0)])
        positions = (start[None] + offsets) % np.array([H, W])  # (T, K, 2)
        video = np.zeros((T, H, W), dtype=np.float32)
        for k, j in enumerate(picks):
            side = max(1, round(8 * float(rng.uniform(*self.scale))))
            tile = np.zeros((H, W), dtype=np.float32)
            tile[:side, :side] = render_digit(self.pool.images[j], side, side) * rng.uniform(0.7, 1.0)
            for t in range(T):
                video[t] = np.maximum(video[t], np.roll(tile, tuple(positions[t, k]), axis=(0, 1)))
        if self.noise:
            video += rng.normal(0.0, self.noise, size=video.shape).astype(np.float32)
        digits = self.pool.labels[picks]
        if self.task == "direction":
            label = int(directions[0])
        elif self.task == "digit_direction":
            label = int(4 * digits[0] + directions[0])
        else:
            label = int(digits[first])
        return {
            "video": np.round(np.clip(video, 0, 1) * 255).astype(np.uint8),
            "label": label,
            "digits": digits.astype(np.int64),
            "positions": positions.astype(np.int64),
            "directions": directions.astype(np.int64),
            "speeds": speeds.astype(np.int64),
            "moving": moving,
            "first": first,
            "digit_index": self.pool.indices[picks].astype(np.int64),
        }

    def _pick_digits(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """k pool indices with k different digit classes (uniform over classes, then over that class's images)."""
        classes = rng.choice(10, size=k, replace=False)
        return np.array([rng.choice(np.flatnonzero(self.pool.labels == c)) for c in classes], dtype=np.int64)
