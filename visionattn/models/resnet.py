"""Moved to :mod:`visionattn.models.families.resnet` (one file per family: spec, class, converter, presets); this
module keeps the old import path working."""

from .families.resnet import *  # noqa: F401, F403
from .families.resnet import __all__  # noqa: F401
