"""Helpers shared by the task tests (imported as ``from task_helpers import ...``, like ``image_files``)."""

from __future__ import annotations

import pytest
import torch

from visionattn.comm import LOCAL
from visionattn.tasks import StepContext, get_task
from visionattn.tasks.base import Progress
from visionattn.train.config import load_config


def fixed_batch_losses(task_name: str, overrides: list[str], steps: int, batch_size: int = 8, lr: float = 1e-3):
    """Build ``task_name``'s data and model from a config with ``overrides``, then take ``steps`` AdamW updates on
    one fixed training batch of ``batch_size`` samples. Returns ``(losses, last)``: the loss before each update
    and the last :class:`LossOutput`. Asserts at every step that the total is the sum of the named terms (the
    contract the trainer relies on: it only sums them)."""
    torch.manual_seed(0)
    cfg = load_config(overrides=overrides)
    task = get_task(task_name)(cfg.task)
    data = task.build_data(cfg.data, 0)
    model = task.build_model(cfg.model, data.meta)
    batch = data.collate([data.train[i] for i in range(batch_size)])
    ctx = StepContext(Progress(0, 1, 0, 1), torch.device("cpu"), "fp32", LOCAL)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        out = task.loss(model, batch, ctx)
        total = float(out.total.detach())
        assert total == pytest.approx(float(sum(out.terms.values()).detach()), rel=1e-6), (total, out.terms)
        losses.append(total)
        opt.zero_grad()
        out.total.backward()
        opt.step()
    return losses, out

