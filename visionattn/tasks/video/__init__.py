"""Video classification (ViViT, TimeSformer, Video Swin on clips): ``task.name: video``."""

from .. import register_task
from .options import VideoOptions
from .task import VideoTask

register_task(VideoTask)

__all__ = ["VideoOptions", "VideoTask"]
