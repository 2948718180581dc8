"""Build hook (the metadata lives in pyproject.toml): ship the top-level ``experiments/*.yaml`` and
``configs/*.yaml`` as package data under ``visionattn/_data/`` (see ``visionattn/resources.py``). The top-level
folders stay the files people edit in git; an installed wheel reads the copies."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
RESOURCE_KINDS = ("experiments", "configs")


class build_py_with_resources(build_py):  # noqa: N801 - setuptools command naming
    def run(self):
        super().run()
        for kind in RESOURCE_KINDS:
            source = ROOT / kind
            target = Path(self.build_lib) / "visionattn" / "_data" / kind
            for path in sorted(source.rglob("*.y*ml")):  # subfolders too (configs/<task>/...)
                dest = target / path.relative_to(source)
                self.mkpath(str(dest.parent))
                self.copy_file(str(path), str(dest))


setup(cmdclass={"build_py": build_py_with_resources})
