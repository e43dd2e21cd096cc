"""Which build of the hot path runs: the modules compiled by setup.py, or the Python modules themselves.

An install with a C compiler compiles the modules of COMPILED with mypyc (setup.py), as one group,
each to a module of another name (``auditor.capture.kernel`` -> ``auditor.capture._kernel_native``)
with the SHA-256 of the source it was compiled from embedded. The Python modules are always
installed: they are the reference, and they run, all of them,

- when no compiled build is installed (no compiler, or ``PCAP_AUDIT_PURE=1`` at install);
- when ``PCAP_AUDIT_PURE=1`` is set at run time;
- when any compiled module was built from another source than the module beside it (an editable
  install, ``pip install -e .``, after an edit: reinstalling rebuilds them), so that an edit always
  takes effect and a stale build never runs unnoticed.

All or none: the compiled modules import each other's compiled builds (setup.py rewrites those
imports) and hand each other their objects, so a mix is not a build anyone tested; and
``pcap-audit --version`` has one thing to say (``KERNEL.description``, naming the stale module
when there is one). Both give the same results (the tests run against both: tests/conftest.py's
each_kernel).

Adding a module: a line in COMPILED here and in setup.py's, and its users reach it through
``KERNEL.of(name)`` (never by importing it: that is the Python module whichever build runs).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final

COMPILED: Final = {
    # The Python module -> the module setup.py compiles it to (setup.py's COMPILED: the same pairs).
    "auditor.capture.kernel": "auditor.capture._kernel_native",
    "auditor.addrtext": "auditor._addrtext_native",  # packed addresses as text
    "auditor.dnswire": "auditor._dnswire_native",
    "auditor.nametable": "auditor._nametable_native",  # name evidence, per record with a payload
    "auditor.flow": "auditor._flow_native",  # a flow's accounting of each closed connection
    "auditor.record": "auditor._record_native",  # the packet record the kernel makes and the core reads
    "auditor.report.flowscan": "auditor.report._flowscan_native",  # the page's pass over the flows
    "auditor.report.jsonscan": "auditor.report._jsonscan_native",  # the JSON export's pass over the flows
    # Application identification: apps.py (the builder asks it when a connection closes) and its signatures.
    "auditor.apps": "auditor._apps_native",
    **{f"auditor.app_signatures.{m}": f"auditor.app_signatures._{m}_native"
       for m in ("common", "citrix", "web", "windows", "infrastructure", "dispatch")},
    # The conversation core: its package (auditor/conversations/__init__.py) hands out the build that runs.
    **{f"auditor.conversations.{m}": f"auditor.conversations._{m}_native"
       for m in ("state", "tcp", "related", "results", "lane", "chunks", "builder")},
}
PURE_ENV = "PCAP_AUDIT_PURE"
REQUIRE_ENV = "PCAP_AUDIT_REQUIRE_COMPILED"
"""Set by CI: its install must have compiled the modules (setup.py and the tests fail otherwise)."""
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
"""The folder of the ``auditor`` package: the Python modules' sources are found from it, not imported."""


def source_sha256(text: bytes) -> str:
    """What setup.py embeds in a compiled module as SOURCE_SHA256: the hash of its source's bytes."""
    return hashlib.sha256(text).hexdigest()


def source_path(name: str) -> Path:
    """The source file of the Python module ``name`` (auditor.x.y -> <package>/x/y.py)."""
    return PACKAGE_ROOT.joinpath(*name.split(".")[1:]).with_suffix(".py")


@dataclass(frozen=True)
class Build:
    """The modules of COMPILED that run in this process: all compiled, or all the Python ones."""

    modules: Mapping[str, ModuleType]
    """Each module of COMPILED by its Python name -> the module that runs for it."""
    compiled: bool
    description: str
    """What ``--version`` prints after "kernel: "."""

    def of(self, name: str) -> ModuleType:
        return self.modules[name]

    @property
    def module(self) -> ModuleType:
        """The per-packet kernel (capture/kernel.py, or its compiled build): Kernel, KEEP_FIRST..."""
        return self.modules["auditor.capture.kernel"]

    @property
    def dnswire(self) -> ModuleType:
        """The DNS wire reader (auditor/dnswire.py, or its compiled build): read_answers, MalformedDNS."""
        return self.modules["auditor.dnswire"]


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """Whether the variable is set to something else than empty or 0 (as setup.py reads it)."""
    return env.get(name, "").strip() not in ("", "0")


def wants_pure(env: Mapping[str, str]) -> bool:
    return env_flag(env, PURE_ENV)


def pure_modules() -> dict[str, ModuleType]:
    return {name: importlib.import_module(name) for name in COMPILED}


def load_native() -> tuple[dict[str, ModuleType] | None, str]:
    """The compiled modules if all are installed and each was built from the source beside it; else
    None and why not."""
    loaded: dict[str, ModuleType] = {}
    for name, native_name in COMPILED.items():
        try:
            native = importlib.import_module(native_name)
        except ImportError:
            return None, "no compiled build installed" if not loaded else f"no compiled build of {name} installed"
        try:
            here = source_sha256(source_path(name).read_bytes())
        except OSError:
            return None, f"the source of {name} is unreadable, so its compiled build cannot be checked"
        if getattr(native, "SOURCE_SHA256", None) != here:
            return None, (f"{name} was compiled from another source: reinstall (pip install -e .) "
                          "to rebuild")
        loaded[name] = native
    return loaded, ""


def choose(env: Mapping[str, str]) -> Build:
    if wants_pure(env):
        return Build(pure_modules(), False, f"pure Python ({PURE_ENV}=1)")
    compiled, why_not = load_native()
    if compiled is None:
        return Build(pure_modules(), False, f"pure Python ({why_not})")
    built_with = {getattr(m, "BUILT_WITH", "mypyc") for m in compiled.values()}
    return Build(compiled, True, f"compiled ({', '.join(sorted(built_with))})")


KERNEL = choose(os.environ)
"""The build this process runs, chosen once at import."""
