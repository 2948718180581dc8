"""RunReporter: CSV + TensorBoard logging and the self-contained report, on a fake run in a temporary directory,
with the classification task's sections (confusion matrix, per-class table, sample grid) as report items."""

import csv
import re

import numpy as np
import pytest
import torch
from PIL import Image

from visionattn.plotting import image_png
from visionattn.tasks import ReportItem
from visionattn.tasks.base import GridImage
from visionattn.tasks.classification.report import confusion_items, confusion_png
from visionattn.train.report import RunReporter, read_csv_columns

CLASSES = ["zero", "one", "two<&>"]  # a name that needs HTML escaping
CONFIG = "model: vit_tiny_test\nepochs: 3\noptimizer:\n  lr: 0.0005\n"


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _fake_run(run_dir, epochs=3, steps_per_epoch=4):
    rep = RunReporter(run_dir)
    for e in range(epochs):
        for s in range(steps_per_epoch):
            step = e * steps_per_epoch + s
            rep.log_step(step, {"loss": 2.0 / (step + 1), "lr": 1e-3 * (s + 1) / steps_per_epoch})
        extra = {"ema_acc1": 0.8125} if e == epochs - 1 else {}  # a metric that appears late
        rep.log_epoch(e, {"train_loss": 1.0 / (e + 1), "val_loss": 1.5 / (e + 1), "val_acc1": 0.5 + 0.125 * e,
                          "lr": torch.tensor(1e-3 / (e + 1)), **extra})
    return rep


def _items():
    confusion = np.array([[5, 1, 0], [0, 4, 2], [1, 0, 7]])
    grid = [GridImage(image_png(torch.rand(3, 8, 8)), "true: zero", True),
            GridImage(image_png(torch.rand(3, 16, 12)), "true: one · pred: two<&>", False),
            GridImage(image_png(torch.rand(1, 8, 8)), "true: two<&>", True)]
    return [*confusion_items(confusion, CLASSES), ReportItem("Validation samples", text="2 of 3", grid=grid)]


def test_reporter_writes_csv_tensorboard_pngs_and_html(tmp_path):
    run = tmp_path / "run"
    rep = _fake_run(run)
    summary = {"wall_time_s": 12.5, "skipped_files": ["bad.png", "empty.jpg"], "non_finite_steps": 3,
               "best_val_acc1": 0.75, "val_acc1": 0.75}
    html_path = rep.finish(summary, CONFIG, _items())
    rep.close()

    rows = _rows(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_acc1", "lr", "ema_acc1"]
    assert float(rows[2]["val_acc1"]) == 0.75 and float(rows[1]["lr"]) == pytest.approx(5e-4)
    assert rows[0]["ema_acc1"] == "" and float(rows[2]["ema_acc1"]) == 0.8125
    steps = _rows(run / "steps.csv")
    assert [int(r["step"]) for r in steps] == list(range(12))
    assert float(steps[3]["loss"]) == pytest.approx(0.5)

    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "epoch/val_acc1", "epoch/ema_acc1"} <= tags
    assert [e.step for e in acc.Scalars("epoch/val_acc1")] == [0, 1, 2]

    for name in ("curves.png", "confusion.png"):  # the confusion item names its file
        with Image.open(run / name) as im:
            im.verify()
        with Image.open(run / name) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100

    assert html_path == run / "report.html"
    page = html_path.read_text(encoding="utf-8")
    assert "model: vit_tiny_test" in page and "lr: 0.0005" in page  # the config, verbatim
    assert "val_acc1" in page and "0.8125" in page and "0.75" in page  # final metrics
    assert "non_finite_steps" in page and "bad.png" in page and 'class="warn"' in page
    assert "two&lt;&amp;&gt;" in page and "two<&>" not in page  # class names escaped
    assert page.count("<th>val_acc1</th>") == 1  # each metric once: the summary does not repeat the table
    assert "best_val_acc1" in page
    assert page.count('src="data:image/png;base64,') == 3 + 2  # grid + curves, confusion
    assert page.count('<figure class="ok">') == 2 and page.count('<figure class="bad">') == 1
    assert "<th>accuracy (recall)</th>" in page  # the per-class table
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # every reference is inline


def test_resumed_run_appends_and_drops_rows_after_the_checkpoint(tmp_path):
    rep = _fake_run(tmp_path, epochs=3, steps_per_epoch=2)  # steps 0..5, epochs 0..2
    rep.close()
    rep = RunReporter(tmp_path)  # resumed from a checkpoint at the end of epoch 0 (step 2)
    rep.log_step(2, {"loss": 9.0, "lr": 1e-3, "grad_norm": 1.5})
    rep.log_epoch(1, {"train_loss": 0.25, "val_loss": 0.5, "val_acc1": 0.9, "lr": 1e-4})
    rep.close()
    rep.log_epoch(2, {"train_loss": 0.1})  # after close: ignored
    steps = read_csv_columns(tmp_path / "steps.csv")
    assert steps["step"] == [0, 1, 2] and steps["loss"][2] == 9.0
    assert steps["grad_norm"] == [None, None, 1.5]  # a new key widened the header
    epochs = read_csv_columns(tmp_path / "metrics.csv")
    assert epochs["epoch"] == [0, 1] and epochs["val_acc1"] == [0.5, 0.9]
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2


def test_disabled_reporter_writes_nothing(tmp_path):
    run = tmp_path / "rank1"
    rep = RunReporter(run, enabled=False)
    rep.log_step(0, {"loss": 1.0})
    rep.log_epoch(0, {"val_acc1": 0.5})
    path = rep.finish({"a": 1}, CONFIG, _items())
    rep.close()
    assert path == run / "report.html"
    assert not run.exists() and list(tmp_path.iterdir()) == []


def test_confusion_checks_its_classes_and_an_item_filename_stays_in_the_run_dir(tmp_path):
    with pytest.raises(ValueError, match=r"expected shape \(3, 3\).*got \(2, 2\)"):
        confusion_png(np.eye(2), CLASSES)
    with pytest.raises(ValueError, match="non-negative finite"):
        confusion_png(-np.eye(3), CLASSES)
    with RunReporter(tmp_path) as rep, pytest.raises(ValueError, match="plain file name"):
        rep.finish({}, CONFIG, [ReportItem("x", png=image_png(torch.rand(3, 4, 4)), filename="../escape.png")])
    assert not (tmp_path.parent / "escape.png").exists()


def test_finish_before_any_epoch_still_writes_a_valid_report(tmp_path):
    with RunReporter(tmp_path) as rep:
        path = rep.finish({}, "", [])
    with Image.open(tmp_path / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 0
    page = path.read_text(encoding="utf-8")
    assert "no epochs logged" in page
    assert not (tmp_path / "confusion.png").exists()
