"""Which per-packet kernel runs: the compiled build of capture/kernel.py, or kernel.py itself.

An install with a C compiler builds kernel.py native with mypyc (setup.py) as the module
``auditor.capture._kernel_native``, and embeds the SHA-256 of the kernel.py it was compiled from.
kernel.py itself is always installed: it is the reference, and it runs

- when no compiled module was built (no compiler, or ``PCAP_AUDIT_PURE=1`` at install);
- when ``PCAP_AUDIT_PURE=1`` is set at run time;
- when the compiled module was built from another kernel.py than the one beside it (an editable
  install, ``pip install -e .``, after an edit to kernel.py: reinstalling rebuilds it), so that an
  edit always takes effect and a stale build never runs unnoticed.

Both give the same records (tests/test_kernel_native.py runs the kernel tests against both).
``pcap-audit --version`` names the kernel that runs (``KERNEL.description``).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from auditor.capture import kernel as pure

NATIVE_MODULE = "auditor.capture._kernel_native"
"""The module name setup.py compiles kernel.py to."""
PURE_ENV = "PCAP_AUDIT_PURE"
REQUIRE_ENV = "PCAP_AUDIT_REQUIRE_COMPILED"
"""Set by CI: its install must have compiled the kernel (setup.py and the tests fail otherwise)."""


def source_sha256(text: bytes) -> str:
    """What setup.py embeds in the compiled module as SOURCE_SHA256: the hash of kernel.py's bytes."""
    return hashlib.sha256(text).hexdigest()


@dataclass(frozen=True)
class KernelChoice:
    module: ModuleType
    """capture/kernel.py, or its compiled build: both define Kernel, KEEP_FIRST, checksum_bad..."""
    compiled: bool
    description: str
    """What ``--version`` prints after "kernel: "."""


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """Whether the variable is set to something else than empty or 0 (as setup.py reads it)."""
    return env.get(name, "").strip() not in ("", "0")


def wants_pure(env: Mapping[str, str]) -> bool:
    return env_flag(env, PURE_ENV)


def load_native() -> tuple[ModuleType | None, str]:
    """The compiled module if it is installed and was built from the kernel.py beside it; else None
    and why not."""
    try:
        native = importlib.import_module(NATIVE_MODULE)
    except ImportError:
        return None, "no compiled kernel installed"
    try:
        here = source_sha256(Path(pure.__file__).read_bytes())
    except OSError:
        return None, "kernel.py unreadable, so the compiled kernel cannot be checked against it"
    if getattr(native, "SOURCE_SHA256", None) != here:
        return None, ("the compiled kernel was built from another kernel.py: reinstall "
                      "(pip install -e .) to rebuild it")
    return native, ""


def choose(env: Mapping[str, str]) -> KernelChoice:
    if wants_pure(env):
        return KernelChoice(pure, False, f"pure Python ({PURE_ENV}=1)")
    native, why_not = load_native()
    if native is None:
        return KernelChoice(pure, False, f"pure Python ({why_not})")
    return KernelChoice(native, True, f"compiled ({getattr(native, 'BUILT_WITH', 'mypyc')})")


KERNEL = choose(os.environ)
"""The kernel this process runs, chosen once at import."""
