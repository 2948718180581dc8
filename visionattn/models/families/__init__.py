"""Model families; importing this package registers every preset."""

from . import resnets, swin_coatnet, vit  # noqa: F401
