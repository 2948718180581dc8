"""visionattn.data: built-in datasets, ImageFolder, CSV, CIFAR batches, transforms and bad-image handling.

Every edge-case file is written here, in tmp_path, from seeded random pixels (never all zero)."""

from __future__ import annotations

import os
import pickle
import random
import warnings

import numpy as np
import pytest
import torch
from image_files import BAD, CONVERTED, S, _rgb, _save_rgb, _w_tall, _w_text_as_png, _w_truncated_png
from PIL import Image

from visionattn.data import (
    DATASETS,
    DataBundle,
    DataConfig,
    SkippedImageWarning,
    build_datasets,
    build_transform,
    denormalize,
    load_image,
    stratified_split,
)
from visionattn.data.config import DATASET_NAMES

# ---------------------------------------------------------------------------------------------- folder


def _make_classes(root, counts: dict[str, int], seed: int = 0, ext: str = ".png"):
    for ci, (name, n) in enumerate(counts.items()):
        for i in range(n):
            _save_rgb(root / name / f"{name}_{i}{ext}", seed + 100 * ci + i)


def test_folder_edge_cases_converted_or_skipped(tmp_path):
    _make_classes(tmp_path, {"cat": 5, "dog": 5})
    converted = {kind: w(tmp_path / ("cat" if i % 2 else "dog")) for i, (kind, (w, _)) in enumerate(CONVERTED.items())}
    bad = {kind: w(tmp_path / ("dog" if i % 2 else "cat")) for i, (kind, (w, _)) in enumerate(BAD.items())}
    (tmp_path / "cat" / "readme.txt").write_text("not a sample")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored silently
    (tmp_path / ".ipynb_checkpoints").mkdir()  # hidden folder: not a class
    (tmp_path / "labels.txt").write_text("top-level files are ignored")

    with pytest.warns(SkippedImageWarning) as record:
        bundle = build_datasets(DataConfig(name="folder", path=str(tmp_path), img_size=S, val_fraction=0.25))

    assert bundle.classes == ["cat", "dog"]
    skipped = dict(bundle.skipped)
    assert set(skipped) == {str(p) for p in bad.values()} | {str(tmp_path / "cat" / "readme.txt")}
    assert "extension" in skipped[str(tmp_path / "cat" / "readme.txt")]
    messages = "\n".join(str(w.message) for w in record)
    for p in bad.values():
        assert str(p) in messages
    kept = {p for p, _ in bundle.train.samples + bundle.val.samples}
    assert not {p for p, _ in bundle.train.samples} & {p for p, _ in bundle.val.samples}
    assert {str(p) for p in converted.values()} <= kept
    assert len(kept) == 10 + len(CONVERTED)
    for ds in (bundle.train, bundle.val):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, S, S) and torch.isfinite(x).all() and y in (0, 1)


def test_folder_train_val_subdirs(tmp_path):
    _make_classes(tmp_path / "train", {"b": 3, "a": 4})
    _make_classes(tmp_path / "val", {"a": 2, "b": 1}, seed=50)
    (tmp_path / "test").mkdir()  # not a class
    bundle = build_datasets(DataConfig(name="folder", path=str(tmp_path), img_size=S, val_fraction=0.5))
    assert bundle.classes == ["a", "b"] and bundle.skipped == []
    assert len(bundle.train) == 7 and len(bundle.val) == 3, "given val/ is used, not a split"
    assert sorted(bundle.val.targets) == [0, 0, 1]
    assert all(os.sep + "val" + os.sep in p for p, _ in bundle.val.samples)

    _make_classes(tmp_path / "val", {"zebra": 1}, seed=60)
    with pytest.raises(ValueError, match="zebra"):
        build_datasets(DataConfig(name="folder", path=str(tmp_path), img_size=S))


def test_folder_train_without_val_is_split(tmp_path):
    _make_classes(tmp_path / "train", {"a": 5, "b": 5})
    bundle = build_datasets(DataConfig(name="folder", path=str(tmp_path), img_size=S, val_fraction=0.2))
    assert bundle.classes == ["a", "b"] and (len(bundle.train), len(bundle.val)) == (8, 2)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="expected a directory"):
        build_datasets(DataConfig(name="folder", path=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        build_datasets(DataConfig(name="folder", path=str(empty)))

    single = tmp_path / "single"
    _make_classes(single, {"cat": 3})
    with pytest.raises(ValueError, match=r"has 1 class \('cat'\); expected at least 2") as info:
        build_datasets(DataConfig(name="folder", path=str(single), img_size=S))
    assert str(single) in str(info.value)

    all_bad = tmp_path / "all_bad"
    for cls in ("a", "b"):
        (all_bad / cls).mkdir(parents=True)
        _w_text_as_png(all_bad / cls)
    with pytest.warns(SkippedImageWarning), pytest.raises(ValueError, match="no usable training images"):
        build_datasets(DataConfig(name="folder", path=str(all_bad), img_size=S))

    one_class_bad = tmp_path / "one_class_bad"
    _make_classes(one_class_bad, {"a": 3})
    (one_class_bad / "b").mkdir()
    _w_truncated_png(one_class_bad / "b")
    with pytest.warns(SkippedImageWarning), pytest.raises(ValueError, match=r"\['b'\] have no usable images"):
        build_datasets(DataConfig(name="folder", path=str(one_class_bad), img_size=S))

    fixed = tmp_path / "fixed"
    _make_classes(fixed, {"a": 2, "b": 2, "c": 2})
    with pytest.raises(ValueError, match=r"\['c'\] outside the class list \['a', 'b'\]"):
        build_datasets(DataConfig(name="folder", path=str(fixed), img_size=S, classes=["a", "b"]))


# ---------------------------------------------------------------------------------------------- csv


def test_csv_relative_paths_header_and_skips(tmp_path):
    _save_rgb(tmp_path / "imgs" / "x0.png", 1)
    _save_rgb(tmp_path / "imgs" / "x1.png", 2)
    _save_rgb(tmp_path / "imgs" / "x2.png", 3)
    _save_rgb(tmp_path / "y0.jpg", 4)
    other = _save_rgb(tmp_path / "elsewhere" / "y1.png", 5)
    _w_truncated_png(tmp_path / "imgs")
    lines = [
        "Path,Label",
        "imgs/x0.png,cat",
        "imgs/x1.png, cat ",
        "",
        "imgs/x2.png,cat",
        "y0.jpg,dog",
        f"{other},dog",
        "imgs/truncated.png,dog",
        "imgs/missing.png,dog",
    ]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # with a BOM, as Excel writes it
    with pytest.warns(SkippedImageWarning) as record:
        bundle = build_datasets(DataConfig(name="csv", path=str(csv_path), img_size=S, val_fraction=0.4))
    messages = " ".join(str(w.message) for w in record)
    assert "missing.png: file not found" in messages and "truncated.png" in messages
    assert bundle.classes == ["cat", "dog"]
    assert {os.path.basename(p) for p, _ in bundle.skipped} == {"truncated.png", "missing.png"}
    samples = sorted(bundle.train.samples + bundle.val.samples)
    assert samples == sorted(
        [(str(tmp_path / "imgs" / f"x{i}.png"), 0) for i in range(3)] + [(str(tmp_path / "y0.jpg"), 1), (str(other), 1)]
    )
    assert len(bundle.val) == 2 and sorted(bundle.val.targets) == [0, 1], "one per class held out"
    x, y = bundle.train[0]
    assert x.shape == (3, S, S)


def test_csv_errors(tmp_path):
    for i in range(4):
        _save_rgb(tmp_path / f"{i}.png", i)
    csv_path = tmp_path / "l.csv"

    def build(text, **kw):
        csv_path.write_text(text)
        return build_datasets(DataConfig(name="csv", path=str(csv_path), img_size=S, **kw))

    with pytest.raises(ValueError, match=r"line 3: expected a class label for '1.png', got ''"):
        build("path,label\n0.png,a\n1.png,\n")
    with pytest.raises(ValueError, match=r"line 2: label 'zebra' is not in the class list \['a', 'b'\]"):
        build("0.png,a\n1.png,zebra\n", classes=["a", "b"])
    with pytest.raises(ValueError, match="line 1: expected 2 columns"):
        build("0.png,a,extra\n")
    with pytest.raises(ValueError, match="has no rows"):
        build("path,label\n")
    with pytest.raises(ValueError, match=r"has 1 class \('a'\); expected at least 2") as info:
        build("0.png,a\n1.png,a\n2.png,a\n")
    assert str(csv_path) in str(info.value)
    with pytest.raises(ValueError, match=r"has 1 class \('b'\)"):
        build("0.png,b\n1.png,b\n", classes=["a", "b"])
    bundle = build("0.png,b\n1.png,a\n2.png,b\n3.png,a\n", classes=["b", "a"])
    assert bundle.classes == ["b", "a"], "a given class list fixes the label order"
    with pytest.raises(ValueError, match="expected a CSV file"):
        build_datasets(DataConfig(name="csv", path=str(tmp_path / "none.csv")))


# ---------------------------------------------------------------------------------------------- built-in data


@pytest.fixture(scope="module")
def digits():
    return build_datasets(DataConfig(name="digits", img_size=32, seed=0))


def test_digits(digits):
    assert isinstance(digits, DataBundle) and digits.skipped == [] and digits.in_chans == 3
    assert digits.classes == [str(i) for i in range(10)] and digits.img_size == 32
    assert len(digits.train) + len(digits.val) == 1797
    assert len(digits.val) == pytest.approx(0.2 * 1797, abs=10)
    assert set(digits.val.targets) == set(range(10)), "stratified: every class in val"
    tr, va = set(digits.train.indices), set(digits.val.indices)
    assert not tr & va and len(tr | va) == 1797
    x, y = digits.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and -1.0 <= x.min() < x.max() <= 1.0
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert isinstance(y, int)


def test_split_deterministic_by_seed(digits):
    targets = np.asarray(digits.train.targets + digits.val.targets)[
        np.argsort(digits.train.indices + digits.val.indices)
    ]
    tr0, va0 = stratified_split(targets, 0.2, seed=0)
    assert (va0 == np.asarray(digits.val.indices)).all() and (tr0 == np.asarray(digits.train.indices)).all()
    tr0b, va0b = stratified_split(targets, 0.2, seed=0)
    _, va1 = stratified_split(targets, 0.2, seed=1)
    assert (va0 == va0b).all() and (tr0 == tr0b).all()
    assert set(va0) != set(va1)
    assert not set(tr0) & set(va0) and len(tr0) + len(va0) == len(targets)
    # small classes: at least one in val from n >= 2, never the last one
    tr, va = stratified_split([0, 1, 1, 2, 2, 2], 0.1, seed=3)
    assert sorted(np.asarray([0, 1, 1, 2, 2, 2])[va]) == [1, 2] and 0 in tr
    tr, va = stratified_split([0, 0, 1, 1], 0.0, seed=0)
    assert len(va) == 0 and len(tr) == 4


def test_lfw():
    bundle = build_datasets(DataConfig(name="lfw", img_size=S, val_fraction=0.25, grayscale_to_rgb=False))
    assert bundle.classes == ["face", "non-face"] and bundle.in_chans == 1
    targets = bundle.train.targets + bundle.val.targets
    assert len(targets) == 200 and targets.count(0) == 100 and targets.count(1) == 100
    assert (bundle.val.targets.count(0), bundle.val.targets.count(1)) == (25, 25)
    faces = [i for i, t in zip(bundle.train.indices, bundle.train.targets, strict=True) if t == 0]
    assert max(faces) < 100, "the first 100 images are the faces"
    x, _ = bundle.val[0]
    assert x.shape == (1, S, S) and x.std() > 0
    assert denormalize(x, DataConfig()).shape == (3, S, S)


# ---------------------------------------------------------------------------------------------- CIFAR


def _cifar_batch(n: int, seed: int, label_key: str, num_classes: int, byte_keys: bool) -> dict:
    rng = np.random.default_rng(seed)
    batch = {
        "batch_label": "fake batch",
        "data": rng.integers(1, 256, (n, 3072), dtype=np.uint8),  # 1024 R, 1024 G, 1024 B per row
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        "filenames": [f"img_{i}.png" for i in range(n)],
    }
    batch[label_key][:num_classes] = list(range(num_classes))  # every class present
    if byte_keys:  # what Python 2 wrote: str keys read back as bytes
        batch = {k.encode(): v for k, v in batch.items()}
    return batch


def _dump(obj, path, protocol):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


@pytest.mark.parametrize("byte_keys", [False, True])
def test_cifar10_batches(tmp_path, byte_keys):
    root = tmp_path / "cifar-10-batches-py"  # path may be its parent, as after extracting the archive
    root.mkdir()
    proto = 4 if byte_keys else 2
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {b"label_names" if byte_keys else "label_names": [n.encode() if byte_keys else n for n in names]}
    _dump(meta, root / "batches.meta", proto)
    batches = [_cifar_batch(12, s, "labels", 10, byte_keys) for s in (1, 2)]
    _dump(batches[0], root / "data_batch_1", proto)
    _dump(batches[1], root / "data_batch_2", proto)
    _dump(_cifar_batch(10, 3, "labels", 10, byte_keys), root / "test_batch", proto)

    cfg = DataConfig(name="cifar10", path=str(tmp_path), mean=(0, 0, 0), std=(1, 1, 1))
    bundle = build_datasets(cfg)
    assert bundle.classes == names and (len(bundle.train), len(bundle.val)) == (24, 10)
    key = b"data" if byte_keys else "data"
    first = batches[0][key][0]
    x, y = bundle.train[0]
    assert y == batches[0][b"labels" if byte_keys else "labels"][0]
    expected = torch.from_numpy(first.reshape(3, 32, 32).astype(np.float32) / 255.0)  # planes R, G, B
    assert x.shape == (3, 32, 32) and torch.allclose(x, expected, atol=1e-6)

    with pytest.raises(ValueError, match="use name='cifar10'"):
        build_datasets(DataConfig(name="cifar100", path=str(root)))


def test_cifar100_and_bad_pickles(tmp_path):
    fine = [f"class_{i}" for i in range(100)]
    _dump({"fine_label_names": fine, "coarse_label_names": [f"super_{i}" for i in range(20)]}, tmp_path / "meta", 2)
    _dump(_cifar_batch(120, 1, "fine_labels", 100, False), tmp_path / "train", 2)
    _dump(_cifar_batch(100, 2, "fine_labels", 100, False), tmp_path / "test", 2)
    bundle = build_datasets(DataConfig(name="cifar100", path=str(tmp_path), img_size=S))
    assert bundle.classes == fine and (len(bundle.train), len(bundle.val)) == (120, 100)
    assert bundle.train[5][0].shape == (3, S, S)
    with pytest.raises(ValueError, match="use name='cifar100'"):
        build_datasets(DataConfig(name="cifar10", path=str(tmp_path)))

    bad = _cifar_batch(100, 3, "fine_labels", 100, False)
    bad["fine_labels"][7] = 100
    _dump(bad, tmp_path / "test", 2)
    with pytest.raises(ValueError, match="label 100 is outside the class list"):
        build_datasets(DataConfig(name="cifar100", path=str(tmp_path)))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    _dump({"data": Evil(), "fine_labels": []}, tmp_path / "test", 2)
    with pytest.raises(ValueError, match="not allowed"):
        build_datasets(DataConfig(name="cifar100", path=str(tmp_path)))


# ---------------------------------------------------------------------------------------------- transforms, config


def test_train_transform_augments_deterministically(tmp_path):
    cfg = DataConfig(img_size=S, randaugment="rand-m9-mstd0.5", random_resized_crop=True, hflip=True)
    tf = build_transform(cfg, train=True)
    img = Image.fromarray(_rgb(40, 30, 21))
    tall = load_image(_w_tall(tmp_path))

    def run(seed):
        torch.manual_seed(seed)
        random.seed(seed)  # timm RandAugment draws magnitudes from Python's random ...
        np.random.seed(seed)  # ... and picks its ops with numpy's global RNG
        return torch.stack([tf(img) for _ in range(4)] + [tf(tall)])

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (5, 3, S, S) and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1]), "augmentation varies between draws"
    ev = build_transform(cfg, train=False)
    assert torch.equal(ev(img), ev(img))
    pickle.dumps(tf)  # DataLoader workers need picklable transforms
    with pytest.raises(ValueError, match="randaugment"):
        DataConfig(randaugment="autoaug-m9")
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['mgnitude9'\]"):
        DataConfig(randaugment="rand-mgnitude9")
    with pytest.raises(ValueError, match="tnosuchset"):
        DataConfig(randaugment="rand-m9-tnosuchset")
    cfg.randaugment = "rand-m9.5"  # set after validation: timm's own error is still reported as a ValueError
    with pytest.raises(ValueError, match="could not parse 'rand-m9.5'"):
        build_transform(cfg, train=True)


def test_denormalize_round_trip():
    cfg = DataConfig(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), img_size=8)
    img = Image.fromarray(_rgb(8, 8, 22))
    x = build_transform(cfg, train=False)(img)
    back = denormalize(x, cfg)
    assert torch.allclose(back, torch.from_numpy(np.array(img)).permute(2, 0, 1) / 255.0, atol=1e-5)
    assert denormalize(x[None].repeat(2, 1, 1, 1), cfg).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="expected"):
        denormalize(torch.zeros(2, 8, 8), cfg)


def test_config_validation():
    assert set(DATASETS) <= set(DATASET_NAMES)  # tasks register their own names too
    with pytest.raises(ValueError, match="did you mean 'digits'"):
        DataConfig(name="digit")
    with pytest.raises(ValueError, match="needs a path"):
        DataConfig(name="folder")
    with pytest.raises(ValueError, match="img_size"):
        DataConfig(img_size=0)
    with pytest.raises(ValueError, match=r"val_fraction: expected a number in \[0, 1\), got 1.0"):
        DataConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match="mean: expected 3 values"):
        DataConfig(mean=[0.5])
    with pytest.raises(ValueError, match="classes"):
        DataConfig(classes=["a", "a"])
    with pytest.raises(ValueError, match=r"DataConfig.classes expected \['face', 'non-face'\]"):
        build_datasets(DataConfig(name="lfw", classes=["b", "a"]))
    cfg = DataConfig(mean=[0.1, 0.2, 0.3], crop_scale=[0.5, 1], randaugment="")  # as YAML gives them
    assert cfg.mean == (0.1, 0.2, 0.3) and cfg.crop_scale == (0.5, 1.0) and cfg.randaugment is None
    yaml = pytest.importorskip("yaml")
    cfg = DataConfig(name="csv", path="x.csv", classes=["a", "b"], randaugment="rand-m9-mstd0.5")
    assert DataConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown field 'img_szie'.*'img_size'"):
        DataConfig.from_dict({"img_szie": 32})


def test_many_skips_are_summarised(tmp_path):
    _make_classes(tmp_path, {"a": 2, "b": 2})
    for i in range(30):  # 34 files: indexed by the thread pool
        (tmp_path / "a" / f"bad{i:02d}.png").write_text("x")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        bundle = build_datasets(DataConfig(name="folder", path=str(tmp_path), img_size=S, val_fraction=0.5))
    assert [os.path.basename(p) for p, _ in bundle.skipped] == [f"bad{i:02d}.png" for i in range(30)]
    assert sorted(bundle.train.targets + bundle.val.targets) == [0, 0, 1, 1]
    msgs = [str(w.message) for w in record if issubclass(w.category, SkippedImageWarning)]
    assert len(msgs) == 21 and "10 more files (30 in all" in msgs[-1]


def test_deit_randaugment_string_survives_magnitude_10():
    """DeiT's 'rand-m9-mstd0.5-inc1' reaches magnitude 10, where timm's increasing posterize asks Pillow for 0 bits
    (refused by Pillow >= 13): ours clamps to 1 bit instead of crashing mid-training."""
    from timm.data.auto_augment import rand_augment_transform

    from visionattn.data.transforms import _randaugment

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8))
    ours = _randaugment(DataConfig(img_size=S, randaugment="rand-m10-mstd0.5-inc1"))
    posterize = [op for op in ours.ops if op.name.startswith("Posterize")]
    assert posterize and all(op.level_fn(10, op.hparams) == (1,) for op in posterize)
    raw = rand_augment_transform("rand-m10-mstd0.5-inc1", {})
    raw_posterize = [op for op in raw.ops if op.name.startswith("Posterize")]
    assert raw_posterize[0].level_fn(10, raw_posterize[0].hparams) == (0,)  # the case being guarded
    random.seed(0)
    for _ in range(300):
        out = ours(image)
        assert out.size == image.size
    pickle.loads(pickle.dumps(ours))  # loader workers receive it pickled
