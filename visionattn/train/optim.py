"""The DeiT optimiser and schedule: AdamW with decay only on weight matrices, warmup + cosine per update.

Which parameters are decayed is decided by what they are, not by their names: every 1-D parameter (norm scales and
shifts, biases, LayerScale gammas) and every parameter the model lists in ``no_weight_decay()`` (ViT: class and
distillation tokens, position tables) goes to the ``no_decay`` group; the rest (linear weights, conv kernels,
relative-position tables named by their model) to ``decay``.
"""

from __future__ import annotations

import torch
from timm.scheduler import CosineLRScheduler
from torch import nn

from .config import OptimConfig, ScheduleConfig

__all__ = ["param_groups", "build_optimizer", "build_scheduler", "no_decay_names"]


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the parameters excluded from weight decay: 1-D parameters plus ``model.no_weight_decay()``
    (names relative to ``model``; timm-style entries that name a module prefix exclude everything under it)."""
    listed = set(model.no_weight_decay()) if callable(getattr(model, "no_weight_decay", None)) else set()
    out = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name in listed or any(name.startswith(f"{prefix}.") for prefix in listed):
            out.add(name)
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups, ``decay`` then ``no_decay`` (each carries its ``name`` and its parameter names)."""
    skip = no_decay_names(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append((name, p))
    groups = []
    for group_name, members, wd in (("decay", decay, weight_decay), ("no_decay", no_decay, 0.0)):
        if members:
            groups.append({"name": group_name, "param_names": [n for n, _ in members],
                           "params": [p for _, p in members], "weight_decay": wd})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` of ``model`` (build it after wrapping the model for FSDP)."""
    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, updates_per_epoch: int,
                    min_lr: float | None = None) -> CosineLRScheduler:
    """timm ``CosineLRScheduler`` counted in optimizer updates (call ``step_update(num_updates)`` after each):
    linear warmup from ``warmup_lr`` over ``warmup_epochs`` epochs, then cosine from the base lr to ``min_lr`` over
    the remaining updates of ``epochs`` epochs."""
    total = cfg.epochs * updates_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * updates_per_epoch)), max(total - 1, 0))
    return CosineLRScheduler(
        optimizer,
        t_initial=max(total - warmup, 1),
        lr_min=cfg.min_lr if min_lr is None else min_lr,
        warmup_t=warmup,
        warmup_lr_init=cfg.warmup_lr,
        warmup_prefix=True,
        t_in_epochs=False,
    )
