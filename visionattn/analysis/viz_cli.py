"""``visionattn viz``: attention maps of a model on image files, as PNG figures (and an HTML explorer).

::

    visionattn viz CHECKPOINT IMAGE... [--weights auto|model|ema] [--layer IDX|NAME|all|last] [--query cls|X,Y ...]
                   [--threshold 0.6] [--rollout] [--out DIR] [--html]
    visionattn viz --model NAME IMAGE... [--weights FILE] [--img-size N] ...

``CHECKPOINT`` is a ``visionattn train`` checkpoint: the model and its evaluation transform are rebuilt from it
(as ``visionattn predict``), and its task picks the module whose attention is shown (``Task.attention_model``:
the model itself for classification, the teacher's backbone for DINO). With ``--model`` a registered preset is
built instead — with random weights (seeded) or ``--weights FILE`` (ours, timm or DINO state dicts) — and images
are resized to ``--img-size`` (default: the preset's) and normalised with ImageNet statistics. Query pixels ``X,Y``
are in the model-input image (after the resize), ``0 ≤ X < W``, ``0 ≤ Y < H``.

Writes into ``--out`` (default ``viz``), for each image ``STEM``: ``STEM_input.png`` (the model input), one
``STEM_<layer>_<query>.png`` per layer and query (the image, the head mean and every head overlaid, and under each
its DINO-style mask keeping ``--threshold`` of the attention mass), ``STEM_rollout_<query>.png`` with
``--rollout`` (ViT family), and ``STEM_explorer.html`` with ``--html`` (the selected layers, clickable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXPLORER_BUDGET = 40 << 20  # bytes of attention rows given to the explorer page, over all layers
WEIGHT_CHOICES = ("auto", "model", "ema")


def add_parser(sub) -> None:
    """Register the ``viz`` subcommand on an argparse sub-parser collection."""
    p = sub.add_parser(
        "viz", help="attention maps of a checkpoint or preset on images: per-head overlays, DINO masks, rollout",
        description="Attention maps of chosen queries (the class token or pixels X,Y of the model input) over every "
                    "key, per head and head-averaged, mapped onto the image; DINO-style masks keeping --threshold "
                    "of the attention mass; attention rollout for the ViT family (--rollout); an interactive HTML "
                    "explorer (--html). Give a training CHECKPOINT then IMAGEs, or --model NAME then IMAGEs.",
        usage="visionattn viz CHECKPOINT IMAGE... [options]\n       visionattn viz --model NAME IMAGE... [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a visionattn train checkpoint followed by image files (only image files with --model)")
    p.add_argument("--model", metavar="NAME", help="a registered preset instead of a checkpoint (random weights, or "
                                                   "--weights FILE)")
    p.add_argument("--weights", metavar="auto|model|ema|FILE",
                   help="checkpoint: which weights (default auto: those that evaluated better); --model: a weights "
                        "file (ours, timm or DINO); default random (seeded by --seed)")
    p.add_argument("--img-size", type=int, metavar="N", help="--model only: input size (default: the preset's)")
    p.add_argument("--layer", default="last", metavar="IDX|NAME|all|last",
                   help="attention layer(s): an index (negative from the end), a module name, 'all' or 'last' "
                        "(default); comma-separated for several")
    p.add_argument("--query", nargs="+", metavar="cls|X,Y",
                   help="queries: 'cls' (class token) and/or pixels X,Y of the model input (default: cls when the "
                        "model has a class token, else the centre pixel)")
    p.add_argument("--threshold", type=float, default=0.6,
                   help="mask: keep the smallest key set holding this fraction of the attention mass (default 0.6)")
    p.add_argument("--rollout", action="store_true", help="also write attention rollout maps (ViT family only)")
    p.add_argument("--out", default="viz", metavar="DIR", help="output folder (default ./viz)")
    p.add_argument("--html", action="store_true", help="also write an interactive explorer page per image")
    p.add_argument("--seed", type=int, default=0, help="--model without --weights: initialisation seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1 ...")
    p.set_defaults(func=_cmd_viz)


def _cmd_viz(args) -> int:
    try:
        for path in run_viz(args):
            print(path)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"visionattn viz: error: {err}", file=sys.stderr)
        return 2
    return 0


def _load_model(args):
    """(model in eval mode, DataConfig for the eval transform, image paths)."""
    import torch

    from ..data.config import DataConfig

    if args.model is None:
        if len(args.paths) < 2:
            raise ValueError(f"expected a CHECKPOINT then at least one IMAGE (or --model NAME IMAGE...), got "
                             f"{len(args.paths)} path(s): {args.paths}")
        if args.img_size is not None:
            raise ValueError(f"--img-size applies to --model only; checkpoint {args.paths[0]!r} fixes its own size")
        weights = args.weights or "auto"
        if weights not in WEIGHT_CHOICES:
            raise ValueError(f"--weights with a checkpoint: expected one of {WEIGHT_CHOICES}, got {weights!r} (a "
                             f"weights file goes with --model NAME)")
        from ..train.evaluate import model_from_checkpoint

        model, cfg, task, _ = model_from_checkpoint(args.paths[0], weights)
        return task.attention_model(model), cfg.data, args.paths[1:]  # e.g. DINO: its teacher's backbone
    from ..models import create_model
    from ..models.registry import get_preset

    preset = get_preset(args.model)
    size = args.img_size or preset.img_size
    if size < 1:
        raise ValueError(f"--img-size: expected a positive int, got {size}")
    if args.weights in WEIGHT_CHOICES:
        raise ValueError(f"--weights {args.weights!r} selects weights inside a checkpoint; with --model give a "
                         f"weights FILE or nothing (random)")
    if args.weights is not None and not Path(args.weights).is_file():
        raise FileNotFoundError(f"--weights: file {args.weights!r} does not exist")
    torch.manual_seed(args.seed)
    model = create_model(args.model, img_size=size, pretrained_path=args.weights).eval()
    data = DataConfig(img_size=size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # timm's ImageNet
    return model, data, args.paths


def _layer_request(text: str):
    items = []
    for part in str(text).split(","):
        part = part.strip()
        if part == "all":
            return None
        try:
            items.append(int(part))
        except ValueError:
            items.append(part)  # "last" or a module name
    return items


def _tag(query) -> str:
    return "cls" if query == "cls" else f"x{query[0]}y{query[1]}"


def _describe(query) -> str:
    return "CLS" if query == "cls" else f"pixel x={query[0]}, y={query[1]}"


def run_viz(args) -> list[Path]:
    """The work of ``visionattn viz``: returns the files written (raises ValueError/FileNotFoundError on bad input)."""
    import torch

    from ..data import build_transform, load_image
    from ..data.transforms import denormalize
    from .maps import capture_attention, parse_query, query_maps, query_rows, upsample_to_image
    from .overlay import save_attention_figure, save_image, threshold_mask, to_uint8_image

    if not 0.0 < args.threshold <= 1.0:
        raise ValueError(f"--threshold: expected a fraction in (0, 1], got {args.threshold}")
    queries = [parse_query(q) for q in args.query] if args.query else None
    model, data_cfg, image_paths = _load_model(args)
    transform = build_transform(data_cfg, train=False, in_chans=3)
    tensors = [transform(load_image(p)) for p in image_paths]  # BadImage (a ValueError) names the file
    from ..train.evaluate import resolve_device

    device = resolve_device(args.device)
    model.to(device)
    capture = capture_attention(model, torch.stack(tensors).to(device))  # every layer: rollout needs them all
    chosen = capture.pick(_layer_request(args.layer))
    H, W = capture.image_size
    if queries is None:
        queries = ["cls"] if all(layer.prefix for layer in chosen) else [(W // 2, H // 2)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images = [to_uint8_image(denormalize(t, data_cfg)) for t in tensors]
    all_names = capture.all_names
    for b, (path, image) in enumerate(zip(image_paths, images, strict=True)):
        stem = Path(path).stem
        written.append(save_image(out / f"{stem}_input.png", image))
        for layer in chosen:
            index = all_names.index(layer.name)
            maps = query_maps(capture, layer, queries)[b]  # (Q, heads, H, W)
            rows = query_rows(capture, layer, queries)[b]  # (Q, heads, h, w)
            masks = threshold_mask(torch.cat([rows.mean(1, keepdim=True), rows], 1), args.threshold, dims=2)
            masks = upsample_to_image(masks, layer.reduction, (H, W))  # (Q, 1 + heads, H, W)
            for qi, query in enumerate(queries):
                stack = torch.cat([maps[qi].mean(0, keepdim=True), maps[qi]]).cpu().numpy()  # (1 + heads, H, W)
                labels = ["mean of heads"] + [f"head {h}" for h in range(layer.heads)]
                title = (f"{capture.model_name} — layer {index} {layer.name} ({layer.pattern!r}) — query "
                         f"{_describe(query)}")
                target = out / f"{stem}_L{index:02d}_{_tag(query)}.png"
                written.append(save_attention_figure(target, image, stack, labels,
                                                     masks[qi].cpu().numpy(), None if query == "cls"
                                                     else query, title, args.threshold))
        if args.rollout:
            written += _write_rollout(capture, b, stem, image, queries, out, args.threshold)
        if args.html:
            written.append(_write_explorer(capture, chosen, b, out / f"{stem}_explorer.html", image, stem))
    return written


def _write_rollout(capture, b, stem, image, queries, out, threshold) -> list[Path]:
    from .maps import upsample_to_image
    from .overlay import save_attention_figure, threshold_mask
    from .rollout import rollout_rows

    rows = rollout_rows(capture, queries)[b]  # (Q, h, w); ValueError for non-isotropic models
    layer = capture.layers[-1]
    maps = upsample_to_image(rows, layer.reduction, capture.image_size)
    masks = upsample_to_image(threshold_mask(rows, threshold, dims=2), layer.reduction, capture.image_size)
    written = []
    for qi, query in enumerate(queries):
        title = f"{capture.model_name} — attention rollout over {len(capture.layers)} layers — query {_describe(query)}"
        written.append(save_attention_figure(out / f"{stem}_rollout_{_tag(query)}.png", image,
                                             maps[qi:qi + 1].cpu().numpy(), ["rollout"],
                                             masks[qi:qi + 1].cpu().numpy(), None if query == "cls" else query,
                                             title, threshold))
    return written


def _write_explorer(capture, chosen, b, path, image, stem) -> Path:
    from .explorer import ExplorerLayer, write_explorer
    from .maps import explorer_rows

    budget = EXPLORER_BUDGET // max(1, len(chosen))
    layers = []
    for layer in chosen:
        if layer.unmappable:
            continue
        q_grid, attn = explorer_rows(capture, layer, batch_index=b, max_bytes=budget)
        layers.append(ExplorerLayer(f"{capture.all_names.index(layer.name)}: {layer.name}", q_grid, layer.key_grid,
                                    attn))
    return write_explorer(path, image, layers, title=f"{capture.model_name} — {stem}")
