"""Digit phrases: referring expressions over digit scenes, for phrase grounding (M-DETR style).

No real referring-expression data ships in any package here, so these are *composed*: the scenes are digit
scenes (real handwritten digits from scikit-learn's ``load_digits`` pasted on a canvas, see ``DigitScenes``) and
the phrases come from templates, each checked against the scene so that it names exactly the boxes it links to:

- ``digit``: "the 7": exactly one 7 in the scene; links to it.
- ``pair``: "the two 4s": exactly two 4s; links to both.
- ``largest`` / ``smallest``: "the largest digit": its box area is >= 1.25x the next one (smallest: <= 0.8x).
- ``leftmost`` / ``rightmost``: "the leftmost digit": its box centre is more than ``margin`` px from the next one.
- ``left_of`` / ``right_of``: "the digit left of the 3": exactly one 3; exactly one other digit whose box centre is
  left of the 3's by more than ``margin`` px, and no other digit within ``margin`` px of it horizontally.
- ``above`` / ``below``: "the digit above the 3": as ``left_of``, vertically.

A *combination* is (template, digit) for the templates with a digit slot. Held-out lists keep an evaluation split
whose templates and combinations never occur in training: ``split="train"`` and ``"val"`` produce no held-out
phrase; ``split="heldout"`` produces only held-out phrases (over val scenes, so its digit images are unseen too).
The defaults hold out two digits per slotted template (every digit still occurs in training in other templates)
and no whole template; ``heldout_templates=("rightmost",)`` etc. holds out templates.

A caption joins ``phrases_per_caption`` phrases with ``". "``; each phrase's span is a character range into it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .digit_pool import SPLIT_CODES
from .digit_scenes import DigitScenes

__all__ = ["DigitPhrases", "TEMPLATES", "DEFAULT_HELDOUT_COMBINATIONS", "scene_phrases"]

TEMPLATES = {
    "digit": "the {d}",
    "pair": "the two {d}s",
    "largest": "the largest digit",
    "smallest": "the smallest digit",
    "leftmost": "the leftmost digit",
    "rightmost": "the rightmost digit",
    "left_of": "the digit left of the {d}",
    "right_of": "the digit right of the {d}",
    "above": "the digit above the {d}",
    "below": "the digit below the {d}",
}

DEFAULT_HELDOUT_COMBINATIONS = (
    ("digit", 7), ("digit", 2), ("pair", 4), ("pair", 9), ("left_of", 3), ("left_of", 8),
    ("right_of", 5), ("right_of", 0), ("above", 6), ("above", 1), ("below", 2), ("below", 7),
)  # fmt: skip


class DigitPhrases(Sequence):
    """Digit scenes with captions whose phrases are linked to boxes; ``data[i]`` is the scene dict of
    ``DigitScenes`` (image, boxes xyxy, labels, masks, ...) plus:

    caption:  str, e.g. ``"the digit left of the 3"``
    phrases:  list of dicts, one per phrase in the caption:
        text:     the phrase; span: ``(start, end)`` character offsets, ``caption[start:end] == text``
        template: a key of ``TEMPLATES``; digit: the digit in the slot, or -1 for templates without one
        boxes:    list of indices into the scene's boxes that the phrase names (1 or 2)
    scene_index: index of the scene in the underlying ``DigitScenes``

    Scenes with no admissible phrase are skipped: item ``i`` is the i-th scene that has one, found when the
    dataset is built (scene generation is deterministic, so the same arguments give the same items).
    ``scene_kwargs`` go to ``DigitScenes`` (size, num_digits, scale, background, ...).
    """

    def __init__(
        self,
        split: str = "train",
        length: int = 1000,
        *,
        phrases_per_caption: int = 1,
        heldout_templates: Sequence[str] = (),
        heldout_combinations: Sequence[tuple[str, int]] = DEFAULT_HELDOUT_COMBINATIONS,
        margin: float = 2.0,
        seed: int = 0,
        max_scenes: int | None = None,
        **scene_kwargs,
    ):
        if split not in SPLIT_CODES:
            raise ValueError(f"DigitPhrases: split expected one of {sorted(SPLIT_CODES)}, got {split!r}")
        unknown = [t for t in heldout_templates if t not in TEMPLATES] + [
            t for t, _ in heldout_combinations if t not in TEMPLATES or "{d}" not in TEMPLATES[t]
        ]
        if unknown:
            raise ValueError(
                f"DigitPhrases: expected held-out templates with a digit slot among {list(TEMPLATES)}, got {unknown}"
            )
        if phrases_per_caption < 1:
            raise ValueError(f"DigitPhrases: phrases_per_caption expected >= 1, got {phrases_per_caption}")
        self.split, self.length, self.seed = split, int(length), int(seed)
        self.phrases_per_caption, self.margin = int(phrases_per_caption), float(margin)
        self.heldout_templates = frozenset(heldout_templates)
        self.heldout_combinations = frozenset((t, int(d)) for t, d in heldout_combinations)
        if split == "heldout" and not (self.heldout_templates or self.heldout_combinations):
            raise ValueError("DigitPhrases: split 'heldout' needs held-out templates or combinations, got none")
        scene_split = "train" if split == "train" else "val"
        scene_seed = seed + (1_000_003 if split == "heldout" else 0)  # heldout and val scenes differ
        max_scenes = max_scenes if max_scenes is not None else 50 * max(1, self.length)
        self.scenes = DigitScenes(scene_split, max_scenes, seed=scene_seed, **scene_kwargs)
        self._items: list[tuple[int, list[dict]]] = []
        for s in range(max_scenes):
            if len(self._items) == self.length:
                break
            scene = self.scenes[s]
            admissible = [p for p in scene_phrases(scene["boxes"], scene["labels"], self.margin) if self._allowed(p)]
            if admissible:
                self._items.append((s, admissible))
        if len(self._items) < self.length:
            raise ValueError(
                f"DigitPhrases: found {len(self._items)} scenes with an admissible {split} phrase in {max_scenes} "
                f"scenes, expected {self.length}; hold out fewer combinations or raise max_scenes"
            )

    def _allowed(self, phrase: dict) -> bool:
        held = phrase["template"] in self.heldout_templates or (
            (phrase["template"], phrase["digit"]) in self.heldout_combinations
        )
        return held if self.split == "heldout" else not held

    def __len__(self) -> int:
        return self.length

    def admissible(self, index: int) -> tuple[int, list[dict]]:
        """``(scene_index, phrases)``: item ``index``'s scene in ``self.scenes`` and every phrase it admits in this
        split (``scene_phrases`` minus the held-out / training ones), before any is chosen."""
        if not -self.length <= index < self.length:
            raise IndexError(f"DigitPhrases: index {index} out of range for length {self.length}")
        return self._items[index % self.length]

    def vocabulary_texts(self) -> list[str]:
        """Every distinct admissible phrase of every item, sorted (what a tokenizer for this split is trained on)."""
        return sorted({p["text"] for _, admissible in self._items for p in admissible})

    def compose(self, index: int, permutation: Callable[[int], Sequence[int]], choice: Callable[[int], int]) -> dict:
        """Item ``index`` with ``phrases_per_caption`` phrases drawn by the given random functions: a template first,
        uniformly (the first ``phrases_per_caption`` of ``permutation(n_templates)`` over the sorted template names,
        so "the 7" does not dominate), then ``choice(n)`` among that template's phrases; captions joined by ". ".
        ``__getitem__`` draws with a numpy generator seeded by the item (a fixed caption); a training reader passes
        torch's RNG to draw anew at every read."""
        scene_index, admissible = self.admissible(index)
        by_template: dict[str, list[dict]] = {}
        for p in admissible:
            by_template.setdefault(p["template"], []).append(p)
        templates = sorted(by_template)
        chosen = []
        for t in list(permutation(len(templates)))[: self.phrases_per_caption]:
            options = by_template[templates[int(t)]]
            chosen.append(options[int(choice(len(options)))])
        caption, phrases = "", []
        for p in chosen:
            if caption:
                caption += ". "
            phrases.append({**p, "span": (len(caption), len(caption) + len(p["text"]))})
            caption += p["text"]
        return {**self.scenes[scene_index], "caption": caption, "phrases": phrases, "scene_index": scene_index}

    def __getitem__(self, index: int) -> dict:
        self.admissible(index)  # range check
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index % self.length, 7])
        return self.compose(index, rng.permutation, rng.integers)


def scene_phrases(boxes: np.ndarray, labels: np.ndarray, margin: float = 2.0) -> list[dict]:
    """Every template phrase that names a definite set of boxes in a scene (see the module table):
    ``[{"text", "template", "digit", "boxes"}]``. boxes: ``(N, 4)`` xyxy; labels: ``(N,)`` digits."""
    n = len(labels)
    out: list[dict] = []

    def add(template: str, digit: int, targets: list[int]) -> None:
        text = TEMPLATES[template].format(d=digit)
        out.append({"text": text, "template": template, "digit": digit, "boxes": targets})

    if n == 0:
        return out
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    counts = np.bincount(labels, minlength=10)
    for d in range(10):
        members = np.flatnonzero(labels == d).tolist()
        if counts[d] == 1:
            add("digit", d, members)
        elif counts[d] == 2:
            add("pair", d, members)
    if n >= 2:
        order = np.argsort(area)
        if area[order[-1]] >= 1.25 * area[order[-2]]:
            add("largest", -1, [int(order[-1])])
        if area[order[0]] <= 0.8 * area[order[1]]:
            add("smallest", -1, [int(order[0])])
        order = np.argsort(cx)
        if cx[order[1]] - cx[order[0]] > margin:
            add("leftmost", -1, [int(order[0])])
        if cx[order[-1]] - cx[order[-2]] > margin:
            add("rightmost", -1, [int(order[-1])])
    for anchor in range(n):
        d = int(labels[anchor])
        if counts[d] != 1:
            continue
        others = np.array([i for i in range(n) if i != anchor], dtype=np.int64)
        for template, coord, sign in (("left_of", cx, -1), ("right_of", cx, 1), ("above", cy, -1), ("below", cy, 1)):
            delta = sign * (coord[others] - coord[anchor])  # > 0: on the named side
            if others.size and not np.any(np.abs(delta) <= margin) and np.sum(delta > margin) == 1:
                add(template, d, [int(others[np.argmax(delta > margin)])])
    return out
