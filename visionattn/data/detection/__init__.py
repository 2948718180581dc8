"""Detection data: annotation formats and package-shipped sets as :class:`DetectionRecord` s (one image and its
objects, checked once: see :mod:`.records` for how each annotation problem is handled).

| reader | source |
|---|---|
| ``read_coco(json, image_root, masks)`` | COCO instances JSON + image folder (polygon / RLE masks on request) |
| ``read_coco_panoptic(json, png_root, image_root)`` + ``load_panoptic(record)`` | COCO panoptic JSON + PNGs |
| ``read_voc(xml_or_folder, image_root, classes)`` | Pascal VOC XML |
| ``read_box_csv(path, classes)`` | CSV ``image_path,xmin,ymin,xmax,ymax,label`` |
| ``tree_tiles(split, tile, stride)`` | deepforest's aerial tree crops, tiled, split by region |
| ``SceneRecords(DigitScenes(...), stuff)`` | composed digit scenes (detection, or panoptic with a stuff class) |
| ``build_digit_singles(cfg)`` | one composed digit per canvas as a classification set (backbone pretraining) |
"""

from .coco import CocoSet, load_panoptic, read_coco, read_coco_panoptic, rgb_to_id
from .csv_boxes import CSV_COLUMNS, read_box_csv
from .records import DetectionRecord, Skips, check_image_file, checked_record, require_records
from .scenes import SceneRecords, scene_classes
from .singles import DigitSingles, build_digit_singles
from .trees import TREE_CLASSES, tile_starts, tree_tiles
from .voc import read_voc

__all__ = [
    "CSV_COLUMNS",
    "CocoSet",
    "DetectionRecord",
    "DigitSingles",
    "SceneRecords",
    "Skips",
    "TREE_CLASSES",
    "build_digit_singles",
    "check_image_file",
    "checked_record",
    "load_panoptic",
    "read_box_csv",
    "read_coco",
    "read_coco_panoptic",
    "read_voc",
    "require_records",
    "rgb_to_id",
    "scene_classes",
    "tile_starts",
    "tree_tiles",
]
