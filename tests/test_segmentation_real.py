"""Segmentation on the package data (slow: fetched into the cache on first use) and across two processes: labelme's
VOC folder as a format fixture, its COCO polygons painted into the same label maps as its VOC class PNGs, the nuclei
tiles of the stardist image, and the confusion matrix summed over two gloo ranks."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def test_labelme_voc_folder_reads_as_a_segmentation_set():
    from visionattn.data import DataConfig
    from visionattn.tasks.segmentation.data import build_segmentation_data
    from visionattn.tasks.segmentation.options import SegmentationOptions

    data = build_segmentation_data(DataConfig(name="labelme_voc", img_size=64, val_fraction=0.34),
                                   SegmentationOptions(), seed=0)
    assert data.skipped == [] and len(data.train) == 2 and len(data.val) == 1
    assert data.meta["classes"][:2] == ["_background_", "aeroplane"] and len(data.meta["classes"]) == 21
    sample = data.train[0]
    assert sample["image"].shape == (3, 64, 64)
    val = data.val[0]
    assert tuple(val["image"].shape[-2:]) in ((338, 500), (375, 500))  # evaluation keeps the photo's size
    assert set(val["mask"].unique().tolist()) <= set(range(21)) | {255}


def test_labelme_coco_polygons_paint_the_voc_class_masks():
    """The COCO file and the VOC class PNGs come from the same labelme polygons: painted by pycocotools, they agree
    with labelme's own rasterisation on at least 99% of the labelled pixels of every image (borders differ by a
    pixel; labelme's ignore regions are not in the COCO file)."""
    from visionattn.data.segmentation import index_coco
    from visionattn.data.sources import load_labelme_examples

    ex = load_labelme_examples()
    reader, items, skipped = index_coco(ex.coco_json, ex.coco_image_dir)
    assert skipped == [] and reader.kind == "instances" and reader.classes == ex.class_names
    by_name = {im["name"]: im for im in ex.images}
    for item in items:
        painted = reader.label_map(item)
        voc = by_name[item.name]["class_mask"].astype(np.int64)
        labelled = voc != 255
        agree = (painted[labelled] == voc[labelled]).mean()
        assert agree > 0.99, (item.name, agree)
        assert set(np.unique(painted)) == set(np.unique(voc[labelled]))


def test_nuclei_tiles_of_the_stardist_image():
    from visionattn.data import DataConfig
    from visionattn.tasks.segmentation.data import build_segmentation_data
    from visionattn.tasks.segmentation.options import SegmentationOptions

    data = build_segmentation_data(DataConfig(name="nuclei", img_size=64, val_fraction=0.25),
                                   SegmentationOptions(train_size=8), seed=0)
    assert data.meta["classes"] == ["background", "nucleus"] and data.meta["intensity"] == "percentile"
    assert data.train.split_col == 384 and len(data.val) == 8 * 2 and len(data.train) == 8
    fg = torch.stack([data.val[i]["mask"] for i in range(len(data.val))]).float().mean()
    assert 0.15 < float(fg) < 0.19  # measured: 17.0% of the validation strip is nucleus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric_worker(rank: int, world: int, port: int, out: str):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from visionattn.tasks.segmentation.metrics import ConfusionMetric
    from visionattn.train.distributed import cleanup, init_distributed

    info = init_distributed(backend="gloo", device="cpu", timeout_s=120)
    try:
        metric = ConfusionMetric(["a", "b", "c"])
        g = torch.Generator().manual_seed(rank)
        if rank == 0:  # rank 1 sees no batch at all: it must still join the reduction with zeros
            metric.update(torch.randn(2, 3, 5, 5, generator=g), {"mask": torch.randint(0, 3, (2, 5, 5), generator=g)})
        metric.reduce(info)
        if info.is_main:
            torch.save(metric.confusion, f"{out}/cm.pt")
    finally:
        cleanup(info)


def test_confusion_matrix_is_summed_over_ranks(tmp_path):
    torch.multiprocessing.spawn(_metric_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    from visionattn.comm import LOCAL
    from visionattn.tasks.segmentation.metrics import ConfusionMetric

    single = ConfusionMetric(["a", "b", "c"])
    g = torch.Generator().manual_seed(0)
    single.update(torch.randn(2, 3, 5, 5, generator=g), {"mask": torch.randint(0, 3, (2, 5, 5), generator=g)})
    single.reduce(LOCAL)
    assert torch.equal(torch.load(tmp_path / "cm.pt"), single.confusion)


def _ddp_worker(rank: int, world: int, port: int, out: str):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from pathlib import Path

    from tests.test_segmentation_task import TINY
    from visionattn.train.config import load_config
    from visionattn.train.distributed import cleanup, init_distributed
    from visionattn.train.loop import Trainer

    info = init_distributed(backend="gloo", device="cpu", timeout_s=120)
    try:
        trainer = Trainer(load_config(overrides=TINY + ["task.decoder=mla", "model.overrides.depth=4"]),
                          run_dir=Path(out) / f"ddp{rank}", log=lambda m: None, info=info)
        start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.fit(until_step=3)
        torch.save({"start": start, "end": trainer.model.state_dict()}, Path(out) / f"rank{rank}.pt")
    finally:
        cleanup(info)


def test_two_ddp_processes_train_setr(tmp_path):
    """DDP needs a gradient for every trained parameter: with the backbone's unused final norm frozen, 3 updates run
    on 2 gloo processes (the 2nd would fail otherwise), and both ranks end with the same parameters. (On CPU the
    heads' BatchNorm statistics are per rank, so the run is not the single-process run: torch has no CPU
    SyncBatchNorm; DDP broadcasts rank 0's running statistics before each forward.)"""
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    params = [k for k in r0["end"] if "running_" not in k and "num_batches" not in k]
    assert [k for k in params if not torch.equal(r0["end"][k], r1["end"][k])] == []
    moved = [k for k in r0["end"] if not torch.equal(r0["end"][k], r0["start"][k])]
    assert "backbone.norm.weight" not in moved
    assert {"head.cls.weight", "backbone.stages.0.attn.qkv.weight", "aux_heads.0.cls.weight"} <= set(moved)
