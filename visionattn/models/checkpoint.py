"""Checkpoint import: a local file (ours, timm's, DINO's) → a model's weights. No network anywhere.

``load_pretrained(model, path)``:

1. reads ``.safetensors`` with :func:`safetensors.torch.load_file`, or ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``
   with ``torch.load(weights_only=True)`` (only tensors and plain containers are unpickled; ``argparse.Namespace``
   is allowed too, as DINO's training checkpoints store their ``args`` in one);
2. unwraps common containers until a flat ``{name: Tensor}`` remains: ``"model"``, ``"state_dict"``, then
   ``"teacher"`` before ``"student"`` (DINO training checkpoints, whose teacher is the evaluated network);
3. strips ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes; if some keys start with ``backbone.``,
   keeps only those, without the prefix (DINO's MultiCropWrapper: ``backbone.*`` + the DINO head ``head.*``);
4. if the keys are not the model's own, calls ``model.convert_state_dict(state_dict)`` when the family defines
   it (ViT: timm / DINO names → ours, position embedding resized to the model's grid);
5. loads with ``strict=True``; any missing key, unexpected key or shape mismatch raises a ``ValueError``
   naming the file, the architecture and each offending key (expected vs got shapes).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIXES = (".safetensors",)
CONTAINER_KEYS = ("model", "state_dict", "teacher", "student")
STRIP_PREFIXES = ("module.", "_orig_mod.")
_MAX_LISTED = 25  # keys listed per category in an error message


def _architecture(model: nn.Module) -> str:
    preset = getattr(model, "preset", None)
    name = type(model).__name__
    return f"{preset.name} ({name})" if preset is not None else name


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The flat ``{name: Tensor}`` held by a checkpoint file, containers unwrapped and prefixes stripped
    (steps 1–3 above). Raises ``FileNotFoundError`` / ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix not in TORCH_SUFFIXES + SAFETENSORS_SUFFIXES:
        raise ValueError(
            f"checkpoint {str(path)!r}: unsupported suffix {suffix!r}; expected one of "
            f"{TORCH_SUFFIXES + SAFETENSORS_SUFFIXES}"
        )
    try:
        if suffix in SAFETENSORS_SUFFIXES:
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt, or holding arbitrary pickled objects
        raise ValueError(
            f"could not read checkpoint {str(path)!r} ({path.stat().st_size} bytes) as {suffix}: "
            f"{type(err).__name__}: {err}"
        ) from err
    return _strip_prefixes(_unwrap(obj, path))


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _unwrap(obj, path: Path) -> dict[str, Tensor]:
    seen = []
    for _ in range(4):  # containers nest at most a few levels ({"model": {"state_dict": ...}})
        if _is_state_dict(obj):
            return dict(obj)
        if not isinstance(obj, Mapping):
            break
        seen.append(sorted(str(k) for k in obj)[:20])
        key = next((k for k in CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if key is None:
            break
        obj = obj[key]
    what = f"mappings with keys {seen}" if seen else f"a {type(obj).__name__}"
    raise ValueError(
        f"checkpoint {str(path)!r} holds no state dict of tensors: found {what}; expected a flat "
        f"{{name: Tensor}} mapping, possibly inside one of {CONTAINER_KEYS}"
    )


def _strip_prefixes(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in STRIP_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    if any(k.startswith("backbone.") for k in out):
        out = {k[len("backbone."):]: v for k, v in out.items() if k.startswith("backbone.")}
    return out


def _listing(title: str, items: list[str]) -> str:
    lines = [f"  {title} ({len(items)}):"] + [f"    {item}" for item in items[:_MAX_LISTED]]
    if len(items) > _MAX_LISTED:
        lines.append(f"    ... and {len(items) - _MAX_LISTED} more")
    return "\n".join(lines)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], source: str = "state dict") -> None:
    """Raise ``ValueError`` listing missing keys (with the expected shape), unexpected keys (with their shape)
    and shape mismatches (expected vs got) between ``model.state_dict()`` and ``state_dict``; None if they agree."""
    own = model.state_dict()
    missing = [f"{k} {tuple(v.shape)}" for k, v in own.items() if k not in state_dict]
    unexpected = [f"{k} {tuple(v.shape)}" for k, v in state_dict.items() if k not in own]
    shapes = [
        f"{k}: expected {tuple(own[k].shape)}, got {tuple(state_dict[k].shape)}"
        for k in own
        if k in state_dict and own[k].shape != state_dict[k].shape
    ]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{source} does not fit {_architecture(model)}:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            parts.append(_listing(title, items))
    raise ValueError("\n".join(parts))


def load_pretrained(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (in place, strict) and return the model.

    ``model.convert_state_dict(state_dict) -> state_dict`` (optional, per family) maps foreign names (timm,
    DINO) onto the model's; it is called only when the file's keys are not exactly the model's own.
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file) for an unreadable
    one or one whose keys / shapes do not fit the architecture.
    """
    source = f"checkpoint {str(path)!r}"
    state_dict = read_state_dict(path)
    convert = getattr(model, "convert_state_dict", None)
    if set(state_dict) != set(model.state_dict()) and callable(convert):
        try:
            state_dict = convert(state_dict)
        except ValueError as err:
            raise ValueError(f"{source} cannot be converted for {_architecture(model)}: {err}") from err
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)
    return model


__all__ = ["check_state_dict", "load_pretrained", "read_state_dict"]
