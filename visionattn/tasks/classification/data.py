"""Classification data as dict samples: ``{"image": (C, H, W) float tensor, normalised, "label": int}``.

The datasets themselves are :mod:`visionattn.data`'s (built-in digits / LFW, ImageFolder, CIFAR, CSV), which give
``(image, label)`` pairs; :class:`LabeledSamples` presents them as dicts and keeps ``.targets`` and ``.classes``.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from ...data import DataBundle, DataConfig
from ..base import TaskData

__all__ = ["LabeledSamples", "data_from_bundle", "CLASSIFICATION_DATASETS"]

CLASSIFICATION_DATASETS = ("digits", "lfw", "folder", "cifar10", "cifar100", "csv")


class LabeledSamples(Dataset):
    """``dataset[i] = (image, label)`` → ``{"image": image, "label": label}``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        image, label = self.dataset[index]
        return {"image": image, "label": label}

    @property
    def targets(self) -> list[int]:
        return list(self.dataset.targets)

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)


def data_from_bundle(bundle: DataBundle, cfg: DataConfig) -> TaskData:
    """A :class:`~visionattn.data.DataBundle` (from ``build_datasets``, or built by hand) as the task's data; the
    models take 3-channel images."""
    if bundle.in_chans != 3:
        raise ValueError(f"the models take 3-channel images, the data gives {bundle.in_chans} "
                         f"(set data.grayscale_to_rgb=true)")
    meta = {"classes": list(bundle.classes), "img_size": int(bundle.img_size), "in_chans": int(bundle.in_chans),
            "mean": list(cfg.mean), "std": list(cfg.std)}
    return TaskData(train=LabeledSamples(bundle.train), val=LabeledSamples(bundle.val), meta=meta,
                    skipped=list(bundle.skipped), description=cfg.name)
