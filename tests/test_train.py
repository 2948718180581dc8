"""Training: config layering (with the task section), the generic recipe pieces (param groups, schedule, EMA), the
non-finite guard, and ``visionattn train / eval / predict`` on tiny seeded data (a few dozen 16x16 images, 2-block
ViT, the classification task). The classification task's own pieces (DeiT losses, distillation) are in
test_classification.py; a task defined in a test file trains through the same Trainer in test_task_contract.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from visionattn.data import DataBundle, build_transform
from visionattn.data.builtin import ArrayDataset
from visionattn.models import create_model
from visionattn.tasks.classification.data import data_from_bundle
from visionattn.train.config import TrainConfig, apply_overrides, config_to_yaml, load_config
from visionattn.train.loop import NonFiniteLoss, Trainer
from visionattn.train.optim import build_optimizer, build_scheduler, no_decay_names, param_groups

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["a", "b", "c", "d"]

# tiny, but with every source of randomness on: RandAugment + crop + flip (data), Mixup (numpy), dropout and
# stochastic depth (torch), EMA
TINY = [
    "model.name=vit_tiny_test",
    "model.overrides={patch: 8, dim: 32, depth: 2, heads: 2, drop_path: 0.2, drop_rate: 0.1}",
    "data.img_size=16",
    "data.randaugment=rand-m9-mstd0.5",
    "data.random_resized_crop=true",
    "data.hflip=true",
    "schedule.epochs=2",
    "schedule.batch_size=8",
    "schedule.warmup_epochs=0.5",
    "optim.lr=1e-3",
    "task.mixup=0.4",
    "recipe.ema=true",
    "recipe.ema_decay=0.9",
    "run.report=false",
    "run.log_every=1000",
    "run.eval_batch_size=64",
    "run.num_workers=0",
    "run.device=cpu",  # bit-exactness (resume) is promised on CPU; a GPU would run nondeterministic kernels
]


def tiny_config(*extra: str) -> TrainConfig:
    return load_config(overrides=TINY + list(extra))


def tiny_images(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, list[int]]:
    """``n`` RGB uint8 images whose class (0..3) sets the colour of a quadrant, plus noise: learnable."""
    rng = np.random.default_rng(seed)
    labels = [i % len(CLASSES) for i in range(n)]
    images = rng.integers(0, 60, size=(n, size, size, 3), dtype=np.uint8)
    h = size // 2
    for i, y in enumerate(labels):
        r, c = divmod(y, 2)
        images[i, r * h:(r + 1) * h, c * h:(c + 1) * h, y % 3] = 230
    return images, labels


def tiny_bundle(cfg: TrainConfig, n_train: int = 40, n_val: int = 16) -> DataBundle:
    """In-memory data through the real transforms of ``cfg.data`` (augmentation included)."""
    x, y = tiny_images(n_train, seed=1, size=cfg.data.img_size)
    xv, yv = tiny_images(n_val, seed=2, size=cfg.data.img_size)
    train = ArrayDataset(x, y, CLASSES, build_transform(cfg.data, True))
    val = ArrayDataset(xv, yv, CLASSES, build_transform(cfg.data, False))
    return DataBundle(train, val, list(CLASSES), cfg.data.img_size)


def make_trainer(tmp_path: Path, cfg: TrainConfig, name: str = "run", **kwargs) -> Trainer:
    messages = kwargs.pop("messages", [])
    data = data_from_bundle(tiny_bundle(cfg), cfg.data)
    return Trainer(cfg, run_dir=tmp_path / name, data=data, log=messages.append, **kwargs)


def write_image_folder(root: Path, per_class: int = 8, size: int = 16) -> Path:
    """``root/<class>/<i>.png`` for the 4 tiny classes (an ImageFolder for the CLI tests)."""
    images, labels = tiny_images(per_class * len(CLASSES), seed=3, size=size)
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        folder = root / CLASSES[y]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    return root


# -- config -------------------------------------------------------------------------------------------------
def test_overrides_are_typed_and_unknown_keys_list_the_valid_ones():
    cfg = load_config(overrides=["optim.lr=3e-4", "schedule.epochs=7", "data.mean=[0.1,0.2,0.3]",
                                 "task.teacher=null", "run.compile=true", "model.overrides.depth=3"])
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)  # YAML 1.1 reads "3e-4" as a string
    assert cfg.schedule.epochs == 7 and cfg.data.mean == (0.1, 0.2, 0.3) and cfg.run.compile is True
    assert cfg.model.overrides["depth"] == 3 and cfg.model.overrides["patch"] == 8  # merged into the defaults
    with pytest.raises(ValueError, match=r"unknown config key 'optim\.lrr'.*did you mean 'lr'.*weight_decay"):
        load_config(overrides=["optim.lrr=1"])
    with pytest.raises(ValueError, match=r"'schedule\.epochs': expected int, got 1\.5"):
        load_config(overrides=["schedule.epochs=1.5"])
    with pytest.raises(ValueError, match="sections: task, model, data, optim"):
        load_config(overrides=["optimizer.lr=1"])
    with pytest.raises(ValueError, match="run.precision: expected one of"):
        load_config(overrides=["run.precision=fp8"])
    # a new model name drops the default model's spec overrides (they would not fit another family)
    assert load_config(overrides=["model.name=resnet_test"]).model.overrides == {}


def test_default_yaml_is_the_defaults_and_the_resolved_config_round_trips(tmp_path):
    from_file = load_config(ROOT / "configs" / "default.yaml")
    assert from_file == TrainConfig()
    (tmp_path / "c.yaml").write_text("schedule:\n  epochs: 3\nmodel:\n  name: swin_test\n")
    cfg = load_config(tmp_path / "c.yaml", ["optim.lr=1e-4"])
    assert (cfg.schedule.epochs, cfg.model.name, cfg.model.overrides, cfg.optim.lr) == (3, "swin_test", {}, 1e-4)
    assert load_config(overrides=[]) == TrainConfig()
    text = config_to_yaml(cfg)
    assert apply_overrides(load_config(), []) == TrainConfig()
    assert yaml.safe_load(text)["schedule"]["epochs"] == 3
    with pytest.raises(ValueError, match="unknown config key 'schedule.epoch'"):
        (tmp_path / "bad.yaml").write_text("schedule:\n  epoch: 3\n")
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    cfg = load_config(path)
    create_model(cfg.model.name, num_classes=10, img_size=cfg.data.img_size, **cfg.model.overrides)


# -- recipe pieces --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, tokens", [("vit_tiny_test", {"cls_token", "prefix_pos", "pos_embed.weight"}),
                                          ("deit_tiny_distilled_test",
                                           {"cls_token", "dist_token", "prefix_pos", "pos_embed.weight"}),
                                          ("resnet_test", set())])
def test_no_weight_decay_exactly_on_norms_biases_and_position_tables(name, tokens):
    model = create_model(name, num_classes=4)
    expected = {n for n, p in model.named_parameters() if p.ndim == 1} | tokens
    assert no_decay_names(model) == expected
    groups = {g["name"]: g for g in param_groups(model, 0.05)}
    assert set(groups["no_decay"]["param_names"]) == expected and groups["no_decay"]["weight_decay"] == 0.0
    decayed = set(groups["decay"]["param_names"])
    assert groups["decay"]["weight_decay"] == 0.05 and decayed == {n for n, _ in model.named_parameters()} - expected
    assert all(model.get_parameter(n).ndim >= 2 for n in decayed)
    optimizer = build_optimizer(model, load_config().optim)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_warmup_then_cosine_per_update():
    cfg = load_config(overrides=["optim.lr=1e-3", "schedule.epochs=10", "schedule.warmup_epochs=1",
                                 "schedule.warmup_lr=1e-6", "schedule.min_lr=1e-5"])
    optimizer = build_optimizer(torch.nn.Linear(4, 4), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, updates_per_epoch=10)  # warmup 10, cosine 90 updates

    def lr_at(step):
        scheduler.step_update(step)
        return optimizer.param_groups[0]["lr"]

    assert lr_at(0) == pytest.approx(1e-6)
    assert lr_at(5) == pytest.approx(1e-6 + 0.5 * (1e-3 - 1e-6))
    assert lr_at(10) == pytest.approx(1e-3)
    assert lr_at(55) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half-way through the cosine
    assert lr_at(100) == pytest.approx(1e-5)
    assert all(g["lr"] == optimizer.param_groups[0]["lr"] for g in optimizer.param_groups)


def test_ema_tracks_but_differs_from_the_trained_weights(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config())
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit(until_step=4)
    raw, ema = trainer.model.state_dict(), trainer.ema.module.state_dict()
    key = "stages.0.attn.qkv.weight"
    assert not torch.equal(raw[key], initial[key]) and not torch.equal(ema[key], initial[key])
    assert not torch.equal(raw[key], ema[key])
    # the EMA lies between the start and the trained weights (decay 0.9 with warmup, 4 updates)
    assert (ema[key] - raw[key]).norm() < (initial[key] - raw[key]).norm()


# -- non-finite losses -----------------------------------------------------------------------------------------
def test_nonfinite_loss_skips_the_update_and_counts_it_then_stops_after_n_in_a_row(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config("recipe.max_nonfinite=3"), messages=(messages := []))
    trainer.fit(until_step=1)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ema_before = {k: v.clone() for k, v in trainer.ema.module.state_dict().items()}
    real_loss = trainer.task.criterion.forward
    poison = {"on": True}

    def loss(*args):
        value, terms = real_loss(*args)
        return (value * float("nan") if poison["on"] else value), terms

    trainer.task.criterion.forward = loss
    trainer.fit(until_step=2)  # one poisoned update
    c = trainer.counters
    assert c.nonfinite_total == 1 and c.nonfinite_consecutive == 1 and trainer.step == 2
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())  # no optimizer update
    assert all(torch.equal(v, ema_before[k]) for k, v in trainer.ema.module.state_dict().items())
    assert all(p.grad is None for p in trainer.model.parameters())
    assert any("update skipped" in m for m in messages)
    poison["on"] = False
    trainer.fit(until_step=3)  # a good update resets the run of bad ones
    assert c.nonfinite_consecutive == 0 and c.nonfinite_total == 1
    assert not torch.equal(trainer.model.state_dict()["head.weight"], before["head.weight"])
    poison["on"] = True
    with pytest.raises(NonFiniteLoss, match=r"3 updates in a row.*max_nonfinite=3"):
        trainer.fit()
    assert trainer.counters.nonfinite_total == 4 and trainer.step == 6


def update(trainer: Trainer, batches: list):
    """One :func:`run_update` of ``trainer``'s modules and task on ``batches``."""
    from visionattn.train.step import run_update

    ctx = trainer._context()
    return run_update(trainer.train_module, list(trainer.model.parameters()), trainer.optimizer, batches,
                      lambda module, batch: trainer.task.loss(module, batch, ctx), device=trainer.device,
                      precision=trainer.precision, info=trainer.info, clip_grad=trainer.cfg.optim.clip_grad)


def test_an_inf_image_is_a_skipped_step(tmp_path):
    cfg = tiny_config("task.mixup=0.0")
    trainer = make_trainer(tmp_path, cfg)
    batch = next(iter(trainer.loader))
    assert set(batch) == {"image", "label"}
    batch["image"][0, 0, 0, 0] = float("inf")
    before = trainer.model.state_dict()["head.weight"].clone()
    result = update(trainer, [batch])
    assert result.skipped and math.isnan(float(result.loss))
    assert torch.equal(trainer.model.state_dict()["head.weight"], before)
    assert all(p.grad is None for p in trainer.model.parameters())
    batch["image"][0, 0, 0, 0] = 0.5  # the same batch, finite: a real update
    result = update(trainer, [batch])
    assert not result.skipped and math.isfinite(float(result.loss))
    assert not torch.equal(trainer.model.state_dict()["head.weight"], before)


# -- a whole run, eval and predict through the command line ---------------------------------------------------
def test_train_eval_predict_cli(tmp_path, capsys):
    from visionattn.cli import main

    data = write_image_folder(tmp_path / "imgs")
    run_dir = tmp_path / "run"
    args = ["train", "--run-dir", str(run_dir), "data.name=folder", f"data.path={data}", "data.img_size=16",
            "data.val_fraction=0.25", "model.overrides={patch: 8, dim: 32, depth: 1, heads: 2}",
            "schedule.epochs=2", "schedule.batch_size=8", "run.report=false", "run.log_every=2", "run.num_workers=0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "val_top1" in out and "done: final val top1" in out
    assert (run_dir / "config.yaml").is_file() and (run_dir / "best.pt").is_file()
    assert load_config(run_dir / "config.yaml").data.path == str(data)
    ckpt = sorted(run_dir.glob("ckpt-*.pt"))[-1]

    assert main(["eval", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "top-1:" in out and "top-4:" in out  # 4 classes: top-k is top-4
    for name in CLASSES:
        assert any(line.split()[:2] == [name, "2"] for line in out.splitlines())  # 2 val images per class

    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    images = [str(p) for p in sorted((data / "a").glob("*.png"))[:2]]
    assert main(["predict", str(ckpt), *images, str(bad), "--top-k", "2"]) == 1  # one file failed
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[2].startswith(f"{bad}: error")
    for line in out[:2]:
        probs = [float(tok.rstrip("%")) for tok in line.split(": ", 1)[1].split()[1::2]]
        assert len(probs) == 2 and probs[0] >= probs[1] and 0 < sum(probs) <= 100.01

    assert main(["eval", str(ckpt), "--data", "digits"]) == 2  # other classes: a clear error
    assert "classes" in capsys.readouterr().err
