"""The clip task end to end through the one trainer, on a small composed caption folder (noisy squares of 8 colours,
each captioned 'a <colour> square'; composed, not real data): it learns (image→text R@1 far above the same towers at
random init), ``visionattn eval`` and ``visionattn predict`` follow the checkpoint, and bad options say what they
expected. Learning on the real openclipart drawings is the slow test at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("open_clip")

from visionattn.tasks import PredictOptions  # noqa: E402
from visionattn.train.config import load_config  # noqa: E402
from visionattn.train.loop import Trainer  # noqa: E402

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (235, 220, 40),
           "black": (15, 15, 15), "white": (245, 245, 245), "purple": (130, 40, 170), "orange": (245, 140, 20)}


def write_colour_captions(root: Path, count: int = 240) -> list[Path]:
    """``count`` composed 16x16 PNGs: a noisy square of one of 8 colours on grey, each with ``<name>.txt``:
    'a <colour> square' (composed data: the pipeline must learn colour words from pictures)."""
    rng = np.random.default_rng(0)
    names = list(COLOURS)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        name = names[i % len(names)]
        pixels = np.full((16, 16, 3), 128, np.float32)
        top, left = rng.integers(0, 7, 2)
        pixels[top:top + 10, left:left + 10] = COLOURS[name]
        pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
        path = root / f"c{i:04d}.png"
        Image.fromarray(pixels).save(path)
        (root / f"c{i:04d}.txt").write_text(f"a {name} square\n")
        paths.append(path)
    return paths


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    return ["task=clip", "task.embed_dim=32", "task.text_model=clip_text_test", "task.text_overrides={depth: 1}",
            "task.context_length=16", "task.zero_shot=[]", "task.templates=['a {} square']", "model.name=vit_tiny_test",
            "model.overrides={patch: 4, dim: 32, depth: 1, heads: 2}", "data.name=caption_folder",
            f"data.path={root}", "data.img_size=16", "data.val_fraction=0.25", "data.random_resized_crop=false",
            "schedule.epochs=4", "schedule.batch_size=16", "schedule.warmup_epochs=0.5", "optim.lr=1e-3",
            "optim.weight_decay=0.0", "recipe.ema=false", "run.report=false", "run.num_workers=0",
            "run.log_every=1000", "run.device=cpu", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    write_colour_captions(root / "colours")
    trainer = Trainer(load_config(overrides=tiny_overrides(root / "colours")), run_dir=root / "run", log=lambda m: None)
    before = trainer.evaluate()["model"].metrics
    trainer.fit()
    return trainer, before, root


def test_learns_far_above_chance_and_random_init(trained):
    trainer, before, _ = trained
    after = trainer.counters.metrics
    assert after["val_i2t_r1"] > 0.8 > before["i2t_r1"] + 0.3, (before, after)
    assert after["val_mean_recall"] > before["mean_recall"] + 0.2, (before, after)
    assert trainer.model.scale() <= 100.0 and "train_i2t_acc" in after and "val_logit_scale" in after


def test_eval_and_predict_follow_the_checkpoint(trained, capsys):
    from visionattn.cli import main
    from visionattn.train.evaluate import evaluate_checkpoint, predict_checkpoint

    trainer, _, root = trained
    best = trainer.run_dir / "best.pt"
    evaluation, restored = evaluate_checkpoint(best, device="cpu")
    assert restored.task.name == "clip" and 0.0 <= evaluation.metrics["mean_recall"] <= 1.0
    assert "image→text R@1" in restored.task.format_evaluation(evaluation, restored.meta)
    blue = sorted((root / "colours").glob("*.png"))[2]  # colour 2 of 8: blue
    (root / "broken.png").write_bytes(b"not a png")
    texts = [f"a {c} square" for c in COLOURS]
    out = predict_checkpoint(best, [str(blue), str(root / "broken.png")],
                             PredictOptions(top_k=3, texts=texts, out_dir=root / "pred"), device="cpu")
    assert out.lines[0].startswith(f"{blue}: a blue square ") and out.lines[0].count("%") == 3
    assert out.lines[1].startswith(f"{root / 'broken.png'}: error:") and out.errors == 1
    assert {p.name for p in out.files} == {"predictions.png", "predictions.json"}
    assert main(["predict", str(best), str(blue), "--text", "a blue square", "--text", "a red square",
                 "--device", "cpu"]) == 0
    assert "a blue square" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--threshold is for detection"):
        predict_checkpoint(best, [str(blue)], PredictOptions(threshold=0.5), device="cpu")


def test_bad_options_and_data_are_named(tmp_path):
    root = tmp_path / "colours"
    write_colour_captions(root, count=12)
    with pytest.raises(ValueError, match=r"task.zero_shot: expected names among \('heldout', 'fashion_mnist', "
                                         r"'digits'\), got \['imagenet'\]"):
        load_config(overrides=tiny_overrides(root, "task.zero_shot=[imagenet]"))
    with pytest.raises(ValueError, match="task.templates: expected a non-empty list of strings with a {} slot"):
        load_config(overrides=tiny_overrides(root, "task.templates=['no slot']"))
    with pytest.raises(ValueError, match="'task.label_smoothing' belongs to task 'classification'"):
        load_config(overrides=tiny_overrides(root, "task.label_smoothing=0.1"))
    cfg = load_config(overrides=tiny_overrides(root, "task.text_model=vit_tiny_test"))
    with pytest.raises(ValueError, match="task.text_model: expected a text tower"):
        Trainer(cfg, run_dir=tmp_path / "run", log=lambda m: None)
    cfg = load_config(overrides=tiny_overrides(root, "task.text_overrides={context_length: 8}"))
    with pytest.raises(ValueError, match="set the context length with task.context_length"):
        Trainer(cfg, run_dir=tmp_path / "run", log=lambda m: None)
    cfg = load_config(overrides=tiny_overrides(root, "schedule.batch_size=1", "data.val_fraction=0.5"))
    with pytest.raises(ValueError, match="expected a per-rank batch of at least 2"):
        Trainer(cfg, run_dir=tmp_path / "run", log=lambda m: None)
    cfg = load_config(overrides=tiny_overrides(root, "data.val_fraction=0.0"))
    with pytest.raises(ValueError, match=r"12 training and 0 validation images after the split"):
        Trainer(cfg, run_dir=tmp_path / "run", log=lambda m: None)


@pytest.mark.slow
def test_learns_on_real_openclipart(tmp_path):
    """72 updates on the real drawings: validation retrieval far above the same towers at random init. (Zero-shot on
    the held-out categories is evaluated but not asserted: it is not reached at this scale, docs/clip.md.)"""
    cfg = load_config(overrides=["task=clip", "schedule.epochs=3", "run.report=false", "run.device=cpu",
                                 "run.eval_every=3", "task.zero_shot=[heldout]"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run", log=lambda m: None)
    before = trainer.evaluate()["model"].metrics
    trainer.fit()
    after = trainer.counters.metrics
    assert after["val_mean_recall"] > 2 * before["mean_recall"], (before, after)
    assert after["val_i2t_r10"] > 5 * before["i2t_r10"], (before, after)  # measured 9.4% vs 1.4%
    assert 0.0 <= after["val_zs_heldout_top1"] <= 1.0 and after["val_logit_scale"] <= 100.0


def test_mapping_options_are_replaced_not_merged(tmp_path):
    """A config layer that gives ``task.text_overrides`` replaces the default config's (as a command-line override
    does), so the config a checkpoint keeps rebuilds exactly the trained towers."""
    from visionattn.train.config import config_from_yaml, config_to_yaml

    default = load_config(overrides=["task=clip"])
    assert default.task.text_overrides == {"mlp_ratio": 2.0}  # from configs/clip_openclipart.yaml
    layer = tmp_path / "layer.yaml"
    layer.write_text("task:\n  name: clip\n  text_overrides: {depth: 1}\n")
    from_file = load_config(layer)
    from_flag = load_config(overrides=["task=clip", "task.text_overrides={depth: 1}"])
    assert from_file.task.text_overrides == from_flag.task.text_overrides == {"depth": 1}
    assert config_from_yaml(config_to_yaml(from_flag)).task == from_flag.task


def test_report_has_the_metric_table_and_the_top5_picture(trained):
    trainer, _, _ = trained
    evaluation = trainer.evaluate()["model"]
    items = trainer.task.report(trainer.model, trainer.data, evaluation, torch.device("cpu"))
    titles = [item.title for item in items]
    assert titles == ["Retrieval and zero-shot (validation) vs chance", "Top-5 captions of validation images"]
    assert items[1].png.startswith(b"\x89PNG") and items[1].filename == "retrieval_top5.png"
    assert {row["metric"] for row in items[0].table} >= {"image→text R@1", "mean recall (primary)"}
