"""Small clips written for the video tests: a white bar stepping right (each frame told apart by its position), as
an MPEG-4 file (PyAV) or a folder of PNG frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: Path, frames: np.ndarray, fmt: str | None = None) -> Path:
    """``frames`` uint8 (T, H, W, 3) → an MPEG-4 Part 2 file (H, W even)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        container.start_encoding()
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def bar_frames(n: int, h: int = 24, w: int = 32) -> np.ndarray:
    """A white bar stepping right by 2 px per frame: frame i is told apart by where its bar is."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, :, (2 * i) % (w - 4):(2 * i) % (w - 4) + 4] = 255
    return frames


def bar_position(frame: np.ndarray) -> int:
    """Column where the bar of a decoded (lossy) frame starts."""
    return int(np.argmax(frame.mean(axis=(0, 2)) > 128))


def write_frames(folder: Path, frames: np.ndarray, names=None) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / (names[i] if names else f"frame_{i}.png"))
    return folder
