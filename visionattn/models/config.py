"""Which backbone to build: the ``model:`` section of a run's config (tasks read it to build their models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelConfig", "model_kwargs", "spec_overrides"]


def _demo_overrides() -> dict[str, Any]:
    # vit_tiny_test grown to a small ViT for the 32x32 (upscaled 8x8) digits: 4x4 tokens of 8x8 pixels, 0.31M params
    return {"patch": 8, "dim": 96, "depth": 4, "heads": 4, "mlp_ratio": 2.0, "drop_path": 0.05}


@dataclass
class ModelConfig:
    """name: a registered preset (``visionattn models --all``). overrides: fields of its spec (``drop_path`` is
    stochastic depth). pretrained_path: initial weights from a local file (ours, timm's or DINO's), e.g. for
    fine-tuning. pretrained: fetch the timm twin's published weights through timm's hub mechanism (needs the
    network; offline it is an error naming pretrained_path)."""

    name: str = "vit_tiny_test"
    overrides: dict[str, Any] = field(default_factory=_demo_overrides)
    pretrained_path: str | None = None
    pretrained: bool = False


def model_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """Everything of ``cfg`` but the name as ``create_model`` keyword arguments: the spec overrides plus the
    pretrained weights to load."""
    return {"pretrained_path": cfg.pretrained_path, "pretrained": cfg.pretrained, **spec_overrides(cfg)}


def spec_overrides(cfg: ModelConfig) -> dict[str, Any]:
    """``cfg.overrides`` as ``create_model`` keyword arguments (YAML lists become the specs' tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.overrides.items()}
