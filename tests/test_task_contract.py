"""A new task needs no edit to ``visionattn/train``: a toy task defined in this file (regress an image's mean
colour) trains through the same Trainer — it learns, checkpoints, resumes bit-exactly (its own task state too),
and two DDP processes end where one process with the global batch ends. Plus the bad inputs of the task layer:
an unknown task, keys of another task's section, a checkpoint of one task given to another's eval."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from visionattn.comm import DistInfo, all_reduce_sum
from visionattn.models import create_model
from visionattn.models.config import spec_overrides
from visionattn.tasks import Evaluation, LossOutput, Task, TaskData, TaskOptions, register_task
from visionattn.train.config import load_config
from visionattn.train.loop import Trainer


@dataclass
class MeanColourOptions(TaskOptions):
    """weight: the loss weight (so that the loss term is weighted, as DETR's weight_dict does)."""

    weight: float = 2.0


class Colours(Dataset):
    """``n`` seeded random 16x16 RGB images; the target is each one's mean colour (3 numbers)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        base = torch.rand(n, 3, 1, 1, generator=g)
        self.images = (base + 0.3 * torch.randn(n, 3, 16, 16, generator=g)).clamp(0, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        image = self.images[i]
        return {"image": image, "colour": image.mean(dim=(1, 2))}


class SquaredError:
    def __init__(self):
        self.total, self.count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)

    def update(self, outputs, batch):
        self.total += ((outputs.float() - batch["colour"]) ** 2).sum().double().cpu()
        self.count += batch["colour"].numel()

    def reduce(self, info: DistInfo):
        self.total, self.count = all_reduce_sum(self.total, info), all_reduce_sum(self.count, info)

    def compute(self) -> Evaluation:
        return Evaluation({"mse": float(self.total / self.count)})


@register_task
class MeanColourTask(Task):
    name = "test_mean_colour"
    options_class = MeanColourOptions
    primary_metric = "mse"
    higher_is_better = False

    def __init__(self, options=None):
        super().__init__(options)
        self.updates_seen = 0  # task state that must survive a resume

    def build_data(self, data, seed):
        return TaskData(Colours(64, seed=1), Colours(16, seed=2), meta={"img_size": 16}, description="colours")

    def build_model(self, model, meta):
        return create_model(model.name, num_classes=3, img_size=meta["img_size"], **spec_overrides(model))

    def loss(self, module, batch, ctx):
        mse = F.mse_loss(module(batch["image"]), batch["colour"])
        err = (module(batch["image"]).detach() - batch["colour"]).abs().sum()
        return LossOutput(self.options.weight * mse, {"mse": self.options.weight * mse},
                          {"abs_err": (err, torch.tensor(batch["colour"].numel()))})

    def after_update(self, model, ctx):
        self.updates_seen += 1

    def metric(self, meta):
        return SquaredError()

    def state_dict(self):
        return {"updates_seen": self.updates_seen}

    def load_state_dict(self, state):
        self.updates_seen = int(state["updates_seen"])


@dataclass
class OtherOptions(TaskOptions):
    toy_other_knob: int = 7


@register_task
class OtherTask(MeanColourTask):
    name = "test_other"
    options_class = OtherOptions


TOY = ["task=test_mean_colour", "model.name=vit_tiny_test", "model.overrides={patch: 8, dim: 32, depth: 2, heads: 2}",
       "schedule.epochs=3", "schedule.batch_size=8", "schedule.warmup_epochs=0", "optim.lr=3e-3",
       "optim.clip_grad=null", "run.report=false", "run.num_workers=0", "run.log_every=1000",
       "run.eval_batch_size=16", "run.device=cpu"]


def toy_trainer(tmp_path: Path, name: str, *extra: str, **kwargs) -> Trainer:
    return Trainer(load_config(overrides=TOY + list(extra)), run_dir=tmp_path / name, log=lambda m: None, **kwargs)


def _weights(trainer: Trainer) -> dict:
    return {**{f"m.{k}": v for k, v in trainer.model.state_dict().items()},
            **{f"e.{k}": v for k, v in trainer.ema.module.state_dict().items()}}


def test_a_task_defined_here_learns_checkpoints_and_resumes_bit_exactly(tmp_path):
    from visionattn.train.checkpoint import load_checkpoint

    full = toy_trainer(tmp_path, "full")
    before = full.evaluate()["model"].metrics["mse"]
    summary = full.fit()
    after = full.counters.metrics["val_mse"]
    assert full.step == 24 and full.task.updates_seen == 24
    assert after < 0.5 * before, (before, after)  # it learned
    assert summary["best_val_mse"] == min(full.counters.metrics["val_mse"], full.counters.metrics["val_ema_mse"],
                                          summary["best_val_mse"])  # lower is better
    assert "val_loss" not in full.counters.metrics and "train_abs_err" in full.counters.metrics
    assert full.counters.metrics["train_loss"] == pytest.approx(full.counters.metrics["train_loss_mse"])

    paused = toy_trainer(tmp_path, "paused")
    paused.fit(until_step=13)  # mid-epoch 2
    state = load_checkpoint(tmp_path / "paused" / "ckpt-00000013.pt")
    assert state["task"] == "test_mean_colour" and state["task_state"] == {"updates_seen": 13}
    torch.manual_seed(99)  # whatever happens in between must not matter
    resumed = toy_trainer(tmp_path, "paused", resume_state=state)
    assert resumed.task.updates_seen == 13
    resumed.fit()
    assert resumed.task.updates_seen == 24
    a, b = _weights(full), _weights(resumed)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_bad_task_input_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown task 'colour'.*known tasks: .*classification.*test_mean_colour"):
        load_config(overrides=["task=colour"])
    with pytest.raises(ValueError, match=r"'task.toy_other_knob' belongs to task 'test_other', not 'test_mean_colour'"
                                         r"; keys of task 'test_mean_colour': weight"):
        load_config(overrides=[*TOY, "task.toy_other_knob=3"])
    with pytest.raises(ValueError, match=r"'task.label_smoothing' belongs to task 'classification'"):
        load_config(overrides=[*TOY, "task.label_smoothing=0.1"])
    cfg = load_config(overrides=[*TOY, "task.weight=0.5"])
    assert cfg.task == MeanColourOptions(weight=0.5)
    other = load_config(overrides=[*TOY, "task=test_other"])  # a new task starts from its own defaults
    assert other.task == OtherOptions()

    from visionattn.cli import main
    from visionattn.train.evaluate import evaluate_checkpoint

    trainer = toy_trainer(tmp_path, "run")
    trainer.fit(until_step=2)
    ckpt = tmp_path / "run" / "ckpt-00000002.pt"
    with pytest.raises(ValueError, match="holds a 'test_mean_colour' model, not a 'classification' one"):
        evaluate_checkpoint(ckpt, task="classification")
    assert main(["eval", str(ckpt), "--task", "classification", "--device", "cpu"]) == 2
    evaluation, restored = evaluate_checkpoint(ckpt, device="cpu")  # its own task: fine
    assert restored.task.name == "test_mean_colour" and evaluation.metrics["mse"] > 0
    with pytest.raises(ValueError, match="trained for task 'test_mean_colour'; the config is for task "
                                         "'classification'"):
        from visionattn.train.checkpoint import load_checkpoint

        Trainer(load_config(overrides=["run.report=false", "run.device=cpu"]), run_dir=tmp_path / "x",
                resume_state=load_checkpoint(ckpt), log=lambda m: None)


# -- two real DDP processes ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from visionattn.train.distributed import cleanup, init_distributed

    info = init_distributed(backend="gloo", device="cpu", timeout_s=120)
    try:
        trainer = toy_trainer(Path(out), "ddp", "schedule.epochs=1", info=info)
        trainer.fit(until_step=5)
        if info.is_main:
            torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, Path(out) / "ddp.pt")
    finally:
        cleanup(info)


def test_two_ddp_processes_train_the_task_like_one_process(tmp_path):
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    single = toy_trainer(tmp_path, "single", "schedule.epochs=1")
    start = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.fit(until_step=5)
    # AdamW divides each gradient by its running RMS: parameters whose true gradient is ~0 (the key bias, to which
    # softmax is blind) turn summation-order noise into steps of up to lr, so the tolerance is a fraction of the
    # per-step change (lr 3e-3), far below what a missing gradient all-reduce would leave
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp[key], value, atol=1e-4, rtol=0, msg=lambda m, k=key: f"{k}: {m}")
    moved = max(float((v - start[k]).abs().max()) for k, v in single.model.state_dict().items())
    assert moved > 5e-3  # the updates changed the weights far more than the tolerance: not vacuous


def test_predict_options_score_threshold_rule():
    """``--threshold`` overrides the task's default and must be a score in [0, 1] (detection, grounding)."""
    from visionattn.tasks.base import PredictOptions

    assert PredictOptions().score_threshold(0.7) == 0.7
    assert PredictOptions(threshold=0.25).score_threshold(0.7) == 0.25
    assert PredictOptions(threshold=0.0).score_threshold(0.7) == 0.0
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=rf"--threshold: expected a score in \[0, 1\], got {bad}"):
            PredictOptions(threshold=bad).score_threshold(0.7)
