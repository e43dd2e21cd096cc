"""Ship rules/ and reports/templates/ inside the wheel, and compile the hot path when possible.

Data: the product card fixes rules/ and reports/templates/ at the top of the repository; an installed
wheel finds them through importlib.resources at auditor/_data/{rules,templates} (auditor/resources.py).

The compiled hot path: build_ext compiles the modules of COMPILED with mypyc, as one group (one shared
library, GROUP), each to the module named beside it, with the SHA-256 of the source it was built from
embedded (SOURCE_SHA256). In each compiled copy, imports of the other modules of COMPILED are turned
to their compiled builds, so that compiled code calls compiled code, and header reads through a
struct are turned to reads of the bytes by index (``unrolled_reads``). The Python modules themselves
are always installed and are what runs without the compiled ones (auditor/capture/native.py chooses
at run time, all or none). Compiling more: a line in COMPILED, and the same in native.py's.

The compiled modules are skipped, with a message, and the install goes on pure Python:

- when PCAP_AUDIT_PURE=1 is set at install;
- when mypyc cannot be imported (a build without build isolation and without mypy);
- when compiling fails: no C compiler, no Python headers, or anything else.

PCAP_AUDIT_REQUIRE_COMPILED=1 (CI) turns those into errors. An editable install
(``pip install -e .``) builds the extensions in place, beside the sources; after an edit to one of
them it no longer matches and the Python modules run until the next ``pip install -e .``.
"""

from __future__ import annotations

import ast
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
COMPILED = {
    # The Python module -> the module it is compiled to (auditor/capture/native.py's COMPILED).
    "auditor.capture.kernel": "auditor.capture._kernel_native",  # framing and the per-packet path
    "auditor.addrtext": "auditor._addrtext_native",  # packed addresses as text
    "auditor.dnswire": "auditor._dnswire_native",  # the DNS answer reader (name evidence)
    "auditor.nametable": "auditor._nametable_native",  # name evidence, per record with a payload
    "auditor.flow": "auditor._flow_native",  # a flow's accounting of each closed connection
    "auditor.record": "auditor._record_native",  # the packet record the kernel makes and the core reads
    "auditor.report.flowscan": "auditor.report._flowscan_native",  # the page's pass over the flows
    "auditor.report.jsonscan": "auditor.report._jsonscan_native",  # the JSON export's pass over the flows
    # Application identification (a connection's first bytes, when it closes) and its signatures.
    "auditor.apps": "auditor._apps_native",
    **{f"auditor.app_signatures.{m}": f"auditor.app_signatures._{m}_native"
       for m in ("common", "citrix", "web", "windows", "infrastructure", "dispatch")},
    # The conversation core (auditor/conversations/__init__.py hands out the build that runs).
    **{f"auditor.conversations.{m}": f"auditor.conversations._{m}_native"
       for m in ("state", "tcp", "related", "results", "lane", "chunks", "builder")},
}
GROUP = "auditor._native"
"""mypyc's one shared library for all of them (auditor/_native__mypyc.*.so)."""


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
    """Compile the modules of COMPILED with mypyc, or leave the install pure Python and say why."""

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
            for name in [*COMPILED.values(), GROUP]:
                for built in _path(where, name).parent.glob(name.rsplit(".", 1)[1] + "*.so"):
                    built.unlink()
        if _flag("PCAP_AUDIT_REQUIRE_COMPILED"):
            raise SystemExit(f"pcap-audit: PCAP_AUDIT_REQUIRE_COMPILED=1 but the hot path is not compiled: {why}")
        print(f"pcap-audit: installing the pure-Python kernel ({why}); audits give the same results, "
              "reading takes about two thirds more CPU. `pcap-audit --version` names the kernel that runs.", file=sys.stderr)

    def _mypyc_extensions(self) -> list[Extension]:
        try:
            import mypy.version
            from mypyc.build import mypycify
        except ImportError as e:
            raise _Skip(f"mypyc is not available to the build ({e})") from e
        # Each compiled module is its source under another name (so that the Python module stays
        # importable beside it), plus what it was built from. mypyc names a module by its path.
        copies = []
        try:
            for name, native in COMPILED.items():
                text = _path(HERE, name).read_bytes()
                stamp = (f"\n\n# Added by setup.py to the copy it compiles.\n"
                         f'SOURCE_SHA256 = "{hashlib.sha256(text).hexdigest()}"\n'
                         f'BUILT_WITH = "mypyc {mypy.version.__version__}"\n')
                copy = _path(HERE, native)
                copy.write_text(unrolled_reads(compiled_imports(text.decode(), name)) + stamp, encoding="utf-8")
                copies.append(copy)
            exts: list[Extension] = mypycify([str(c) for c in copies], opt_level="3", verbose=False,
                                             group_name=GROUP, target_dir=str(HERE / "build" / "mypyc"))
        finally:
            for copy in copies:
                copy.unlink()
        return exts


def _path(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def compiled_imports(text: str, name: str, compiled: dict[str, str] = COMPILED) -> str:
    """``text`` (the module ``name``) with its imports of modules of ``compiled`` turned to their compiled
    builds (``from auditor.a import b`` -> ``from auditor._a_native import b``, ``from auditor import
    a`` -> ``from auditor import _a_native as a``), each on the lines it was on."""
    lines = text.splitlines(keepends=True)
    for node in sorted(ast.walk(ast.parse(text)), key=lambda n: -getattr(n, "lineno", 0)):
        new: ast.stmt | None = None
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [ast.alias(compiled[f"{node.module}.{a.name}"].rsplit(".", 1)[1], a.asname or a.name)
                     if f"{node.module}.{a.name}" in compiled else a for a in node.names]
            if node.module in compiled or names != node.names:
                new = ast.ImportFrom(compiled.get(node.module, node.module), names, 0)
        elif isinstance(node, ast.Import) and any(a.name in compiled for a in node.names):
            if any(a.name in compiled and not a.asname for a in node.names):
                raise _Skip(f"{name}: write `import {node.names[0].name} as x` or `from ... import`, "
                            "which setup.py can turn to the compiled module")
            new = ast.Import([ast.alias(compiled.get(a.name, a.name), a.asname) for a in node.names])
        if new is not None:
            _put(lines, node, ast.unparse(new))
    return "".join(lines)


def _put(lines: list[str], node: ast.stmt, text: str) -> None:
    """Put ``text`` (one line) in the place of the statement ``node`` in ``lines`` (the source's lines),
    followed by as many line ends as the statement spanned: every other line stays where it was."""
    assert node.end_lineno is not None
    lines[node.lineno - 1:node.end_lineno] = [" " * node.col_offset + text + "\n" * (node.end_lineno - node.lineno + 1)]


_ORDERS = {"!": True, ">": True, "<": False}
"""struct byte-order prefixes unrolled_reads understands -> big-endian (native order is not unrolled)."""
_SIZES = {"B": 1, "H": 2, "I": 4, "Q": 8}


def struct_fields(fmt: str) -> list[tuple[int, int, str]] | None:
    """The fields of a struct format as (offset, size, kind): kind "u" an unsigned big-endian integer,
    "l" a little-endian one, "s" bytes. None when the format has anything else (native order or
    alignment, signed or floating-point fields)."""
    if not fmt or fmt[0] not in _ORDERS:
        return None
    big = _ORDERS[fmt[0]]
    out: list[tuple[int, int, str]] = []
    at = 0
    count = ""
    for ch in fmt[1:]:
        if ch.isdigit():
            count += ch
            continue
        n = int(count) if count else 1
        count = ""
        if ch == "x":
            at += n
        elif ch == "s":
            out.append((at, n, "s"))
            at += n
        elif ch in _SIZES:
            for _ in range(n):
                out.append((at, _SIZES[ch], "u" if big else "l"))
                at += _SIZES[ch]
        else:
            return None
    return out


def _field_text(buf: str, base: str, shift: int, size: int, kind: str) -> str:
    def at(i: int) -> str:
        k = shift + i
        return f"{buf}[{base} + {k}]" if k else f"{buf}[{base}]"
    if kind == "s":
        return f"{buf}[{base} + {shift}:{base} + {shift + size}]" if shift else f"{buf}[{base}:{base} + {size}]"
    if size == 1:
        return at(0)
    order = range(size) if kind == "u" else range(size - 1, -1, -1)
    parts = [at(i) + (f" << {8 * (size - 1 - j)}" if j < size - 1 else "") for j, i in enumerate(order)]
    return " | ".join(parts)


def unrolled_reads(text: str) -> str:
    """``text`` with each statement ``a, b, ... = NAME(buf, offset)``, where NAME is a module-level
    ``struct.Struct("<format>").unpack_from`` of a format struct_fields reads, turned to reads of
    the bytes by index (``a = buf[offset + 12] << 8 | buf[offset + 13]; ...``), on the lines it was
    on. Compiled by mypyc these make no tuple and no integer objects (a struct call makes both);
    interpreted they are slower than the struct call, so only the compiled copy has them, and the
    Python module keeps the one description of each header, its format. Targets named ``_...`` are
    not read. Left as it is: a statement whose buffer or offset is not a plain name (or name plus a
    number), or whose targets are read by its arguments."""
    tree = ast.parse(text)
    formats = {name: fields for name, fmt in struct_formats(tree).items()
               if (fields := struct_fields(fmt)) is not None}
    lines = text.splitlines(keepends=True)
    for node in sorted(ast.walk(tree), key=lambda n: -getattr(n, "lineno", 0)):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple)
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and node.value.func.id in formats and len(node.value.args) == 2 and not node.value.keywords):
            continue
        names = [t.id if isinstance(t, ast.Name) else None for t in node.targets[0].elts]
        fields = formats[node.value.func.id]
        buf, off = node.value.args
        base, shift = off, 0
        if isinstance(off, ast.BinOp) and isinstance(off.op, ast.Add) and isinstance(off.right, ast.Constant) \
                and isinstance(off.right.value, int):
            base, shift = off.left, off.right.value
        if (None in names or len(names) != len(fields) or not isinstance(buf, ast.Name)
                or not isinstance(base, ast.Name) or {buf.id, base.id} & set(names)):
            continue
        reads = [f"{n} = {_field_text(buf.id, base.id, shift + at, size, kind)}"
                 for n, (at, size, kind) in zip(names, fields, strict=True) if n and not n.startswith("_")]
        _put(lines, node, "; ".join(reads))
    return "".join(lines)


def struct_formats(tree: ast.Module) -> dict[str, str]:
    """A module's ``NAME = struct.Struct("<format>").unpack_from`` (annotated or not): name -> format."""
    out = {}
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        value = getattr(node, "value", None)
        if (isinstance(target, ast.Name) and isinstance(value, ast.Attribute) and value.attr == "unpack_from"
                and isinstance(value.value, ast.Call) and ast.unparse(value.value.func) == "struct.Struct"
                and len(value.value.args) == 1 and isinstance(value.value.args[0], ast.Constant)
                and isinstance(value.value.args[0].value, str)):
            out[target.id] = value.value.args[0].value
    return out


class _Skip(Exception):
    """The kernel is not compiled, for a reason that is not an error."""


def _why(e: BaseException) -> str:
    if isinstance(e, _Skip):
        return str(e)
    said = " ".join(str(e).split())
    return f"compiling it failed: {type(e).__name__}: {said[:150]}{'...' if len(said) > 150 else ''}"


# A stand-in: BuildKernel puts mypyc's extensions in its place. Declaring one makes build_ext run
# at all, and the wheel platform-specific.
STAND_IN = Extension(GROUP, sources=[])


if __name__ == "__main__":  # as pip's build backend and ``python setup.py`` run it (tests read it)
    setup(
        cmdclass={"build_py": BuildWithData, "build_ext": BuildKernel},
        ext_modules=[STAND_IN],
    )
