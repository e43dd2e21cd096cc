"""Captures in other formats (Network Monitor, snoop, Sniffer, CommView...) are named by captype,
copied into pcapng by editcap and read by the fast reader, or read by tshark where editcap cannot
copy them (capture/foreign.py): the same audit as the pcap they were converted from, the stored
file's hash and size, a word in the report on how it was read, and no copy left behind.

The files are written by Wireshark's own editcap from a pcap of ours, so their wire formats are real."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.capture import CaptureSet, foreign, open_captures
from auditor.capture.foreign import describe, identify
from auditor.cli import main
from auditor.errors import CaptureError
from tests.capture_factory import WEB_CLIENT, WEB_DNS, WEB_SERVER, web_session, write_pcap

pytestmark = [pytest.mark.tshark,
              pytest.mark.skipif(None in (shutil.which("tshark"), shutil.which("editcap"), shutil.which("captype")),
                                 reason="tshark, editcap and captype (Wireshark) are not installed")]

C, S, DNS = WEB_CLIENT, WEB_SERVER, WEB_DNS
ROLES = f"roles:\n  User Device: [{C}]\n  StoreFront Server: [{S}]\n"
# editcap writes each of these from an Ethernet pcap (its list: editcap -F); the names are captype's.
COPIED = ["netmon2", "netmon1", "snoop", "ngsniffer", "ngwsniffer_2_0", "5views", "lanalyzer", "visual"]
THROUGH_TSHARK = ["nettl", "commview-ncf"]  # editcap cannot write their encapsulations as pcapng


def _frames() -> list[tuple[float, bytes]]:
    return web_session()


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pcap(tmp_path_factory.mktemp("foreign") / "original.pcap", _frames())


def _convert(original: Path, fmt: str, folder: Path) -> Path:
    out = folder / f"capture.{fmt}"
    subprocess.run(["editcap", "-F", fmt, str(original), str(out)], check=True, capture_output=True)
    return out


def _audit(tmp: Path, *captures: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    roles = tmp / "roles.yaml"
    roles.write_text(ROLES)
    out = tmp / "audit.json"
    result = CliRunner().invoke(main, [*map(str, captures), "--roles", str(roles), "--json", str(out), "--no-html",
                                       "-q", *extra])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def _flows(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted((f["initiator"], f["responder"], f["protocol"], f["port"], f["outcome"], f["connections"],
                   f["packets"], f["bytes"], f["direction_evidence"]) for f in doc["flows"])


def _names(doc: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    return sorted((h["address"], n["name"], n["source"], n["frame"]) for h in doc["hosts"] for n in h["names"])


@pytest.fixture
def copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary folder the copies go to, checked empty afterwards."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("fmt", COPIED + THROUGH_TSHARK)
def test_other_formats_are_read(tmp_path: Path, original: Path, fmt: str, copies: Path) -> None:
    capture = _convert(original, fmt, tmp_path)
    assert identify(str(capture)) == fmt
    data = capture.read_bytes()
    mine = _audit(tmp_path, capture)
    if fmt in COPIED:  # the fast reader
        note = (f"{describe(fmt)} capture: read from a pcapng copy that Wireshark's editcap made of it, "
                "frame for frame")
    else:
        note = (f"{describe(fmt)} capture: read through tshark (the fast reader reads pcap and pcapng, and "
                "editcap could not copy this one into pcapng), at tshark's speed")
    # Either way, payloads included: the pcap's own audit.
    expected = _audit(tmp_path, original)
    assert _names(mine) == _names(expected) == [(S, "sf.corp.example", "http-host", 4)]
    assert _flows(mine) == _flows(expected) and len(mine["flows"]) == 4
    (inp,) = mine["inputs"]
    assert inp["format"] == fmt and inp["packets"] == len(_frames())
    assert inp["sha256"] == hashlib.sha256(data).hexdigest() and inp["size"] == len(data)
    assert inp["warnings"] == [note]
    assert capture.read_bytes() == data  # never modified


def test_without_editcap_or_room_tshark_reads_it(tmp_path: Path, original: Path, copies: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    netmon = _convert(original, "netmon2", tmp_path)
    expected = _flows(_audit(tmp_path, original, extra=("--engine", "tshark")))
    monkeypatch.setattr(foreign, "ROOM", 1e12)  # no temporary folder has that much room
    doc = _audit(tmp_path, netmon)
    assert _flows(doc) == expected and doc["inputs"][0]["warnings"][0].endswith("at tshark's speed")
    monkeypatch.setattr(foreign, "ROOM", 1.5)
    which = shutil.which
    monkeypatch.setattr(foreign.shutil, "which", lambda name: None if name == "editcap" else which(name))
    doc = _audit(tmp_path, netmon)
    assert _flows(doc) == expected and "read through tshark" in doc["inputs"][0]["warnings"][0]


def test_a_gzipped_network_monitor_capture(tmp_path: Path, original: Path) -> None:
    # Wireshark's tools read gzip themselves; the hash is of the stored (compressed) bytes.
    plain = _convert(original, "netmon2", tmp_path)
    packed = tmp_path / "capture.cap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    doc = _audit(tmp_path, packed)
    (inp,) = doc["inputs"]
    assert (inp["format"], inp["compression"], inp["packets"]) == ("netmon2", "gzip", len(_frames()))
    assert inp["sha256"] == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert _flows(doc) == _flows(_audit(tmp_path, original))


def test_mixed_with_pcap_and_several_processes(tmp_path: Path, original: Path) -> None:
    # Frame numbers and input indexes stay per input; -j 2 (each process reads every packet and
    # keeps its share of the conversations) gives the one-process result.
    netmon = _convert(original, "netmon2", tmp_path)
    one = _audit(tmp_path, original, netmon, extra=("-j", "1"))
    two = _audit(tmp_path, original, netmon, extra=("-j", "2"))
    assert _flows(one) == _flows(two)
    assert [i["format"] for i in one["inputs"]] == ["pcap", "netmon2"]
    assert [i["packets"] for i in one["inputs"]] == [len(_frames())] * 2
    https = next(f for f in one["flows"] if f["port"] == 443)
    assert https["connections"] == 2 and https["first_frame"] == {"input": 0, "frame": 1}


def test_records_carry_the_input_and_frame(original: Path, tmp_path: Path) -> None:
    snoop = _convert(original, "snoop", tmp_path)
    recs = list(open_captures([str(original), str(snoop)]))
    assert [(r.input_index, r.frame) for r in recs if r.input_index == 1] == [(1, i) for i in range(1, 12)]
    assert [r.src for r in recs if r.input_index == 0] == [r.src for r in recs if r.input_index == 1]


def test_a_name_that_looks_like_an_option(tmp_path: Path, original: Path, copies: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # captype and editcap would read "-r.cap" as options (captype even takes "--" for a file).
    netmon = _convert(original, "netmon2", tmp_path)
    (tmp_path / "-r.cap").write_bytes(netmon.read_bytes())
    monkeypatch.chdir(tmp_path)
    cs = CaptureSet(["-r.cap"])
    assert cs.foreign == {"-r.cap": "netmon2"}
    assert [r.frame for r in cs] == list(range(1, len(_frames()) + 1))
    assert cs.inputs[0].warnings[0].startswith("Microsoft Network Monitor 2.x capture: read from a pcapng copy")


def test_a_file_no_tool_knows_is_refused_as_before(tmp_path: Path) -> None:
    junk = tmp_path / "notes.cap"
    junk.write_bytes(b"this is not a capture at all\n" * 10)
    assert identify(str(junk)) is None
    with pytest.raises(CaptureError, match=r"^.*notes\.cap: not a pcap or pcapng file \(magic 0x74686973\)$"):
        CaptureSet([str(junk)])


PICTURES = [b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200]


@pytest.mark.parametrize("head", PICTURES)
def test_files_wireshark_opens_that_are_no_capture_stay_refused(tmp_path: Path, head: bytes) -> None:
    # Wireshark reads images and programs as "mime" files: an audit of one is a mistake, said as before.
    picture = tmp_path / "screenshot.cap"
    picture.write_bytes(head)
    out = subprocess.run(["captype", str(picture)], capture_output=True, text=True, check=False).stdout
    assert out.strip().endswith(": mime")
    assert identify(str(picture)) is None
    refusal = rf"screenshot\.cap: not a pcap or pcapng file \(magic 0x{head[:4].hex()}\)$"
    with pytest.raises(CaptureError, match=refusal):
        CaptureSet([str(picture)])


def test_a_windows_event_trace_is_refused_with_how_to_convert_it(tmp_path: Path) -> None:
    etl = tmp_path / "NetTrace.etl"
    etl.write_bytes(b"\x00\x00\x01\x00" + bytes(range(256)) * 16)  # ETL files have no fixed first bytes
    with pytest.raises(CaptureError) as err:
        CaptureSet([str(etl)])
    assert str(err.value) == (f"{etl}: not a pcap or pcapng file (magic 0x00000100); a Windows event trace "
                              "(netsh trace, pktmon) holds packets in ETW events: convert it on Windows with: "
                              "pktmon etl2pcap FILE.etl --out FILE.pcapng")


def test_without_wireshark_the_refusal_says_what_would_read_it(tmp_path: Path, original: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    netmon = _convert(original, "netmon2", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert identify(str(netmon)) is None
    roles = tmp_path / "roles.yaml"
    roles.write_text(ROLES)
    result = CliRunner().invoke(main, [str(netmon), "--roles", str(roles), "--no-html", "-q"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [f"pcap-audit: error: {netmon}: not a pcap or pcapng file (magic 0x474d4255); a capture in "
                     "another format (Network Monitor, snoop, Sniffer...) is read with Wireshark's tools "
                     "(captype, editcap, tshark), which are not installed"]


@pytest.mark.parametrize("fmt", ["netmon2", "snoop", "nettl"])
def test_damaged_files_in_other_formats_never_crash(tmp_path: Path, original: Path, fmt: str, copies: Path) -> None:
    # Cut and corrupted copies: whatever Wireshark's tools make of them (a shorter copy, a failed
    # copy and tshark's reading, a refusal), the result is records and warnings, or one CaptureError.
    data = _convert(original, fmt, tmp_path).read_bytes()
    rnd = random.Random(fmt)
    damaged = [data[:n] for n in (len(data) // 3, len(data) // 2, len(data) - 7)]
    for _ in range(4):
        b = bytearray(data)
        for _ in range(8):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        damaged.append(bytes(b))
    outcomes = set()
    for i, blob in enumerate(damaged):
        path = tmp_path / f"damaged{i}.{fmt}"
        path.write_bytes(blob)
        try:
            cs = CaptureSet([str(path)])
            recs = list(cs)
        except CaptureError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)
            outcomes.add("refused")
            continue
        assert len(recs) <= len(_frames()) + 1 and cs.inputs[0].format == fmt
        outcomes.add("read")
    assert "read" in outcomes
