"""The grounding task's data: :class:`~visionattn.data.grounding.GroundingRecord` s → dict samples → batches.

A sample is ``{"image": (3, H, W) float normalised, "target": {...}}`` with ``boxes`` ``(M, 4)`` normalised cxcywh,
``labels`` ``(M,)`` zeros (DETR's box loss reads them), ``orig_boxes`` ``(M, 4)`` xyxy pixels, ``size`` ``(2,)``,
``image_id``, ``name``, ``caption`` and ``phrases`` (``spans``, ``boxes``, ``kind``). No geometric augmentation:
a flip would turn "the leftmost digit" into a wrong label.

:class:`GroundingCollate` pads the images (``padding_mask`` ``(B, H, W)``), tokenizes the captions (``tokens``
``(B, L)`` int64, ``text_padding`` ``(B, L)`` bool) and adds to each target ``positive`` ``(M, L)`` bool (the
tokens of the phrases that name each box) and to each phrase ``tokens`` ``(L,)`` bool. A span that covers no token
is a ``ValueError`` naming the image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import box_convert

from ...data import DataConfig, load_image
from ...data.config import warn_skipped
from ..base import TaskData
from ..batching import collate_padded
from ..detection.data import PadMultiple
from ..detection.transforms import build_detection_transform
from .tokenizer import GroundingTokenizer

__all__ = ["GroundingSamples", "GroundingCollate", "build_grounding_data", "record_image"]


def record_image(record) -> torch.Tensor:
    """uint8 ``(3, H, W)`` of a record (gray arrays repeated to 3 channels); a size that differs from the indexed
    one is a ``ValueError`` naming the image."""
    if isinstance(record.image, np.ndarray):
        array = record.image if record.image.ndim == 3 else np.repeat(record.image[..., None], 3, axis=2)
        image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    else:
        image = torch.from_numpy(np.asarray(load_image(record.image), dtype=np.uint8).copy()).permute(2, 0, 1)
    if tuple(image.shape[-2:]) != tuple(record.size):
        raise ValueError(f"{record.name}: the image is {image.shape[-1]}x{image.shape[-2]} (W x H), its annotations "
                         f"were indexed for {record.size[1]}x{record.size[0]}")
    return image


class GroundingSamples(Dataset):
    """``records`` (a sequence of grounding records) → samples (module docstring) through ``transform``."""

    def __init__(self, records: Sequence, transform):
        self.records, self.transform = records, transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        H, W = r.size
        boxes = torch.as_tensor(r.boxes, dtype=torch.float32).reshape(-1, 4)
        s = self.transform({"image": tv_tensors.Image(record_image(r)),
                            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(H, W))})
        h, w = s["image"].shape[-2:]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        target = {"boxes": box_convert(s["boxes"].as_subclass(torch.Tensor), "xyxy", "cxcywh") / scale,
                  "labels": torch.zeros(len(boxes), dtype=torch.int64), "orig_boxes": boxes,
                  "size": torch.tensor([h, w]), "image_id": torch.tensor(r.image_id), "name": r.name,
                  "caption": r.caption,
                  "phrases": [{"spans": list(p.spans), "boxes": list(p.boxes), "kind": p.kind} for p in r.phrases]}
        return {"image": s["image"].as_subclass(torch.Tensor), "target": target}


class GroundingCollate:
    """Pads, tokenizes and builds the positive maps (module docstring). ``pad``: the size multiple."""

    def __init__(self, tokenizer: GroundingTokenizer, pad: PadMultiple | int = 32):
        self.tokenizer, self.pad = tokenizer, pad

    def __call__(self, samples: list[dict]) -> dict:
        multiple = self.pad.multiple if isinstance(self.pad, PadMultiple) else int(self.pad)
        batch = collate_padded(samples, multiple=multiple, per_sample=("target",))
        encoded = [self.tokenizer.encode(t["caption"]) for t in batch["target"]]
        L = max(len(ids) for ids, _ in encoded)
        tokens = torch.zeros(len(encoded), L, dtype=torch.int64)
        targets = []
        for b, ((ids, offsets), t) in enumerate(zip(encoded, batch["target"], strict=True)):
            tokens[b, : len(ids)] = torch.tensor(ids)
            positive = torch.zeros(len(t["boxes"]), L, dtype=torch.bool)
            phrases = []
            for p in t["phrases"]:
                try:
                    row = self.tokenizer.positive_map(offsets, p["spans"], t["caption"])
                except ValueError as err:
                    raise ValueError(f"{t['name']}: {err}") from None
                row = torch.nn.functional.pad(row, (0, L - len(row)))
                positive[p["boxes"]] |= row
                phrases.append({**p, "tokens": row})
            targets.append({**t, "positive": positive, "phrases": phrases})
        batch["target"] = targets
        batch["tokens"], batch["text_padding"] = tokens, tokens == self.tokenizer.pad_id
        return batch


def _records(data: DataConfig, o) -> tuple[Sequence, Sequence, list[str], list, str]:
    """(train records, val records, phrase kinds, skips, description)."""
    if data.name == "digit_phrases":
        from ...data.composed import TEMPLATES
        from ...data.grounding import digit_phrase_records

        kw = dict(size=data.img_size, num_digits=tuple(o.scene_digits), scale=tuple(o.scene_scale),
                  heldout_templates=tuple(o.heldout_templates), seed=data.seed)
        train = digit_phrase_records("train", o.scenes[0], resample=True, phrases_per_caption=o.train_phrases,
                                     **kw)
        val = digit_phrase_records("heldout", o.scenes[1], **kw)
        return (train, val, list(TEMPLATES), [], f"composed digit phrases over {data.img_size}px digit scenes "
                f"({o.scenes[0]} train / {o.scenes[1]} held-out phrase-digit combinations)")
    if data.name == "tree_phrases":
        from ...data.grounding import tree_phrase_records
        from ...data.grounding.composed import TREE_TEMPLATES

        train, s1 = tree_phrase_records("train", o.crop, o.crop_stride)
        val, s2 = tree_phrase_records("val", o.crop, o.crop_stride)
        return train, val, list(TREE_TEMPLATES), s1.items + s2.items, "composed tree phrases over deepforest SOAP_061"
    if data.name == "grounding_coco":
        from ...data.grounding import read_grounding_coco

        if not data.path or not o.val_path:
            raise ValueError(f"grounding_coco: expected data.path and task.val_path (M-DETR JSON files), got "
                             f"{data.path!r} and {o.val_path!r}")
        train, s1 = read_grounding_coco(data.path, o.image_root)
        val, s2 = read_grounding_coco(o.val_path, o.image_root)
        kinds = sorted({p.kind for r in list(train) + list(val) for p in r.phrases})
        return train, val, kinds, s1.items + s2.items, f"grounding COCO {data.path}"
    from .options import GROUNDING_DATASETS

    raise ValueError(f"dataset {data.name!r} gives no grounding data; the grounding datasets are "
                     f"{', '.join(GROUNDING_DATASETS)}")


def _captions(records) -> list[str]:
    """The training captions the tokenizer's vocabulary is trained on (the composed digit phrases: every admissible
    phrase of every training scene, read without rendering the scenes)."""
    phrases = getattr(records, "phrases", None)
    if phrases is not None and hasattr(phrases, "vocabulary_texts"):
        return phrases.vocabulary_texts()
    return [r.caption for r in records]


def build_grounding_data(data: DataConfig, options, pad: PadMultiple) -> tuple[TaskData, GroundingTokenizer]:
    """Train / val samples, the collate and the tokenizer trained on the training captions."""
    o = options
    train, val, kinds, skipped, description = _records(data, o)
    warn_skipped(f"grounding data {data.name!r}", skipped)
    tokenizer = GroundingTokenizer.train(_captions(train) + [". "], o.max_text_len)
    transform = build_detection_transform(False, data.mean, data.std)
    meta = {"vocab": list(tokenizer.vocab), "kinds": kinds, "mean": list(data.mean), "std": list(data.std)}
    return TaskData(train=GroundingSamples(train, transform), val=GroundingSamples(val, transform), meta=meta,
                    collate=GroundingCollate(tokenizer, pad), skipped=list(skipped),
                    description=description), tokenizer


def eval_data_config(data: DataConfig) -> DataConfig:
    return dataclasses.replace(data, hflip=False)
