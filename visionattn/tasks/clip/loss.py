"""CLIP's symmetric InfoNCE loss, with the negatives of the whole (global) batch.

Each image's positive is its own caption and its negatives are every other caption of the batch, and the other way
round; the loss is the mean of the two cross-entropies. Under DDP each rank gathers every rank's embeddings
(:func:`visionattn.comm.all_gather_with_grad`), so negatives span the global batch, and scores only its own rows
(labels offset by ``rank · B``): the gathered copies pass gradients back to the ranks that own them (summed), and
DDP's gradient average over ranks turns the mean of the local losses into the loss of one process holding the whole
batch (open_clip's ``local_loss`` with ``gather_with_grad``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...comm import LOCAL, DistInfo, all_gather_with_grad

__all__ = ["clip_loss", "clip_loss_reference"]


def clip_loss(image: Tensor, text: Tensor, logit_scale: Tensor, info: DistInfo = LOCAL) -> tuple[Tensor, Tensor]:
    """image, text: ``(B, E)`` L2-normalised embeddings of B matching pairs (this rank's); logit_scale: 0-d.
    Returns the loss (0-d, float32) and how many of this rank's images rank their own caption first (0-d int64)."""
    if image.shape != text.shape or image.ndim != 2:
        raise ValueError(f"clip_loss: expected image and text embeddings of one shape (B, E), got "
                         f"{tuple(image.shape)} and {tuple(text.shape)}")
    image, text = image.float(), text.float()
    all_image, all_text = all_gather_with_grad(image, info), all_gather_with_grad(text, info)  # (W·B, E)
    labels = torch.arange(image.shape[0], device=image.device) + info.rank * image.shape[0]
    logits_per_image = logit_scale.float() * image @ all_text.t()  # (B, W·B)
    logits_per_text = logit_scale.float() * text @ all_image.t()  # (B, W·B)
    loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
    correct = (logits_per_image.detach().argmax(dim=1) == labels).sum()
    return loss, correct


def clip_loss_reference(image: Tensor, text: Tensor, logit_scale: Tensor) -> Tensor:
    """The same loss written out on one batch, the spec: ``-(1/2B) Σ_i [log softmax_j(s x_i·y_j)_i +
    log softmax_j(s y_i·x_j)_i]``."""
    s = logit_scale.double()
    sim = s * image.double() @ text.double().t()  # (B, B): image i vs caption j
    i2t = sim.diagonal() - torch.logsumexp(sim, dim=1)
    t2i = sim.diagonal() - torch.logsumexp(sim, dim=0)
    return -(i2t.sum() + t2i.sum()) / (2 * image.shape[0])
