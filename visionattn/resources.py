"""Files that ship with visionattn: the experiments (``experiments/*.yaml``) and the task configs
(``configs/*.yaml``).

Where they are:

* in a source checkout (an editable install or ``PYTHONPATH``), the top-level ``experiments/`` and ``configs/``
  folders beside the ``visionattn`` package: the files people edit in git;
* in an installed wheel (``pip install .``), package data under ``visionattn/_data/<kind>/``: the build copies the
  top-level folders there (``setup.py``'s ``build_py``), so the two never diverge in a release.

``resource_dir(kind)`` is that folder, ``find_resource(kind, name)`` one file of it by name
(``find_resource("configs", "default")``), ``list_resources(kind)`` all of them. Nothing here reads the current
directory: callers that also look in ``./experiments`` (the user's own files) do that themselves, first.
"""

from __future__ import annotations

import difflib
from importlib import resources as importlib_resources
from pathlib import Path

__all__ = ["KINDS", "SUFFIXES", "resource_dir", "find_resource", "list_resources", "source_root"]

KINDS = ("experiments", "configs")
"""The resource folders that ship with the package."""

SUFFIXES = (".yaml", ".yml")
PACKAGE_DATA = "_data"  # visionattn/_data/<kind>/ in an installed package


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"resource kind must be one of {KINDS}, got {kind!r}")


def source_root() -> Path | None:
    """The checkout this ``visionattn`` was imported from (the folder holding ``pyproject.toml`` and the
    package), or None for an installed package."""
    package = Path(__file__).resolve().parent
    root = package.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "visionattn"' in pyproject.read_text(errors="replace"):
        return root
    return None


def _packaged_dir(kind: str) -> Path | None:
    try:
        entry = importlib_resources.files("visionattn").joinpath(PACKAGE_DATA, kind)
    except (ModuleNotFoundError, TypeError):
        return None
    path = Path(str(entry))  # a real folder for a regular install (not inside a zip)
    return path if path.is_dir() else None


def resource_dir(kind: str) -> Path | None:
    """The folder of ``kind`` (``"experiments"`` or ``"configs"``): the checkout's top-level folder when
    visionattn runs from a source tree, else the installed package data; None when neither exists."""
    _check_kind(kind)
    root = source_root()
    if root is not None and (root / kind).is_dir():
        return root / kind
    return _packaged_dir(kind)


def list_resources(kind: str) -> dict[str, Path]:
    """``{name: path}`` of the YAML files of ``kind``, sorted; the name is the path inside the folder without the
    suffix (``default``, or ``detection/detr_coco`` for a file in a subfolder)."""
    directory = resource_dir(kind)
    if directory is None:
        return {}
    files = sorted(p for p in directory.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    out: dict[str, Path] = {}
    for path in files:
        out.setdefault(path.relative_to(directory).with_suffix("").as_posix(), path)
    return out


def find_resource(kind: str, name: str) -> Path:
    """The file ``name`` of ``kind``: a name as :func:`list_resources` gives it (``default``,
    ``detection/detr_coco``) or with its suffix (``default.yaml``); ``FileNotFoundError`` listing the known names
    (and the close ones) otherwise."""
    known = list_resources(kind)
    stem = name[: -len(suffix)] if (suffix := next((s for s in SUFFIXES if name.endswith(s)), "")) else name
    if stem in known:
        return known[stem]
    close = difflib.get_close_matches(stem, list(known), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    where = resource_dir(kind)
    raise FileNotFoundError(
        f"no {kind[:-1]} {name!r} in {where if where is not None else f'the package (no {kind} folder found)'}; "
        f"known: {', '.join(known) or 'none'}{hint}"
    )
