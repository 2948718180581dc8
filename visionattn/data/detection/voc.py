"""Pascal VOC XML annotations (``Annotations/*.xml`` beside ``JPEGImages/``) → :class:`~.records.DetectionRecord` s.

Each XML names its image (``<filename>``) and size; boxes are ``<bndbox>`` ``xmin ymin xmax ymax`` pixels as written
(no 1-based shift: the files of both deepforest and labelme use the pixel-edge convention). A file that cannot be
parsed or whose ``<size>`` disagrees with its image is a counted skip naming it; object problems are handled as
:mod:`.records` says. Classes: the given list, or the sorted names found.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..sources.base import read_voc_xml
from .records import DetectionRecord, Skips, check_image_file, checked_record, require_records

__all__ = ["read_voc"]


def read_voc(xml: str | Path | Sequence[str | Path], image_root: str | Path | None = None,
             classes: Sequence[str] | None = None) -> tuple[list[DetectionRecord], list[str], Skips]:
    """``xml``: a folder of ``.xml`` files, one file, or a list of files. ``image_root``: where the images are
    (default: ``<xml folder>/../JPEGImages`` if it exists, else the XML's folder). Returns ``(records, classes,
    skips)``."""
    if isinstance(xml, (str, Path)):
        xml = Path(xml)
        files = sorted(xml.glob("*.xml")) if xml.is_dir() else [xml]
        if xml.is_dir() and not files:
            raise ValueError(f"VOC folder {str(xml)!r} holds no .xml files")
    else:
        files = [Path(f) for f in xml]
    skips = Skips()
    parsed = []
    for f in files:
        try:
            parsed.append((f, read_voc_xml(f)))
        except (ValueError, OSError) as err:
            skips.add(f, str(err).removeprefix(f"{f}: "))
    names = sorted({n for _, ann in parsed for n in ann.labels}) if classes is None else list(classes)
    records = []
    for i, (f, ann) in enumerate(parsed):
        root = Path(image_root) if image_root is not None else _default_root(f)
        image = root / ann.filename
        got = check_image_file(image)
        if isinstance(got, str):
            skips.add(image, f"{got} (named by {f.name})")
            continue
        if ann.width and ann.height and (ann.height, ann.width) != got:
            skips.add(image, f"{f.name} says {ann.width}x{ann.height} (W x H), the image is {got[1]}x{got[0]}")
            continue
        records.append(checked_record(image, got, ann.boxes, ann.labels, names, i, ann.filename, skips))
    require_records(records, f"VOC annotations {', '.join(str(f) for f in files[:2])}", skips)
    return records, names, skips


def _default_root(xml_file: Path) -> Path:
    sibling = xml_file.parent.parent / "JPEGImages"
    return sibling if sibling.is_dir() else xml_file.parent
