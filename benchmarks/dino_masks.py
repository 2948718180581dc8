#!/usr/bin/env python
"""Emergent masks: the Jaccard of DINO-style attention masks against ground-truth foregrounds, DINO vs the same
architecture at random init.

For each image the last attention layer's [CLS] attention (mean of heads, and each head) is thresholded to keep
60% of its mass (the paper's ``visualize_attention.py`` masks, :mod:`visionattn.tasks.dino.masks`), and compared
with the ground truth by Jaccard (torchmetrics), averaged over images. Ground truths that exist in the project's
data:

* ``digit_scenes``: composed scenes of real handwritten digits (``visionattn.data.composed.DigitScenes``, val
  split, so no digit image of the pool's training half), at the checkpoint's input size; truth = the union of the
  digits' visible-ink masks;
* ``nuclei``: the stardist nuclei image (512 x 512, 125 instances; ``visionattn.data.sources.load_nuclei``) cut
  into tiles of ``--nuclei-tile`` pixels, each resized to the input size; truth = pixels inside any instance;
* ``fashion_mnist``: the validation images; truth = the garment's silhouette, pixels brighter than 10/255 (the
  background of Fashion-MNIST is black): a silhouette, not an annotation.

Also writes ``--figure`` (PNG): a few images of each set with the DINO and random-init masks.

Usage::

    python benchmarks/dino_masks.py runs/dino/best.pt [--count 200] [--figure docs/img/dino_masks.png]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from visionattn.tasks.dino.masks import attention_maps, mask_jaccard  # noqa: E402
from visionattn.train.evaluate import model_from_checkpoint  # noqa: E402


def _normalise(gray01: torch.Tensor, meta: dict) -> torch.Tensor:
    """``(N, H, W)`` in [0, 1] → model inputs ``(N, 3, H, W)`` with the run's mean / std."""
    x = gray01[:, None].expand(-1, 3, -1, -1)
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


def digit_scenes(size: int, count: int):
    from visionattn.data.composed import DigitScenes

    scenes = DigitScenes("val", count, size=size, num_digits=(1, 2), scale=(1.5, min(3.0, size / 8)),
                         max_occlusion=0.0)
    images = torch.stack([torch.from_numpy(s["image"]).float() / 255 for s in scenes])
    truth = torch.stack([torch.from_numpy(s["masks"].any(0)) for s in scenes])
    return images, truth


def nuclei(size: int, tile: int):
    from visionattn.data.sources import load_nuclei

    data = load_nuclei()
    image = torch.from_numpy(data["image"].astype(np.float32))
    image = (image - image.min()) / (image.max() - image.min())
    labels = torch.from_numpy(data["labels"] > 0)
    n = image.shape[0] // tile
    tiles = image[: n * tile, : n * tile].reshape(n, tile, n, tile).permute(0, 2, 1, 3).reshape(-1, tile, tile)
    masks = labels[: n * tile, : n * tile].reshape(n, tile, n, tile).permute(0, 2, 1, 3).reshape(-1, tile, tile)
    keep = masks.flatten(1).float().mean(1) > 0.05  # tiles with some nuclei
    tiles = F.interpolate(tiles[keep][:, None], size=(size, size), mode="bilinear", antialias=True)[:, 0]
    masks = F.interpolate(masks[keep][:, None].float(), size=(size, size), mode="nearest")[:, 0] > 0.5
    return tiles.clamp(0, 1), masks


def fashion(size: int, count: int):
    from visionattn.data.mnist import resize_uint8
    from visionattn.data.sources import load_fashion_mnist

    test = load_fashion_mnist("test")
    images = torch.from_numpy(resize_uint8(test.images[:count], size)).float() / 255
    return images, images > 10 / 255


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--count", type=int, default=200, help="images per set (digit scenes, Fashion-MNIST)")
    p.add_argument("--nuclei-tile", type=int, default=64, help="nuclei tile side in pixels of the 512x512 image")
    p.add_argument("--fraction", type=float, default=0.6, help="attention mass the masks keep")
    p.add_argument("--figure", help="write a PNG of example masks here")
    p.add_argument("--out", help="write the numbers as JSON here")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    restored = model_from_checkpoint(args.checkpoint, weights="model", task="dino")
    task, meta = restored.task, restored.meta
    task._model_cfg = restored.cfg.model
    task._seed = restored.cfg.run.seed
    dino = task.attention_model(restored.model).eval()
    random = task.random_init_model(meta).backbone.eval()
    size = int(meta["img_size"])
    sets = {"digit_scenes": digit_scenes(size, args.count), "nuclei": nuclei(size, args.nuclei_tile),
            "fashion_mnist silhouettes": fashion(size, args.count)}
    results, examples = {}, []
    for name, (images, truth) in sets.items():
        x = _normalise(images, meta)
        row = {"images": len(images)}
        for label, model in (("DINO", dino), ("random init", random)):
            maps = attention_maps(model, x, args.fraction)
            if maps is None:
                raise SystemExit(f"{restored.cfg.model.name} has no mappable attention layer")
            row[label] = mask_jaccard(maps.masks, truth)
            if label == "DINO":
                examples.append((name, images[:4], truth[:4], maps.masks[:4, 0]))
            else:
                examples[-1] += (maps.masks[:4, 0],)
        results[name] = row
        print(f"{name} ({len(images)} images): DINO mean-of-heads {row['DINO']['mean_heads']:.3f}, best head "
              f"{row['DINO']['best_head']:.3f} | random init {row['random init']['mean_heads']:.3f}, best head "
              f"{row['random init']['best_head']:.3f}", flush=True)
    if args.figure:
        from visionattn.plotting import figure, png_bytes

        shown = 3
        fig = figure(1.1 * 4 * shown, 1.3 * len(examples) + 0.4)
        axes = fig.subplots(len(examples), 4 * shown, squeeze=False)
        for r, (name, imgs, truth, dino_masks, random_masks) in enumerate(examples):
            for i in range(shown):
                panels = ((imgs[i], "image"), (truth[i].float(), "truth"),
                          (dino_masks[i].float() * (0.3 + 0.7 * imgs[i]), "DINO mask"),
                          (random_masks[i].float() * (0.3 + 0.7 * imgs[i]), "random-init mask"))
                for j, (panel, title) in enumerate(panels):
                    ax = axes[r, 4 * i + j]
                    ax.imshow(panel.numpy(), cmap="gray", vmin=0, vmax=1)
                    ax.set_axis_off()
                    if r == 0 and i == 0:
                        ax.set_title(title, fontsize=7)
            axes[r, 0].text(-0.08, 0.5, name, fontsize=7, rotation=90, ha="right", va="center",
                            transform=axes[r, 0].transAxes)
        with open(args.figure, "wb") as f:
            f.write(png_bytes(fig))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
