"""Experiment files (``experiments/NAME.yaml``): the schema, its validation, and the expansion into runs.

Schema (keys; ``?`` = optional)::

    name: str                  letters, digits, '_' and '-' (the run directory's name)
    claim: str                 the tutorial's claim, in its words
    command: str               "visionattn experiment NAME"
    seeds: [int, ...]          every (variant, sweep point) runs once per seed
    kind: train | function     train: the visionattn trainer; function: a Python entry point
    entry?: "module:function"  kind function only: fn(params: dict, seed: int, out_dir: pathlib.Path)
                               -> dict[str, float]; it may write files into out_dir
    metric: str                the headline metric key (train: val_top1, best_val_top1, ...)
    base: dict                 train: config overrides ({"model.name": ..., "schedule.epochs": ...}; dotted or
                               nested keys); function: the params
    variants: {name: dict}     each merged over base (deep merge; dotted keys allowed)
    sweep?: {key: [values]}    a grid axis over every variant; several keys are zipped (equal lengths) and the
                               first is the x axis of the plot, e.g. data.train_fraction with schedule.epochs
    ordering?: ["a < b", ...]  the claimed order of variants by the metric (checked at every sweep point)
    report?: [key, ...]        extra metrics shown beside the headline (train default: params_m, gmacs,
                               train_img_per_s)
    bench?: {img_sizes: [int], batch: int, repeats: int}
                               train only: after the first seed's run, time a training step (forward + backward)
                               and count GMACs at each size (img_per_s_<S>px, gmacs_<S>px)
    quick?: {seeds: [...], base: {...}, variants: [names], sweep: {...}}
                               what --quick changes: base merged over base, variants kept, sweep replaced
    expected?: str             the result we measured (filled after running)
    plot?: {title, ylabel, xlabel, xscale / yscale: linear|log, x: metric key or list (scatter of the headline
            vs each)}

A string value ``"${seed}"`` anywhere in base/variants/sweep becomes the run's seed (e.g. ``data.subset_seed``).
For kind train the runner also sets ``run.seed`` to the seed and ``run.dir`` to the run's directory.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ExperimentSpec", "RunPlan", "SpecError", "load_spec", "find_experiment", "list_experiments",
           "experiment_dirs", "plan_runs", "nest", "deep_merge", "parse_seeds", "flat_keys", "params_key"]

KINDS = ("train", "function")
KEYS = ("name", "claim", "command", "seeds", "kind", "entry", "metric", "base", "variants", "sweep", "ordering",
        "report", "bench", "quick", "expected", "plot")
REQUIRED = ("name", "claim", "command", "seeds", "kind", "metric", "base", "variants")
QUICK_KEYS = ("seeds", "base", "variants", "sweep")
PLOT_KEYS = ("title", "ylabel", "xlabel", "xscale", "yscale", "x")
BENCH_KEYS = ("img_sizes", "batch", "repeats")
DEFAULT_REPORT = {"train": ["params_m", "gmacs", "train_img_per_s"], "function": []}
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_ORDER = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*<\s*([A-Za-z0-9_.-]+)\s*$")
SEED = "${seed}"


class SpecError(ValueError):
    """An experiment file that does not follow the schema; the message names the file and the key."""


@dataclass
class ExperimentSpec:
    """A validated experiment file (see the module docstring); ``path`` is where it was read from."""

    name: str
    claim: str
    command: str
    seeds: list[int]
    kind: str
    metric: str
    base: dict
    variants: dict[str, dict]
    entry: str | None = None
    sweep: dict[str, list] = field(default_factory=dict)
    ordering: list[tuple[str, str]] = field(default_factory=list)
    report: list[str] = field(default_factory=list)
    bench: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)
    expected: str = ""
    plot: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def x_key(self) -> str | None:
        """The sweep key on the x axis (the first one), or None without a sweep."""
        return next(iter(self.sweep), None)

    def with_quick(self) -> ExperimentSpec:
        """The spec as ``--quick`` runs it: quick.base merged over base, quick.seeds, the variants it keeps, its
        sweep."""
        spec = copy.deepcopy(self)
        q = self.quick
        if "seeds" in q:
            spec.seeds = list(q["seeds"])
        if "base" in q:
            spec.base = deep_merge(spec.base, q["base"])
        if "variants" in q:
            spec = spec.only_variants(q["variants"])
        if "sweep" in q:
            spec.sweep = dict(q["sweep"])
        return spec

    def only_variants(self, names: list[str]) -> ExperimentSpec:
        """The spec restricted to ``names`` (in the file's order; orderings between kept variants kept);
        ``ValueError`` naming the unknown ones."""
        unknown = [n for n in names if n not in self.variants]
        if unknown or not names:
            raise ValueError(f"variants {unknown or names}: expected names from {list(self.variants)}")
        spec = copy.deepcopy(self)
        spec.variants = {k: v for k, v in self.variants.items() if k in names}
        spec.ordering = [(a, b) for a, b in self.ordering if a in spec.variants and b in spec.variants]
        return spec


@dataclass
class RunPlan:
    """One run: a variant at one sweep point with one seed. ``params``: the merged nested dict (train: config
    overrides; function: the function's params). ``point``: the sweep keys' values (empty without a sweep)."""

    variant: str
    point: dict[str, Any]
    seed: int
    params: dict
    run_id: str

    @property
    def x(self):
        return next(iter(self.point.values()), None)

    def to_json(self) -> dict:
        return {"variant": self.variant, "point": self.point, "seed": self.seed, "params": self.params,
                "run_id": self.run_id}


# -- dict helpers ----------------------------------------------------------------------------------------------
def nest(values: dict, where: str = "") -> dict:
    """Dotted keys → nested dicts: ``{"model.overrides.kernel": 3}`` → ``{"model": {"overrides": {"kernel": 3}}}``;
    nested input is normalised the same way (deep)."""
    out: dict = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise SpecError(f"{where}: keys must be non-empty dotted names such as schedule.epochs, got {key!r}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(f"{where}: key {key!r} goes inside {part!r}, which is already a value")
        leaf = nest(value, where) if isinstance(value, dict) else copy.deepcopy(value)
        if isinstance(leaf, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = deep_merge(node[parts[-1]], leaf)
        else:
            node[parts[-1]] = leaf
    return out


def deep_merge(base: dict, layer: dict) -> dict:
    """A copy of ``base`` with ``layer`` merged in: dicts merge recursively, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _substitute_seed(value, seed: int):
    if isinstance(value, dict):
        return {k: _substitute_seed(v, seed) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_seed(v, seed) for v in value]
    return seed if value == SEED else value


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; a ``ValueError`` naming the option otherwise."""
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: expected distinct comma-separated ints such as 0,1,2, got {text!r}")
    return seeds


# -- validation ------------------------------------------------------------------------------------------------
def _fail(where: str, key: str, expected: str, got) -> SpecError:
    return SpecError(f"{where}: key {key!r}: expected {expected}, got {got!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_seeds(where: str, key: str, seeds) -> list[int]:
    if not isinstance(seeds, list) or not seeds or not all(_is_int(s) for s in seeds) or len(set(seeds)) != len(seeds):
        raise _fail(where, key, "a non-empty list of distinct ints such as [0, 1, 2]", seeds)
    return list(seeds)


def _check_sweep(where: str, key: str, sweep) -> dict[str, list]:
    if not isinstance(sweep, dict) or not sweep:
        raise _fail(where, key, "a mapping {key: [values]} (several keys are zipped)", sweep)
    lengths = set()
    for k, values in sweep.items():
        if not isinstance(k, str) or not isinstance(values, list) or not values:
            raise _fail(where, f"{key}.{k}", "a non-empty list of values", values)
        if any(isinstance(v, (dict, list)) for v in values):
            raise _fail(where, f"{key}.{k}", "scalar values", values)
        lengths.add(len(values))
    if len(lengths) > 1:
        raise _fail(where, key, "lists of equal length (its keys are zipped)", {k: len(v) for k, v in sweep.items()})
    first = next(iter(sweep.values()))
    if len(set(map(str, first))) != len(first):
        raise _fail(where, f"{key}.{next(iter(sweep))}", "distinct values (it is the x axis)", first)
    return dict(sweep)


def validate(raw, where: str) -> ExperimentSpec:
    """A checked :class:`ExperimentSpec` from the parsed YAML ``raw``; :class:`SpecError` naming ``where`` (the
    file), the key, what was expected and what was found."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping of {', '.join(REQUIRED)}, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(f"{where}: unknown key {unknown[0]!r}{hint}; expected keys: {', '.join(KEYS)}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise SpecError(f"{where}: missing key(s) {missing}; required: {', '.join(REQUIRED)}")
    for key in ("name", "claim", "command", "metric"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise _fail(where, key, "a non-empty string", raw[key])
    if not _NAME.match(raw["name"]):
        raise _fail(where, "name", "letters, digits, '_' or '-'", raw["name"])
    if not raw["command"].startswith("visionattn experiment"):
        raise _fail(where, "command", f"'visionattn experiment {raw['name']}'", raw["command"])
    if raw["kind"] not in KINDS:
        raise _fail(where, "kind", f"one of {list(KINDS)}", raw["kind"])
    entry = raw.get("entry")
    if raw["kind"] == "function":
        if not isinstance(entry, str) or entry.count(":") != 1 or not all(entry.split(":")):
            raise _fail(where, "entry", "'package.module:function' (kind function)", entry)
    elif entry is not None:
        raise _fail(where, "entry", "no entry for kind train", entry)
    seeds = _check_seeds(where, "seeds", raw["seeds"])
    if not isinstance(raw["base"], dict):
        raise _fail(where, "base", "a mapping of parameters / config overrides", raw["base"])
    base = nest(raw["base"], f"{where}: base")
    variants = raw["variants"]
    if not isinstance(variants, dict) or not variants:
        raise _fail(where, "variants", "a non-empty mapping {name: {key: value}}", variants)
    checked = {}
    for name, overrides in variants.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(where, "variants", "variant names of letters, digits, '_' or '-'", name)
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, dict):
            raise _fail(where, f"variants.{name}", "a mapping {key: value} (may be empty)", overrides)
        checked[name] = nest(overrides, f"{where}: variants.{name}")
    sweep = _check_sweep(where, "sweep", raw["sweep"]) if raw.get("sweep") is not None else {}
    ordering = []
    for item in raw.get("ordering") or []:
        m = _ORDER.match(item) if isinstance(item, str) else None
        if not m:
            raise _fail(where, "ordering", "items 'variant_a < variant_b'", item)
        for v in m.groups():
            if v not in checked:
                raise _fail(where, "ordering", f"variant names from {list(checked)}", v)
        ordering.append(m.groups())
    report = raw.get("report", DEFAULT_REPORT[raw["kind"]])
    if not isinstance(report, list) or not all(isinstance(r, str) for r in report):
        raise _fail(where, "report", "a list of metric keys", report)
    bench = raw.get("bench") or {}
    if bench:
        if raw["kind"] != "train" or not isinstance(bench, dict) or set(bench) - set(BENCH_KEYS):
            raise _fail(where, "bench", f"(kind train) a mapping with keys from {list(BENCH_KEYS)}", bench)
        sizes = bench.get("img_sizes")
        if not isinstance(sizes, list) or not sizes or not all(_is_int(s) and s > 0 for s in sizes):
            raise _fail(where, "bench.img_sizes", "a non-empty list of positive ints", sizes)
        for k in ("batch", "repeats"):
            if k in bench and not (_is_int(bench[k]) and bench[k] > 0):
                raise _fail(where, f"bench.{k}", "a positive int", bench[k])
    quick = raw.get("quick") or {}
    if not isinstance(quick, dict) or set(quick) - set(QUICK_KEYS):
        raise _fail(where, "quick", f"a mapping with keys from {list(QUICK_KEYS)}", quick)
    quick = dict(quick)
    if "seeds" in quick:
        quick["seeds"] = _check_seeds(where, "quick.seeds", quick["seeds"])
    if "base" in quick:
        if not isinstance(quick["base"], dict):
            raise _fail(where, "quick.base", "a mapping", quick["base"])
        quick["base"] = nest(quick["base"], f"{where}: quick.base")
    if "variants" in quick:
        kept = quick["variants"]
        if not isinstance(kept, list) or not kept or any(v not in checked for v in kept):
            raise _fail(where, "quick.variants", f"a non-empty list of names from {list(checked)}", kept)
    if "sweep" in quick:
        quick["sweep"] = _check_sweep(where, "quick.sweep", quick["sweep"])
    plot = raw.get("plot") or {}
    if not isinstance(plot, dict) or set(plot) - set(PLOT_KEYS):
        raise _fail(where, "plot", f"a mapping with keys from {list(PLOT_KEYS)}", plot)
    for axis in ("xscale", "yscale"):
        if plot.get(axis, "linear") not in ("linear", "log"):
            raise _fail(where, f"plot.{axis}", "'linear' or 'log'", plot.get(axis))
    x = plot.get("x")
    if x is not None and not (isinstance(x, str) or (isinstance(x, list) and x and all(isinstance(k, str) for k in x))):
        raise _fail(where, "plot.x", "a metric key or a list of them", x)
    expected = raw.get("expected") or ""
    if not isinstance(expected, str):
        raise _fail(where, "expected", "a string", expected)
    return ExperimentSpec(name=raw["name"], claim=raw["claim"].strip(), command=raw["command"].strip(), seeds=seeds,
                          kind=raw["kind"], metric=raw["metric"], base=base, variants=checked, entry=entry,
                          sweep=sweep, ordering=ordering, report=list(report), bench=dict(bench), quick=quick,
                          expected=expected.strip(), plot=plot)


# -- finding and loading ----------------------------------------------------------------------------------------
def experiment_dirs() -> list[Path]:
    """Where experiment names are looked up: ``./experiments`` (your own files) then the experiments that ship with
    visionattn (the checkout's ``experiments/``, or the installed package's copy: :mod:`visionattn.resources`)."""
    from ..resources import resource_dir

    shipped = resource_dir("experiments")
    dirs = [Path.cwd() / "experiments"] + ([shipped] if shipped is not None else [])
    out = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def list_experiments() -> dict[str, Path]:
    """``{name: path}`` of every ``*.yaml`` in :func:`experiment_dirs` (the first directory wins)."""
    found: dict[str, Path] = {}
    for d in experiment_dirs():
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def find_experiment(name_or_path: str) -> Path:
    """The file of an experiment given by name (``posenc_ablation``) or path (``my.yaml``)."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or "/" in text or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"experiment file {text!r} does not exist")
        return path
    known = list_experiments()
    if text not in known:
        close = difflib.get_close_matches(text, list(known), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        where = " or ".join(str(d) for d in experiment_dirs()) or "./experiments (missing)"
        raise FileNotFoundError(f"no experiment {text!r} in {where}; known: {', '.join(known) or 'none'}{hint}")
    return known[text]


def load_spec(name_or_path: str | Path) -> ExperimentSpec:
    """Find, parse and validate an experiment file."""
    path = find_experiment(str(name_or_path))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from err
    spec = validate(raw, str(path))
    spec.path = path
    return spec


# -- expansion -------------------------------------------------------------------------------------------------
def _slug(value) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value))


def plan_runs(spec: ExperimentSpec, overrides: dict | None = None) -> list[RunPlan]:
    """Every (variant, sweep point, seed) as a :class:`RunPlan`, in the order variant → point → seed.
    ``overrides`` (nested) go over everything, e.g. the command line's ``data.name=cifar10``."""
    clash = sorted(set(flat_keys(overrides or {})) & set(spec.sweep))
    if clash:
        raise SpecError(f"{spec.path or spec.name}: override(s) {clash} would replace the sweep's values "
                        f"{[spec.sweep[k] for k in clash]} and make its points identical; expected overrides of "
                        f"other keys")
    points: list[dict] = [{}]
    if spec.sweep:
        keys = list(spec.sweep)
        points = [dict(zip(keys, values, strict=True)) for values in zip(*spec.sweep.values(), strict=True)]
    plans = []
    for variant, layer in spec.variants.items():
        merged = deep_merge(spec.base, layer)
        for point in points:
            with_point = deep_merge(merged, nest(point, "sweep"))
            if overrides:
                with_point = deep_merge(with_point, overrides)
            for seed in spec.seeds:
                x = ""
                if point:
                    short = spec.x_key.rsplit(".", 1)[-1]
                    x = f"__{short}-{_slug(next(iter(point.values())))}"
                params = _substitute_seed(with_point, seed)
                plans.append(RunPlan(variant, dict(point), seed, params, f"{variant}{x}__seed{seed}"))
    return plans


def flat_keys(values: dict, prefix: str = "") -> list[str]:
    """Dotted leaf keys of a nested dict: ``{"data": {"name": 1}}`` → ``["data.name"]``."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out += flat_keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def params_key(params: dict) -> str:
    """A canonical text of a run's params (to tell whether a finished run is still the one asked for)."""
    return json.dumps(params, sort_keys=True, default=str)
