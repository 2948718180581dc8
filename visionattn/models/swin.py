"""Moved to :mod:`visionattn.models.families.swin` (one file per family: spec, class, converter, presets); this
module keeps the old import path working."""

from .families.swin import *  # noqa: F401, F403
from .families.swin import __all__  # noqa: F401
