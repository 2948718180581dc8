"""Model families, one file each with its spec, class, checkpoint converter and presets (timm's habit).
Importing this package registers every preset; ``visionattn.models`` does so after creating the registry."""

from . import (  # noqa: F401
    coatnet,
    experiment_models,  # presets of experiments/*.yaml
    hybrid_vit,
    resnet,
    swin,
    video_swin,
    vit,
    vivit,
)
