"""Models rebuilt from training checkpoints, and ``visionattn eval`` / ``predict`` for any task.

A checkpoint names its task and keeps the data facts the model was built from (``meta``: classes, image size,
normalisation), so :func:`model_from_checkpoint` rebuilds the trained model through that task without the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..comm import LOCAL
from ..tasks import EvalContext, Evaluation, PredictOptions, PredictOutput, Task, get_task
from .checkpoint import load_checkpoint
from .config import TrainConfig, config_from_yaml

__all__ = ["Restored", "model_from_checkpoint", "evaluate_checkpoint", "predict_checkpoint", "resolve_device",
           "WEIGHTS"]

WEIGHTS = ("auto", "model", "ema")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → ``cuda`` when available, else ``cpu``; anything else as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Restored:
    """A trained model rebuilt from a checkpoint: the model (eval mode), the run's config, its task (built from the
    config's task section), the data ``meta``, which weights were loaded (``"model"`` / ``"ema"``) and the raw
    checkpoint state."""

    model: nn.Module
    cfg: TrainConfig
    task: Task
    meta: dict
    weights: str
    state: dict

    def __iter__(self):  # (model, cfg, task, state), for unpacking
        return iter((self.model, self.cfg, self.task, self.state))


def _check_task(path, state: dict, expected: str | None) -> None:
    if expected is not None and state["task"] != expected:
        raise ValueError(f"checkpoint {str(path)!r} holds a {state['task']!r} model, not a {expected!r} one; "
                         f"{expected} needs a checkpoint trained with task.name={expected}")


def model_from_checkpoint(path: str | Path, weights: str = "auto", map_location="cpu",
                          task: str | None = None) -> Restored:
    """Rebuild the model of a training checkpoint.

    weights: ``"model"`` (the trained weights), ``"ema"`` (their EMA), or ``"auto"``: the ones that evaluated
    better at the checkpoint's last evaluation (``state["eval_weights"]``). task: when given, a checkpoint of
    another task is a ``ValueError`` that says so."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights: expected one of {WEIGHTS}, got {weights!r}")
    state = load_checkpoint(path, map_location=map_location)
    _check_task(path, state, task)
    cfg = config_from_yaml(state["config"], source=f"config inside checkpoint {str(path)!r}", legacy=True)
    chosen = (state.get("eval_weights") or "model") if weights == "auto" else weights
    if chosen == "ema" and state.get("ema") is None:
        raise ValueError(f"checkpoint {str(path)!r} holds no EMA weights (the run had recipe.ema=false); "
                         f"use weights='model'")
    runner = get_task(state["task"])(cfg.task)
    meta = dict(state["meta"])
    model = runner.build_model(_without_pretrained(cfg), meta)
    runner.load_state_dict(state.get("task_state") or {})
    from ..models.checkpoint import check_state_dict

    check_state_dict(model, state[chosen], f"the {chosen} weights of checkpoint {str(path)!r}")
    model.load_state_dict(state[chosen])
    model.eval()
    model.eval_weights = chosen
    return Restored(model, cfg, runner, meta, chosen, state)


def _without_pretrained(cfg: TrainConfig):
    """The model section without pretrained weights: the checkpoint's weights replace them anyway, and the file
    (or the network) may no longer be there."""
    import dataclasses

    return dataclasses.replace(cfg.model, pretrained_path=None, pretrained=False)


def evaluate_checkpoint(path: str | Path, data: str | None = None, data_path: str | None = None,
                        weights: str = "auto", batch_size: int = 256, device: str = "auto",
                        task: str | None = None) -> tuple[Evaluation, Restored]:
    """``visionattn eval``: the checkpoint's model on the validation split of dataset ``data`` (default: the
    training run's), prepared as its task evaluates (classification: the run's image size, normalisation, split seed
    and class list; a dataset whose classes differ is an error)."""
    import dataclasses

    restored = model_from_checkpoint(path, weights, task=task)
    cfg, runner = restored.cfg, restored.task
    data_cfg = runner.eval_data_config(cfg.data, restored.meta)
    if data is not None:
        data_cfg = dataclasses.replace(data_cfg, name=data, path=data_path)
    elif data_path is not None:
        data_cfg = dataclasses.replace(data_cfg, path=data_path)
    bundle = runner.build_data(data_cfg, cfg.run.seed)
    saved = restored.meta.get("classes")
    if saved is not None and list(bundle.meta.get("classes") or []) != list(saved):
        raise ValueError(f"dataset {data_cfg.name!r} has classes {bundle.meta.get('classes')}, the checkpoint was "
                         f"trained on {list(saved)}")
    dev = resolve_device(device)
    restored.model.to(dev)

    def loader(dataset):
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                           collate_fn=bundle.collate), None

    ctx = EvalContext(dev, "fp32", LOCAL, loader)
    return runner.evaluate(restored.model, bundle, ctx), restored


def predict_checkpoint(path: str | Path, inputs: Sequence[str], options: PredictOptions, weights: str = "auto",
                       device: str = "auto", task: str | None = None) -> PredictOutput:
    """``visionattn predict``: the checkpoint's task turns ``inputs`` (file paths) into lines to print and files."""
    restored = model_from_checkpoint(path, weights, task=task)
    dev = resolve_device(device)
    restored.model.to(dev)
    return restored.task.predict(restored.model, restored.meta, restored.cfg.data, list(inputs), options, dev)
