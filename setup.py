"""Ship the top-level rules/ and reports/templates/ inside the wheel as package data.

The product card fixes them at the top of the repository; an installed wheel finds them
through importlib.resources at auditor/_data/{rules,templates} (see auditor/resources.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
DATA = {"rules": HERE / "rules", "templates": HERE / "reports" / "templates"}


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        for name, src in DATA.items():
            dst = Path(self.build_lib) / "auditor" / "_data" / name
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            if not any(dst.iterdir()):
                # A wheel cannot hold an empty folder: keep one file so that the installed
                # package still has the folder auditor.resources looks for.
                (dst / ".bundled").write_text("Copied from the repository at build time.\n")


setup(cmdclass={"build_py": BuildWithData})
