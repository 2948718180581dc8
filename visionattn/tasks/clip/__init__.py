"""Image–text contrastive learning (CLIP): ``task.name: clip``."""

from .. import register_task
from .model import CLIPModel, ClipOutput, load_clip_checkpoint
from .options import ClipOptions
from .task import ClipTask
from .tokenizer import ClipTokenizer, get_tokenizer

register_task(ClipTask)

__all__ = ["CLIPModel", "ClipOptions", "ClipOutput", "ClipTask", "ClipTokenizer", "get_tokenizer",
           "load_clip_checkpoint"]
