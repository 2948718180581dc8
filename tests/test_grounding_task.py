"""The grounding task through the one trainer and the M-DETR model's contracts: ``task=grounding`` starts from its
default config; text padding changes nothing (the joint encoder masks it); the text reaches the boxes (gradients
flow into the text tower); a tiny model's loss falls on a fixed batch; it trains, checkpoints, evaluates (Recall@k
per phrase type and the text-blind baseline) and predicts (``--text``: drawn PNGs); the metric scores constructed
predictions exactly. A slow test shows learning on held-out phrases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from task_helpers import fixed_batch_losses

from visionattn.tasks import get_task
from visionattn.tasks.base import PredictOptions
from visionattn.tasks.grounding.metrics import GroundingMetric
from visionattn.tasks.grounding.model import NO_TEXT_LOGIT, MDetrSpec, build_mdetr
from visionattn.train.config import load_config

TINY = ["task=grounding", "model.name=resnet_test", "model.pretrained_path=null", "task.init_detr=null",
        "task.train_backbone=true",
        "task.frozen_bn=false", "task.num_queries=5", "task.hidden_dim=32", "task.heads=4", "task.enc_layers=1",
        "task.dec_layers=2", "task.ffn_dim=32", "task.text_dim=16", "task.text_heads=2", "task.text_depth=1",
        "task.scenes=[16, 6]", "data.img_size=32", "task.scene_scale=[1.5, 2.5]", "schedule.epochs=1",
        "schedule.batch_size=8", "schedule.warmup_epochs=0", "run.report=true", "run.num_workers=0",
        "run.log_every=1000", "run.eval_batch_size=8", "run.device=cpu", "optim.lr=1e-3"]


def test_default_config_and_bad_options():
    cfg = load_config(overrides=["task=grounding"])
    assert cfg.data.name == "digit_phrases" and cfg.task.num_queries == 6 and not cfg.task.train_backbone
    with pytest.raises(ValueError, match=r"task.hidden_dim: expected a multiple of 4 and of heads 4, got 30"):
        load_config(overrides=[*TINY, "task.hidden_dim=30"])
    with pytest.raises(ValueError, match=r"dataset 'digit_scenes' gives no grounding data"):
        get_task("grounding")(load_config(overrides=TINY).task).build_data(
            load_config(overrides=[*TINY, "data.name=digit_scenes"]).data, 0)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_mdetr("resnet_test", MDetrSpec(vocab_size=12, max_text_len=10, num_queries=4, hidden_dim=32, heads=4,
                                                enc_layers=1, dec_layers=2, ffn_dim=32, text_dim=16, text_heads=2,
                                                text_depth=1, feature_index=-2, dropout=0.0)).eval()


def test_text_padding_changes_nothing_and_unused_slots_are_masked():
    model = _model()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 32, 32, generator=g)
    tokens = torch.tensor([[3, 4, 5, 2], [6, 7, 2, 0]])
    out = model(images, None, tokens, tokens == 0)
    longer = torch.cat([tokens, torch.zeros(2, 3, dtype=torch.int64)], 1)
    out2 = model(images, None, longer, longer == 0)
    torch.testing.assert_close(out.logits, out2.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.boxes, out2.boxes, atol=1e-5, rtol=1e-5)
    assert (out.logits[1, :, 3:10] == NO_TEXT_LOGIT).all() and (out.logits[0, :, 4:10] == NO_TEXT_LOGIT).all()
    assert (out.logits[:, :, 10] != NO_TEXT_LOGIT).all() and (out.logits[0, :, :4] != NO_TEXT_LOGIT).all()
    other = model(images, None, torch.tensor([[3, 8, 5, 2], [6, 7, 2, 0]]), tokens == 0)
    assert not torch.allclose(other.boxes[0], out.boxes[0])  # the words reach the boxes...
    torch.testing.assert_close(other.boxes[1], out.boxes[1])  # ...of their own image only
    model.train()
    out = model(images, None, tokens, tokens == 0)
    out.boxes.sum().backward()
    assert model.text.token_embedding.weight.grad.abs().sum() > 0


def test_loss_falls_on_a_fixed_batch():
    losses, out = fixed_batch_losses("grounding", TINY, steps=20)
    assert set(out.terms) >= {"token", "align", "bbox", "giou", "aux_token"}
    assert losses[-1] < 0.7 * losses[0], losses


def test_metric_scores_constructed_predictions():
    T = 6
    logits = torch.full((1, 3, T + 1), -5.0)
    logits[0, 0, [0, 1]] = 5.0  # query 0: on the phrase's tokens 0-1, box A (right)
    logits[0, 1, T] = 5.0  # query 1: no object, box B
    logits[0, 2, 2] = 3.0  # query 2: another token, less sure of an object than query 0, box B
    boxes = torch.tensor([[[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]]])
    tokens = torch.tensor([True, True, False, False])
    target = {"size": torch.tensor([100, 100]), "orig_boxes": torch.tensor([[0.0, 0, 50, 50], [50, 50, 100, 100]]),
              "phrases": [{"tokens": tokens, "boxes": [0], "kind": "digit"},
                          {"tokens": torch.tensor([False, False, True, False]), "boxes": [1], "kind": "pair"},
                          {"tokens": tokens, "boxes": [1], "kind": "largest"}]}  # top-1 is box A: a miss at 1
    metric = GroundingMetric(["digit", "pair", "largest", "smallest"])
    metric.update({"logits": logits, "boxes": boxes}, {"target": [target]})
    m = metric.compute().metrics
    assert m["recall1"] == pytest.approx(2 / 3) and m["phrases"] == 3 and m["recall1_digit"] == 1.0
    assert m["recall1_largest"] == 0.0 and m["recall5_largest"] == 1.0 and m["recall5"] == 1.0
    # text-blind: query 0 and 2 are both sure of an object; the baseline ranks them regardless of the phrase
    # text-blind: query 0 is the surest of an object, so it ranks first whatever the phrase: only "digit" is a hit
    assert m["baseline_recall1"] == pytest.approx(1 / 3) and m["baseline_recall1_digit"] == 1.0
    assert m["baseline_recall1_pair"] == 0.0 and "recall1_smallest" not in m


def test_trains_checkpoints_evaluates_and_predicts(tmp_path):
    from visionattn.train.evaluate import evaluate_checkpoint, predict_checkpoint
    from visionattn.train.loop import Trainer

    trainer = Trainer(load_config(overrides=TINY), run_dir=tmp_path / "run", log=lambda m: None)
    summary = trainer.fit()
    assert summary["task"] == "grounding" and "best_val_recall1" in summary
    for key in ("val_recall1", "val_recall5", "val_baseline_recall1"):
        assert 0 <= trainer.counters.metrics[key] <= 1
    assert "Grounded phrases" in (tmp_path / "run" / "report.html").read_text()
    evaluation, restored = evaluate_checkpoint(tmp_path / "run" / "best.pt", device="cpu")
    assert evaluation.metrics["phrases"] == 6
    assert "text-blind baseline" in restored.task.format_evaluation(evaluation, restored.meta)

    record = trainer.data.val.records[0]
    Image.fromarray(np.repeat(record.image[..., None], 3, axis=2)).save(tmp_path / "scene.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = predict_checkpoint(tmp_path / "run" / "best.pt", [str(tmp_path / "scene.png"), str(tmp_path / "broken.png")],
                             PredictOptions(out_dir=tmp_path / "pred", texts=["the 3", "the largest digit"],
                                            threshold=0.0, top_k=2), device="cpu")
    assert out.errors == 1 and "broken.png: error: not an image" in out.lines[-1]
    assert out.lines[0].startswith(f"{tmp_path / 'scene.png'}: 'the 3': 2 boxes")
    assert (tmp_path / "pred" / "scene-0.png").is_file() and (tmp_path / "pred" / "scene-1.png").is_file()
    results = json.loads((tmp_path / "pred" / "grounding.json").read_text())
    assert [r["text"] for r in results] == ["the 3", "the largest digit"] and len(results[0]["boxes"]) == 2
    with pytest.raises(ValueError, match=r"needs at least one --text"):
        predict_checkpoint(tmp_path / "run" / "best.pt", [str(tmp_path / "scene.png")], PredictOptions(),
                           device="cpu")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_learns_held_out_phrases(tmp_path):
    """~4 min on 2 CPU cores: the default config's recipe (frozen pretrained ResNet and DETR parts: run the commands
    at the top of configs/grounding_digits.yaml first) on 2,000 digit-phrase scenes for 2 epochs beats the text-blind
    baseline on held-out phrase/digit combinations by more than 0.1 Recall@1 (alignment scores; passed in 4 min 12 s
    on the shared machine)."""
    from pathlib import Path

    from visionattn.train.loop import Trainer

    needed = [Path("runs/detr_backbone/best.pt"), Path("runs/detr_digits/best.pt")]
    if not all(p.is_file() for p in needed):
        pytest.skip(f"needs the pretrained checkpoints {[str(p) for p in needed]} (configs/grounding_digits.yaml)")
    cfg = load_config(overrides=["task=grounding", "task.scenes=[2000, 300]", "schedule.epochs=2",
                                 "run.log_every=1000", "run.device=cpu", "run.report=false"])
    trainer = Trainer(cfg, run_dir=tmp_path / "run", log=lambda m: None)
    trainer.fit()
    m = trainer.counters.metrics
    assert m["val_recall1"] > m["val_baseline_recall1"] + 0.1, m


def test_alignment_scores_rank_the_query_that_matches_the_phrase_tokens():
    from visionattn.tasks.grounding.metrics import align_scores

    g = torch.Generator().manual_seed(4)
    tokens = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)  # (L, c)
    queries = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=-1)  # (N, c)
    queries[1] = torch.nn.functional.normalize(tokens[2] + tokens[3], dim=0)  # query 1 matches tokens 2-3
    phrase = torch.tensor([False, False, True, True])
    got = align_scores(queries, tokens, phrase, temperature=0.1)
    s = queries @ tokens.T / 0.1  # by hand: per token the softmax over queries, averaged over the phrase
    want = torch.stack([torch.exp(s[:, j]) / torch.exp(s[:, j]).sum() for j in (2, 3)], 1).mean(1)
    torch.testing.assert_close(got, want)
    assert int(got.argmax()) == 1 and got.sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="score expected one of"):
        GroundingMetric(["digit"], score="blind")
