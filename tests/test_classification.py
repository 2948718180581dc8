"""The classification task's own pieces: the DeiT losses and hard distillation, the top-k metric against a direct
computation, its config section, and old (pre-tasks) checkpoints read as classification checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from test_train import CLASSES, make_trainer, tiny_config

from visionattn.comm import LOCAL
from visionattn.models import create_model
from visionattn.tasks import get_task
from visionattn.tasks.classification import ClassificationOptions, ClassificationTask
from visionattn.tasks.classification.loss import DeiTLoss
from visionattn.tasks.classification.metrics import TopKMetric
from visionattn.train.config import load_config


def test_hard_distillation_loss_uses_the_teacher_argmax():
    torch.manual_seed(0)
    cls, dist, teacher = torch.randn(6, 5), torch.randn(6, 5), torch.randn(6, 5)
    y = torch.randint(0, 5, (6,))
    loss, terms = DeiTLoss(label_smoothing=0.1, distill_weight=0.5)((cls, dist), y, None, teacher.argmax(-1))
    expected = 0.5 * F.cross_entropy(cls, y, label_smoothing=0.1) + 0.5 * F.cross_entropy(dist, teacher.argmax(-1))
    assert torch.allclose(loss, expected)
    assert torch.allclose(terms["cls"], 0.5 * F.cross_entropy(cls, y, label_smoothing=0.1))
    assert torch.allclose(terms["cls"] + terms["distill"], loss)
    assert not torch.allclose(loss, 0.5 * F.cross_entropy(cls, y, label_smoothing=0.1)
                              + 0.5 * F.cross_entropy(dist, y))
    plain, none = DeiTLoss(label_smoothing=0.1)((cls, dist), y)  # a distilled model without a teacher: mean head
    assert none == {} and torch.allclose(plain, F.cross_entropy((cls + dist) / 2, y, label_smoothing=0.1))


def test_distillation_in_the_loop_feeds_the_teacher_argmax_to_the_dist_head(tmp_path):
    teacher = create_model("resnet_test", num_classes=len(CLASSES), img_size=16)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    cfg = tiny_config("model.name=deit_tiny_distilled_test", "model.overrides={drop_path: 0.1}",
                      "task.teacher=resnet_test", f"task.teacher_checkpoint={tmp_path / 'teacher.pt'}")
    trainer = make_trainer(tmp_path, cfg)
    task = trainer.task
    seen = []
    original_teacher, original_loss = task.teacher.forward, task.criterion.forward

    def teacher_spy(x):
        out = original_teacher(x)
        seen.append({"teacher": out.detach().clone()})
        return out

    def loss_spy(outputs, targets, soft, teacher_labels):
        seen[-1].update(outputs=outputs, labels=teacher_labels)
        return original_loss(outputs, targets, soft, teacher_labels)

    task.teacher.forward, task.criterion.forward = teacher_spy, loss_spy
    trainer.fit(until_step=2)
    assert len(seen) == 2
    for record in seen:
        assert torch.equal(record["labels"], record["teacher"].argmax(dim=-1))
        assert isinstance(record["outputs"], tuple) and len(record["outputs"]) == 2  # (cls, dist) logits
    with pytest.raises(ValueError, match="needs forward_distill"):
        make_trainer(tmp_path, tiny_config("task.teacher=resnet_test",
                                           f"task.teacher_checkpoint={tmp_path / 'teacher.pt'}"), name="r2")


def test_topk_metric_equals_a_direct_computation():
    g = torch.Generator().manual_seed(3)
    logits, labels = torch.randn(37, 7, generator=g), torch.randint(0, 7, (37,), generator=g)
    metric = TopKMetric(7)
    for part in (slice(0, 10), slice(10, 30), slice(30, 37)):  # three batches
        metric.update(logits[part], {"label": labels[part]})
    metric.reduce(LOCAL)
    evaluation = metric.compute()
    top5 = logits.topk(5, dim=-1).indices
    assert evaluation.metrics["top1"] == pytest.approx(float((logits.argmax(-1) == labels).float().mean()))
    assert evaluation.metrics["top5"] == pytest.approx(float((top5 == labels[:, None]).any(-1).float().mean()))
    assert evaluation.metrics["loss"] == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-6)
    expected = np.zeros((7, 7), dtype=np.int64)
    for t, p in zip(labels.tolist(), logits.argmax(-1).tolist(), strict=True):
        expected[t, p] += 1
    assert (evaluation.details.confusion == expected).all()
    with pytest.raises(ValueError, match="no samples"):
        empty = TopKMetric(3)
        empty.reduce(LOCAL)
        empty.compute()


def test_mixup_needs_an_even_batch_and_the_options_check_their_values():
    task = ClassificationTask(ClassificationOptions(mixup=0.8))
    with pytest.raises(ValueError, match="even per-rank batch, got 5"):
        task.check_batch_size(5)
    task.check_batch_size(4)
    with pytest.raises(ValueError, match=r"task.label_smoothing: expected in \[0, 1\), got 1.5"):
        load_config(overrides=["task.label_smoothing=1.5"])
    with pytest.raises(ValueError, match="task.teacher and task.teacher_checkpoint: expected both set or both null"):
        load_config(overrides=["task.teacher=resnet_test"])
    assert get_task("classification") is ClassificationTask


def test_a_version_1_checkpoint_loads_as_classification(tmp_path):
    """Checkpoints written before the tasks layer (format version 1, the classification keys under recipe:) are
    read as classification checkpoints: eval and resume still work."""
    from visionattn.train.checkpoint import FORMAT, load_checkpoint
    from visionattn.train.evaluate import model_from_checkpoint

    trainer = make_trainer(tmp_path, tiny_config())
    trainer.fit(until_step=1)
    state = load_checkpoint(tmp_path / "run" / "ckpt-00000001.pt")
    values = yaml.safe_load(state["config"])
    task = values.pop("task")
    task.pop("name")
    values["recipe"].update(task)  # the old layout
    old = {k: v for k, v in state.items() if k not in ("task", "task_state", "meta")}
    old.update(format=FORMAT, version=1, config=yaml.safe_dump(values))
    torch.save(old, tmp_path / "v1.pt")
    upgraded = load_checkpoint(tmp_path / "v1.pt")
    assert upgraded["task"] == "classification" and upgraded["meta"]["classes"] == CLASSES
    assert upgraded["meta"]["img_size"] == 16
    restored = model_from_checkpoint(tmp_path / "v1.pt")
    assert restored.cfg.task.mixup == 0.4 and restored.task.name == "classification"
    for key, value in trainer.ema.module.state_dict().items():  # auto: the weights that evaluated better
        assert torch.equal(restored.model.state_dict()[key], value if restored.weights == "ema" else
                           trainer.model.state_dict()[key])
    with pytest.raises(ValueError, match=r"recipe\.\w+'; it moved to 'task\.\w+'"):
        (tmp_path / "old.yaml").write_text(yaml.safe_dump(values))
        load_config(tmp_path / "old.yaml")
