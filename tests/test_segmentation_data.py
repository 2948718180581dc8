"""Segmentation data: mask files (palette, index, RGB with a palette), the bad inputs of issue 12 as counted skips
naming the file (size mismatch, values outside the classes, RGB without a palette, missing mask), VOC folders and
CSV pairs, COCO instances / panoptic → label maps, joint transforms keeping image and mask aligned, the digit-scene
and nuclei datasets, and the padded collate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionattn.data import DataConfig
from visionattn.data.composed import DigitScenes
from visionattn.data.segmentation import (
    DigitSceneSegmentation,
    MaskError,
    NucleiTiles,
    check_mask,
    check_pairs,
    index_coco,
    index_csv,
    index_voc,
    read_mask,
    segmentation_transform,
    to_sample,
)
from visionattn.tasks.segmentation.data import build_segmentation_data, collate_segmentation, palette_for
from visionattn.tasks.segmentation.options import SegmentationOptions

PALETTE = [[0, 0, 0], [128, 0, 0], [0, 128, 0]]


def _png(path: Path, array: np.ndarray, mode: str | None = None, palette=None) -> Path:
    img = Image.fromarray(array.astype(np.uint8), mode=mode) if mode else Image.fromarray(array.astype(np.uint8))
    if palette is not None:  # all 256 entries: Pillow would otherwise re-index the values on save
        flat = [v for c in palette for v in c]
        img.putpalette(flat + [0] * (768 - len(flat)))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _labels(h=12, w=16, seed=0, classes=3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=(h, w))


# -- mask files ----------------------------------------------------------------------------------------------------
def test_palette_index_and_rgb_masks_read_as_class_indices(tmp_path):
    labels = _labels()
    assert np.array_equal(read_mask(_png(tmp_path / "p.png", labels, "P", PALETTE)), labels)
    assert np.array_equal(read_mask(_png(tmp_path / "l.png", labels)), labels)
    rgb = np.asarray(PALETTE, dtype=np.uint8)[labels]
    path = _png(tmp_path / "rgb.png", rgb)
    assert np.array_equal(read_mask(path, PALETTE), labels)
    with pytest.raises(MaskError, match=r"rgb\.png: an RGB colour mask needs a palette mapping colours to classes"):
        read_mask(path)
    rgb[0, 0] = [1, 2, 3]
    with pytest.raises(MaskError, match=r"colours \[\[1, 2, 3\]\] are not in the palette of 3 classes"):
        read_mask(_png(tmp_path / "odd.png", rgb), PALETTE)
    with pytest.raises(MaskError, match="missing.png: mask file not found"):
        read_mask(tmp_path / "missing.png")


def test_check_mask_says_expected_vs_got():
    labels = _labels(4, 5)
    labels[0, :2] = 255
    assert check_mask(labels, 3, (4, 5)) is labels  # the ignore index is fine
    with pytest.raises(MaskError, match=r"m.png: mask size 5x4 differs from its image's 6x4 \(W x H\)"):
        check_mask(labels, 3, (4, 6), "m.png")
    labels[1, :3] = 7
    with pytest.raises(MaskError, match=r"label values 7 \(3 px\) are outside the 3 classes \(expected 0..2 or the "
                                        r"ignore index 255\)"):
        check_mask(labels, 3, (4, 5), "m.png")
    labels[1, :3] = 3  # the first value past the classes
    with pytest.raises(MaskError, match=r"label values 3 \(3 px\)"):
        check_mask(labels, 3, (4, 5), "m.png")


def _voc(root: Path, names=("a", "b", "c", "d", "e", "f", "g")) -> Path:
    """A VOC folder: a..c good, d mask size wrong, e label value 9, f RGB mask, g no mask; plus a corrupt image h."""
    for i, name in enumerate(names):
        image = np.random.default_rng(i).integers(0, 255, size=(12, 16, 3))
        _png(root / "JPEGImages" / f"{name}.png", image)
        labels = _labels(seed=i)
        if name == "d":
            labels = _labels(10, 16, seed=i)
        if name == "e":
            labels[0, 0] = 9
        if name == "f":
            _png(root / "SegmentationClass" / f"{name}.png", np.asarray(PALETTE, dtype=np.uint8)[labels])
            continue
        if name != "g":
            _png(root / "SegmentationClass" / f"{name}.png", labels, "P", PALETTE)
    (root / "JPEGImages" / "h.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    _png(root / "SegmentationClass" / "h.png", _labels(), "P", PALETTE)
    (root / "class_names.txt").write_text("background\ncat\ndog\n")
    return root


def test_bad_pairs_are_counted_skips_naming_the_file(tmp_path):
    root = _voc(tmp_path / "voc")
    train, val, skipped = index_voc(root, val_fraction=0.0)
    assert val == [] and skipped == [] and len(train) == 8
    kept, skipped = check_pairs(train, num_classes=3)
    assert sorted(p.name for p in kept) == ["a", "b", "c"]
    reasons = {Path(path).name: reason for path, reason in skipped}
    assert reasons["d.png"] == "mask size 16x10 differs from its image's 16x12 (W x H)"
    assert reasons["e.png"].startswith("label values 9 (1 px) are outside the 3 classes")
    assert reasons["f.png"].startswith("an RGB colour mask needs a palette")
    assert reasons["g.png"] == "mask file not found"
    assert reasons["h.jpg"].startswith("not an image")
    kept, _ = check_pairs(train, num_classes=3, palette=PALETTE)  # with a palette the RGB mask reads
    assert "f" in {p.name for p in kept}


def test_folder_data_warns_counts_and_trains_on_the_rest(tmp_path):
    from visionattn.data.config import SkippedImageWarning

    root = _voc(tmp_path / "voc")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("a\nb\nd\ne\nf\ng\nh\n")
    (sets / "val.txt").write_text("c\n")
    cfg = DataConfig(name="seg_folder", path=str(root), img_size=8)
    with pytest.warns(SkippedImageWarning, match="skipping"):
        data = build_segmentation_data(cfg, SegmentationOptions(), seed=0)
    assert len(data.skipped) == 5 and len(data.train) == 2 and len(data.val) == 1
    assert data.meta["classes"] == ["background", "cat", "dog"]
    sample = data.train[0]
    assert sample["image"].shape == (3, 8, 8) and sample["mask"].shape == (8, 8)
    assert set(sample["mask"].unique().tolist()) <= {0, 1, 2, 255}
    val = data.val[0]
    assert val["image"].shape == (3, 12, 16)  # evaluation keeps the file's size


def test_voc_split_files_and_csv_pairs(tmp_path):
    root = _voc(tmp_path / "voc", names=("a", "b", "c"))
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("a\nb\n")
    (sets / "val.txt").write_text("c\nzz\n")
    train, val, skipped = index_voc(root)
    assert [p.name for p in train] == ["a", "b"] and [p.name for p in val] == ["c"]
    assert skipped == [(str(root / "JPEGImages" / "zz"), "listed in a split file, but no image of that name")]
    csv = tmp_path / "pairs.csv"
    csv.write_text("image,mask,split\nvoc/JPEGImages/a.png,voc/SegmentationClass/a.png,train\n"
                   f"{root}/JPEGImages/b.png,{root}/SegmentationClass/b.png,val\nonly-one-field\n"
                   "voc/JPEGImages/c.png,voc/SegmentationClass/c.png,test\n")
    train, val, skipped = index_csv(csv)
    assert [p.name for p in train] == ["a"] and [p.name for p in val] == ["b"]
    assert Path(train[0].image) == root / "JPEGImages" / "a.png"
    assert [r for _, r in skipped] == ["expected 'image,mask[,split]', got ['only-one-field']",
                                       "split must be 'train' or 'val', got 'test'"]
    with pytest.raises(ValueError, match="no class list; expected data.classes or a class_names.txt"):
        (root / "class_names.txt").unlink()
        build_segmentation_data(DataConfig(name="seg_csv", path=str(csv)), SegmentationOptions(), 0)


# -- COCO ----------------------------------------------------------------------------------------------------------
def _coco_images(tmp_path: Path, sizes) -> list[dict]:
    out = []
    for i, (h, w) in enumerate(sizes):
        _png(tmp_path / "images" / f"im{i}.png", np.full((h, w, 3), 100))
        out.append({"id": i + 1, "file_name": f"images/im{i}.png", "height": h, "width": w})
    return out


def test_coco_instances_paint_label_maps(tmp_path):
    from pycocotools import mask as mask_utils

    big = np.zeros((10, 12), dtype=np.uint8, order="F")
    big[1:9, 1:11] = 1
    small = np.zeros((10, 12), dtype=np.uint8, order="F")
    small[3:5, 4:7] = 1
    rle = [mask_utils.encode(m) for m in (big, small)]
    for r in rle:
        r["counts"] = r["counts"].decode()
    images = _coco_images(tmp_path, [(10, 12), (10, 12), (6, 6)])
    images[2]["height"] = 7  # the file is 6x6
    anns = [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": rle[1], "area": 6, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "segmentation": rle[0], "area": 80, "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 99, "segmentation": rle[1], "area": 6, "iscrowd": 0}]
    cats = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    reader, items, skipped = index_coco(path)
    assert reader.kind == "instances" and reader.classes == ["background", "cat", "dog"]
    assert [i.name for i in items] == ["im0"]
    expected = big.astype(np.int64) * 1
    expected[small.astype(bool)] = 2  # the smaller object is painted last, over the larger
    assert np.array_equal(reader.label_map(items[0]), expected)
    reasons = sorted(r for _, r in skipped)
    assert reasons[0].startswith("annotation 3 of image 'im1' has category 99, not among the categories [3, 7]")
    assert reasons[1] == "image size 6x6 differs from the COCO file's 6x7 (W x H)"


def test_coco_panoptic_of_digit_scenes_gives_their_semantic_maps(tmp_path):
    """A COCO panoptic file written from DigitScenes' panoptic view reads back as the scenes' semantic maps; void is
    ignored; a PNG id missing from segments_info is a counted skip."""
    scenes = DigitScenes("val", 3, size=24, num_digits=(1, 2), scale=(1.5, 2.5))
    images, anns = [], []
    for i in range(3):
        s = scenes[i]
        _png(tmp_path / "images" / f"s{i}.png", np.repeat(s["image"][..., None], 3, axis=-1))
        cat, inst = s["panoptic"][..., 0], s["panoptic"][..., 1]
        seg_id = cat * 100 + inst + 1  # distinct per (category, instance); 0 stays void below
        seg_id[:2, :2] = 0  # a void corner
        rgb = np.stack([seg_id % 256, seg_id // 256 % 256, seg_id // 65536], axis=-1)
        _png(tmp_path / "panoptic" / f"s{i}.png", rgb)
        segs = [{"id": int(v), "category_id": int(v - 1) // 100, "iscrowd": 0} for v in np.unique(seg_id) if v]
        if i == 2:
            segs = segs[:-1]
        images.append({"id": i, "file_name": f"images/s{i}.png", "height": 24, "width": 24})
        anns.append({"image_id": i, "file_name": f"s{i}.png", "segments_info": segs})
    cats = [{"id": c["id"], "name": c["name"]} for c in scenes.categories]
    path = tmp_path / "panoptic.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    reader, items, skipped = index_coco(path, panoptic_dir=tmp_path / "panoptic")
    assert reader.kind == "panoptic" and reader.classes == ["background"] + [str(d) for d in range(10)]
    assert len(items) == 2 and len(skipped) == 1 and "are in the PNG but not in its segments_info" in skipped[0][1]
    for item in items:
        truth = scenes[item.image_id]["semantic"].astype(np.int64)
        truth[:2, :2] = 255
        assert np.array_equal(reader.label_map(item), truth)


# -- transforms ----------------------------------------------------------------------------------------------------
def test_joint_transforms_keep_image_and_mask_aligned():
    """The image encodes its mask (value = 40 * class): after random scale, crop (with padding) and flips, the
    labelled pixels' image values still name their class (but where bilinear resizing blurs a block border), masks
    get no new values (nearest), and the padding is labelled ignore."""
    labels = np.kron(_labels(6, 8, seed=3), np.ones((8, 8), dtype=np.int64))  # (48, 64), blocks of 8x8
    image = (labels * 40).astype(np.uint8)
    tf = segmentation_transform(True, 56, mean=(0, 0, 0), std=(1, 1, 1), scale_range=(0.75, 1.5), hflip=True,
                                vflip=True)
    torch.manual_seed(0)
    import random

    random.seed(0)
    saw_padding = False
    for _ in range(20):
        out = tf(to_sample(image, labels))
        img, mask = out["image"], out["mask"]
        assert img.shape == (3, 56, 56) and mask.shape == (56, 56) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= {0, 1, 2, 255}  # nearest: no new label values
        labelled = mask != 255
        agree = (img[0][labelled] * 255 - mask[labelled].float() * 40).abs() < 1
        assert agree.float().mean() > 0.75  # all but the blurred block borders (flipping one alone: 0.2-0.4)
        saw_padding |= bool((mask == 255).any())
    assert saw_padding


def test_collate_pads_images_and_labels_and_says_where():
    a = {"image": torch.ones(3, 4, 6), "mask": torch.zeros(4, 6, dtype=torch.long), "name": "a"}
    b = {"image": torch.ones(3, 5, 3), "mask": torch.ones(5, 3, dtype=torch.long), "name": "b"}
    batch = collate_segmentation([a, b], ignore_index=255)
    assert batch["image"].shape == (2, 3, 5, 6) and batch["mask"].shape == (2, 5, 6)
    assert (batch["mask"][0, 4] == 255).all() and (batch["mask"][1, :, 3:] == 255).all()
    assert torch.equal(batch["padding_mask"], batch["mask"] == 255) and batch["name"] == ["a", "b"]
    assert collate_segmentation([a, a])["padding_mask"] is None
    with pytest.raises(ValueError, match=r"sample 'c': label map \(4, 4\) and image \(4, 6\) expected the same"):
        collate_segmentation([{**a, "mask": torch.zeros(4, 4, dtype=torch.long), "name": "c"}])


# -- generated and package data ------------------------------------------------------------------------------------
def test_digit_scene_samples_are_the_scenes_semantic_maps():
    tf = segmentation_transform(False, None, (0.5,) * 3, (0.5,) * 3)
    val = DigitSceneSegmentation("val", 4, tf, size=32, num_digits=(1, 2), scale=(1.5, 2.5))
    scenes = DigitScenes("val", 4, size=32, num_digits=(1, 2), scale=(1.5, 2.5))
    s = val[1]
    assert torch.equal(s["mask"], torch.from_numpy(scenes[1]["semantic"]).long())
    torch.testing.assert_close(s["image"][0], torch.from_numpy(scenes[1]["image"]).float() / 255 * 2 - 1)
    assert len(val.classes) == 11
    train = DigitSceneSegmentation("train", 4, tf, fresh=True, size=32, num_digits=(1, 2), scale=(1.5, 2.5))
    np.random.seed(1)
    first = train[0]["mask"]
    np.random.seed(1)
    assert torch.equal(train[0]["mask"], first)  # fresh scenes follow the (seeded) global RNG
    np.random.seed(2)
    assert not torch.equal(train[0]["mask"], first)


def test_nuclei_tiles_are_spatially_disjoint():
    """Labels 1 exactly on the validation strip: every training crop holds only 0, every validation tile only 1."""
    image = np.random.default_rng(0).integers(0, 200, size=(64, 64)).astype(np.uint16)
    labels = np.zeros((64, 64), dtype=np.int32)
    labels[:, 48:] = 7
    tf = segmentation_transform(False, None, (0.5,) * 3, (0.5,) * 3)
    train = NucleiTiles({"image": image, "labels": labels}, "train", 16, tf, length=30, val_fraction=0.25)
    val = NucleiTiles({"image": image, "labels": labels}, "val", 16, tf, val_fraction=0.25)
    assert train.split_col == 48 and len(val) == 4 * 1
    assert all(train[i]["mask"].max() == 0 for i in range(30))
    assert all(val[i]["mask"].min() == 1 for i in range(len(val)))
    with pytest.raises(ValueError, match="leaves 0 columns for training; expected at least one tile"):
        NucleiTiles({"image": image, "labels": labels}, "val", 32, tf, val_fraction=0.9)


def test_palette_is_the_voc_colour_map():
    assert palette_for(4) == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert palette_for(21)[15] == [192, 128, 128]  # VOC's person


def test_a_separate_validation_set_takes_all_of_data_path_for_training(tmp_path):
    train_root = _voc(tmp_path / "train", names=("a", "b", "c"))
    val_root = _voc(tmp_path / "val", names=("x", "y"))
    cfg = DataConfig(name="seg_folder", path=str(train_root), img_size=8, val_fraction=0.5)
    with pytest.warns(UserWarning):  # the two corrupt h.jpg files
        data = build_segmentation_data(cfg, SegmentationOptions(val_path=str(val_root)), seed=0)
    assert sorted(s["name"] for s in data.train) == ["a", "b", "c"]
    assert sorted(data.val[i]["name"] for i in range(len(data.val))) == ["x", "y"]
    assert sorted(Path(p).name for p, _ in data.skipped) == ["h.jpg", "h.jpg"]
