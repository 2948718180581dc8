"""The detection task's data: records (``visionattn.data.detection``) → dict samples → padded batches.

A sample is ``{"image": (3, H, W) float, normalised, "target": {...}}`` with the target holding
``boxes`` ``(M, 4)`` normalised cxcywh (relative to the transformed image, the loss's layout), ``labels`` ``(M,)``,
``size`` ``(2,)`` the transformed ``(H, W)``, ``orig_size``, ``orig_boxes`` ``(M0, 4)`` xyxy pixels and
``orig_labels`` (the untransformed ground truth, for evaluation), ``image_id``, and with the panoptic head
``masks`` ``(M, H, W)`` bool and ``panoptic`` ``(H0, W0, 2)`` (``(class, instance)`` per original pixel). The
collate pads images to a multiple of the backbone's stride and adds ``padding_mask`` ``(B, H, W)`` (True =
padding); targets stay a list of dicts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import box_convert

from ...data import DataConfig, load_image
from ...data.config import warn_skipped
from ...data.detection import (
    TREE_CLASSES,
    DetectionRecord,
    SceneRecords,
    load_panoptic,
    read_box_csv,
    read_coco,
    read_coco_panoptic,
    read_voc,
    tree_tiles,
)
from ..base import TaskData
from ..batching import collate_padded
from .transforms import build_detection_transform

__all__ = ["DETECTION_DATASETS", "DetectionSamples", "PadMultiple", "build_detection_data", "load_record_image",
           "collate_detection"]

DETECTION_DATASETS = ("digit_scenes", "trees", "labelme", "coco", "coco_panoptic", "voc", "csv")


def load_record_image(record: DetectionRecord) -> torch.Tensor:
    """The record's image as uint8 ``(3, H, W)`` (gray arrays repeated to 3 channels); a file whose size differs
    from the indexed size is a ``ValueError`` naming it."""
    if isinstance(record.image, np.ndarray):
        array = record.image if record.image.ndim == 3 else np.repeat(record.image[..., None], 3, axis=2)
        image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    else:
        pil = load_image(record.image)
        image = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1)
    if tuple(image.shape[-2:]) != tuple(record.size):
        raise ValueError(f"{record.name}: the image is {image.shape[-1]}x{image.shape[-2]} (W x H), its annotations "
                         f"were indexed for {record.size[1]}x{record.size[0]}")
    return image


class DetectionSamples(Dataset):
    """``records`` (any sequence of :class:`DetectionRecord`) → samples (module docstring) through ``transform``
    (:func:`build_detection_transform`). ``masks``: include instance masks and the panoptic ground truth."""

    def __init__(self, records: Sequence[DetectionRecord], transform, masks: bool = False):
        self.records, self.transform, self.masks = records, transform, masks

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        image = load_record_image(r)
        H, W = r.size
        sample = {"image": tv_tensors.Image(image),
                  "boxes": tv_tensors.BoundingBoxes(torch.as_tensor(r.boxes, dtype=torch.float32).reshape(-1, 4),
                                                    format="XYXY", canvas_size=(H, W)),
                  "labels": torch.as_tensor(r.labels, dtype=torch.int64)}
        panoptic = r.panoptic
        if self.masks:
            masks = r.masks
            if r.segments is not None:
                masks, panoptic = load_panoptic(r)
            if masks is None or panoptic is None:
                raise ValueError(f"{r.name}: the panoptic head needs instance masks and a panoptic map; this data "
                                 f"has none (train it on digit_scenes with task.stuff=true, or coco_panoptic)")
            sample["masks"] = tv_tensors.Mask(torch.as_tensor(np.asarray(masks), dtype=torch.bool))
        sample = self.transform(sample)
        h, w = sample["image"].shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        target = {"boxes": box_convert(sample["boxes"].as_subclass(torch.Tensor), "xyxy", "cxcywh") / scale,
                  "labels": sample["labels"], "size": torch.tensor([h, w]), "orig_size": torch.tensor([H, W]),
                  "orig_boxes": torch.as_tensor(r.boxes, dtype=torch.float32).reshape(-1, 4),
                  "orig_labels": torch.as_tensor(r.labels, dtype=torch.int64), "image_id": torch.tensor(r.image_id)}
        if self.masks:
            target["masks"] = sample["masks"].as_subclass(torch.Tensor).bool()
            target["panoptic"] = torch.as_tensor(np.asarray(panoptic), dtype=torch.int64)
        return {"image": sample["image"].as_subclass(torch.Tensor), "target": target}


class PadMultiple:
    """The size multiple batches are padded to, shared by the task and its collate: the model (built after the data)
    sets it to its backbone's (:attr:`Detr.size_multiple`); 32 until then, which every registered backbone
    divides."""

    def __init__(self, multiple: int = 32):
        self.multiple = multiple


def collate_detection(samples: list[dict], pad: PadMultiple | int = 1) -> dict:
    """Pad to a multiple of ``pad``; ``batch = {"image", "padding_mask", "target": [per-image dicts]}``."""
    multiple = pad.multiple if isinstance(pad, PadMultiple) else int(pad)
    return collate_padded(samples, multiple=multiple, per_sample=("target",))


def _split(records: list[DetectionRecord], fraction: float, seed: int) -> tuple[list, list]:
    """A seeded split by image (``fraction`` to val, at least one image each when there are two or more)."""
    if len(records) < 2:
        return records, records
    order = np.random.default_rng(seed).permutation(len(records))
    n_val = min(max(1, round(fraction * len(records))), len(records) - 1)
    return [records[i] for i in order[n_val:]], [records[i] for i in order[:n_val]]


def _records(data: DataConfig, o) -> tuple[list, list, list[str], list[bool], list[tuple[str, str]], str]:
    """(train records, val records, classes, isthing, skipped, description) of ``data.name``."""
    name = data.name
    if name == "digit_scenes":
        from ...data.composed import DigitScenes

        kw = dict(size=data.img_size, num_digits=tuple(o.scene_digits), scale=tuple(o.scene_scale),
                  max_occlusion=o.scene_occlusion, background=o.scene_background, seed=data.seed)
        train = SceneRecords(DigitScenes("train", o.scenes[0], **kw), stuff=o.stuff)
        val = SceneRecords(DigitScenes("val", o.scenes[1], **kw), stuff=o.stuff)
        what = f"digit scenes {data.img_size}px ({o.scenes[0]} train / {o.scenes[1]} val, composed)"
        return train, val, train.classes, train.isthing, [], what
    if name == "trees":
        train, s1 = tree_tiles("train", o.tile, o.tile_stride)
        val, s2 = tree_tiles("val", o.tile, None)
        return (train, val, list(TREE_CLASSES), [True], s1.items + s2.items,
                f"deepforest trees, {o.tile}px tiles split by region")
    if name == "labelme":
        from ...data.sources import load_labelme_examples

        ex = load_labelme_examples()
        got = read_coco(ex.coco_json, ex.coco_image_dir, masks=o.masks)
        return (got.records, got.records, got.classes, got.isthing, got.skips.items,
                "labelme's COCO example (3 VOC photos; train = val: a format fixture)")
    if name in ("coco", "coco_panoptic", "voc", "csv"):
        def read(path):
            if name == "coco":
                got = read_coco(path, o.image_root, masks=o.masks)
                return got.records, got.classes, got.isthing, got.skips.items
            if name == "coco_panoptic":
                got = read_coco_panoptic(path, o.png_root, o.image_root)
                return got.records, got.classes, got.isthing, got.skips.items
            reader = read_voc if name == "voc" else read_box_csv
            kwargs = {"image_root": o.image_root} if name == "voc" else {}
            recs, classes, skips = reader(path, classes=data.classes, **kwargs)
            return recs, classes, [True] * len(classes), skips.items

        records, classes, isthing, skipped = read(data.path)
        if o.val_path:
            val, val_classes, _, val_skipped = read(o.val_path)
            if val_classes != classes:
                raise ValueError(f"{name}: the val annotations have classes {val_classes}, the train ones "
                                 f"{classes}")
            train, skipped = records, skipped + val_skipped
        else:
            train, val = _split(records, data.val_fraction, data.seed)
        return train, val, classes, isthing, skipped, f"{name} {data.path}"
    raise ValueError(f"dataset {name!r} gives no detection data; the detection datasets are "
                     f"{', '.join(DETECTION_DATASETS)}")


def build_detection_data(data: DataConfig, options, pad: PadMultiple | None = None) -> TaskData:
    """Train / val samples of ``data`` with the augmentation of ``options`` (:class:`DetectionOptions`), batched
    to multiples of ``pad``."""
    o = options
    train, val, classes, isthing, skipped, description = _records(data, o)
    warn_skipped(f"detection data {data.name!r}", skipped)
    if o.masks and all(isthing):
        raise ValueError(f"task.masks=true trains DETR's panoptic head, which needs a stuff class; {data.name!r} "
                         f"has none (digit_scenes: set task.stuff=true)")
    common = dict(mean=data.mean, std=data.std, scales=o.scales, max_size=o.max_size)
    train_tf = build_detection_transform(True, crop=o.crop, crop_size=tuple(o.crop_size), hflip=data.hflip,
                                         vflip=o.vflip, **common)
    val_tf = build_detection_transform(False, **common)
    meta = {"classes": list(classes), "isthing": list(isthing), "mean": list(data.mean), "std": list(data.std),
            "scales": list(o.scales), "max_size": o.max_size}
    return TaskData(train=DetectionSamples(train, train_tf, o.masks), val=DetectionSamples(val, val_tf, o.masks),
                    meta=meta, collate=functools.partial(collate_detection, pad=pad or PadMultiple()),
                    skipped=list(skipped), description=description)


def eval_data_config(data: DataConfig) -> DataConfig:
    """No augmentation at evaluation (the val split is never augmented anyway)."""
    return dataclasses.replace(data, hflip=False)
