"""Clip datasets: a *source* of whole videos (files on disk, or composed moving digits held in memory), a
:class:`~.sampling.ClipSampling` that picks the frames, and a clip transform.

Items are dicts: ``{"video": float (3, T, S, S), "label": int}`` for training (one sampled clip), and
``{"video": float (K, 3, T, S, S), "label": int}`` for evaluation (``K = sampling.clips`` evenly spaced clips, whose
predictions the task averages). Datasets keep ``.targets`` (every item's label) and ``.classes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .decode import read_clip
from .index import VideoItem
from .sampling import ClipSampling

__all__ = ["ArrayVideos", "FileVideos", "VideoClips", "moving_digits_videos"]


class FileVideos:
    """Videos on disk (:class:`~.index.VideoItem`); ``read(i, indices)`` → ``uint8 (T, 3, H, W)``."""

    def __init__(self, items: Sequence[VideoItem], classes: Sequence[str]):
        self.items, self.classes = list(items), list(classes)
        self.targets = [it.label for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def frames(self, index: int) -> int:
        return self.items[index].frames

    def name(self, index: int) -> str:
        return self.items[index].path

    def read(self, index: int, indices: Sequence[int]) -> Tensor:
        return torch.from_numpy(read_clip(self.items[index].path, indices)).permute(0, 3, 1, 2)  # (T, 3, H, W)


class ArrayVideos:
    """Videos held in memory: ``videos`` uint8 ``(N, T, H, W)`` (grey, shown as 3 equal channels) or
    ``(N, T, 3, H, W)``; ``labels`` ``(N,)``."""

    def __init__(self, videos: Tensor, labels: Sequence[int], classes: Sequence[str], names: str = "video"):
        if videos.dtype != torch.uint8 or videos.ndim not in (4, 5) or len(videos) != len(labels):
            raise ValueError(f"ArrayVideos: expected uint8 (N, T, H, W) or (N, T, 3, H, W) with one label each, got "
                             f"{videos.dtype} {tuple(videos.shape)} and {len(labels)} labels")
        self.videos, self.classes, self.names = videos, list(classes), names
        self.targets = [int(t) for t in labels]

    def __len__(self) -> int:
        return len(self.targets)

    def frames(self, index: int) -> int:
        return int(self.videos.shape[1])

    def name(self, index: int) -> str:
        return f"{self.names}[{index}]"

    def read(self, index: int, indices: Sequence[int]) -> Tensor:
        clip = self.videos[index, list(indices)]  # (T, H, W) or (T, 3, H, W)
        return clip[:, None].expand(-1, 3, -1, -1) if clip.ndim == 3 else clip  # (T, 3, H, W)


class VideoClips(Dataset):
    """Clips of the videos of ``source`` (:class:`FileVideos` / :class:`ArrayVideos`): training items draw one clip
    (``sampling.train_indices``), evaluation items stack ``sampling.clips`` clips (``sampling.eval_indices``);
    ``transform`` maps ``uint8 (T, 3, H, W)`` → float ``(3, T, S, S)``."""

    def __init__(self, source, sampling: ClipSampling, transform: Callable[[Tensor], Tensor], train: bool):
        self.source, self.sampling, self.transform, self.train = source, sampling, transform, train
        self.targets, self.classes = list(source.targets), list(source.classes)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        n = self.source.frames(index)
        label = self.source.targets[index]
        if self.train:
            return {"video": self.transform(self.source.read(index, self.sampling.train_indices(n))), "label": label}
        clips = self.sampling.eval_indices(n)
        needed = sorted({i for clip in clips for i in clip})
        frames = self.source.read(index, needed)  # (F, 3, H, W): every frame any clip needs, read once
        where = {i: k for k, i in enumerate(needed)}
        video = torch.stack([self.transform(frames[[where[i] for i in clip]]) for clip in clips])  # (K, 3, T, S, S)
        return {"video": video, "label": label}


def moving_digits_videos(split: str, length: int, *, task: str, frames: int, size: int, speed: tuple[int, int],
                         noise: float, seed: int) -> ArrayVideos:
    """``length`` composed moving-digit videos (:class:`visionattn.data.composed.MovingDigits`: real digits, composed
    motion) generated once into memory as ``uint8 (N, T, H, W)``."""
    from ..composed import MovingDigits

    digits = MovingDigits(split, length, task=task, num_frames=frames, size=size, speed=tuple(speed), noise=noise,
                          seed=seed)
    items = [digits[i] for i in range(length)]
    videos = torch.from_numpy(np.stack([it["video"] for it in items]))  # (N, T, H, W) uint8
    return ArrayVideos(videos, [it["label"] for it in items], digits.classes, names=f"moving_digits[{split}]")
