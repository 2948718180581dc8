"""A non-editable install works outside the source tree (issue 10, packaging).

The test builds the wheel from a copy of the source (``pip wheel --no-deps --no-build-isolation``), installs it
into a fresh virtual environment that borrows this environment's dependencies (torch is not reinstalled: a ``.pth``
file points at our site-packages), and, from an empty directory, runs the installed ``visionattn`` command:
``experiment --list`` must find the shipped experiments (package data, not the checkout), and a 5-step
``visionattn train`` must run and write its checkpoint. About 20 s on 2 cores (wheel 3 s, train 14 s), so it is
part of the default suite.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ["visionattn", "experiments", "configs", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore", **extra}


def _run(cmd: list, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel of this source tree installed; returns the venv's bin directory."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building the wheel without build isolation needs setuptools (a dev extra): pip install '.[dev]'")
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_data"))
        elif path.is_file():
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", dist, src], cwd=tmp)
    wheels = sorted(dist.glob("visionattn-*.whl"))
    assert len(wheels) == 1, list(dist.iterdir())

    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(env_dir)
    env_python = env_dir / "bin" / "python"
    purelib = Path(_run([env_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp).stdout.strip())
    ours = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p, "torch").is_dir()]
    assert ours, "torch is not installed in this environment's site-packages"
    (purelib / "_visionattn_test_deps.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", env_python, "install", "-q", "--no-deps", "--no-index",
          wheels[0]], cwd=tmp)
    return env_dir / "bin"


def test_wheel_ships_experiments_and_configs_as_package_data(installed, tmp_path):
    where = _run([installed / "python", "-c",
                  "import visionattn, visionattn.resources as r; print(visionattn.__file__); "
                  "print(r.resource_dir('experiments')); print(r.find_resource('configs', 'default'))"],
                 cwd=tmp_path).stdout.splitlines()
    venv_dir = installed.parent.resolve()
    assert all(Path(line).resolve().is_relative_to(venv_dir) for line in where), where
    assert where[1].endswith(os.path.join("visionattn", "_data", "experiments"))
    shipped = sorted(p.name for p in Path(where[1]).iterdir())
    assert shipped == sorted(p.name for p in (ROOT / "experiments").glob("*.yaml"))
    assert Path(where[2]).read_text() == (ROOT / "configs" / "default.yaml").read_text()


def test_installed_command_lists_experiments_and_trains_outside_the_tree(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listing = _run([installed / "visionattn", "experiment", "--list"], cwd=elsewhere).stdout
    names = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
    assert names and all(f"{name}  (" in listing for name in names), listing
    assert "INVALID" not in listing and str(ROOT) not in listing, listing

    run_dir = elsewhere / "run"
    proc = _run([installed / "visionattn", "train", "--max-steps", "5", "schedule.epochs=1", "run.report=false",
                 "run.num_workers=0", "--run-dir", run_dir], cwd=elsewhere)
    checkpoints = sorted(p.name for p in run_dir.glob("*.pt"))
    assert checkpoints, f"no checkpoint in {run_dir}: {sorted(run_dir.iterdir())}\n{proc.stdout[-2000:]}"
    assert (run_dir / "config.yaml").is_file()


def test_resources_in_the_checkout_by_name_with_clear_errors():
    from visionattn.resources import find_resource, list_resources, resource_dir

    assert resource_dir("experiments") == ROOT / "experiments" and resource_dir("configs") == ROOT / "configs"
    assert find_resource("configs", "default") == find_resource("configs", "default.yaml") == ROOT / "configs" / \
        "default.yaml"
    assert set(list_resources("experiments")) == {p.stem for p in (ROOT / "experiments").glob("*.yaml")}
    with pytest.raises(FileNotFoundError, match=r"no config 'defualt' in .*configs; known: .*did you mean default\?"):
        find_resource("configs", "defualt")
    with pytest.raises(ValueError, match=r"resource kind must be one of \('experiments', 'configs'\), got 'models'"):
        resource_dir("models")
