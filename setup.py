"""Ship rules/ and reports/templates/ inside the wheel, and compile the per-packet kernel when possible.

Data: the product card fixes rules/ and reports/templates/ at the top of the repository; an installed
wheel finds them through importlib.resources at auditor/_data/{rules,templates} (auditor/resources.py).

The compiled kernel: build_ext compiles auditor/capture/kernel.py with mypyc into the extension
module auditor.capture._kernel_native, with the SHA-256 of the kernel.py it was built from embedded
(SOURCE_SHA256). kernel.py itself is always installed and is what runs without the extension
(auditor/capture/native.py chooses at run time). The extension is skipped, with a message, and the
install goes on pure Python:

- when PCAP_AUDIT_PURE=1 is set at install;
- when mypyc cannot be imported (a build without build isolation and without mypy);
- when compiling fails: no C compiler, no Python headers, or anything else.

PCAP_AUDIT_REQUIRE_COMPILED=1 (CI) turns those into errors. An editable install
(``pip install -e .``) builds the extension in place, beside kernel.py; after an edit to kernel.py it
no longer matches and the pure kernel runs until the next ``pip install -e .``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
DATA = {"rules": HERE / "rules", "templates": HERE / "reports" / "templates"}
KERNEL_SOURCE = Path("auditor") / "capture" / "kernel.py"
NATIVE_MODULE = "auditor.capture._kernel_native"  # auditor/capture/native.py imports it by this name
NATIVE_SOURCE = Path("auditor") / "capture" / "_kernel_native.py"  # written for mypyc, then removed


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0")


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


class BuildKernel(build_ext):
    """Compile kernel.py with mypyc, or leave the install pure Python and say why."""

    pure_because = ""

    def finalize_options(self) -> None:
        # mypyc's extensions replace the stand-in before setuptools prepares the list. Without them
        # the stand-in stays declared (so that run() comes, and says why, and an editable install
        # clears its old in-place build) but nothing is built.
        if self.distribution.ext_modules == [STAND_IN]:
            try:
                if _flag("PCAP_AUDIT_PURE"):
                    raise _Skip("PCAP_AUDIT_PURE=1 is set")
                self.distribution.ext_modules = self._mypyc_extensions()
            except (Exception, SystemExit) as e:  # mypyc reports type errors with SystemExit
                self.pure_because = _why(e)
        super().finalize_options()
        if self.pure_because:
            self.extensions = []

    def run(self) -> None:
        if self.pure_because:
            self._pure(self.pure_because)
            return
        try:
            super().run()
        except (Exception, SystemExit) as e:
            self.extensions = []
            self._pure(_why(e))

    def _pure(self, why: str) -> None:
        self.distribution.ext_modules = []
        # No compiled kernel may stay behind: half-built, or from an earlier build (the wheel takes
        # all of build/lib; an editable install imports from the source tree).
        places = [Path(self.build_lib)] + ([HERE] if self.inplace or self.editable_mode else [])
        for where in places:
            for built in (where / NATIVE_SOURCE).parent.glob("_kernel_native*.so"):
                built.unlink()
        if _flag("PCAP_AUDIT_REQUIRE_COMPILED"):
            raise SystemExit(f"pcap-audit: PCAP_AUDIT_REQUIRE_COMPILED=1 but the kernel is not compiled: {why}")
        print(f"pcap-audit: installing the pure-Python kernel ({why}); audits give the same results, "
              "reading about 10 % slower. `pcap-audit --version` names the kernel that runs.", file=sys.stderr)

    def _mypyc_extensions(self) -> list[Extension]:
        try:
            import mypy.version
            from mypyc.build import mypycify
        except ImportError as e:
            raise _Skip(f"mypyc is not available to the build ({e})") from e
        text = (HERE / KERNEL_SOURCE).read_bytes()
        # The compiled module is kernel.py under another name (so that kernel.py stays importable
        # beside it), plus what it was built from. mypyc names a module by its path in the package.
        stamp = (f"\n\n# Added by setup.py to the copy it compiles.\n"
                 f'SOURCE_SHA256: Final = "{hashlib.sha256(text).hexdigest()}"\n'
                 f'BUILT_WITH: Final = "mypyc {mypy.version.__version__}"\n')
        copy = HERE / NATIVE_SOURCE
        copy.write_bytes(text + stamp.encode())
        try:
            exts: list[Extension] = mypycify([str(copy)], opt_level="3", verbose=False,
                                             target_dir=str(HERE / "build" / "mypyc"))
        finally:
            copy.unlink()
        return exts


class _Skip(Exception):
    """The kernel is not compiled, for a reason that is not an error."""


def _why(e: BaseException) -> str:
    if isinstance(e, _Skip):
        return str(e)
    said = " ".join(str(e).split())
    return f"compiling it failed: {type(e).__name__}: {said[:150]}{'...' if len(said) > 150 else ''}"


# A stand-in: BuildKernel puts mypyc's extensions in its place. Declaring one makes build_ext run
# at all, and the wheel platform-specific.
STAND_IN = Extension(NATIVE_MODULE, sources=[])


setup(
    cmdclass={"build_py": BuildWithData, "build_ext": BuildKernel},
    ext_modules=[STAND_IN],
)
