"""Training checkpoints: atomic, complete, loadable with ``torch.load(weights_only=True)``.

A checkpoint is one ``.pt`` file holding only tensors and primitives::

    format, version          "visionattn-train", 2 (a file without them is not ours: clear error; version 1, from
                             before the tasks layer, is read as a classification checkpoint)
    task, task_state         the task's name (``eval``/``predict``/``viz`` follow it) and its own state
    meta                     the data facts the model was built from (classes, image size, normalisation)
    model, ema               state dicts (ema None without EMA)
    optimizer, scheduler     state dicts; scaler: GradScaler state or None
    rng                      one entry per rank: python / numpy / torch CPU / CUDA states as tensors and lists
    sampler                  the training sampler's position: {"epoch", "consumed", "world_size"}
    epoch, step, batch       epoch index, optimizer updates done, batches of that epoch done
    best_metric, metrics     best primary validation metric so far, the latest evaluation's metrics
    eval_weights             "model" or "ema": which weights evaluated better (what eval/predict use)
    nonfinite                {"total", "consecutive"} skipped updates
    config                   the resolved config as YAML text; classes: the class names (meta["classes"], or [])

Writing (:func:`atomic_save`): ``torch.save`` into a temporary file in the same directory, flush, fsync, then
``os.replace`` onto the final name and fsync the directory: a crash (even ``kill -9``) at any point leaves either the
old file or the new one, never a partial file under the final name. :class:`CheckpointManager` names step
checkpoints ``ckpt-<step>.pt``, keeps the last ``keep_last`` and a ``best.pt``; writing step ``s`` removes step files
above ``s`` (after a resume from an older checkpoint they are an abandoned timeline).

Reading (:func:`load_checkpoint`): a missing, truncated, corrupt or foreign file raises :class:`CheckpointError`
(a ``ValueError``) naming the file. :func:`resume_candidates` / :func:`load_latest` implement ``--resume auto``:
the newest readable checkpoint in the run directory, falling back to older ones with a message.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "CheckpointManager",
    "atomic_save",
    "atomic_write_text",
    "load_checkpoint",
    "load_latest",
    "resume_candidates",
    "capture_rng",
    "restore_rng",
]

FORMAT = "visionattn-train"
VERSION = 2
READABLE_VERSIONS = (1, 2)
REQUIRED_KEYS = ("model", "optimizer", "rng", "sampler", "epoch", "step", "config", "task", "meta")
_STEP_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_TMP_MARK = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (missing, truncated, corrupt, foreign); ``path`` names it."""

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = str(path)
        super().__init__(message)


# -- RNG states as tensors and primitives -------------------------------------------------------------------
def capture_rng() -> dict:
    """Python, numpy, torch CPU and (if present) CUDA RNG states, as tensors / lists / numbers."""
    version, py_state, gauss = random.getstate()
    np_key, np_state, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    out = {
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": None if gauss is None else float(gauss)},
        "numpy": {"key": str(np_key), "state": torch.from_numpy(np_state.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return out


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng` (CUDA states are restored when this machine has as many devices)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npst = state["numpy"]
    np.random.set_state((npst["key"], npst["state"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


# -- writing ------------------------------------------------------------------------------------------------
def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms / file systems cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (temp file in the same directory, fsync, ``os.replace``)."""
    path = Path(path)
    _atomic_write(path, lambda f: torch.save(obj, f))
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (same protocol as :func:`atomic_save`)."""
    path = Path(path)
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a file atomically (same protocol as :func:`atomic_save`)."""
    dst = Path(dst)

    def write(f):
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f)

    _atomic_write(dst, write)
    return dst


# -- reading ------------------------------------------------------------------------------------------------
def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint with ``weights_only=True``; :class:`CheckpointError` naming the file if it is
    missing, truncated / corrupt, or not a visionattn training checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, f"checkpoint {str(path)!r} does not exist or is not a file")
    size = path.stat().st_size
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, garbage, or pickled objects that weights_only refuses
        text = str(err)
        if "Weights only load failed" in text:
            detail = next((line.strip() for line in text.splitlines() if "Unsupported global" in line), "")
            raise CheckpointError(
                path, f"checkpoint {str(path)!r} holds pickled objects that weights_only loading refuses, so it was "
                      f"not written by visionattn train ({detail or 'unsupported global'})"
            ) from err
        raise CheckpointError(
            path, f"checkpoint {str(path)!r} ({size} bytes) cannot be read: it is truncated, corrupt or not a "
                  f"torch file ({type(err).__name__}: {text.splitlines()[0] if text else ''})"
        ) from err
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        keys = sorted(str(k) for k in obj)[:12] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            path, f"checkpoint {str(path)!r} is not a visionattn training checkpoint (expected format {FORMAT!r}, "
                  f"found {keys}); to start from foreign weights use model.pretrained_path instead of --resume"
        )
    if obj.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(path, f"checkpoint {str(path)!r}: format version {obj.get('version')!r}, this "
                                    f"visionattn reads versions {list(READABLE_VERSIONS)}")
    if obj["version"] == 1:
        obj = _upgrade_v1(obj)
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise CheckpointError(path, f"checkpoint {str(path)!r} is incomplete: missing {missing}")
    return obj


def _upgrade_v1(obj: dict) -> dict:
    """A version-1 checkpoint (classification only, before the tasks layer) in the version-2 layout: its config's
    ``recipe`` classification keys move to ``task``, and ``meta`` is rebuilt from its classes and data config."""
    import yaml

    from .config import migrate_legacy

    out = dict(obj)
    values = yaml.safe_load(obj.get("config") or "") or {}
    values = migrate_legacy(values) if isinstance(values, dict) else values
    out["config"] = yaml.safe_dump(values, sort_keys=False) if isinstance(values, dict) else obj.get("config")
    data = values.get("data", {}) if isinstance(values, dict) else {}
    out["task"] = "classification"
    out["task_state"] = {}
    out["meta"] = {"classes": list(obj.get("classes") or []), "img_size": int(data.get("img_size", 224)),
                   "in_chans": 3, "mean": list(data.get("mean", (0.5, 0.5, 0.5))),
                   "std": list(data.get("std", (0.5, 0.5, 0.5)))}
    out["version"] = VERSION
    return out


def resume_candidates(run_dir: str | os.PathLike) -> list[Path]:
    """Step checkpoints in ``run_dir``, newest (highest step) first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        m = _STEP_NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found, reverse=True)]


def load_latest(run_dir: str | os.PathLike, log: Callable[[str], None] = print) -> tuple[Path, dict] | None:
    """The newest readable checkpoint of ``run_dir`` as ``(path, state)``; unreadable newer ones are skipped with
    a message through ``log``. None if the directory has no checkpoint; :class:`CheckpointError` if it has some but
    none is readable."""
    candidates = resume_candidates(run_dir)
    failures = []
    for path in candidates:
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            failures.append(str(err))
            log(f"warning: {err}; falling back to the previous checkpoint")
            continue
        if failures:
            log(f"resuming from {path} (the previous good checkpoint)")
        return path, state
    if failures:
        raise CheckpointError(run_dir, f"no readable checkpoint in {str(run_dir)!r}:\n  " + "\n  ".join(failures))
    return None


class CheckpointManager:
    """Step checkpoints ``ckpt-<step:08d>.pt`` in ``directory`` (the last ``keep_last`` kept) and ``best.pt``.

    On creation it removes temporary files that an interrupted writer (``kill -9``) left behind."""

    def __init__(self, directory: str | os.PathLike, keep_last: int = 2):
        if keep_last < 1:
            raise ValueError(f"keep_last: expected >= 1, got {keep_last}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f".*{_TMP_MARK}*"):
            stale.unlink(missing_ok=True)

    def path_for(self, step: int) -> Path:
        return self.directory / f"ckpt-{step:08d}.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def save(self, state: dict, step: int, is_best: bool = False) -> Path:
        """Write ``state`` as the checkpoint of ``step`` (and as ``best.pt`` if ``is_best``), then prune."""
        state = {"format": FORMAT, "version": VERSION, **state}
        path = atomic_save(state, self.path_for(step))
        if is_best:
            atomic_copy(path, self.best_path)
        # prune: files of a higher step belong to an abandoned timeline (a resume from an older checkpoint) or are
        # junk; of the rest, keep the newest keep_last
        ours = []
        for candidate in resume_candidates(self.directory):
            if int(_STEP_NAME.match(candidate.name).group(1)) > step:
                candidate.unlink(missing_ok=True)
            else:
                ours.append(candidate)
        for old in ours[self.keep_last:]:
            old.unlink(missing_ok=True)
        return path
