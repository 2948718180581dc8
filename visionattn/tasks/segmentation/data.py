"""Segmentation data as the task's :class:`~visionattn.tasks.TaskData`: which ``data.name`` builds what, the
batch collate, and the facts (``meta``) a checkpoint keeps.

=================  ==================================================================================================
``data.name``      data (``visionattn.data.segmentation``)
=================  ==================================================================================================
``digit_scenes``   composed scenes of real digits, ``data.img_size`` square; background + 10 digit classes
``nuclei``         the stardist nuclei image (package data), ``data.img_size`` tiles, background / nucleus
``seg_folder``     a VOC-layout folder at ``data.path`` (JPEGImages/ + SegmentationClass/)
``seg_csv``        a CSV of ``image,mask`` rows at ``data.path``
``coco_semantic``  a COCO instances or panoptic JSON at ``data.path``, painted into label maps
``labelme_voc``    labelme 6.3.1's VOC example folder (package data; 3 photos, a format fixture)
=================  ==================================================================================================

Samples are ``{"image": (3, H, W) float normalised, "mask": (H, W) int64, "name": str}``; the collate pads a batch
to its largest image (images with 0, labels with ``ignore_index``) and adds ``padding_mask`` ``(B, H, W)`` (True =
padding), or None when no sample needed padding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch

from ...data import DataConfig
from ...data.segmentation import (
    DIGIT_SCENE_CLASSES,
    VOC_CLASSES,
    CocoSemanticDataset,
    DigitSceneSegmentation,
    MaskPairDataset,
    NucleiTiles,
    check_pairs,
    index_coco,
    index_csv,
    index_voc,
    read_class_names,
    seeded_split,
    segmentation_transform,
    warn_skipped,
)
from ..base import TaskData
from ..batching import pad_images
from .options import SegmentationOptions

__all__ = ["SEGMENTATION_DATASETS", "build_segmentation_data", "collate_segmentation", "palette_for"]

SEGMENTATION_DATASETS = ("digit_scenes", "nuclei", "seg_folder", "seg_csv", "coco_semantic", "labelme_voc")


def collate_segmentation(samples: Sequence[dict], ignore_index: int = 255) -> dict:
    """Dict samples → ``{"image": (B, 3, H, W), "mask": (B, H, W) int64, "padding_mask": (B, H, W) bool | None,
    "name": [str]}`` (see the module docstring)."""
    images, padding = pad_images([s["image"] for s in samples])
    H, W = images.shape[-2:]
    masks = torch.full((len(samples), H, W), ignore_index, dtype=torch.int64)
    for i, s in enumerate(samples):
        m = s["mask"]
        if m.shape != s["image"].shape[-2:]:
            raise ValueError(f"sample {s.get('name', i)!r}: label map {tuple(m.shape)} and image "
                             f"{tuple(s['image'].shape[-2:])} expected the same (H, W)")
        masks[i, : m.shape[0], : m.shape[1]] = m
    needs_mask = any(s["image"].shape[-2:] != (H, W) for s in samples)
    return {"image": images, "mask": masks, "padding_mask": padding if needs_mask else None,
            "name": [str(s.get("name", i)) for i, s in enumerate(samples)]}


def palette_for(num_classes: int) -> list[list[int]]:
    """Display colours: the Pascal VOC colour map (class 0 black, 1 dark red, 2 dark green, ...)."""
    out = []
    for c in range(num_classes):
        r = g = b = 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append([r, g, b])
    return out


def _file_classes(cfg: DataConfig, found: list[str] | None, fallback: list[str] | None, where: str) -> list[str]:
    classes = cfg.classes or found or fallback
    if not classes:
        raise ValueError(f"{where}: no class list; expected data.classes or a class_names.txt beside the data")
    return list(classes)


def _pairs_data(cfg: DataConfig, o: SegmentationOptions, seed: int):
    """(train dataset, val dataset, classes, skipped, description) of seg_folder / seg_csv / labelme_voc."""
    if cfg.name == "labelme_voc":
        from ...data.sources import load_labelme_examples

        root = load_labelme_examples().root / "instance_segmentation" / "data_dataset_voc"
    else:
        root = Path(cfg.path)
    index = index_csv if cfg.name == "seg_csv" else index_voc
    train, val, skipped = index(root, 0.0 if o.val_path else cfg.val_fraction, cfg.seed)
    if o.val_path is not None:
        val, _, more = index(Path(o.val_path), 0.0, cfg.seed)
        skipped = skipped + more
    folder = root if root.is_dir() else root.parent
    classes = _file_classes(cfg, read_class_names(folder / "class_names.txt"),
                            VOC_CLASSES if cfg.name != "seg_csv" else None, f"{cfg.name} {str(root)!r}")
    train, s1 = check_pairs(train, len(classes), o.palette, o.ignore_index)
    val, s2 = check_pairs(val, len(classes), o.palette, o.ignore_index)
    return train, val, classes, skipped + s1 + s2, f"{cfg.name} {root}"


def build_segmentation_data(cfg: DataConfig, o: SegmentationOptions, seed: int) -> TaskData:
    """The task's data for ``cfg.name`` (see the module docstring); skipped files are warned about once and kept in
    ``TaskData.skipped``; no usable training or validation sample is a ``ValueError``."""
    if cfg.name not in SEGMENTATION_DATASETS:
        raise ValueError(f"dataset {cfg.name!r} has no label maps; the segmentation datasets are "
                         f"{', '.join(SEGMENTATION_DATASETS)}")
    size, ignore = cfg.img_size, o.ignore_index

    def tf(train: bool, crop: int | None = size, scale=o.scale_range, base=o.resize, hflip=cfg.hflip, vflip=False):
        return segmentation_transform(train, crop, cfg.mean, cfg.std, scale, base, hflip, vflip, ignore)

    meta_extra: dict = {}
    skipped: list[tuple[str, str]] = []
    if cfg.name == "digit_scenes":
        scene = {"size": size, "num_digits": tuple(o.scene_digits), "scale": tuple(o.scene_scale),
                 "background": o.scene_background}
        plain_train, plain_val = tf(True, None, (1.0, 1.0), None), tf(False, None, (1.0, 1.0), None)
        train = DigitSceneSegmentation("train", o.train_size, plain_train, fresh=True, seed=cfg.seed, **scene)
        val = DigitSceneSegmentation("val", o.val_size, plain_val, fresh=False, seed=cfg.seed, **scene)
        classes, description = list(DIGIT_SCENE_CLASSES), f"digit scenes {size}px"
    elif cfg.name == "nuclei":
        from ...data.sources import load_nuclei

        nuclei = load_nuclei()
        vf = cfg.val_fraction or 0.25
        train = NucleiTiles(nuclei, "train", size, tf(True, None, (1.0, 1.0), None, True, True), o.train_size, vf)
        val = NucleiTiles(nuclei, "val", size, tf(False, None, (1.0, 1.0), None), val_fraction=vf)
        classes, description = list(NucleiTiles.classes), f"stardist nuclei, {size}px tiles"
        meta_extra["intensity"] = "percentile"
    elif cfg.name == "coco_semantic":
        reader, train_items, skipped = index_coco(cfg.path, o.coco_images, o.coco_panoptic, ignore)
        val_reader, val_items = reader, []
        if o.val_path is not None:
            val_reader, val_items, more = index_coco(o.val_path, o.coco_images, o.coco_panoptic, ignore)
            skipped = skipped + more
            if val_reader.classes != reader.classes:
                raise ValueError(f"task.val_path {o.val_path!r} has classes {val_reader.classes}, data.path "
                                 f"{cfg.path!r} has {reader.classes}; expected the same")
        else:
            train_items, val_items = seeded_split(train_items, cfg.val_fraction, cfg.seed)
        train = CocoSemanticDataset(reader, train_items, tf(True), ignore)
        val = CocoSemanticDataset(val_reader, val_items, tf(False), ignore)
        classes, description = list(reader.classes), f"COCO {reader.kind} {Path(cfg.path).name}"
    else:
        train_pairs, val_pairs, classes, skipped, description = _pairs_data(cfg, o, seed)
        train = MaskPairDataset(train_pairs, tf(True), o.palette, ignore)
        val = MaskPairDataset(val_pairs, tf(False), o.palette, ignore)
    if cfg.classes is not None and list(cfg.classes) != list(classes):
        raise ValueError(f"data.classes {cfg.classes} differ from the classes of {description}: {classes}")
    warn_skipped(description, skipped)
    for split, ds in (("training", train), ("validation", val)):
        if len(ds) == 0:
            example = f"; e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
            raise ValueError(f"{description} has no usable {split} samples ({len(skipped)} files skipped{example})")
    if o.class_weights is not None and len(o.class_weights) != len(classes):
        raise ValueError(f"task.class_weights: expected {len(classes)} weights (one per class of {description}), "
                         f"got {len(o.class_weights)}")
    meta = {"classes": classes, "img_size": int(size), "in_chans": 3, "mean": list(cfg.mean), "std": list(cfg.std),
            "ignore_index": int(ignore), "palette": palette_for(len(classes)), **meta_extra}
    return TaskData(train=train, val=val, meta=meta, collate=functools.partial(collate_segmentation,
                                                                               ignore_index=ignore),
                    skipped=skipped, description=description)
