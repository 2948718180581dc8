"""COCO annotation files → :class:`~.records.DetectionRecord` s.

- Instances (``instances_*.json``): ``images``, ``annotations`` (``bbox`` as ``[x, y, w, h]`` pixels, polygon or RLE
  ``segmentation``, ``iscrowd``), ``categories``. Crowd annotations are left out, as DETR trains without them.
  Instance masks are decoded with ``pycocotools.mask`` when asked for.
- Panoptic (``panoptic_*.json`` + a folder of PNGs whose colours encode segment ids, ``id = R + 256 G + 256² B``):
  each segment of ``segments_info`` is one object (things and stuff alike, as DETR's panoptic training uses them);
  its box is the file's ``bbox``, and its mask and the ``(category, instance)`` map are decoded from the PNG when an
  item is loaded (:func:`load_panoptic`), so indexing a large file stays cheap.

Classes follow the categories sorted by id; a category's index is its position there. Problems are handled as
:mod:`.records` says; an annotation whose ``image_id`` names no image, or whose ``category_id`` is unknown, is a
counted skip naming it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .records import DetectionRecord, Skips, check_image_file, checked_record, require_records

__all__ = ["CocoSet", "read_coco", "read_coco_panoptic", "load_panoptic", "rgb_to_id"]


@dataclass
class CocoSet:
    """records, classes (names, in category-id order), category_ids (the file's id of each class), isthing (per
    class; all True for instances files), skips."""

    records: list[DetectionRecord]
    classes: list[str]
    category_ids: list[int]
    isthing: list[bool]
    skips: Skips


def _read_json(path: Path, keys: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a valid JSON file: {err}") from err
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"{path}: a COCO file needs the keys {list(keys)}; missing {missing}")
    return data


def _categories(data: dict, path: Path) -> tuple[list[dict], dict[int, int]]:
    cats = sorted(data["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in cats]
    if len(set(ids)) != len(ids) or not cats:
        raise ValueError(f"{path}: expected distinct category ids, got {ids}")
    return cats, {c["id"]: i for i, c in enumerate(cats)}


def _images(data: dict, root: Path, skips: Skips) -> dict[int, tuple[Path, tuple[int, int], str]]:
    """image id → (path, (H, W), file name) for the images whose file is usable and as large as the entry says."""
    out = {}
    for entry in data["images"]:
        name = str(entry.get("file_name", ""))
        path = root / name
        got = check_image_file(path)
        if isinstance(got, str):
            skips.add(path, got)
            continue
        want = (entry.get("height"), entry.get("width"))
        if None not in want and tuple(int(v) for v in want) != got:
            skips.add(path, f"the annotation file says {want[1]}x{want[0]} (W x H), the image is {got[1]}x{got[0]}")
            continue
        out[entry["id"]] = (path, got, name)
    return out


def read_coco(json_path: str | Path, image_root: str | Path | None = None, masks: bool = False) -> CocoSet:
    """An instances file; images are ``image_root / file_name`` (default: the JSON's folder)."""
    path = Path(json_path)
    data = _read_json(path, ("images", "annotations", "categories"))
    root = Path(image_root) if image_root is not None else path.parent
    skips = Skips()
    cats, index = _categories(data, path)
    classes = [str(c["name"]) for c in cats]
    images = _images(data, root, skips)
    per_image = defaultdict(list)
    known_images = {entry["id"] for entry in data["images"]}
    for ann in data["annotations"]:
        image_id, what = ann.get("image_id"), f"annotation {ann.get('id')}"
        if image_id not in known_images:
            skips.add(f"image id {image_id}", f"{what}: annotation for a missing image (no such id in 'images')")
        elif ann.get("category_id") not in index:
            skips.add(images.get(image_id, (f"image id {image_id}",))[0],
                      f"{what}: unknown category id {ann.get('category_id')} (known ids: "
                      f"{', '.join(str(c['id']) for c in cats)})")
        elif not ann.get("iscrowd", 0):
            per_image[image_id].append(ann)
    records = []
    for image_id, (file, (H, W), name) in images.items():
        anns = per_image.get(image_id, [])
        boxes = []
        for a in anns:
            b = a.get("bbox")
            ok = isinstance(b, (list, tuple)) and len(b) == 4
            boxes.append([b[0], b[1], b[0] + b[2], b[1] + b[3]] if ok else [float("nan")] * 4)
        instance_masks = _decode_masks(anns, H, W) if masks else None
        records.append(checked_record(file, (H, W), boxes, [index[a["category_id"]] for a in anns], classes,
                                      image_id, name, skips, masks=instance_masks,
                                      object_names=[f"annotation {a.get('id')}" for a in anns]))
    require_records(records, f"COCO file {str(path)!r}", skips)
    return CocoSet(records, classes, [c["id"] for c in cats], [True] * len(cats), skips)


def _decode_masks(anns: list[dict], H: int, W: int) -> np.ndarray:
    from pycocotools import mask as mask_utils

    out = np.zeros((len(anns), H, W), dtype=bool)
    for i, a in enumerate(anns):
        seg = a.get("segmentation")
        if not seg:
            continue
        rles = mask_utils.frPyObjects(seg, H, W) if isinstance(seg, list) or isinstance(seg.get("counts"), list) \
            else seg
        m = mask_utils.decode(rles)
        out[i] = (m.max(axis=2) if m.ndim == 3 else m).astype(bool)
    return out


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG colours ``(H, W, 3)`` uint8 → segment ids ``R + 256 G + 256² B`` int64 ``(H, W)``."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def read_coco_panoptic(json_path: str | Path, png_root: str | Path | None = None,
                       image_root: str | Path | None = None) -> CocoSet:
    """A panoptic file; PNGs are ``png_root / file_name`` (default: the folder named like the JSON, beside it, as
    COCO ships ``panoptic_val2017.json`` + ``panoptic_val2017/``), images ``image_root / <file_name as .jpg>`` or the
    image entry's ``file_name`` (default root: the JSON's folder). Records carry ``segments = (png path, segment
    ids)``; :func:`load_panoptic` decodes them."""
    path = Path(json_path)
    data = _read_json(path, ("images", "annotations", "categories"))
    pngs = Path(png_root) if png_root is not None else path.with_suffix("")
    root = Path(image_root) if image_root is not None else path.parent
    skips = Skips()
    cats, index = _categories(data, path)
    classes = [str(c["name"]) for c in cats]
    images = _images(data, root, skips)
    records, seen = [], set()
    for ann in data["annotations"]:
        image_id = ann.get("image_id")
        if image_id not in {e["id"] for e in data["images"]}:
            skips.add(f"image id {image_id}", f"panoptic annotation {ann.get('file_name')!r}: annotation for a "
                                              f"missing image (no such id in 'images')")
            continue
        if image_id not in images or image_id in seen:
            continue
        seen.add(image_id)
        file, (H, W), name = images[image_id]
        png = pngs / str(ann.get("file_name", ""))
        got = check_image_file(png)
        if isinstance(got, str) or got != (H, W):
            skips.add(png, got if isinstance(got, str) else f"panoptic PNG is {got[1]}x{got[0]}, the image {W}x{H}")
            continue
        segs = [s for s in ann.get("segments_info", []) if not s.get("iscrowd", 0)]
        unknown = [s for s in segs if s.get("category_id") not in index]
        for s in unknown:
            skips.add(file, f"segment {s.get('id')}: unknown category id {s.get('category_id')}")
        segs = [s for s in segs if s.get("category_id") in index]
        boxes = [[s["bbox"][0], s["bbox"][1], s["bbox"][0] + s["bbox"][2], s["bbox"][1] + s["bbox"][3]]
                 for s in segs]
        record = checked_record(file, (H, W), boxes, [index[s["category_id"]] for s in segs], classes, image_id,
                                name, skips, object_names=[f"segment {s.get('id')}" for s in segs])
        record.segments = (png, [int(segs[i]["id"]) for i in record.source_index])
        records.append(record)
    require_records(records, f"COCO panoptic file {str(path)!r}", skips)
    return CocoSet(records, classes, [c["id"] for c in cats], [bool(c.get("isthing", 1)) for c in cats], skips)


def load_panoptic(record: DetectionRecord) -> tuple[np.ndarray, np.ndarray]:
    """``(masks (M, H, W) bool, panoptic (H, W, 2) int32)`` of a record from :func:`read_coco_panoptic`: one mask
    per kept segment, and per pixel ``(class index, instance id)`` (instance ``k + 1`` for segment ``k``; pixels of
    no kept segment get class -1)."""
    png, ids = record.segments
    with Image.open(png) as im:
        seg = rgb_to_id(np.asarray(im.convert("RGB")))
    masks = np.stack([seg == i for i in ids]) if ids else np.zeros((0, *seg.shape), dtype=bool)
    panoptic = np.zeros((*seg.shape, 2), dtype=np.int32)
    panoptic[..., 0] = -1
    for k, (m, label) in enumerate(zip(masks, record.labels, strict=True)):
        panoptic[m] = (int(label), k + 1)
    return masks, panoptic
