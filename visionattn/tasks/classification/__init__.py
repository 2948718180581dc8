"""Image classification (the DeiT recipe): ``task.name: classification``."""

from .. import register_task
from .options import ClassificationOptions
from .task import ClassificationTask

register_task(ClassificationTask)

__all__ = ["ClassificationOptions", "ClassificationTask"]
