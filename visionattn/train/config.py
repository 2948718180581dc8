"""The training configuration: a tree of dataclasses, loaded from YAML plus ``key.sub=value`` overrides.

::

    TrainConfig
      task      TaskOptions     task.name picks the task (visionattn.tasks); the other keys are that task's options
                                (classification: label smoothing, Mixup/CutMix, hard distillation)
      model     ModelConfig     registry name + spec overrides (e.g. {"depth": 4, "drop_path": 0.1})
      data      DataConfig      visionattn.data: dataset, image size, split, augmentation, normalisation
      optim     OptimConfig     AdamW: lr, weight decay, betas, gradient clipping
      schedule  ScheduleConfig  epochs, global batch size, accumulation, warmup + cosine
      recipe    RecipeConfig    every task's training pieces: EMA of the weights, non-finite policy
      run       RunConfig       seed, run dir, device, precision, compile, checkpoints, logging

Layering: the dataclass defaults (which are the ``visionattn train`` demo: a small ViT classifying the built-in
digits), or — when the task is not the default one — that task's default config file (``configs/``), then a YAML
file (any subset of the keys), then command-line overrides ``section.key=value`` (the value is read as YAML and
converted to the field's type: ``optim.lr=3e-4``, ``data.mean=[0.5,0.5,0.5]``, ``task.teacher=null``);
``task=NAME`` is short for ``task.name=NAME``. An unknown key is a ``ValueError`` listing the valid keys of its
section; a key of another task's section says which task it belongs to.

``task`` options belong to ``task.name`` like ``model.overrides`` belong to ``model.name``: a layer that changes the
task starts its section from that task's defaults.

``model.overrides`` belong to ``model.name``: a layer that changes the name without giving overrides starts from
an empty dict (the default ViT's sizes would not fit another family). Add to them with
``model.overrides.drop_path=0.1``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import DataConfig
from ..models.config import ModelConfig, spec_overrides
from ..tasks import DEFAULT_TASK, TaskOptions, get_task, list_tasks, task_of_options

__all__ = [
    "DEFAULT_TASK",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "RecipeConfig",
    "RunConfig",
    "TrainConfig",
    "load_config",
    "config_from_yaml",
    "config_to_yaml",
    "apply_overrides",
    "parse_override",
    "spec_overrides",
    "migrate_legacy",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# keys of the old ``recipe:`` section that are now the classification task's options (config files and checkpoints
# written before the tasks layer)
LEGACY_RECIPE_KEYS = ("label_smoothing", "mixup", "cutmix", "mixup_prob", "mixup_switch_prob", "teacher",
                      "teacher_checkpoint", "distill_weight")


def _demo_data() -> DataConfig:
    # the built-in digits with a mild random-resized-crop: without it the ViT memorises the 1,438 images by epoch 20
    return DataConfig(name="digits", img_size=32, random_resized_crop=True, crop_scale=(0.7, 1.0))


@dataclass
class OptimConfig:
    """AdamW. weight_decay applies to weight matrices and conv kernels only: never to norms, biases, position
    tables or class/distillation tokens. clip_grad: max global gradient norm (None or 0 = no clipping)."""

    lr: float = 2e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float | None = 1.0


@dataclass
class ScheduleConfig:
    """batch_size is global: per process it is ``batch_size / world_size``; one optimizer update sees
    ``batch_size * accum_steps`` images. Warmup (linear from ``warmup_lr``) then cosine to ``min_lr``, stepped
    per update (timm ``CosineLRScheduler``)."""

    epochs: int = 40
    batch_size: int = 64
    accum_steps: int = 1
    warmup_epochs: float = 3.0
    warmup_lr: float = 1e-5
    min_lr: float = 1e-5


@dataclass
class RecipeConfig:
    """Training pieces every task shares. ema: keep an EMA of the weights (``timm.utils.ModelEmaV3``, decay
    ``ema_decay``, warmed up); evaluation then scores both and the better one is what ``eval``/``predict`` use.
    max_nonfinite: stop after this many updates in a row with a non-finite loss or gradient."""

    ema: bool = True
    ema_decay: float = 0.998
    max_nonfinite: int = 5


@dataclass
class RunConfig:
    """seed: model init, augmentation, dropout, sample order. dir: the run directory (default
    ``runs/<timestamp>-<model>``). device: ``auto`` (cuda:LOCAL_RANK if available, else cpu), ``cpu``, ``cuda``.
    precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast + GradScaler, CUDA). compile: ``torch.compile``
    the training module. fsdp: shard with FSDP2 under torchrun instead of DDP. threads: torch CPU threads (None =
    torch's default). ckpt_every: also checkpoint every N updates (0 = at epoch ends only). keep_last: step
    checkpoints kept (``best.pt`` is kept too). log_every: updates between log lines / steps.csv rows.
    report: write metrics.csv, TensorBoard, PNGs and report.html."""

    seed: int = 0
    dir: str | None = None
    device: str = "auto"
    precision: str = "auto"
    tf32: bool = True
    compile: bool = False
    fsdp: bool = False
    num_workers: int | None = None
    threads: int | None = None
    eval_batch_size: int = 256
    eval_every: int = 1
    ckpt_every: int = 0
    keep_last: int = 2
    log_every: int = 20
    report: bool = True


def _default_task() -> TaskOptions:
    return get_task(DEFAULT_TASK).options_class()


@dataclass
class TrainConfig:
    task: TaskOptions = field(default_factory=_default_task)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=_demo_data)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    run: RunConfig = field(default_factory=RunConfig)


def check_config(cfg: TrainConfig) -> None:
    """Value checks that the types alone do not express; ``ValueError`` saying expected vs got."""
    problems = []

    def need(ok: bool, key: str, expected: str, got) -> None:
        if not ok:
            problems.append(f"{key}: expected {expected}, got {got!r}")

    s, o, r, run = cfg.schedule, cfg.optim, cfg.recipe, cfg.run
    need(s.epochs >= 1, "schedule.epochs", ">= 1", s.epochs)
    need(s.batch_size >= 1, "schedule.batch_size", ">= 1", s.batch_size)
    need(s.accum_steps >= 1, "schedule.accum_steps", ">= 1", s.accum_steps)
    need(s.warmup_epochs >= 0, "schedule.warmup_epochs", ">= 0", s.warmup_epochs)
    need(o.lr > 0, "optim.lr", "> 0", o.lr)
    need(o.weight_decay >= 0, "optim.weight_decay", ">= 0", o.weight_decay)
    need(o.clip_grad is None or o.clip_grad >= 0, "optim.clip_grad", "None or >= 0", o.clip_grad)
    need(0 < r.ema_decay < 1, "recipe.ema_decay", "in (0, 1)", r.ema_decay)
    need(r.max_nonfinite >= 1, "recipe.max_nonfinite", ">= 1", r.max_nonfinite)
    need(run.precision in PRECISIONS, "run.precision", f"one of {PRECISIONS}", run.precision)
    need(run.num_workers is None or run.num_workers >= 0, "run.num_workers", "None (auto) or >= 0",
         run.num_workers)
    need(run.threads is None or run.threads >= 1, "run.threads", "None or >= 1", run.threads)
    need(run.eval_every >= 1, "run.eval_every", ">= 1", run.eval_every)
    need(run.eval_batch_size >= 1, "run.eval_batch_size", ">= 1", run.eval_batch_size)
    need(run.ckpt_every >= 0, "run.ckpt_every", ">= 0", run.ckpt_every)
    need(run.keep_last >= 1, "run.keep_last", ">= 1", run.keep_last)
    need(run.log_every >= 1, "run.log_every", ">= 1", run.log_every)
    check = getattr(cfg.task, "problems", None)
    if callable(check):
        problems += check()
    if problems:
        raise ValueError("invalid training config:\n  " + "\n  ".join(problems))


# -- typed conversion ---------------------------------------------------------------------------------------
_SECTIONS: dict[str, type] = {f.name: f.default_factory().__class__ for f in dataclasses.fields(TrainConfig)}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(tp) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            if len(args) == 1:
                return True, args[0]
            raise TypeError(f"config fields may be Optional of one type, got {tp!r}")
    return False, tp


def _convert(key: str, tp, value):
    """``value`` (from YAML or the command line) as type ``tp``; ``ValueError`` naming the key otherwise."""
    optional, inner = _is_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "~")):
        if optional:
            return None
        raise ValueError(f"config key {key!r}: expected {_type_name(tp)}, got null")
    origin = typing.get_origin(inner)
    try:
        if inner is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if inner is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        if inner is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)  # also "1e-3", which YAML 1.1 reads as a string
        if inner is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if origin is tuple:
            args = typing.get_args(inner)
            if not isinstance(value, (list, tuple)):
                raise ValueError
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_convert(key, args[0], v) for v in value)
            if len(args) != len(value):
                raise ValueError
            return tuple(_convert(key, a, v) for a, v in zip(args, value, strict=True))
        if origin is list:
            (arg,) = typing.get_args(inner)
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return [_convert(key, arg, v) for v in value]
        if origin is dict or inner is dict:
            if not isinstance(value, dict):
                raise ValueError
            return {str(k): _plain(v) for k, v in value.items()}
        if inner is Any:
            return _plain(value)
    except ValueError:
        raise ValueError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}") from None
    raise TypeError(f"config key {key!r}: unsupported field type {tp!r}")


def _plain(value):
    """A free-form value (model overrides): numbers written as YAML 1.1 strings ('1e-3') become floats."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _task_fields(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(get_task(name).options_class)]


def _owners(key: str) -> list[str]:
    """Registered tasks whose section has ``key``."""
    return [t for t in list_tasks() if key in _task_fields(t)]


def _build_task(values: dict, prefix: str) -> TaskOptions:
    """The ``task:`` section → the named task's options; keys of another task's section are named as such."""
    if not isinstance(values, dict):
        raise ValueError(f"config key 'task' is a section: expected a mapping with 'name' and the task's options, "
                         f"got {values!r} (task=NAME on the command line is short for task.name=NAME)")
    name = values.get("name", DEFAULT_TASK)
    if not isinstance(name, str):
        raise ValueError(f"config key 'task.name': expected a task name ({', '.join(list_tasks())}), got {name!r}")
    cls = get_task(name).options_class  # ValueError listing the known tasks
    fields = _task_fields(name)
    for key in values:
        if key == "name" or key in fields:
            continue
        owners = _owners(key)
        listing = ", ".join(fields) or "(none)"
        if owners:
            raise ValueError(f"config key '{prefix}{key}' belongs to task {' / '.join(map(repr, owners))}, not "
                             f"{name!r}; keys of task {name!r}: {listing}")
        raise ValueError(f"unknown config key '{prefix}{key}'{_suggest(key, fields)}; keys of task {name!r}: "
                         f"{listing}")
    return _build(cls, {k: v for k, v in values.items() if k != "name"}, prefix)


def _legacy_hint(full: str) -> str:
    section, _, key = full.partition(".")
    if section == "recipe" and key in LEGACY_RECIPE_KEYS:
        return f"; it moved to 'task.{key}' (the classification task's section)"
    return ""


def _build(cls: type, values: dict, prefix: str):
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in hints:
            raise ValueError(f"unknown config key {full!r}{_suggest(key, names)}{_legacy_hint(full)}; valid keys "
                             f"under {prefix.rstrip('.') or 'the top level'!r}: {', '.join(names)}")
        tp = hints[key]
        if tp is TaskOptions:
            kwargs[key] = _build_task(value, f"{full}.")
        elif dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ValueError(f"config key {full!r} is a section: expected a mapping of "
                                 f"{', '.join(f.name for f in dataclasses.fields(tp))}, got {value!r}")
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            kwargs[key] = _convert(full, tp, value)
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ValueError(f"invalid config section {prefix.rstrip('.') or 'top level'!r}: {err}") from err


def _to_dict(obj) -> dict:
    out = {}
    if isinstance(obj, TaskOptions):
        out["name"] = task_of_options(obj).name
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = _to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[f.name] = value
    return out


def _merge(base: dict, layer: dict, prefix: str = "") -> dict:
    """Deep-merge a YAML layer into a copy of ``base``; unknown keys are left for :func:`_build` to report.
    ``model.overrides`` is a leaf: a layer that gives it replaces it, and a layer that sets a new ``model.name``
    without it gets empty overrides. Likewise a layer that names another task starts from that task's defaults, and
    a task option that is a mapping (spec overrides of a second model) is a leaf: a layer replaces it whole, as a
    command-line override does, so a config read back from a checkpoint builds what was trained."""
    out = dict(base)
    if prefix == "model." and "name" in layer and layer["name"] != base.get("name"):
        out["overrides"] = {}  # the old model's spec fields would not fit the new one
    if prefix == "task." and "name" in layer and layer["name"] != base.get("name"):
        out = {"name": layer["name"]}  # the old task's options would not fit the new one
    for key, value in layer.items():
        leaf = f"{prefix}{key}" == "model.overrides" or prefix == "task."
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not leaf:
            out[key] = _merge(out[key], value, f"{prefix}{key}.")
        else:
            out[key] = value
    return out


def config_to_dict(cfg: TrainConfig) -> dict:
    return _to_dict(cfg)


class _Dumper(yaml.SafeDumper):
    """Sections as blocks, lists inline (``mean: [0.5, 0.5, 0.5]``)."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def config_to_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML text (what ``run_dir/config.yaml`` and checkpoints hold)."""
    return yaml.dump(_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def migrate_legacy(values: dict) -> dict:
    """A config written before the tasks layer (a ``recipe:`` section holding the classification keys, no ``task:``
    section) in today's layout: those keys move to ``task:`` with ``name: classification``. Used for configs
    inside old checkpoints; a config file with old keys gets an error that names the new key."""
    recipe = values.get("recipe")
    if "task" in values or not isinstance(recipe, dict) or not any(k in recipe for k in LEGACY_RECIPE_KEYS):
        return values
    out = dict(values)
    out["recipe"] = {k: v for k, v in recipe.items() if k not in LEGACY_RECIPE_KEYS}
    out["task"] = {"name": "classification", **{k: v for k, v in recipe.items() if k in LEGACY_RECIPE_KEYS}}
    return out


def _base_values(task_name: str | None) -> dict:
    """The layer every config starts from: the dataclass defaults, or a non-default task's default config file."""
    values = _to_dict(TrainConfig())
    if task_name is None or task_name == DEFAULT_TASK:
        return values
    task = get_task(task_name)
    merged = _merge(values, {"task": {"name": task_name}})
    if task.default_config is None:
        return merged
    from ..resources import find_resource

    path = find_resource("configs", task.default_config)
    layer = yaml.safe_load(Path(path).read_text()) or {}
    return _merge(merged, layer)


def config_from_dict(values: dict, base_task: str | None = None) -> TrainConfig:
    """``values`` (nested sections) over the defaults of its task (``task.name``, else ``base_task``)."""
    if not isinstance(values, dict):
        raise ValueError(f"a training config must be a mapping of sections {list(_SECTIONS)}, got {values!r}")
    task = values.get("task") if isinstance(values.get("task"), dict) else {}
    cfg = _build(TrainConfig, _merge(_base_values(task.get("name", base_task)), values), "")
    check_config(cfg)
    return cfg


def config_from_yaml(text: str, source: str = "config", legacy: bool = False) -> TrainConfig:
    """A config from YAML text. ``legacy``: accept the pre-tasks layout (checkpoints written before it)."""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML: {err}") from err
    values = values or {}
    if legacy and isinstance(values, dict):
        values = migrate_legacy(values)
    try:
        return config_from_dict(values)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` → ``(["optim", "lr"], 3e-4)`` (the value read as YAML); ``"task=NAME"`` →
    ``(["task", "name"], NAME)``."""
    if "=" not in item:
        raise ValueError(f"override {item!r}: expected key=value, e.g. optim.lr=3e-4 or model.name=deit_tiny_"
                         f"distilled_test")
    key, _, text = item.partition("=")
    path = key.strip().split(".")
    if not all(path):
        raise ValueError(f"override {item!r}: expected a dotted key such as schedule.epochs, got {key!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    if path == ["task"]:
        path = ["task", "name"]
    return path, value


def _check_key(path: list[str]) -> None:
    """A ``ValueError`` listing the valid keys if ``path`` names no field (free-form dicts accept any subkey; task
    keys are checked when the section is built, once its task is known)."""
    if path[0] == "task":
        if len(path) > 2:
            raise ValueError(f"config key {'.'.join(path[:2])!r} is a value, not a section; got {'.'.join(path)!r}")
        return
    cls: Any = TrainConfig
    for depth, key in enumerate(path):
        if not dataclasses.is_dataclass(cls):
            if typing.get_origin(_is_optional(cls)[1]) is dict or cls is dict:
                return
            raise ValueError(f"config key {'.'.join(path[:depth])!r} is a value, not a section; got "
                             f"{'.'.join(path)!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        if key not in names:
            prefix = ".".join(path[:depth]) or "the top level"
            raise ValueError(f"unknown config key {'.'.join(path)!r}{_suggest(key, names)}"
                             f"{_legacy_hint('.'.join(path))}; valid keys under {prefix!r}: {', '.join(names)}")
        cls = _hints(cls)[key]


def _set(values: dict, path: list[str], value) -> None:
    node = values
    for key in path[:-1]:
        child = node.get(key)
        node[key] = dict(child) if isinstance(child, dict) else {}
        node = node[key]
    node[path[-1]] = value


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """A new config with the ``key.sub=value`` overrides applied, in order. ``model.overrides={...}`` replaces the
    spec overrides, ``model.overrides.depth=6`` adds one; if ``model.name`` changes, only the overrides given
    here are kept. Likewise if ``task.name`` changes, the task section restarts from the new task's defaults plus
    the task keys given here."""
    values = _to_dict(cfg)
    base_name, base_task = values["model"]["name"], values["task"]["name"]
    given: dict | None = None  # model overrides given by this layer
    task_given: dict = {}  # task keys given by this layer
    for item in overrides:
        path, value = parse_override(item)
        if path[0] not in _SECTIONS:
            raise ValueError(f"unknown config key {'.'.join(path)!r}{_suggest(path[0], list(_SECTIONS))}; "
                             f"sections: {', '.join(_SECTIONS)}")
        if len(path) == 1:
            raise ValueError(f"override {item!r}: {path[0]!r} is a section; set one of its keys, e.g. "
                             f"{path[0]}.{dataclasses.fields(_SECTIONS[path[0]])[0].name}=...")
        if path[:2] == ["model", "overrides"]:
            if len(path) == 2:
                given = value
            else:
                given = dict(given or {})
                _set(given, path[2:], value)
        _check_key(path)
        if path[0] == "task":
            task_given[path[1]] = value
        _set(values, path, value)
    if values["model"]["name"] != base_name:
        values["model"]["overrides"] = given if given is not None else {}
    if values["task"]["name"] != base_task:
        values["task"] = dict(task_given)
    cfg = _build(TrainConfig, values, "")
    check_config(cfg)
    return cfg


def _task_named(values: dict | None, overrides: list[str]) -> str | None:
    """The task a config file's values and the overrides name (the last override wins), if any."""
    name = None
    if isinstance(values, dict) and isinstance(values.get("task"), dict):
        name = values["task"].get("name")
    for item in overrides:
        if "=" in item:
            path, value = parse_override(item)
            if path == ["task", "name"]:
                name = value
    return name


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults (the task's default config when ``task.name`` is not the default task) ← YAML file at ``path``
    (optional) ← ``overrides`` (``["optim.lr=3e-4", ...]``)."""
    overrides = list(overrides or [])
    values = None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"config file {str(path)!r}: not valid YAML: {err}") from err
        if not isinstance(values, dict):
            raise ValueError(f"config file {str(path)!r}: expected a mapping of sections {list(_SECTIONS)}, got "
                             f"{values!r}")
    task = _task_named(values, overrides)
    try:
        base = _build(TrainConfig, _merge(_base_values(task), values or {}), "")
    except ValueError as err:
        raise ValueError(f"config file {str(path)!r}: {err}" if path is not None else str(err)) from err
    return apply_overrides(base, overrides)
