"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017; Zalando SE, MIT licence) from Debian's ``dataset-fashion-mnist``.

The package (``0.0~git20200523.55506a9-1``, Debian bookworm) ships the four IDX files gzipped under
``/usr/share/datasets/fashion-mnist/``; they are fetched with ``apt-get download`` (no root) and unpacked into the
cache. 60,000 training and 10,000 test images, uint8 ``(28, 28)``, 10 classes, 6,000 / 1,000 per class (measured).

The checksums are of the *decompressed* IDX bytes (Debian recompressed the upstream archives), so the upstream
``.gz`` files, or the raw IDX files, can be given by hand: ``$VISIONATTN_FASHION_MNIST_DIR`` or ``path=`` naming a
folder with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
``t10k-labels-idx1-ubyte[.gz]``, or the ``.deb`` itself.
"""

from __future__ import annotations

import os

import numpy as np

from ..fetch import Bundle, Package, fetch
from .base import LabeledImages
from .idx import read_idx

__all__ = ["FASHION_MNIST", "FASHION_MNIST_CLASSES", "load_fashion_mnist"]

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

FASHION_MNIST = Bundle(
    key="fashion-mnist",
    package=Package("dataset-fashion-mnist", "0.0~git20200523.55506a9-1", registry="debian"),
    root="usr/share/datasets/fashion-mnist",
    files={
        "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    licence="MIT (Zalando SE)",
)

_PREFIX = {"train": "train", "test": "t10k"}


def load_fashion_mnist(
    split: str = "train",
    path: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool | None = None,
) -> LabeledImages:
    """``split="train"`` (60,000) or ``"test"`` (10,000) -> ``LabeledImages``: images uint8 ``(N, 28, 28)``
    (background 0, garments bright, as in the original), labels int64 ``(N,)`` in
    0..9, classes ``FASHION_MNIST_CLASSES``."""
    if split not in _PREFIX:
        raise ValueError(f"load_fashion_mnist: split expected one of {sorted(_PREFIX)}, got {split!r}")
    got = fetch(FASHION_MNIST, path, cache_dir=cache_dir, download=download)
    images_name, labels_name = f"{_PREFIX[split]}-images-idx3-ubyte.gz", f"{_PREFIX[split]}-labels-idx1-ubyte.gz"
    images = read_idx(got.read_bytes(images_name), where=str(got.file(images_name)))
    labels = read_idx(got.read_bytes(labels_name), where=str(got.file(labels_name)))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split}: expected images (N, 28, 28) and labels (N,), got {images.shape} and {labels.shape}"
        )
    return LabeledImages(
        images=images,
        labels=labels.astype(np.int64),
        classes=list(FASHION_MNIST_CLASSES),
        source=f"Fashion-MNIST {split}, {FASHION_MNIST.package.describe()}",
    )
