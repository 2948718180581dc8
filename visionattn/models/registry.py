"""The model registry: named presets (small specs) → models. ``create_model`` and ``list_models``.

A preset is data: a name, a builder (the model family's class), the spec dataclass it is built from, the
taxonomy, the default input size and, when timm publishes weights for the same architecture, the timm twin's
name. Overrides replace fields of the spec (``dataclasses.replace``), and ``num_classes`` / ``img_size`` are
passed to the builder.

The registry imports no family: each family module registers its presets when imported, and
``visionattn.models`` (the package) imports the families after this module, so any ``visionattn.models...``
import sees every preset.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .inputs import INPUT_KINDS
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
    timm_twin: str = ""  # timm model (with tag) of the same architecture whose published weights
    # create_model(name, pretrained=True) fetches and converts ("" = none)

    @property
    def input_kind(self) -> str:
        """What the model takes: its builder's ``input_kind`` (``"image"``, ``"video"`` or ``"tokens"``)."""
        return getattr(self.builder, "input_kind", "image")


_REGISTRY: dict[str, Preset] = {}
_ALIASES: dict[str, str] = {}  # deprecated name -> current name


def register(preset: Preset) -> Preset:
    if preset.name in _REGISTRY or preset.name in _ALIASES:
        raise ValueError(f"model {preset.name!r} is registered twice")
    _REGISTRY[preset.name] = preset
    return preset


def register_alias(old: str, new: str) -> None:
    """Keep ``old`` working as a deprecated name of the registered preset ``new`` (a DeprecationWarning on use;
    not listed by :func:`list_models`)."""
    if new not in _REGISTRY:
        raise ValueError(f"alias {old!r} → {new!r}: {new!r} is not registered")
    if old in _REGISTRY or old in _ALIASES:
        raise ValueError(f"model {old!r} is registered twice")
    _ALIASES[old] = new


def get_preset(name: str) -> Preset:
    """The preset registered as ``name`` (a deprecated alias warns and gives its current preset); an unknown name
    is a ``ValueError`` listing the close ones."""
    return _lookup(name, stacklevel=3)


def _lookup(name: str, stacklevel: int) -> Preset:
    if name in _ALIASES:
        new = _ALIASES[name]
        warnings.warn(f"model name {name!r} is deprecated; use {new!r} (the same model)", DeprecationWarning,
                      stacklevel=stacklevel)
        return _REGISTRY[new]
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise ValueError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


LISTED_KINDS = ("image", "video")
"""The input kinds :func:`list_models` lists by default: those :func:`visionattn.models.inputs.example_input` can
draw, so every generic consumer (the preset test suites, ``visionattn models``, FLOP counts) can feed them. Token
models (CLIP's text towers) are listed on request: ``list_models(input_kind="tokens")``."""


def list_models(pattern: str = "*", include_tiny: bool = True,
                input_kind: str | tuple[str, ...] | None = LISTED_KINDS) -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``'swin*'``), sorted (deprecated aliases excluded).
    ``input_kind``: only presets that take this input, a kind or a tuple of kinds (default :data:`LISTED_KINDS`:
    images and videos; ``"tokens"`` lists the text towers); None lists every preset."""
    kinds = (input_kind,) if isinstance(input_kind, str) else input_kind
    if kinds is not None and any(k not in INPUT_KINDS for k in kinds):
        raise ValueError(f"list_models: input_kind expected one of {INPUT_KINDS}, a tuple of them or None, got "
                         f"{input_kind!r}")
    return sorted(n for n, p in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (include_tiny or not p.tiny)
                  and (kinds is None or p.input_kind in kinds))


def create_model(
    name: str,
    num_classes: int | None = None,
    img_size: int | None = None,
    pretrained_path: str | None = None,
    pretrained: bool = False,
    **overrides,
) -> nn.Module:
    """Build a registered model (``num_classes`` defaults to the preset's: 1000, or 0 for DINO backbones).

    ``overrides`` replace fields of its spec (e.g. ``depth=6``, ``drop_path=0.1``).
    ``pretrained_path`` loads a local checkpoint (ours, or a timm/DINO state dict) with ``weights_only`` loading.
    ``pretrained=True`` fetches the preset's timm twin's published weights through timm (Hugging Face hub, timm's
    cache) and converts them; the classifier is kept only when its class count matches. Without a twin it is a
    ``ValueError``; when the hub cannot be reached, a :class:`~visionattn.models.pretrained.PretrainedUnavailable`
    that names ``pretrained_path`` as the offline route."""
    preset = _lookup(name, stacklevel=3)  # a deprecation warning points at the caller of create_model
    fields = {f.name for f in dataclasses.fields(preset.spec)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        spec_name = type(preset.spec).__name__
        raise ValueError(f"{name}: unknown spec fields {unknown}; the spec {spec_name} has {sorted(fields)}")
    if pretrained and pretrained_path is not None:
        raise ValueError(f"{name}: pass pretrained=True (timm's published weights) or pretrained_path (a local "
                         f"file), not both; got pretrained_path={pretrained_path!r}")
    if pretrained and not preset.timm_twin:
        raise ValueError(f"{name}: pretrained=True needs a timm twin with published weights, and {name!r} has none; "
                         f"load a checkpoint with pretrained_path=FILE instead")
    spec = dataclasses.replace(preset.spec, **overrides)
    num_classes = preset.num_classes if num_classes is None else num_classes
    model = preset.builder(spec, num_classes=num_classes, img_size=img_size or preset.img_size)
    model.preset = preset
    if pretrained_path is not None:
        from .checkpoint import load_pretrained

        load_pretrained(model, pretrained_path)
    if pretrained:
        from .pretrained import load_timm_twin

        load_timm_twin(model, preset.timm_twin)
    return model


__all__ = ["LISTED_KINDS", "Preset", "create_model", "get_preset", "list_models", "register", "register_alias"]
