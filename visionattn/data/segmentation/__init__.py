"""Semantic segmentation data: label-map files (VOC folders, CSV pairs, COCO instances / panoptic), the package data
(stardist nuclei tiles) and composed digit scenes, with joint ``torchvision.transforms.v2`` transforms.

Every dataset gives dict samples ``{"image": (3, H, W) float normalised, "mask": (H, W) int64, "name": str}``;
label values are class indices or ``ignore_index`` (255). Bad files are counted skips naming the file
(:func:`check_pairs`, :func:`index_coco`), warned about once (:func:`warn_skipped`).
"""

from ..config import warn_skipped
from .coco import CocoItem, CocoSemantic, CocoSemanticDataset, index_coco, panoptic_ids
from .files import (
    VOC_CLASSES,
    MaskPair,
    MaskPairDataset,
    check_pairs,
    index_csv,
    index_voc,
    read_class_names,
    seeded_split,
)
from .masks import IGNORE_INDEX, MaskError, check_mask, colours_to_indices, read_mask
from .nuclei import NUCLEI_CLASSES, NucleiTiles, percentile_normalize, split_column
from .scenes import DIGIT_SCENE_CLASSES, DigitSceneSegmentation
from .transforms import RandomScale, segmentation_transform, to_sample, transformed

__all__ = [
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "DIGIT_SCENE_CLASSES",
    "NUCLEI_CLASSES",
    "MaskError",
    "read_mask",
    "check_mask",
    "colours_to_indices",
    "MaskPair",
    "MaskPairDataset",
    "index_voc",
    "index_csv",
    "check_pairs",
    "read_class_names",
    "seeded_split",
    "CocoItem",
    "CocoSemantic",
    "CocoSemanticDataset",
    "index_coco",
    "panoptic_ids",
    "NucleiTiles",
    "percentile_normalize",
    "split_column",
    "DigitSceneSegmentation",
    "RandomScale",
    "segmentation_transform",
    "to_sample",
    "transformed",
    "warn_skipped",
]
