"""Distributed training pieces: the resumable sampler, a world of one, and real 2-process runs on gloo/CPU.

The 2-process test spawns ranks that join through torchrun's environment variables and train a tiny ViT for k SGD
steps with DDP and with FSDP2; both must end with the weights of one process trained with the whole global batch.
"""

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from visionattn.train.distributed import (
    DistInfo,
    FSDPUnsupportedError,
    all_reduce_any,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_object,
    cleanup,
    init_distributed,
    load_model_state_dict,
    make_sampler,
    model_state_dict,
    wrap_model,
)
from visionattn.train.sampler import ResumableDistributedSampler

# ---------------------------------------------------------------------------------------------------------- sampler


def _info(rank, world):
    return DistInfo(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"), is_main=rank == 0)


@pytest.mark.parametrize("n", [20, 23])
def test_sampler_shards_are_disjoint_and_cover_the_dataset(n):
    shards = [list(make_sampler(range(n), _info(r, 2), shuffle=True, seed=3, batch_size=4)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == -(-n // 2)  # equal shards, padded
    assert set(shards[0]) | set(shards[1]) == set(range(n))
    overlap = sorted(shards[0] + shards[1])
    assert len(overlap) - len(set(overlap)) == (2 - n % 2) % 2  # only the padding repeats
    if n % 2 == 0:
        assert not set(shards[0]) & set(shards[1])


def test_sampler_drop_last_and_uneven_evaluation_shards():
    dropped = [list(ResumableDistributedSampler(23, 2, r, seed=1, drop_last=True)) for r in range(2)]
    assert len(dropped[0]) == len(dropped[1]) == 11 and len(set(dropped[0]) | set(dropped[1])) == 22
    uneven = [list(ResumableDistributedSampler(23, 2, r, shuffle=False, even=False)) for r in range(2)]
    assert [len(s) for s in uneven] == [12, 11] and sorted(uneven[0] + uneven[1]) == list(range(23))
    with pytest.raises(ValueError, match=r"rank: expected an integer in \[0, 2\), got 2"):
        ResumableDistributedSampler(10, 2, 2)


def test_sampler_is_deterministic_per_seed_and_epoch():
    def order(seed, epoch):
        s = ResumableDistributedSampler(50, 2, 1, shuffle=True, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(0, 0) == order(0, 0) and order(7, 3) == order(7, 3)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)
    state = torch.get_rng_state()
    order(5, 5)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched
    assert list(ResumableDistributedSampler(6, shuffle=False)) == list(range(6))


def test_two_ranks_step_through_the_same_global_batches_as_one_process():
    n, per_rank, world = 40, 4, 2
    single = list(ResumableDistributedSampler(n, 1, 0, seed=9))
    ranks = [list(ResumableDistributedSampler(n, world, r, seed=9)) for r in range(world)]
    for step in range(n // (per_rank * world)):
        together = ranks[0][step * per_rank:(step + 1) * per_rank] + ranks[1][step * per_rank:(step + 1) * per_rank]
        assert sorted(together) == sorted(single[step * 8:(step + 1) * 8])


def test_sampler_resume_skips_exactly_the_consumed_samples():
    data = TensorDataset(torch.arange(30))
    sampler = make_sampler(data, _info(1, 2), shuffle=True, seed=4, batch_size=3)
    sampler.set_epoch(2)
    full = sampler.shard()
    loader = DataLoader(data, batch_size=3, sampler=sampler)
    seen = []
    for i, (batch,) in enumerate(loader):
        seen += batch.tolist()
        if i == 1:
            break
    state = sampler.state_dict()
    assert state == {"epoch": 2, "consumed": 6, "world_size": 2}
    assert sampler.state_dict(batches_done=2) == state  # what a loop with DataLoader workers passes

    resumed = make_sampler(data, _info(1, 2), shuffle=True, seed=4, batch_size=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the loop re-enters the same epoch: the position is kept
    assert len(resumed) == 15 and resumed.remaining == 9
    rest = [i for (b,) in DataLoader(data, batch_size=3, sampler=resumed) for i in b.tolist()]
    assert seen + rest == full and resumed.state_dict()["consumed"] == 15
    assert list(resumed) == full  # a second pass over the epoch is complete again
    resumed.set_epoch(3)
    assert resumed.state_dict() == {"epoch": 3, "consumed": 0, "world_size": 2} and len(list(resumed)) == 15


def test_sampler_resume_with_another_world_size_and_bad_states():
    old = [ResumableDistributedSampler(24, 2, r, seed=0) for r in range(2)]
    consumed = set(old[0].shard()[:6]) | set(old[1].shard()[:6])  # 12 samples seen by the 2-rank job
    new = [ResumableDistributedSampler(24, 3, r, seed=0) for r in range(3)]
    for s in new:
        s.load_state_dict({"epoch": 0, "consumed": 6, "world_size": 2})
    rest = [i for s in new for i in s]
    assert sorted(rest + list(consumed)) == list(range(24))
    s = ResumableDistributedSampler(10, 2, 0)
    with pytest.raises(ValueError, match=r"'consumed': expected <= 5 .* got 9"):
        s.load_state_dict({"epoch": 0, "consumed": 9})
    with pytest.raises(ValueError, match="expected a dict with 'epoch' and 'consumed'"):
        s.load_state_dict({"step": 3})


# --------------------------------------------------------------------------------------------------- world of one


def test_world_of_one_without_torchrun_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed(device="cpu")
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (0, 1, 0, True)
    assert info.device == torch.device("cpu") and not torch.distributed.is_initialized()
    model = torch.nn.Linear(3, 2)
    assert wrap_model(model, info) is model and wrap_model(model, info, fsdp=True) is model
    assert all_reduce_any(True, info) and not all_reduce_any(False, info)
    assert all_reduce_mean(2.5, info) == 2.5 and all_reduce_sum(3, info) == 3.0
    t = torch.tensor([1, 2])
    assert torch.equal(all_reduce_sum(t, info), t) and broadcast_object({"a": 1}, info) == {"a": 1}
    assert set(model_state_dict(model)) == {"weight", "bias"}
    with pytest.raises(RuntimeError, match="world size 2 but no process group"):
        wrap_model(model, _info(0, 2))
    with pytest.raises(TypeError, match="expected an nn.Module, got str"):
        wrap_model("model", info)
    barrier(info)
    cleanup(info)


def test_bad_torchrun_env_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE: expected an integer, got 'two'"):
        init_distributed()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2, WORLD_SIZE=2"):
        init_distributed(device="cpu")
    with pytest.raises(ValueError, match="backend: expected one of"):
        init_distributed(backend="mpi")


# ------------------------------------------------------------------------------------------------ 2 real processes

STEPS, PER_RANK, WORLD, LR = 3, 4, 2, 0.2


def _data():
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(40, 3, 32, 32, generator=g), torch.randint(0, 10, (40,), generator=g))


def _model():
    from visionattn.models import create_model

    torch.manual_seed(0)
    return create_model("vit_tiny_test", num_classes=10)


def _train(model, loader, steps):
    """k SGD steps; returns the losses (this rank's batch mean)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    losses = []
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if len(losses) == steps:
            break  # before the loader draws another batch, so the sampler's count is what was trained on
    return losses


class _TaskWrapper(torch.nn.Module):
    """A task's training module: the model sits at ``model.`` in its state dict."""

    def __init__(self):
        super().__init__()
        self.model = _model()

    def forward(self, x):
        return self.model(x)


def _saved(state):
    """``state`` as a checkpoint file gives it back (torch.save, then load with ``weights_only=True``)."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _fsdp_state_round_trip(info):
    """train/state.py under FSDP2: a wrapped model trained two steps (Adam: moments in the optimizer state) is
    captured (full tensors on rank 0, the wrapper's ``model.`` prefix removed), restored into a fresh sharded
    wrapper, and captured again; both captures must be equal, and one more step from each must agree."""
    from visionattn.train.state import capture_weights, restore_weights

    x, y = _data().tensors
    x, y = x[info.rank * PER_RANK:(info.rank + 1) * PER_RANK], y[info.rank * PER_RANK:(info.rank + 1) * PER_RANK]

    def step(module, opt):
        opt.zero_grad()
        F.cross_entropy(module(x), y).backward()
        opt.step()

    def build():
        wrapper = _TaskWrapper()
        inner = wrapper.model
        wrapper = wrap_model(wrapper, info, fsdp=True)
        return wrapper, inner, torch.optim.Adam(wrapper.parameters(), lr=1e-3)

    trained, inner, opt = build()
    for _ in range(2):
        step(trained, opt)
    weights, optim = _saved(capture_weights(trained, inner, opt, fsdp=True))  # the captured state aliases live
    full_weights, full_optim = broadcast_object((weights, optim), info)  # tensors; every rank reads the file
    moments = _saved(optim["state"]) if info.is_main else {}  # the optimizer may adopt the loaded tensors
    fresh, fresh_inner, fresh_opt = build()
    restore_weights(fresh, fresh_inner, fresh_opt, full_weights, full_optim, fsdp=True)
    again, again_optim = _saved(capture_weights(fresh, fresh_inner, fresh_opt, fsdp=True))
    step(trained, opt)
    step(fresh, fresh_opt)
    after, _ = capture_weights(trained, inner, opt, fsdp=True)
    after_fresh, _ = capture_weights(fresh, fresh_inner, fresh_opt, fsdp=True)
    return {"state_weights": weights, "state_again": again, "state_optim": moments,
            "state_optim_again": again_optim["state"] if info.is_main else {},
            "state_after": after, "state_after_fresh": after_fresh}


def _worker(rank, world, port, out_dir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    info = init_distributed(backend="gloo", device="cpu", timeout_s=120)
    try:
        assert info.world_size == world and info.rank == rank and torch.distributed.is_initialized()
        results = {
            "any": all_reduce_any(rank == 1, info),
            "none": all_reduce_any(False, info),
            "mean": all_reduce_mean(float(rank), info),
            "sum": all_reduce_sum(torch.tensor([rank, 1]), info).tolist(),
            "bcast": broadcast_object(f"from {rank}", info),
        }
        data = _data()
        for name, fsdp in (("ddp", False), ("fsdp", True)):
            sampler = make_sampler(data, info, shuffle=True, seed=0, batch_size=PER_RANK)
            loader = DataLoader(data, batch_size=PER_RANK, sampler=sampler)
            model = wrap_model(_model(), info, fsdp=fsdp)
            local = _train(model, loader, STEPS)
            results[f"{name}_loss"] = [all_reduce_mean(v, info) for v in local]  # = the global batch's mean loss
            results[f"{name}_sampler"] = sampler.state_dict()
            results[f"{name}_state"] = model_state_dict(model)  # collective under FSDP2; full weights on rank 0
            results[f"{name}_wrapper"] = type(model).__name__
            results[f"{name}_units"] = sum(type(m).__name__.startswith("FSDP") for m in model.modules())
        # FSDP2 resume path: rank 0's full weights loaded into a freshly sharded model come back unchanged
        fresh = wrap_model(_model(), info, fsdp=True)
        load_model_state_dict(fresh, results["fsdp_state"] if info.is_main else {})
        results["fsdp_reloaded"] = model_state_dict(fresh)
        results.update(_fsdp_state_round_trip(info))
        try:
            wrap_model(torch.nn.Linear(2, 2), dataclasses.replace(info, device=torch.device("meta")), fsdp=True)
        except FSDPUnsupportedError as e:
            results["fsdp_error"] = str(e)
        barrier(info)
        if info.is_main:
            torch.save(results, Path(out_dir) / "rank0.pt")
    finally:
        cleanup(info)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_worker, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True)
    return torch.load(out / "rank0.pt", weights_only=True)


@pytest.fixture(scope="module")
def single_process_reference():
    data = _data()
    sampler = make_sampler(data, _info(0, 1), shuffle=True, seed=0, batch_size=PER_RANK * WORLD)
    model = _model()
    losses = _train(model, DataLoader(data, batch_size=PER_RANK * WORLD, sampler=sampler), STEPS)
    return losses, model.state_dict()


def test_collectives_on_two_ranks(two_rank_results):
    r = two_rank_results
    assert r["any"] is True and r["none"] is False and r["mean"] == 0.5
    assert r["sum"] == [1, 2] and r["bcast"] == "from 0"


def test_fsdp_full_state_round_trip_and_unsupported_device_error(two_rank_results):
    r = two_rank_results
    assert set(r["fsdp_reloaded"]) == set(r["fsdp_state"])
    for key, value in r["fsdp_state"].items():
        assert torch.equal(r["fsdp_reloaded"][key], value), key
    assert "FSDP2 here supports cpu with gloo and cuda with nccl, got device meta" in r["fsdp_error"]


@pytest.mark.parametrize("name", ["ddp", "fsdp"])
def test_two_ranks_train_like_one_process_with_the_global_batch(two_rank_results, single_process_reference, name):
    ref_losses, ref_state = single_process_reference
    r = two_rank_results
    assert r[f"{name}_wrapper"] == ("DistributedDataParallel" if name == "ddp" else "FSDPVisionTransformer")
    assert r[f"{name}_units"] == (0 if name == "ddp" else 3)  # FSDP2: each of the 2 blocks, then the root
    assert r[f"{name}_sampler"] == {"epoch": 0, "consumed": STEPS * PER_RANK, "world_size": WORLD}
    torch.testing.assert_close(torch.tensor(r[f"{name}_loss"]), torch.tensor(ref_losses), atol=1e-6, rtol=0)
    state = r[f"{name}_state"]
    assert set(state) == set(ref_state)
    for key, ref in ref_state.items():
        torch.testing.assert_close(state[key], ref, atol=1e-6, rtol=0, msg=lambda m, k=key: f"{k}: {m}")
    moved = max((ref - _model().state_dict()[k]).abs().max().item() for k, ref in ref_state.items())
    assert moved > 1e-3  # the steps did change the weights: the comparison is not vacuous


# ---------------------------------------------------------------------------------------- the real CLI under torchrun

TINY_CONFIG = """\
model:
  name: vit_tiny_test
data:
  name: digits
  img_size: 32
schedule:
  epochs: 1
  batch_size: 16
run:
  log_every: 1
"""


def _train_help() -> str:
    from visionattn.cli import build_parser

    parser = build_parser()
    sub = next((a for a in parser._actions if isinstance(a.choices, dict)), None)
    if sub is None or "train" not in sub.choices:
        pytest.skip("the `visionattn train` command does not exist yet (visionattn/cli.py has no 'train' subcommand)")
    return sub.choices["train"].format_help()


@pytest.mark.slow
def test_torchrun_train_then_resume(tmp_path):
    """`torchrun --nproc-per-node 2 -m visionattn train` for a few steps, then `--resume` under torchrun.

    Uses the flags --config, --out, --max-steps, --resume; adapt here if the train command names them otherwise."""
    help_text = _train_help()
    missing = [f for f in ("--config", "--out", "--max-steps", "--resume") if f not in help_text]
    if missing:
        pytest.skip(f"`visionattn train` lacks the flags this test drives: {missing}")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(textwrap.dedent(TINY_CONFIG))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    # two processes need two GPUs; with fewer visible, the job runs on gloo / CPU
    device = [] if torch.cuda.device_count() >= 2 else ["run.device=cpu"]

    def launch(*extra):
        cmd = [torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "visionattn", "train",
               "--config", str(cfg), "--out", str(run), *extra, *device]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)

    first = launch("--max-steps", "4")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (run / "metrics.csv").exists() or (run / "steps.csv").exists()
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1  # rank 0 only
    second = launch("--max-steps", "8", "--resume")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    steps = [int(line.split(",")[0]) for line in (run / "steps.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and max(steps) >= 7  # continued, each step once


def test_fsdp_units_are_what_the_model_declares_also_inside_a_wrapper():
    from visionattn.models import create_model
    from visionattn.train.distributed import declared_units

    model = create_model("vit_tiny_test", num_classes=3)
    assert declared_units(model) == list(model.stages) and len(model.stages) == 2
    wrapper = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(model))  # a task model around it
    assert declared_units(wrapper) == list(model.stages)
    swin = create_model("swin_test")
    assert declared_units(swin) == [b for stage in swin.stages for b in stage.blocks]
    assert declared_units(torch.nn.Linear(2, 2)) == []  # nothing declared: only the root is sharded


def test_fsdp_training_state_captured_restored_and_continued(two_rank_results):
    """train/state.py's FSDP2 path: weights keyed as the bare model's (no ``model.`` prefix of the task wrapper),
    trained (not the init), restored exactly with the Adam moments, and a step after the restore equals a step
    of the run that never stopped."""
    r = two_rank_results
    weights = r["state_weights"]
    assert set(weights) == set(_model().state_dict())  # the bare model's keys
    init = _model().state_dict()
    assert any(not torch.equal(weights[k], init[k]) for k in weights)  # two steps were trained
    assert r["state_optim"] and set(r["state_optim_again"]) == set(r["state_optim"])
    for key, moments in r["state_optim"].items():
        assert float(moments["step"]) == 2 and float(r["state_optim_again"][key]["step"]) == 2
        for name in ("exp_avg", "exp_avg_sq"):
            assert moments[name].abs().sum() > 0
            assert torch.equal(r["state_optim_again"][key][name], moments[name]), (key, name)
    for k in weights:
        assert torch.equal(r["state_again"][k], weights[k]), ("restored", k)
        assert torch.equal(r["state_after_fresh"][k], r["state_after"][k]), ("continued", k)
