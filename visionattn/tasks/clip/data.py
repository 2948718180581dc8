"""CLIP data as dict samples: captioned images for contrastive training and retrieval, labelled images for
zero-shot classification, and the collate function that batches both.

Samples:

* :class:`CaptionedImages` ``[i]`` → ``{"image": (3, H, W) float, normalised, "tokens": (k, L) int64 (each row a
  caption's ids with start and end tokens, zero-padded), "index": i}``; for training ``k = 1``, one caption drawn at
  random from the item's captions (seeded per epoch and item by the trainer's ``SeededItems``); for evaluation all of
  them.
* :class:`LabeledImages` ``[i]`` → ``{"image", "label": int, "index": i}``.

:func:`collate_clip` → ``{"image": (B, 3, H, W), "index": (B,), "tokens": list of B (k_i, L_i) tensors, "label": (B,)}``
(keys as present; ``padding_mask`` ``(B, H, W)`` only when images differ in size). Tokens stay a per-sample list so
that evaluation can cut a padded shard's tail sample by sample; :func:`stack_tokens` pads them into one ``(T, L)``
batch with each caption's owner.

Splits (:func:`split_items`): by ``group`` (the same drawing filed twice, or any source's item) with a stable hash,
``val_fraction`` of the groups to validation; items filed in a held-out category folder (and every other item of
their group) never reach training or validation: they form the zero-shot set, labelled by that category.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ...data.captions.base import CaptionSource
from ...tasks.batching import pad_images
from .tokenizer import ClipTokenizer, pad_token_ids

__all__ = ["CaptionedImages", "LabeledImages", "ZeroShotSet", "collate_clip", "stack_tokens", "split_items",
           "tokenize_captions", "Split", "cap_per_caption"]


class CaptionedImages(Dataset):
    """Items ``indices`` of ``source`` with their tokenized captions ``token_ids[j]`` (one id tuple per caption of
    item ``indices[j]``). ``train``: one random caption per sample; else all. ``zero_shot``: the zero-shot sets
    evaluated with this split (validation only)."""

    def __init__(self, source: CaptionSource, indices: Sequence[int], token_ids: Sequence[Sequence[tuple[int, ...]]],
                 transform: Callable, train: bool):
        if len(indices) != len(token_ids):
            raise ValueError(f"CaptionedImages: {len(indices)} items but {len(token_ids)} token lists")
        self.source, self.indices, self.token_ids = source, list(indices), [list(t) for t in token_ids]
        self.transform, self.train = transform, train
        self.zero_shot: dict[str, ZeroShotSet] = {}
        self.text_offsets = np.concatenate([[0], np.cumsum([len(t) for t in self.token_ids])]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_texts(self) -> int:
        return int(self.text_offsets[-1])

    def captions(self, i: int) -> tuple[str, ...]:
        return self.source.items[self.indices[i]].captions

    def image(self, i: int) -> Image.Image:
        return self.source.image(self.indices[i])

    def __getitem__(self, i: int) -> dict:
        ids = self.token_ids[i]
        if self.train:
            ids = [ids[int(torch.randint(len(ids), ()))]]  # the trainer seeds torch per (seed, epoch, item)
        return {"image": self.transform(self.image(i)), "tokens": pad_token_ids(ids), "index": i}


class LabeledImages(Dataset):
    """``images(i)`` → PIL image, ``labels`` int per item, ``transform``: PIL → normalised tensor."""

    def __init__(self, images: Callable[[int], Image.Image], labels: Sequence[int], transform: Callable):
        self.images, self.labels, self.transform = images, [int(t) for t in labels], transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.transform(self.images(i)), "label": self.labels[i], "index": i}


@dataclass
class ZeroShotSet:
    """A zero-shot classification set: class names (what the prompts say) and its labelled images."""

    name: str
    classes: list[str]
    dataset: LabeledImages
    description: str = ""


def collate_clip(samples: Sequence[dict]) -> dict:
    """Dict samples → a batch (see the module docstring)."""
    if not samples:
        raise ValueError("collate_clip: expected at least one sample, got none")
    keys = set(samples[0])
    other = [i for i, s in enumerate(samples) if set(s) != keys]
    if other:
        raise ValueError(f"collate_clip: every sample needs the keys {sorted(keys)}; samples {other[:5]} differ")
    images, mask = pad_images([s["image"] for s in samples])
    batch = {"image": images, "index": torch.as_tensor([int(s["index"]) for s in samples])}
    if bool(mask.any()):
        batch["padding_mask"] = mask
    if "tokens" in keys:
        batch["tokens"] = [s["tokens"] for s in samples]
    if "label" in keys:
        batch["label"] = torch.as_tensor([int(s["label"]) for s in samples])
    return batch


def stack_tokens(tokens: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-sample ``(k_i, L_i)`` ids → ``(T, L)`` zero-padded ids (``T = Σ k_i``, ``L = max L_i``) and ``(T,)``
    the sample each caption belongs to, on the ids' device."""
    if not tokens:
        raise ValueError("stack_tokens: expected at least one sample, got none")
    width = max(int(t.shape[1]) for t in tokens)
    ids = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in tokens])  # (T, L)
    owner = torch.repeat_interleave(torch.arange(len(tokens), device=ids.device),
                                    torch.as_tensor([t.shape[0] for t in tokens], device=ids.device))
    return ids, owner


def tokenize_captions(source: CaptionSource, indices: Sequence[int], tokenizer: ClipTokenizer,
                      truncated: list[tuple[str, str]]) -> list[list[tuple[int, ...]]]:
    """Token ids of every caption of the items ``indices``. A caption longer than the context length is cut (its
    last id the end token, as open_clip does) and recorded in ``truncated`` as ``(item, what was cut)``."""
    out = []
    for i in indices:
        item = source.items[i]
        ids = []
        for caption in item.captions:
            tokens, cut = tokenizer.encode(caption)
            if cut:
                full = len(tokenizer.bpe.encode(caption)) + 2
                truncated.append((item.name, f"caption of {full} tokens truncated to the context length "
                                             f"{tokenizer.context_length}"))
            ids.append(tokens)
        out.append(ids)
    return out


@dataclass
class Split:
    """Item indices per role, the held-out items' labels (indices into ``heldout_classes``) and what was left out."""

    train: list[int]
    val: list[int]
    heldout: list[int]
    heldout_labels: list[int]
    heldout_classes: list[str]
    skipped: list[tuple[str, str]]


def _unit_hash(seed: int, group: str) -> float:
    return int(hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()[:12], 16) / 16 ** 12


def _in_folder(folders: Sequence[str], folder: str) -> bool:
    return any(f == folder or f.startswith(folder + "/") for f in folders)


def split_items(source: CaptionSource, heldout: Sequence[tuple[str, str]], val_fraction: float, seed: int) -> Split:
    """Split ``source`` (see the module docstring). ``heldout``: ``(folder, class name)`` pairs, used when the items
    are filed in folders (openclipart); a folder that no item is filed in is a ``ValueError`` (a typo would silently
    shrink the zero-shot set)."""
    items = source.items
    has_folders = any(item.folders for item in items)
    heldout = list(heldout) if has_folders else []
    unused = [f for f, _ in heldout if not any(_in_folder(item.folders, f) for item in items)]
    if unused:
        raise ValueError(f"task.heldout_categories: no drawing is filed in {unused}; expected folders such as "
                         f"{sorted({f for item in items for f in item.folders})[:8]}")
    labels: dict[int, set[int]] = {}
    for i, item in enumerate(items):
        found = {k for k, (folder, _) in enumerate(heldout) if _in_folder(item.folders, folder)}
        if found:
            labels[i] = found
    held_groups = {items[i].group for i in labels}
    split = Split([], [], [], [], [name for _, name in heldout], [])
    for i, item in enumerate(items):
        if item.group in held_groups:
            found = labels.get(i, set())
            if len(found) == 1:
                split.heldout.append(i)
                split.heldout_labels.append(found.pop())
            elif found:
                names = [heldout[k][1] for k in sorted(found)]
                split.skipped.append((item.name, f"filed in several held-out categories {names}: no single label"))
            else:
                split.skipped.append((item.name, "a copy of a held-out drawing filed elsewhere: kept out of training"))
        elif _unit_hash(seed, item.group) < val_fraction:
            split.val.append(i)
        else:
            split.train.append(i)
    return split


def cap_per_caption(source: CaptionSource, indices: Sequence[int], limit: int, seed: int) -> tuple[list[int], int]:
    """At most ``limit`` of the items ``indices`` per identical caption set (a seeded, stable choice by item name),
    in their order; and how many were dropped. ``limit`` 0 keeps all."""
    if limit <= 0:
        return list(indices), 0
    by_caption: dict[tuple[str, ...], list[int]] = {}
    for i in indices:
        by_caption.setdefault(source.items[i].captions, []).append(i)
    keep = set()
    for members in by_caption.values():
        keep.update(sorted(members, key=lambda i: _unit_hash(seed, source.items[i].name))[:limit])
    kept = [i for i in indices if i in keep]
    return kept, len(indices) - len(kept)
