"""The 100 labelled sample images of the ``foolbox`` 3.3.4 wheel (``foolbox/data/``): 20 each from ImageNet,
CIFAR-10, CIFAR-100, Fashion-MNIST and MNIST, for zero-shot and pretrained-model sanity checks.

Files are named ``<dataset>_<index>_<label>.<ext>`` (``imagenet_00_243.jpg``: a bull mastiff). Measured: ImageNet
JPEGs RGB, nineteen 512x512 and one 1024x683 (W x H); CIFAR PNGs RGB 32x32; (Fashion-)MNIST PNGs gray 28x28.
Class names: ImageNet's 1,000 from torchvision's weight metadata (no download), the others written out here
(CIFAR-100's fine labels in their standard alphabetical order). foolbox is MIT; the images belong to their
datasets (ImageNet: research use under its terms; CIFAR: Krizhevsky 2009; Fashion-MNIST: MIT; MNIST: CC BY-SA 3.0).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..fetch import Bundle, Package, fetch
from .base import LabeledImages
from .fashion_mnist import FASHION_MNIST_CLASSES

__all__ = ["FOOLBOX", "FOOLBOX_DATASETS", "CIFAR10_CLASSES", "CIFAR100_CLASSES", "load_foolbox_samples"]

FOOLBOX_DATASETS = ("imagenet", "cifar10", "cifar100", "fashionMNIST", "mnist")

FOOLBOX = Bundle(
    key="foolbox",
    package=Package("foolbox", "3.3.4"),
    root="foolbox/data",
    trees={"": "f4f3e2f6f03b1a79b38fa2996a6e9e29b4d6ec69432a9315aaadf072e7cde839"},  # 100 files
    licence="foolbox MIT; images from ImageNet, CIFAR-10/100, Fashion-MNIST, MNIST under their own terms",
)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()


def _classes(dataset: str) -> list[str]:
    if dataset == "imagenet":
        from torchvision.models import ResNet50_Weights  # the category list ships in torchvision's code

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return {
        "cifar10": CIFAR10_CLASSES,
        "cifar100": CIFAR100_CLASSES,
        "fashionMNIST": FASHION_MNIST_CLASSES,
        "mnist": [str(d) for d in range(10)],
    }[dataset]


def load_foolbox_samples(
    dataset: str = "imagenet",
    path: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool | None = None,
) -> LabeledImages:
    """The 20 samples of ``dataset`` (one of ``FOOLBOX_DATASETS``), in file-index order -> ``LabeledImages``:
    images a list of 20 uint8 arrays, ``(H, W, 3)`` RGB (ImageNet, CIFAR) or ``(28, 28)`` gray (MNIST,
    Fashion-MNIST), at their stored size; labels int64 ``(20,)``; classes the dataset's class names.
    ``path`` or ``$VISIONATTN_FOOLBOX_DIR``: the wheel or a folder holding the 100 files of ``foolbox/data``."""
    if dataset not in FOOLBOX_DATASETS:
        raise ValueError(f"load_foolbox_samples: dataset expected one of {list(FOOLBOX_DATASETS)}, got {dataset!r}")
    got = fetch(FOOLBOX, path, cache_dir=cache_dir, download=download)
    files = sorted(p for p in got.tree().iterdir() if p.name.startswith(f"{dataset}_"))
    images, labels = [], []
    for file in files:
        label = file.stem.rsplit("_", 1)[1]
        with Image.open(file) as im:
            images.append(np.asarray(im.convert("L" if dataset in ("mnist", "fashionMNIST") else "RGB")))
        labels.append(int(label))
    classes = _classes(dataset)
    if len(files) != 20 or max(labels) >= len(classes):
        raise ValueError(f"{got.root}: expected 20 {dataset} samples with labels < {len(classes)}, got {len(files)}")
    return LabeledImages(images, np.asarray(labels, dtype=np.int64), classes, f"foolbox 3.3.4 foolbox/data/{dataset}_*")
