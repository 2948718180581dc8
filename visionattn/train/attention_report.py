"""The report's attention maps: what the last attention layer of the trained model looks at, on a few validation
images (:mod:`visionattn.analysis.maps`; the model's outputs are unchanged by capturing)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..tasks import GridImage, ReportItem

__all__ = ["attention_items"]


@torch.no_grad()
def attention_items(model: nn.Module, images: Tensor, shown: Tensor, device: torch.device) -> list[ReportItem]:
    """One report section: for each image of ``images`` (n, C, H, W) (model inputs; ``shown`` (n, 3, H, W) in
    [0, 1] for display) the mean-of-heads and per-head maps of the last attention layer, for the class token (ViT
    family) or the image centre. No section for a model that makes no attention call (a CNN) or whose last layer
    cannot be mapped back to the image."""
    from ..analysis.maps import capture_attention, query_maps
    from ..analysis.overlay import attention_figure, to_uint8_image
    from ..plotting import png_bytes

    was = model.training
    model.eval()
    try:
        capture = capture_attention(model, images.to(device), layers="last")
    except ValueError:  # no attention call: nothing to show
        return []
    finally:
        model.train(was)
    layer = capture.layers[-1]
    if getattr(layer, "unmappable", False):
        return []
    H, W = capture.image_size
    query = "cls" if layer.prefix else (W // 2, H // 2)
    maps = query_maps(capture, layer, [query])  # (n, 1, heads, H, W)
    grid = []
    for b in range(images.shape[0]):
        stack = torch.cat([maps[b, 0].mean(0, keepdim=True), maps[b, 0]]).float().cpu().numpy()
        labels = ["mean of heads"] + [f"head {h}" for h in range(layer.heads)]
        fig = attention_figure(to_uint8_image(shown[b]), stack, labels, point=None if query == "cls" else query)
        grid.append(GridImage(png_bytes(fig), f"validation image {b}"))
    where = "the class token" if query == "cls" else f"the centre pixel ({query[0]}, {query[1]})"
    text = (f"Last attention layer {layer.name} ({layer.pattern!r}) of the weights that evaluated better: where "
            f"{where} attends, per head and averaged (each map scaled to its own maximum).")
    return [ReportItem("Attention maps (validation images)", text=text, grid=grid)]
