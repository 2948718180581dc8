"""Composed grounding records. No real referring-expression data ships in any package here, so these phrases are
*composed* from templates checked against the annotations; they are not human referring expressions.

- :func:`digit_phrase_records`: the digit phrases of :class:`visionattn.data.composed.DigitPhrases` (real
  scikit-learn digits pasted on canvases; "the 7", "the largest digit", "the digit left of the 3", "the two 4s");
  the phrase type is the template name. Its ``"heldout"`` split holds phrase/digit combinations (and templates, if
  asked) that never occur in training.
- :func:`tree_phrase_records`: deepforest's ``SOAP_061`` tile (400 x 400, 37 crowns labelled Alive / Dead) cut
  into crops, the left ``1 - val_fraction`` of the tile for training and the rest for validation, with "the dead
  tree" / "the living tree" (exactly one such crown in the crop), "the two dead trees" (exactly two), "the trees at
  the top" (every crown whose centre lies in the crop's top third, none within ``margin`` px of that line).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..detection.records import Skips
from .records import GroundingRecord, checked_grounding_record

__all__ = ["digit_phrase_records", "DigitPhraseRecords", "tree_phrase_records", "TREE_TEMPLATES"]


class DigitPhraseRecords(Sequence):
    """``DigitPhrases`` items as :class:`GroundingRecord` s, converted when read (the scenes are rendered lazily).

    ``resample=True`` (training): every read draws the caption's phrases anew among the scene's admissible ones
    (``phrases_per_caption`` of them, a template first, uniformly, as ``DigitPhrases`` does, with torch's RNG),
    so one scene is seen with phrases naming different boxes and the image alone cannot tell which box is meant.
    ``False``: ``DigitPhrases``' own fixed caption per item (evaluation)."""

    def __init__(self, phrases, resample: bool = False):
        self.phrases, self.resample = phrases, bool(resample)

    def __len__(self) -> int:
        return len(self.phrases)

    def _resampled(self, index: int) -> dict:
        import torch

        return self.phrases.compose(index, lambda n: torch.randperm(n).tolist(), lambda n: int(torch.randint(n, ())))

    def __getitem__(self, index: int) -> GroundingRecord:
        if not -len(self) <= index < len(self):
            raise IndexError(f"DigitPhraseRecords: index {index} out of range for length {len(self)}")
        item = self._resampled(index % len(self)) if self.resample else self.phrases[index]
        skips = Skips()
        image = item["image"]
        phrases = [{"span": p["span"], "boxes": p["boxes"], "kind": p["template"]} for p in item["phrases"]]
        record = checked_grounding_record(image, image.shape[:2], item["caption"], item["boxes"], phrases, index,
                                          f"digit phrase scene {item['scene_index']}", skips)
        if record is None:  # composed phrases are checked when built; this would be a bug in DigitPhrases
            raise ValueError(f"DigitPhrases item {index} failed the grounding checks: {skips.items}")
        record.extra["digits"] = [int(p["digit"]) for p in item["phrases"]]
        return record


def digit_phrase_records(split: str, length: int, resample: bool = False, **kwargs) -> DigitPhraseRecords:
    """``DigitPhraseRecords(DigitPhrases(split, length, **kwargs), resample)``."""
    from ..composed import DigitPhrases

    return DigitPhraseRecords(DigitPhrases(split, length, **kwargs), resample)


TREE_TEMPLATES = {"dead": "the dead tree", "alive": "the living tree", "two_dead": "the two dead trees",
                  "top": "the trees at the top"}


def tree_phrases(boxes: np.ndarray, labels: Sequence[str], height: int, margin: float = 4.0) -> list[dict]:
    """Every tree template that names a definite set of crowns: ``[{"text", "kind", "boxes"}]``."""
    out = []
    dead = [i for i, label in enumerate(labels) if label == "Dead"]
    alive = [i for i, label in enumerate(labels) if label == "Alive"]
    if len(dead) == 1:
        out.append({"text": TREE_TEMPLATES["dead"], "kind": "dead", "boxes": dead})
    if len(dead) == 2:
        out.append({"text": TREE_TEMPLATES["two_dead"], "kind": "two_dead", "boxes": dead})
    if len(alive) == 1:
        out.append({"text": TREE_TEMPLATES["alive"], "kind": "alive", "boxes": alive})
    if len(boxes):
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        line = height / 3
        top = np.flatnonzero(cy < line - margin).tolist()
        if top and not np.any(np.abs(cy - line) <= margin) and len(top) < len(boxes):
            out.append({"text": TREE_TEMPLATES["top"], "kind": "top", "boxes": top})
    return out


def tree_phrase_records(split: str, crop: int = 128, stride: int = 32, val_fraction: float = 0.25,
                        min_visible: float = 0.5, items: list[dict] | None = None,
                        ) -> tuple[list[GroundingRecord], Skips]:
    """Composed tree-phrase records of ``split`` (``"train"`` / ``"val"``), one per (crop, phrase); ``items``:
    ``load_aerial_trees()`` (fetched when None)."""
    from ..detection.trees import tile_starts

    if split not in ("train", "val"):
        raise ValueError(f"tree_phrase_records: split expected 'train' or 'val', got {split!r}")
    if items is None:
        from ..sources import load_aerial_trees

        items = load_aerial_trees()
    soap = [it for it in items if it["name"] == "SOAP_061"]
    if not soap:
        raise ValueError(f"tree_phrase_records: the Alive/Dead tile SOAP_061 is missing from the loaded items "
                         f"{[it['name'] for it in items]}")
    image, boxes, labels = soap[0]["image"], np.asarray(soap[0]["boxes"], np.float64), list(soap[0]["labels"])
    H, W = image.shape[:2]
    cut = int(round(W * (1 - val_fraction)))
    x0, x1 = (0, cut) if split == "train" else (cut, W)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    skips, records = Skips(), []
    for ty in tile_starts(0, H, crop, stride):
        for tx in tile_starts(x0, x1, crop, stride):
            th, tw = min(crop, H - ty), min(crop, x1 - tx)
            c = np.stack([np.clip(boxes[:, 0] - tx, 0, tw), np.clip(boxes[:, 1] - ty, 0, th),
                          np.clip(boxes[:, 2] - tx, 0, tw), np.clip(boxes[:, 3] - ty, 0, th)], axis=1)
            inside = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
            keep = np.flatnonzero(inside >= min_visible * areas)
            kept_boxes, kept_labels = c[keep], [labels[i] for i in keep]
            patch = np.ascontiguousarray(image[ty:ty + th, tx:tx + tw])
            for p in tree_phrases(kept_boxes, kept_labels, th):
                name = f"SOAP_061 crop x={tx} y={ty} '{p['text']}'"
                record = checked_grounding_record(patch, (th, tw), p["text"], kept_boxes,
                                                  [{"span": (0, len(p["text"])), "boxes": p["boxes"],
                                                    "kind": p["kind"]}], len(records), name, skips)
                if record is not None:
                    records.append(record)
    return records, skips
