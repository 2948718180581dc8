"""DINO's data: the multi-crop views (shapes, sizes, seeded), dict samples from any labelled dataset (labels only in
evaluation), folders of unlabeled images (bad files skipped and counted), and the Fashion-MNIST / MNIST built-ins
(on small fakes of their package loaders in the default suite; the real fetched files in the slow tests), which
classification trains on too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from visionattn.data import DATASETS, DataConfig, build_datasets
from visionattn.data import sources as sources_module
from visionattn.data.config import DATASET_NAMES, PATH_DATASETS, SkippedImageWarning
from visionattn.data.sources.base import LabeledImages
from visionattn.data.unlabeled import build_unlabeled, random_split
from visionattn.tasks.dino import DinoOptions
from visionattn.tasks.dino.crops import MultiCrop
from visionattn.tasks.dino.data import build_dino_data, with_transform


def _pil(seed=0, size=(30, 24)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def test_multicrop_shapes_ranges_and_seeding():
    crop = MultiCrop(28, 12, 5, mean=(0.5,) * 3, std=(0.5,) * 3)
    torch.manual_seed(0)
    out = crop(_pil())
    assert set(out) == {"global", "local"}
    assert out["global"].shape == (2, 3, 28, 28) and out["local"].shape == (5, 3, 12, 12)
    assert out["global"].dtype == torch.float32 and -1.0 <= float(out["global"].min()) <= float(out["global"].max())
    assert float(out["global"].max()) <= 1.0 and not torch.equal(out["global"][0], out["global"][1])
    torch.manual_seed(0)
    again = crop(_pil())
    assert all(torch.equal(out[k], again[k]) for k in out)  # torch's RNG drives every random choice
    none = MultiCrop(16, 8, 0, blur=False, solarize=False, hflip=False, jitter=0)(_pil())
    assert none["local"].shape == (0, 3, 8, 8) and none["global"].shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="in_chans expected 1 or 3, got 2"):
        MultiCrop(16, 8, 1, in_chans=2)


def test_dino_samples_from_a_labelled_dataset():
    cfg = DataConfig(name="digits", img_size=16, val_fraction=0.2)
    o = DinoOptions(local_size=8, local_crops=3, eval_bank_size=200)
    data = build_dino_data(cfg, o)
    item = data.train[0]
    assert set(item) == {"global", "local"}  # no label reaches training
    assert item["global"].shape == (2, 3, 16, 16) and item["local"].shape == (3, 3, 8, 8)
    val = data.val[0]
    assert set(val) == {"image", "label"} and val["image"].shape == (3, 16, 16) and 0 <= val["label"] < 10
    assert abs(len(data.bank) - 200) <= 10  # stratified subset: per-class rounding
    assert sorted(set(data.bank.dataset.targets)) == list(range(10)) and data.bank[5]["image"].shape == (3, 16, 16)
    full = build_datasets(cfg)
    assert len(data.train) == len(full.train) and len(data.val) == len(full.val)
    assert torch.equal(data.val[3]["image"], full.val[3][0])  # the same evaluation transform as classification
    assert data.meta["label_names"] == [str(d) for d in range(10)] and "classes" not in data.meta
    batch = data.collate([data.train[i] for i in range(4)])
    assert batch["global"].shape == (4, 2, 3, 16, 16) and batch["local"].shape == (4, 3, 3, 8, 8)


def test_with_transform_leaves_the_original_alone():
    bundle = build_datasets(DataConfig(name="digits", img_size=16, train_fraction=0.1))
    changed = with_transform(bundle.train, lambda img: "changed")
    assert changed[0][0] == "changed" and isinstance(bundle.train[0][0], torch.Tensor)
    with pytest.raises(TypeError, match="cannot set the transform of a list"):
        with_transform([1, 2], None)


def test_unlabeled_folder(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for i in range(7):
        _pil(i).save(tmp_path / ("a/deep" if i % 2 else "a") / f"img{i}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"ignored")
    cfg = DataConfig(name="images", path=str(tmp_path), img_size=16, val_fraction=0.3)
    with pytest.warns(SkippedImageWarning) as caught:
        data = build_dino_data(cfg, DinoOptions(local_size=8, local_crops=2))
    assert len(caught) == 2 and len(data.skipped) == 2
    assert {p.rsplit("/", 1)[-1] for p, _ in data.skipped} == {"broken.png", "notes.txt"}
    assert len(data.train) == 5 and len(data.val) == 2 and data.bank is None
    assert data.train[0]["global"].shape == (2, 3, 16, 16)
    assert data.val[1]["label"] == -1 and data.val[1]["image"].shape == (3, 16, 16)
    assert data.meta["label_names"] is None
    with pytest.raises(ValueError, match=r"image folder .* has no usable images \(1 files skipped; e.g. "):
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / "x.png").write_bytes(b"nope")
        with pytest.warns(SkippedImageWarning):
            build_unlabeled(DataConfig(name="images", path=str(empty)), transform=None)
    with pytest.raises(ValueError, match="expected a directory, got nothing"):
        build_unlabeled(DataConfig(name="images", path=str(tmp_path / "missing")), transform=None)
    assert "images" in DATASET_NAMES and "images" in PATH_DATASETS and "images" not in DATASETS
    with pytest.raises(ValueError, match="dataset 'images' gives no .* pairs for classification"):
        build_datasets(cfg)


def test_random_split_counts_and_seed():
    train, val = random_split(10, 0.25, seed=3)
    assert len(val) == 2 and sorted(train + val) == list(range(10))
    assert (train, val) == random_split(10, 0.25, seed=3) and val != random_split(10, 0.25, seed=4)[1]
    assert random_split(2, 0.01, 0)[1] and random_split(1, 0.5, 0) == ([0], [])


def _fake(n, seed, classes):
    rng = np.random.default_rng(seed)
    return LabeledImages(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % len(classes),
                         list(classes), "fake")


@pytest.fixture
def fake_sources(monkeypatch):
    from visionattn.data.sources import FASHION_MNIST_CLASSES

    def fashion(split="train", path=None, **kw):
        return _fake(60 if split == "train" else 20, 0 if split == "train" else 1, FASHION_MNIST_CLASSES)

    monkeypatch.setattr(sources_module, "load_fashion_mnist", fashion)
    monkeypatch.setattr(sources_module, "load_mnist5k", lambda *a, **k: _fake(50, 2, [str(d) for d in range(10)]))


def test_fashion_mnist_and_mnist_builtins_on_fakes(fake_sources):
    fashion = build_datasets(DataConfig(name="fashion_mnist", img_size=28))
    assert len(fashion.train) == 60 and len(fashion.val) == 20  # its own test split, not val_fraction
    assert fashion.classes[0] == "T-shirt/top" and fashion.train[0][0].shape == (3, 28, 28)
    big = build_datasets(DataConfig(name="fashion_mnist", img_size=32, train_fraction=0.5))
    assert len(big.train) == 30 and big.val[0][0].shape == (3, 32, 32)
    mnist = build_datasets(DataConfig(name="mnist", img_size=28, val_fraction=0.2))
    assert len(mnist.train) == 40 and len(mnist.val) == 10 and mnist.classes == [str(d) for d in range(10)]
    assert sorted(set(mnist.train.indices) | set(mnist.val.indices)) == list(range(50))
    img = torch.from_numpy(sources_module.load_mnist5k().images[mnist.val.indices[0]]).float() / 255
    torch.testing.assert_close(mnist.val[0][0][0], (img - 0.5) / 0.5)  # no resize at 28: the pixels themselves
    with pytest.raises(ValueError, match=r"DataConfig.classes expected \['T-shirt/top'"):
        build_datasets(DataConfig(name="fashion_mnist", classes=["a", "b"]))


def test_classification_trains_on_fashion_mnist(fake_sources, tmp_path):
    from visionattn.train.config import load_config
    from visionattn.train.loop import Trainer

    cfg = load_config(overrides=["data.name=fashion_mnist", "data.img_size=16", "schedule.epochs=1",
                                 "schedule.batch_size=16", "run.report=false", "run.num_workers=0",
                                 "run.device=cpu", "recipe.ema=false", "model.overrides={patch: 4, dim: 32, depth: 1, "
                                 "heads: 2}"])
    summary = Trainer(cfg, run_dir=tmp_path / "c", log=lambda m: None).fit()
    assert summary["train_images"] == 60 and summary["val_images"] == 20 and summary["steps"] == 3


@pytest.mark.slow
def test_real_fashion_mnist_and_mnist():
    fashion = build_datasets(DataConfig(name="fashion_mnist", img_size=28))
    assert (len(fashion.train), len(fashion.val)) == (60000, 10000)
    assert np.bincount(fashion.val.targets).tolist() == [1000] * 10
    assert fashion.train.images.shape == (60000, 28, 28) and fashion.train.images[:, 0, 0].max() < 20  # dark corners
    mnist = build_datasets(DataConfig(name="mnist", img_size=28, val_fraction=0.2))
    assert (len(mnist.train), len(mnist.val)) == (4000, 1000)
