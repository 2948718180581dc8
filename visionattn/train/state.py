"""What a checkpoint holds of a run, and how it is put back: counters, weights, optimizer, RNG streams.

The functions take what they read as arguments (the modules, the optimizer, the job's :class:`DistInfo`), never a
trainer. Under torchrun :func:`capture_weights` and :func:`gather_rng` are collectives: FSDP2 weights and
optimizer state are gathered to full tensors on rank 0, and every rank's RNG states are collected, so a resume with
the same world size continues each rank's streams exactly (:func:`restore_rank_rng`). RNG states are restored last,
after everything that could draw from them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..comm import DistInfo
from . import distributed as D
from .checkpoint import capture_rng, restore_rng

__all__ = ["Counters", "capture_weights", "gather_rng", "restore_rank_rng", "restore_weights", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs (CUDA included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Counters:
    """Where a run stands. epoch: epochs completed; step: optimizer updates done (skipped non-finite ones included);
    batch: micro-batches of the current epoch done; best_metric: best primary validation metric so far; metrics: the
    latest epoch's logged metrics; eval_weights: ``"model"`` or ``"ema"``, whichever evaluated better last;
    nonfinite_total / nonfinite_consecutive: skipped updates."""

    epoch: int = 0
    step: int = 0
    batch: int = 0
    best_metric: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    eval_weights: str = "model"
    nonfinite_total: int = 0
    nonfinite_consecutive: int = 0

    def to_state(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "batch": self.batch, "best_metric": self.best_metric,
                "metrics": dict(self.metrics), "eval_weights": self.eval_weights,
                "nonfinite": {"total": self.nonfinite_total, "consecutive": self.nonfinite_consecutive}}

    @classmethod
    def from_state(cls, state: dict) -> Counters:
        nonfinite = state.get("nonfinite") or {}
        return cls(epoch=int(state["epoch"]), step=int(state["step"]), batch=int(state["batch"]),
                   best_metric=state.get("best_metric"), metrics=dict(state.get("metrics") or {}),
                   eval_weights=state.get("eval_weights") or "model",
                   nonfinite_total=int(nonfinite.get("total", 0)),
                   nonfinite_consecutive=int(nonfinite.get("consecutive", 0)))


def _prefix(train_module: nn.Module, model: nn.Module) -> str:
    """Where ``model``'s parameters sit in the wrapped training module's state dict (``"model."`` under a
    task's wrapper, ``""`` when the model itself is trained)."""
    inner = D.unwrap_model(train_module)
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    if inner is model:
        return ""
    for name, module in inner.named_modules():
        if module is model:
            return f"{name}."
    raise ValueError(f"the model is not inside the training module {type(inner).__name__}")


def capture_weights(train_module: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer,
                    fsdp: bool) -> tuple[dict, dict]:
    """``(model weights on CPU, optimizer state)``; with ``fsdp`` (FSDP2 under torchrun) a collective that gathers
    full tensors to rank 0 (other ranks get empty dicts)."""
    if not fsdp:
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}, optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    prefix = _prefix(train_module, model)
    weights = {k.removeprefix(prefix): v for k, v in D.model_state_dict(train_module).items()}
    optim = get_optimizer_state_dict(D.unwrap_model(train_module), optimizer,
                                     options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return weights, optim


def restore_weights(train_module: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict,
                    optimizer_state: dict, fsdp: bool) -> None:
    """Inverse of :func:`capture_weights`; a wrong architecture is a ``ValueError`` listing the keys."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        prefix = _prefix(train_module, model)
        D.load_model_state_dict(train_module, {f"{prefix}{k}": v for k, v in weights.items()})
        set_optimizer_state_dict(D.unwrap_model(train_module), optimizer, optimizer_state,
                                 options=StateDictOptions(full_state_dict=True))
        return
    from ..models.checkpoint import check_state_dict

    check_state_dict(model, weights, "the checkpoint's weights")  # ValueError listing the keys
    model.load_state_dict(weights)
    optimizer.load_state_dict(optimizer_state)


def gather_rng(info: DistInfo) -> list[dict]:
    """Every rank's RNG states, in rank order (a collective under torchrun; a list of one otherwise)."""
    rng = capture_rng()
    if not info.distributed:
        return [rng]
    import torch.distributed as dist

    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, rng)
    return gathered


def restore_rank_rng(rng: list[dict], info: DistInfo, reseed: int) -> bool:
    """Restore this rank's own RNG states from a checkpoint's per-rank list. When the checkpoint was written by
    another number of processes the streams cannot continue: seed with ``reseed + rank`` instead and return False
    (the continuation is then not bit-identical)."""
    if len(rng) == info.world_size:
        restore_rng(rng[info.rank])
        return True
    seed_everything(reseed + info.rank)
    return False
