"""Which kernel runs (auditor/capture/native.py): the compiled build of kernel.py only when it was built
from the kernel.py beside it and PCAP_AUDIT_PURE is not set; --version names it. The kernel tests
themselves run against both kernels (conftest.each_kernel: test_capture_fastpath.py,
test_capture_decode.py, test_conversations_lane.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from auditor.audit import collect
from auditor.capture import kernel, native, open_captures
from auditor.capture.decode import Decoder
from auditor.capture.info import ReadStats
from auditor.model import PAYLOAD_SNAP
from tests.capture_factory import eth_ipv4_tcp

REPO = Path(__file__).resolve().parent.parent
SOURCE = Path(kernel.__file__).read_bytes()


def _fake_native(monkeypatch: pytest.MonkeyPatch, built_from: bytes | None) -> types.ModuleType:
    """Installs a stand-in for the compiled module, built from ``built_from`` (None: not installed)."""
    fake = types.ModuleType(native.NATIVE_MODULE)
    fake.SOURCE_SHA256 = native.source_sha256(built_from or b"")  # type: ignore[attr-defined]
    fake.BUILT_WITH = "mypyc 9.9"  # type: ignore[attr-defined]
    real = native.importlib.import_module

    def load(name: str) -> types.ModuleType:
        if name != native.NATIVE_MODULE:
            return real(name)
        if built_from is None:
            raise ImportError(name)
        return fake

    monkeypatch.setattr(native.importlib, "import_module", load)
    return fake


def test_fresh_build_runs_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_native(monkeypatch, SOURCE)
    choice = native.choose({})
    assert choice.module is fake and choice.compiled and choice.description == "compiled (mypyc 9.9)"
    assert native.choose({"PCAP_AUDIT_PURE": "0"}).module is fake


def test_pure_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_native(monkeypatch, SOURCE)
    choice = native.choose({"PCAP_AUDIT_PURE": "1"})
    assert choice.module is kernel and not choice.compiled
    assert choice.description == "pure Python (PCAP_AUDIT_PURE=1)"


def test_stale_build_runs_pure_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # An editable install after an edit to kernel.py: the compiled module is from the old source.
    _fake_native(monkeypatch, SOURCE + b"# an edit\n")
    choice = native.choose({})
    assert choice.module is kernel and not choice.compiled
    assert "built from another kernel.py" in choice.description and "pip install -e ." in choice.description


def test_no_build_runs_pure(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_native(monkeypatch, None)
    choice = native.choose({})
    assert choice.module is kernel and choice.description == "pure Python (no compiled kernel installed)"


def test_this_install_runs_what_it_should() -> None:
    compiled, why_not = native.load_native()
    if native.env_flag(os.environ, native.REQUIRE_ENV):  # CI: its install must compile
        assert compiled is not None, why_not
        assert native.source_sha256(SOURCE) == compiled.SOURCE_SHA256
        assert type(compiled.Kernel.decode).__name__ != "function"  # native code, not a Python function
    pure = native.wants_pure(os.environ)
    assert native.KERNEL.compiled == (compiled is not None and not pure)
    assert native.KERNEL.module is (kernel if pure or compiled is None else compiled)


def test_version_names_the_kernel(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PCAP_AUDIT_PURE"}
    env["PYTHONPATH"] = str(REPO)
    run = [sys.executable, "-m", "auditor.cli", "--version"]
    out = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] == f"kernel: {native.choose(env).description}"
    env["PCAP_AUDIT_PURE"] = "1"
    out = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] == "kernel: pure Python (PCAP_AUDIT_PURE=1)"


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


def _audit_samples() -> list[object]:
    out = []
    for path in sorted((REPO / "sample_pcaps").glob("*.pcap*")):
        conv, names = collect(open_captures([str(path)]), frozenset())
        out.append((path.name, sorted(conv.flows.items()), conv.stats, names.stats))
    return out


def test_both_kernels_audit_the_samples_alike(monkeypatch: pytest.MonkeyPatch,
                                              compiled_kernel: types.ModuleType) -> None:
    monkeypatch.setattr(native, "KERNEL", native.KernelChoice(kernel, False, "pure"))
    pure = _audit_samples()
    monkeypatch.setattr(native, "KERNEL", native.KernelChoice(compiled_kernel, True, "compiled"))
    assert _audit_samples() == pure
