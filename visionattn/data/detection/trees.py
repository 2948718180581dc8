"""Tree crowns in aerial images (deepforest 2.1.0's wheel, ``visionattn.data.sources.load_aerial_trees``), tiled.

The two large Yellowstone crops (2299x2472 with 574 boxes, 1249x1035 with 279) are split by image region, so no
pixel of a validation tile was seen in training: the rightmost ``val_fraction`` of each crop's width is validation,
the rest training. Each region is cut into ``tile`` x ``tile`` patches every ``stride`` pixels (the last row and
column are shifted back to end at the region's edge, so the region is covered); a box is kept in a tile, clipped,
when at least ``min_visible`` of its area lies inside, and dropped otherwise (tiling, not an annotation problem).
Boxes of the crops cross the split line only where a crown does; such a crown is kept in each side's tiles by the
same rule. One class, ``Tree``.
"""

from __future__ import annotations

import numpy as np

from .records import DetectionRecord, Skips, checked_record

__all__ = ["tree_tiles", "TREE_CLASSES", "tile_starts"]

TREE_CLASSES = ["Tree"]
LARGE_CROPS = ("2019_YELL_2_528000_4978000_image_crop2", "2019_YELL_2_541000_4977000_image_crop")


def tile_starts(start: int, stop: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering ``[start, stop)`` every ``stride`` pixels, the last ending at ``stop`` (one tile at
    ``start`` when the span is shorter than a tile)."""
    if stop - start <= tile:
        return [start]
    out = list(range(start, stop - tile + 1, stride))
    if out[-1] + tile < stop:
        out.append(stop - tile)
    return out


def tree_tiles(split: str, tile: int = 256, stride: int | None = None, val_fraction: float = 0.25,
               min_visible: float = 0.5, items: list[dict] | None = None) -> tuple[list[DetectionRecord], Skips]:
    """Records of ``split`` (``"train"`` / ``"val"``); ``items``: ``load_aerial_trees()`` (fetched when None).
    ``stride`` defaults to ``tile`` (no overlap)."""
    if split not in ("train", "val"):
        raise ValueError(f"tree_tiles: split expected 'train' or 'val', got {split!r}")
    if not 0 < val_fraction < 1 or not 0 < min_visible <= 1 or tile < 16:
        raise ValueError(f"tree_tiles: expected 0 < val_fraction < 1, 0 < min_visible <= 1, tile >= 16; got "
                         f"{val_fraction}, {min_visible}, {tile}")
    stride = stride or tile
    if items is None:
        from ..sources import load_aerial_trees

        items = load_aerial_trees()
    by_name = {it["name"]: it for it in items}
    missing = [n for n in LARGE_CROPS if n not in by_name]
    if missing:
        raise ValueError(f"tree_tiles: the deepforest images {missing} are missing from the loaded items")
    skips, records = Skips(), []
    for name in LARGE_CROPS:
        it = by_name[name]
        image, boxes = it["image"], np.asarray(it["boxes"], dtype=np.float64)
        H, W = image.shape[:2]
        cut = int(round(W * (1 - val_fraction)))
        x0, x1 = (0, cut) if split == "train" else (cut, W)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for ty in tile_starts(0, H, tile, stride):
            for tx in tile_starts(x0, x1, tile, stride):
                th, tw = min(tile, H - ty), min(tile, x1 - tx)
                clipped = np.stack([np.clip(boxes[:, 0] - tx, 0, tw), np.clip(boxes[:, 1] - ty, 0, th),
                                    np.clip(boxes[:, 2] - tx, 0, tw), np.clip(boxes[:, 3] - ty, 0, th)], axis=1)
                inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
                keep = inside >= min_visible * areas
                patch = np.ascontiguousarray(image[ty:ty + th, tx:tx + tw])
                records.append(checked_record(patch, (th, tw), clipped[keep], ["Tree"] * int(keep.sum()),
                                              TREE_CLASSES, len(records), f"{name} tile x={tx} y={ty}", skips))
    return records, skips
