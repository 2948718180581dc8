"""What data to train on (``DataConfig``) and what ``build_datasets`` hands back (``DataBundle``)."""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from torch.utils.data import Dataset

__all__ = ["DataConfig", "DataBundle", "DATASET_NAMES", "PATH_DATASETS", "SkippedImageWarning", "make_bundle",
           "register_dataset_name"]

# sections timm's rand_augment_transform understands after "rand": m<int>, n<int>, p<float>, mstd<float>, mmax<int>,
# inc<0|1>, t<weights|3a|3aw>; timm silently ignores a section without digits or an unknown t<name>, so typos are
# caught here
_RANDAUG_SECTION = re.compile(r"(m\d+|n\d+|p\d*\.?\d+|mstd\d*\.?\d+|mmax\d+|inc[01]|tweights|t3a|t3aw)")

DATASET_NAMES = ["digits", "lfw", "folder", "cifar10", "cifar100", "csv"]
"""Every ``data.name`` a config may use: the classification sources here, plus what tasks register."""
PATH_DATASETS = ["folder", "cifar10", "cifar100", "csv"]
"""The names that need ``data.path``."""


def register_dataset_name(name: str, needs_path: bool = False) -> None:
    """Make ``name`` a valid ``DataConfig.name`` (tasks call this for the datasets they build; registering a name
    twice with the same ``needs_path`` is harmless)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_dataset_name: expected a non-empty name, got {name!r}")
    if name in DATASET_NAMES and (name in PATH_DATASETS) != needs_path:
        raise ValueError(f"dataset {name!r} is registered already with needs_path={name in PATH_DATASETS}")
    if name not in DATASET_NAMES:
        DATASET_NAMES.append(name)
        if needs_path:
            PATH_DATASETS.append(name)


def _as_float_tuple(name: str, value, length: int | None = None) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"DataConfig.{name}: expected a sequence of numbers, got {value!r}") from err
    if length is not None and len(out) != length:
        raise ValueError(f"DataConfig.{name}: expected {length} values, got {len(out)} ({value!r})")
    return out


@dataclass
class DataConfig:
    """Which dataset, how big the images are, how to split and augment.

    ``name``: ``digits`` (scikit-learn, 1,797 8x8 digits, 10 classes) | ``lfw`` (scikit-image ``lfw_subset``, 200 25x25
    faces vs non-faces) | ``folder`` (class subfolders; ``train/`` + ``val/`` used when present) | ``cifar10`` /
    ``cifar100`` (python pickle batches in a local directory) | ``csv`` (rows of ``path,label``).
    ``path``: folder root / CIFAR directory / CSV file (required for those; unused by the built-ins).
    ``val_fraction``: share of each class held out for validation when the data has no split of its own (per class,
    at least one image when the class has two or more and the fraction is > 0). ``seed`` fixes that split.
    ``randaugment``: a timm RandAugment string such as ``"rand-m9-mstd0.5"``; ``None`` = off.
    ``random_resized_crop`` / ``crop_scale``: torchvision ``RandomResizedCrop`` with that area range (train only).
    ``grayscale_to_rgb``: built-in grayscale data (digits, lfw) as 3 identical channels; ``False`` gives 1 channel
    (``DataBundle.in_chans``), normalised with ``mean[0]``/``std[0]``. File and CIFAR data are always RGB.
    ``classes``: optional fixed class list; labels outside it are an error, and label ids follow its order.
    ``train_fraction``: train on a seeded, stratified subset of this share of the training split (per class
    ``n - round(n * (1 - fraction))`` images, at least 1; validation untouched); 1.0 = all of it.
    ``subset_seed``: the seed of that subset (``None`` = ``seed``), so runs can vary the subset but keep the split.
    ``val_subset``: validate on a stratified subset of this share of the validation split (per class as
    ``train_fraction``, seeded by ``seed``, so every run with the same ``seed`` scores the same images); 1.0 = all
    of it. For large validation sets (Fashion-MNIST's 10,000) on a slow machine.
    """

    name: str = "digits"
    path: str | None = None
    img_size: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    randaugment: str | None = None
    random_resized_crop: bool = False
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = False
    grayscale_to_rgb: bool = True
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    classes: list[str] | None = None
    train_fraction: float = 1.0
    subset_seed: int | None = None
    val_subset: float = 1.0

    def __post_init__(self):
        if self.name not in DATASET_NAMES:
            close = difflib.get_close_matches(str(self.name), DATASET_NAMES, n=3)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"DataConfig.name: expected one of {list(DATASET_NAMES)}, got {self.name!r}{hint}")
        if self.path is not None:
            self.path = os.fspath(self.path)
        if self.name in PATH_DATASETS and not self.path:
            raise ValueError(f"DataConfig.path: dataset {self.name!r} needs a path, got {self.path!r}")
        if isinstance(self.img_size, bool) or not isinstance(self.img_size, int) or self.img_size < 1:
            raise ValueError(f"DataConfig.img_size: expected a positive int, got {self.img_size!r}")
        if not (isinstance(self.val_fraction, (int, float)) and 0.0 <= self.val_fraction < 1.0):
            raise ValueError(f"DataConfig.val_fraction: expected a number in [0, 1), got {self.val_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"DataConfig.seed: expected an int, got {self.seed!r}")
        if isinstance(self.train_fraction, bool) or not (
            isinstance(self.train_fraction, (int, float)) and 0.0 < self.train_fraction <= 1.0
        ):
            raise ValueError(f"DataConfig.train_fraction: expected a number in (0, 1], got {self.train_fraction!r}")
        if isinstance(self.val_subset, bool) or not (
            isinstance(self.val_subset, (int, float)) and 0.0 < self.val_subset <= 1.0
        ):
            raise ValueError(f"DataConfig.val_subset: expected a number in (0, 1], got {self.val_subset!r}")
        if self.subset_seed is not None and (isinstance(self.subset_seed, bool) or not isinstance(self.subset_seed,
                                                                                                  int)):
            raise ValueError(f"DataConfig.subset_seed: expected an int or None, got {self.subset_seed!r}")
        if self.randaugment in ("", "none", "None"):
            self.randaugment = None
        if self.randaugment is not None:
            head, *sections = str(self.randaugment).split("-")
            wrong = [s for s in sections if not _RANDAUG_SECTION.fullmatch(s)]
            if head != "rand" or wrong:
                raise ValueError(
                    "DataConfig.randaugment: expected a timm RandAugment string 'rand-<section>-...' with sections "
                    f"m<int> n<int> p<float> mstd<float> mmax<int> inc<0|1> t<weights|3a|3aw>, e.g. 'rand-m9-mstd0.5'; "
                    f"got {self.randaugment!r}" + (f" (unknown section(s) {wrong})" if wrong else "")
                )
        self.crop_scale = _as_float_tuple("crop_scale", self.crop_scale, 2)
        lo, hi = self.crop_scale
        if not (0.0 < lo <= hi <= 1.0):
            raise ValueError(f"DataConfig.crop_scale: expected 0 < low <= high <= 1, got {self.crop_scale!r}")
        self.mean = _as_float_tuple("mean", self.mean, 3)
        self.std = _as_float_tuple("std", self.std, 3)
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"DataConfig.std: expected positive finite values, got {self.std!r}")
        if self.classes is not None:
            classes = [str(c) for c in self.classes]
            duplicates = sorted({c for c in classes if classes.count(c) > 1})
            if duplicates or "" in classes or len(classes) < 2:
                raise ValueError(
                    f"DataConfig.classes: expected at least 2 distinct non-empty names, got {self.classes!r}"
                )
            self.classes = classes

    def to_dict(self) -> dict:
        """Plain YAML/JSON-safe values (tuples become lists): ``yaml.safe_dump(cfg.to_dict())`` works."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> DataConfig:
        """Inverse of ``to_dict``; an unknown key is a ``ValueError`` that names the close ones."""
        known = [f.name for f in fields(cls)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=3)
                raise ValueError(f"DataConfig: unknown field {key!r}; expected one of {known} (close: {close})")
        return cls(**values)


@dataclass
class DataBundle:
    """Train/val datasets of ``(image, label)``: ``image`` a float tensor ``(in_chans, img_size, img_size)``,
    normalised with ``DataConfig.mean/std``; ``label`` an int index into ``classes``. ``val`` is never augmented.
    Both datasets have ``.classes`` and ``.targets`` (the label of every item, for samplers and confusion matrices).
    ``skipped``: ``(file, reason)`` for every file left out while indexing, for the run summary."""

    train: Dataset
    val: Dataset
    classes: list[str]
    img_size: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    in_chans: int = 3

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class SkippedImageWarning(UserWarning):
    """A file was left out of a dataset (it is also listed in ``DataBundle.skipped``)."""


MAX_SKIP_WARNINGS = 20
"""One warning per skipped file up to this many, then a single summary warning for the rest."""


@contextlib.contextmanager
def _skipped_as_one_line():
    """Scoped: a :class:`SkippedImageWarning` that Python prints is one line, ``warning: <message>`` (no
    ``file:line: Category:`` prefix, no echo of the source line that warned, newlines of the reason folded);
    every other warning keeps Python's format. Filters and ``pytest.warns`` see the warnings unchanged."""
    original = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        if issubclass(category, SkippedImageWarning):
            return "warning: " + " ".join(str(message).splitlines()) + "\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = original


def warn_skipped(where: str, skipped: Sequence[tuple[str, str]]) -> None:
    """One :class:`SkippedImageWarning` per skipped file (up to ``MAX_SKIP_WARNINGS``, then one for the rest),
    printed as one line each."""
    with _skipped_as_one_line():
        for path, reason in skipped[:MAX_SKIP_WARNINGS]:
            warnings.warn(f"{where}: skipping {path}: {reason}", SkippedImageWarning, stacklevel=3)
        if len(skipped) > MAX_SKIP_WARNINGS:
            warnings.warn(
                f"{where}: skipped {len(skipped) - MAX_SKIP_WARNINGS} more files ({len(skipped)} in all; "
                "see DataBundle.skipped)",
                SkippedImageWarning,
                stacklevel=3,
            )


def _class_names(classes: Sequence[str], labels) -> str:
    return ", ".join(repr(classes[i]) for i in sorted(set(labels)))


def make_bundle(
    where: str,
    train: Dataset,
    val: Dataset,
    classes: list[str],
    img_size: int,
    skipped: list[tuple[str, str]],
    in_chans: int = 3,
) -> DataBundle:
    """Warn about skipped files, then refuse data that cannot train a classifier: no training images, or fewer
    than 2 classes with training images. ``where`` names the data in messages, e.g. ``"folder '/data/pets'"``."""
    warn_skipped(where, skipped)
    targets = list(train.targets)
    if not targets:
        example = f"; e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise ValueError(
            f"{where} has no usable training images ({len(skipped)} files skipped{example}); "
            "expected images of at least 2 classes"
        )
    present = set(targets)
    if len(present) < 2:
        noun = "class" if len(present) == 1 else "classes"
        raise ValueError(f"{where} has {len(present)} {noun} ({_class_names(classes, present)}); expected at least 2")
    return DataBundle(train, val, list(classes), img_size, list(skipped), in_chans)
