"""``visionattn experiment NAME|PATH.yaml [--quick] [--seeds 0,1,2] [--jobs N] [--out DIR] [key=value ...]`` and
``visionattn experiment --list``.

Exit codes: 0 every run finished; 1 some runs failed (the table still lists them); 2 bad input (unknown experiment,
a file that breaks the schema, a bad override); 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

__all__ = ["add_parser", "default_out_dir", "parse_overrides"]

_DESCRIPTION = """Run one of the tutorial's claims as an experiment (experiments/NAME.yaml, or a YAML path): every
variant x sweep point x seed in its own run directory, then results.csv (per seed), summary.md (mean ± std per
variant, whether the claimed ordering reproduced), results.json and a plot, in --out (default
runs/experiments/NAME[-quick][-<hash of the overrides>]). Running the same command again resumes: finished runs are
skipped. key=value overrides apply to every run (kind train: training config keys such as data.name=cifar10
data.path=/data/cifar-10-batches-py; kind function: the function's params)."""


def add_parser(sub) -> None:
    """Register the ``experiment`` subcommand on an argparse sub-parser collection."""
    # key=value words after options are appended to ``overrides`` by visionattn.cli.main
    parser = sub.add_parser("experiment", help="run a tutorial claim as an experiment: several seeds, a "
                                               "mean ± std table and a plot", description=_DESCRIPTION)
    parser.add_argument("name", nargs="?", help="experiment name (experiments/NAME.yaml) or a YAML file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every run")
    parser.add_argument("--list", action="store_true", help="list the experiments with their claims")
    parser.add_argument("--quick", action="store_true", help="the experiment's quick setting (a smoke test)")
    parser.add_argument("--seeds", help="comma-separated seeds instead of the file's, e.g. 0,1,2")
    parser.add_argument("--variants", help="comma-separated variants to run (default: all of the file's)")
    parser.add_argument("--jobs", type=int, help="runs at once, each in its own process with one thread "
                                                  "(default: CPU cores, at most 8)")
    parser.add_argument("--threads", type=int, help="torch threads of each run (default 1)")
    parser.add_argument("--out", help="output directory (default runs/experiments/NAME...)")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep finished train runs' checkpoints (removed by default to save disk)")
    parser.set_defaults(func=_cmd_experiment)


def parse_overrides(words: list[str]) -> dict:
    """``["data.name=cifar10", "schedule.epochs=3"]`` → nested ``{"data": {"name": "cifar10"}, ...}`` (values
    read as YAML); ``ValueError`` for a word without ``=``."""
    import yaml

    from .spec import nest

    flat = {}
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {word!r}: expected key=value, e.g. schedule.epochs=3")
        try:
            flat[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            flat[key.strip()] = text
    return nest(flat, "overrides")


def default_out_dir(name: str, quick: bool, overrides: dict, seeds: list[int] | None = None,
                    variants: str | None = None) -> Path:
    """``runs/experiments/NAME[-quick][-<8 hex of the overrides, --seeds and --variants>]``: a different setting
    never resumes (or overwrites) another's runs."""
    tag = f"{name}-quick" if quick else name
    if overrides or seeds or variants:
        key = [overrides, seeds, variants]
        digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
        tag += f"-{digest}"
    return Path("runs") / "experiments" / tag


def _error(message: str) -> int:
    print(f"visionattn experiment: error: {message}", file=sys.stderr, flush=True)
    return 2


def _list() -> int:
    from .spec import SpecError, list_experiments, load_spec

    found = list_experiments()
    if not found:
        print("no experiments found (looked in ./experiments and the source tree's experiments/)")
        return 0
    for name, path in found.items():
        try:
            spec = load_spec(path)
            runs = len(spec.variants) * max(1, len(next(iter(spec.sweep.values()), [0]))) * len(spec.seeds)
            print(f"{name}  ({spec.kind}, {len(spec.variants)} variants, {runs} runs)  {path}")
            print(f"    claim: {spec.claim}")
        except (SpecError, FileNotFoundError) as err:
            print(f"{name}  INVALID: {err}")
    return 0


def _cmd_experiment(args) -> int:
    from .runner import default_jobs, run_experiment
    from .spec import SpecError, load_spec, parse_seeds

    if args.list:
        return _list()
    if not args.name:
        return _error("expected an experiment NAME or a YAML path (visionattn experiment --list shows them)")
    try:
        spec = load_spec(args.name)
        if args.quick:
            spec = spec.with_quick()
        seeds = parse_seeds(args.seeds) if args.seeds else None
        if seeds:
            spec.seeds = seeds
        if args.variants:
            spec = spec.only_variants([v.strip() for v in args.variants.split(",") if v.strip()])
        overrides = parse_overrides(args.overrides)
        jobs = default_jobs() if args.jobs is None else args.jobs
        if jobs < 1:
            raise ValueError(f"--jobs: expected >= 1, got {jobs}")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads: expected >= 1, got {args.threads}")
        out = Path(args.out) if args.out else default_out_dir(spec.name, args.quick, overrides, seeds, args.variants)
        result = run_experiment(spec, out, jobs=jobs, overrides=overrides, keep_checkpoints=args.keep_checkpoints,
                                threads=args.threads, log=lambda m: print(m, flush=True))
    except (SpecError, ValueError, FileNotFoundError) as err:
        return _error(str(err))
    except KeyboardInterrupt:
        print("visionattn experiment: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print()
    print((Path(result["out_dir"]) / "summary.md").read_text())
    print("written: " + ", ".join(str(p) for p in result["paths"]))
    if result["failed"]:
        print(f"{result['failed']} of {result['n_runs']} runs failed (see the table)", file=sys.stderr)
        return 1
    return 0
