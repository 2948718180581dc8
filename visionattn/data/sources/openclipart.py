"""Public-domain drawings with titles and keywords from Debian's ``openclipart-svg`` (``1:0.18+dfsg-19``).

The package files 8,121 SVG drawings under ``/usr/share/openclipart/svg/`` in 22 category folders (165 folders
hold files, e.g. ``animals/birds``). The same drawing is often filed twice: 663 files are symlinks and others are
copies under the same file name (7,458 distinct contents, 6,816 distinct file names); ``record["drawing"]`` is
the real file's name, so a split by drawing can keep copies together.
Titles, descriptions and keywords live in each SVG's RDF metadata (``<metadata><rdf:RDF><cc:Work>`` with
``dc:title``, ``dc:description``, ``dc:subject/rdf:Bag/rdf:li``); where ``dc:title`` is empty the SVG's own
``<title>`` element is used. Measured: 8,061 drawings with a title (8,059 from ``dc:title``), 8,001 with
keywords (8,003 before keywords equal to the creator's name are dropped: openclipart listed the artist as a
keyword), 1,708 with a description. Titles repeat: 2,811 distinct (title, creator) pairs, 1,375 drawings titled
"gramastar". Licence: public domain (Debian's copyright file: Creative Commons Public Domain Dedication; the RDF
of all but 65 files names ``cc/PublicDomain``).

``rasterize_svg`` renders one drawing with ``cairosvg`` (which needs the system cairo library, Debian
``libcairo2``); external references are never fetched (cairosvg's safe mode: data URLs only). Measured over all
8,121 files at 32 px: 8,080 render and 41 fail (17 percentages where cairosvg wants numbers, 15 XML entity
declarations that safe mode refuses, 4 without a size, 5 other parse errors); ``rasterize_records`` counts and
skips them. About 40 ms a drawing on a quiet core: rasterise once and keep the arrays.
"""

from __future__ import annotations

import functools
import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..fetch import Bundle, Package, fetch

__all__ = [
    "OPENCLIPART",
    "SvgRenderError",
    "load_openclipart",
    "clipart_caption",
    "rasterize_svg",
    "rasterize_records",
]

OPENCLIPART = Bundle(
    key="openclipart-svg",
    package=Package("openclipart-svg", "1:0.18+dfsg-19", registry="debian"),
    root="usr/share/openclipart/svg",
    trees={"": "b75598d5019bcd7538625ce1e982b9ee134fad8a399eaca6ea8a1fc5e368598e"},  # 8,121 files
    licence="public domain (Open Clip Art Library)",
)

_DC = "{http://purl.org/dc/elements/1.1/}"
_CC = "{http://web.resource.org/cc/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_SVG_TITLE = "{http://www.w3.org/2000/svg}title"


class SvgRenderError(ValueError):
    """An SVG that cairosvg cannot render (or that renders to nothing)."""


def load_openclipart(
    path: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None, download: bool | None = None
) -> list[dict]:
    """One record per SVG file (8,121), sorted by relative path. Each record is a dict:

    path:        ``Path`` of the SVG (may be a symlink)
    rel:         path relative to the svg root, posix (``"animals/birds/puffin-md.svg"``)
    category:    top folder (``"animals"``); subcategory: the file's folder (``"animals/birds"``)
    drawing:     name of the real file (symlinks resolved): 6,816 distinct; files that share it are the same
                 drawing filed in several folders (keep them on one side of a split)
    title:       str (``""`` when none); description: str (``""`` when none)
    keywords:    list of str, stripped, de-duplicated, the creator's name removed
    creator:     str (``""`` when none)

    ``path`` or ``$VISIONATTN_OPENCLIPART_SVG_DIR``: the ``.deb``, or a folder holding the svg tree (e.g. an
    installed ``/usr/share/openclipart/svg``)."""
    got = fetch(OPENCLIPART, path, cache_dir=cache_dir, download=download)
    return [dict(r, path=got.root / r["rel"]) for r in _records(str(got.root))]


@functools.lru_cache(maxsize=2)
def _records(root: str) -> tuple[dict, ...]:
    base = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".svg"):
                continue
            file = Path(dirpath) / name
            rel = file.relative_to(base).as_posix()
            drawing = Path(os.path.realpath(file)).name
            meta = svg_metadata(file)
            out.append(
                {
                    "rel": rel,
                    "category": rel.split("/")[0],
                    "subcategory": Path(rel).parent.as_posix(),
                    "drawing": drawing,
                    **meta,
                }
            )
    out.sort(key=lambda r: r["rel"])
    return tuple(out)


def svg_metadata(path: str | os.PathLike) -> dict:
    """``{"title", "description", "keywords", "creator"}`` from an SVG's RDF metadata (see the module doc);
    empty values for a file without metadata or that is not well-formed XML."""
    title = description = creator = ""
    keywords: list[str] = []
    fallback_title = ""
    depth = 0
    try:
        with open(path, "rb") as f:
            for event, el in ET.iterparse(f, events=("start", "end")):
                if event == "start":
                    depth += 1
                    continue
                depth -= 1
                if el.tag == _SVG_TITLE and depth == 1 and not fallback_title:  # a <title> child of <svg>
                    fallback_title = _text(el)
                elif el.tag == _CC + "Work":
                    title = _text(el.find(_DC + "title"))
                    description = _text(el.find(_DC + "description"))
                    creator = _text(el.find(f"{_DC}creator/{_CC}Agent/{_DC}title"))
                    keywords = [_text(li) for li in el.iterfind(f"{_DC}subject/{_RDF}Bag/{_RDF}li")]
                    if title:
                        break  # the rest of the drawing is not needed
    except ET.ParseError:
        pass
    seen, clean = {creator.casefold()}, []
    for k in keywords:
        if k and k.casefold() not in seen:
            seen.add(k.casefold())
            clean.append(k)
    return {"title": title or fallback_title, "description": description, "keywords": clean, "creator": creator}


def _text(el) -> str:
    return " ".join((el.text or "").split()) if el is not None else ""


def clipart_caption(record: dict) -> str:
    """Title, description and keywords as one caption: ``"Puffin. A sea bird. Keywords: bird, animal"``
    (parts that are empty are left out; ``""`` if all are)."""
    parts = [p.rstrip(".") for p in (record["title"], record["description"]) if p]
    if record["keywords"]:
        parts.append("Keywords: " + ", ".join(record["keywords"]))
    return ". ".join(parts)


def rasterize_svg(svg: str | os.PathLike | bytes, size: int = 224, background=(255, 255, 255)) -> np.ndarray:
    """Render an SVG (a path or its bytes) to uint8 RGB ``(size, size, 3)``: scaled to fit, aspect kept, centred,
    composited on ``background``. Raises ``SvgRenderError`` naming the file when cairosvg fails."""
    try:
        import cairosvg
    except (ImportError, OSError) as err:  # cairocffi raises OSError when the cairo library is missing
        raise ImportError(
            f"rasterize_svg needs the cairosvg package and the system cairo library (Debian: libcairo2): {err}"
        ) from err
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"rasterize_svg: size expected a positive int, got {size!r}")
    name = "<bytes>" if isinstance(svg, bytes) else str(svg)
    data = svg if isinstance(svg, bytes) else Path(svg).read_bytes()
    try:
        png = cairosvg.svg2png(bytestring=data, output_width=size, unsafe=False)
        im = Image.open(io.BytesIO(png))
        if im.height > size:
            png = cairosvg.svg2png(bytestring=data, output_height=size, unsafe=False)
            im = Image.open(io.BytesIO(png))
        im = im.convert("RGBA")
    except Exception as err:  # noqa: BLE001 - cairosvg raises many kinds (parse, value, zero-size, cairo errors)
        raise SvgRenderError(f"{name}: cairosvg could not render it: {type(err).__name__}: {err}") from err
    if im.width < 1 or im.height < 1 or im.width > size or im.height > size:
        raise SvgRenderError(f"{name}: rendered to {im.width}x{im.height}, expected within {size}x{size}")
    canvas = Image.new("RGBA", (size, size), (*background, 255))
    canvas.alpha_composite(im, ((size - im.width) // 2, (size - im.height) // 2))
    return np.asarray(canvas.convert("RGB"))


def rasterize_records(
    records: Sequence[dict], size: int = 64, background=(255, 255, 255)
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Render many records -> ``(images, kept, failures)``: images uint8 ``(K, size, size, 3)`` of the drawings
    that rendered, kept int64 ``(K,)`` their indices into ``records``, failures ``[(rel, reason)]`` for the
    others (counted and skipped, never raised)."""
    images, kept, failures = [], [], []
    for i, r in enumerate(records):
        try:
            images.append(rasterize_svg(r["path"], size, background))
            kept.append(i)
        except (SvgRenderError, OSError) as err:
            failures.append((r.get("rel", str(r["path"])), str(err)))
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), dtype=np.uint8)
    return stacked, np.asarray(kept, dtype=np.int64), failures
