#!/usr/bin/env python
"""DETR: ours vs Hugging Face ``transformers``' ``DetrForObjectDetection``, same config, same weights (converted),
same process, on CPU.

Both are built from one random-init HF model (timm ResNet backbone, no download) whose weights are converted into
ours; the outputs are checked equal before timing. Timed, in alternating order (AB, BA, ...; median of N rounds):

* forward: eval mode, ``model(images, padding mask)`` under ``torch.no_grad``;
* train step: train mode, forward, DETR's loss (Hungarian matching + CE / L1 / GIoU, each side its own: HF's
  ``loss_function``, our :class:`SetCriterion`), backward, ``SGD.step()``, ``zero_grad``. Both sides do the same
  work: HF freezes the stem and first stage and replaces batch norm by frozen batch norm, so ours trains with its
  stem and first stage frozen and batch norm in eval mode; no auxiliary losses on either side (HF's auxiliary
  path also re-normalises the decoder states between layers, which DETR does not).

``ratio = ours img/s / HF img/s`` (> 1: ours is faster). ``others`` is the share of the machine other processes
used meanwhile (noise on a shared box).

Usage: ``python benchmarks/detr.py [--quick] [--threads 1] [--reps 5] [--size 320] [--batch 2] [--out r.json]``.
``--quick``: ResNet-26, a 64-wide 2+2-layer transformer, 128 px, 2 rounds (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)

import torch  # noqa: E402
from models import alternate, machine_line  # noqa: E402  (benchmarks/models.py)
from noise import wait_quiet  # noqa: E402

from visionattn.tasks.detection.loss import SetCriterion  # noqa: E402
from visionattn.tasks.detection.model import DetrSpec, build_detr, load_detr_weights  # noqa: E402

FULL = dict(backbone="resnet50", d_model=256, layers=6, heads=8, ffn=2048, queries=100, classes=91)
QUICK = dict(backbone="resnet26", d_model=64, layers=2, heads=8, ffn=128, queries=20, classes=10)


def build_pair(c: dict):
    """(hf, ours) with the same weights; eval mode."""
    from transformers import DetrConfig, DetrForObjectDetection

    cfg = DetrConfig(use_timm_backbone=True, use_pretrained_backbone=False, backbone=c["backbone"],
                     num_labels=c["classes"], encoder_layers=c["layers"], decoder_layers=c["layers"],
                     num_queries=c["queries"], d_model=c["d_model"], encoder_ffn_dim=c["ffn"],
                     decoder_ffn_dim=c["ffn"], encoder_attention_heads=c["heads"],
                     decoder_attention_heads=c["heads"], auxiliary_loss=False)
    torch.manual_seed(0)
    hf = DetrForObjectDetection(cfg).eval()
    spec = DetrSpec(num_classes=c["classes"], num_queries=c["queries"], hidden_dim=c["d_model"], heads=c["heads"],
                    enc_layers=c["layers"], dec_layers=c["layers"], ffn_dim=c["ffn"], dropout=0.1)
    ours = build_detr(c["backbone"], spec).eval()
    load_detr_weights(ours, hf.state_dict())
    return hf, ours


def inputs(batch: int, size: int, classes: int):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=g)
    mask = torch.zeros(batch, size, size, dtype=torch.bool)
    mask[-1, :, size * 3 // 4:] = True  # the last image is narrower: real padding
    x[-1, :, mask[-1]] = 0
    targets = []
    for _ in range(batch):
        n = 4
        c = 0.3 + 0.4 * torch.rand(n, 2, generator=g)
        boxes = torch.cat([c, 0.1 + 0.2 * torch.rand(n, 2, generator=g)], -1)
        targets.append({"labels": torch.randint(0, classes, (n,), generator=g), "boxes": boxes})
    return x, mask, targets


def step_fns(hf, ours, x, mask, targets, classes: int):
    """(forward, train step) callables for each side."""
    hf_labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    criterion = SetCriterion(classes, aux=False)
    for name, p in ours.backbone.body.named_parameters():  # HF's timm backbone trains layer2-4 only
        if name.startswith(("stem.", "stages.0.")):
            p.requires_grad_(False)
    opt_hf = torch.optim.SGD([p for p in hf.parameters() if p.requires_grad], lr=1e-5)
    opt_ours = torch.optim.SGD([p for p in ours.parameters() if p.requires_grad], lr=1e-5)

    def fwd_hf():
        with torch.no_grad():
            return hf(x, pixel_mask=(~mask).long())

    def fwd_ours():
        with torch.no_grad():
            return ours(x, mask)

    def train_hf():
        hf.train()
        out = hf(x, pixel_mask=(~mask).long(), labels=hf_labels)
        out.loss.backward()
        opt_hf.step()
        opt_hf.zero_grad(set_to_none=True)
        hf.eval()

    def train_ours():
        ours.train()
        for m in ours.backbone.modules():  # frozen batch norm, as HF's
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        terms, _ = criterion(ours(x, mask), targets)
        sum(terms.values()).backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)
        ours.eval()

    return {"hf": fwd_hf, "ours": fwd_ours}, {"hf": train_hf, "ours": train_ours}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=None, help="image side (default 320; quick 128)")
    ap.add_argument("--reps", type=int, default=None, help="timed rounds (default 5; quick 2)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quiet-wait", type=float, default=0.0, help="wait up to this many seconds for a quiet box")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    c = QUICK if args.quick else FULL
    size = args.size or (128 if args.quick else 320)
    reps = args.reps or (2 if args.quick else 5)
    print(f"# DETR vs HF DETR: {machine_line()}")
    print(f"# config: {c}, batch {args.batch}, {size}x{size} px", flush=True)
    hf, ours = build_pair(c)
    x, mask, targets = inputs(args.batch, size, c["classes"])
    with torch.no_grad():
        a, b = hf(x, pixel_mask=(~mask).long()), ours(x, mask)
    rel = float((a.logits - b.logits).abs().max() / a.logits.abs().max())
    if rel > 1e-4:
        raise SystemExit(f"outputs differ (max relative {rel:.2e}): not the same model, refusing to time it")
    forward, train = step_fns(hf, ours, x, mask, targets, c["classes"])
    row = {"config": c, "batch": args.batch, "size": size, "threads": args.threads, "logits_rel_diff": rel}
    for kind, fns in (("forward", forward), ("train", train)):
        waited = wait_quiet(args.quiet_wait)
        res = alternate(fns, args.warmup, reps)
        for side in fns:
            row[f"{kind}_{side}_img_s"] = args.batch / res[side]["s"]
            row[f"{kind}_{side}_iqr_pct"] = res[side]["iqr_pct"]
        row[f"{kind}_ratio"] = row[f"{kind}_ours_img_s"] / row[f"{kind}_hf_img_s"]
        row[f"{kind}_others_pct"] = res["ours"]["others_pct"]
        row[f"{kind}_waited_s"] = waited
    print("\n| step | ours img/s | HF img/s | ratio (ours / HF) | IQR ours / HF | others % |")
    print("|---|---|---|---|---|---|")
    for kind in ("forward", "train"):
        print(f"| {kind} | {row[f'{kind}_ours_img_s']:.2f} | {row[f'{kind}_hf_img_s']:.2f} | "
              f"{row[f'{kind}_ratio']:.2f}x | {row[f'{kind}_ours_iqr_pct']:.0f}% / {row[f'{kind}_hf_iqr_pct']:.0f}% | "
              f"{row[f'{kind}_others_pct']:.0f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(row, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
