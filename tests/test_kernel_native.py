"""Which build of the hot path runs (auditor/capture/native.py): the compiled modules only when each was
built from the source beside it and PCAP_AUDIT_PURE is not set, all or none; --version names it. The
kernel's and the DNS reader's tests themselves run against both builds (conftest.each_kernel:
test_capture_fastpath.py, test_capture_decode.py, test_conversations_lane.py, test_names_lean.py, and the
conversation core's: test_conversations.py, test_chunk_merge.py, test_refusal.py, test_invariance.py);
application identification's compiled build names every test payload, its cuts and mutations and
random bytes as apps.py does (test_apps.py::test_both_builds_identify_alike)."""

from __future__ import annotations

import ast
import dataclasses
import os
import runpy
import subprocess
import sys
import textwrap
import tomllib
import types
from pathlib import Path

import pytest

from auditor import addrtext, apps, dnswire, flow, nametable, record
from auditor.app_signatures import citrix, common, dispatch, infrastructure, web, windows
from auditor.audit import collect
from auditor.capture import kernel, native, open_captures
from auditor.capture.decode import Decoder
from auditor.capture.info import ReadStats
from auditor.conversations import builder, chunks, lane, related, results, state
from auditor.conversations import tcp as conversation_tcp
from auditor.model import PAYLOAD_SNAP
from auditor.report import flowscan, jsonscan
from tests.capture_factory import eth_ipv4_tcp

REPO = Path(__file__).resolve().parent.parent
PURE = {"auditor.capture.kernel": kernel, "auditor.dnswire": dnswire, "auditor.nametable": nametable,
        **{m.__name__: m for m in (addrtext, flow, record, flowscan, jsonscan, state, conversation_tcp, related,
                                   results, lane, chunks, builder, apps, common, citrix, web, windows, infrastructure,
                                   dispatch)}}
SOURCES = {name: native.source_path(name).read_bytes() for name in native.COMPILED}


def _fake_native(monkeypatch: pytest.MonkeyPatch, built_from: dict[str, bytes]) -> dict[str, types.ModuleType]:
    """Installs stand-ins for the compiled modules, each built from ``built_from[name]`` (a module
    missing there: not installed)."""
    fakes = {}
    for name, native_name in native.COMPILED.items():
        if name in built_from:
            fake = types.ModuleType(native_name)
            fake.SOURCE_SHA256 = native.source_sha256(built_from[name])  # type: ignore[attr-defined]
            fake.BUILT_WITH = "mypyc 9.9"  # type: ignore[attr-defined]
            fakes[native_name] = fake
    real = native.importlib.import_module

    def load(name: str) -> types.ModuleType:
        if name not in native.COMPILED.values():
            return real(name)
        if name not in fakes:
            raise ImportError(name)
        return fakes[name]

    monkeypatch.setattr(native.importlib, "import_module", load)
    return {name: fakes[native_name] for name, native_name in native.COMPILED.items() if native_name in fakes}


def test_the_python_modules_are_the_ones_compiled() -> None:
    assert native.pure_modules() == PURE
    assert all(native.source_path(name) == Path(m.__file__ or "").resolve() for name, m in PURE.items())


def test_fresh_build_runs_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = _fake_native(monkeypatch, SOURCES)
    build = native.choose({})
    assert build.modules == fakes and build.compiled and build.description == "compiled (mypyc 9.9)"
    assert build.module is fakes["auditor.capture.kernel"] and build.dnswire is fakes["auditor.dnswire"]
    assert native.choose({"PCAP_AUDIT_PURE": "0"}).modules == fakes


def test_pure_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_native(monkeypatch, SOURCES)
    build = native.choose({"PCAP_AUDIT_PURE": "1"})
    assert build.modules == PURE and not build.compiled
    assert build.description == "pure Python (PCAP_AUDIT_PURE=1)"


@pytest.mark.parametrize("edited", sorted(native.COMPILED))
def test_one_stale_module_runs_all_pure_and_says_which(monkeypatch: pytest.MonkeyPatch, edited: str) -> None:
    # An editable install after an edit to one module: its compiled build is from the old source.
    _fake_native(monkeypatch, {**SOURCES, edited: SOURCES[edited] + b"# an edit\n"})
    build = native.choose({})
    assert build.modules == PURE and not build.compiled
    assert f"{edited} was compiled from another source" in build.description
    assert "pip install -e ." in build.description


def test_no_build_runs_pure(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_native(monkeypatch, {})
    build = native.choose({})
    assert build.modules == PURE and build.description == "pure Python (no compiled build installed)"
    # Half a build (a module added to COMPILED since): pure, naming what is missing.
    first, *rest = native.COMPILED
    _fake_native(monkeypatch, {first: SOURCES[first]})
    build = native.choose({})
    assert build.modules == PURE and f"no compiled build of {rest[0]} installed" in build.description


def test_this_install_runs_what_it_should() -> None:
    compiled, why_not = native.load_native()
    if native.env_flag(os.environ, native.REQUIRE_ENV):  # CI: its install must compile
        assert compiled is not None, why_not
        for name, module in compiled.items():
            assert native.source_sha256(SOURCES[name]) == module.SOURCE_SHA256
        # Native code, not Python functions.
        assert type(compiled["auditor.capture.kernel"].Kernel.walk).__name__ != "function"
        assert type(compiled["auditor.dnswire"].read_answers).__name__ != "function"
        assert type(compiled["auditor.conversations.builder"].ConversationBuilder.feed).__name__ != "function"
    pure = native.wants_pure(os.environ)
    assert native.KERNEL.compiled == (compiled is not None and not pure)
    assert native.KERNEL.modules == (PURE if pure or compiled is None else compiled)


def test_version_names_the_kernel(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PCAP_AUDIT_PURE"}
    env["PYTHONPATH"] = str(REPO)
    run = [sys.executable, "-m", "auditor.cli", "--version"]
    out = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] == f"kernel: {native.choose(env).description}"
    env["PCAP_AUDIT_PURE"] = "1"
    out = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] == "kernel: pure Python (PCAP_AUDIT_PURE=1)"


def test_the_conversation_core_comes_from_the_build_that_runs(each_kernel: types.ModuleType, tmp_path: Path) -> None:
    from auditor import conversations

    assert conversations.ConversationBuilder is native.KERNEL.of("auditor.conversations.builder").ConversationBuilder
    assert conversations.ConversationResult is native.KERNEL.of("auditor.conversations.results").ConversationResult
    assert conversations.merging is native.KERNEL.of("auditor.conversations.chunks")
    # A process chooses once, from its environment: what the audit and the engine find in the package.
    show = ("import auditor.audit, auditor.engine, auditor.conversations as c; "
            "print(c.ConversationBuilder.__module__, c.merging.__name__)")
    env = {k: v for k, v in os.environ.items() if k != "PCAP_AUDIT_PURE"}
    env["PYTHONPATH"] = str(REPO)
    for pure in (False, True):
        if pure:
            env["PCAP_AUDIT_PURE"] = "1"
        out = subprocess.run([sys.executable, "-c", show], cwd=tmp_path, env=env, capture_output=True, text=True,
                             check=True).stdout
        built = native.choose(env).compiled
        assert out.split() == (["auditor.conversations._builder_native", "auditor.conversations._chunks_native"]
                               if built else ["auditor.conversations.builder", "auditor.conversations.chunks"])
        assert built == (not pure and native.load_native()[0] is not None)


def test_decoders_make_the_chosen_kernel(each_kernel: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    dec = Decoder(ReadStats(), 0)
    assert type(dec.kernel) is each_kernel.Kernel
    # KEEP_FIRST is read when a Kernel is made, from the kernel's own module (tests replace it).
    frame = eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "PA", b"\x00" * 3000)
    rec = dec.kernel.decode(frame, 0, len(frame), 1.0, 1, 1)
    assert rec is not None and len(rec.payload) < PAYLOAD_SNAP
    monkeypatch.setattr(each_kernel, "KEEP_FIRST", frozenset(range(256)))
    rec = Decoder(ReadStats(), 0).kernel.decode(frame, 0, len(frame), 1.0, 1, 1)
    assert rec is not None and len(rec.payload) == PAYLOAD_SNAP


NOT_FINAL = {
    # Read when used, on purpose: tests change them (dnswire.py says so; PROGRESS_EVERY, KEEP_FIRST).
    "auditor.dnswire": {"A", "AAAA", "CNAME", "_MAX_NAME_OCTETS", "_MAX_POINTER_HOPS"},
    "auditor.capture.kernel": {"KEEP_FIRST", "PROGRESS_EVERY"},
}
"""Module-level values that compiled functions read and that are not Final (type aliases aside)."""


def _type_alias(value: ast.expr) -> bool:
    """``Slow = Callable[...]``, ``X = A | None``: a type, not a value compiled code reads."""
    return isinstance(value, ast.Subscript) or (isinstance(value, ast.BinOp) and isinstance(value.op, ast.BitOr))


def test_compiled_modules_read_their_constants_as_finals() -> None:
    # mypyc looks a module-level name that is not Final up in the module's dict at every use; a Final
    # one is a C constant or a C static. A constant a compiled function reads must be Final, or
    # listed in NOT_FINAL with why.
    found = {}
    for name in native.COMPILED:
        tree = ast.parse(native.source_path(name).read_text(encoding="utf-8"))
        values = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and not _type_alias(node.value):
                values.update(n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None \
                    and not ast.unparse(node.annotation).startswith(("Final", "TypeAlias")):
                values.add(node.target.id)
        read = {n.id for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)
                for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        not_final = (values & read) - NOT_FINAL.get(name, set())
        if not_final:
            found[name] = sorted(not_final)
    assert found == {}


def test_setup_turns_imports_among_compiled_modules_to_their_builds() -> None:
    # In each compiled copy, setup.py turns imports of the other compiled modules to their compiled
    # builds (compiled code then calls compiled code), keeping every other line where it was.
    setup = runpy.run_path(str(REPO / "setup.py"), run_name="setup")  # defines, does not build
    compiled = {"auditor.pkg.a": "auditor.pkg._a_native", "auditor.pkg.b": "auditor.pkg._b_native"}
    text = textwrap.dedent("""\
        from auditor.pkg.a import (
            X,
            Y as Z,
        )
        from auditor.pkg import b, c
        import auditor.pkg.a as mod_a
        from auditor.other import a

        def f() -> None:
            from auditor.pkg.b import g
        """)
    assert setup["compiled_imports"](text, "auditor.pkg.c", compiled).splitlines() == [
        "from auditor.pkg._a_native import X, Y as Z", "", "",
        "",
        "from auditor.pkg import _b_native as b, c",
        "import auditor.pkg._a_native as mod_a",
        "from auditor.other import a",
        "",
        "def f() -> None:",
        "    from auditor.pkg._b_native import g"]
    with pytest.raises(Exception, match=r"import auditor\.pkg\.a as"):
        setup["compiled_imports"]("import auditor.pkg.a\n", "auditor.pkg.c", compiled)
    # The lists of modules compiled agree.
    assert setup["COMPILED"] == native.COMPILED


SETUP = runpy.run_path(str(REPO / "setup.py"), run_name="setup")  # defines, does not build
KERNEL_TEXT = (REPO / "auditor" / "capture" / "kernel.py").read_text(encoding="utf-8")
KERNEL_FORMATS: dict[str, str] = SETUP["struct_formats"](ast.parse(KERNEL_TEXT))
"""The kernel's module-level struct readers, name -> format (setup.py's struct_formats)."""


@pytest.mark.parametrize("fmt", sorted(set(KERNEL_FORMATS.values())))
def test_setup_unrolls_struct_reads_to_the_same_values(fmt: str) -> None:
    # The compiled copy of the kernel reads its headers byte by byte where the Python module calls a
    # struct (setup.py's unrolled_reads): the same fields, at any offset, in both byte orders.
    import random
    import struct

    setup = SETUP
    assert setup["struct_fields"](fmt) is not None  # every format of the kernel is one it unrolls
    n = len(struct.unpack_from(fmt, bytes(struct.calcsize(fmt))))
    names = ", ".join(f"v{i}" for i in range(n)) + ("," if n == 1 else "")  # "v0, = ..." for one field
    text = textwrap.dedent(f"""\
        import struct
        from typing import Final
        _S: Final = struct.Struct({fmt!r}).unpack_from

        def f(buf, off):
            {names} = _S(buf, off)
            return ({names})

        def g(buf, off):
            {names} = _S(buf, off + 3)
            return ({names})
        """)
    unrolled = setup["unrolled_reads"](text)
    assert "_S(buf" not in unrolled and len(unrolled.splitlines()) == len(text.splitlines())
    built: dict[str, object] = {}
    exec(compile(unrolled, "unrolled", "exec"), built)  # our own code, made from the format above
    rng = random.Random(fmt)
    for _ in range(200):
        buf = bytes(rng.randrange(256) for _ in range(struct.calcsize(fmt) + 8))
        off = rng.randrange(5)
        assert built["f"](buf, off) == struct.unpack_from(fmt, buf, off)  # type: ignore[operator]
        assert built["g"](buf, off) == struct.unpack_from(fmt, buf, off + 3)  # type: ignore[operator]


def test_setup_unrolls_the_kernels_header_reads_and_leaves_what_it_cannot() -> None:
    setup = SETUP
    unrolled = setup["unrolled_reads"](KERNEL_TEXT)
    assert len(unrolled.splitlines()) == len(KERNEL_TEXT.splitlines())  # tracebacks name the same lines
    called = {n.func.id for n in ast.walk(ast.parse(unrolled))
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    # Every per-packet header read: the pcap record and pcapng packet block headers, Ethernet, VLAN,
    # IPv4, IPv6, TCP and UDP fields.
    for name in ("_REC_BE", "_REC_LE", "_EPB_BE", "_EPB_LE", "_E4", "_E4V", "_I4", "_I6", "_SEQACK", "_ULEN_SUM"):
        assert name in KERNEL_FORMATS and name not in called, name
    # Left as they are: native byte order, signed fields, targets the arguments read, an offset
    # that is not a name plus a number.
    text = textwrap.dedent("""\
        import struct
        _N = struct.Struct("=HH").unpack_from
        _H = struct.Struct("!hH").unpack_from
        _U = struct.Struct("!HH").unpack_from

        def f(buf, off, a):
            x, y = _N(buf, off)
            x, y = _H(buf, off)
            off, y = _U(buf, off)
            x, y = _U(buf, a[0])
            x, _y = _U(buf, off + 2)
        """)
    out = setup["unrolled_reads"](text).splitlines()
    assert out[:-1] == text.splitlines()[:-1]
    assert out[-1] == "    x = buf[off + 2] << 8 | buf[off + 3]"


def _audit_samples() -> list[object]:
    out = []
    for path in sorted((REPO / "sample_pcaps").glob("*.pcap*")):
        conv, names = collect(open_captures([str(path)]), frozenset())
        # Each build's Flow is a class of its own (auditor/flow.py): the flows compare as their fields.
        flows = sorted((k, f.__reduce__()[1]) for k, f in conv.flows.items())
        out.append((path.name, flows, dataclasses.asdict(conv.stats), names.stats))
    return out


def test_both_builds_audit_the_samples_alike(monkeypatch: pytest.MonkeyPatch,
                                             compiled_kernel: dict[str, types.ModuleType]) -> None:
    monkeypatch.setattr(native, "KERNEL", native.Build(PURE, False, "pure"))
    pure = _audit_samples()
    monkeypatch.setattr(native, "KERNEL", native.Build(compiled_kernel, True, "compiled"))
    assert _audit_samples() == pure


def _imported(name: str) -> set[str]:
    """The modules a module of the package imports, under TYPE_CHECKING too (the type check that
    compiles it follows those), and the packages they are in."""
    path = REPO.joinpath(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if REPO.joinpath(*node.module.split("."), a.name).with_suffix(".py").exists()
                         or REPO.joinpath(*node.module.split("."), a.name, "__init__.py").exists())
    return {".".join(m.split(".")[:k]) for m in found for k in range(1, m.count(".") + 2)}


def test_the_compiled_modules_type_check_without_the_dependencies_stubs() -> None:
    # pip builds in an environment of its own (setuptools, wheel, mypy): a compiled module whose
    # imports reach PyYAML, jinja2 or pandas fails the build's type check there for want of their
    # stubs, and the install goes on in pure Python. Only modules mypy is told to take untyped pass.
    untyped = {m.rstrip(".*") for o in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
               if o.get("ignore_missing_imports") for m in o["module"]}
    seen: set[str] = set()
    todo = list(native.COMPILED)
    outside: set[tuple[str, str]] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for m in _imported(name):
            top = m.split(".")[0]
            if top == "auditor":
                todo.append(m)
            elif top not in sys.stdlib_module_names and top not in untyped:
                outside.add((name, m))
    assert "auditor.flow" in seen and "auditor.model" in seen
    assert not outside


def test_addresses_read_alike_in_either_build() -> None:
    import random
    import socket

    rng = random.Random(7)
    v4 = [bytes(4), b"\xff" * 4, bytes([10, 0, 0, 1]), bytes([192, 168, 100, 255]),
          *(rng.randbytes(4) for _ in range(2000))]
    v6 = [bytes(16), bytes(15) + b"\x01", b"\xfe\x80" + bytes(13) + b"\x01",
          bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3]),
          *(rng.randbytes(16) for _ in range(500))]
    for module in {native.KERNEL.of("auditor.addrtext"), addrtext}:
        assert [module.addr_str(p) for p in v4] == [socket.inet_ntop(socket.AF_INET, p) for p in v4]
        assert [module.addr_str(p) for p in v6] == [socket.inet_ntop(socket.AF_INET6, p) for p in v6]
        assert module.addr_str(v4[5]) is module.addr_str(v4[5])  # cached
        assert [module.ipv4_at(b"\x00" + p + b"\x00", 1) for p in v4] == [module.addr_str(p) for p in v4]
        for bad in (b"", bytes(3), bytes(5), bytes(17)):
            with pytest.raises(ValueError):
                module.addr_str(bad)
