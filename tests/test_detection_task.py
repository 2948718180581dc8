"""The detection task through the one trainer: ``task=detection`` starts from its default config, a tiny DETR
trains on composed digit scenes (loss falls on a fixed batch), checkpoints, evaluates (COCO metrics, per-class AP)
and predicts (drawn PNGs, COCO results JSON) from the checkpoint; bad options are named. Metrics and
post-processing are checked on constructed predictions: perfect boxes score mAP 1, panoptic maps from masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from task_helpers import fixed_batch_losses

from visionattn.comm import LOCAL
from visionattn.tasks.base import PredictOptions
from visionattn.tasks.detection.metrics import DetectionMetric, coco_box_metrics
from visionattn.tasks.detection.postprocess import VOID, detections, panoptic_map
from visionattn.train.config import load_config

TINY = ["task=detection", "model.name=resnet_test", "model.pretrained_path=null", "task.train_backbone=true",
        "task.frozen_bn=false", "task.num_queries=6", "task.hidden_dim=32", "task.heads=4",
        "task.enc_layers=1", "task.dec_layers=2", "task.ffn_dim=32", "task.feature_index=-2", "task.scenes=[16, 6]",
        "task.scene_digits=[1, 2]", "task.scene_scale=[2, 3]", "data.img_size=32", "schedule.epochs=1",
        "schedule.batch_size=8", "schedule.warmup_epochs=0", "run.report=true", "run.num_workers=0",
        "run.log_every=1000", "run.eval_batch_size=8", "run.device=cpu", "optim.lr=1e-3"]


def test_default_config_and_bad_options_are_named():
    cfg = load_config(overrides=["task=detection"])
    assert cfg.data.name == "digit_scenes" and cfg.task.num_queries == 6 and cfg.task.frozen_bn
    with pytest.raises(ValueError, match=r"task.heads: expected a divisor of hidden_dim 32, got 5"):
        load_config(overrides=[*TINY, "task.heads=5"])
    with pytest.raises(ValueError, match=r"task.freeze_detr: expected only with task.masks=true"):
        load_config(overrides=[*TINY, "task.freeze_detr=true"])
    with pytest.raises(ValueError, match=r"'task.label_smoothing' belongs to task 'classification'"):
        load_config(overrides=[*TINY, "task.label_smoothing=0.1"])
    from visionattn.tasks import get_task

    task = get_task("detection")(load_config(overrides=[*TINY, "task.masks=true"]).task)
    with pytest.raises(ValueError, match=r"needs a stuff class; 'digit_scenes' has none \(digit_scenes: set "
                                         r"task.stuff=true\)"):
        task.build_data(load_config(overrides=TINY).data, 0)


def test_loss_falls_on_a_fixed_batch():
    losses, _ = fixed_batch_losses("detection", TINY, steps=25)
    assert losses[-1] < 0.6 * losses[0], losses


def test_trains_checkpoints_evaluates_and_predicts(tmp_path):
    from visionattn.train.evaluate import evaluate_checkpoint, predict_checkpoint
    from visionattn.train.loop import Trainer

    trainer = Trainer(load_config(overrides=TINY), run_dir=tmp_path / "run", log=lambda m: None)
    summary = trainer.fit()
    assert summary["task"] == "detection" and "best_val_map" in summary
    for key in ("val_map", "val_map50", "val_map75", "val_ar100"):
        assert 0 <= trainer.counters.metrics[key] <= 1
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Per-class AP" in html and "Detections on validation images" in html
    evaluation, restored = evaluate_checkpoint(tmp_path / "run" / "best.pt", device="cpu")
    assert restored.task.name == "detection" and len(evaluation.details.per_class) == 10
    assert evaluation.details.images == 6
    assert restored.task.format_evaluation(evaluation, restored.meta).startswith("images: 6")

    scene = trainer.data.val.records[0]
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = predict_checkpoint(tmp_path / "run" / "best.pt", [str(tmp_path / "scene.png"), str(tmp_path / "broken.png")],
                             PredictOptions(out_dir=tmp_path / "pred", threshold=0.0), device="cpu")
    assert out.errors == 1 and "broken.png: error: not an image" in out.lines[-1]
    assert out.lines[0].startswith(f"{tmp_path / 'scene.png'}: 6 objects")  # threshold 0: every query
    assert (tmp_path / "pred" / "scene.png").is_file()
    results = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert len(results) == 6 and set(results[0]) == {"image_id", "category_id", "bbox", "score"}
    images = json.loads((tmp_path / "pred" / "images.json").read_text())
    assert images["images"][0]["width"] == 32 and len(images["categories"]) == 10
    with pytest.raises(ValueError, match="--text is for other tasks"):
        predict_checkpoint(tmp_path / "run" / "best.pt", [str(tmp_path / "scene.png")],
                           PredictOptions(texts=["a"]), device="cpu")


def _gt(image_id, boxes, labels, size=(100, 100)):
    return {"image_id": image_id, "size": size, "boxes": np.asarray(boxes, np.float32),
            "labels": np.asarray(labels)}


def test_coco_metrics_score_perfect_and_shifted_boxes():
    gts = [_gt(1, [[10, 10, 40, 40], [50, 50, 90, 80]], [0, 1]), _gt(2, [[5, 5, 30, 60]], [1])]
    perfect = [{"image_id": g["image_id"], "boxes": g["boxes"], "scores": np.ones(len(g["labels"])),
                "labels": g["labels"]} for g in gts]
    metrics, rows = coco_box_metrics(gts, perfect, ["a", "b", "c"], [0, 1, 2])
    assert metrics["map"] == pytest.approx(1.0) and metrics["map50"] == pytest.approx(1.0)
    assert [r["objects"] for r in rows] == [1, 2, 0] and np.isnan(rows[2]["AP"])
    shifted = [dict(d, boxes=d["boxes"] + 4) for d in perfect]  # IoU between 0.5 and 0.75 for these sizes
    metrics, _ = coco_box_metrics(gts, shifted, ["a", "b", "c"], [0, 1, 2])
    assert metrics["map50"] == pytest.approx(1.0) and metrics["map75"] < 0.5
    wrong = [dict(d, labels=1 - d["labels"]) for d in perfect]
    assert coco_box_metrics(gts, wrong, ["a", "b", "c"], [0, 1, 2])[0]["map"] == 0.0


def test_detections_are_scaled_to_each_image():
    logits = torch.tensor([[[0.0, 3.0, 0.0], [5.0, 0.0, 0.0]]])  # 2 queries, 2 classes + no object
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.5, 0.5]]])
    (d,) = detections(logits, boxes, torch.tensor([[50, 200]]))
    assert d["labels"].tolist() == [0, 1]
    torch.testing.assert_close(d["boxes"], torch.tensor([[0.0, 0.0, 100.0, 25.0], [80.0, 15.0, 120.0, 35.0]]))
    # a query most sure of "no object" still reports its best real class, with that class's probability
    (d,) = detections(torch.tensor([[[1.0, 2.0, 6.0]]]), boxes[:, :1], torch.tensor([[50, 200]]))
    assert d["labels"].tolist() == [1]
    assert d["scores"].item() == pytest.approx(torch.tensor([1.0, 2.0, 6.0]).softmax(0)[1].item())


def test_panoptic_map_things_stuff_and_void():
    isthing = [False, True, True]  # class 0 stuff, 1-2 things; index 3 = no object
    logits = torch.full((5, 4), -10.0)
    logits[0, 0] = logits[1, 0] = 10  # two queries of the same stuff class: merged into one segment
    logits[2, 1] = logits[3, 1] = 10  # two instances of thing 1
    logits[4, 3] = 10  # no object
    masks = torch.full((5, 4, 4), -5.0)
    masks[0, :2] = 5
    masks[1, 2:, :2] = 5
    masks[2, 2:, 2] = 5
    masks[3, 2:, 3] = 5
    masks[4] = 20  # not kept, so never claims a pixel
    pan, segs = panoptic_map(logits, masks, (4, 4), (4, 4), (8, 8), isthing, min_area=0)  # ids resized 4 -> 8
    assert pan.shape == (8, 8, 2)
    assert (pan[:4, :, 0] == 0).all() and (pan[4:, :4, 0] == 0).all() and (pan[:, :, 1][pan[..., 0] == 0] == 0).all()
    assert set(pan[4:, 4:6, 1].flatten().tolist()) | set(pan[4:, 6:, 1].flatten().tolist()) == {1, 2}
    assert sorted(s["category"] for s in segs) == [0, 1, 1]
    none, segs = panoptic_map(torch.zeros(2, 4).index_fill_(1, torch.tensor([3]), 9.0), masks[:2], (8, 8), (8, 8),
                              (4, 4), isthing)
    assert (none[..., 0] == VOID).all() and segs == []
    small, _ = panoptic_map(logits, masks, (4, 4), (4, 4), (4, 4), isthing, min_area=2)
    assert set(small[..., 0].unique().tolist()) == {0}  # the 2-pixel thing segments are dropped, stuff takes all


def test_panoptic_quality_of_a_perfect_prediction():
    metric = DetectionMetric(["bg", "a"], [False, True], panoptic=True, panoptic_threshold=0.5)
    logits = torch.full((1, 3, 3), -10.0)
    logits[0, 0, 0] = logits[0, 1, 1] = 10
    logits[0, 2, 2] = 10
    masks = torch.full((1, 3, 8, 8), -10.0)
    masks[0, 0] = 10  # stuff everywhere but where the thing is
    masks[0, 1, :4, :4] = 20  # the thing
    truth = torch.zeros(8, 8, 2, dtype=torch.long)
    truth[:4, :4] = torch.tensor([1, 1])
    target = {"orig_size": torch.tensor([8, 8]), "size": torch.tensor([8, 8]), "image_id": torch.tensor(0),
              "orig_boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "orig_labels": torch.tensor([1]),
              "panoptic": truth}
    boxes = torch.tensor([[[0.5, 0.5, 1, 1], [0.25, 0.25, 0.5, 0.5], [0.5, 0.5, 1, 1]]])
    metric.update({"logits": logits, "boxes": boxes, "masks": masks}, {"image": torch.zeros(1, 3, 8, 8),
                                                                       "target": [target]})
    metric.reduce(LOCAL)
    ev = metric.compute()
    assert ev.metrics["pq"] == pytest.approx(1.0) and ev.metrics["map"] == pytest.approx(1.0)
    assert [r["class"] for r in ev.details.pq_per_class] == ["bg", "a"]
