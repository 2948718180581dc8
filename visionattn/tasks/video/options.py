"""The video task's ``task:`` section: clip sampling, test-time clips, short videos, the loss, and the built-in
moving-digits data."""

from __future__ import annotations

from dataclasses import dataclass

from ...data.video import SAMPLING_MODES, SHORT_VIDEO_POLICIES, ClipSampling
from ..base import TaskOptions

__all__ = ["VideoOptions"]

DIGIT_TASKS = ("direction", "digit_direction", "order")


@dataclass
class VideoOptions(TaskOptions):
    """num_frames: frames per clip (the model's T). frame_stride: step between a clip's frames (``sampling=random``).
    sampling: ``"random"`` (a random offset in training, evenly spaced clips at evaluation) or ``"uniform"`` (one
    frame per equal segment of the whole video; see :mod:`visionattn.data.video.sampling`). test_clips: clips per
    validation / predicted video, their softmax probabilities averaged. short_videos: a video shorter than a clip
    spans is ``"loop"``-ed from its start, ``"pad"``-ded with its last frame, or ``"skip"``-ped when indexed.
    verify_videos: decode every frame of every file once when indexing (bad files are skipped before training;
    False trusts the container's frame count). label_smoothing: of the cross-entropy.

    digits_*: ``data.name=moving_digits`` (:class:`visionattn.data.composed.MovingDigits`, real digits in composed
    motion on a ``data.img_size`` canvas): its task (``direction``: 4 classes; ``digit_direction``: 40;
    ``order``: which of two digits moves first, 10), video length in frames, train / val videos (generated once into
    memory, from ``data.seed``), speed range (px per frame) and pixel noise."""

    num_frames: int = 8
    frame_stride: int = 1
    sampling: str = "random"
    test_clips: int = 1
    short_videos: str = "loop"
    verify_videos: bool = True
    label_smoothing: float = 0.0
    digits_task: str = "direction"
    digits_frames: int = 8
    digits_train: int = 4000
    digits_val: int = 1000
    digits_speed: tuple[int, int] = (2, 3)
    digits_noise: float = 0.0

    def problems(self) -> list[str]:
        """Value checks the types alone do not express, as ``key: expected ..., got ...`` lines."""
        out = []

        def need(ok: bool, key: str, expected: str, got) -> None:
            if not ok:
                out.append(f"task.{key}: expected {expected}, got {got!r}")

        need(self.num_frames >= 1, "num_frames", ">= 1", self.num_frames)
        need(self.frame_stride >= 1, "frame_stride", ">= 1", self.frame_stride)
        need(self.sampling in SAMPLING_MODES, "sampling", f"one of {SAMPLING_MODES}", self.sampling)
        need(self.sampling != "uniform" or self.frame_stride == 1, "frame_stride",
             "1 with sampling=uniform (uniform spreads the frames over the whole video)", self.frame_stride)
        need(self.test_clips >= 1, "test_clips", ">= 1", self.test_clips)
        need(self.short_videos in SHORT_VIDEO_POLICIES, "short_videos", f"one of {SHORT_VIDEO_POLICIES}",
             self.short_videos)
        need(0 <= self.label_smoothing < 1, "label_smoothing", "in [0, 1)", self.label_smoothing)
        need(self.digits_task in DIGIT_TASKS, "digits_task", f"one of {DIGIT_TASKS}", self.digits_task)
        need(self.digits_frames >= (3 if self.digits_task == "order" else 2), "digits_frames",
             ">= 3 for order, >= 2 otherwise", self.digits_frames)
        need(self.digits_train >= 1 and self.digits_val >= 1, "digits_train/digits_val", ">= 1",
             (self.digits_train, self.digits_val))
        need(1 <= self.digits_speed[0] <= self.digits_speed[1], "digits_speed", "integers 1 <= low <= high",
             self.digits_speed)
        need(self.digits_noise >= 0, "digits_noise", ">= 0", self.digits_noise)
        return out

    def clip_sampling(self) -> ClipSampling:
        return ClipSampling(self.num_frames, self.frame_stride, self.sampling, self.test_clips, self.short_videos)
