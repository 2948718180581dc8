"""Backbones as data: specs along the tutorial's taxonomy, a registry of presets, timm-style API."""

from .backbone import Backbone, FeatureInfo
from .registry import Preset, create_model, get_preset, list_models, register
from .taxonomy import Taxonomy

__all__ = ["Backbone", "FeatureInfo", "Preset", "Taxonomy", "create_model", "get_preset", "list_models", "register"]
