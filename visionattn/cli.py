"""Command line: ``visionattn demo | backends``."""

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
