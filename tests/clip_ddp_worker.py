"""The CLIP DDP test's worker and its fixtures, in a module of their own: ``torch.multiprocessing.spawn`` imports
the worker's module in each child, and this one imports only torch and visionattn (``tests/test_clip_model.py``
imports open_clip, which takes seconds per process)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from visionattn.models import create_model
from visionattn.tasks.clip.loss import clip_loss
from visionattn.tasks.clip.model import CLIPModel


def tiny_clip() -> CLIPModel:
    torch.manual_seed(0)
    visual = create_model("vit_tiny_test", num_classes=0, img_size=16, dim=32, depth=1, heads=2)
    return CLIPModel(visual, create_model("clip_text_test", num_classes=16, depth=1))


def global_batch():
    g = torch.Generator().manual_seed(3)
    images = torch.randn(8, 3, 16, 16, generator=g)
    ids = torch.randint(1, 1000, (8, 6), generator=g)
    ids[:, -1] = 49407
    return images, ids


def ddp_worker(rank: int, world: int, port: int, out: str):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from visionattn.train.distributed import cleanup, init_distributed, wrap_model

    info = init_distributed(backend="gloo", device="cpu", timeout_s=120)
    try:
        model = tiny_clip()
        ddp = wrap_model(model, info)
        images, ids = global_batch()
        mine = slice(4 * rank, 4 * rank + 4)
        outputs = ddp(images=images[mine], tokens=ids[mine])
        loss, _ = clip_loss(outputs.image, outputs.text, outputs.logit_scale, info)
        loss.backward()
        if info.is_main:
            torch.save({n: p.grad.clone() for n, p in model.named_parameters()}, Path(out) / "ddp_grads.pt")
    finally:
        cleanup(info)
