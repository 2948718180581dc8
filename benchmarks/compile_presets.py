#!/usr/bin/env python
"""Every registered preset through ``torch._dynamo.explain`` at its full size: graph breaks and graphs per model.

Issue 17's compile target: every preset compiles with ``fullgraph=True`` through the operator. Dynamo only
(``explain``: trace, run the captured graphs eagerly, no inductor), so the check is about graph breaks, not kernels;
``tests/test_compile.py`` does the same for the test presets in the default suite, and
``benchmarks/models.py --compile`` times inductor-compiled models against compiled timm.

``--device meta`` (default) builds and traces on the meta device: no weights or activations are allocated, so the
ViT-B/video presets trace in seconds; the operator's plans are built on the host either way
(``visionattn.ops.static``). ``--device cpu`` runs the real thing (minutes for the large presets on a small box).

Usage: ``python benchmarks/compile_presets.py [--only swin,vit] [--device meta|cpu] [--out r.json]``
Exit status 1 when any preset breaks its graph (each break printed with the visionattn frame it came from).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from visionattn.models import create_model, list_models  # noqa: E402
from visionattn.models.inputs import example_input  # noqa: E402


def breaks_in(explanation) -> list[str]:
    """Each graph break as ``reason at file:line`` (the innermost visionattn frame of its stack)."""
    out = []
    for reason in explanation.break_reasons:
        frames = [f"{f.filename}:{f.lineno}" for f in reason.user_stack if "visionattn" in f.filename]
        out.append(f"{reason.reason.splitlines()[0]} at {frames[-1] if frames else '?'}")
    return out


def explain_preset(name: str, device: str, batch: int = 2) -> dict:
    """Build ``name`` (train mode: BatchNorm needs 2 images) on ``device`` and explain one forward."""
    t0 = time.perf_counter()
    with torch.device(device):
        model = create_model(name)
    x = example_input(model, model.preset.img_size, batch, device=device,
                      generator=torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(x)
    return {"preset": name, "graphs": explanation.graph_count, "breaks": explanation.graph_break_count,
            "reasons": breaks_in(explanation), "ops": explanation.op_count, "s": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=None, help="comma list of substrings of preset names (default: every preset)")
    p.add_argument("--device", default="meta", choices=["meta", "cpu"])
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)
    names = list_models()
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        names = [n for n in names if any(k in n for k in keys)]
    if not names:
        p.error(f"--only {args.only!r} matches no registered preset (expected substrings of {list_models()})")
    print(f"torch {torch.__version__}; {len(names)} presets on {args.device}; dynamo explain, one forward")
    rows, bad = [], 0
    for name in names:
        try:
            row = explain_preset(name, args.device)
        except Exception as e:  # noqa: BLE001  (reported, counted as a failure)
            row = {"preset": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
        rows.append(row)
        if "error" in row or row["breaks"] or row["graphs"] != 1:
            bad += 1
        status = row.get("error") or (f"{row['graphs']} graph(s), {row['breaks']} break(s), {row['ops']} ops, "
                                      f"{row['s']:.1f} s" + "".join(f"\n      {r}" for r in row["reasons"]))
        print(f"  {name:45s} {status}", flush=True)
    print(f"{len(rows) - bad} of {len(rows)} presets trace as one graph without breaks")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "device": args.device, "rows": rows}, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
