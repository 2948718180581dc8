"""Retrieval metrics: image→text and text→image Recall@1/5/10 over a split where an image may have several
captions, reduced over ranks.

Image→text: an image is found at rank ``r`` = how many captions score strictly higher than its best-scoring own
caption; text→image: a caption is found at rank ``r`` = how many images score strictly higher than its own image.
R@k = share found at rank < k. ``mean_recall`` is the mean of the six numbers (open_clip's ``rsum / 6``), the
task's primary metric. Chance: text→image R@k = k / N_images; image→text R@k = 1 - C(T - m, k) / C(T, k) averaged
over the images (m captions of T), ≈ k·m / T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...comm import DistInfo, all_reduce_sum
from ..base import Evaluation

__all__ = ["RetrievalMetric", "RetrievalResult", "KS", "recall_at", "chance_recall"]

KS = (1, 5, 10)


@dataclass
class RetrievalResult:
    """``i2t_rank`` ``(N,)`` / ``t2i_rank`` ``(T,)``: 0-based ranks; ``similarity`` ``(N, T)`` cosine similarities;
    ``text_owner`` ``(T,)`` the image of each caption."""

    i2t_rank: np.ndarray
    t2i_rank: np.ndarray
    similarity: np.ndarray
    text_owner: np.ndarray

    def metrics(self) -> dict[str, float]:
        out = {}
        for direction, ranks in (("i2t", self.i2t_rank), ("t2i", self.t2i_rank)):
            for k in KS:
                out[f"{direction}_r{k}"] = float((ranks < k).mean())
        out["mean_recall"] = float(np.mean(list(out.values())))
        return out

    def chance(self) -> dict[str, float]:
        return chance_recall(self.text_owner, self.similarity.shape[0])


def recall_at(similarity: Tensor, text_owner: Tensor) -> tuple[Tensor, Tensor]:
    """``similarity (N, T)``, ``text_owner (T,)`` → ``(i2t_rank (N,), t2i_rank (T,))`` 0-based (see the module
    docstring)."""
    n, t = similarity.shape
    own = similarity.gather(0, text_owner[None])[0]  # (T,) each caption's score with its own image
    t2i = (similarity > own[None]).sum(dim=0)  # (T,)
    mine = text_owner[None] == torch.arange(n, device=similarity.device)[:, None]  # (N, T)
    best_own = similarity.masked_fill(~mine, float("-inf")).amax(dim=1)  # (N,)
    i2t = (similarity > best_own[:, None]).sum(dim=1)  # (N,)
    return i2t, t2i


def chance_recall(text_owner: np.ndarray, num_images: int) -> dict[str, float]:
    """Expected R@k of a random ranking (see the module docstring)."""
    total = len(text_owner)
    per_image = np.bincount(text_owner, minlength=num_images)
    out = {}
    for k in KS:
        hit = [1.0 - math.comb(total - m, k) / math.comb(total, k) if total >= k else 1.0 for m in per_image]
        out[f"i2t_r{k}"] = float(np.mean(hit))
    for k in KS:
        out[f"t2i_r{k}"] = min(1.0, k / num_images)
    out["mean_recall"] = float(np.mean(list(out.values())))
    return out


class RetrievalMetric:
    """``update(outputs, batch)``: outputs ``{"image": (B, E), "text": [(k_i, E)] per sample}`` normalised, batch
    ``"index"`` ``(B,)`` the items' positions in the split; ``text_offsets`` ``(N + 1,)``: item ``i``'s captions are
    rows ``text_offsets[i]:text_offsets[i + 1]``; ``width``: the embedding width E. Every item must be seen exactly
    once over the ranks."""

    def __init__(self, text_offsets, width: int):
        self.offsets = torch.as_tensor(np.asarray(text_offsets), dtype=torch.long)
        self.width = int(width)
        self.num_images, self.num_texts = len(self.offsets) - 1, int(self.offsets[-1])
        self.images: Tensor | None = None
        self.texts: Tensor | None = None
        self.seen: Tensor | None = None

    def _allocate(self, device) -> None:
        self.images = torch.zeros(self.num_images, self.width, dtype=torch.float32, device=device)
        self.texts = torch.zeros(self.num_texts, self.width, dtype=torch.float32, device=device)
        self.seen = torch.zeros(self.num_images, dtype=torch.int64, device=device)

    def update(self, outputs: dict, batch: dict) -> None:
        image, texts, index = outputs["image"].float(), outputs["text"], batch["index"]
        if self.images is None:
            self._allocate(image.device)
        self.images[index] = image
        self.seen[index] += 1
        for i, t in zip(index.tolist(), texts, strict=True):
            lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
            if t.shape[0] != hi - lo:
                raise ValueError(f"retrieval: item {i} has {hi - lo} captions, the batch gave {t.shape[0]}")
            self.texts[lo:hi] = t.float()

    def reduce(self, info: DistInfo) -> None:
        if self.images is None:  # this rank saw no real item: it contributes zeros to the collective
            self._allocate(torch.device("cpu"))
        if info.world_size > 1:
            self.images, self.texts = all_reduce_sum(self.images, info), all_reduce_sum(self.texts, info)
            self.seen = all_reduce_sum(self.seen, info)

    def compute(self) -> Evaluation:
        if self.images is None:
            raise ValueError("retrieval: the loader gave no samples; expected a non-empty validation split")
        seen = self.seen.cpu()
        if not bool((seen == 1).all()):
            bad = (seen != 1).nonzero().flatten().tolist()[:5]
            raise ValueError(f"retrieval: every item must be evaluated once; items {bad} were seen "
                             f"{seen[bad].tolist()} times")
        owner = torch.repeat_interleave(torch.arange(self.num_images), self.offsets.diff()).to(self.images.device)
        similarity = self.images @ self.texts.t()  # (N, T)
        i2t, t2i = recall_at(similarity, owner)
        result = RetrievalResult(i2t.cpu().numpy(), t2i.cpu().numpy(), similarity.cpu().numpy(), owner.cpu().numpy())
        return Evaluation(result.metrics(), result)
