"""Grounding records: one image, its caption, its boxes and the phrases that name them, checked once.

=====================================  ============================================================================
problem                                handling
=====================================  ============================================================================
empty (or blank) caption               the image is skipped, counted, named
span outside the caption               the phrase is skipped, counted, named (span and caption length)
empty / reversed span                  the phrase is skipped, counted, named
phrase linked to a missing box         the phrase is skipped, counted, named (box index and box count)
phrase linked to no box                the phrase is skipped, counted, named
box with non-finite / non-positive     the box is dropped (phrases linked to it then count as linked to a missing
size                                   box), counted, named
no phrase left                         the image is skipped, counted, named
=====================================  ============================================================================

Skips are :class:`visionattn.data.detection.Skips` (``(item, reason)`` pairs, the run's ``skipped_files``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..detection.records import Skips

__all__ = ["GroundingRecord", "GroundingPhrase", "checked_grounding_record"]


@dataclass
class GroundingPhrase:
    """spans: ``[(start, end)]`` character offsets into the caption (M-DETR's ``tokens_positive``; usually one);
    boxes: indices into the record's boxes; kind: the phrase type metrics are reported by (a template name)."""

    spans: list[tuple[int, int]]
    boxes: list[int]
    kind: str = "phrase"

    def text(self, caption: str) -> str:
        return " ".join(caption[s:e] for s, e in self.spans)


@dataclass
class GroundingRecord:
    """image: a file path or a uint8 array ``(H, W)`` / ``(H, W, 3)``; size ``(H, W)``; caption: str; boxes:
    float32 ``(M, 4)`` xyxy pixels; phrases: :class:`GroundingPhrase` list (each names >= 1 box); image_id; name:
    what messages call the image."""

    image: str | Path | np.ndarray
    size: tuple[int, int]
    caption: str
    boxes: np.ndarray
    phrases: list[GroundingPhrase]
    image_id: int
    name: str
    extra: dict = field(default_factory=dict)


def checked_grounding_record(image, size, caption, boxes, phrases, image_id: int, name: str,
                             skips: Skips) -> GroundingRecord | None:
    """A :class:`GroundingRecord` from raw parts after the checks of the module table, or None (counted in
    ``skips``) when nothing usable is left. ``phrases``: dicts with ``spans`` (list of ``(start, end)``) or
    ``span``, ``boxes`` (indices into ``boxes``) and optional ``kind``."""
    if not isinstance(caption, str) or not caption.strip():
        skips.add(name, f"empty caption (got {caption!r}); a grounding sample needs the text its phrases point into")
        return None
    H, W = int(size[0]), int(size[1])
    raw = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    keep_box = []
    for j, b in enumerate(raw):
        if not all(math.isfinite(v) for v in b):
            skips.add(f"{name} box {j}", f"non-finite coordinates {b.tolist()}")
        elif b[2] - b[0] <= 0 or b[3] - b[1] <= 0:
            skips.add(f"{name} box {j}", f"zero or negative width/height: xyxy {b.tolist()}")
        else:
            keep_box.append(j)
    new_index = {old: new for new, old in enumerate(keep_box)}
    clipped = raw[keep_box].copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, W)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, H)
    out = []
    for k, p in enumerate(phrases):
        spans = [tuple(int(v) for v in s) for s in (p.get("spans") or [p["span"]] if "span" in p or "spans" in p
                                                     else [])]
        where = f"{name} phrase {k}"
        bad = [s for s in spans if len(s) != 2 or not 0 <= s[0] < s[1] <= len(caption)]
        if not spans or bad:
            skips.add(where, f"span {bad[0] if bad else spans} is outside the caption (expected 0 <= start < end <= "
                             f"{len(caption)}, the caption's length: {caption!r})")
            continue
        links = [int(b) for b in p.get("boxes", [])]
        if not links:
            skips.add(where, f"phrase {caption[spans[0][0]:spans[0][1]]!r} is linked to no box")
            continue
        missing = [b for b in links if b not in new_index]
        if missing:
            skips.add(where, f"phrase {caption[spans[0][0]:spans[0][1]]!r} is linked to missing box(es) {missing} "
                             f"(the image has {len(raw)} boxes, usable: {keep_box})")
            continue
        out.append(GroundingPhrase(spans, [new_index[b] for b in links], str(p.get("kind", "phrase"))))
    if not out:
        skips.add(name, "no usable phrase left (see the phrase skips above)")
        return None
    return GroundingRecord(image, (H, W), caption, clipped.astype(np.float32), out, int(image_id), name)
