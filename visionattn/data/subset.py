"""A seeded, stratified subset of a training set (``DataConfig.train_fraction``): the data-regime experiments train
on 10%, 30%, ... of the data with the validation set unchanged."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from .builtin import stratified_split
from .config import DataBundle, DataConfig

__all__ = ["TargetSubset", "subset_indices", "apply_train_fraction"]


class TargetSubset(Dataset):
    """``dataset`` restricted to ``indices`` (positions in it), keeping ``.targets`` and ``.classes`` (which
    ``torch.utils.data.Subset`` drops). Items are ``dataset[indices[i]]``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        targets = list(dataset.targets)
        self.targets = [int(targets[i]) for i in self.indices]
        self.classes = list(dataset.classes)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]


def subset_indices(targets: Sequence[int], fraction: float, seed: int) -> list[int]:
    """Sorted positions of a stratified subset: per class ``n - round(n * (1 - fraction))`` items (at least 1),
    drawn with ``numpy.random.default_rng(seed)`` (the per-class permutation of :func:`stratified_split`, so for one
    seed a smaller fraction's subset lies inside a larger one's); ``fraction`` 1 keeps everything."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train fraction: expected a number in (0, 1], got {fraction!r}")
    if fraction == 1.0:
        return list(range(len(targets)))
    keep, _ = stratified_split(targets, 1.0 - fraction, seed)
    return keep.tolist()


def apply_train_fraction(bundle: DataBundle, cfg: DataConfig) -> DataBundle:
    """``bundle`` with its training set cut to ``cfg.train_fraction`` (seeded by ``cfg.subset_seed``, else
    ``cfg.seed``) and its validation set to ``cfg.val_subset`` (seeded by ``cfg.seed``); the bundle itself when both
    are 1."""
    val_subset = getattr(cfg, "val_subset", 1.0)
    if cfg.train_fraction >= 1.0 and val_subset >= 1.0:
        return bundle
    train, val = bundle.train, bundle.val
    if cfg.train_fraction < 1.0:
        seed = cfg.seed if cfg.subset_seed is None else cfg.subset_seed
        train = TargetSubset(train, subset_indices(train.targets, cfg.train_fraction, seed))
    if val_subset < 1.0:
        val = TargetSubset(val, subset_indices(val.targets, val_subset, cfg.seed))
    return DataBundle(train, val, bundle.classes, bundle.img_size, bundle.skipped, bundle.in_chans)
