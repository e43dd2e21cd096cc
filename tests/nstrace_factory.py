"""Write NetScaler (Citrix ADC) packet traces ("nstrace") for tests and benchmarks.

    write_nstrace(path, [(1_700_000_000.25, frame), ...], version="nstrace20", partial=True)

The layout is the one Wireshark reads (wiretap/netscaler.c; see auditor/capture/nstrace.py): pages of
8 KiB (1.0, 2.x) or 16 KiB (3.x) padded with zeros, a signature record and an absolute-time record
first, then one packet record per frame. A time-stamp step a relative-time record cannot carry
(1.0, 2.0-2.2: 30 bits of nanoseconds, or of coarser units) gets an absolute-time record (or, with
``noise``, a relative-time record of whole seconds) just before its packet. 3.x packet records run
on into the next page when they do not fit (their header never does); 1.0 and 2.x records never do.
The last page is padded to its full size.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

SIGNATURE = {
    "nstrace10": b"NetScaler Performance Data",
    "nstrace20": b"NetScaler V20 Performance Data",
    "nstrace30": b"Netscaler V30 Performance Data",
    "nstrace35": b"Netscaler V35 Performance Data",
}
RECORDS = {"nstrace10": ("10",), "nstrace20": ("20", "21", "22", "23", "24", "25", "26"),
           "nstrace30": ("30",), "nstrace35": ("35",)}
"""The packet record layouts each version may hold (the first is 1.0's and 3.x's only one)."""

DEFAULT_RECORD = {"nstrace10": "10", "nstrace20": "23", "nstrace30": "30", "nstrace35": "35"}

# (full TX, full RX, partial TX, partial RX) per 2.x record layout
_V2_TYPES = {"20": (0xC0, 0xC2, 0xC4, 0xC6), "21": (0xD0, 0xD2, 0xD4, 0xD6), "22": (0xE0, 0xE2, 0xE4, 0xE6),
             "23": (0xF0, 0xF2, 0xF4, 0xF6), "24": (0xF8, 0xFA, 0xFC, 0xFE), "25": (0xB0, 0xB2, 0xB4, 0xB6),
             "26": (0xA0, 0xA2, 0xA4, 0xA6)}
NS = 1_000_000_000


def header_size(record: str, partial: bool) -> int:
    """Bytes of NetScaler header before the frame in a packet record of this layout."""
    if record == "10":
        return 16 if partial else 12
    if record == "30":
        return 52
    if record == "35":
        return 35
    full = {"20": 8, "21": 16, "22": 18, "23": 24, "24": 29, "25": 31, "26": 48}[record]
    return full + (4 if partial else 0)


def _size3(size: int) -> bytes:
    """A 2.x/3.x record size: the low 7 bits with the top bit set, then the rest."""
    if not 0 < size <= 0x7F + 0xFF * 0x80:
        raise ValueError(f"record of {size} bytes is too large for a NetScaler trace")
    return bytes([0x80 | (size & 0x7F), size >> 7])


def _hrtime(delta: int) -> int | None:
    """A relative time in nanoseconds as a high-resolution time value (2 bits of unit, 30 of value),
    exactly, in the finest unit that holds it; None when none does."""
    for unit, mul in ((3, 1), (2, 1_000), (1, 1_000_000), (0, NS)):
        if delta % mul == 0 and delta // mul < (1 << 30):
            return (unit << 30) | (delta // mul)
    return None


def _nanos(t: float) -> int:
    return int((Decimal(repr(t)) * NS).to_integral_value())


def _signature(version: str) -> bytes:
    sig = SIGNATURE[version]
    if version == "nstrace10":
        return struct.pack("<HHBBH", 0x0101, 64, 0, 0, 0) + sig.ljust(56, b"\x00")
    return bytes([0x01, 34, 0]) + sig.ljust(31, b"\x00")


def _abstime(version: str, seconds: int) -> bytes:
    if version == "nstrace10":
        return struct.pack("<HHII", 0x0107, 12, 0, seconds)
    return struct.pack("<BBHI", 0x07, 8, 0, seconds)


def _reltime(version: str, ms: int) -> bytes:
    if version == "nstrace10":
        return struct.pack("<HHII", 0x0108, 12, ms, 0)
    return struct.pack("<BBHI", 0x08, 8, ms, 0)


def _perf(version: str) -> bytes:
    """A record that is no packet (as performance data records are), to be skipped."""
    if version == "nstrace10":
        return struct.pack("<HH", 0x0201, 12) + b"\x55" * 8
    return bytes([0x40, 12]) + b"\x55" * 10


def _packet(record: str, partial: bool, rx: bool, time_value: int, frame: bytes, captured: bytes) -> bytes:
    """One packet record: header (time_value is a high-resolution relative time or absolute
    nanoseconds, as the layout wants) and the captured bytes."""
    hs = header_size(record, partial)
    size = hs + len(captured)
    orig = len(frame)
    if record == "10":
        t = (0x0316 if rx else 0x0314) if partial else (0x0312 if rx else 0x0310)
        h = struct.pack("<HHII", t, size, 1, time_value)
        if partial:
            h += struct.pack("<HH", orig, 0)
        if size > 0xFFFF:
            raise ValueError("frame too large")
    elif record == "30":
        h = bytes([0xAA if rx else 0xA8]) + _size3(size) + struct.pack(
            "<BQIIHHHHHBBB3xI12x", 1, time_value, 0, 0, orig, 0, 0, 0, 0, 0, 0, 0, 0)
    elif record == "35":
        h = bytes([0xAE if rx else 0xAC]) + _size3(size) + struct.pack(
            "<BQIIHHHHBBIB", 1, time_value, 0, 0, orig, 0, 0, 35, 0, 0, 0, 1)
    else:
        v = int(record)
        types = _V2_TYPES[record]
        h = bytes([types[2 * partial + rx]]) + _size3(size) + b"\x01"
        h += struct.pack("<Q" if v >= 23 else "<I", time_value)
        if partial:
            h += struct.pack("<HH", orig, 0)
        if v >= 21:
            h += struct.pack("<II", 0, 0)
        if v >= 22:
            h += b"\x00\x00"  # VLAN tag
        if v >= 23:
            h += b"\x00\x00"  # core id
        if v >= 24:
            h += b"\x00\x00\x00\x00\x00"  # source node, destination node, cluster flags
        if v >= 25:
            h += b"\x00\x00"  # VM name lengths
        if v >= 26:
            h += b"\x00" * 17
    assert len(h) == hs, (record, partial, len(h), hs)
    return h + captured


class _Pages:
    """Records laid out in pages: padded with zeros where the next records do not fit."""

    def __init__(self, fh: object, page: int, span: bool) -> None:
        self.fh = fh
        self.page = page
        self.span = span
        self.data = bytearray()
        self.flushed = 0

    def put(self, records: Sequence[bytes], packet_header: int = 0) -> None:
        """Records that go together (time records, then their packet) into the same page; with
        ``span``, the last may run on into the next page once its first ``packet_header`` bytes fit."""
        total = sum(len(r) for r in records)
        room = self.page - (self.flushed + len(self.data)) % self.page
        need = total if not (self.span and packet_header) else total - len(records[-1]) + packet_header
        if need > room:
            if need > self.page:
                raise ValueError(f"a record of {total} bytes does not fit a {self.page}-byte page")
            self.data += bytes(room)
        for r in records:
            self.data += r
        if len(self.data) >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        self.fh.write(self.data)  # type: ignore[attr-defined]
        self.flushed += len(self.data)
        self.data.clear()


def write_nstrace(path: str | Path, frames: list[tuple[float, bytes]], version: str = "nstrace35",
                  partial: bool = False, *, record: str | None = None, snaplen: int = 96,
                  noise: bool = False, whole_pages: bool = True) -> Path:
    """Write ``frames`` (time stamp in seconds, Ethernet frame) as a NetScaler trace of ``version``
    ("nstrace10", "nstrace20", "nstrace30", "nstrace35"). ``partial`` keeps the first ``snaplen``
    bytes of each frame (partial packet records in 1.0 and 2.x; full records holding fewer bytes than
    the frame in 3.x, which has no partial records). ``record`` picks the 2.x packet record layout
    ("20" to "26"; default "23"). ``noise`` adds records that are no packets (relative-time records,
    performance-like records) among the packets. The last page is padded to its full size, as the
    appliance writes whole pages, unless ``whole_pages`` is false (as Wireshark's own writer does:
    Wireshark 4.0 then fails to read a 3.5 trace of a single short page, "cut short in the middle of a
    packet"). Frames alternate received and transmitted."""
    path = Path(path)
    record = record or DEFAULT_RECORD[version]
    if record not in RECORDS[version]:
        raise ValueError(f"{version} holds no {record} records")
    relative = record in ("10", "20", "21", "22")
    page = 16384 if version in ("nstrace30", "nstrace35") else 8192
    hs = header_size(record, partial)
    with path.open("wb") as fh:
        pages = _Pages(fh, page, span=version in ("nstrace30", "nstrace35"))
        first = _nanos(frames[0][0]) if frames else 1_700_000_000 * NS
        curtime = first // NS
        pages.put([_signature(version), _abstime(version, curtime)])
        crel = 0  # what the reader adds up: nanoseconds of relative time since the start
        for i, (t, frame) in enumerate(frames):
            ns = _nanos(t)
            lead: list[bytes] = []
            if noise and i % 37 == 5:
                lead += [_perf(version), _reltime(version, 0)]
            if relative:
                hr = _hrtime(ns - curtime * NS - crel) if ns >= curtime * NS + crel else None
                if hr is None:  # re-base the seconds so the step is below one second
                    target = (ns - crel) // NS
                    if target < 0:
                        raise ValueError("time stamps go back too far for a relative-time NetScaler trace")
                    if noise and 0 < target - curtime <= 65:
                        lead.append(_reltime(version, (target - curtime) * 1000))
                    else:
                        lead.append(_abstime(version, target))
                    curtime = target
                    hr = _hrtime(ns - curtime * NS - crel)
                    assert hr is not None
                delta = ns - curtime * NS - crel
                crel += delta
                time_value = hr
            else:
                time_value = ns
            captured = frame[:snaplen] if partial else frame
            rec = _packet(record, partial, i % 2 == 0, time_value, frame, captured)
            pages.put([*lead, rec], packet_header=hs)
        if whole_pages:
            pages.data += bytes(-(pages.flushed + len(pages.data)) % page)
        pages.flush()
    return path
