"""Moved to :mod:`visionattn.models.families.hybrid_vit` (one file per family: spec, class, converter, presets); this
module keeps the old import path working."""

from .families.hybrid_vit import *  # noqa: F401, F403
from .families.hybrid_vit import __all__  # noqa: F401
