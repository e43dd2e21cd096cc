"""A NetScaler trace goes through the whole product like the pcap of its frames, without Wireshark.

capture/__init__.py names the trace by its signature record (nstrace.identify), a second process
converts its frames to pcap into a pipe (foreign.NstraceStream; decompressing it into a temporary file
first when compressed), and the fast reader reads the pipe; the input keeps its own path, SHA-256,
size, compression and format. Wireshark's
tools are hidden from the product here (shutil.which answers None), to show none is needed."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.capture import CaptureSet
from auditor.cli import main
from tests.capture_factory import WEB_CLIENT, WEB_DNS, WEB_SERVER, eth_ipv4_tcp, web_session, write_pcap
from tests.nstrace_factory import write_nstrace

C, S, DNS = WEB_CLIENT, WEB_SERVER, WEB_DNS
ROLES = f"roles:\n  User Device: [{C}]\n  StoreFront Server: [sf.corp.example]\n"
VERSIONS = ["nstrace10", "nstrace20", "nstrace30", "nstrace35"]


def _frames() -> list[tuple[float, bytes]]:
    t = 1_700_000_000.0
    # Many pages' worth: ICA attempts on more client ports, a second apart.
    more = [(t + 10 + i, eth_ipv4_tcp(C, S, 52000 + i, 2598, "S")) for i in range(400)]
    return [*web_session(t), *more]


@pytest.fixture
def no_wireshark(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No captype, editcap or tshark on the PATH; copies go to a temporary folder checked empty after."""
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name in ("captype", "editcap", "tshark")
                        else real(name, *a, **k))
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


def _audit(tmp: Path, *captures: Path) -> dict[str, Any]:
    roles = tmp / "roles.yaml"
    roles.write_text(ROLES)
    out = tmp / "audit.json"
    result = CliRunner().invoke(main, [*map(str, captures), "--roles", str(roles), "--json", str(out), "--no-html",
                                       "-q"])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def _flows(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted((f["initiator"], f["responder"], f["protocol"], f["port"], f["outcome"], f["connections"],
                   f["packets"], f["bytes"], f["direction_evidence"], f["classification"], f["first_frame"]["frame"])
                  for f in doc["flows"])


@pytest.mark.parametrize("version", VERSIONS)
def test_a_netscaler_trace_is_audited_like_the_pcap_of_its_frames(tmp_path: Path, version: str,
                                                                   no_wireshark: Path) -> None:
    trace = write_nstrace(tmp_path / "nstrace1.cap", _frames(), version)
    data = trace.read_bytes()
    mine = _audit(tmp_path, trace)
    expected = _audit(tmp_path, write_pcap(tmp_path / "same.pcap", _frames()))
    assert _flows(mine) == _flows(expected) and len(mine["flows"]) == 5
    assert [f["classification"] for f in mine["flows"] if f["port"] == 443] == ["expected"]  # by the Host name
    (inp,) = mine["inputs"]
    assert inp["format"] == version and inp["packets"] == len(_frames()) and inp["compression"] == "none"
    assert inp["sha256"] == hashlib.sha256(data).hexdigest() and inp["size"] == len(data)
    assert inp["warnings"] == [f"NetScaler trace {version[7]}.{version[8]} capture: read as pcap-audit "
                               "converted it, frame for frame"]
    assert trace.read_bytes() == data  # never modified


def test_a_compressed_and_a_damaged_trace(tmp_path: Path, no_wireshark: Path) -> None:
    trace = write_nstrace(tmp_path / "t.cap", _frames(), "nstrace20")
    packed = tmp_path / "t.cap.gz"
    packed.write_bytes(gzip.compress(trace.read_bytes()))
    doc = _audit(tmp_path, packed)
    (inp,) = doc["inputs"]
    assert inp["format"] == "nstrace20" and inp["compression"] == "gzip" and inp["packets"] == len(_frames())
    assert inp["sha256"] == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert _flows(doc) == _flows(_audit(tmp_path, trace))
    # Cut inside its last page: what came before is audited, and the input says where it stopped.
    cut = tmp_path / "cut.cap"
    cut.write_bytes(trace.read_bytes()[: len(trace.read_bytes()) - 3000])
    (inp,) = _audit(tmp_path, cut)["inputs"]
    assert 0 < inp["packets"] < len(_frames())
    assert any("stopped after packet" in w for w in inp["warnings"]), inp["warnings"]
    # Compressed data that ends early: also what came before, with both warnings.
    short = tmp_path / "short.cap.gz"
    short.write_bytes(packed.read_bytes()[:-40])
    (inp,) = _audit(tmp_path, short)["inputs"]
    assert 0 < inp["packets"] <= len(_frames()) and any("gzip data is damaged" in w for w in inp["warnings"])


def test_a_trace_among_pcaps_keeps_its_place_and_frame_numbers(tmp_path: Path, no_wireshark: Path) -> None:
    pcap = write_pcap(tmp_path / "a.pcap", _frames()[:3])
    trace = write_nstrace(tmp_path / "b.cap", _frames()[3:], "nstrace35")
    doc = _audit(tmp_path, pcap, trace)
    assert [i["format"] for i in doc["inputs"]] == ["pcap", "nstrace35"]
    records = list(CaptureSet([str(pcap), str(trace)]))
    assert [(r.input_index, r.frame) for r in records][2:4] == [(0, 3), (1, 1)]
    whole = _audit(tmp_path, write_pcap(tmp_path / "all.pcap", _frames()))
    assert [f[:-1] for f in _flows(doc)] == [f[:-1] for f in _flows(whole)]  # all but the first frame's number


def test_a_trace_damaged_before_its_first_time_record_is_one_line(tmp_path: Path, no_wireshark: Path) -> None:
    trace = write_nstrace(tmp_path / "t.cap", _frames(), "nstrace20")
    data = bytearray(trace.read_bytes())
    sig = 34  # after the 2.0 signature record: a relative-time record of size 0, before the first absolute time
    data[sig:sig + 3] = b"\x08\x00\x00"
    trace.write_bytes(bytes(data))
    roles = tmp_path / "roles.yaml"
    roles.write_text(ROLES)
    result = CliRunner().invoke(main, [str(trace), "--roles", str(roles), "--no-html", "-q"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and str(trace) in result.output and "NetScaler" in result.output


def test_an_uncompressed_trace_needs_no_temporary_room(tmp_path: Path, no_wireshark: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Its frames go through a pipe (foreign.NstraceStream): a temporary folder that cannot be written
    to changes nothing, and the converting process is gone afterwards."""
    import multiprocessing

    trace = write_nstrace(tmp_path / "t.cap", _frames(), "nstrace35")
    expected = _flows(_audit(tmp_path, trace))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing" / "folder"))
    doc = _audit(tmp_path, trace)
    assert _flows(doc) == expected and doc["inputs"][0]["packets"] == len(_frames())
    assert multiprocessing.active_children() == []


def test_a_compressed_trace_without_room_is_one_line(tmp_path: Path, no_wireshark: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A compressed trace is decompressed into a temporary file (the walk seeks): without room for
    it and without tshark, one line and exit status 2."""
    trace = write_nstrace(tmp_path / "t.cap", _frames(), "nstrace30")
    packed = tmp_path / "t.cap.xz"
    packed.write_bytes(lzma.compress(trace.read_bytes()))
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10))
    roles = tmp_path / "roles.yaml"
    roles.write_text(ROLES)
    result = CliRunner().invoke(main, [str(packed), "--roles", str(roles), "--no-html", "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and str(packed) in result.output and "temporary folder" in result.output


def test_the_converting_process_stops_when_reading_stops(tmp_path: Path, no_wireshark: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that stops early (an error further on, Ctrl-C) leaves no converting process behind."""
    from auditor.capture import decompress, foreign, source

    started: list[Any] = []
    real = decompress.start_child

    def spy(*args: Any) -> Any:
        proc, fd = real(*args)
        started.append(proc)
        return proc, fd

    monkeypatch.setattr(decompress, "start_child", spy)
    monkeypatch.setattr(foreign, "start_child", spy, raising=False)
    # More than the pipe and the reader's read-ahead (source.HashingReader: AHEAD chunks of CHUNK)
    # hold together, so that the converter is still writing when reading stops.
    need = (source.HashingReader.AHEAD + 2) * decompress.CHUNK
    one = _frames()
    frames = one * (need // sum(len(f[-1]) if isinstance(f, tuple) else len(f) for f in one) + 1)
    trace = write_nstrace(tmp_path / "t.cap", frames, "nstrace35")
    records = iter(CaptureSet([str(trace)]))
    next(records)
    assert [p.name for p in started] == ["pcap-audit-nstrace"]
    assert started[0].is_alive()
    records.close()  # type: ignore[attr-defined]
    assert not started[0].is_alive()


def test_a_converter_that_fails_unexpectedly_is_one_line(tmp_path: Path, no_wireshark: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An error no handler names (a bug in the conversion) is no silent success with what came
    through: one line and exit status 2, as the converter's own errors."""
    from auditor.capture import nstrace

    def broken(path: str, out: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(nstrace, "to_pcap", broken)  # the converting process is forked: it has it too
    trace = write_nstrace(tmp_path / "t.cap", _frames(), "nstrace35")
    roles = tmp_path / "roles.yaml"
    roles.write_text(ROLES)
    result = CliRunner().invoke(main, [str(trace), "--roles", str(roles), "--no-html", "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and str(trace) in result.output and "failed" in result.output
