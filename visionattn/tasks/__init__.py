"""Tasks: heads, losses, metrics and data plumbing that consume only the backbone contract.

``get_task(name)`` → the :class:`~visionattn.tasks.base.Task` subclass registered under ``name``;
``list_tasks()`` → the names. A task package registers itself when imported; :data:`TASK_MODULES` lists the
packages that ship with visionattn (imported on first use, so ``import visionattn.tasks`` stays cheap). A task
defined elsewhere (a test, a user's package) calls :func:`register_task` itself.
"""

from __future__ import annotations

import difflib
import importlib

from .base import (
    EvalContext,
    Evaluation,
    GridImage,
    LossOutput,
    Metric,
    PredictOptions,
    PredictOutput,
    Progress,
    ReportItem,
    StepContext,
    Task,
    TaskData,
    TaskOptions,
)

__all__ = [
    "DEFAULT_TASK",
    "EvalContext",
    "Evaluation",
    "GridImage",
    "LossOutput",
    "Metric",
    "PredictOptions",
    "PredictOutput",
    "Progress",
    "ReportItem",
    "StepContext",
    "Task",
    "TaskData",
    "TaskOptions",
    "get_task",
    "list_tasks",
    "register_task",
    "task_of_options",
]

DEFAULT_TASK = "classification"
TASK_MODULES = ("classification", "video")
_REGISTRY: dict[str, type[Task]] = {}
_loaded = False


def register_task(cls: type[Task]) -> type[Task]:
    """Register a :class:`Task` subclass under ``cls.name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Task)) or not cls.name:
        raise TypeError(f"register_task: expected a Task subclass with a name, got {cls!r}")
    known = _REGISTRY.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"task {cls.name!r} is registered twice ({known.__module__} and {cls.__module__})")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in TASK_MODULES:
            importlib.import_module(f".{module}", __name__)


def list_tasks() -> list[str]:
    """Registered task names, sorted."""
    _load()
    return sorted(_REGISTRY)


def get_task(name: str) -> type[Task]:
    """The task class named ``name``; a ``ValueError`` listing the known tasks (closest first) otherwise."""
    _load()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; known tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def task_of_options(options: TaskOptions) -> type[Task]:
    """The registered task whose options class ``options`` is an instance of."""
    _load()
    for cls in _REGISTRY.values():
        if type(options) is cls.options_class:
            return cls
    raise ValueError(f"no registered task takes options of type {type(options).__name__}")
