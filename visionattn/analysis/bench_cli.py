"""``visionattn bench cost`` and ``visionattn bench sweep``: the cost model as a table, and scaling sweeps.

::

    visionattn bench cost [--length 1000 --dim 1000 --kernel 3] [--window 8 --block 8 --halo 3]
                          [--format table|csv] [--count] [--preset NAME --resolutions 112,224,448]
    visionattn bench sweep [--patterns global,global@reference,neighborhood,halo,window,axial,linear]
                           [--sizes 16..512] [--heads 4 --head-dim 32 --batch 1] [--out DIR]
                           [--max-seconds 4] [--max-memory GiB] [--repeats 3] [--threads 1]
    visionattn bench sweep --video [--patterns st,fe,fsa,fdp,window3d] [--sizes 4..128] [--side 14] [...]

``bench cost`` prints the tutorial's "Attention is cheap" table (exactly, at the defaults), the operator's
patterns at the same length and dim, and the constant factors; with ``--preset`` the cost of a registered model
at several resolutions instead. ``bench sweep`` writes ``sweep.csv`` and ``sweep.png`` into ``--out`` (default
``bench_out/sweep``); ``--video`` sweeps the number of frames for one layer of each video variant; see
:mod:`visionattn.analysis.sweep`.
"""

from __future__ import annotations

import argparse
import sys


def _error(command: str, err: Exception) -> int:
    print(f"visionattn bench {command}: error: {err}", file=sys.stderr)
    return 2


def _resolutions(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--resolutions: expected a comma list of image sizes such as 112,224,448, got {text!r}") \
            from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"--resolutions: expected positive image sizes such as 112,224,448, got {text!r}")
    return values


def _cmd_cost(args) -> int:
    from .cost_table import cost_table, counted_tutorial_flops, format_csv, format_table

    try:
        if args.preset:
            return _preset_cost(args)
        rows = cost_table(args.length, args.dim, args.kernel, args.window, args.block, args.halo)
    except ValueError as err:
        return _error("cost", err)
    if args.format == "csv":
        print(format_csv(rows), end="")
        return 0
    print(format_table(rows, args.length, args.dim, args.kernel))
    if args.count:
        counted = counted_tutorial_flops(args.length, args.dim, args.kernel)
        print("\ncounted with torch.utils.flop_counter on the meta device (nn.LSTM, nn.Conv1d, reference backend):")
        for row in rows[:3]:
            same = "matches" if counted[row["operation"]] == row["flops"] else "DIFFERS from the table"
            print(f"  {row['operation']:<15} {counted[row['operation']]:>16,}  {same}")
        if any(counted[r["operation"]] != r["flops"] for r in rows[:3]):
            return 1
    return 0


def _preset_cost(args) -> int:
    from ..models.summary import format_table
    from .cost import preset_cost

    rows = preset_cost(args.preset, _resolutions(args.resolutions), batch=args.batch)
    if args.format == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return 0
    print(format_table(rows, ("name", "img_size", "params_m", "gmacs", "attn_gmacs", "activation_mib",
                              "attn_activation_mib", "attention_calls")))
    print("gmacs: multiply-adds x 1e-9 of one forward (the papers' 'GFLOPs'); attn_gmacs: the attention operator's "
          "share (allowed pairs only); activation_mib: float32 activations one forward saves for backward at batch "
          f"{args.batch} (the operator costed per call for the execution backend='auto' takes on CPU, never run; the "
          "other layers counted on a real forward)")
    return 0


def _cmd_sweep(args) -> int:
    import os
    import time

    from .sweep import (
        DEFAULT_FRAMES,
        DEFAULT_PATTERNS,
        DEFAULT_SIZES,
        DEFAULT_VIDEO_PATTERNS,
        format_summary,
        parse_patterns,
        parse_sizes,
        plot,
        sweep,
        write_csv,
    )

    video = args.video
    try:
        patterns = parse_patterns(args.patterns or (DEFAULT_VIDEO_PATTERNS if video else DEFAULT_PATTERNS), video)
        sizes = parse_sizes(args.sizes or (DEFAULT_FRAMES if video else DEFAULT_SIZES), 1 if video else 8)
        if video and args.side < 1:
            raise ValueError(f"--side must be ≥ 1, got {args.side}")
        for name in ("heads", "head_dim", "batch", "repeats", "threads"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
        if args.max_seconds <= 0 or (args.max_memory is not None and args.max_memory <= 0):
            raise ValueError(f"--max-seconds and --max-memory must be > 0, got {args.max_seconds} and "
                             f"{args.max_memory}")
        os.makedirs(args.out, exist_ok=True)
    except (ValueError, OSError) as err:
        return _error("sweep", err)
    memory = f"{args.max_memory:g} GiB" if args.max_memory else "75% of MemAvailable"
    what = f"frames {','.join(map(str, sizes))} of a {args.side}x{args.side} tubelet grid" if video else \
        f"sides {','.join(map(str, sizes))}"
    print(f"sweep: {len(patterns)} patterns x {what}; float32, batch {args.batch}, "
          f"{args.heads} heads x {args.head_dim}, {args.threads} thread(s), {args.repeats} repeats; one fresh process "
          f"per case; limits {args.max_seconds:g} s per fwd+bwd, memory {memory}", flush=True)
    t0 = time.perf_counter()
    rows = sweep(patterns, sizes, heads=args.heads, head_dim=args.head_dim, batch=args.batch, repeats=args.repeats,
                 threads=args.threads, max_seconds=args.max_seconds, max_memory_gib=args.max_memory,
                 log=lambda line: print(line, flush=True), video_side=args.side if video else None)
    csv_path, png_path = os.path.join(args.out, "sweep.csv"), os.path.join(args.out, "sweep.png")
    write_csv(rows, csv_path)
    title = (f"visionattn operator, float32, batch {args.batch}, {args.heads} heads x {args.head_dim}, "
             f"{args.threads} CPU thread(s); forward+backward")
    if video:
        title = (f"video layers on (T, {args.side}, {args.side}) tubelet grids, float32, batch {args.batch}, "
                 f"{args.heads} heads x {args.head_dim}, {args.threads} CPU thread(s); forward+backward")
    plot(rows, png_path, title, xlabel=f"tokens (frames × {args.side}²)" if video else "tokens (grid side²)")
    print()
    print(format_summary(rows))
    print(f"wrote {csv_path} and {png_path} ({time.perf_counter() - t0:.0f} s)")
    return 0


def add_parser(sub) -> None:
    """Register the ``bench`` subcommand (with ``cost`` and ``sweep``) on an argparse sub-parser collection."""
    bench = sub.add_parser(
        "bench", help="cost model of the attention operator and scaling sweeps (time, memory vs tokens)",
        description="Analytic FLOPs and memory of the attention operator (bench cost) and measured scaling against "
                    "that model (bench sweep).")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="{cost,sweep}")
    cost = bsub.add_parser(
        "cost", help="the tutorial's 'Attention is cheap' FLOPs table, extended with every pattern",
        description="Print the tutorial's table (self-attention 4·10^9, LSTM 16·10^9, convolution 6·10^9 FLOPs at "
                    "length = dim = 1000, kernel 3), then each pattern of the operator at the same length and dim, "
                    "and the constant factors behind the figures. --preset NAME prints a registered model's params, "
                    "GMACs, attention GMACs and activation memory at several resolutions instead.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cost.add_argument("--length", type=int, default=1000, help="sequence length (tokens)")
    cost.add_argument("--dim", type=int, default=1000, help="model width (one head of this size)")
    cost.add_argument("--kernel", type=int, default=3, help="convolution kernel width and Neighborhood kernel (odd)")
    cost.add_argument("--window", type=int, default=8, help="Window size of the Window row")
    cost.add_argument("--block", type=int, default=8, help="Halo block of the Halo row")
    cost.add_argument("--halo", type=int, default=3, help="Halo halo of the Halo row")
    cost.add_argument("--format", choices=("table", "csv"), default="table")
    cost.add_argument("--count", action="store_true",
                      help="also count the three tutorial rows with torch.utils.flop_counter (meta device; the LSTM "
                           "takes ~10 s at length 1000)")
    cost.add_argument("--preset", metavar="NAME", help="cost a registered model instead (e.g. vit_small_patch16_224)")
    cost.add_argument("--resolutions", default="112,224,448", help="--preset: image sizes, comma separated")
    cost.add_argument("--batch", type=int, default=1, help="--preset: batch size of the activation count")
    cost.set_defaults(func=_cmd_cost)

    sweep = bsub.add_parser(
        "sweep", help="measure time and peak memory vs tokens per pattern beside the cost model; CSV + log-log PNG",
        description="For each pattern and square grid side (tokens = side²): forward and forward+backward time and "
                    "the peak RSS growth of one forward+backward, measured in a fresh process per case, beside the "
                    "analytic FLOPs and memory. A pattern stops (skip rows) where the predicted memory exceeds "
                    "--max-memory (default 75% of MemAvailable) or the extrapolated forward+backward time exceeds "
                    "--max-seconds. Writes sweep.csv and sweep.png into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sweep.add_argument("--patterns", default=None,
                       help="comma list of global, neighborhood, halo, window, axial, strided, linear, each optionally "
                            "@auto|reference|blocked|linear (the backend); default global,global@reference,"
                            "neighborhood,halo,window,axial,linear. --video: st, fe, fsa, fdp, window3d (default all)")
    sweep.add_argument("--sizes", default=None, help="grid sides: LO..HI (powers of two) or a comma list (default "
                                                     "16..512); --video: numbers of frames (default 4..128)")
    sweep.add_argument("--video", action="store_true",
                       help="video mode: one layer of each ViViT variant / 3-D windows on (T, side, side) tubelet "
                            "grids, T = --sizes")
    sweep.add_argument("--side", type=int, default=14, help="--video: the tubelet grid's side (ViViT-B: 14)")
    sweep.add_argument("--heads", type=int, default=4)
    sweep.add_argument("--head-dim", type=int, default=32)
    sweep.add_argument("--batch", type=int, default=1)
    sweep.add_argument("--out", default="bench_out/sweep", metavar="DIR", help="output folder")
    sweep.add_argument("--max-seconds", type=float, default=4.0, metavar="S",
                       help="skip sizes whose forward+backward is predicted to take longer than S seconds")
    sweep.add_argument("--max-memory", type=float, default=None, metavar="GiB",
                       help="memory budget per case (default: 75%% of MemAvailable, read before each case)")
    sweep.add_argument("--repeats", type=int, default=3, help="timed repetitions (the median is reported)")
    sweep.add_argument("--threads", type=int, default=1, help="torch threads in each measuring process")
    sweep.set_defaults(func=_cmd_sweep)
