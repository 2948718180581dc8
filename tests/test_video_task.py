"""The video task through the one trainer: config (``task=video`` starts from its default config; its keys and
checks), data on moving digits and on files, multi-clip averaging (the metric scores videos, not clips), a short run
that checkpoints, evaluates, predicts and reports (the space-time attention maps lie where each pattern allows),
and learning on moving digits (slow) next to a single-frame model of the same size at chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from video_files import bar_frames, write_frames, write_video

from visionattn.data import DataConfig
from visionattn.tasks import PredictOptions, get_task
from visionattn.tasks.video import VideoOptions
from visionattn.tasks.video.attention_maps import brightest_token, space_time_maps
from visionattn.tasks.video.data import build_video_data
from visionattn.train.config import load_config
from visionattn.train.loop import Trainer

TINY = ["task=video", "task.digits_train=48", "task.digits_val=16", "task.num_frames=4", "task.digits_frames=6",
        "model.name=vivit_spatiotemporal_test", "schedule.epochs=1", "schedule.batch_size=16",
        "schedule.warmup_epochs=0", "recipe.ema=false", "run.num_workers=0", "run.log_every=1000",
        "run.eval_batch_size=8", "run.device=cpu", "run.threads=1"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_config_starts_from_the_video_default_and_checks_its_keys():
    cfg = load_config(overrides=["task=video"])
    assert isinstance(cfg.task, VideoOptions) and cfg.data.name == "moving_digits"
    assert cfg.model.name == "vivit_factorised_self_attention_test"
    with pytest.raises(ValueError, match=r"'task.mixup' belongs to task 'classification', not 'video'"):
        load_config(overrides=["task=video", "task.mixup=0.2"])
    with pytest.raises(ValueError, match=r"task.frame_stride: expected 1 with sampling=uniform"):
        load_config(overrides=["task=video", "task.sampling=uniform", "task.frame_stride=2"])
    with pytest.raises(ValueError, match=r"task.short_videos: expected one of \('loop', 'pad', 'skip'\), got 'trim'"):
        load_config(overrides=["task=video", "task.short_videos=trim"])


def test_moving_digits_data_and_multi_clip_averaging():
    """Validation items stack ``test_clips`` clips; the task's evaluation output is the log of the clips' mean
    softmax, so the metric counts each video once."""
    opts = VideoOptions(num_frames=4, digits_frames=8, digits_train=8, digits_val=6, test_clips=3)
    data = build_video_data(DataConfig(name="moving_digits", img_size=32), opts)
    assert data.meta["classes"] == ["moving right", "moving left", "moving down", "moving up"]
    assert data.train[0]["video"].shape == (3, 4, 32, 32) and data.val[0]["video"].shape == (3, 3, 4, 32, 32)
    assert "8 train / 6 val videos" in data.description
    task = get_task("video")(opts)

    def model(x):  # a stand-in whose 4 logits are pixels of the clip: confident, and different for every clip
        return 3 * x.flatten(1)[:, 40:44]

    batch = {"video": torch.stack([data.val[i]["video"] for i in range(2)]), "label": torch.tensor([0, 1])}
    out = task.eval_forward(model, batch)
    each = torch.stack([model(batch["video"][b]).softmax(-1).mean(0) for b in range(2)])  # (2, 4)
    clip_logp = torch.stack([model(batch["video"][b]).log_softmax(-1).mean(0) for b in range(2)])
    torch.testing.assert_close(out, each.log())
    assert (out - clip_logp).abs().max() > 1e-2  # the mean of the probabilities, not of the log-probabilities
    metric = task.metric(data.meta)
    metric.update(out, batch)
    assert int(metric.confusion.sum()) == 2


@pytest.mark.filterwarnings("ignore::visionattn.data.config.SkippedImageWarning")
def test_file_data_split_short_videos_and_skips(tmp_path):
    pytest.importorskip("av")
    root = tmp_path / "clips"
    for label in ("a", "b"):
        for i in range(3):
            write_video(root / label / f"{i}.mp4", bar_frames((3, 5, 9)[i]))  # 5 = a clip's span: not short
    (root / "a" / "bad.mp4").write_bytes(b"nope")
    cfg = DataConfig(name="video_folder", path=str(root), img_size=16, val_fraction=0.34)
    with pytest.warns(UserWarning, match=r"2 videos shorter than a clip \(5 frames\) are looped from their start"):
        data = build_video_data(cfg, VideoOptions(num_frames=5))
    assert len(data.train) == 4 and len(data.val) == 2
    assert data.skipped == [(str(root / "a" / "bad.mp4"), data.skipped[0][1])] and "undecodable" in data.skipped[0][1]
    assert data.train[0]["video"].shape == (3, 5, 16, 16)
    skip = build_video_data(cfg, VideoOptions(num_frames=5, short_videos="skip"))
    assert len(skip.train) + len(skip.val) == 4
    assert sum("shorter than a clip" in r for _, r in skip.skipped) == 2
    with pytest.raises(ValueError, match=r"the video task trains on data.name in .*got 'digits'"):
        build_video_data(DataConfig(name="digits"), VideoOptions())


def test_a_short_run_checkpoints_evaluates_predicts_and_reports(tmp_path):
    pytest.importorskip("av")
    from visionattn.train.evaluate import evaluate_checkpoint, predict_checkpoint

    trainer = Trainer(load_config(overrides=[*TINY, "run.report=true"]), run_dir=tmp_path / "run", log=lambda m: None)
    trainer.fit()
    assert (tmp_path / "run" / "space_time_attention.png").stat().st_size > 1000
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Space-time attention" in html and "Validation clips" in html
    ckpt = tmp_path / "run" / "best.pt"
    evaluation, restored = evaluate_checkpoint(ckpt, device="cpu")
    assert restored.task.name == "video" and 0 <= evaluation.metrics["top1"] <= 1
    video = write_video(tmp_path / "in" / "bar.mp4", bar_frames(10, 32, 32))
    folder = write_frames(tmp_path / "in" / "frames", bar_frames(3, 32, 32))
    (tmp_path / "in" / "bad.mp4").write_bytes(b"nope")
    out = predict_checkpoint(ckpt, [str(video), str(folder), str(tmp_path / "in" / "bad.mp4")],
                             PredictOptions(top_k=2), device="cpu")
    assert out.errors == 1 and len(out.lines) == 3
    assert out.lines[0].startswith(f"{video}: moving ") and out.lines[0].count("%") == 2
    assert out.lines[1].startswith(f"{folder}: moving ")  # 3 frames, clips of 4: looped
    assert out.lines[2].startswith(f"{tmp_path / 'in' / 'bad.mp4'}: error: undecodable")
    with pytest.raises(ValueError, match="video predict takes video files"):
        predict_checkpoint(ckpt, [str(video)], PredictOptions(texts=["a"]), device="cpu")


@pytest.mark.parametrize("name, allowed", [
    ("vivit_spatiotemporal_test", ["everywhere"]),
    ("vivit_factorised_self_attention_test", ["frame", "tube"]),
    ("vivit_factorised_dot_product_test", ["frame", "tube"]),
    ("timesformer_test", ["tube", "frame"]),
    ("vivit_factorised_encoder_test", ["frames"]),
])
def test_space_time_maps_lie_where_each_pattern_allows(name, allowed):
    from visionattn.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=4)
    clip = torch.randn(3, 4, 32, 32)
    clip[:, :, 8:16, 16:24] += 4  # a bright patch: the query of the middle tubelet frame
    maps, query, grid = space_time_maps(model, clip)
    assert query == (grid[0] // 2, 1, 2)
    assert len(maps) == len(allowed)
    t, h, w = query
    for m, where in zip(maps, allowed, strict=True):
        weights = m.weights
        assert weights.shape == grid and 0.5 < float(weights.sum()) <= 1 + 1e-5  # (the rest: the class token)
        if model.num_prefix_tokens == 0 or m.label.startswith("across time"):
            assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5)
        inside = torch.zeros(grid, dtype=torch.bool)
        if where == "frame":
            inside[t] = True
        elif where == "tube":
            inside[:, h, w] = True
        else:  # everywhere; the encoder's frame weights are spread over every frame
            inside[:] = True
        assert float(weights[~inside].abs().sum()) == 0 and bool((weights[inside] > 0).all())
    assert brightest_token(clip, grid, frame=0) == (0, 1, 2)


@pytest.mark.slow
def test_moving_digits_learned_and_a_single_frame_model_is_at_chance(tmp_path):
    """Direction of motion: ViViT model 1 (8 frames, tubelets 2×8×8) above 90 % after 2 epochs of 2,000 videos; the
    same model on single frames stays near chance (25 %)."""
    common = ["configs/video_spatiotemporal.yaml", "task.digits_train=2000", "task.digits_val=400",
              "schedule.epochs=2", "run.report=false", "run.num_workers=0"]
    root = Path(__file__).resolve().parents[1]
    video = Trainer(load_config(root / common[0], overrides=common[1:]), run_dir=tmp_path / "v", log=lambda m: None)
    video.fit()
    frame = Trainer(load_config(root / "configs/video_single_frame.yaml", overrides=common[1:]),
                    run_dir=tmp_path / "f", log=lambda m: None)
    frame.fit()
    assert video.best_metric > 0.9
    assert frame.best_metric < 0.35, frame.best_metric
    assert np.isfinite(frame.best_metric)
