#!/usr/bin/env python
"""The picture of docs/video.md: where a moving digit's tubelet attends in every frame, block by block, for a video
checkpoint trained on moving digits (:func:`visionattn.tasks.video.attention_maps.space_time_maps`).

Usage: ``python benchmarks/video_attention.py runs/video_spatiotemporal/best.pt docs/img/video_attention.png
[--index 0]`` (``--index``: which validation video; the query is the brightest tubelet of the middle frame).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from visionattn.plotting import png_bytes  # noqa: E402
from visionattn.tasks.video.attention_maps import SpaceTimeMap, space_time_figure, space_time_maps  # noqa: E402
from visionattn.tasks.video.data import build_video_data  # noqa: E402
from visionattn.tasks.video.report import shown_frames  # noqa: E402
from visionattn.train.evaluate import model_from_checkpoint  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--index", type=int, default=0, help="validation video")
    args = parser.parse_args(argv)
    restored = model_from_checkpoint(args.checkpoint)
    model, meta, cfg = restored.model, restored.meta, restored.cfg
    options = dataclasses.replace(cfg.task, digits_train=8, digits_val=args.index + 1)  # the same val videos
    item = build_video_data(cfg.data, options).val[args.index]
    clip = item["video"][0]  # (3, T, H, W): the first evaluation clip
    maps = []
    for block in range(len(model.stages)):
        found, query, grid = space_time_maps(model, clip, block=block)
        maps += [SpaceTimeMap(f"block {block} {m.label}", m.weights) for m in found]
    title = f"{cfg.model.name}: query tubelet {query} (cyan), label '{meta['classes'][item['label']]}'"
    fig = space_time_figure(maps, shown_frames(clip, meta["mean"], meta["std"]), query, grid, title)
    with open(args.out, "wb") as f:
        f.write(png_bytes(fig))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
