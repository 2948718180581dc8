"""Command line: ``visionattn demo | backends | models | train | eval | predict | bench | viz | denoise |
experiment``."""

from __future__ import annotations

import argparse
import os
import sys

import torch


def _cmd_demo(args) -> int:
    from .demo import format_rows, run_demo

    print(f"visionattn operator demo: grid {args.grid}×{args.grid}, batch {args.batch}, 3 heads × 32, "
          f"forward+backward, fast backend vs reference (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    rows = run_demo(grid=(args.grid, args.grid), batch=args.batch, repeats=args.repeats)
    print(format_rows(rows))
    worst = max(r["rel_error"] for r in rows)
    print(f"worst relative difference to the reference: {worst:.1e} (fp32)")
    return 0 if worst < 1e-4 else 1


def _cmd_backends(args) -> int:
    from .backends_table import support_table

    print(support_table())
    return 0


def _cmd_models(args) -> int:
    from .models import list_models
    from .models.summary import format_json, format_table, preset_row

    names = list_models(args.pattern, include_tiny=args.all)
    rows = []
    for name in names:
        rows.append(preset_row(name))
        if args.format == "table" and sys.stderr.isatty():
            print(f"\r{len(rows)}/{len(names)} {name}", end="", file=sys.stderr, flush=True)
    if args.format == "table" and sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    if args.format == "json":
        print(format_json(rows))
        return 0
    print(format_table(rows))
    if rows:
        print("params_m: millions of parameters (default head); gmacs: multiply-adds x 1e-9 of one forward at img_size "
              "(timm's and the papers' 'GFLOPs'; FLOPs = 2 x MACs); attn_gmacs: the attention operator's share, "
              "counted analytically over the pattern's allowed pairs.")
    if not args.all:
        print("(tiny test variants hidden; --all shows them)")
    return 0


def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _say(message: str) -> None:
    if _is_main_rank():
        print(message, flush=True)


def _resolve_resume(args):
    """(config, run_dir, checkpoint state or None) for ``visionattn train``."""
    from .train.checkpoint import load_checkpoint, load_latest
    from .train.config import apply_overrides, config_from_yaml, load_config

    fresh = load_config(args.config, args.overrides)
    run_dir = args.run_dir
    path, state = None, None
    if args.resume == "auto":
        directory = run_dir or fresh.run.dir
        if directory is None:
            raise ValueError("--resume auto looks for the latest checkpoint in the run directory: give --run-dir DIR "
                             "(or run.dir=DIR)")
        found = load_latest(directory, log=_say)
        if found is None:
            _say(f"--resume auto: no checkpoint in {directory} yet, starting a new run there")
            return fresh, directory, None
        path, state = found
        run_dir = directory
    elif args.resume:
        path = args.resume
        state = load_checkpoint(path)
        run_dir = run_dir or os.path.dirname(os.path.abspath(path))
    if state is None:
        return fresh, run_dir, None
    cfg = apply_overrides(config_from_yaml(state["config"], source=f"config inside {path}", legacy=True),
                          args.overrides)
    extra = f" with overrides {' '.join(args.overrides)}" if args.overrides else ""
    _say(f"resuming from {path} (epoch {int(state['epoch']) + 1}, update {int(state['step'])}); config from the "
         f"checkpoint{extra}")
    return cfg, run_dir, state


def _cmd_train(args) -> int:
    from .train.loop import Trainer, TrainingStopped

    trainer = None
    if args.resume and "=" in args.resume and not os.path.exists(args.resume):  # `--resume key=value`: bare flag
        args.overrides = [args.resume, *args.overrides]
        args.resume = "auto"
    try:
        cfg, run_dir, state = _resolve_resume(args)
        trainer = Trainer(cfg, run_dir=run_dir, resume_state=state, log=_say)
        trainer.fit(until_step=args.max_steps)
    except TrainingStopped as err:
        if _is_main_rank():
            print(f"visionattn train: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint of the current step
        print("visionattn train: interrupted (second Ctrl-C): stopped without a checkpoint of this step",
              file=sys.stderr, flush=True)
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f"visionattn train: error: {err}", file=sys.stderr, flush=True)
        return 2
    finally:
        if trainer is not None:
            from .train.distributed import cleanup

            trainer.close()
            cleanup(trainer.info)
    return 0


def _cmd_eval(args) -> int:
    from .train.evaluate import evaluate_checkpoint

    try:
        evaluation, restored = evaluate_checkpoint(args.checkpoint, data=args.data, data_path=args.data_path,
                                                   weights=args.weights, batch_size=args.batch_size,
                                                   device=args.device, task=args.task)
    except (ValueError, FileNotFoundError) as err:
        print(f"visionattn eval: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.checkpoint} ({restored.task.name}, {restored.weights} weights)")
    print(restored.task.format_evaluation(evaluation, restored.meta))
    return 0


def _cmd_predict(args) -> int:
    from pathlib import Path

    from .tasks import PredictOptions
    from .train.evaluate import predict_checkpoint

    options = PredictOptions(top_k=args.top_k, out_dir=Path(args.out) if args.out else None, texts=list(args.text),
                             threshold=args.threshold)
    try:
        if args.top_k < 1:
            raise ValueError(f"--top-k: expected >= 1, got {args.top_k}")
        output = predict_checkpoint(args.checkpoint, args.inputs, options, weights=args.weights,
                                    device=args.device, task=args.task)
    except (ValueError, FileNotFoundError) as err:
        print(f"visionattn predict: error: {err}", file=sys.stderr)
        return 2
    for line in output.lines:
        print(line)
    for path in output.files:
        print(f"wrote {path}")
    return 1 if output.errors else 0


def _add_train_commands(sub) -> None:
    from .tasks import list_tasks

    tasks = ", ".join(list_tasks())
    train = sub.add_parser(
        "train", help="train a task (default: classify the built-in digits with a small ViT, ~2 min on 2 cores)",
        description=f"Train a task ({tasks}). Config: the defaults (configs/default.yaml; task=NAME starts from that "
                    "task's default config), then --config FILE, then key=value overrides such as optim.lr=3e-4 "
                    "schedule.epochs=10 model.name=swin_test task.label_smoothing=0.1. Under torchrun: torchrun "
                    "--nproc-per-node N -m visionattn train ...")
    train.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. schedule.epochs=5 or task=NAME")
    train.add_argument("--config", help="YAML config file (any subset of the keys)")
    train.add_argument("--resume", metavar="PATH|auto", nargs="?", const="auto",
                       help="continue from a checkpoint; 'auto' (or no value) = the newest readable one in the run "
                            "directory, falling back to older ones if it is unreadable")
    train.add_argument("--run-dir", "--out", dest="run_dir",
                       help="run directory (default run.dir, else runs/<timestamp>-<model>)")
    train.add_argument("--max-steps", type=int, metavar="N",
                       help="stop after update N (counted from the start of the run), writing a checkpoint; the "
                            "schedule still spans schedule.epochs")
    train.set_defaults(func=_cmd_train)

    ev = sub.add_parser("eval", help="a checkpoint's metrics on a dataset (its task's: top-1/top-5 and per-class "
                                     "accuracy for classification)")
    ev.add_argument("checkpoint")
    ev.add_argument("--data", help="dataset name (e.g. digits, folder, cifar10, csv); default: the run's")
    ev.add_argument("--data-path", help="folder / CIFAR directory / CSV file for --data")
    ev.add_argument("--weights", choices=("auto", "model", "ema"), default="auto",
                    help="auto: whichever evaluated better during training (default)")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1 ...")
    ev.add_argument("--task", help=f"require a checkpoint of this task ({tasks}); default: the checkpoint's")
    ev.set_defaults(func=_cmd_eval)

    pr = sub.add_parser("predict", help="predictions of a checkpoint for input files (classification: top-k classes "
                                        "with probabilities)")
    pr.add_argument("checkpoint")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image (or video) files")
    pr.add_argument("--top-k", type=int, default=5)
    pr.add_argument("--text", action="append", default=[], metavar="TEXT",
                    help="a phrase or label (CLIP, grounding); repeat for several")
    pr.add_argument("--threshold", type=float, help="score threshold (detection)")
    pr.add_argument("--out", help="directory for pictures / JSON the task writes")
    pr.add_argument("--weights", choices=("auto", "model", "ema"), default="auto")
    pr.add_argument("--device", default="auto")
    pr.add_argument("--task", help=f"require a checkpoint of this task ({tasks}); default: the checkpoint's")
    pr.set_defaults(func=_cmd_predict)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionattn", description="Self-attention for vision: one mixing operator.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="every attention pattern: fast backend vs reference, agreement and speed")
    demo.add_argument("--grid", type=int, default=32, help="grid side (default 32)")
    demo.add_argument("--batch", type=int, default=2)
    demo.add_argument("--repeats", type=int, default=3)
    demo.set_defaults(func=_cmd_demo)
    backends = sub.add_parser("backends", help="which backend runs which pattern/position/form, and why not")
    backends.set_defaults(func=_cmd_backends)
    models = sub.add_parser("models", help="registered presets: taxonomy axes, params and GMACs at default size")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style name filter, e.g. 'swin*' (default *)")
    models.add_argument("--format", choices=("table", "json"), default="table")
    models.add_argument("--all", action="store_true", help="include the tiny test variants")
    models.set_defaults(func=_cmd_models)
    _add_train_commands(sub)
    from .analysis import bench_cli, denoise_cli, viz_cli
    from .experiments import cli as experiment_cli

    for module in (bench_cli, viz_cli, denoise_cli, experiment_cli):  # each registers its own subcommand
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may come after options: train --run-dir D optim.lr=1e-3
        if args.command in ("train", "experiment") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except BrokenPipeError:  # `visionattn ... | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
