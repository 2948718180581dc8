"""Video data: decoding (PyAV for files, Pillow for frame folders), indexing folders and CSVs, clip sampling,
clip transforms (``torchvision.transforms.v2`` on ``tv_tensors.Video``) and clip datasets. The video task
(:mod:`visionattn.tasks.video`) assembles them; ``data.name`` values: :data:`VIDEO_DATASETS`."""

from .datasets import ArrayVideos, FileVideos, VideoClips, moving_digits_videos
from .decode import VIDEO_EXTENSIONS, BadVideo, ClipInfo, NoVideoDecoder, frame_files, probe, read_clip
from .index import VideoItem, index_csv, index_folder, probe_items
from .sampling import SAMPLING_MODES, SHORT_VIDEO_POLICIES, ClipSampling
from .transforms import build_video_transform, to_model_layout

VIDEO_DATASETS = ("moving_digits", "video_folder", "frame_folder", "video_csv")
"""``data.name`` values of the video task: composed moving digits (built in), a folder of class subfolders of video
files, a folder of class subfolders of frame folders, a CSV of ``path,label``."""
VIDEO_PATH_DATASETS = ("video_folder", "frame_folder", "video_csv")

__all__ = [
    "ArrayVideos",
    "BadVideo",
    "ClipInfo",
    "ClipSampling",
    "FileVideos",
    "NoVideoDecoder",
    "SAMPLING_MODES",
    "SHORT_VIDEO_POLICIES",
    "VIDEO_DATASETS",
    "VIDEO_EXTENSIONS",
    "VIDEO_PATH_DATASETS",
    "VideoClips",
    "VideoItem",
    "build_video_transform",
    "frame_files",
    "index_csv",
    "index_folder",
    "moving_digits_videos",
    "probe",
    "probe_items",
    "read_clip",
    "to_model_layout",
]
