"""Train / eval transforms from ``torchvision.transforms.v2`` and ``timm.data``; only glue lives here.

Input: an RGB ``PIL.Image`` of any size. Output: a float tensor ``(in_chans, img_size, img_size)``, normalised.

train: RandomResizedCrop(img_size, crop_scale) or Resize((img_size, img_size)) -> [RandomHorizontalFlip]
       -> [timm RandAugment (PIL)] -> [Grayscale(1)] -> ToImage -> ToDtype(float32, scale) -> Normalize
eval:  Resize((img_size, img_size)) -> [Grayscale(1)] -> ToImage -> ToDtype(float32, scale) -> Normalize

Resizing squashes to a square (no centre crop), so extreme aspect ratios (1x500) stay whole and cost no more memory
than the file itself. Randomness: torchvision ops draw from torch's RNG; timm RandAugment draws magnitudes from
Python's ``random`` and picks ops with numpy's global RNG. A bit-exact resume with ``num_workers=0`` must save all
three states; DataLoader workers reseed all three from the loader's generator.
"""

from __future__ import annotations

import functools

import torch
from torchvision.transforms import InterpolationMode, v2

from .config import DataConfig

__all__ = ["build_transform", "denormalize", "denormalize_with"]

_INTERPOLATION = InterpolationMode.BICUBIC


def _randaugment(cfg: DataConfig):
    from timm.data.auto_augment import rand_augment_transform  # timm imports its model zoo: only when asked for
    from timm.data.transforms import str_to_pil_interp

    # the same hparams timm.data.create_transform passes: translation relative to the image, fill with the mean colour
    hparams = {
        "translate_const": int(cfg.img_size * 0.45),
        "img_mean": tuple(min(255, round(255 * m)) for m in cfg.mean),
        "interpolation": str_to_pil_interp("bicubic"),
    }
    try:
        transform = rand_augment_transform(cfg.randaugment, hparams)
    except Exception as err:  # timm raises AssertionError/KeyError/ValueError on a malformed string
        raise ValueError(
            f"DataConfig.randaugment: timm could not parse {cfg.randaugment!r} "
            f"(expected e.g. 'rand-m9-mstd0.5'): {type(err).__name__}: {err}"
        ) from err
    for op in transform.ops:
        if op.name.startswith("Posterize") and op.level_fn is not None:
            op.level_fn = functools.partial(_at_least_one_bit, op.level_fn)  # a partial pickles (loader workers)
    return transform


def _at_least_one_bit(level_fn, magnitude, hparams):
    """timm's increasing posterize (``inc1``, DeiT's 'rand-m9-mstd0.5-inc1') asks for 0 bits at magnitude 10,
    which Pillow >= 13 refuses (``ValueError: bits must be between or equal to 1 and 8``) mid-training; older
    Pillow returned a black image. Clamp to 1 bit, the nearest valid posterize."""
    (bits,) = level_fn(magnitude, hparams)
    return (max(1, int(bits)),)


def build_transform(cfg: DataConfig, train: bool, in_chans: int = 3) -> v2.Compose:
    """The transform for one split (see the module docstring). ``in_chans`` 1 ends with a single gray channel."""
    if in_chans not in (1, 3):
        raise ValueError(f"build_transform: expected in_chans 1 or 3, got {in_chans!r}")
    size = cfg.img_size
    ops: list = []
    if train and cfg.random_resized_crop:
        ops.append(v2.RandomResizedCrop(size, scale=cfg.crop_scale, interpolation=_INTERPOLATION, antialias=True))
    else:
        ops.append(v2.Resize((size, size), interpolation=_INTERPOLATION, antialias=True))
    if train and cfg.hflip:
        ops.append(v2.RandomHorizontalFlip())
    if train and cfg.randaugment:
        ops.append(_randaugment(cfg))
    if in_chans == 1:
        ops.append(v2.Grayscale(num_output_channels=1))  # on PIL: exact for R = G = B
    ops += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(cfg.mean[:in_chans]), std=list(cfg.std[:in_chans])),
    ]
    return v2.Compose(ops)


def denormalize(img: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """Undo ``Normalize`` for display: ``(C, H, W)`` or ``(B, C, H, W)`` with C in (1, 3) -> 3 channels in [0, 1]."""
    return denormalize_with(img, cfg.mean, cfg.std)


def denormalize_with(img: torch.Tensor, mean, std) -> torch.Tensor:
    """:func:`denormalize` with explicit per-channel ``mean`` and ``std`` (3 values; a 1-channel image uses the
    first)."""
    if img.dim() not in (3, 4) or img.shape[-3] not in (1, 3):
        raise ValueError(f"denormalize: expected (C, H, W) or (B, C, H, W) with C in (1, 3), got {tuple(img.shape)}")
    c = img.shape[-3]
    mean = torch.tensor(tuple(mean)[:c], dtype=img.dtype, device=img.device).view(c, 1, 1)
    std = torch.tensor(tuple(std)[:c], dtype=img.dtype, device=img.device).view(c, 1, 1)
    out = (img * std + mean).clamp(0.0, 1.0)
    if c == 1:
        out = out.expand(*out.shape[:-3], 3, *out.shape[-2:])
    return out
