"""DINO's data: multi-crop training views of any image dataset, and labelled, unaugmented images for evaluation.

Sources (``data.name``): every classification dataset of :mod:`visionattn.data` (``fashion_mnist``, ``mnist``,
``digits``, ``lfw``, ``folder``, ``cifar10`` / ``cifar100``, ``csv``; their labels are used only by the k-NN and
the linear probe, never in training), and ``images``: a folder of unlabeled image files (no class folders;
:mod:`visionattn.data.unlabeled`), which trains the same way but has nothing to score the k-NN with.

Samples:

- train: ``{"global": (2, C, G, G), "local": (N, C, L, L)}`` (:class:`~visionattn.tasks.dino.crops.MultiCrop`)
- val and bank: ``{"image": (C, G, G), "label": int}`` (the evaluation transform: resize, normalise; label ``-1``
  for unlabeled images). ``bank`` is the training set seen that way: the k-NN's neighbours and the probe's
  training set (a stratified subset of ``task.eval_bank_size`` images when set).

``default_collate`` batches both kinds (every crop of a kind has one size).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch.utils.data import Dataset

from ...data import DataConfig, build_datasets, build_transform
from ...data.subset import TargetSubset, subset_indices
from ..base import TaskData
from .crops import MultiCrop
from .options import DinoOptions

__all__ = ["DinoData", "EvalSamples", "ViewSamples", "build_dino_data", "with_transform"]


@dataclass
class DinoData(TaskData):
    """:class:`~visionattn.tasks.TaskData` plus ``bank`` (labelled training images for the k-NN and the probe;
    None for unlabeled data)."""

    bank: Dataset | None = None


def with_transform(dataset: Dataset, transform) -> Dataset:
    """A shallow copy of ``dataset`` whose items go through ``transform`` (a dataset with a ``transform``
    attribute, or a :class:`~visionattn.data.TargetSubset` of one); the original is unchanged."""
    if hasattr(dataset, "transform"):
        out = copy.copy(dataset)
        out.transform = transform
        return out
    if isinstance(dataset, TargetSubset):
        out = copy.copy(dataset)
        out.dataset = with_transform(dataset.dataset, transform)
        return out
    raise TypeError(f"DINO data: cannot set the transform of a {type(dataset).__name__} (expected a dataset with a "
                    f"'transform' attribute or a TargetSubset of one)")


class ViewSamples(Dataset):
    """``dataset[i]`` = a view dict, or ``(view dict, label)`` → the view dict (labels never reach training)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        return item[0] if isinstance(item, tuple) else item


class EvalSamples(Dataset):
    """``dataset[i]`` = ``(image, label)`` or an image → ``{"image": image, "label": label or -1}``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        image, label = item if isinstance(item, tuple) else (item, -1)
        return {"image": image, "label": int(label)}


def _multicrop(cfg: DataConfig, o: DinoOptions, in_chans: int) -> MultiCrop:
    return MultiCrop(cfg.img_size, o.local_size, o.local_crops, o.global_scale, o.local_scale, o.jitter, o.blur,
                     o.solarize, o.hflip, cfg.mean, cfg.std, in_chans)


def _bank(train: Dataset, size: int | None, seed: int) -> Dataset:
    """The training set, or a stratified subset of about ``size`` of its images."""
    if size is None or size >= len(train):
        return train
    keep = subset_indices(list(train.targets), size / len(train), seed)
    return TargetSubset(train, keep)


def build_dino_data(cfg: DataConfig, o: DinoOptions) -> DinoData:
    """The datasets of the module docstring for ``cfg`` (the split and the bank subset seeded by ``cfg.seed``)."""
    if not cfg.grayscale_to_rgb:
        raise ValueError("the models take 3-channel images: expected data.grayscale_to_rgb=true, got false")
    if cfg.name == "images":
        from ...data.unlabeled import build_unlabeled

        images = build_unlabeled(cfg, build_transform(cfg, train=False, in_chans=3))
        train = ViewSamples(with_transform(images.train, _multicrop(cfg, o, 3)))
        meta = _meta(cfg, 3, None)
        return DinoData(train=train, val=EvalSamples(images.val), meta=meta, skipped=list(images.skipped),
                        description=f"{images.where} (unlabeled)", bank=None)
    bundle = build_datasets(cfg)
    eval_tf = build_transform(cfg, train=False, in_chans=bundle.in_chans)
    train = ViewSamples(with_transform(bundle.train, _multicrop(cfg, o, bundle.in_chans)))
    bank = EvalSamples(with_transform(_bank(bundle.train, o.eval_bank_size, cfg.seed), eval_tf))
    return DinoData(train=train, val=EvalSamples(bundle.val), meta=_meta(cfg, bundle.in_chans, bundle.classes),
                    skipped=list(bundle.skipped), description=cfg.name, bank=bank)


def _meta(cfg: DataConfig, in_chans: int, labels) -> dict:
    """YAML-safe facts the model and the report need. Label names go under ``label_names``, not ``classes``: a
    DINO model has no classes, and may be scored by k-NN on any labelled dataset."""
    return {"img_size": int(cfg.img_size), "in_chans": int(in_chans), "mean": list(cfg.mean), "std": list(cfg.std),
            "label_names": None if labels is None else list(labels)}
