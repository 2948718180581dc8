"""Grounding data: the tokenizer's character offsets → token positions, every bad input of the grounding records
(a clear skip naming the image, or an error), the M-DETR COCO reader, and the composed phrases' held-out split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from visionattn.data.detection.records import Skips
from visionattn.data.grounding import checked_grounding_record, digit_phrase_records, read_grounding_coco
from visionattn.data.grounding.composed import tree_phrase_records, tree_phrases
from visionattn.tasks.detection.transforms import build_detection_transform
from visionattn.tasks.grounding.data import GroundingCollate, GroundingSamples
from visionattn.tasks.grounding.tokenizer import GroundingTokenizer


def test_tokenizer_maps_character_spans_to_token_positions():
    tok = GroundingTokenizer.train(["the two 4s", "the digit left of the 3", "the largest digit"])
    caption = "the largest digit. the two 4s"
    ids, offsets = tok.encode(caption)
    assert ids[-1] == tok.end_id and offsets[-1] == (len(caption), len(caption))
    assert [caption[a:b] for a, b in offsets[:-1]] == ["the", "largest", "digit", ".", "the", "two", "4", "s"]
    second = tok.positive_map(offsets, [(19, 29)], caption)  # "the two 4s"
    assert second.nonzero().flatten().tolist() == [4, 5, 6, 7]
    partial = tok.positive_map(offsets, [(23, 24)], caption)  # one character of "two" selects the whole token
    assert partial.nonzero().flatten().tolist() == [5]
    with pytest.raises(ValueError, match=r"span \(18, 19\) .* covers no token"):
        tok.positive_map(offsets, [(18, 19)], caption)  # the space after "."
    assert tok.encode("the 5")[0][1] == tok.unk_id  # a word outside the vocabulary is [UNK], not dropped


def test_tokenizer_refuses_a_bad_vocabulary():
    with pytest.raises(ValueError, match="starting with"):
        GroundingTokenizer(["the", "[PAD]", "[UNK]", "[END]"])


def _check(caption="the 7. the two 4s", boxes=((1, 1, 9, 9), (10, 10, 20, 20)), phrases=None):
    skips = Skips()
    phrases = phrases if phrases is not None else [{"span": (0, 5), "boxes": [0]}]
    return checked_grounding_record(np.zeros((32, 32), np.uint8), (32, 32), caption, boxes, phrases, 7, "img7.png",
                                    skips), skips


def test_bad_grounding_inputs_are_counted_skips_naming_the_image():
    record, skips = _check(caption="   ")
    assert record is None and skips.items[0][0] == "img7.png" and "empty caption" in skips.items[0][1]
    record, skips = _check(phrases=[{"span": (0, 5), "boxes": [0]}, {"span": (7, 40), "boxes": [1]}])
    assert len(record.phrases) == 1
    assert skips.items[0][0] == "img7.png phrase 1" and "outside the caption" in skips.items[0][1]
    assert "17" in skips.items[0][1]  # the caption's length, expected vs got
    record, skips = _check(phrases=[{"span": (0, 5), "boxes": [3]}])
    assert record is None and "missing box(es) [3]" in skips.items[0][1] and "has 2 boxes" in skips.items[0][1]
    record, skips = _check(boxes=((1, 1, 9, 9), (10, 10, 10, 20)), phrases=[{"span": (7, 17), "boxes": [0, 1]}])
    assert record is None and "zero or negative" in skips.items[0][1] and "missing box" in skips.items[1][1]
    record, skips = _check(phrases=[{"span": (0, 5), "boxes": []}])
    assert record is None and "linked to no box" in skips.items[0][1]


def test_read_grounding_coco(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30, "caption": "a cat and two dogs"},
                      {"id": 2, "file_name": "missing.png", "height": 20, "width": 30, "caption": "x"}],
           "annotations": [{"id": 1, "image_id": 1, "bbox": [1, 1, 5, 5], "tokens_positive": [[0, 5]]},
                           {"id": 2, "image_id": 1, "bbox": [10, 2, 5, 5], "tokens_positive": [[10, 18]]},
                           {"id": 3, "image_id": 1, "bbox": [20, 2, 5, 5], "tokens_positive": [[10, 18]]},
                           {"id": 4, "image_id": 1, "bbox": [20, 2, 5, 5], "tokens_positive": [[10, 99]]},
                           {"id": 5, "image_id": 9, "bbox": [0, 0, 1, 1], "tokens_positive": [[0, 1]]}]}
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    records, skips = read_grounding_coco(tmp_path / "ann.json")
    assert len(records) == 1 and records[0].caption == "a cat and two dogs"
    assert [(p.spans, p.boxes) for p in records[0].phrases] == [([(0, 5)], [0]), ([(10, 18)], [1, 2])]
    reasons = " | ".join(f"{i}: {r}" for i, r in skips.items)
    assert "image id 9" in reasons and "missing.png" in reasons and "outside the caption" in reasons


def test_digit_phrases_held_out_combinations_never_in_training():
    train = digit_phrase_records("train", 60, size=64, num_digits=(1, 4))
    held = digit_phrase_records("heldout", 30, size=64, num_digits=(1, 4))
    def pairs(recs):
        return {(p.kind, d) for r in recs for p, d in zip(r.phrases, r.extra["digits"], strict=True)}

    assert not pairs(train) & pairs(held)
    assert all(p.kind in ("digit", "pair", "left_of", "right_of", "above", "below") for r in held for p in r.phrases)


def test_collate_positive_maps_follow_the_phrases():
    records = digit_phrase_records("train", 4, size=64, num_digits=(2, 4), phrases_per_caption=2)
    tok = GroundingTokenizer.train([r.caption for r in records])
    samples = GroundingSamples(records, build_detection_transform(False, (0.5,) * 3, (0.5,) * 3))
    batch = GroundingCollate(tok, 32)([samples[i] for i in range(4)])
    assert batch["tokens"].shape == batch["text_padding"].shape and batch["image"].shape[-1] == 64
    for t, r in zip(batch["target"], records, strict=True):
        ids, offsets = tok.encode(r.caption)
        assert len(t["phrases"]) == len(r.phrases) == 2
        for p, rp in zip(t["phrases"], r.phrases, strict=True):
            (start, end), = rp.spans
            inside = [i for i, (a, b) in enumerate(offsets) if start <= a and b <= end and b > a]
            assert p["tokens"].nonzero().flatten().tolist() == inside  # exactly the phrase's tokens, END excluded
            for j in p["boxes"]:
                assert bool((t["positive"][j] & p["tokens"]).any())


def test_tree_phrases_compose_from_alive_dead_labels():
    boxes = np.array([[0, 0, 10, 10], [20, 60, 30, 70], [40, 70, 50, 80]], np.float64)
    kinds = {p["kind"]: p["boxes"] for p in tree_phrases(boxes, ["Alive", "Dead", "Dead"], 96)}
    assert kinds == {"two_dead": [1, 2], "alive": [0], "top": [0]}
    items = [{"name": "SOAP_061", "image": np.zeros((200, 200, 3), np.uint8),
              "boxes": np.array([[10, 10, 30, 30], [150, 150, 170, 170]], np.float32), "labels": ["Dead", "Alive"]}]
    records, _ = tree_phrase_records("train", crop=64, stride=64, items=items)
    assert {r.caption for r in records} >= {"the dead tree"}
    with pytest.raises(ValueError, match="SOAP_061"):
        tree_phrase_records("train", items=[{"name": "OSBS_029"}])


def test_training_captions_are_drawn_anew_on_every_read():
    from visionattn.tasks import get_task
    from visionattn.train.config import load_config

    records = digit_phrase_records("train", 12, resample=True, size=64, num_digits=(3, 4), phrases_per_caption=2)
    torch.manual_seed(0)
    captions = {records[3].caption for _ in range(12)}
    assert len(captions) > 1  # the same scene, different phrases
    for _ in range(5):
        r = records[5]
        assert all(r.caption[s:e] for p in r.phrases for s, e in p.spans)
    fixed = digit_phrase_records("train", 12, size=64, num_digits=(3, 4))
    assert len({fixed[3].caption for _ in range(5)}) == 1  # evaluation: one caption per item

    cfg = load_config(overrides=["task=grounding", "task.scenes=[12, 4]", "task.train_phrases=2",
                                 "task.scene_digits=[3, 4]"])
    data = get_task("grounding")(cfg.task).build_data(cfg.data, 0)
    assert any(". " in data.train[i]["target"]["caption"] for i in range(12))  # two-phrase training captions
    assert all(". " not in data.val[i]["target"]["caption"] for i in range(4))  # one-phrase evaluation captions
