"""CIFAR-10 / CIFAR-100 from the "python version" pickle batches in a local directory (nothing is downloaded).

CIFAR-10 (``cifar-10-batches-py``): ``data_batch_1`` .. ``data_batch_5`` (train), ``test_batch`` (val),
``batches.meta`` (``label_names``); each batch a dict with ``data`` (uint8 ``(N, 3072)``: 1024 red, 1024 green,
1024 blue values, row-major 32x32) and ``labels`` (N ints).
CIFAR-100 (``cifar-100-python``): ``train``, ``test``, ``meta`` (``fine_label_names``); labels are ``fine_labels``.

``DataConfig.path`` may be that directory or its parent (where the archive was extracted). The official test set is
the validation set; ``val_fraction`` is not used. Dict keys may be ``str`` or ``bytes`` (Python 2 pickles).
The pickles are read with an unpickler that only admits numpy arrays, so a foreign file cannot run code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from .builtin import ArrayDataset, check_fixed_classes
from .config import DataBundle, DataConfig, make_bundle
from .transforms import build_transform

__all__ = ["build_cifar10", "build_cifar100", "load_cifar_batch"]

_EXTRACTED_DIR = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core."):  # pickles from numpy < 2 name the same functions under numpy.core
            module = "numpy._core." + module[len("numpy.core.") :]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def load_cifar_batch(path: Path) -> dict:
    """Unpickle one batch/meta file -> dict with ``str`` keys; ``ValueError`` naming the file if it is not one."""
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except FileNotFoundError as err:
        raise ValueError(f"CIFAR file {str(path)!r} is missing") from err
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a CIFAR batch"
        raise ValueError(f"CIFAR file {str(path)!r} is not a python-format CIFAR pickle: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR file {str(path)!r}: expected a dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _names(meta: dict, key: str, path: Path) -> list[str]:
    if key not in meta:
        raise ValueError(f"CIFAR meta file {str(path)!r}: expected key {key!r}, got keys {sorted(meta)}")
    return [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in meta[key]]


def _images_and_labels(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = load_cifar_batch(path)
    for key in ("data", label_key):
        if key not in batch:
            raise ValueError(f"CIFAR batch {str(path)!r}: expected key {key!r}, got keys {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"CIFAR batch {str(path)!r}: expected uint8 data of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    if len(labels) != len(data):
        raise ValueError(f"CIFAR batch {str(path)!r}: {len(data)} images but {len(labels)} labels")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise ValueError(
            f"CIFAR batch {str(path)!r}: label {int(bad[0])} is outside the class list (expected 0..{num_classes - 1})"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # (N, 32, 32, 3) HWC


def _resolve_dir(cfg: DataConfig) -> Path:
    root = Path(cfg.path).expanduser()
    if (root / _EXTRACTED_DIR[cfg.name]).is_dir():
        root = root / _EXTRACTED_DIR[cfg.name]
    if not root.is_dir():
        raise ValueError(f"{cfg.name} path {str(root)!r}: expected a directory of CIFAR python batches")
    return root


def _build(cfg: DataConfig, root: Path, train_files: list[Path], test_file: Path, classes: list[str], key: str):
    where = f"{cfg.name} directory {str(root)!r}"
    check_fixed_classes(where, cfg, classes)
    parts = [_images_and_labels(p, key, len(classes)) for p in train_files]
    train_x = np.concatenate([x for x, _ in parts])
    train_y = np.concatenate([y for _, y in parts])
    val_x, val_y = _images_and_labels(test_file, key, len(classes))
    train = ArrayDataset(np.ascontiguousarray(train_x), train_y, classes, build_transform(cfg, train=True))
    val = ArrayDataset(np.ascontiguousarray(val_x), val_y, classes, build_transform(cfg, train=False))
    return make_bundle(where, train, val, classes, cfg.img_size, [])


def build_cifar10(cfg: DataConfig) -> DataBundle:
    root = _resolve_dir(cfg)
    batches = sorted(root.glob("data_batch_*"), key=lambda p: [int(s) for s in re.findall(r"\d+", p.name)])
    if not batches:
        hint = " (it looks like CIFAR-100: use name='cifar100')" if (root / "meta").exists() else ""
        raise ValueError(f"cifar10 directory {str(root)!r}: expected data_batch_1..5, found none{hint}")
    classes = _names(load_cifar_batch(root / "batches.meta"), "label_names", root / "batches.meta")
    return _build(cfg, root, batches, root / "test_batch", classes, "labels")


def build_cifar100(cfg: DataConfig) -> DataBundle:
    root = _resolve_dir(cfg)
    if not (root / "train").is_file():
        hint = " (it looks like CIFAR-10: use name='cifar10')" if (root / "batches.meta").exists() else ""
        raise ValueError(f"cifar100 directory {str(root)!r}: expected files train, test, meta, found no train{hint}")
    classes = _names(load_cifar_batch(root / "meta"), "fine_label_names", root / "meta")
    return _build(cfg, root, [root / "train"], root / "test", classes, "fine_labels")
