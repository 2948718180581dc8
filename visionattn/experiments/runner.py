"""Run an experiment end to end: every (variant, sweep point, seed) in its own run directory, in sequence or in
``jobs`` worker processes (one torch thread each), then the table, the ordering check and the plot.

Layout of the output directory::

    OUT/experiment.yaml     the experiment file as run;   OUT/results.csv, results.json, summary.md, NAME.png
    OUT/runs/<run_id>/      plan.json (the run's params), result.json (status, metrics, wall_s), log.txt,
                            error.txt (a failed run's traceback); kind train: the trainer's config.yaml,
                            summary.json (and its checkpoints while it runs, removed when it finishes unless
                            keep_checkpoints); kind function: whatever the function writes

Resuming: running the same command again skips every run whose ``result.json`` says ``ok`` for the same params;
a failed or interrupted run is run again (kind train continues from its newest checkpoint when its params did
not change). A run that raises is recorded as failed and the others go on; a worker process that dies (killed,
out of memory) fails the run it held and is replaced.

Metrics of a train run (``result.json`` → ``metrics``): the trainer's final ``val_top1`` / ``val_top5`` /
``val_loss`` (of the trained weights; ``val_ema_*`` too with EMA), ``best_val_top1`` (best epoch, chosen on the
validation set: optimistic), ``train_img_per_s`` (measured during training), ``train_time_s``, ``steps``,
``epochs``, ``train_images``, ``params`` / ``params_m`` and ``gmacs`` (``visionattn.models.flops.count_flops``, one
image at ``data.img_size``); with ``bench`` (first seed only) ``img_per_s_<S>px`` (forward + backward, best of
``repeats`` timed steps of ``batch`` random images) and ``gmacs_<S>px``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .spec import ExperimentSpec, RunPlan, SpecError, params_key, plan_runs

__all__ = ["run_experiment", "execute_run", "train_config", "resolve_entry", "default_jobs"]


def default_jobs() -> int:
    """Worker processes by default: the CPU cores, at most 8."""
    return max(1, min(os.cpu_count() or 1, 8))


def resolve_entry(entry: str) -> Callable:
    """``"package.module:function"`` → the function; ``ValueError`` saying what is missing."""
    module_name, _, attr = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"entry {entry!r}: cannot import module {module_name!r}: {err}") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"entry {entry!r}: module {module_name!r} has no function {attr!r}")
    return fn


def train_config(params: dict, seed: int, run_dir: Path):
    """The :class:`~visionattn.train.config.TrainConfig` of a train run: the defaults ← ``params`` (nested
    overrides) with ``run.seed = seed`` and ``run.dir = run_dir``."""
    from ..train.config import config_from_dict
    from .spec import deep_merge

    values = deep_merge(params, {"run": {"seed": seed, "dir": str(run_dir)}})
    return config_from_dict(values)


# -- one run ------------------------------------------------------------------------------------------------------
def _numeric(values: dict) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out[k] = float(v)
    return out


def _bench(cfg, classes: int, options: dict, log) -> dict[str, float]:
    """``img_per_s_<S>px`` and ``gmacs_<S>px`` of the run's model at each size (see the module docstring)."""
    import torch

    from ..models import create_model
    from ..models.flops import count_flops
    from ..train.config import spec_overrides

    out = {}
    batch, repeats = int(options.get("batch", 16)), int(options.get("repeats", 3))
    for size in options["img_sizes"]:
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = create_model(cfg.model.name, num_classes=classes, img_size=size, **spec_overrides(cfg.model))
                x = torch.randn(batch, 3, size, size)
            out[f"gmacs_{size}px"] = count_flops(model, size)["macs"] / 1e9
            model.train()
            times = []
            for i in range(repeats + 1):  # the first step warms up
                start = time.perf_counter()
                model(x).float().logsumexp(dim=-1).sum().backward()
                if i:
                    times.append(time.perf_counter() - start)
                model.zero_grad(set_to_none=True)
            out[f"img_per_s_{size}px"] = batch / min(times)
        except Exception as err:  # noqa: BLE001 - a size the model cannot run is reported, not fatal
            log(f"bench at {size}px failed: {type(err).__name__}: {err}")
    return out


def _run_train(plan: RunPlan, run_dir: Path, options: dict, log) -> dict[str, float]:
    from ..models.flops import count_flops, count_params
    from ..train.checkpoint import load_latest
    from ..train.loop import Trainer

    cfg = train_config(plan.params, plan.seed, run_dir)
    found = load_latest(run_dir, log=log) if options.get("resume_state") else None
    trainer = Trainer(cfg, run_dir=run_dir, resume_state=found[1] if found else None, log=log)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    metrics = _numeric({k: v for k, v in summary.items() if k not in ("world_size", "threads", "paused")})
    metrics["params"] = float(count_params(trainer.model))
    metrics["gmacs"] = count_flops(trainer.model, cfg.data.img_size)["macs"] / 1e9
    if options.get("bench"):
        metrics.update(_bench(cfg, len(trainer.classes), options["bench"], log))
    return metrics


def _run_function(plan: RunPlan, run_dir: Path, options: dict, log) -> dict[str, float]:
    fn = resolve_entry(options["entry"])
    out = fn(plan.params, plan.seed, run_dir)
    if not isinstance(out, dict) or not all(isinstance(k, str) for k in out):
        raise TypeError(f"entry {options['entry']!r} must return dict[str, float], got {type(out).__name__}")
    bad = {k: v for k, v in out.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
    if bad:
        raise TypeError(f"entry {options['entry']!r} returned non-numeric metrics {bad}; expected dict[str, float]")
    return {k: float(v) for k, v in out.items()}


def execute_run(plan_json: dict, run_dir: str, options: dict) -> dict:
    """Run one plan (a :meth:`RunPlan.to_json` dict) in ``run_dir`` and return its result dict (also written to
    ``result.json``). ``options``: kind, entry, bench (dict or None), threads (int or None), keep_checkpoints,
    resume_state. Never raises for a failing run: the error is the result."""
    plan = RunPlan(**plan_json)
    directory = Path(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    log_file = open(directory / "log.txt", "a", buffering=1)  # noqa: SIM115 - closed in finally

    def log(message: str) -> None:
        log_file.write(f"{message}\n")

    start, cpu_start = time.perf_counter(), time.process_time()
    result = {"variant": plan.variant, "point": plan.point, "seed": plan.seed, "run_id": plan.run_id,
              "params_key": params_key(plan.params), "status": "ok", "error": "", "metrics": {}}
    previous_threads = None
    try:
        if options.get("threads"):
            import torch

            previous_threads = torch.get_num_threads()
            torch.set_num_threads(int(options["threads"]))
        runner = _run_train if options["kind"] == "train" else _run_function
        result["metrics"] = runner(plan, directory, options, log)
    except BaseException as err:  # noqa: BLE001 - a failing run is a result; Ctrl-C stops the experiment
        tb = traceback.format_exc()
        (directory / "error.txt").write_text(tb)
        log(tb)
        result.update(status="failed", error=f"{type(err).__name__}: {err}")
        if isinstance(err, KeyboardInterrupt) or _is_interrupt(err):
            _finish(directory, result, start, cpu_start, log_file, options)
            raise KeyboardInterrupt(str(err)) from err
    finally:
        if previous_threads is not None:
            import torch

            torch.set_num_threads(previous_threads)
    _finish(directory, result, start, cpu_start, log_file, options)
    return result


def _is_interrupt(err: BaseException) -> bool:
    """The trainer's SIGINT/SIGTERM stop (it wrote a checkpoint): the experiment stops too, resumable."""
    loop = sys.modules.get("visionattn.train.loop")  # not imported: cannot be the trainer's
    return loop is not None and isinstance(err, loop.Interrupted)


def _finish(directory: Path, result: dict, start: float, cpu_start: float, log_file, options: dict) -> None:
    result["wall_s"] = round(time.perf_counter() - start, 2)
    result["cpu_s"] = round(time.process_time() - cpu_start, 2)  # this process's CPU time (all its threads)
    (directory / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    log_file.close()
    if result["status"] == "ok" and options.get("kind") == "train" and not options.get("keep_checkpoints"):
        for path in directory.glob("*.pt"):
            path.unlink()


def _worker_init() -> None:
    # one compute thread per worker process: N workers share the cores instead of oversubscribing them
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


# -- the experiment -----------------------------------------------------------------------------------------------
def _finished(run_dir: Path, plan: RunPlan) -> dict | None:
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if result.get("status") == "ok" and result.get("params_key") == params_key(plan.params):
        return result
    return None


def _prepare(run_dir: Path, plan: RunPlan) -> bool:
    """Write ``plan.json``; True if a checkpoint of the same params may be continued. A run dir holding another
    params' files is cleared first."""
    plan_file = run_dir / "plan.json"
    same = False
    if plan_file.is_file():
        try:
            same = json.loads(plan_file.read_text()).get("params_key") == params_key(plan.params)
        except ValueError:
            same = False
        if not same:
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "result.json").unlink(missing_ok=True)
    (run_dir / "error.txt").unlink(missing_ok=True)  # an earlier attempt's; log.txt keeps its traceback
    plan_file.write_text(json.dumps({**plan.to_json(), "params_key": params_key(plan.params)}, indent=2,
                                    default=str) + "\n")
    return same and any(run_dir.glob("*.pt"))


def check_plans(spec: ExperimentSpec, plans: list[RunPlan], out_dir: Path) -> None:
    """Fail before running anything: a train run's config that does not load, or an entry that does not import.
    :class:`SpecError` naming the file and the variant."""
    where = str(spec.path or spec.name)
    if spec.kind == "function":
        try:
            resolve_entry(spec.entry)
        except ValueError as err:
            raise SpecError(f"{where}: key 'entry': {err}") from err
        return
    seen = set()
    for plan in plans:
        if (plan.variant, json.dumps(plan.point, default=str)) in seen:
            continue
        seen.add((plan.variant, json.dumps(plan.point, default=str)))
        try:
            train_config(plan.params, plan.seed, out_dir / "runs" / plan.run_id)
        except (ValueError, TypeError) as err:
            point = f" at {plan.point}" if plan.point else ""
            raise SpecError(f"{where}: variant {plan.variant!r}{point}: {err}") from err


def _describe(result: dict, metric: str) -> str:
    from .results import format_value

    point = "".join(f" {k.rsplit('.', 1)[-1]}={v}" for k, v in list((result.get("point") or {}).items())[:1])
    head = f"{result['variant']}{point} seed {result['seed']}"
    if result["status"] != "ok":
        return f"{head}: FAILED ({result['error']})"
    value = result["metrics"].get(metric)
    return f"{head}: {metric} {format_value(metric, value)} in {result.get('wall_s', 0):.0f} s"


def _run_pool(pending: list[tuple[RunPlan, Path, dict]], jobs: int, report) -> None:
    """Run ``pending`` in ``jobs`` worker processes, at most ``jobs`` at a time. When a worker dies the pool breaks
    under every run in flight, so those runs (the culprit among them) are retried one at a time in a fresh
    single-worker pool: a run that kills its worker there fails with "worker process died"; the others finish."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    queue, suspects = list(pending), []
    alone = False  # retrying suspects, one per pool
    while queue or suspects:
        if not queue:
            queue, suspects, alone = suspects, [], True
        workers = 1 if alone else jobs
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init)
        running = {}
        broken = False
        try:
            while (queue or running) and not broken:
                while queue and len(running) < workers:
                    item = queue.pop(0)
                    plan, run_dir, options = item
                    running[pool.submit(execute_run, plan.to_json(), str(run_dir), options)] = item
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    item = running.pop(future)
                    try:
                        report(future.result())
                    except BrokenProcessPool:
                        broken = True
                        running[future] = item  # handled with the others below
            for plan, run_dir, options in running.values():  # the pool broke under these runs
                written = _read_result(run_dir)
                if written is not None:  # it finished before the pool broke
                    report(written)
                elif alone:
                    report(_dead_worker(plan, run_dir))
                else:
                    suspects.append((plan, run_dir, options))
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)  # workers finish their step and checkpoint
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _read_result(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None


def _dead_worker(plan: RunPlan, run_dir: Path) -> dict:
    result = {"variant": plan.variant, "point": plan.point, "seed": plan.seed, "run_id": plan.run_id,
              "params_key": params_key(plan.params), "status": "failed", "metrics": {}, "wall_s": None,
              "error": "the worker process died (killed or out of memory) while running this run"}
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def run_experiment(spec: ExperimentSpec, out_dir: str | Path, jobs: int = 1, overrides: dict | None = None,
                   keep_checkpoints: bool = False, threads: int | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Run every planned run of ``spec`` (already ``with_quick``/seeds-adjusted by the caller) into ``out_dir``
    and write the results (see the module docstring). ``jobs`` 1 runs in this process; more run in that many worker
    processes. ``threads``: torch threads per run (default 1; small models
    run fastest on one thread each). ``overrides``: nested params over every run.

    Returns the info dict of ``results.json`` plus ``paths`` (written files), ``failed`` (count) and ``groups``."""
    from .plot import plot_summary
    from .results import check_ordering, format_markdown, summarize, write_csv, write_json

    if jobs < 1:
        raise ValueError(f"jobs: expected >= 1, got {jobs}")
    out = Path(out_dir)
    plans = plan_runs(spec, overrides)
    check_plans(spec, plans, out)
    out.mkdir(parents=True, exist_ok=True)
    if spec.path is not None:
        shutil.copyfile(spec.path, out / "experiment.yaml")
    start = time.perf_counter()
    results: dict[str, dict] = {}
    pending = []
    for plan in plans:
        run_dir = out / "runs" / plan.run_id
        done = _finished(run_dir, plan)
        if done is not None:
            results[plan.run_id] = done
            log(f"[skip] {_describe(done, spec.metric)} (finished earlier)")
            continue
        options = {"kind": spec.kind, "entry": spec.entry, "keep_checkpoints": keep_checkpoints,
                   "bench": spec.bench if spec.bench and plan.seed == spec.seeds[0] else None,
                   "threads": threads or 1}
        options["resume_state"] = _prepare(run_dir, plan)
        pending.append((plan, run_dir, options))
    log(f"{spec.name}: {len(plans)} runs ({len(plans) - len(pending)} finished earlier), {len(pending)} to run "
        f"with {min(jobs, max(len(pending), 1))} process(es); output {out}")
    counter = [len(plans) - len(pending)]

    def report(result: dict) -> None:
        results[result["run_id"]] = result
        counter[0] += 1
        log(f"[{counter[0]}/{len(plans)}] {_describe(result, spec.metric)}")

    if jobs == 1 or len(pending) <= 1:
        for plan, run_dir, options in pending:
            report(execute_run(plan.to_json(), str(run_dir), options))
    else:
        _run_pool(pending, jobs, report)

    ordered = [results[p.run_id] for p in plans]
    extras = [k for k in spec.report if k != spec.metric]
    if spec.bench:
        extras += [f"{kind}_{s}px" for s in spec.bench["img_sizes"] for kind in ("gmacs", "img_per_s")]
    x_plot = spec.plot.get("x") or []
    for key in [x_plot] if isinstance(x_plot, str) else x_plot:
        if key not in extras:
            extras.append(key)
    groups = summarize(ordered, spec.metric, extras)
    verdicts = check_ordering(groups, spec.ordering)
    failed = sum(r["status"] != "ok" for r in ordered)
    run_wall = [r.get("wall_s") for r in ordered if isinstance(r.get("wall_s"), (int, float))]
    run_cpu = [r.get("cpu_s") for r in ordered if isinstance(r.get("cpu_s"), (int, float))]
    info = {"name": spec.name, "claim": spec.claim, "command": spec.command, "metric": spec.metric,
            "seeds": spec.seeds, "n_runs": len(plans), "failed": failed,
            "wall_s": round(time.perf_counter() - start, 1), "sum_run_wall_s": round(math.fsum(run_wall), 1),
            "sum_run_cpu_s": round(math.fsum(run_cpu), 1),
            "jobs": jobs, "threads": threads or 1, "cpu_count": os.cpu_count(),
            "out_dir": str(out), "expected": spec.expected,
            "overrides": overrides or {}}
    write_csv(ordered, out / "results.csv", spec.metric)
    write_json(out / "results.json", info, ordered, groups, verdicts)
    (out / "summary.md").write_text(format_markdown(info, groups, verdicts, spec.metric, extras, spec.x_key))
    paths = [out / "results.csv", out / "results.json", out / "summary.md"]
    try:
        paths += plot_summary(groups, spec.metric, out, spec.name, spec.x_key, spec.plot)
    except Exception as err:  # noqa: BLE001 - the tables are written; a plot problem must not lose them
        log(f"warning: the plot failed: {type(err).__name__}: {err}")
    return {**info, "paths": paths, "groups": groups, "verdicts": verdicts}
