#!/usr/bin/env python
"""CLIP figures against their baselines: chance, the same towers at random init, and a trained checkpoint.

For a training config (default: ``configs/clip_openclipart.yaml``, i.e. ``visionattn train task=clip``) this builds
the run's data exactly as training does (same split, held-out categories, zero-shot sets), then evaluates

* ``chance``: a random ranking (retrieval R@k in closed form, :func:`visionattn.tasks.clip.metrics.chance_recall`)
  and 1 / classes for zero-shot;
* ``random init``: the model the run starts from (``run.seed``), before any update;
* ``trained``: ``--checkpoint`` (a ``best.pt`` / ``ckpt-*.pt`` of the run), if given;

and prints one table (percent) and, with ``--out``, JSON.

Usage: ``python benchmarks/clip_baselines.py [--checkpoint runs/clip/best.pt] [--out r.json] [key=value ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from visionattn.comm import LOCAL  # noqa: E402
from visionattn.tasks import EvalContext, get_task  # noqa: E402
from visionattn.train.config import load_config  # noqa: E402
from visionattn.train.evaluate import model_from_checkpoint  # noqa: E402
from visionattn.train.state import seed_everything  # noqa: E402


def _loader(collate, batch_size: int):
    def make(dataset):
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate), None

    return make


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="a config file (default: the clip task's default config)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint of the run to evaluate beside the baselines")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg = load_config(args.config, ["task=clip", *args.overrides] if args.config is None else args.overrides)
    task = get_task("clip")(cfg.task)
    data = task.build_data(task.eval_data_config(cfg.data, {}), cfg.run.seed)
    ctx = EvalContext(torch.device("cpu"), "fp32", LOCAL, _loader(data.collate, cfg.run.eval_batch_size))
    seed_everything(cfg.run.seed)  # the weights the run starts from
    columns = {"random init": task.evaluate(task.build_model(cfg.model, data.meta), data, ctx)}
    if args.checkpoint:
        restored = model_from_checkpoint(args.checkpoint, task="clip")
        columns["trained"] = task.evaluate(restored.model, data, ctx)
    from visionattn.tasks.clip.report import metric_rows

    rows = {name: {r["metric"]: r for r in metric_rows(ev)} for name, ev in columns.items()}
    first = next(iter(rows.values()))
    header = f"{'metric':<26}{'chance':>9}" + "".join(f"{name:>14}" for name in rows)
    print(header)
    out = {}
    for metric, row in first.items():
        values = {name: rows[name][metric]["value"] for name in rows}
        out[metric] = {"chance": row["chance"], **values}
        print(f"{metric:<26}{100 * row['chance']:>8.2f}%" + "".join(f"{100 * v:>13.2f}%" for v in values.values()))
    print(f"\n{data.description}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"data": data.description, "metrics": out}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
