"""Annotation-format fixtures from the ``labelme`` 6.3.1 sdist (``examples/``): three Pascal VOC 2011 photos with
boxes (VOC XML), polygons (labelme JSON), COCO instances JSON and VOC class / object mask PNGs.

Measured content (``examples/instance_segmentation`` and ``examples/bbox_detection``):

| image | size (W x H) | VOC XML boxes | COCO polygons / object-mask instances | classes in the masks |
|---|---|---|---|---|
| ``2011_000003`` | 500 x 338 | 2 (person) | 3 | person, bottle, ignore |
| ``2011_000006`` | 500 x 375 | 4 | 6 | person, chair, sofa, ignore |
| ``2011_000025`` | 500 x 375 | 3 | 3 | bus, car |

The COCO file has 3 images, 12 polygon annotations and 21 categories (id 0 ``_background_``, 1..20 the VOC
classes). Class masks hold VOC class indices 0..20 and 255 where labelme's ``__ignore__`` polygons are (the
``-1`` class written as uint8); object masks hold instance ids (0 = none; ids of ignore regions are dropped, so
they need not be contiguous: ``2011_000006`` has 1..5 and 7). The bbox example annotates fewer objects than the
segmentation example (VOC XML: 9 boxes, COCO: 12): they are separate fixtures, not one ground truth.
The sdist's JPEGs were re-encoded per example folder, so each annotation comes with the image it was made on.

Licences: labelme is GPL-3.0-only (only its data files are read, nothing is imported); the photos are from
Pascal VOC 2011 (Flickr images under the VOC terms of use: research use).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..fetch import Bundle, Package, fetch
from .base import read_voc_xml

__all__ = ["LABELME", "LABELME_IMAGES", "LabelmeExamples", "load_labelme_examples"]

LABELME_IMAGES = ("2011_000003", "2011_000006", "2011_000025")

# where each file sits under examples/ ({n}: image name), and its SHA-256 per image
_PATHS = {
    "coco_jpg": "instance_segmentation/data_dataset_coco/JPEGImages/{n}.jpg",
    "voc_jpg": "instance_segmentation/data_dataset_voc/JPEGImages/{n}.jpg",
    "class_png": "instance_segmentation/data_dataset_voc/SegmentationClass/{n}.png",
    "object_png": "instance_segmentation/data_dataset_voc/SegmentationObject/{n}.png",
    "labelme_json": "instance_segmentation/data_annotated/{n}.json",
    "labelme_jpg": "instance_segmentation/data_annotated/{n}.jpg",
    "voc_xml": "bbox_detection/data_dataset_voc/Annotations/{n}.xml",
    "box_jpg": "bbox_detection/data_dataset_voc/JPEGImages/{n}.jpg",
}
_SHA256 = {
    "2011_000003": {
        "coco_jpg": "40c7f2fbf740c7e9707f97047a83593f6c36d8951a737b4287528932d809e80d",
        "voc_jpg": "4409c3cd06827e2add28a6dbde4beaceedc40540019065a88fa4306ecfbf9183",
        "class_png": "f6ed481dea6f91e54e752132354b8463f2ea90658d902b458f9b6e12379fa799",
        "object_png": "56960ae5e04e79a7cadaf3a10955d860f50d2354c04dee67e653e80cb9641794",
        "labelme_json": "0aa7c87bd4f11d3ab38d63fa9bc2a11640d77c0eca2a13968e852478f63021dc",
        "labelme_jpg": "94bc550055447e1fab3982571d7114eb4a02a868054f34cb15f95cadf3e48c9a",
        "voc_xml": "e7a95a42863fb82dc969bba65a5487addaebe4cea95284e0318db958a31972f3",
        "box_jpg": "40c7f2fbf740c7e9707f97047a83593f6c36d8951a737b4287528932d809e80d",
    },
    "2011_000006": {
        "coco_jpg": "9f58b8e4aca7f0411d3c8fe365da1ba5de9c36c729bda2f32cefbbb246ef1e1f",
        "voc_jpg": "0a14b0d2e4fd82d1f20c911875051b2501c1a805f77fe8c05cad84ee1d6308d7",
        "class_png": "b65dc24912968e4b300f955d53f1fc170caa01d3bb87485cd96bd2e526a06589",
        "object_png": "9e07bad00b2e92d2c281ee965387be55efcd8a8a8685db276865a0c63b8838a2",
        "labelme_json": "8f7f13768d9b25927f3dd19d317f33807b13d571d56ec801eea57798999ec9b8",
        "labelme_jpg": "a0d04eb84ed3cd07282d61833d219c11fd6d98f53dc0135d4b3c720b26cfb244",
        "voc_xml": "4dbe3871399e1aab557074e3b0971c1851959c5eb1bace39296b8a9da6a973d7",
        "box_jpg": "9f58b8e4aca7f0411d3c8fe365da1ba5de9c36c729bda2f32cefbbb246ef1e1f",
    },
    "2011_000025": {
        "coco_jpg": "52794c29522d495c942baf7d41823b91479ec55723bcc72d6080540831701b82",
        "voc_jpg": "01f0b224bdc6b2b1d8155070d8544cc2642d8ab142b418969ec8aa95ac721bd5",
        "class_png": "35845faa1e2daa8079fc620fbf02ebd4e636d754277ae5319645f643351195e5",
        "object_png": "5c3570fe333d01f4f60254664a848a2244867feac4c1aa74f9dffa25a252594b",
        "labelme_json": "df548de624182d99286bc3f5b0f18e287ee6d1fab00f53784b9deaf7c00870ab",
        "labelme_jpg": "5dfbdc6981c971986773e226d827f44f7497cf5ca0d4fa1556fd7575aba301ce",
        "voc_xml": "185b1ea0ea083d338b6485d98ceec46fcd6881d0c206825f445917387987d6d5",
        "box_jpg": "52794c29522d495c942baf7d41823b91479ec55723bcc72d6080540831701b82",
    },
}
_COCO_JSON = "instance_segmentation/data_dataset_coco/annotations.json"
_CLASS_NAMES = "instance_segmentation/data_dataset_voc/class_names.txt"

LABELME = Bundle(
    key="labelme",
    package=Package("labelme", "6.3.1", sdist=True),
    root="labelme-6.3.1/examples",
    files={
        _COCO_JSON: "935081d34679b92a74e0dc1acf04e5ac97b01cba7eefe26d5572e761ebf16ec2",
        _CLASS_NAMES: "fbb7c98a5329dd20f8ceab25ea091b1370eafcaaf19cab9536623e6e51552caa",
        **{_PATHS[role].format(n=name): sha for name, shas in _SHA256.items() for role, sha in shas.items()},
    },
    licence="labelme GPL-3.0-only; photos from Pascal VOC 2011 (Flickr, VOC terms of use)",
)


@dataclass(frozen=True)
class LabelmeExamples:
    """The labelme fixtures.

    root:           folder holding the files (the sdist's ``examples/`` layout)
    class_names:    21 names, ``class_names[i]`` for class index i in the masks (0 ``_background_``)
    coco_json:      ``Path`` of the COCO instances file; coco: its parsed content (a dict with ``images``,
                    ``annotations`` (polygon ``segmentation``, ``bbox`` xywh), ``categories``)
    coco_image_dir: folder that the COCO ``file_name`` entries (``JPEGImages/...``) are relative to
    images:         per image, in ``LABELME_IMAGES`` order, a dict:
        name:         ``"2011_000003"``
        image:        uint8 ``(H, W, 3)``, the photo the masks and polygons were drawn on; image_path: its ``Path``
        class_mask:   uint8 ``(H, W)`` class indices, 255 = ignore; class_png: its ``Path`` (palette PNG)
        object_mask:  uint8 ``(H, W)`` instance ids, 0 = none; object_png: its ``Path`` (palette PNG)
        polygons:     list of ``{"label": str, "group_id": int | None, "points": float32 (K, 2) xy pixels}``
                      from the labelme JSON (shapes sharing a group_id are one object); labelme_json: its ``Path``;
                      polygon_image_path: the photo they were drawn on (the same picture, another JPEG encoding)
        voc_xml:      ``Path`` of the VOC XML; boxes: float32 ``(N, 4)`` xyxy pixels from it; box_labels: N names;
        voc_image_path: the photo the boxes were drawn on
    """

    root: Path
    class_names: list[str]
    coco_json: Path
    coco: dict
    coco_image_dir: Path
    images: list[dict]


def load_labelme_examples(
    path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None, download: bool | None = None
) -> LabelmeExamples:
    """The labelme fixtures (see ``LabelmeExamples``). ``path`` or ``$VISIONATTN_LABELME_DIR``: the sdist
    (``labelme-6.3.1.tar.gz``) or a folder holding its ``examples/`` files; see ``visionattn.data.fetch.fetch``."""
    got = fetch(LABELME, path, cache_dir=cache_dir, download=download)
    class_names = got.read_bytes(_CLASS_NAMES).decode().split("\n")
    class_names = [c for c in class_names if c.strip()]
    coco_json = got.file(_COCO_JSON)
    images = []
    for name in LABELME_IMAGES:
        voc, class_png, object_png, labelme_json, labelme_jpg, voc_xml, box_jpg = (
            got.file(_PATHS[role].format(n=name))
            for role in ("voc_jpg", "class_png", "object_png", "labelme_json", "labelme_jpg", "voc_xml", "box_jpg")
        )
        ann = read_voc_xml(voc_xml)
        shapes = json.loads(labelme_json.read_text())["shapes"]
        images.append(
            {
                "name": name,
                "image": _read(voc, "RGB"),
                "image_path": voc,
                "class_mask": _read(class_png, None),
                "class_png": class_png,
                "object_mask": _read(object_png, None),
                "object_png": object_png,
                "polygons": [
                    {
                        "label": s["label"],
                        "group_id": s.get("group_id"),
                        "points": np.asarray(s["points"], dtype=np.float32).reshape(-1, 2),
                    }
                    for s in shapes
                ],
                "labelme_json": labelme_json,
                "polygon_image_path": labelme_jpg,
                "voc_xml": voc_xml,
                "boxes": ann.boxes,
                "box_labels": ann.labels,
                "voc_image_path": box_jpg,
            }
        )
    return LabelmeExamples(
        root=got.root,
        class_names=class_names,
        coco_json=coco_json,
        coco=json.loads(coco_json.read_text()),
        coco_image_dir=coco_json.parent,
        images=images,
    )


def _read(path: Path, mode: str | None) -> np.ndarray:
    """An image file as an array; ``mode=None`` keeps palette indices (``P`` PNGs) as they are."""
    with Image.open(path) as im:
        return np.asarray(im.convert(mode) if mode else im)
