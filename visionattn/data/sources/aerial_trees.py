"""Aerial RGB images with tree-crown boxes from the ``deepforest`` 2.1.0 wheel (``deepforest/data/``, MIT).

Four annotated images, 951 boxes (measured), read from the package's Pascal VOC XML files:

| name | size (W x H) | boxes | labels |
|---|---|---|---|
| ``2019_YELL_2_528000_4978000_image_crop2`` | 2299 x 2472 | 574 | Tree |
| ``2019_YELL_2_541000_4977000_image_crop`` | 1249 x 1035 | 279 | Tree |
| ``OSBS_029`` | 400 x 400 | 61 | Tree |
| ``SOAP_061`` | 400 x 400 | 37 | Alive 9, Dead 28 |

The XML of ``OSBS_029`` names ``OSBS_029.tif`` (LZW-compressed); the wheel's ``OSBS_029.png`` has the same pixels
(checked) and is what is read. The wheel's other images (``SOAP_031.png``, a bird photo) have no annotations and
are not used. Boxes lie inside their images (``0 < x1 < x2 <= W``, ``0 < y1 < y2 <= H``); none is empty.
Sources: NEON aerial imagery (Yellowstone, Ordway-Swisher, Soaproot Saddle sites) as packaged by DeepForest.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..fetch import Bundle, Package, fetch
from .base import read_voc_xml

__all__ = ["DEEPFOREST", "TREE_IMAGES", "load_aerial_trees"]

_YELL1, _YELL2 = "2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop"
TREE_IMAGES = (_YELL1, _YELL2, "OSBS_029", "SOAP_061")

DEEPFOREST = Bundle(
    key="deepforest",
    package=Package("deepforest", "2.1.0"),
    root="deepforest/data",
    files={
        f"{_YELL1}.png": "a9bdb0f4447fdd899d22f567e0e20ba8320c5413b2ad0cd0ac8d9f3b6e0f9767",
        f"{_YELL1}.xml": "bd431af6a5086d721eb731b22f5ea28cd8a8eab06883efc1c665391acbc68e11",
        f"{_YELL2}.png": "178e58a23cc2642226a364a30f71bd9258ddc1b012c826f12250914a90c7a131",
        f"{_YELL2}.xml": "cefe4b96888bacbf8af1674f000082e549aa707aa6590d545effb23e43f26631",
        "OSBS_029.png": "d9477c6a00e4902c7bee487d4c5582c3b8b9a2f77f3908a29628b816b291e6ee",
        "OSBS_029.xml": "1f68c4011d7b351c29ca755072e77f3d16e6fd1f995bd05a9dd4eb952b55373c",
        "SOAP_061.png": "256508f1a62149bec4a80879077a865caf50e8cace095e6564c76befa480d424",
        "SOAP_061.xml": "4833280af75fd9c47965a93e38945282835e9e725cac412bdb9469d63480947c",
    },
    licence="MIT (DeepForest); imagery from NEON",
)


def load_aerial_trees(
    path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None, download: bool | None = None
) -> list[dict]:
    """The four annotated images, in ``TREE_IMAGES`` order. Each item is a dict:

    name:       image name without extension (``"OSBS_029"``)
    image:      uint8 ``(H, W, 3)`` RGB
    boxes:      float32 ``(N, 4)`` xyxy in pixels, as written in the VOC XML
    labels:     list of N strings: ``"Tree"``, or ``"Alive"`` / ``"Dead"`` for ``SOAP_061``
    image_path: ``Path`` of the PNG; xml_path: ``Path`` of the VOC XML

    ``path`` / ``cache_dir`` / ``download``: see ``visionattn.data.fetch.fetch`` (``path`` or
    ``$VISIONATTN_DEEPFOREST_DIR``: a folder with the files, or the wheel itself)."""
    got = fetch(DEEPFOREST, path, cache_dir=cache_dir, download=download)
    items = []
    for name in TREE_IMAGES:
        xml_path, image_path = got.file(f"{name}.xml"), got.file(f"{name}.png")
        ann = read_voc_xml(xml_path)
        with Image.open(image_path) as im:
            image = np.asarray(im.convert("RGB"))
        if (ann.width, ann.height) != (image.shape[1], image.shape[0]):
            raise ValueError(
                f"{xml_path}: <size> {ann.width}x{ann.height} (W x H) does not match {image_path.name} "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        items.append(
            {
                "name": name,
                "image": image,
                "boxes": ann.boxes,
                "labels": ann.labels,
                "image_path": image_path,
                "xml_path": xml_path,
            }
        )
    return items
