"""Moved to :mod:`visionattn.models.families.coatnet` (one file per family: spec, class, converter, presets); this
module keeps the old import path working."""

from .families.coatnet import *  # noqa: F401, F403
from .families.coatnet import __all__  # noqa: F401
