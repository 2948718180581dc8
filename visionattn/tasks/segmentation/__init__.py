"""Semantic segmentation with SETR (Zheng et al. 2021): ``task.name: segmentation``.

Any backbone through ``forward_intermediates`` + the naive, PUP or MLA decoder and auxiliary heads
(:mod:`.decoders`, :mod:`.model`), cross-entropy with an ignore index (:mod:`.loss`), whole-image and
sliding-window inference (:mod:`.inference`), mIoU / per-class IoU / pixel accuracy (:mod:`.metrics`), torchvision
FCN / DeepLabV3 baselines (:mod:`.baselines`), colour masks and overlays (:mod:`.predict`, :mod:`.report`).
"""

from .. import register_task
from .decoders import DECODERS, MLAHead, NaiveHead, PUPHead, build_decoder
from .model import SegmentationModel, TrainForward, build_segmentation_model, evenly_spaced
from .options import SegmentationOptions
from .task import SegmentationTask

register_task(SegmentationTask)

__all__ = ["DECODERS", "MLAHead", "NaiveHead", "PUPHead", "SegmentationModel", "SegmentationOptions",
           "SegmentationTask", "TrainForward", "build_decoder", "build_segmentation_model", "evenly_spaced"]
