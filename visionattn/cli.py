"""Command line: ``visionattn demo | backends | models``."""

from __future__ import annotations

import argparse
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
