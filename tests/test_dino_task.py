"""The DINO task through the one trainer: the teacher's EMA (the paper's formula after a real update), the last layer
frozen during the first epoch, a bit-exact resume of the student, the teacher and the center, evaluation,
``visionattn eval / predict / viz`` on its checkpoints, any backbone family, the config and its bad values, and the
trainer's step log showing non-accuracy statistics as plain numbers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from visionattn.tasks.dino import DinoCollapseWarning, DinoOptions, DinoTask
from visionattn.tasks.dino.loss import teacher_momentum
from visionattn.train.config import load_config
from visionattn.train.loop import Trainer

TINY = ["task=dino", "model.name=vit_tiny_test", "model.overrides={patch: 4, dim: 32, depth: 2, heads: 2}",
        "data.name=digits", "data.img_size=16", "data.train_fraction=0.03", "data.val_fraction=0.1",
        "task.local_size=8", "task.local_crops=2", "task.out_dim=64", "task.hidden_dim=32", "task.bottleneck_dim=16",
        "task.report_baselines=false", "task.linear_probe=false",
        "schedule.epochs=2", "schedule.batch_size=8", "schedule.warmup_epochs=0", "optim.lr=1e-3",
        "run.report=false", "run.num_workers=0", "run.log_every=1000", "run.eval_batch_size=128", "run.device=cpu",
        "run.threads=1"]


def tiny_trainer(tmp_path: Path, name: str, *extra: str, **kwargs) -> Trainer:
    return Trainer(load_config(overrides=TINY + list(extra)), run_dir=tmp_path / name, log=lambda m: None, **kwargs)


def _state(trainer: Trainer) -> dict:
    return {**{f"student.{k}": v for k, v in trainer.model.state_dict().items()},
            **{f"teacher.{k}": v for k, v in trainer.task.teacher.state_dict().items()},
            "center": trainer.task.criterion.center}


def test_the_default_config_is_dino_on_fashion_mnist():
    cfg = load_config(overrides=["task=dino"])
    assert isinstance(cfg.task, DinoOptions) and cfg.data.name == "fashion_mnist" and cfg.recipe.ema is False
    assert cfg.model.name == "vit_tiny_test" and cfg.task.local_size % cfg.model.overrides["patch"] == 0
    with pytest.raises(ValueError, match=r"'task.label_smoothing' belongs to task 'classification', not 'dino'"):
        load_config(overrides=["task=dino", "task.label_smoothing=0.1"])
    with pytest.raises(ValueError, match=r"task.teacher_temp: expected > 0, got -0.1"):
        load_config(overrides=["task=dino", "task.teacher_temp=-0.1"])
    with pytest.raises(ValueError, match=r"task.local_scale: expected 0 < low <= high <= 1, got \(0.5, 0.2\)"):
        load_config(overrides=["task=dino", "task.local_scale=[0.5, 0.2]"])


def test_teacher_ema_frozen_last_layer_and_bit_exact_resume(tmp_path):
    from visionattn.train.checkpoint import load_checkpoint

    full = tiny_trainer(tmp_path, "full")
    per_epoch = full.updates_per_epoch
    assert per_epoch >= 4
    student0 = {k: v.clone() for k, v in full.model.state_dict().items()}
    teacher0 = {k: v.clone() for k, v in full.task.teacher.state_dict().items()}
    assert all(torch.equal(student0[k], teacher0[k]) for k in student0)  # DINO starts them equal

    full.fit(until_step=1)  # one real update: teacher = m teacher0 + (1 - m) student1, m at step 0
    m = teacher_momentum(0, full.total_steps, 0.996)
    student1 = full.model.state_dict()
    for k, v in full.task.teacher.state_dict().items():
        torch.testing.assert_close(v, m * teacher0[k] + (1 - m) * student1[k], rtol=0, atol=1e-7)
    assert not torch.equal(full.task.criterion.center, torch.zeros_like(full.task.criterion.center))

    last = [k for k in student0 if "last_layer" in k]
    assert last and any(not torch.equal(student1[k], student0[k]) for k in student0 if k not in last)
    full.fit(until_step=per_epoch)  # the whole first epoch: the last layer never moves (no weight decay either)
    assert all(torch.equal(full.model.state_dict()[k], student0[k]) for k in last)
    full.fit()  # epoch 2 trains it
    assert any(not torch.equal(full.model.state_dict()[k], student0[k]) for k in last)
    ran = full.counters.metrics
    assert 0 <= ran["val_knn_top1"] <= 1 and "val_linear_top1" not in ran and ran["train_teacher_entropy"] > 0

    paused = tiny_trainer(tmp_path, "paused")
    paused.fit(until_step=per_epoch + 2)  # mid-epoch 2
    state = load_checkpoint(tmp_path / "paused" / f"ckpt-{per_epoch + 2:08d}.pt")
    assert state["task"] == "dino" and set(state["task_state"]) == {"teacher", "center"}
    torch.manual_seed(99)  # nothing in between may matter
    resumed = tiny_trainer(tmp_path, "paused", resume_state=state)
    resumed.fit()
    a, b = _state(full), _state(resumed)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_report_eval_predict_and_viz_follow_the_teacher(tmp_path, capsys):
    from visionattn.cli import main
    from visionattn.data.sources.base import LabeledImages  # noqa: F401  (the data layer imports cleanly)
    from visionattn.tasks import PredictOptions
    from visionattn.train.evaluate import evaluate_checkpoint, model_from_checkpoint, predict_checkpoint

    trainer = tiny_trainer(tmp_path, "run", "schedule.epochs=1", "task.linear_probe=true", "run.report=true",
                           "task.report_baselines=true")
    trainer.fit()
    assert trainer.counters.metrics["val_linear_top1"] > 0.1
    html = (tmp_path / "run" / "report.html").read_text()  # the report: DINO against random init and raw pixels
    assert "Attention maps: DINO vs random init" in html and "raw pixels" in html and "random init" in html
    assert (tmp_path / "run" / "dino_attention.png").stat().st_size > 1000
    ckpt = tmp_path / "run" / "best.pt"
    restored = model_from_checkpoint(ckpt)
    task = restored.task
    assert isinstance(task, DinoTask) and task.teacher is not None
    assert all(torch.equal(v, trainer.task.teacher.state_dict()[k]) for k, v in task.teacher.state_dict().items())
    assert task.attention_model(restored.model) is task.teacher.backbone
    evaluation, _ = evaluate_checkpoint(ckpt, device="cpu")
    assert evaluation.metrics["knn_top1"] == pytest.approx(trainer.counters.metrics["val_knn_top1"])
    assert main(["eval", str(ckpt), "--device", "cpu"]) == 0
    assert "knn_top1" in capsys.readouterr().out

    from PIL import Image

    images = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        Image.fromarray((torch.rand(20, 20, 3) * 255).byte().numpy()).save(path)
        images.append(str(path))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = predict_checkpoint(ckpt, images + [str(bad)], PredictOptions(top_k=3, out_dir=tmp_path / "pred"),
                             device="cpu")
    assert out.errors == 1 and len(out.lines) == 3 and "k-NN" in out.lines[0] and "error" in out.lines[2]
    assert out.lines[0].count("%") == 3 and (tmp_path / "pred" / "embeddings.npz").is_file()
    with pytest.raises(ValueError, match="--text and --threshold are for other tasks"):
        predict_checkpoint(ckpt, images, PredictOptions(texts=["a"]), device="cpu")

    assert main(["viz", str(ckpt), images[0], "--out", str(tmp_path / "viz"), "--device", "cpu"]) == 0
    written = sorted(p.name for p in (tmp_path / "viz").iterdir())
    assert "img0_input.png" in written and any(n.endswith("_cls.png") for n in written)


@pytest.mark.parametrize("name,overrides", [("swin_test", "{}"), ("resnet_test", "{}")])
def test_other_backbone_families_train(tmp_path, name, overrides):
    trainer = tiny_trainer(tmp_path, name, f"model.name={name}", f"model.overrides={overrides}", "schedule.epochs=1")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    assert any(not torch.equal(after[k], before[k]) for k in before)
    assert trainer.counters.metrics["val_knn_top1"] > 0.1  # 10 classes: k-NN on these features is above chance
    buffers = dict(trainer.task.teacher.named_buffers())  # BatchNorm statistics follow the student
    assert all(torch.equal(b, dict(trainer.model.named_buffers())[k]) for k, b in buffers.items())


def test_bad_model_and_data_choices_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"task.local_size: vit_tiny_test takes sides that are multiples of 4, got 6"):
        tiny_trainer(tmp_path, "a", "task.local_size=6")
    with pytest.raises(ValueError, match="expected data.grayscale_to_rgb=true, got false"):
        tiny_trainer(tmp_path, "b", "data.grayscale_to_rgb=false")


def test_collapse_is_warned_at_evaluation(tmp_path):
    trainer = tiny_trainer(tmp_path, "c", "schedule.epochs=1")
    trainer.task.criterion.center.fill_(0.0)
    trainer.task.options.teacher_temp = 1e3  # every teacher output flat: uniform collapse
    trainer.task.options.warmup_teacher_temp = 1e3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluation = trainer.evaluate()["model"]
    assert any(issubclass(w.category, DinoCollapseWarning) and "near uniform" in str(w.message) for w in caught)
    assert "warning: DINO collapse" in trainer.task.format_evaluation(evaluation, trainer.data.meta)


def test_step_log_shows_statistics_as_numbers_and_accuracies_as_percentages():
    from tqdm import tqdm

    from visionattn.comm import LOCAL
    from visionattn.train.results import Meter, _NullReporter, log_window
    from visionattn.train.step import StepResult

    meter = Meter()
    meter.add(StepResult(loss=torch.tensor(2.0), grad_norm=torch.tensor(1.0), skipped=False, samples=4,
                         stats={"teacher_entropy": (torch.tensor(9.0), torch.tensor(2.0)),
                                "acc": (torch.tensor(3.0), torch.tensor(4.0))}))
    lines = []
    log_window(meter, LOCAL, _NullReporter(), 1, 10, 0, 0.1, 1e-3, tqdm(disable=True), lines.append)
    assert "teacher_entropy 4.5 " in lines[0] and "acc 75.00%" in lines[0]
