"""Phrase grounding with M-DETR (text-conditioned detection): ``task.name: grounding``."""

from .. import register_task
from .model import MDetr, MDetrOutput, MDetrSpec, build_mdetr
from .options import GroundingOptions
from .task import GroundingTask
from .tokenizer import GroundingTokenizer

register_task(GroundingTask)

__all__ = ["GroundingOptions", "GroundingTask", "GroundingTokenizer", "MDetr", "MDetrOutput", "MDetrSpec",
           "build_mdetr"]
