"""What a checkpoint holds of a :class:`~visionattn.train.loop.Trainer`, and how it is put back.

``gather_state(trainer)`` → the checkpoint dict (tensors and primitives only; see
:mod:`visionattn.train.checkpoint` for the keys). Under torchrun it is a collective: FSDP2 weights and optimizer
state are gathered to full tensors on rank 0, and every rank's RNG states are collected, so a resume with the same
world size continues each rank's streams exactly. ``restore_state(trainer, state)`` is the inverse; the RNG states
are restored last, after everything that could draw from them.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from . import distributed as D
from .checkpoint import capture_rng, restore_rng
from .config import config_to_yaml

__all__ = ["gather_state", "restore_state", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs (CUDA included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def gather_state(self) -> dict:
    """The checkpoint dict of ``self`` (a Trainer). Collective under torchrun: call it on every rank."""
    fsdp = self.cfg.run.fsdp and self.info.distributed
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        model_state = {k.removeprefix("model."): v for k, v in D.model_state_dict(self.train_module).items()}
        optim_state = get_optimizer_state_dict(D.unwrap_model(self.train_module), self.optimizer,
                                               options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        model_state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        optim_state = self.optimizer.state_dict()
    rng = [capture_rng()]
    if self.info.distributed:
        import torch.distributed as dist

        gathered = [None] * self.info.world_size
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
    return {
        "model": model_state,
        "ema": None if self.ema is None else {k: v.detach().cpu() for k, v in self.ema.module.state_dict().items()},
        "optimizer": optim_state,
        "scheduler": self.scheduler.state_dict(),
        "scaler": None if self.scaler is None else self.scaler.state_dict(),
        "rng": rng,
        "sampler": self._sampler_state(),
        "epoch": self.epoch,
        "step": self.step,
        "batch": self.batch,
        "best_metric": self.best_metric,
        "metrics": dict(self.last_metrics),
        "eval_weights": self.eval_weights,
        "nonfinite": {"total": self.nonfinite_total, "consecutive": self.nonfinite_consecutive},
        "config": config_to_yaml(self.cfg),
        "classes": list(self.classes),
        "model_name": self.cfg.model.name,
        "world_size": self.info.world_size,
        "torch_version": str(torch.__version__),
    }


def restore_state(self, state: dict) -> None:
    """Put a checkpoint's state back into ``self`` (a freshly built Trainer); every rank loads the same file."""
    if list(state["classes"]) != self.classes:
        raise ValueError(f"checkpoint classes {list(state['classes'])} differ from the data's {self.classes}")
    if state.get("model_name", self.cfg.model.name) != self.cfg.model.name:
        raise ValueError(f"checkpoint holds a {state['model_name']!r} model, the config builds "
                         f"{self.cfg.model.name!r}")
    if self.cfg.run.fsdp and self.info.distributed:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        D.load_model_state_dict(self.train_module, {f"model.{k}": v for k, v in state["model"].items()})
        set_optimizer_state_dict(D.unwrap_model(self.train_module), self.optimizer, state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True))
    else:
        from ..models.checkpoint import check_state_dict

        check_state_dict(self.model, state["model"], "the checkpoint's weights")  # ValueError listing the keys
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
    if self.ema is not None:
        if state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        else:
            self.log("note: the checkpoint has no EMA weights; the EMA restarts from the current weights")
            self.ema.set(self.model)
    if self.scaler is not None and state.get("scaler"):
        self.scaler.load_state_dict(state["scaler"])
    self.epoch, self.step, self.batch = int(state["epoch"]), int(state["step"]), int(state["batch"])
    self.best_metric = state.get("best_metric")
    self.last_metrics = dict(state.get("metrics") or {})
    self.eval_weights = state.get("eval_weights") or "model"
    nonfinite = state.get("nonfinite") or {}
    self.nonfinite_total = int(nonfinite.get("total", 0))
    self.nonfinite_consecutive = int(nonfinite.get("consecutive", 0))
    self.sampler.load_state_dict(dict(state["sampler"]))
    # the learning rate is a function of the update count and the (possibly overridden) schedule config; the
    # scheduler's saved state is kept in the checkpoint for inspection only
    self.scheduler.step_update(self.step)
    rng = state["rng"]
    if len(rng) == self.info.world_size:
        restore_rng(rng[self.info.rank])  # last: nothing above may draw from the restored streams
    else:
        self.log(f"note: the checkpoint was written by {len(rng)} process(es), this run has "
                 f"{self.info.world_size}: RNG streams are reseeded, so the continuation is not bit-identical")
        seed_everything(self.cfg.run.seed + 7919 * self.step + self.info.rank)
