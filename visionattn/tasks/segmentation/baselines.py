"""The convolutional baselines SETR is raced against: torchvision's FCN and DeepLabV3 (ResNet-50, dilated to
output stride 8), from scratch (no weights of any kind), behind the same interface as :class:`SegmentationModel`.

``model.name: torchvision.fcn_resnet50`` or ``torchvision.deeplabv3_resnet50`` in a segmentation config builds one;
``model.overrides`` may set ``aux_loss: true`` (torchvision's FCN auxiliary head on ``layer3``, weighted
``task.aux_weight`` like SETR's).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["TORCHVISION_MODELS", "TorchvisionSegmenter", "build_torchvision_baseline"]

TORCHVISION_MODELS = ("torchvision.fcn_resnet50", "torchvision.deeplabv3_resnet50")


class TorchvisionSegmenter(nn.Module):
    """A torchvision segmentation model (``{"out", "aux"}`` dict outputs) as ``forward(x, padding_mask=None) ->
    (B, K, H, W)`` and ``forward_train(x, padding_mask=None) -> (logits, [aux])``. Convolutional: the padding mask
    is accepted and not used (padded pixels are labelled ignore)."""

    input_multiple = 1

    def __init__(self, model: nn.Module, num_classes: int):
        super().__init__()
        self.model = model
        self.num_classes = num_classes

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        return self.model(x)["out"]

    def forward_train(self, x: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        out = self.model(x)
        return out["out"], [out["aux"]] if "aux" in out else []


def build_torchvision_baseline(name: str, num_classes: int, overrides: dict) -> TorchvisionSegmenter:
    """``torchvision.<builder>`` with random weights (backbone included) and ``num_classes`` outputs."""
    from torchvision.models import segmentation

    if name not in TORCHVISION_MODELS:
        raise ValueError(f"torchvision baseline: expected one of {TORCHVISION_MODELS}, got {name!r}")
    unknown = sorted(set(overrides) - {"aux_loss"})
    if unknown:
        raise ValueError(f"{name}: model.overrides may only set aux_loss, got {unknown}")
    builder = getattr(segmentation, name.split(".", 1)[1])
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes,
                    aux_loss=bool(overrides.get("aux_loss", False)))
    return TorchvisionSegmenter(model, num_classes)
