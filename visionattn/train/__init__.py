"""Training any task: config, resumable fault-tolerant loop, evaluation and prediction from checkpoints, torchrun.

    from visionattn.train import Trainer, load_config
    summary = Trainer(load_config("configs/default.yaml", ["schedule.epochs=5"])).fit()

The trainer drives a task (:mod:`visionattn.tasks`) through the Task contract and imports no task by name.
Submodules: ``config`` (dataclass tree + YAML + overrides; the ``task:`` section), ``optim`` (AdamW groups, warmup +
cosine), ``step`` (one update: accumulation, autocast, non-finite guard), ``loop`` (:class:`Trainer`), ``state`` and
``checkpoint`` (atomic, ``weights_only``, resume), ``loader`` (seeded augmentation), ``devices`` (precision,
workers, threads, TF32), ``evaluate`` (models from checkpoints, ``eval`` / ``predict``), ``distributed`` and
``sampler`` (torchrun), ``results`` / ``report`` (CSV, TensorBoard, PNG, HTML). Names are imported lazily, so
importing a submodule does not pull in the others.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": "config",
    "ModelConfig": "config",
    "OptimConfig": "config",
    "ScheduleConfig": "config",
    "RecipeConfig": "config",
    "RunConfig": "config",
    "load_config": "config",
    "config_to_yaml": "config",
    "config_from_yaml": "config",
    "apply_overrides": "config",
    "Trainer": "loop",
    "TrainingStopped": "loop",
    "Interrupted": "loop",
    "NonFiniteLoss": "loop",
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_latest": "checkpoint",
    "build_optimizer": "optim",
    "build_scheduler": "optim",
    "param_groups": "optim",
    "evaluate_checkpoint": "evaluate",
    "model_from_checkpoint": "evaluate",
    "predict_checkpoint": "evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
