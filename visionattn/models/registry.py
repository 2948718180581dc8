"""The model registry: named presets (small specs) → models. ``create_model`` and ``list_models``.

A preset is data: a name, a builder (the model family's class), the spec dataclass it is built from, the
taxonomy and the default input size. Overrides replace fields of the spec (``dataclasses.replace``), and
``num_classes`` / ``img_size`` are passed to the builder. Family modules register their presets on import.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .taxonomy import Taxonomy


@dataclass(frozen=True)
class Preset:
    name: str
    builder: Callable[..., nn.Module]  # builder(spec, num_classes=, img_size=) -> Backbone
    spec: object  # a frozen dataclass; fields are the preset's knobs
    taxonomy: Taxonomy
    img_size: int = 224
    tiny: bool = False  # a test-size variant that runs in milliseconds
    paper: str = ""  # what it reproduces, for `visionattn models`
    num_classes: int = 1000  # default head width (0 = no head: pooled features, e.g. DINO backbones)


_REGISTRY: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    if preset.name in _REGISTRY:
        raise ValueError(f"model {preset.name!r} is registered twice")
    _REGISTRY[preset.name] = preset
    return preset


def _load_families() -> None:
    """Import the family modules, which register their presets."""
    from . import families  # noqa: F401


def get_preset(name: str) -> Preset:
    _load_families()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise ValueError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def list_models(pattern: str = "*", include_tiny: bool = True) -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``'swin*'``), sorted."""
    _load_families()
    return sorted(n for n, p in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (include_tiny or not p.tiny))


def create_model(
    name: str,
    num_classes: int | None = None,
    img_size: int | None = None,
    pretrained_path: str | None = None,
    **overrides,
) -> nn.Module:
    """Build a registered model (``num_classes`` defaults to the preset's: 1000, or 0 for DINO backbones).
    ``overrides`` replace fields of its spec (e.g. ``depth=6``, ``drop_path=0.1``);
    ``pretrained_path`` loads a checkpoint (ours, or a timm/DINO state dict) with ``weights_only`` loading."""
    preset = get_preset(name)
    fields = {f.name for f in dataclasses.fields(preset.spec)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        spec_name = type(preset.spec).__name__
        raise ValueError(f"{name}: unknown spec fields {unknown}; the spec {spec_name} has {sorted(fields)}")
    spec = dataclasses.replace(preset.spec, **overrides)
    num_classes = preset.num_classes if num_classes is None else num_classes
    model = preset.builder(spec, num_classes=num_classes, img_size=img_size or preset.img_size)
    model.preset = preset
    if pretrained_path is not None:
        from .checkpoint import load_pretrained

        load_pretrained(model, pretrained_path)
    return model
