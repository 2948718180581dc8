"""Detection data: every annotation problem of every format is a counted skip naming the image (or a clear error),
images without objects are kept; the package-shipped sets (tree tiles split by region, digit scenes with a stuff
class) are laid out as documented; transforms move boxes and masks with the image and targets come out in DETR's
normalised cxcywh; batches are padded to the backbone's multiple with the padding mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from visionattn.data.detection import (
    SceneRecords,
    checked_record,
    load_panoptic,
    read_box_csv,
    read_coco,
    read_coco_panoptic,
    read_voc,
    tile_starts,
    tree_tiles,
)
from visionattn.data.detection.records import Skips
from visionattn.tasks.detection.data import DetectionSamples, collate_detection
from visionattn.tasks.detection.transforms import build_detection_transform


def _image(path, h=40, w=50, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _reasons(skips) -> str:
    return "\n".join(f"{item}: {reason}" for item, reason in skips.items)


def test_checked_record_handles_each_box_problem():
    skips = Skips()
    boxes = [[1, 2, 10, 12], [np.nan, 0, 3, 3], [5, 5, 5, 9], [8, 2, 3, 9], [60, 1, 70, 5], [-5, -5, 10, 50],
             [2, 2, 6, 6]]
    labels = ["cat", "cat", "dog", "dog", "cat", "dog", "bird"]
    r = checked_record("x.png", (40, 50), boxes, labels, ["cat", "dog"], 7, "x.png", skips)
    assert r.boxes.tolist() == [[1, 2, 10, 12], [0, 0, 10, 40]]  # the partly outside box is clipped
    assert r.labels.tolist() == [0, 1] and r.source_index.tolist() == [0, 5]
    text = _reasons(skips)
    assert len(skips) == 5
    assert "x.png: object 1: non-finite box [nan, 0, 3, 3]" in text
    assert "object 2: box [5, 5, 5, 9] has zero or negative size" in text
    assert "object 3: box [8, 2, 3, 9] has zero or negative size" in text
    assert "object 4: box [60, 1, 70, 5] lies outside the 50x40 image" in text
    assert "object 6: unknown category 'bird' (known: cat, dog)" in text
    with pytest.raises(ValueError, match="x.png: 2 boxes but 1 labels"):
        checked_record("x.png", (4, 4), [[0, 0, 1, 1]] * 2, ["cat"], ["cat"], 0, "x.png", Skips())


def _coco(tmp_path, annotations, images=None, categories=None):
    images = images if images is not None else [
        {"id": 1, "file_name": "a.png", "height": 40, "width": 50},
        {"id": 2, "file_name": "b.png", "height": 40, "width": 50},
        {"id": 3, "file_name": "missing.png", "height": 40, "width": 50}]
    data = {"images": images, "annotations": annotations,
            "categories": categories or [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]}
    _image(tmp_path / "a.png"), _image(tmp_path / "b.png", seed=1)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_reader_counts_and_names_every_problem(tmp_path):
    anns = [
        {"id": 10, "image_id": 1, "category_id": 5, "bbox": [2, 3, 10, 8], "iscrowd": 0,
         "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]},
        {"id": 11, "image_id": 1, "category_id": 9, "bbox": [0, 0, 0, 5], "iscrowd": 0},  # zero width
        {"id": 12, "image_id": 1, "category_id": 7, "bbox": [1, 1, 4, 4], "iscrowd": 0},  # unknown category
        {"id": 13, "image_id": 4, "category_id": 5, "bbox": [1, 1, 4, 4], "iscrowd": 0},  # no such image
        {"id": 14, "image_id": 1, "category_id": 9, "bbox": [float("nan"), 1, 4, 4], "iscrowd": 0},
        {"id": 15, "image_id": 1, "category_id": 9, "bbox": [1, 1, 30, 30], "iscrowd": 1},  # crowd: left out
        {"id": 16, "image_id": 1, "category_id": 9, "bbox": [45, 30, 20, 20], "iscrowd": 0},  # clipped
    ]
    got = read_coco(_coco(tmp_path, anns), masks=True)
    assert got.classes == ["cat", "dog"] and got.category_ids == [5, 9]
    by_id = {r.image_id: r for r in got.records}
    assert sorted(by_id) == [1, 2]  # b.png has no objects and is kept; missing.png is skipped
    assert by_id[1].boxes.tolist() == [[2, 3, 12, 11], [45, 30, 50, 40]] and by_id[1].labels.tolist() == [0, 1]
    assert len(by_id[2].boxes) == 0
    assert by_id[1].masks.shape == (2, 40, 50) and by_id[1].masks[0, 5, 5] and not by_id[1].masks[0, 20, 30]
    text = _reasons(got.skips)
    assert "missing.png: image file not found" in text
    assert "annotation 11: box [0, 0, 0, 5] has zero or negative size" in text
    assert "annotation 12: unknown category id 7 (known ids: 5, 9)" in text
    assert "image id 4: annotation 13: annotation for a missing image" in text
    assert "annotation 14: non-finite box" in text
    assert len(got.skips) == 5


def test_coco_size_mismatch_and_empty_source_are_named(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "height": 41, "width": 50}]
    with pytest.raises(ValueError, match=r"has no usable images \(1 items skipped: .*a.png: the annotation file says "
                                         r"50x41 \(W x H\), the image is 50x40"):
        read_coco(_coco(tmp_path, [], images=images))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a valid JSON file"):
        read_coco(bad)
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match=r"missing \['annotations', 'categories'\]"):
        read_coco(bad)


def test_coco_panoptic_reader_decodes_segments(tmp_path):
    _image(tmp_path / "images" / "p.jpg", 6, 8)
    seg = np.zeros((6, 8), dtype=np.int64)
    seg[:, :] = 7  # stuff "sky"
    seg[1:4, 1:3] = 300  # a thing
    seg[4:6, 5:8] = 65536 + 2  # another thing (id in the blue channel too)
    rgb = np.stack([seg % 256, seg // 256 % 256, seg // 65536], -1).astype(np.uint8)
    (tmp_path / "panoptic").mkdir()
    Image.fromarray(rgb).save(tmp_path / "panoptic" / "p.png")
    data = {"images": [{"id": 1, "file_name": "p.jpg", "height": 6, "width": 8}],
            "annotations": [{"image_id": 1, "file_name": "p.png", "segments_info": [
                {"id": 7, "category_id": 1, "bbox": [0, 0, 8, 6], "iscrowd": 0},
                {"id": 300, "category_id": 2, "bbox": [1, 1, 2, 3], "iscrowd": 0},
                {"id": 65538, "category_id": 2, "bbox": [5, 4, 3, 2], "iscrowd": 0},
                {"id": 9, "category_id": 4, "bbox": [0, 0, 1, 1], "iscrowd": 0}]}],
            "categories": [{"id": 1, "name": "sky", "isthing": 0}, {"id": 2, "name": "car", "isthing": 1}]}
    path = tmp_path / "panoptic.json"
    path.write_text(json.dumps(data))
    got = read_coco_panoptic(path, image_root=tmp_path / "images")
    assert got.classes == ["sky", "car"] and got.isthing == [False, True]
    assert "segment 9: unknown category id 4" in _reasons(got.skips)
    (record,) = got.records
    masks, panoptic = load_panoptic(record)
    assert masks.shape == (3, 6, 8) and masks[1].sum() == 6 and masks[2].sum() == 6
    assert panoptic[0, 0].tolist() == [0, 1] and panoptic[2, 1].tolist() == [1, 2] and panoptic[5, 7].tolist() == [1, 3]


def test_voc_and_csv_readers(tmp_path):
    _image(tmp_path / "JPEGImages" / "a.jpg")
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "a.xml").write_text("<annotation><filename>a.jpg</filename><size><width>50</width><height>40</height>"
                               "</size><object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax>"
                               "<ymax>30</ymax></bndbox></object><object><name>cat</name><bndbox><xmin>9</xmin>"
                               "<ymin>2</ymin><xmax>4</xmax><ymax>30</ymax></bndbox></object></annotation>")
    (ann / "b.xml").write_text("<annotation><filename>b.jpg</filename><size><width>5</width><height>5</height>"
                               "</size></annotation>")
    (ann / "c.xml").write_text("<annotation><size>")
    records, classes, skips = read_voc(ann, classes=["cat", "dog"])
    assert len(records) == 1 and records[0].boxes.tolist() == [[1, 2, 20, 30]] and classes == ["cat", "dog"]
    text = _reasons(skips)
    assert "b.jpg: image file not found (named by b.xml)" in text and "c.xml: not a well-formed VOC XML" in text
    assert "object 1: box [9, 2, 4, 30] has zero or negative size" in text

    _image(tmp_path / "imgs" / "x.png"), _image(tmp_path / "imgs" / "y.png", seed=2)
    csv = tmp_path / "boxes.csv"
    csv.write_text("image_path,xmin,ymin,xmax,ymax,label\nimgs/x.png,1,1,10,10,cat\nimgs/x.png,5,5,9,abc,dog\n"
                   "imgs/y.png,,,,,\nimgs/x.png,2,2,4\nimgs/z.png,1,1,2,2,cat\nimgs/x.png,3,3,8,8,dog\n")
    records, classes, skips = read_box_csv(csv)
    assert classes == ["cat", "dog"] and [len(r.boxes) for r in records] == [2, 0]  # y.png: no objects, kept
    assert records[0].labels.tolist() == [0, 1]
    text = _reasons(skips)
    assert "boxes.csv line 3: box ['5', '5', '9', 'abc'] is not four numbers" in text
    assert "boxes.csv line 5: expected 6 columns" in text and "z.png: image file not found" in text
    empty = tmp_path / "empty.csv"
    empty.write_text("image_path,xmin,ymin,xmax,ymax,label\n")
    with pytest.raises(ValueError, match="box CSV .*empty.csv' has no usable images"):
        read_box_csv(empty)


def test_tree_tiles_split_by_region_and_keep_mostly_visible_boxes():
    assert tile_starts(0, 100, 40, 40) == [0, 40, 60] and tile_starts(10, 30, 40, 40) == [10]
    image = np.zeros((100, 120, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 30, 30], [85, 10, 95, 20], [88, 50, 100, 60], [20, 45, 30, 70]], dtype=np.float32)
    items = [{"name": n, "image": image, "boxes": boxes} for n in
             ("2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop")]
    train, _ = tree_tiles("train", tile=40, items=items, val_fraction=0.25)
    val, _ = tree_tiles("val", tile=40, items=items, val_fraction=0.25)
    # train covers x < 90, val x >= 90 (no pixel in both)
    assert {r.name.split(" tile ")[1] for r in val} == {"x=90 y=0", "x=90 y=40", "x=90 y=60"}
    assert max(int(r.name.split("x=")[1].split()[0]) + r.size[1] for r in train) == 90
    assert all(r.size == (40, 40) for r in train) and all(r.size == (40, 30) for r in val)
    train_boxes = sum(len(r.boxes) for r in train if r.name.startswith("2019_YELL_2_528"))
    # [10, 30]: one tile; [85, 95] is half in train (kept, clipped to the x = 50 tile), half in val; [88, 100] is
    # mostly in val (dropped from train); [45, 70] in y lies whole in the y = 40 tile, and only 10 of its 25 rows in
    # the y = 60 tile (dropped there)
    assert train_boxes == 3
    by_name = {r.name: r for r in val if r.name.startswith("2019_YELL_2_528")}
    assert by_name["2019_YELL_2_528000_4978000_image_crop2 tile x=90 y=40"].boxes.tolist() == [[0, 10, 10, 20]]


def test_digit_scene_records_with_a_stuff_class():
    from visionattn.data.composed import DigitScenes

    scenes = DigitScenes("val", 3, size=48, num_digits=(2, 3), scale=(2, 3))
    plain, stuffed = SceneRecords(scenes), SceneRecords(scenes, stuff=True)
    assert plain.classes == [str(d) for d in range(10)] and stuffed.classes[0] == "background"
    assert stuffed.isthing == [False] + [True] * 10
    a, b = plain[1], stuffed[1]
    item = scenes[1]
    assert a.labels.tolist() == item["labels"].tolist()
    assert b.labels.tolist() == [0] + (item["labels"] + 1).tolist()
    assert b.masks[0].sum() == (item["semantic"] == 0).sum() and (b.masks.sum(0) == 1).all()  # a partition
    assert b.boxes[0].tolist() == [0, 0, 48, 48] or b.boxes[0, 2] > 40
    assert (b.panoptic[..., 0] == item["semantic"]).all()


def _records_for_transform():
    from visionattn.data.detection import DetectionRecord

    image = np.zeros((40, 60, 3), dtype=np.uint8)
    masks = np.zeros((2, 40, 60), dtype=bool)
    masks[0, 5:15, 10:30] = True
    masks[1, 20:40, 40:60] = True
    return [DetectionRecord(image, (40, 60), np.array([[10, 5, 30, 15], [40, 20, 60, 40]], np.float32),
                            np.array([1, 0]), 3, "r", masks, np.zeros((40, 60, 2), np.int32))]


def test_transforms_move_boxes_and_masks_and_targets_are_normalised():
    records = _records_for_transform()
    plain = DetectionSamples(records, build_detection_transform(False, (0, 0, 0), (1, 1, 1)), masks=True)[0]
    t = plain["target"]
    torch.testing.assert_close(t["boxes"], torch.tensor([[20 / 60, 10 / 40, 20 / 60, 10 / 40],
                                                         [50 / 60, 30 / 40, 20 / 60, 20 / 40]]))
    assert t["size"].tolist() == [40, 60] and t["orig_boxes"].tolist() == records[0].boxes.tolist()
    torch.manual_seed(0)
    flip = build_detection_transform(True, (0, 0, 0), (1, 1, 1), scales=[20], max_size=100, hflip=True)
    flipped = [DetectionSamples(records, flip, masks=True)[0] for _ in range(6)]
    sizes = {tuple(s["target"]["size"].tolist()) for s in flipped}
    assert sizes == {(20, 30)}  # shorter side 40 -> 20
    mirrored = [s for s in flipped if s["target"]["boxes"][0, 0] > 0.5]
    assert mirrored, "no flip in 6 draws"
    m = mirrored[0]["target"]
    torch.testing.assert_close(m["boxes"][0], torch.tensor([1 - 20 / 60, 10 / 40, 20 / 60, 10 / 40]))
    assert m["masks"].shape == (2, 20, 30) and m["masks"][0, 3:7, 16:24].all() and not m["masks"][0, :, :15].any()
    assert m["orig_boxes"].tolist() == records[0].boxes.tolist()  # evaluation ground truth is untouched


def test_crop_drops_emptied_boxes_with_their_labels_and_masks():
    records = _records_for_transform()
    crop = build_detection_transform(True, (0, 0, 0), (1, 1, 1), crop=True, crop_size=(15, 20))
    seen = set()
    for seed in range(30):
        torch.manual_seed(seed)
        t = DetectionSamples(records, crop, masks=True)[0]["target"]
        n = len(t["labels"])
        assert t["boxes"].shape == (n, 4) and t["masks"].shape[0] == n
        assert ((t["boxes"] >= 0) & (t["boxes"] <= 1)).all()
        seen.add(n)
    assert 2 in seen and min(seen) < 2  # sometimes uncropped, sometimes a box cut away


def test_collate_pads_to_the_multiple_with_a_padding_mask():
    records = _records_for_transform()
    s = DetectionSamples(records, build_detection_transform(False, (0, 0, 0), (1, 1, 1)))[0]
    small = {"image": s["image"][:, :20, :30], "target": s["target"]}
    batch = collate_detection([s, small], 32)
    assert batch["image"].shape == (2, 3, 64, 64) and batch["padding_mask"].shape == (2, 64, 64)
    assert not batch["padding_mask"][1, :20, :30].any() and batch["padding_mask"][1, 20:].all()
    assert isinstance(batch["target"], list) and batch["target"][1] is small["target"]


def test_digit_singles_is_a_classification_set_of_one_digit_scenes():
    from visionattn.data import DataConfig, build_datasets
    from visionattn.data.detection import DigitSingles
    from visionattn.data.transforms import build_transform

    bundle = build_datasets(DataConfig(name="digit_singles", img_size=32))
    assert len(bundle.train) == 12000 and len(bundle.val) == 1000 and bundle.classes == [str(d) for d in range(10)]
    image, label = bundle.val[3]
    assert image.shape == (3, 32, 32) and 0 <= label <= 9
    small = DigitSingles("val", 5, 32, build_transform(DataConfig(img_size=32), False, 3))
    assert small.targets == [int(small.scenes[i]["labels"][0]) for i in range(5)]
    assert small.targets[3] == label  # the same composed scene
    with pytest.raises(ValueError, match="img_size expected >= 32"):
        DigitSingles("val", 5, 16, None)
