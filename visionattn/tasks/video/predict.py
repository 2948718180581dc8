"""``visionattn predict`` for a video checkpoint: the top-k classes of video files and frame folders, each averaged
over the run's ``test_clips`` evenly spaced clips (the same sampling and transform as validation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...data.video import BadVideo, ClipSampling, FileVideos, VideoClips, VideoItem, probe

__all__ = ["predict_videos"]


def sampling_of(meta: dict) -> ClipSampling:
    """The checkpoint's evaluation sampling (its ``meta``)."""
    return ClipSampling(int(meta["num_frames"]), int(meta.get("frame_stride", 1)), meta.get("sampling", "random"),
                        int(meta.get("test_clips", 1)), meta.get("short_videos", "loop"))


@torch.no_grad()
def predict_videos(model: nn.Module, meta: dict, transform, paths: Sequence[str], top_k: int,
                   device: torch.device) -> tuple[list[str], int]:
    """One line per input: ``path: class p%  class p% ...`` (mean softmax over the clips) or ``path: error:
    reason``; and the number of inputs that could not be used."""
    if top_k < 1:
        raise ValueError(f"top_k: expected >= 1, got {top_k}")
    classes = list(meta["classes"])
    sampling = sampling_of(meta)
    model.to(device).eval()
    lines, errors = [], 0
    for path in paths:
        try:
            info = probe(path, verify=False)
            item = VideoItem(str(path), 0, info.frames, info.height, info.width)
            clips = VideoClips(FileVideos([item], classes), sampling, transform, train=False)[0]["video"]
        except BadVideo as err:
            lines.append(f"{path}: error: {err.reason}")
            errors += 1
            continue
        probs = model(clips.to(device)).float().softmax(dim=-1).mean(dim=0).cpu()  # (classes,)
        p, idx = probs.topk(min(top_k, len(classes)))
        ranked = "  ".join(f"{classes[j]} {100 * float(q):.1f}%" for q, j in zip(p, idx.tolist(), strict=True))
        lines.append(f"{path}: {ranked}")
    return lines, errors
