"""I/O guards that each kill a mutation the rest of the suite let through (issue 19; docs/testing.md lists them):

* the atomic write's durability protocol, observed call by call: fsync of the temp file (holding all the data),
  then ``os.replace`` onto the final name, then fsync of the directory;
* every exception a Pillow decoder raises on a broken file (``OSError``, ``SyntaxError``, ``EOFError``,
  ``struct.error``, ...) becomes a named ``BadImage`` skip, for ``load_image`` and for a whole folder dataset;
* a skipped file is reported as one clean line on stderr (no ``file:line:`` prefix, no source-line echo).
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import visionattn
from visionattn.data import BadImage, DataConfig, SkippedImageWarning, build_datasets, load_image
from visionattn.data.config import warn_skipped
from visionattn.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
SOURCE_ROOT = str(Path(visionattn.__file__).resolve().parents[1])  # what a subprocess must import too


# -- atomic writes: fsync(temp) → os.replace → fsync(directory) ---------------------------------------------------
def _record_durability_calls(monkeypatch) -> list[tuple]:
    """Patch ``os.fsync`` / ``os.replace`` as the checkpoint module sees them; each call is recorded with what it
    acted on (a regular file's inode and size, or a directory's inode) and then really performed."""
    calls: list[tuple] = []
    real_fsync, real_replace = ckpt.os.fsync, ckpt.os.replace

    def fsync(fd):
        st = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        calls.append(("fsync", kind, st.st_ino, st.st_size if kind == "file" else None))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        calls.append(("replace", str(src), str(dst), os.stat(src).st_ino))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    return calls


WRITERS = {
    "atomic_save": lambda path: ckpt.atomic_save({"w": torch.arange(1000.0)}, path),
    "atomic_write_text": lambda path: ckpt.atomic_write_text(path, "model: vit\n" * 100),
    "atomic_copy": lambda path: ckpt.atomic_copy(REPO / "pyproject.toml", path),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_atomic_write_order_is_fsync_file_replace_fsync_dir(tmp_path, monkeypatch, writer):
    path = tmp_path / "run" / "ckpt-3.pt"
    path.parent.mkdir()
    path.write_bytes(b"old checkpoint")  # an older file under the final name is replaced, not appended to
    calls = _record_durability_calls(monkeypatch)
    WRITERS[writer](path)
    final = os.stat(path)
    assert [c[:2] for c in calls] == [("fsync", "file"), ("replace", str(calls[1][1])), ("fsync", "dir")], calls
    (_, _, file_ino, synced_size), (_, src, dst, replaced_ino), (_, _, dir_ino, _) = calls
    assert file_ino == replaced_ino == final.st_ino, "fsync'ed file, renamed file and final file are one file"
    assert synced_size == final.st_size > len(b"old checkpoint"), "every byte was written before the fsync"
    assert Path(src).parent == path.parent and Path(src) != path, "the temp file sits beside the final name"
    assert Path(dst) == path
    assert dir_ino == os.stat(path.parent).st_ino, "the directory holding the new name is fsync'ed"
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt-3.pt"], "no temp file is left"


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    path.write_bytes(b"old")
    calls = _record_durability_calls(monkeypatch)

    def failing(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ckpt._atomic_write(path, failing)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]
    assert not any(c[0] == "replace" for c in calls)


# -- image decoding: any decoder exception is a named skip -------------------------------------------------------
DECODER_ERRORS = {
    "OSError": OSError("image file is truncated (12 bytes not processed)"),
    "SyntaxError": SyntaxError("broken PNG file"),
    "EOFError": EOFError("no more images in GIF file"),
    "struct.error": struct.error("unpack requires a buffer of 4 bytes"),
    "ValueError": ValueError("tile cannot extend outside image"),
    "IndexError": IndexError("index out of range"),
}


def _write_png(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((12, 10, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _decoder_raises(monkeypatch, error: BaseException, victim: str) -> None:
    """Make Pillow's decode step (``ImageFile.load``) raise ``error`` for files whose name contains ``victim``;
    other files decode normally."""
    real_load = ImageFile.ImageFile.load

    def load(self):
        if victim in str(getattr(self, "filename", "")):
            raise error
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("kind", list(DECODER_ERRORS))
def test_load_image_turns_every_decoder_error_into_bad_image(tmp_path, monkeypatch, kind):
    path = _write_png(tmp_path / "broken.png")
    _decoder_raises(monkeypatch, DECODER_ERRORS[kind], "broken")
    with pytest.raises(BadImage) as info:
        load_image(path)
    assert info.value.path == str(path)
    name = type(DECODER_ERRORS[kind]).__name__
    assert info.value.reason.startswith(f"decode failed: {name}: ") and str(DECODER_ERRORS[kind]) in info.value.reason
    assert load_image(_write_png(tmp_path / "fine.png")).size == (10, 12)  # the patch hits only the broken file


@pytest.mark.parametrize("kind", ["SyntaxError", "EOFError", "struct.error"])
def test_folder_dataset_skips_a_file_whose_decoder_raises(tmp_path, monkeypatch, kind):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            _write_png(tmp_path / cls / f"{cls}{i}.png", seed=i)
    bad = tmp_path / "b" / "zz-broken.png"
    _write_png(bad)
    _decoder_raises(monkeypatch, DECODER_ERRORS[kind], "zz-broken")
    with pytest.warns(SkippedImageWarning, match="zz-broken"):
        bundle = build_datasets(DataConfig(name="folder", path=str(tmp_path), img_size=8, val_fraction=0.34))
    assert [p for p, _ in bundle.skipped] == [str(bad)]
    assert type(DECODER_ERRORS[kind]).__name__ in bundle.skipped[0][1]
    assert len(bundle.train) + len(bundle.val) == 6


# -- skipped files print as one line ---------------------------------------------------------------------------
def test_skipped_warning_prints_one_clean_line(capsys):
    skipped = [("/data/pets/cat/a.png", "decode failed: SyntaxError: broken PNG file"),
               ("/data/pets/dog/b.jpg", "not an image: cannot identify image file\nsecond line of the reason")]
    def show(message, category, filename, lineno, file=None, line=None):  # Python's default, minus pytest's capture
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        warn_skipped("folder '/data/pets'", skipped)
        warnings.warn("an unrelated warning keeps Python's format", UserWarning, stacklevel=1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == [
        "warning: folder '/data/pets': skipping /data/pets/cat/a.png: decode failed: SyntaxError: broken PNG file",
        "warning: folder '/data/pets': skipping /data/pets/dog/b.jpg: not an image: cannot identify image file "
        "second line of the reason",
    ]
    assert "UserWarning: an unrelated warning keeps Python's format" in lines[2] and ".py:" in lines[2]
    assert warnings.formatwarning is warnings._formatwarning_orig  # the one-line format is scoped


def test_skipped_files_print_one_line_each_in_a_real_process(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            _write_png(tmp_path / cls / f"{i}.png", seed=i)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "cut.png").write_bytes(_write_png(tmp_path / "full.png").read_bytes()[:60])
    (tmp_path / "full.png").unlink()
    script = textwrap.dedent(f"""
        from visionattn.data import DataConfig, build_datasets
        bundle = build_datasets(DataConfig(name="folder", path={str(tmp_path)!r}, img_size=8, val_fraction=0.5))
        print(len(bundle.skipped))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "default",
                               "PYTHONPATH": os.pathsep.join([SOURCE_ROOT, os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("warning: folder ") and "notes.txt: not an image file extension" in lines[0]
    assert "cut.png: decode failed" in lines[1] or "cut.png: not an image" in lines[1]
    assert "warnings.warn" not in proc.stderr and "SkippedImageWarning" not in proc.stderr
