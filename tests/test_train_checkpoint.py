"""Checkpoints: bit-exact mid-epoch resume (with a negative control), atomic writes under injected failures,
truncated / foreign files, ``--resume auto`` fallback, and SIGTERM on a real ``python -m visionattn train``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import make_trainer, tiny_config, write_image_folder

from visionattn.train import checkpoint as ckpt_mod
from visionattn.train.checkpoint import (
    CheckpointError,
    CheckpointManager,
    capture_rng,
    load_checkpoint,
    load_latest,
    restore_rng,
)

ROOT = Path(__file__).resolve().parents[1]


def _weights(trainer) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    out.update({f"ema.{k}": v for k, v in trainer.ema.module.state_dict().items()})
    return out


def _differing(a: dict, b: dict) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize("accum, workers", [(1, 0), (2, 1)])
def test_mid_epoch_resume_is_bit_exact_and_needs_the_rng_state(tmp_path, monkeypatch, accum, workers):
    cfg = tiny_config(f"schedule.accum_steps={accum}", f"run.num_workers={workers}",
                      "schedule.batch_size=4" if accum == 2 else "run.seed=0")
    uninterrupted = make_trainer(tmp_path, cfg, "a")
    uninterrupted.fit()
    total = uninterrupted.step
    assert total == 10 and uninterrupted.updates_per_epoch == 5

    paused = make_trainer(tmp_path, cfg, "b")
    assert paused.fit(until_step=7)["paused"]  # epoch 2, update 2 of 5: mid-epoch
    path = tmp_path / "b" / "ckpt-00000007.pt"
    state = load_checkpoint(path)
    assert (state["epoch"], state["step"], state["batch"]) == (1, 7, 2 * accum)
    assert state["sampler"]["consumed"] == 2 * accum * paused.batch_size

    paused.fit()  # the paused trainer itself also continues exactly (its loader restarts mid-epoch)
    assert _differing(_weights(uninterrupted), _weights(paused)) == []

    torch.manual_seed(1234)  # whatever happened in between must not matter
    resumed = make_trainer(tmp_path, cfg, "b", resume_state=load_checkpoint(path))
    resumed.fit()
    assert resumed.step == total
    assert _differing(_weights(uninterrupted), _weights(resumed)) == []
    assert resumed.best_metric == uninterrupted.best_metric

    # negative control: the same resume without restoring the RNG states (augmentation is per-sample seeded,
    # but dropout, stochastic depth and Mixup draw from the global streams) ends elsewhere
    monkeypatch.setattr("visionattn.train.state.restore_rng", lambda state: None)
    torch.manual_seed(1234)
    no_rng = make_trainer(tmp_path, cfg, "c", resume_state=load_checkpoint(path))
    no_rng.fit()
    assert len(_differing(_weights(uninterrupted), _weights(no_rng))) > 10


def test_checkpoint_holds_only_tensors_and_primitives(tmp_path):
    trainer = make_trainer(tmp_path, tiny_config())
    trainer.fit(until_step=2)
    state = torch.load(tmp_path / "run" / "ckpt-00000002.pt", weights_only=True)  # would raise otherwise

    def check(obj, where="state"):
        if isinstance(obj, dict):
            for k, v in obj.items():
                assert isinstance(k, (str, int)), where
                check(v, f"{where}.{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                check(v, f"{where}[{i}]")
        else:
            assert obj is None or isinstance(obj, (torch.Tensor, str, int, float, bool)), (where, type(obj))

    check(state)
    for key in ("task", "task_state", "meta", "model", "ema", "optimizer", "scheduler", "rng", "sampler", "epoch",
                "step", "config", "classes"):
        assert key in state
    assert {"python", "numpy", "torch", "cuda"} <= set(state["rng"][0])
    assert "model:" in state["config"] and state["classes"] == ["a", "b", "c", "d"]
    assert state["task"] == "classification" and state["version"] == 2
    assert state["meta"] == {"classes": ["a", "b", "c", "d"], "img_size": 16, "in_chans": 3,
                             "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def test_rng_round_trip():
    import random

    import numpy as np

    saved = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    restore_rng(saved)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((3,), value)}, "optimizer": {}, "rng": [], "sampler": {}, "epoch": 0,
            "step": int(value), "config": "", "classes": ["a"], "task": "classification", "meta": {"classes": ["a"]}}


def test_atomic_write_survives_a_failing_replace_and_a_failing_write(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep_last=3)
    manager.save(_state(1), step=1, is_best=True)

    def broken_replace(src, dst):
        raise OSError("disk full (injected)")

    with monkeypatch.context() as m:
        m.setattr(ckpt_mod.os, "replace", broken_replace)
        with pytest.raises(OSError, match="injected"):
            manager.save(_state(2), step=2)
        with pytest.raises(OSError, match="injected"):
            manager.save(_state(1), step=1, is_best=True)  # overwriting an existing file fails too

    def broken_save(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise RuntimeError("killed mid-write (injected)")

    with monkeypatch.context() as m:
        m.setattr(ckpt_mod.torch, "save", broken_save)
        with pytest.raises(RuntimeError, match="injected"):
            manager.save(_state(3), step=1, is_best=True)
    # the previous files are intact and load; no partial file and no temporary left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "ckpt-00000001.pt"]
    for name in ("best.pt", "ckpt-00000001.pt"):
        assert torch.equal(load_checkpoint(tmp_path / name)["model"]["w"], torch.full((3,), 1.0))


def test_stale_temporary_files_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".ckpt-00000005.pt.tmp-4242").write_bytes(b"partial")
    CheckpointManager(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_keep_last_k(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in range(1, 6):
        manager.save(_state(step), step=step, is_best=step == 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "ckpt-00000004.pt", "ckpt-00000005.pt"]
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 3


def test_truncated_and_foreign_checkpoints_are_clear_errors(tmp_path):
    manager = CheckpointManager(tmp_path)
    good = manager.save(_state(1), step=1)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt.*cannot be read: it is truncated") as info:
        load_checkpoint(truncated)
    assert info.value.path == str(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt.*not a visionattn training checkpoint.*pretrained_path"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_auto_falls_back_to_the_previous_good_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=3)
    manager.save(_state(1), step=1)
    manager.save(_state(2), step=2)
    newest = manager.save(_state(3), step=3)
    newest.write_bytes(newest.read_bytes()[:100])  # torn by a crash outside our writer
    messages = []
    path, state = load_latest(tmp_path, log=messages.append)
    assert path.name == "ckpt-00000002.pt" and state["step"] == 2
    assert "ckpt-00000003.pt" in messages[0] and "falling back" in messages[0]
    assert "previous good checkpoint" in messages[1]
    assert load_latest(tmp_path / "empty") is None
    for p in tmp_path.glob("ckpt-*.pt"):
        p.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        load_latest(tmp_path, log=messages.append)


def test_sigterm_finishes_the_step_writes_a_checkpoint_and_resume_auto_continues(tmp_path, capsys):
    data = write_image_folder(tmp_path / "imgs", per_class=6)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "visionattn", "train", "--run-dir", str(run_dir), "data.name=folder",
           f"data.path={data}", "data.img_size=16", "model.overrides={patch: 8, dim: 32, depth: 1, heads: 2}",
           "schedule.epochs=1000", "schedule.batch_size=4", "run.report=false", "run.log_every=1",
           "run.threads=1", "run.num_workers=1"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # wait until the first update has been logged
            if line.startswith("epoch 1 step 1/") or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM after finishing the current step" in err
    found = load_latest(run_dir)
    assert found is not None
    path, state = found
    assert state["step"] >= 1 and state["epoch"] == 0 and str(path) in err

    # a torn newer file: --resume auto says so, falls back, and finishes the epoch
    (run_dir / "ckpt-99999999.pt").write_bytes(b"torn")
    from visionattn.cli import main

    assert main(["train", "--run-dir", str(run_dir), "--resume", "auto", "schedule.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "ckpt-99999999.pt" in out and "falling back" in out and f"resuming from {path}" in out
    assert "epoch 1/1" in out and load_checkpoint(run_dir / "best.pt")["epoch"] == 1


@pytest.mark.slow
def test_torchrun_two_processes_resume_is_bit_exact(tmp_path):
    """2 gloo processes: 7 updates straight vs 4 (mid-epoch), then ``--resume`` under torchrun to 7."""
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this python")
    data = write_image_folder(tmp_path / "imgs", per_class=8)  # 24 train images: 3 updates of 2 x 4 per epoch
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def train(out: str, *extra: str):
        port = 29500 + os.getpid() % 1000 + len(extra) * 7 + len(out)
        cmd = [str(torchrun), "--nproc-per-node", "2", "--master-port", str(port), "-m", "visionattn", "train",
               "--out", str(tmp_path / out), "data.name=folder", f"data.path={data}", "data.img_size=16",
               "data.hflip=true", "model.overrides={patch: 8, dim: 32, depth: 1, heads: 2, drop_path: 0.1}",
               "schedule.epochs=3", "schedule.batch_size=8", "task.mixup=0.2", "run.report=false", *extra]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    train("a", "--max-steps", "7")
    train("b", "--max-steps", "4")
    out = train("b", "--resume", "--max-steps", "7")
    assert "resuming from" in out and "ckpt-00000004.pt" in out
    a, b = load_checkpoint(tmp_path / "a" / "ckpt-00000007.pt"), load_checkpoint(tmp_path / "b" / "ckpt-00000007.pt")
    assert len(a["rng"]) == 2  # every rank's streams
    for part in ("model", "ema"):
        assert _differing(a[part], b[part]) == []


def test_each_rank_restores_its_own_rng_streams_and_a_new_world_size_reseeds():
    """Two faked ranks: a resume puts back rank r's own Python / numpy / torch streams (a rank reading rank 0's
    state would repeat rank 0's dropout noise); another world size cannot continue the streams and reseeds."""
    import random

    import numpy as np

    from visionattn.comm import DistInfo
    from visionattn.train.state import restore_rank_rng, seed_everything

    states, draws = [], []
    for rank in range(2):
        seed_everything(100 + rank)
        states.append(capture_rng())
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(()))))
    assert draws[0] != draws[1]
    for rank in (1, 0):
        info = DistInfo(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"), is_main=rank == 0)
        seed_everything(7)  # whatever the process drew before
        assert restore_rank_rng(states, info, reseed=5) is True
        assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == draws[rank]
    three = DistInfo(rank=2, world_size=3, local_rank=2, device=torch.device("cpu"), is_main=False)
    assert restore_rank_rng(states, three, reseed=40) is False
    got = (random.random(), float(np.random.rand()), float(torch.rand(())))
    seed_everything(42)  # reseed + rank
    assert got == (random.random(), float(np.random.rand()), float(torch.rand(())))


def test_counters_round_trip_every_field_and_read_old_checkpoints_with_defaults():
    """Every counter survives ``to_state`` → ``from_state`` with a value unlike its default (a resume that lost
    the skipped-update counts, the EMA choice or the latest metrics would still train, silently different); a
    checkpoint written before the optional fields existed reads with the documented defaults."""
    from visionattn.train.state import Counters

    counters = Counters(epoch=3, step=41, batch=5, best_metric=0.875, metrics={"val_top1": 0.875, "loss": 1.5},
                        eval_weights="ema", nonfinite_total=4, nonfinite_consecutive=2)
    state = counters.to_state()
    assert state == {"epoch": 3, "step": 41, "batch": 5, "best_metric": 0.875,
                     "metrics": {"val_top1": 0.875, "loss": 1.5}, "eval_weights": "ema",
                     "nonfinite": {"total": 4, "consecutive": 2}}
    assert Counters.from_state(state) == counters
    state["metrics"]["loss"] = 9.0  # the state holds a copy, not the live dict
    assert counters.metrics["loss"] == 1.5
    old = Counters.from_state({"epoch": 2, "step": 10, "batch": 0})
    assert old == Counters(epoch=2, step=10, batch=0)
    assert (old.best_metric, old.metrics, old.eval_weights, old.nonfinite_total, old.nonfinite_consecutive) \
        == (None, {}, "model", 0, 0)
    partial = Counters.from_state({"epoch": "1", "step": "7", "batch": "2", "nonfinite": {"total": "3"},
                                   "eval_weights": None, "metrics": None})
    assert (partial.epoch, partial.step, partial.batch, partial.nonfinite_total, partial.nonfinite_consecutive,
            partial.eval_weights, partial.metrics) == (1, 7, 2, 3, 0, "model", {})


def test_seed_everything_seeds_python_numpy_and_torch_to_known_streams():
    """The three global streams after ``seed_everything(s)`` are exactly those of seeding each by hand
    (numpy with ``s mod 2**32``, so seeds past 32 bits still work)."""
    import random

    import numpy as np

    from visionattn.train.state import seed_everything

    for seed in (0, 1234, 2**32 + 5):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
        seed_everything(seed + 1)  # something else first
        seed_everything(seed)
        assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_restore_weights_of_another_architecture_names_the_checkpoint_weights():
    """A checkpoint of another architecture is a ValueError that says whose keys do not fit (not a bare
    ``load_state_dict`` error), and nothing is loaded into the model or the optimizer."""
    from visionattn.train.state import capture_weights, restore_weights

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    other = torch.nn.Sequential(torch.nn.Linear(3, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    weights, optim = capture_weights(other, other, torch.optim.SGD(other.parameters(), lr=0.1), fsdp=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = r"(?s)the checkpoint's weights does not fit Sequential.*missing keys \(2\).*1\.weight"
    with pytest.raises(ValueError, match=expected):
        restore_weights(model, model, opt, weights, optim, fsdp=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
