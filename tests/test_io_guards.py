"""I/O guards that each kill a mutation the rest of the suite let through (issue 19; docs/testing.md lists them):

* the atomic write's durability protocol, observed call by call: fsync of the temp file (holding all the data),
  then ``os.replace`` onto the final name, then fsync of the directory;
* every exception a Pillow decoder raises on a broken file (``OSError``, ``SyntaxError``, ``EOFError``,
  ``struct.error``, ...) becomes a named ``BadImage`` skip, for ``load_image`` and for a whole folder dataset;
* a skipped file is reported as one clean line on stderr (no ``file:line:`` prefix, no source-line echo).
"""

from __future__ import annotations

import os
import random
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
from PIL import Image, ImageFile, ImageOps

import visionattn
from visionattn.data import BadImage, DataConfig, SkippedImageWarning, build_datasets, images, load_image
from visionattn.data.config import warn_skipped
from visionattn.data.images import IMAGE_EXTENSIONS, to_rgb
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


# -- load_image / to_rgb: values, names and branches the edge-case files do not pin ---------------------------
def test_openable_extensions_are_what_pillow_can_read():
    exts = images._openable_extensions()
    assert exts == IMAGE_EXTENSIONS
    assert {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".ppm"} <= exts
    assert not {".txt", ".csv", ".py", ".json", ".npy", ""} & exts


def test_sixteen_bit_values_are_divided_by_257_and_clipped():
    # 16-bit PNG values v → round(v / 257): the rounding edges, and values where v·257 mod 256 would differ
    v = np.array([[0, 128, 129, 256, 257, 9637, 32896, 65534, 65535]], dtype=np.uint16)
    img = Image.fromarray(v)
    assert img.mode.startswith("I;16")
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == [0, 0, 1, 1, 1, 37, 128, 255, 255]
    # 32-bit "I" (how older Pillow opens 16-bit PNGs): clipped to [0, 65535] first
    wide = Image.fromarray(np.array([[-70000, 70000, 2570, 65535, 128]], dtype=np.int32))  # -70000/257 wraps
    assert wide.mode == "I"
    rgb = np.asarray(to_rgb(wide))
    assert rgb[0, :, 0].tolist() == [0, 255, 10, 255, 0] and (rgb[..., 0] == rgb[..., 2]).all()


def test_float_values_are_clipped_to_0_1_and_scaled_by_255():
    img = Image.fromarray(np.array([[-0.5, 0.0, 0.25, 0.5, 1.0, 1.5]], dtype=np.float32))
    assert img.mode == "F"
    assert np.asarray(to_rgb(img))[0, :, 1].tolist() == [0, 0, 64, 128, 255, 255]  # 63.75 → 64, 127.5 → 128


def test_rgb_is_returned_as_is_and_a_trns_colour_is_composited_on_white(tmp_path):
    arr = (np.random.default_rng(3).random((6, 7, 3)) * 200).astype(np.uint8) + 20  # no pixel is (10, 20, 30)
    rgb = Image.fromarray(arr)
    assert to_rgb(rgb) is rgb  # "returned as is"
    arr[1, 2] = arr[4, 5] = (10, 20, 30)
    path = tmp_path / "trns.png"
    Image.fromarray(arr).save(path, transparency=(10, 20, 30))
    got = np.asarray(load_image(path))
    assert tuple(got[1, 2]) == tuple(got[4, 5]) == (255, 255, 255)
    mask = np.ones((6, 7), bool)
    mask[1, 2] = mask[4, 5] = False
    assert (got[mask] == arr[mask]).all()
    gray = (np.random.default_rng(4).random((5, 5)) * 200).astype(np.uint8) + 20
    gray[0, 0] = 7
    Image.fromarray(gray).save(tmp_path / "trns_l.png", transparency=7)
    got = np.asarray(load_image(tmp_path / "trns_l.png"))
    assert tuple(got[0, 0]) == (255, 255, 255) and tuple(got[2, 3]) == (gray[2, 3],) * 3


def test_a_mode_pillow_cannot_convert_is_a_bad_image_naming_the_file(tmp_path, monkeypatch):
    """No mode a file decodes to fails today, so a plugin's exotic mode is stood in for by CMYK whose conversion
    raises; it must give BadImage (naming the file), not Pillow's ValueError."""
    path = tmp_path / "ink.jpg"
    Image.new("CMYK", (3, 2), (0, 255, 0, 0)).save(path)
    real_convert = Image.Image.convert

    def convert(self, mode=None, *args, **kwargs):
        if self.mode == "CMYK":
            raise ValueError(f"conversion from CMYK to {mode} not supported")
        return real_convert(self, mode, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", convert)
    with pytest.raises(BadImage) as info:
        to_rgb(Image.new("CMYK", (3, 2)))
    assert info.value.path == "<image>"
    assert info.value.reason == "unsupported image mode 'CMYK': conversion from CMYK to RGB not supported"
    with pytest.raises(BadImage) as info:
        load_image(path)
    assert info.value.path == str(path) and info.value.reason.startswith("unsupported image mode 'CMYK': ")


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(BadImage) as info:
        load_image(tmp_path / "nope.png")
    assert (info.value.path, info.value.reason) == (str(tmp_path / "nope.png"), "file not found")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(BadImage) as info:
        load_image(tmp_path / "folder.png")
    assert (info.value.path, info.value.reason) == (str(tmp_path / "folder.png"), "not a regular file")


def test_draft_decodes_a_jpeg_at_a_reduced_scale_not_below_the_size(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray((np.random.default_rng(5).random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
    assert load_image(path).size == (64, 64)
    assert load_image(path, draft=16).size == (16, 16)  # 1/4 scale
    assert load_image(path, draft=20).size == (32, 32)  # 1/8 would go below 20


def test_decompression_bomb_is_named(tmp_path, monkeypatch):
    path = _write_png(tmp_path / "bomb.png")  # 10 × 12 = 120 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow refuses more than twice this
    with pytest.raises(BadImage) as info:
        load_image(path)
    assert info.value.path == str(path) and info.value.reason.startswith("too large: ")


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_an_empty_decoded_image_is_named(tmp_path, monkeypatch, size):
    path = _write_png(tmp_path / "empty.png")
    monkeypatch.setattr(ImageOps, "exif_transpose", lambda img: Image.new("RGB", size))
    with pytest.raises(BadImage) as info:
        load_image(path)
    assert (info.value.path, info.value.reason) == (str(path), f"empty image of size {size[0]}x{size[1]}")


# -- checkpoints: what each failure says, directory handling, defaults, RNG round trips (from mutmut survivors) ---
class _NotATensor:
    """A pickled object that ``torch.load(weights_only=True)`` refuses."""


def _checkpoint(**extra) -> dict:
    """A minimal complete checkpoint dict of the current format (values are placeholders)."""
    state = {"format": ckpt.FORMAT, "version": ckpt.VERSION}
    state.update({key: {"placeholder": torch.ones(2)} for key in ckpt.REQUIRED_KEYS})
    state.update(extra)
    return state


def _load_error(path) -> ckpt.CheckpointError:
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert info.value.path == str(path), "the error names the file"
    assert repr(str(path)) in str(info.value)
    return info.value


def _torch_error(path) -> Exception:
    try:
        torch.load(path, weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever torch raises is what the message must quote
        return err
    raise AssertionError(f"{path} loads")


def test_load_checkpoint_errors_say_what_is_wrong(tmp_path):
    assert ckpt.load_checkpoint(_save(tmp_path / "good.pt", _checkpoint()))["format"] == ckpt.FORMAT
    assert "does not exist" in str(_load_error(tmp_path / "missing.pt"))

    garbage = tmp_path / "garbage.pt"  # a checkpoint cut in half (a crash during a non-atomic copy)
    whole = _save(tmp_path / "whole.pt", _checkpoint()).read_bytes()
    garbage.write_bytes(whole[: len(whole) // 2])
    err, cause = _load_error(garbage), _torch_error(garbage)
    assert f"({len(whole) // 2} bytes) cannot be read: it is truncated, corrupt or not a torch file" in str(err)
    assert f"({type(cause).__name__}: {str(cause).splitlines()[0]})" in str(err)

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    err, cause = _load_error(empty), _torch_error(empty)
    assert str(cause) == "" and str(err).endswith(f"(0 bytes) cannot be read: it is truncated, corrupt or not a torch "
                                                  f"file ({type(cause).__name__}: )")

    pickled = _save(tmp_path / "pickled.pt", _checkpoint(extra=_NotATensor()))
    detail = next(line.strip() for line in str(_torch_error(pickled)).splitlines() if "Unsupported global" in line)
    assert str(_load_error(pickled)).endswith(
        "holds pickled objects that weights_only loading refuses, so it was not written by visionattn train "
        f"({detail})")

    foreign = _save(tmp_path / "foreign.pt", {f"k{i:02d}": i for i in range(14, 0, -1)})
    want = str(sorted(f"k{i:02d}" for i in range(1, 15))[:12])
    assert f"is not a visionattn training checkpoint (expected format {ckpt.FORMAT!r}, found {want})" in str(
        _load_error(foreign))
    assert "found list)" in str(_load_error(_save(tmp_path / "list.pt", [torch.ones(1)])))

    future = _save(tmp_path / "future.pt", _checkpoint(version=99))
    assert str(_load_error(future)).endswith(
        f": format version 99, this visionattn reads versions {list(ckpt.READABLE_VERSIONS)}")

    partial = _checkpoint()
    dropped = list(ckpt.REQUIRED_KEYS[:2])
    for key in dropped:
        del partial[key]
    assert str(_load_error(_save(tmp_path / "partial.pt", partial))).endswith(f"is incomplete: missing {dropped}")


def test_weights_only_refusal_without_a_detail_line_still_says_why(tmp_path, monkeypatch):
    path = _save(tmp_path / "odd.pt", _checkpoint())

    def refuse(*args, **kwargs):
        raise RuntimeError("Weights only load failed. Something else went wrong.")

    monkeypatch.setattr(ckpt.torch, "load", refuse)
    assert str(_load_error(path)).endswith("so it was not written by visionattn train (unsupported global)")


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_load_latest_lists_every_unreadable_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for step in (1, 2):
        (run / f"ckpt-{step:08d}.pt").write_bytes(b"junk" * step)
    logged = []
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_latest(run, log=logged.append)
    errors = [str(_load_error(run / f"ckpt-{step:08d}.pt")) for step in (2, 1)]  # newest first
    assert info.value.path == str(run)
    assert str(info.value) == f"no readable checkpoint in {str(run)!r}:\n  " + "\n  ".join(errors)
    assert logged == [f"warning: {e}; falling back to the previous checkpoint" for e in errors]


def test_atomic_write_creates_missing_directories(tmp_path):
    path = tmp_path / "a" / "b" / "c.pt"
    ckpt.atomic_save({"w": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))


def test_atomic_write_that_fails_before_the_temp_file_exists_raises_its_own_error(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "open", no_space, raising=False)  # the module's open(): the temp file is never made
    with pytest.raises(OSError, match="No space left on device"):
        ckpt.atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_manager_defaults_and_keep_last_bounds(tmp_path):
    manager = ckpt.CheckpointManager(tmp_path / "runs" / "nested")  # parents are created
    for step in (1, 2, 3, 4):
        manager.save({"step": step}, step)  # is_best defaults to False
    assert sorted(p.name for p in manager.directory.iterdir()) == ["ckpt-00000003.pt", "ckpt-00000004.pt"]
    single = ckpt.CheckpointManager(tmp_path / "single", keep_last=1)
    for step in (1, 2):
        single.save({"step": step}, step, is_best=step == 1)
    assert sorted(p.name for p in single.directory.iterdir()) == ["best.pt", "ckpt-00000002.pt"]
    with pytest.raises(ValueError, match=r"^keep_last: expected >= 1, got 0$"):
        ckpt.CheckpointManager(tmp_path / "none", keep_last=0)


def test_rng_round_trip_keeps_pythons_cached_gaussian_and_the_format():
    random.seed(5)
    random.gauss(0.0, 1.0)  # draws a pair and caches the second (gauss_next)
    np.random.seed(6)
    np.random.standard_normal()  # numpy caches one too (has_gauss)
    state = ckpt.capture_rng()
    assert state["python"]["gauss_next"] is not None and state["numpy"]["has_gauss"] == 1
    assert state["python"]["state"].dtype == torch.int64 and state["numpy"]["state"].dtype == torch.int64
    want = [random.gauss(0.0, 1.0), random.random(), np.random.standard_normal(), float(torch.rand(()))]
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    ckpt.restore_rng(state)
    assert [random.gauss(0.0, 1.0), random.random(), np.random.standard_normal(), float(torch.rand(()))] == want


def test_cuda_rng_states_are_restored_only_on_as_many_devices(monkeypatch):
    """The CUDA branch on a machine without CUDA: ``torch.cuda`` is faked (2 devices), the rest is real."""
    saved = [torch.tensor([1, 2], dtype=torch.uint8), torch.tensor([3, 4], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: list(saved))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append([s.tolist() for s in states]))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    state = ckpt.capture_rng()
    assert [t.tolist() for t in state["cuda"]] == [[1, 2], [3, 4]]
    ckpt.restore_rng(state)
    assert restored == [[[1, 2], [3, 4]]]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # another machine: one GPU
    ckpt.restore_rng(state)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no CUDA at all
    ckpt.restore_rng(state)
    assert ckpt.capture_rng()["cuda"] == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ckpt.restore_rng({**state, "cuda": []})  # a CPU checkpoint on a GPU machine
    ckpt.restore_rng({k: v for k, v in state.items() if k != "cuda"})
    assert restored == [[[1, 2], [3, 4]]], "restored only when the device counts match"
