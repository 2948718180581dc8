"""Reading clips: video files through PyAV, folders of frame images through Pillow. Every failure is a
:class:`BadVideo` naming the file and the reason; a missing decoder is :class:`NoVideoDecoder`.

=========================================  ========================================================================
input                                      outcome
=========================================  ========================================================================
a video file (``VIDEO_EXTENSIONS``)        decoded with PyAV (``av``), frames as RGB ``uint8 (T, H, W, 3)``
a folder of frame images                   the images in natural order (``frame_2`` before ``frame_10``), RGB
no PyAV installed                          ``NoVideoDecoder`` (``pip install av``; torchvision 0.29 decodes no
                                           video and torchcodec is not used); frame folders still work
missing / not a video / corrupt stream     ``BadVideo`` ("undecodable: ...")
no video stream, or no decodable frame     ``BadVideo`` ("no video stream" / "empty: no decodable video frames")
frames of different sizes in one clip      ``BadVideo`` naming the two frames and their sizes
a folder without frame images              ``BadVideo`` ("empty: no frame images")
=========================================  ========================================================================

:func:`probe` reads a clip's length and frame size once (``verify=True``: by decoding every frame, so an epoch never
meets a bad file; ``False``: from the container's metadata where it has a frame count). :func:`read_clip` decodes
only up to the last frame it needs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..images import IMAGE_EXTENSIONS, BadImage, load_image

__all__ = ["VIDEO_EXTENSIONS", "BadVideo", "ClipInfo", "NoVideoDecoder", "frame_files", "is_video_file", "probe",
           "read_clip", "video_decoder"]

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ogv", ".gif"})
"""Lower-case file extensions indexed as video files (decoded with PyAV)."""


class BadVideo(ValueError):
    """A clip that cannot be used; ``path`` and ``reason`` are kept for the run summary."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {reason}")


class NoVideoDecoder(ValueError):
    """No video decoder is installed (PyAV)."""


def video_decoder():
    """The ``av`` module, or :class:`NoVideoDecoder` saying what to install."""
    try:
        import av
    except ImportError as err:
        raise NoVideoDecoder(
            "decoding video files needs PyAV, which is not installed (pip install av); torchvision 0.29 decodes no "
            "video and torchcodec is not used here. Frame folders (data.name=frame_folder) need no decoder. "
            f"({type(err).__name__}: {err})") from None
    return av


@dataclass(frozen=True)
class ClipInfo:
    """frames: number of frames; height, width: frame size in pixels."""

    frames: int
    height: int
    width: int


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def frame_files(folder: str | os.PathLike) -> list[str]:
    """The frame images of a folder (Pillow-readable extensions, hidden files ignored) in natural order."""
    names = [e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")
             and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
    return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


def _size_error(path, index: int, size, first) -> BadVideo:
    return BadVideo(path, f"variable frame size: frame {index} is {size[1]}x{size[0]}, frame 0 is "
                          f"{first[1]}x{first[0]}; expected one frame size per clip")


def _probe_folder(path: str, verify: bool) -> ClipInfo:
    from PIL import Image

    files = frame_files(path)
    if not files:
        raise BadVideo(path, "empty: no frame images in the folder")
    first = None
    for file in files:
        try:
            if verify:
                size = load_image(file).size[::-1]  # (H, W)
            else:
                with Image.open(file) as img:
                    size = img.size[::-1]
        except BadImage as err:
            raise BadVideo(path, f"frame {os.path.basename(file)}: {err.reason}") from None
        except OSError as err:
            raise BadVideo(path, f"frame {os.path.basename(file)}: {type(err).__name__}: {err}") from None
        if first is None:
            first = size
        elif size != first:
            raise BadVideo(path, f"variable frame size: {os.path.basename(file)} is {size[1]}x{size[0]}, "
                                 f"{os.path.basename(files[0])} is {first[1]}x{first[0]}; expected one frame size "
                                 f"per clip")
    return ClipInfo(len(files), *first)


def _probe_file(path: str, verify: bool) -> ClipInfo:
    av = video_decoder()
    if not os.path.isfile(path):
        raise BadVideo(path, "file not found")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise BadVideo(path, "no video stream")
            stream = container.streams.video[0]
            if not verify and stream.frames > 0 and stream.codec_context.height > 0:
                return ClipInfo(int(stream.frames), int(stream.codec_context.height), int(stream.codec_context.width))
            count, first = 0, None
            for frame in container.decode(stream):
                size = (frame.height, frame.width)
                if first is None:
                    first = size
                elif size != first:
                    raise _size_error(path, count, size, first)
                count += 1
    except BadVideo:
        raise
    except Exception as err:  # noqa: BLE001 - PyAV raises many FFmpeg error types; each is a bad file here
        raise BadVideo(path, f"undecodable: {type(err).__name__}: {err}") from None
    if count == 0:
        raise BadVideo(path, "empty: no decodable video frames")
    return ClipInfo(count, *first)


def probe(path: str | os.PathLike, verify: bool = True) -> ClipInfo:
    """Length and frame size of a video file or a frame folder (see the module docstring); ``BadVideo`` otherwise."""
    path = os.fspath(path)
    return _probe_folder(path, verify) if os.path.isdir(path) else _probe_file(path, verify)


def read_clip(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """Frames ``indices`` (any order, repeats allowed) of a video file or frame folder: RGB ``uint8 (T, H, W, 3)``.
    Decodes a video only up to its last needed frame; ``BadVideo`` if it has fewer frames or sizes differ."""
    path = os.fspath(path)
    indices = [int(i) for i in indices]
    if not indices or min(indices) < 0:
        raise ValueError(f"read_clip: expected non-negative frame indices, got {indices}")
    wanted, last = set(indices), max(indices)
    frames: dict[int, np.ndarray] = {}
    if os.path.isdir(path):
        files = frame_files(path)
        if last >= len(files):
            raise BadVideo(path, f"has {len(files)} frames, frame {last} was asked for")
        for i in sorted(wanted):
            try:
                frames[i] = np.asarray(load_image(files[i]))
            except BadImage as err:
                raise BadVideo(path, f"frame {os.path.basename(files[i])}: {err.reason}") from None
    else:
        av = video_decoder()
        decoded = 0
        try:
            with av.open(path) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    decoded = i + 1
                    if i in wanted:
                        frames[i] = frame.to_ndarray(format="rgb24")
                    if i >= last:
                        break
        except Exception as err:  # noqa: BLE001 - FFmpeg errors: a bad file
            raise BadVideo(path, f"undecodable: {type(err).__name__}: {err}") from None
        if last not in frames:
            raise BadVideo(path, f"has {decoded} decodable frames, frame {last} was asked for")
    order = sorted(frames)
    first = frames[order[0]].shape
    for i in order:
        if frames[i].shape != first:
            raise _size_error(path, i, frames[i].shape[:2], first[:2])
    return np.stack([frames[i] for i in indices])  # (T, H, W, 3)


def is_video_file(path: str | Path) -> bool:
    """Whether ``path`` has a video file extension (:data:`VIDEO_EXTENSIONS`)."""
    return os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS
