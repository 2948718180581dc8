"""Values that depend only on static call properties (pattern, grids, device), computed once and cached.

Plans (the blocked backend's tilings and masks, a pattern's reach, flex block masks) are built from the pattern
and the grid sizes with small tensor programs that read values back (``bool(t.all())``, ``int(t.max())``). Under
``torch.compile`` such reads are graph breaks, and tracing them would also rebuild the plan inside every graph.
:func:`trace_constant` caches a builder by its (hashable) arguments and marks it for Dynamo as having a constant
result: Dynamo calls it at trace time with the concrete arguments and puts the result into the graph as a constant,
so the operator compiles with ``fullgraph=True``. Eager calls hit the cache.

:func:`static_int` turns a possibly symbolic size (a dynamic-shape ``SymInt`` under ``torch.compile``) into a plain
int, specialising the graph on it: plans need concrete grid sizes.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def trace_constant(maxsize: int | None = 128) -> Callable[[F], F]:
    """Decorator: an ``lru_cache(maxsize)`` of ``fn`` that ``torch.compile`` runs at trace time as a constant.

    ``fn``'s arguments must be hashable Python values (ints, tuples, strings, frozen patterns) and its result must
    depend on nothing else. The wrapper keeps ``cache_clear()`` and ``cache_info()``."""

    def wrap(fn: F) -> F:
        # The result travels in a 1-tuple: Dynamo gives a constant container a unique name, but would name a bare
        # tensor result after the function, so two such tensors in one graph would clash.
        cached = functools.lru_cache(maxsize=maxsize)(
            lambda *args: (_static_tensors(_on_host(fn, tuple(_thaw(a) for a in args))),))
        constant = torch.compiler.assume_constant_result(lambda *args: cached(*args))

        @functools.wraps(fn)
        def call(*args):
            return constant(*[_freeze(a) for a in args])[0]

        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return call

    return wrap


_FROZEN = "visionattn.static.frozen_dataclass"


def _freeze(value):
    """A frozen dataclass that compares by value (a pattern) as plain data ``(marker, class, ((field, value), ...))``.

    Dynamo hands an object built *inside* a compiled region (``Window(7, shift)`` in a model's forward) to an
    ``assume_constant_result`` function with its fields at their defaults (``Window(7, 0)``): the plan of another
    pattern would run. Its fields, read in the traced code, are right; so the object travels as its fields and
    :func:`_thaw` rebuilds it where the builder runs."""
    if value is None or isinstance(value, (bool, int, float, str, tuple, torch.dtype, torch.device, type)):
        return value
    params = getattr(type(value), "__dataclass_params__", None)
    if params is None or not (params.frozen and params.eq):
        return value
    fields = [(f.name, _freeze(getattr(value, f.name))) for f in dataclasses.fields(value) if f.init]
    return (_FROZEN, type(value), tuple(fields))


def _thaw(value):
    if isinstance(value, tuple) and len(value) == 3 and value[0] == _FROZEN:
        return value[1](**{name: _thaw(v) for name, v in value[2]})
    return value


def _on_host(fn: Callable, args: tuple):
    """``fn(*args)`` with CPU as the default device: a plan is host arithmetic (tensors it puts on a device get
    ``device=`` explicitly), so a surrounding ``with torch.device("meta")`` (counting a model's FLOPs without
    allocating it) must not turn its reads (``int(t.max())``) into errors."""
    with torch.device("cpu"):
        return fn(*args)


def _static_tensors(value, depth: int = 0):
    """Mark every tensor in ``value`` (and its attributes, lists, tuples, dicts; views' bases) static for Dynamo.

    Dynamo names every constant result after the builder, so tensors of different plans would look like one input
    whose shape changes, and automatic dynamic shapes would then make their sizes symbolic (with no real source to
    guard: an error at guard building). Static marks keep their sizes concrete. Returns ``value``."""
    if isinstance(value, torch.Tensor):
        for t in (value, value._base):
            if t is not None:
                _mark_static(t)
    elif depth < 4 and isinstance(value, (list, tuple)):
        for item in value:
            _static_tensors(item, depth + 1)
    elif depth < 4 and isinstance(value, dict):
        for item in value.values():
            _static_tensors(item, depth + 1)
    elif depth < 4 and hasattr(value, "__dict__") and not isinstance(value, type):
        for item in vars(value).values():
            _static_tensors(item, depth + 1)
    return value


def _mark_static(t: torch.Tensor) -> None:
    """What ``torch._dynamo.mark_static(t)`` records outside a compiled region. Set directly because the builder
    may run at trace time, where ``mark_static`` specialises the traced tensor instead of marking this one."""
    t._dynamo_static_indices = set(range(t.dim()))
    t._has_dynamo_dim_marking = True


def static_int(n) -> int:
    """``n`` as a Python int; under ``torch.compile`` a symbolic size is specialised (guarded) to its value."""
    return operator.index(n)


def static_shape(shape) -> tuple[int, ...]:
    """A shape (or any sequence of sizes) as a tuple of Python ints (see :func:`static_int`)."""
    return tuple(static_int(n) for n in shape)
