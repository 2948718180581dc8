"""Self-supervised learning with DINO (Caron et al. 2021): ``task.name: dino``.

Student and teacher of any image backbone with DINO's head, multi-crop, centring and sharpening, the teacher as a
cosine-momentum EMA of the student; evaluation by weighted k-NN and a linear probe on frozen features; attention
maps and masks. ``docs/dino.md`` has the method, the commands and the measured results.
"""

from .. import register_task
from .head import DinoHead, DinoModel
from .loss import DinoLoss, teacher_momentum, teacher_temperature
from .options import DinoOptions
from .task import DinoCollapseWarning, DinoTask, build_dino_model

register_task(DinoTask)

__all__ = ["DinoCollapseWarning", "DinoHead", "DinoLoss", "DinoModel", "DinoOptions", "DinoTask", "build_dino_model",
           "teacher_momentum", "teacher_temperature"]
