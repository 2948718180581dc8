"""The segmentation task through the one trainer: config section and its errors, a short run on digit scenes that
writes the report's overlays, resumes bit-exactly, evaluates (whole and sliding windows) and predicts colour masks
and overlays from its checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visionattn.tasks import PredictOptions
from visionattn.tasks.segmentation.options import SegmentationOptions
from visionattn.train.config import load_config
from visionattn.train.loop import Trainer

TINY = ["task=segmentation", "task.decoder=pup", "task.channels=8", "task.train_size=16", "task.val_size=8",
        "task.scene_digits=[1, 2]", "task.scene_scale=[1.5, 2.5]", "task.aux_stages=[0]",
        "model.name=vit_tiny_test", "model.overrides={patch: 8, dim: 32, depth: 2, heads: 2}",
        "data.name=digit_scenes", "data.img_size=32", "schedule.epochs=2", "schedule.batch_size=8",
        "schedule.warmup_epochs=0", "optim.lr=3e-3", "recipe.ema=false", "run.num_workers=0", "run.log_every=1000",
        "run.eval_batch_size=8", "run.device=cpu", "run.report=false"]


def _trainer(tmp_path: Path, name: str, *extra: str, **kwargs) -> Trainer:
    return Trainer(load_config(overrides=TINY + list(extra)), run_dir=tmp_path / name, log=lambda m: None, **kwargs)


def test_config_section_and_its_errors():
    cfg = load_config(overrides=["task=segmentation"])  # starts from configs/segmentation_digits_pup.yaml
    assert isinstance(cfg.task, SegmentationOptions) and cfg.task.decoder == "pup"
    assert cfg.data.name == "digit_scenes"
    with pytest.raises(ValueError, match=r"task.decoder: expected one of \('naive', 'pup', 'mla'\), got 'fpn'"):
        load_config(overrides=["task=segmentation", "task.decoder=fpn"])
    with pytest.raises(ValueError, match="'task.label_smoothing' belongs to task 'classification'.* not "
                                         "'segmentation'"):
        load_config(overrides=["task=segmentation", "task.label_smoothing=0.1"])
    with pytest.raises(ValueError, match=r"task.stride: expected <= window 16 \(else pixels go uncovered\), got 20"):
        load_config(overrides=["task=segmentation", "task.window=16", "task.stride=20"])
    with pytest.raises(ValueError, match="dataset 'digits' has no label maps; the segmentation datasets are"):
        _trainer(Path("/nonexistent"), "x", "data.name=digits")


def test_train_eval_predict_report(tmp_path):
    from visionattn.cli import main
    from visionattn.data.segmentation import read_mask
    from visionattn.train.evaluate import evaluate_checkpoint, predict_checkpoint

    trainer = _trainer(tmp_path, "run")
    before = trainer.evaluate()["model"].metrics["loss"]
    summary = trainer.fit()
    assert trainer.step == 4 and "val_miou" in summary and "val_iou_background" in summary
    assert trainer.counters.metrics["val_loss"] < before  # it learned something in 4 updates
    assert "train_loss_aux" in trainer.counters.metrics  # the auxiliary head's weighted term

    ckpt = tmp_path / "run" / "best.pt"
    evaluation, restored = evaluate_checkpoint(ckpt, device="cpu")
    assert restored.task.name == "segmentation"
    assert evaluation.metrics["miou"] == pytest.approx(summary["best_val_miou"])
    # sliding windows of 16 px with stride 8 over the 32 px scenes: a different, still valid evaluation
    restored.task.options.inference, restored.task.options.window, restored.task.options.stride = "slide", 16, 8
    loader = torch.utils.data.DataLoader(trainer.data.val, batch_size=8, collate_fn=trainer.data.collate)
    batch = next(iter(loader))
    slide = restored.task.eval_forward(restored.model, batch)
    assert slide.shape == (8, 11, 32, 32) and not torch.allclose(slide, restored.model(batch["image"]))

    scene = np.asarray(trainer.data.val.scenes[0]["image"])
    Image.fromarray(scene).save(tmp_path / "scene.png")
    (tmp_path / "broken.png").write_bytes(b"nope")
    out = predict_checkpoint(ckpt, [str(tmp_path / "scene.png"), str(tmp_path / "broken.png")],
                             PredictOptions(out_dir=tmp_path / "pred", top_k=3), device="cpu")
    assert out.errors == 1 and out.lines[1].startswith(f"{tmp_path / 'broken.png'}: error: not an image")
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'scene.png'))}: 32x32  (\S+ \d+\.\d%  )+-> scene_mask\.png, "
                        r"scene_overlay\.png", out.lines[0]), out.lines[0]
    mask = read_mask(tmp_path / "pred" / "scene_mask.png")
    with torch.no_grad():
        expected = restored.model(trainer.data.val[0]["image"][None]).argmax(1)[0].numpy()
    assert np.array_equal(mask, expected)  # the palette PNG's values are the predicted classes
    assert Image.open(tmp_path / "pred" / "scene_overlay.png").size == (32, 32)
    assert main(["predict", str(ckpt), str(tmp_path / "scene.png"), "--text", "a digit"]) == 2

    # the report's sections, on two validation scenes (the trainer writes them into report.html / overlays.png)
    from dataclasses import replace

    two = replace(trainer.data, val=torch.utils.data.Subset(trainer.data.val, [0, 1]))
    items = trainer.task.report(trainer.model, two, trainer.evaluate()["model"], torch.device("cpu"))
    titles = [i.title for i in items]
    assert titles == ["Per-class IoU (validation)", "Validation overlays: image | ground truth | prediction",
                      "Validation samples"]
    assert len(items[0].table) == 11 and items[1].filename == "overlays.png" and len(items[2].grid) == 2
    assert Image.open(__import__("io").BytesIO(items[1].png)).size[0] > 200


def test_resume_is_bit_exact(tmp_path):
    """Fresh scenes are drawn from the RNGs the trainer seeds per item: a run paused mid-epoch and resumed ends
    with the weights (BatchNorm statistics included) of an uninterrupted one."""
    from visionattn.train.checkpoint import load_checkpoint

    full = _trainer(tmp_path, "full")
    full.fit()
    paused = _trainer(tmp_path, "paused")
    paused.fit(until_step=1)
    resumed = _trainer(tmp_path, "paused", resume_state=load_checkpoint(tmp_path / "paused" / "ckpt-00000001.pt"))
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_predict_reads_16_bit_microscopy_like_the_nuclei_data(tmp_path):
    from visionattn.tasks.segmentation.predict import read_input

    raw = (np.arange(64 * 48).reshape(48, 64) % 236).astype(np.uint16)  # 0..235, as the stardist image
    Image.fromarray(raw).save(tmp_path / "cells.png")
    image = read_input(str(tmp_path / "cells.png"), {"intensity": "percentile"})
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8 and image.max() == 255 and image.min() == 0
    plain = read_input(str(tmp_path / "cells.png"), {})  # load_image's 16-bit rule: v / 257, so nearly black
    assert plain.max() <= 1


def test_setr_decoders_experiment_quick(tmp_path):
    """The experiment file loads (every variant's config builds) and its --quick setting runs end to end: a table
    with mIoU per decoder, the ordering check and the plot."""
    import csv

    from visionattn.cli import main
    from visionattn.experiments.runner import check_plans
    from visionattn.experiments.spec import load_spec, plan_runs

    spec = load_spec("setr_decoders")
    assert spec.metric == "val_miou" and spec.ordering == [("naive", "pup"), ("naive", "mla")]
    check_plans(spec, plan_runs(spec), tmp_path)
    out = tmp_path / "exp"
    assert main(["experiment", "setr_decoders", "--quick", "--jobs", "1", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["variant"] for r in rows] == ["naive", "pup"] and all(r["status"] == "ok" for r in rows)
    assert all(0 < float(r["val_miou"]) <= 1 and float(r["gmacs"]) > 0 for r in rows)
    assert "naive < pup" in (out / "summary.md").read_text() and (out / "setr_decoders.png").is_file()
