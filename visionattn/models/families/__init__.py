"""Model families; importing this package registers every preset."""

from . import (  # noqa: F401
    experiment_models,  # noqa: F401  (presets of experiments/*.yaml)
    resnets,
    swin_coatnet,
    vit,
)
