"""Object detection and panoptic segmentation with DETR: ``task.name: detection``."""

from .. import register_task
from .model import Detr, DetrOutput, DetrSpec, build_detr, convert_detr_state_dict, load_detr_weights
from .options import DetectionOptions
from .task import DetectionTask

register_task(DetectionTask)

__all__ = ["DetectionOptions", "DetectionTask", "Detr", "DetrOutput", "DetrSpec", "build_detr",
           "convert_detr_state_dict", "load_detr_weights"]
