"""M-DETR-style grounding annotations in COCO JSON (as ``final_flickr_separateGT_*.json`` / ``final_mixed_*.json``).

``images[]``: ``id``, ``file_name``, ``height``, ``width``, ``caption``; ``annotations[]``: ``image_id``, ``bbox``
``[x, y, w, h]`` pixels, ``tokens_positive`` ``[[start, end], ...]`` character offsets into the image's caption
and optional ``phrase_ids`` / ``phrase_type``. Boxes sharing one ``phrase_ids`` (else the same ``tokens_positive``)
are one phrase. Problems follow :mod:`.records`; an image file that is missing is skipped and counted.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..detection.records import Skips, check_image_file
from .records import GroundingRecord, checked_grounding_record

__all__ = ["read_grounding_coco"]


def read_grounding_coco(path: str | Path, image_root: str | Path | None = None) -> tuple[list[GroundingRecord],
                                                                                       Skips]:
    """Records and skips of the annotation file ``path`` (images under ``image_root``, default its folder)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grounding annotations {str(path)!r} do not exist")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise ValueError(f"{path}: expected a COCO JSON object with 'images' and 'annotations', got keys "
                         f"{sorted(doc) if isinstance(doc, dict) else type(doc).__name__}")
    root = Path(image_root) if image_root is not None else path.parent
    by_image: dict[int, list[dict]] = {}
    known = {int(im["id"]) for im in doc["images"]}
    skips = Skips()
    for k, ann in enumerate(doc["annotations"]):
        if int(ann.get("image_id", -1)) not in known:
            skips.add(f"{path.name} annotation {ann.get('id', k)}", f"points to image id {ann.get('image_id')}, "
                                                                  f"which is not in 'images'")
            continue
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    records = []
    for im in doc["images"]:
        name = str(im.get("file_name", im["id"]))
        file = root / name
        size = check_image_file(file)
        if isinstance(size, str):
            skips.add(name, size)
            continue
        anns = by_image.get(int(im["id"]), [])
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                 for a in anns]
        groups: dict = {}
        for j, a in enumerate(anns):
            key = tuple(a["phrase_ids"]) if isinstance(a.get("phrase_ids"), list) else a.get("phrase_ids")
            key = key if key is not None else tuple(tuple(s) for s in a.get("tokens_positive", []))
            g = groups.setdefault(key, {"spans": [tuple(s) for s in a.get("tokens_positive", [])], "boxes": [],
                                        "kind": str(a.get("phrase_type", "phrase"))})
            g["boxes"].append(j)
        record = checked_grounding_record(file, size, im.get("caption", ""), boxes, list(groups.values()),
                                          int(im["id"]), name, skips)
        if record is not None:
            records.append(record)
    if not records:
        raise ValueError(f"{path}: no usable grounding image; first problems: {skips.items[:3]}")
    return records, skips
