"""A folder of unlabeled images (``data.name=images``, ``data.path=DIR``): every image file under ``DIR``, at any
depth, no class folders needed (self-supervised learning: the DINO task).

Indexing follows :mod:`visionattn.data.folder`: hidden files and folders are ignored, files are sorted, every
candidate is decoded once (a file without an image extension or that fails to decode is skipped, warned about and
listed in ``skipped``). The split is a seeded random one: ``round(n * val_fraction)`` images to val (at least one
when there are two or more images and the fraction is > 0, and at least one always left for training).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .config import DataConfig, warn_skipped
from .folder import _files_under, _keep_usable
from .images import load_image

__all__ = ["ImageFiles", "UnlabeledImages", "build_unlabeled", "random_split"]


class ImageFiles(Dataset):
    """Checked image files; ``dataset[i]`` is ``transform(RGB PIL image)``. ``paths``: the files, in order."""

    def __init__(self, paths: Sequence[str], transform: Callable):
        self.paths = [str(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_image(self.paths[index]))


@dataclass
class UnlabeledImages:
    """What :func:`build_unlabeled` returns: ``train`` / ``val`` :class:`ImageFiles` (their ``transform`` is the
    caller's to set; both start with ``transform``), ``skipped`` ``(file, reason)`` pairs and ``where`` (for
    messages)."""

    train: ImageFiles
    val: ImageFiles
    where: str
    skipped: list[tuple[str, str]] = field(default_factory=list)


def random_split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` → sorted (train, val) positions (see the module docstring for the counts)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"random_split: val_fraction expected in [0, 1), got {val_fraction!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    n_val = min(n_val, max(n - 1, 0))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def build_unlabeled(cfg: DataConfig, transform: Callable) -> UnlabeledImages:
    """Index ``cfg.path`` (see the module docstring); a ``ValueError`` naming the folder when it is not a directory
    or holds no usable image."""
    if cfg.path is None:
        raise ValueError("data.name=images needs data.path: a folder of image files")
    root = Path(cfg.path).expanduser()
    where = f"image folder {str(root)!r}"
    if not root.is_dir():
        raise ValueError(f"{where}: expected a directory, got {'a file' if root.exists() else 'nothing'}")
    skipped: list[tuple[str, str]] = []
    kept = _keep_usable([(p, -1) for p in _files_under(root)], cfg.img_size, skipped)
    warn_skipped(where, skipped)
    if not kept:
        example = f"; e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise ValueError(f"{where} has no usable images ({len(skipped)} files skipped{example}); expected at least "
                         f"one image file (any depth)")
    paths = [p for p, _ in kept]
    train_idx, val_idx = random_split(len(paths), cfg.val_fraction, cfg.seed)
    return UnlabeledImages(ImageFiles([paths[i] for i in train_idx], transform),
                           ImageFiles([paths[i] for i in val_idx], transform), where, skipped)
