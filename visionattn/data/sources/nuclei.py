"""A fluorescence nuclei image with instance labels from the ``stardist`` 0.9.2 wheel (``stardist/data/images/``).

``img2d.tif``: uint16 ``(512, 512)``, values 0..235. ``mask2d.tif``: uint16 ``(512, 512)``, 0 = background and
125 nuclei with ids between 1 and 183 (not contiguous). Both uncompressed single-page TIFFs (measured). Origin: the
2018 Data Science Bowl (Caicedo et al., Nature Methods 2019; BBBC038, released under CC0), as shipped by StarDist
(BSD-3-Clause).

stardist publishes binary wheels only, so the fetch pins one (CPython 3.11, manylinux 2.28 x86-64) whatever the
local Python is: the data files are the same in every wheel of the release.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..fetch import Bundle, Package, fetch

__all__ = ["STARDIST", "load_nuclei"]

STARDIST = Bundle(
    key="stardist",
    package=Package(
        "stardist",
        "0.9.2",
        pip_args=("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp"),
    ),
    root="stardist/data/images",
    files={
        "img2d.tif": "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
        "mask2d.tif": "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
    },
    licence="images: 2018 Data Science Bowl (BBBC038, CC0); stardist BSD-3-Clause",
)


def load_nuclei(
    path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None, download: bool | None = None
) -> dict:
    """The nuclei image and its instance labels, as a dict:

    image:  uint16 ``(512, 512)`` fluorescence intensities (0..235 here)
    labels: int32 ``(512, 512)`` instance ids, 0 = background; 125 instances
    reader: ``"tifffile"`` when tifffile is installed, else ``"PIL"`` (both read these files identically)
    image_path, mask_path: the TIFF files

    ``path`` or ``$VISIONATTN_STARDIST_DIR``: the wheel or a folder with ``img2d.tif`` and ``mask2d.tif``."""
    got = fetch(STARDIST, path, cache_dir=cache_dir, download=download)
    image_path, mask_path = got.file("img2d.tif"), got.file("mask2d.tif")
    try:
        import tifffile
    except ImportError:
        tifffile, reader = None, "PIL"
    else:
        reader = "tifffile"
    image, labels = (_read_tiff(p, tifffile) for p in (image_path, mask_path))
    if image.shape != labels.shape:
        raise ValueError(f"{mask_path}: expected the shape of {image_path.name} {image.shape}, got {labels.shape}")
    return {
        "image": image,
        "labels": labels.astype(np.int32),
        "reader": reader,
        "image_path": image_path,
        "mask_path": mask_path,
    }


def _read_tiff(path, tifffile) -> np.ndarray:
    if tifffile is not None:
        return np.asarray(tifffile.imread(path))
    with Image.open(path) as im:
        return np.asarray(im)
