"""COCO annotations as semantic label maps: instances (polygons / RLE) or panoptic (PNG + segments_info).

A small reader of its own (pycocotools decodes the masks); the detection task's COCO readers may replace the
indexing later, the conversion to a label map stays here.

* **instances** JSON (``annotations[i]["segmentation"]``): classes are the categories in id order; when no
  category has id 0, ``"background"`` is prepended as class 0 (unannotated pixels); when one has (labelme writes
  ``_background_`` as id 0), it is class 0. Each annotation's mask (pycocotools ``annToMask``: polygons, RLE or
  crowd RLE) is painted with its class, largest area first, so smaller objects lying on larger ones stay visible.
* **panoptic** JSON (``annotations[i]["segments_info"]`` and ``file_name`` of a PNG): classes are the categories
  in id order (no background class: COCO panoptic labels every pixel or leaves it void); a pixel's segment id is
  ``R + 256 G + 256² B``; id 0 (void) becomes ``ignore_index``. Crowd segments are their category's pixels.

Files: images under ``image_dir`` (default: the JSON's folder) by each image's ``file_name``; panoptic PNGs under
``panoptic_dir`` (default: the folder named like the JSON without ``.json``, COCO's layout
``annotations/panoptic_val2017.json`` + ``annotations/panoptic_val2017/``). Problems are counted skips naming the
file: a missing image, an image whose size differs from the JSON's ``width x height``, an annotation of an unknown
category, a missing panoptic PNG or one holding segment ids its ``segments_info`` does not list.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..images import BadImage, load_image
from .masks import MaskError
from .transforms import transformed

__all__ = ["CocoItem", "CocoSemantic", "index_coco", "panoptic_ids", "CocoSemanticDataset"]


@dataclass(frozen=True)
class CocoItem:
    """One image of the JSON: its file, id, ``(H, W)`` from the JSON and (panoptic) its PNG."""

    image: str
    image_id: int
    name: str
    size: tuple[int, int]
    panoptic_png: str | None = None


def panoptic_ids(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG colours ``(H, W, 3)`` uint8 → segment ids ``R + 256 G + 256² B`` ``(H, W)`` int64."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


class CocoSemantic:
    """A parsed COCO file that paints label maps: ``classes``, ``kind`` (``"instances"`` / ``"panoptic"``),
    ``label_map(item, ignore_index)`` → ``(H, W)`` int64 (:class:`MaskError` naming the file on bad content)."""

    def __init__(self, json_path: str | os.PathLike, panoptic_dir: str | os.PathLike | None = None):
        self.path = Path(json_path)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"COCO file {str(self.path)!r}: not readable JSON: {err}") from err
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"COCO file {str(self.path)!r}: expected a list under {key!r}, got "
                                 f"{type(data.get(key)).__name__}")
        anns = data["annotations"]
        self.kind = "panoptic" if anns and "segments_info" in anns[0] else "instances"
        cats = sorted(data["categories"], key=lambda c: c["id"])
        ids = [int(c["id"]) for c in cats]
        names = [str(c["name"]) for c in cats]
        if self.kind == "instances" and 0 not in ids:
            names = ["background"] + names
            self.class_of = {cid: i + 1 for i, cid in enumerate(ids)}
        else:
            self.class_of = {cid: i for i, cid in enumerate(ids)}
        self.classes = names
        self.images = {int(im["id"]): im for im in data["images"]}
        self.panoptic_dir = Path(panoptic_dir) if panoptic_dir is not None else self.path.with_suffix("")
        if self.kind == "panoptic":
            self.segments = {int(a["image_id"]): a for a in anns}
            self.coco = None
        else:
            from pycocotools.coco import COCO

            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
                self.coco = COCO()
                self.coco.dataset = data
                self.coco.createIndex()

    def label_map(self, item: CocoItem, ignore_index: int = 255) -> np.ndarray:
        """The ``(H, W)`` int64 label map of ``item`` (see the module docstring)."""
        return self._panoptic(item, ignore_index) if self.kind == "panoptic" else self._instances(item)

    def _instances(self, item: CocoItem) -> np.ndarray:
        h, w = item.size
        out = np.zeros((h, w), dtype=np.int64)
        anns = self.coco.imgToAnns.get(item.image_id, [])
        for ann in sorted(anns, key=lambda a: -float(a.get("area", 0.0))):
            cls = self.class_of.get(int(ann["category_id"]))
            if cls is None:
                raise MaskError(self.path, f"annotation {ann.get('id')} of image {item.name!r} has category "
                                           f"{ann['category_id']}, not among the categories {sorted(self.class_of)}")
            with warnings.catch_warnings():  # pycocotools' numpy-2 copy= DeprecationWarning, once per mask
                warnings.simplefilter("ignore", DeprecationWarning)
                painted = self.coco.annToMask(ann).astype(bool)
            out[painted] = cls
        return out

    def _panoptic(self, item: CocoItem, ignore_index: int) -> np.ndarray:
        png = Path(item.panoptic_png)
        if not png.is_file():
            raise MaskError(png, "panoptic PNG not found")
        with Image.open(png) as im:
            ids = panoptic_ids(np.asarray(im.convert("RGB")))
        if ids.shape != tuple(item.size):
            raise MaskError(png, f"panoptic PNG size {ids.shape[1]}x{ids.shape[0]} differs from the image's "
                                 f"{item.size[1]}x{item.size[0]} (W x H)")
        out = np.full(ids.shape, ignore_index, dtype=np.int64)
        listed = {0}
        for seg in self.segments[item.image_id]["segments_info"]:
            cls = self.class_of.get(int(seg["category_id"]))
            if cls is None:
                raise MaskError(png, f"segment {seg['id']} has category {seg['category_id']}, not among the "
                                     f"categories {sorted(self.class_of)}")
            out[ids == int(seg["id"])] = cls
            listed.add(int(seg["id"]))
        stray = np.setdiff1d(np.unique(ids), np.fromiter(listed, dtype=np.int64))
        if stray.size:
            raise MaskError(png, f"segment ids {stray[:5].tolist()} are in the PNG but not in its segments_info")
        return out


def index_coco(json_path: str | os.PathLike, image_dir: str | os.PathLike | None = None,
               panoptic_dir: str | os.PathLike | None = None, ignore_index: int = 255,
               ) -> tuple[CocoSemantic, list[CocoItem], list[tuple[str, str]]]:
    """Parse the COCO file and check every image and its label map once: ``(reader, usable items, skipped)``
    (see the module docstring for what is skipped)."""
    reader = CocoSemantic(json_path, panoptic_dir)
    root = Path(image_dir) if image_dir is not None else reader.path.parent
    items, skipped = [], []
    for image_id, im in reader.images.items():
        path = root / im["file_name"]
        png = None
        if reader.kind == "panoptic":
            if image_id not in reader.segments:
                skipped.append((str(path), "no panoptic annotation for this image"))
                continue
            png = str(reader.panoptic_dir / reader.segments[image_id]["file_name"])
        item = CocoItem(str(path), image_id, Path(im["file_name"]).stem, (int(im["height"]), int(im["width"])), png)
        try:
            w, h = load_image(path).size
            if (h, w) != item.size:
                raise MaskError(path, f"image size {w}x{h} differs from the COCO file's {item.size[1]}x"
                                      f"{item.size[0]} (W x H)")
            reader.label_map(item, ignore_index)
        except BadImage as err:
            skipped.append((err.path, err.reason))
            continue
        except MaskError as err:
            skipped.append((err.path, err.reason))
            continue
        items.append(item)
    return reader, items, skipped


class CocoSemanticDataset(Dataset):
    """Checked :class:`CocoItem` s → ``{"image": (3, H, W) float, "mask": (H, W) int64, "name": str}`` after
    ``transform``."""

    def __init__(self, reader: CocoSemantic, items: list[CocoItem], transform, ignore_index: int = 255):
        self.reader, self.items, self.transform, self.ignore_index = reader, list(items), transform, ignore_index

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        image = np.asarray(load_image(item.image))
        return transformed(self.transform, image, self.reader.label_map(item, self.ignore_index), item.name)
