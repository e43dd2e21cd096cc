"""NetScaler traces (auditor/capture/nstrace.py) read without Wireshark, checked against Wireshark.

The traces are written by tests/nstrace_factory.py for every version and packet record layout that
Wireshark reads; captype must name them, tshark must show the frames and times written, and
to_pcap's pcap must hold exactly the frames (bytes, lengths, nanosecond times) tshark shows."""

from __future__ import annotations

import io
import json
import random
import shutil
import signal
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from auditor.capture.nstrace import HEAD, NstraceInfo, identify, to_pcap
from auditor.errors import CaptureError
from tests.capture_factory import eth_ip, eth_ipv4_tcp, eth_ipv4_udp, eth_ipv6_udp, ipv4_udp, write_pcap
from tests.nstrace_factory import _abstime, _packet, _signature, header_size, write_nstrace

HAVE_TSHARK = None not in (shutil.which("tshark"), shutil.which("captype"))
needs_tshark = [pytest.mark.tshark, pytest.mark.skipif(not HAVE_TSHARK, reason="tshark and captype are not installed")]

CASES = ([("nstrace10", "10", p) for p in (False, True)]
         + [("nstrace20", r, p) for r in ("20", "21", "22", "23", "24", "25", "26") for p in (False, True)]
         + [("nstrace30", "30", p) for p in (False, True)] + [("nstrace35", "35", p) for p in (False, True)])
IDS = [f"{v}-{r}-{'partial' if p else 'full'}" for v, r, p in CASES]
SNAP = 96
FIELDS = ["eth.src", "eth.dst", "vlan.id", "ip.src", "ipv6.src", "tcp.srcport", "udp.srcport", "ip.len"]


def _frames(n: int = 500, seed: int = 7) -> list[tuple[float, bytes]]:
    """Mixed frames up to 1514 bytes (TCP, UDP, IPv6, VLAN-tagged) with steps from 1 µs to minutes."""
    rnd = random.Random(seed)
    out = []
    us = 1_700_000_000 * 1_000_000 + 250_000
    for i in range(n):
        us += rnd.choice([1, 17, 999, 250_000, 1_500_000, 3_000_007, 120_000_001])
        kind = i % 4
        if kind == 0:
            f = eth_ipv4_tcp("10.0.30.5", "10.0.1.20", 50000 + i, 443, "PA", b"t" * rnd.randint(0, 1460))
        elif kind == 1:
            f = eth_ipv4_udp("10.0.1.53", "10.0.30.5", 53, 40000 + i, b"u" * rnd.randint(0, 1472))
        elif kind == 2:
            f = eth_ipv6_udp("fd00::5", "fd00::53", 41000 + i, 514, b"6" * rnd.randint(0, 1452))
        else:
            f = eth_ip(ipv4_udp("10.0.40.1", "10.0.40.2", 42000 + i, 1494, b"v" * rnd.randint(0, 1468)), vlan=30)
        assert len(f) <= 1518
        out.append((us / 1_000_000, f))
    return out


FRAMES = _frames()


def _tshark(path: Path, *args: str) -> str:
    proc = subprocess.run(["tshark", "-n", "-r", str(path), *args], capture_output=True, text=True, timeout=120)
    return proc.stdout


def _fields(path: Path, fields: list[str]) -> list[list[str]]:
    out = _tshark(path, "-T", "fields", *[a for f in fields for a in ("-e", f)])
    return [line.split("\t") for line in out.splitlines()]


def _raw(path: Path) -> list[tuple[str, int, bytes]]:
    """(frame.time_epoch, frame.len, frame bytes) of each frame as tshark reads it."""
    doc: list[dict[str, Any]] = json.loads(_tshark(path, "-T", "json", "-x", "-j", "frame") or "[]")
    out = []
    for pkt in doc:
        layers = pkt["_source"]["layers"]
        out.append((layers["frame"]["frame.time_epoch"], int(layers["frame"]["frame.len"]),
                    bytes.fromhex(layers["frame_raw"][0])))
    return out


def _pcap(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(seconds, nanoseconds, original length, bytes) of each record of a nanosecond pcap."""
    magic, _, _, _, _, snap, link = struct.unpack_from("<IHHiIII", data)
    assert (magic, snap, link) == (0xA1B23C4D, 262144, 1)
    out, pos = [], 24
    while pos < len(data):
        s, ns, cap, orig = struct.unpack_from("<IIII", data, pos)
        assert ns < 1_000_000_000 and cap <= orig
        out.append((s, ns, orig, data[pos + 16:pos + 16 + cap]))
        assert len(out[-1][3]) == cap
        pos += 16 + cap
    return out


def _convert(path: Path) -> tuple[NstraceInfo, list[tuple[int, int, int, bytes]], bytes]:
    buf = io.BytesIO()
    info = to_pcap(str(path), buf)
    return info, _pcap(buf.getvalue()), buf.getvalue()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[list[str]]:
    """What tshark decodes of the frames written as a plain pcap."""
    if not HAVE_TSHARK:
        pytest.skip("tshark is not installed")
    path = write_pcap(tmp_path_factory.mktemp("ref") / "ref.pcap", FRAMES)
    return _fields(path, FIELDS)


@pytest.mark.parametrize(("version", "record", "partial"), CASES, ids=IDS)
def test_the_written_trace_is_what_it_says(tmp_path: Path, version: str, record: str, partial: bool) -> None:
    path = write_nstrace(tmp_path / "nstrace1.cap", FRAMES, version, partial, record=record, snaplen=SNAP)
    with path.open("rb") as f:
        assert identify(f.read(HEAD)) == version
    info, recs, _ = _convert(path)
    assert (info.version, info.packets, info.warnings) == (version, len(FRAMES), [])
    assert info.skipped >= 2  # signature, absolute time (and more for relative-time layouts)
    for (t, frame), (s, ns, orig, data) in zip(FRAMES, recs, strict=True):
        assert data == (frame[:SNAP] if partial else frame)
        assert orig == len(frame)
        assert abs(Decimal(s) + Decimal(ns) / 10**9 - Decimal(repr(t))) < Decimal("0.000001")


@pytest.mark.parametrize(("version", "record", "partial"), CASES, ids=IDS)
@pytest.mark.tshark
@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark and captype are not installed")
def test_wireshark_reads_the_trace_and_to_pcap_agrees(tmp_path: Path, reference: list[list[str]], version: str,
                                                      record: str, partial: bool) -> None:
    path = write_nstrace(tmp_path / "nstrace1.cap", FRAMES, version, partial, record=record, snaplen=SNAP)
    captype = subprocess.run(["captype", str(path)], capture_output=True, text=True, timeout=60).stdout
    assert captype.strip().rpartition(": ")[2] == version
    # tshark shows the frames and times written
    fields = _fields(path, ["frame.time_epoch", *FIELDS])
    assert [row[1:] for row in fields] == reference
    for (t, _), row in zip(FRAMES, fields, strict=True):
        assert abs(Decimal(row[0]) - Decimal(repr(t))) < Decimal("0.000001")
    # to_pcap holds exactly tshark's frames: bytes after the NetScaler header, lengths, times
    hs = header_size(record, partial)
    info, recs, data = _convert(path)
    raw = _raw(path)
    assert len(raw) == len(recs) == info.packets == len(FRAMES)
    for (epoch, flen, fbytes), (s, ns, orig, frame) in zip(raw, recs, strict=True):
        assert f"{s}.{ns:09d}" == epoch
        assert frame == fbytes[hs:]
        assert orig == flen - hs
    # and tshark reads our pcap as it reads the trace
    pcap = tmp_path / "out.pcap"
    pcap.write_bytes(data)
    assert _fields(pcap, ["frame.time_epoch", *FIELDS]) == fields


@pytest.mark.parametrize(("version", "record"), [("nstrace10", "10"), ("nstrace20", "20"), ("nstrace20", "22"),
                                                 ("nstrace20", "26"), ("nstrace35", "35")])
@pytest.mark.tshark
@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark and captype are not installed")
def test_time_and_other_records_between_packets(tmp_path: Path, version: str, record: str) -> None:
    """Relative-time records (whole seconds), absolute-time records and performance-like records
    among the packets: skipped, with the times tshark computes from them."""
    path = write_nstrace(tmp_path / "t.cap", FRAMES[:200], version, record=record, noise=True)
    info, recs, _ = _convert(path)
    assert info.packets == 200 and info.skipped > 10 and not info.warnings
    raw = _raw(path)
    hs = header_size(record, False)
    assert [(f"{s}.{ns:09d}", frame) for s, ns, _, frame in recs] == [(e, b[hs:]) for e, _, b in raw]


def _craft(path: Path, version: str, records: list[bytes]) -> Path:
    """A one-page trace: signature, absolute time, then ``records`` as given, padded to a whole page."""
    data = _signature(version) + _abstime(version, 1_700_000_000) + b"".join(records)
    path.write_bytes(data + bytes(-len(data) % (16384 if version in ("nstrace30", "nstrace35") else 8192)))
    return path


def _resize(rec: bytes, extra: bytes, at: int) -> bytes:
    """A 2.x/3.x record with ``extra`` inserted at ``at`` and its size fixed."""
    out = bytearray(rec[:at] + extra + rec[at:])
    size = len(out)
    out[1:3] = bytes([0x80 | (size & 0x7F), size >> 7])
    return bytes(out)


@pytest.mark.tshark
@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark and captype are not installed")
def test_vm_names_and_35_sub_records_before_the_frame(tmp_path: Path) -> None:
    frame = FRAMES[0][1]
    t = 1_700_000_001 * 10**9 + 5
    v25 = bytearray(_packet("25", False, True, t, frame, frame))
    v25[29:31] = bytes([3, 4])
    v26p = bytearray(_packet("26", True, False, t + 1, frame, frame[:80]))
    v26p[33:35] = bytes([2, 0])
    path25 = _craft(tmp_path / "vm.cap", "nstrace20",
                    [_resize(bytes(v25), b"srcdstv", 31), _resize(bytes(v26p), b"ab", 52)])
    # 3.5: a TCP debug sub-record (length, next type) between the header and the frame
    v35 = bytearray(_packet("35", False, True, t, frame, frame))
    v35[26:28] = struct.pack("<H", 35 + 19)
    v35[34] = 0x80
    debug = struct.pack("<HB", 19, 1) + b"\x07" * 16
    path35 = _craft(tmp_path / "dbg.cap", "nstrace35", [_resize(bytes(v35), debug, 35)])
    for path, want in ((path25, [frame, frame[:80]]), (path35, [frame])):
        info, recs, data = _convert(path)
        assert [r[3] for r in recs] == want and not info.warnings
        pcap = tmp_path / "out.pcap"
        pcap.write_bytes(data)
        assert _fields(pcap, ["frame.time_epoch", *FIELDS]) == _fields(path, ["frame.time_epoch", *FIELDS])


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def fail(*_: object) -> None:
        raise TimeoutError("to_pcap did not finish")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _survives(path: Path) -> NstraceInfo | None:
    """to_pcap's result, or None when it refused the file with CaptureError; nothing else escapes."""
    buf = io.BytesIO()
    with _deadline(20):
        try:
            info = to_pcap(str(path), buf)
        except CaptureError as e:
            assert str(path) in str(e) and "\n" not in str(e)
            return None
    recs = _pcap(buf.getvalue())
    assert len(recs) == info.packets
    return info


@pytest.mark.parametrize(("version", "record"), [("nstrace10", "10"), ("nstrace20", "20"), ("nstrace20", "23"),
                                                 ("nstrace20", "26"), ("nstrace30", "30"), ("nstrace35", "35")])
def test_damaged_traces_never_crash_or_hang(tmp_path: Path, version: str, record: str) -> None:
    frames = FRAMES[:120]
    path = write_nstrace(tmp_path / "good.cap", frames, version, record=record, noise=True)
    good = path.read_bytes()
    full = _convert(path)[1]
    rnd = random.Random(version + record)
    page = 16384 if version in ("nstrace30", "nstrace35") else 8192
    cuts = sorted({*rnd.sample(range(1, len(good)), 60), *(k * page + d for k in range(1, len(good) // page + 1)
                                                          for d in (-1, 0, 1))})
    bad = tmp_path / "bad.cap"
    for cut in cuts:
        bad.write_bytes(good[:cut])
        info = _survives(bad)
        if info is not None:  # a cut file keeps what comes before the cut
            got = _convert(bad)[1]
            assert got == full[:len(got)]
    for _ in range(200):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 8)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        bad.write_bytes(bytes(data))
        _survives(bad)


@pytest.mark.parametrize("version", ["nstrace10", "nstrace20", "nstrace30", "nstrace35"])
def test_a_record_of_size_zero_stops_with_a_warning(tmp_path: Path, version: str) -> None:
    record = {"nstrace10": "10", "nstrace20": "23", "nstrace30": "30", "nstrace35": "35"}[version]
    frame = FRAMES[0][1]
    t = 1_700_000_001 * 10**9 if record != "10" else (3 << 30) | 5
    pkt = _packet(record, False, True, t, frame, frame)
    zero = b"\x40\x01\x00\x00" * 3 if version == "nstrace10" else b"\x40\x00\x00\x00" * 3
    path = _craft(tmp_path / "z.cap", version, [pkt, pkt, zero, pkt])
    info, recs, _ = _convert(path)
    assert len(recs) == 2
    offset = len(_signature(version)) + len(_abstime(version, 0)) + 2 * len(pkt)
    assert info.warnings == [f"{path}: damaged NetScaler record at offset {offset} (record of size 0): "
                             "stopped after packet 2"]
    if version != "nstrace35":  # before the first time record: Wireshark opens nothing
        path.write_bytes(_signature(version) + zero + _abstime(version, 1) + pkt)
        with pytest.raises(CaptureError, match=f"offset {len(_signature(version))} "):
            to_pcap(str(path), io.BytesIO())


@pytest.mark.parametrize("version", ["nstrace10", "nstrace20"])
@pytest.mark.tshark
@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark and captype are not installed")
def test_a_cut_trace_keeps_the_packets_tshark_shows(tmp_path: Path, version: str) -> None:
    path = write_nstrace(tmp_path / "good.cap", FRAMES[:100], version)
    good = path.read_bytes()
    rnd = random.Random(3)
    for cut in rnd.sample(range(100, len(good)), 8):
        bad = tmp_path / f"cut{cut}.cap"
        bad.write_bytes(good[:cut])
        info, recs, _ = _convert(bad)
        assert len(recs) == len(_raw(bad))
        if recs and len(recs) < 100 and cut % 8192:
            assert info.warnings and "stopped after packet" in info.warnings[-1]


def test_packets_before_the_first_time_record_are_left_out(tmp_path: Path) -> None:
    frame = FRAMES[0][1]
    pkt = _packet("20", False, True, (3 << 30) | 7, frame, frame)
    path = tmp_path / "late.cap"
    path.write_bytes(_signature("nstrace20") + pkt + _abstime("nstrace20", 1_700_000_000) + pkt)
    info, recs, _ = _convert(path)
    assert [(s, ns) for s, ns, _, _ in recs] == [(1_700_000_000, 7)]
    assert "1 packet record(s) before the first absolute-time record left out" in info.warnings[0]


def test_other_files_are_not_netscaler_traces(tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "x.pcap", FRAMES[:5]).read_bytes()
    sig = _signature("nstrace20")
    assert identify(pcap) is None
    assert identify(pcap[:24] + sig + bytes(100)) is None  # a pcap holding the bytes stays a pcap
    assert identify(b"") is None
    assert identify(random.Random(1).randbytes(HEAD)) is None
    assert identify(b"NetScaler V20 Performance Data" * 10) is None  # the string without its record
    assert identify(sig[:20]) is None
    assert identify(sig + bytes(8)) == "nstrace20"
    assert identify(bytes(100) + sig + bytes(8)) == "nstrace20"  # anywhere in the first page
    assert identify(bytes(HEAD) + sig + bytes(8)) is None  # but only there
    for name in ("nstrace10", "nstrace30", "nstrace35"):
        assert identify(_signature(name) + bytes(8)) == name
    for data in (pcap, b"", b"hello world\n" * 1000):
        path = tmp_path / "n.cap"
        path.write_bytes(data)
        with pytest.raises(CaptureError, match="not a NetScaler trace"):
            to_pcap(str(path), io.BytesIO())
    with pytest.raises(CaptureError, match="cannot open"):
        to_pcap(str(tmp_path / "missing.cap"), io.BytesIO())
