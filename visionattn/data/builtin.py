"""Real datasets that ship inside installed packages (nothing is downloaded), plus the in-memory dataset and the
seeded stratified split that the other sources reuse.

- ``digits``: scikit-learn ``load_digits()``: 1,797 8x8 grayscale digits, values 0..16, classes ``"0"``..``"9"``.
- ``lfw``: scikit-image ``data.lfw_subset()``: 200 25x25 grayscale crops; per its docstring the first 100 are faces,
  the other 100 non-faces: classes ``["face", "non-face"]``.

Both are upscaled once, at build time, to ``img_size`` (bicubic on the float image, clamped, stored as uint8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

from .config import DataBundle, DataConfig, make_bundle
from .transforms import build_transform

__all__ = ["ArrayDataset", "stratified_split", "build_digits", "build_lfw", "check_fixed_classes"]

LFW_CLASSES = ["face", "non-face"]


class ArrayDataset(Dataset):
    """In-memory uint8 images ``(N, H, W)`` (gray) or ``(N, H, W, 3)`` (RGB) with int labels; items go through
    ``transform`` as RGB PIL images and come out as ``(tensor, label)``. ``indices``: where each item sits in the
    source dataset (defaults to 0..N-1), so a split can be traced back."""

    def __init__(
        self,
        images: np.ndarray,
        targets: Sequence[int],
        classes: list[str],
        transform: Callable,
        indices: Sequence[int] | None = None,
    ):
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
            raise ValueError(
                f"ArrayDataset: expected uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}"
            )
        if len(images) != len(targets):
            raise ValueError(f"ArrayDataset: {len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self.transform = transform
        self.indices = [int(i) for i in indices] if indices is not None else list(range(len(images)))
        if len(self.indices) != len(images):
            raise ValueError(f"ArrayDataset: {len(images)} images but {len(self.indices)} indices")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[index]).convert("RGB")
        return self.transform(img), self.targets[index]


def stratified_split(targets: Sequence[int], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split -> (train indices, val indices), both sorted.

    Each class gives ``round(n * val_fraction)`` items to val, at least 1 when ``n >= 2`` and the fraction is > 0,
    and always keeps at least 1 for training. Same targets + fraction + seed -> same split, on any machine."""
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        n = len(members)
        n_val = int(round(n * val_fraction))
        if val_fraction > 0 and n >= 2:
            n_val = max(n_val, 1)
        n_val = min(n_val, n - 1)
        val.append(members[:n_val])
        train.append(members[n_val:])
    return _sorted_indices(train), _sorted_indices(val)


def _sorted_indices(parts: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def check_fixed_classes(where: str, cfg: DataConfig, classes: list[str]) -> None:
    """A dataset with a fixed class list accepts ``cfg.classes`` only if it is that same list."""
    if cfg.classes is not None and list(cfg.classes) != list(classes):
        raise ValueError(f"{where}: DataConfig.classes expected {classes}, got {cfg.classes}")


def _upscale_gray(images: np.ndarray, img_size: int) -> np.ndarray:
    """float images in [0, 1] ``(N, h, w)`` -> uint8 ``(N, img_size, img_size)`` (bicubic, antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]  # (N, 1, h, w)
    x = v2.functional.resize(x, [img_size, img_size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)[:, 0].numpy()  # (N, S, S)


def _gray_bundle(where: str, cfg: DataConfig, images01: np.ndarray, targets: np.ndarray, classes: list[str]):
    check_fixed_classes(where, cfg, classes)
    images = _upscale_gray(images01, cfg.img_size)
    in_chans = 3 if cfg.grayscale_to_rgb else 1
    train_idx, val_idx = stratified_split(targets, cfg.val_fraction, cfg.seed)
    train_tf, val_tf = build_transform(cfg, True, in_chans), build_transform(cfg, False, in_chans)
    train = ArrayDataset(images[train_idx], targets[train_idx], classes, train_tf, indices=train_idx)
    val = ArrayDataset(images[val_idx], targets[val_idx], classes, val_tf, indices=val_idx)
    return make_bundle(where, train, val, classes, cfg.img_size, [], in_chans)


def build_digits(cfg: DataConfig) -> DataBundle:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images01 = digits.images / 16.0  # values 0..16 -> [0, 1]
    classes = [str(c) for c in digits.target_names]
    return _gray_bundle("digits (scikit-learn)", cfg, images01, np.asarray(digits.target, dtype=np.int64), classes)


def build_lfw(cfg: DataConfig) -> DataBundle:
    from skimage import data

    images = np.asarray(data.lfw_subset())
    images01 = images / 255.0 if images.dtype == np.uint8 else images.astype(np.float64)  # docs say uint8; it is float
    n_faces = len(images) // 2  # "100 first images are faces and subsequent 100 are non-faces"
    targets = np.array([0] * n_faces + [1] * (len(images) - n_faces), dtype=np.int64)
    return _gray_bundle("lfw_subset (scikit-image)", cfg, images01, targets, LFW_CLASSES)
