"""An open_clip / OpenAI CLIP weight file as a visionattn CLIP checkpoint, so that ``visionattn predict`` and
``visionattn eval`` run it like a trained run::

    python -m visionattn.tasks.clip.convert ViT-B-32.pt clip-b32.pt --label cat --label dog
    visionattn predict clip-b32.pt photo.jpg --text "a photo of a cat" --text "a photo of a dog"
    visionattn predict clip-b32.pt photo.jpg            # no --text: the --label names through the prompt ensemble

:func:`import_clip_checkpoint` reads the file with :func:`~.model.load_clip_checkpoint` (architecture from the
weights; QuickGELU for OpenAI's files), writes the config that rebuilds the same towers through the task
(``model: vit_base_patch16_224`` with the file's patch, width, depth, heads, MLP ratio, ``pre_norm`` and LayerNorm eps
1e-5; ``task.text_model: clip_text_base`` with the file's text sizes; ``task.embed_dim``, ``task.context_length``),
checks that this rebuild takes the converted weights key for key, and saves a version-2 training checkpoint at step 0
(no optimizer state: it is for evaluation and prediction, not for ``--resume``). Its data section is openclipart
(``visionattn eval clip.pt``: retrieval on the openclipart validation pairs, zero-shot on Fashion-MNIST and digits;
``--data caption_csv --data-path pairs.csv`` for your own pairs).

Preprocessing differs from open_clip's in one way: images are resized to the square ``image_size`` (visionattn's
eval transform) where open_clip resizes the short side and centre-crops; the normalisation is OpenAI's mean and std.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .model import OPENAI_MEAN, OPENAI_STD, load_clip_checkpoint, open_clip_architecture

__all__ = ["import_clip_checkpoint", "main"]


def _config(arch: dict, act: str) -> dict:
    v, t = arch["vision"], arch["text"]
    return {
        "task": {"name": "clip", "embed_dim": arch["embed_dim"], "text_model": "clip_text_base",
                 "text_overrides": {"vocab_size": t["vocab_size"], "dim": t["dim"], "depth": t["depth"],
                                    "heads": t["heads"], "mlp_ratio": t["mlp_ratio"], "act": act},
                 "context_length": t["context_length"], "heldout_categories": [],
                 "zero_shot": ["fashion_mnist", "digits"]},
        "model": {"name": "vit_base_patch16_224",
                  "overrides": {"patch": v["patch"], "dim": v["width"], "depth": v["layers"],
                                "heads": v["width"] // 64, "mlp_ratio": v["mlp_ratio"], "pre_norm": True,
                                "norm_eps": 1e-5, "act": act}},
        "data": {"name": "openclipart", "val_fraction": 0.1, "img_size": v["image_size"], "mean": list(OPENAI_MEAN),
                 "std": list(OPENAI_STD)},
    }


def import_clip_checkpoint(src: str | Path, dst: str | Path, act: str | None = None,
                           labels: Sequence[str] = ()) -> Path:
    """Write ``dst``, a visionattn checkpoint of task ``clip`` holding the weights of the open_clip / OpenAI CLIP
    file ``src`` (ViT image towers; formats as :func:`~.model.load_clip_checkpoint`). ``act``: the MLP activation
    (default: QuickGELU for OpenAI's files, GELU otherwise; open_clip's ``-quickgelu`` models need
    ``'quick_gelu'``). ``labels``: the names ``visionattn predict`` ranks when given no ``--text``. Returns ``dst``."""
    from ...train.checkpoint import FORMAT, VERSION, atomic_save
    from ...train.config import config_from_dict, config_to_yaml
    from .model import _read_clip_file
    from .task import ClipTask

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"import_clip_checkpoint: the output {str(dst)!r} would overwrite the input file")
    labels = [str(x).strip() for x in labels]
    if any(not x for x in labels):
        raise ValueError(f"import_clip_checkpoint: labels must be non-empty texts, got {labels!r}")
    state, scripted = _read_clip_file(src)
    arch = open_clip_architecture(state)
    if act is None:
        act = "quick_gelu" if scripted or "input_resolution" in state else "gelu"
    model = load_clip_checkpoint(src, act=act)
    cfg = config_from_dict(_config(arch, act))
    task = ClipTask(cfg.task)
    meta = {"img_size": int(cfg.data.img_size), "mean": list(cfg.data.mean), "std": list(cfg.data.std),
            "context_length": int(cfg.task.context_length), "tokenizer": task.tokenizer.name,
            "heldout_classes": [], "known_classes": list(dict.fromkeys(labels)), "zero_shot": {},
            "source": str(src)}
    rebuilt = task.build_model(cfg.model, meta)
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(weights)  # strict: the config rebuilds exactly these towers
    atomic_save({"format": FORMAT, "version": VERSION, "task": "clip", "task_state": {}, "meta": meta,
                 "model": weights, "ema": None, "optimizer": {}, "scheduler": {}, "scaler": None, "rng": [],
                 "sampler": {"epoch": 0, "consumed": 0, "world_size": 1}, "epoch": 0, "step": 0, "batch": 0,
                 "best_metric": None, "metrics": {}, "eval_weights": "model",
                 "nonfinite": {"total": 0, "consecutive": 0}, "config": config_to_yaml(cfg),
                 "classes": []}, dst)
    return dst


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visionattn.tasks.clip.convert",
                                     description="An open_clip / OpenAI CLIP weight file (ViT) as a visionattn "
                                                 "checkpoint for `visionattn predict` / `visionattn eval`.")
    parser.add_argument("src", help="open_clip .pt/.bin/.safetensors state dict or OpenAI TorchScript .pt")
    parser.add_argument("dst", help="the visionattn checkpoint to write")
    parser.add_argument("--act", choices=["gelu", "quick_gelu"], default=None,
                        help="MLP activation (default: quick_gelu for OpenAI files, else gelu)")
    parser.add_argument("--label", action="append", default=[], help="a label predict ranks without --text "
                                                                      "(repeat)")
    args = parser.parse_args(argv)
    try:
        out = import_clip_checkpoint(args.src, args.dst, args.act, args.label)
    except (ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
