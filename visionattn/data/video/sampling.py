"""Which frames make a clip: random-offset or uniform sampling for training, evenly spaced clips for evaluation.

A clip is ``num_frames`` frame indices of a video of ``n`` frames:

* ``mode="random"`` (random offset): frames ``start, start + stride, ...`` (span ``(num_frames - 1) · stride + 1``);
  training draws ``start`` uniformly in ``[0, n - span]``; evaluation takes ``clips`` starts evenly spaced over that
  range (one clip: the centred one). A video shorter than the span is *looped* (indices modulo ``n``: the clip
  wraps to the start) or *padded* (indices past the end repeat the last frame), as ``short`` says; ``"skip"`` leaves
  such videos out when the data is indexed.
* ``mode="uniform"`` (ViViT / TSN): the video is cut into ``num_frames`` equal segments and one frame is taken from
  each — a random one in training, the segment's centre at evaluation (``clips`` > 1: evenly spaced positions inside
  the segments). Works for any length (a video shorter than ``num_frames`` repeats frames); ``stride`` must be 1.

Randomness comes from ``torch``'s generator (seeded per loader worker by the trainer), so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ClipSampling", "SAMPLING_MODES", "SHORT_VIDEO_POLICIES"]

SAMPLING_MODES = ("random", "uniform")
SHORT_VIDEO_POLICIES = ("loop", "pad", "skip")


@dataclass(frozen=True)
class ClipSampling:
    """num_frames: frames per clip. stride: step between frames (``mode="random"``). mode: ``"random"`` or
    ``"uniform"``. clips: clips per video at evaluation (their predictions are averaged). short: what a video shorter
    than ``span`` gets, ``"loop"``, ``"pad"`` or ``"skip"`` (see the module docstring)."""

    num_frames: int = 8
    stride: int = 1
    mode: str = "random"
    clips: int = 1
    short: str = "loop"

    def __post_init__(self):
        if self.mode not in SAMPLING_MODES:
            raise ValueError(f"clip sampling: mode expected one of {SAMPLING_MODES}, got {self.mode!r}")
        if self.short not in SHORT_VIDEO_POLICIES:
            raise ValueError(f"clip sampling: short videos expected one of {SHORT_VIDEO_POLICIES}, got {self.short!r}")
        for name in ("num_frames", "stride", "clips"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"clip sampling: {name} expected an int >= 1, got {value!r}")
        if self.mode == "uniform" and self.stride != 1:
            raise ValueError(f"clip sampling: mode 'uniform' spreads the frames over the whole video; frame_stride "
                             f"applies to mode 'random', got stride {self.stride}")

    @property
    def span(self) -> int:
        """Frames a ``random``-mode clip covers: ``(num_frames - 1) · stride + 1``."""
        return (self.num_frames - 1) * self.stride + 1

    def is_short(self, n: int) -> bool:
        """Whether a video of ``n`` frames is shorter than a clip needs (``random`` mode; ``uniform`` never is)."""
        return self.mode == "random" and n < self.span

    def _fit(self, indices: list[int], n: int) -> list[int]:
        if self.short == "pad":
            return [min(i, n - 1) for i in indices]
        return [i % n for i in indices]  # "loop" (and "skip", whose short videos never get here)

    def train_indices(self, n: int, generator: torch.Generator | None = None) -> list[int]:
        """One training clip of a video of ``n`` frames (random offset, or a random frame per segment)."""
        self._check(n)
        if self.mode == "uniform":
            T, out = self.num_frames, []
            for k in range(T):  # segment k covers [n·k/T, n·(k+1)/T): its whole frames are first..last
                first, last = -(-n * k // T), -(-n * (k + 1) // T) - 1
                if last < first:  # a segment narrower than a frame (n < T): the frame it lies in
                    first = last = n * k // T
                out.append(first + int(torch.randint(last - first + 1, (), generator=generator)))
            return out
        start = int(torch.randint(n - self.span + 1, (), generator=generator)) if n >= self.span else 0
        return self._fit([start + k * self.stride for k in range(self.num_frames)], n)

    def eval_indices(self, n: int) -> list[list[int]]:
        """``clips`` evaluation clips of a video of ``n`` frames (deterministic)."""
        self._check(n)
        if self.mode == "uniform":
            seg = n / self.num_frames
            return [[min(int(seg * (k + (c + 0.5) / self.clips)), n - 1) for k in range(self.num_frames)]
                    for c in range(self.clips)]
        room = max(n - self.span, 0)
        if self.clips == 1:
            starts = [room // 2]
        else:
            starts = [round(room * c / (self.clips - 1)) for c in range(self.clips)]
        return [self._fit([s + k * self.stride for k in range(self.num_frames)], n) for s in starts]

    def _check(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"clip sampling: a video needs at least 1 frame, got {n!r}")
