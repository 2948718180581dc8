"""Backbones as data: specs along the tutorial's taxonomy, a registry of presets, timm-style API.

Import order matters and is the only place presets are loaded: the registry first (it imports no family), then
the family modules, each registering its presets."""

from .backbone import Backbone, FeatureInfo
from .registry import Preset, create_model, get_preset, list_models, register
from .taxonomy import Taxonomy

# isort: split
from . import families  # noqa: F401  (registers every preset; must follow the registry)

__all__ = ["Backbone", "FeatureInfo", "Preset", "Taxonomy", "create_model", "get_preset", "list_models", "register"]
