"""Boxes in a CSV file: one row per object, ``image_path,xmin,ymin,xmax,ymax,label`` (pixels; an optional header
row naming those columns). A row whose box fields are all empty declares an image with no objects. Image paths are
relative to the CSV's folder unless absolute. A row that cannot be read (wrong column count, a coordinate that is
not a number) is a counted skip naming its line; object problems are handled as :mod:`.records` says. Classes: the
given list, or the sorted labels found.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from .records import DetectionRecord, Skips, check_image_file, checked_record, require_records

__all__ = ["read_box_csv", "CSV_COLUMNS"]

CSV_COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")


def read_box_csv(path: str | Path, classes: Sequence[str] | None = None
                 ) -> tuple[list[DetectionRecord], list[str], Skips]:
    """Returns ``(records, classes, skips)``, records in the order images first appear."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"box CSV {str(path)!r} does not exist")
    skips = Skips()
    rows: dict[str, list] = {}
    lines: dict[str, list[int]] = {}
    with path.open(newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if line_no == 1 and [c.strip().lower() for c in row] == list(CSV_COLUMNS):
                continue
            where = f"{path.name} line {line_no}"
            if len(row) != len(CSV_COLUMNS):
                skips.add(where, f"expected {len(CSV_COLUMNS)} columns ({','.join(CSV_COLUMNS)}), got {len(row)}")
                continue
            image, *coords, label = (c.strip() for c in row)
            objects = rows.setdefault(image, [])
            lines.setdefault(image, [])
            if not any(coords) and not label:
                continue  # an image with no objects
            try:
                box = [float(c) for c in coords]
            except ValueError:
                skips.add(where, f"box {coords} is not four numbers")
                continue
            objects.append((box, label))
            lines[image].append(line_no)
    names = sorted({lab for objs in rows.values() for _, lab in objs}) if classes is None else list(classes)
    records = []
    for i, (image, objects) in enumerate(rows.items()):
        file = Path(image) if Path(image).is_absolute() else path.parent / image
        got = check_image_file(file)
        if isinstance(got, str):
            skips.add(file, got)
            continue
        records.append(checked_record(file, got, [b for b, _ in objects], [lab for _, lab in objects], names, i,
                                      image, skips, object_names=[f"line {n}" for n in lines[image]]))
    require_records(records, f"box CSV {str(path)!r}", skips)
    return records, names, skips
