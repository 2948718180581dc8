"""Datasets and transforms for classification: ``build_datasets(DataConfig(...)) -> DataBundle``.

Sources: built-in real data shipped by installed packages (``digits``, ``lfw``), an ImageFolder directory
(``folder``), CIFAR-10/100 python batches (``cifar10``, ``cifar100``) and a CSV of ``path,label`` (``csv``).
Nothing is downloaded. Files are checked once while indexing; bad ones are skipped with a ``SkippedImageWarning``
and listed in ``DataBundle.skipped``; data that cannot train a classifier (empty, one class, unknown label) is a
``ValueError`` before any training starts.

    >>> bundle = build_datasets(DataConfig(name="digits", img_size=32))
    >>> image, label = bundle.train[0]   # (3, 32, 32) float tensor, normalised; int
"""

from __future__ import annotations

from collections.abc import Callable

from .builtin import ArrayDataset, build_digits, build_lfw, stratified_split
from .cifar import build_cifar10, build_cifar100
from .config import DataBundle, DataConfig, SkippedImageWarning, register_dataset_name
from .folder import FileDataset, build_csv, build_folder
from .images import BadImage, load_image
from .subset import TargetSubset, apply_train_fraction
from .transforms import build_transform, denormalize

__all__ = [
    "DataConfig",
    "DataBundle",
    "build_datasets",
    "load_image",
    "denormalize",
    "build_transform",
    "BadImage",
    "SkippedImageWarning",
    "ArrayDataset",
    "FileDataset",
    "stratified_split",
    "TargetSubset",
    "DATASETS",
]

DATASETS: dict[str, Callable[[DataConfig], DataBundle]] = {
    "digits": build_digits,
    "lfw": build_lfw,
    "folder": build_folder,
    "cifar10": build_cifar10,
    "cifar100": build_cifar100,
    "csv": build_csv,
}


# the video task's data (visionattn.data.video, assembled by visionattn.tasks.video)
for _name in ("moving_digits", "video_folder", "frame_folder", "video_csv"):
    register_dataset_name(_name, needs_path=_name != "moving_digits")


def build_datasets(cfg: DataConfig) -> DataBundle:
    """Index and check the data named by ``cfg``; train/val datasets of ``(image tensor, label)`` (see DataBundle);
    the training set cut to ``cfg.train_fraction`` when that is below 1."""
    if not isinstance(cfg, DataConfig):
        raise TypeError(f"build_datasets: expected a DataConfig, got {type(cfg).__name__}")
    if cfg.name not in DATASETS:
        raise ValueError(f"dataset {cfg.name!r} gives no (image, class label) pairs for classification; the "
                         f"classification datasets are {', '.join(DATASETS)}")
    return apply_train_fraction(DATASETS[cfg.name](cfg), cfg)
