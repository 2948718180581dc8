"""Commands that read a checkpoint exit with code 2 and one line ``visionattn CMD: error: ...`` on stderr when the
file is garbage, never with a traceback (issue 19: narrowing any of their ``except`` clauses passed every test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionattn
from visionattn.cli import main

# a subprocess imports the same visionattn as this test (the source tree, or a mutation tool's copy of it)
SOURCE_ROOT = str(Path(visionattn.__file__).resolve().parents[1])

GARBAGE = {
    "4-bytes": b"\x00\xffPK",
    "text": b"this is not a checkpoint\n",
    "empty": b"",
}


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _argv(command: str, bad: Path, tmp_path: Path) -> list[str]:
    if command == "predict":
        return ["predict", str(bad), str(_image(tmp_path))]
    if command == "eval":
        return ["eval", str(bad)]
    return ["train", "--resume", str(bad), "--run-dir", str(tmp_path / "run")]


def _check_one_line_error(command: str, code: int, err: str, bad: Path) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"visionattn {command}: error: "), lines[0]
    assert bad.name in lines[0], "the message names the file"
    assert "Traceback" not in err


@pytest.mark.parametrize("kind", list(GARBAGE))
@pytest.mark.parametrize("command", ["predict", "eval", "train"])
def test_garbage_checkpoint_is_exit_2_with_one_line(tmp_path, capsys, command, kind):
    bad = tmp_path / f"{kind}.pt"
    bad.write_bytes(GARBAGE[kind])
    code = main(_argv(command, bad, tmp_path))
    out, err = capsys.readouterr()
    _check_one_line_error(command, code, err, bad)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), "nothing was trained"


def test_garbage_checkpoint_in_a_real_process(tmp_path, command="predict"):
    """The same through ``python -m visionattn`` (the console script's path): the exit status is 2. (One command:
    the in-process test covers all three; this one checks ``__main__``'s exit status, ~4 s on an idle machine.)"""
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(GARBAGE["4-bytes"])
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([SOURCE_ROOT, os.environ.get("PYTHONPATH", "")])}
    # (the current directory is kept: a mutation tool's copy is configured by the pyproject.toml found there)
    proc = subprocess.run([sys.executable, "-m", "visionattn", *_argv(command, bad, tmp_path)], capture_output=True,
                          text=True, timeout=180, env=env)
    _check_one_line_error(command, proc.returncode, proc.stderr, bad)
