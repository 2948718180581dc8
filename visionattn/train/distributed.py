"""Distributed training under ``torchrun``: process group set-up, model wrapping (DDP or FSDP2) and collectives.

One code path for every world size. Without torchrun's environment (or with ``WORLD_SIZE=1``) no process group is
created, :func:`wrap_model` returns the model itself and every collective returns its input, so the training loop
never branches on "am I distributed?". Rank 0 (``info.is_main``) is the only rank that logs and writes files.

Launch (see ``docs/training.md``, "Multi-node training")::

    torchrun --nproc-per-node 2 -m visionattn train ...                       # one node, 2 processes
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 \\
             --rdzv-backend c10d --rdzv-endpoint host0:29400 -m visionattn train ...

The sampler that shards the data (resumable mid-epoch) is :func:`visionattn.train.sampler.make_sampler`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from ..comm import DistInfo, all_reduce_any, all_reduce_mean, all_reduce_sum, barrier, broadcast_object
from .sampler import ResumableDistributedSampler, make_sampler

__all__ = [
    "DistInfo",
    "FSDPUnsupportedError",
    "all_reduce_any",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "cleanup",
    "declared_units",
    "init_distributed",
    "load_model_state_dict",
    "make_sampler",
    "model_state_dict",
    "unwrap_model",
    "wrap_model",
    "ResumableDistributedSampler",
]

_BACKENDS = ("gloo", "nccl")


def _env_int(name: str, default: int | None = None) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an integer, got {raw!r}") from None


def _resolve_device(backend: str | None, local_rank: int, device: str | torch.device | None) -> torch.device:
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", local_rank)
        return dev
    if backend == "gloo":
        return torch.device("cpu")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ValueError(f"LOCAL_RANK={local_rank} but this node has {count} CUDA device(s): expected "
                             f"--nproc-per-node <= {count}")
        return torch.device("cuda", local_rank)
    if backend == "nccl":
        raise ValueError("backend 'nccl' needs CUDA devices, got none (torch.cuda.is_available() is False); "
                         "use backend 'gloo' on CPU")
    return torch.device("cpu")


def init_distributed(backend: str | None = None, device: str | torch.device | None = None,
                     timeout_s: float | None = None) -> DistInfo:
    """Join the job that ``torchrun`` started, reading ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and
    ``MASTER_ADDR``/``MASTER_PORT``, which ``init_process_group`` reads itself).

    backend: ``"gloo"`` or ``"nccl"``; ``None`` picks nccl when CUDA is available, gloo otherwise.
    device: overrides the device (e.g. ``"cpu"`` on a GPU machine; then the default backend is gloo). By default
        ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.
    timeout_s: how long a collective may wait for the other ranks before failing (torch's default otherwise).

    Without ``WORLD_SIZE`` in the environment (a plain ``python -m visionattn``) or with ``WORLD_SIZE=1`` no process
    group is created and a world of one is returned. If a process group already exists (e.g. a test that set it up)
    it is reused.
    """
    if backend is not None and backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS} or None, got {backend!r}")
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank if world_size > 1 else 0)
    if dist.is_available() and dist.is_initialized():
        world_size, rank = dist.get_world_size(), dist.get_rank()
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"expected 0 <= RANK < WORLD_SIZE and WORLD_SIZE >= 1, got RANK={rank}, "
                         f"WORLD_SIZE={world_size}")
    if device is not None and backend is None and torch.device(device).type == "cpu":
        backend = "gloo"
    dev = _resolve_device(backend, local_rank, device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
        chosen = backend or ("nccl" if dev.type == "cuda" else "gloo")
        if chosen == "nccl" and dev.type != "cuda":
            raise ValueError(f"backend 'nccl' runs on CUDA devices, got device {dev}")
        kwargs = {"device_id": dev} if chosen == "nccl" else {}
        if timeout_s is not None:
            kwargs["timeout"] = timedelta(seconds=timeout_s)
        dist.init_process_group(backend=chosen, rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, is_main=rank == 0)


class FSDPUnsupportedError(RuntimeError):
    """FSDP2 (``fully_shard``) is not available for this torch build / device / backend."""


def declared_units(model: nn.Module) -> list[nn.Module]:
    """The FSDP2 wrap units ``model`` declares: its own ``fsdp_units()`` (every backbone has it: its repeated
    blocks), or else those declared by the modules inside it, outermost first (a task model holding a backbone and a
    head; a wrapper around a model)."""
    own = getattr(model, "fsdp_units", None)
    if callable(own):
        return list(own())
    units: list[nn.Module] = []
    for child in model.children():
        units += declared_units(child)
    return units


def _fully_shard_api():
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
    except ImportError as e:  # torch < 2.6 had it only under torch.distributed._composable
        raise FSDPUnsupportedError(f"FSDP2 (torch.distributed.fsdp.fully_shard) is not available in torch "
                                   f"{torch.__version__}: {e}; run without fsdp (DDP)") from e
    return fully_shard, init_device_mesh


def wrap_model(model: nn.Module, info: DistInfo, fsdp: bool = False,
               units: Iterable[nn.Module] | None = None) -> nn.Module:
    """Move ``model`` to ``info.device`` and wrap it for data-parallel training.

    - world size 1: the model itself (moved), no wrapper.
    - ``fsdp=False``: :class:`~torch.nn.parallel.DistributedDataParallel` (``find_unused_parameters=False``; every
      parameter must receive a gradient each step). The module inside is ``unwrap_model(wrapped)``.
    - ``fsdp=True``: FSDP2, ``fully_shard`` applied to each of ``units`` (by default the units the model declares,
      :func:`declared_units`) and then to the root. Parameters become sharded DTensors; build the optimizer
      *after* wrapping, and save/load weights with :func:`model_state_dict` / :func:`load_model_state_dict`.

    Build the optimizer from the returned module's parameters after this call.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    model = model.to(info.device)
    if not info.distributed:
        return model
    if not dist.is_initialized():
        raise RuntimeError(f"world size {info.world_size} but no process group: call init_distributed() first")
    if fsdp:
        return _wrap_fsdp(model, info, list(units) if units is not None else declared_units(model))
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False)


def _wrap_fsdp(model: nn.Module, info: DistInfo, units: list[nn.Module]) -> nn.Module:
    fully_shard, init_device_mesh = _fully_shard_api()
    backend = dist.get_backend()
    needed = {"cpu": "gloo", "cuda": "nccl"}.get(info.device.type)
    if needed is None or needed not in str(backend):
        raise FSDPUnsupportedError(f"FSDP2 here supports cpu with gloo and cuda with nccl, got device "
                                   f"{info.device} with backend {backend!r}")
    try:
        mesh = init_device_mesh(info.device.type, (info.world_size,))
    except Exception as e:  # noqa: BLE001 - any failure here means this setup cannot shard
        raise FSDPUnsupportedError(f"FSDP2: cannot build a {info.device.type} device mesh of {info.world_size} "
                                   f"ranks with backend {backend!r}: {e}") from e
    units = [m for m in units if m is not model]
    # shard only the outermost units (a unit nested in another is covered by its parent)
    outer = [m for m in units if not any(m is not p and _contains(p, m) for p in units)]
    for block in outer:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _contains(parent: nn.Module, child: nn.Module) -> bool:
    return any(m is child for m in parent.modules())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (the module itself for FSDP2, which wraps in place, or no wrapper)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def _is_fsdp(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return isinstance(model, FSDPModule)


def model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full, unsharded weights on CPU with the plain module's keys (no ``module.`` prefix), whatever the wrapper.

    Under FSDP2 this is a collective: call it on every rank; only rank 0 receives the tensors (other ranks get an
    empty dict), which is all rank-0 checkpointing needs.
    """
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}


def load_model_state_dict(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True):
    """Load full weights (as from :func:`model_state_dict`) into a plain, DDP or FSDP2 model.

    Under FSDP2 this is a collective: every rank calls it; rank 0's ``state`` is broadcast and sharded (other ranks
    may pass an empty dict).
    """
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=strict)
        return set_model_state_dict(model, dict(state), options=opts)  # it replaces the dict's values in place
    return unwrap_model(model).load_state_dict(state, strict=strict)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group, if one exists (safe to call twice, or in a world of one)."""
    if info.distributed and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
