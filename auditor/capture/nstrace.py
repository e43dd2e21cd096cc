"""NetScaler (Citrix ADC) packet traces read without Wireshark: ``start nstrace`` writes them
(nstrace1.cap, nstrace2.cap...) in the appliance's own format, which :func:`to_pcap` turns into a
plain nanosecond pcap stream of Ethernet frames, in file order, with the time stamps Wireshark gives.

The format, as Wireshark's reader (wiretap/netscaler.c) walks it:

* The file is a run of pages: 8 KiB for versions 1.0 and 2.x, 16 KiB for 3.0 and 3.5; the last page
  may be short. A page holds records; a record starts with its type and its size (header included).
  Version 1.0: a 16-bit type and a 16-bit size, little-endian. Later versions: a one-byte type and a
  size of one byte, or two when the first has its top bit set (size = second * 128 + first & 0x7f).
* A type of 0 is unused space: the rest of the page (2.x: a zero in the first half of a page jumps to
  the half, one in the second half ends the page; 3.x: a zero byte where a record should start ends
  the page). Records never cross a page end in 1.0 and 2.x; in 3.x a packet record's body (not its
  header) may run on into the next pages, and reading resumes after it.
* The first page holds a signature record naming the version ("NetScaler V20 Performance Data"...),
  found anywhere in the first 8 KiB (:func:`identify`).
* Packet records carry a NetScaler header and then the Ethernet frame. Full records hold the whole
  frame, partial records its start and the original length. Their header grew over the years: 1.0;
  2.0-2.2 (a high-resolution time relative to the previous packet); 2.3-2.6 (an absolute time in
  nanoseconds; 2.5 and 2.6 may put VM names between header and frame); 3.0 and 3.5 (full records only,
  absolute time, may span pages; 3.5 says where the frame starts). A 2.x file is read with the 2.x
  record types only, a 3.x file with the 3.x types; others are skipped as Wireshark skips them.
* Relative-time files (1.0, 2.0-2.2) get their seconds from absolute-time records (type 0x07/0x0107)
  and relative-time records (0x08/0x0108, milliseconds); a packet's time is the seconds of the last
  absolute time plus the sum of all packet relative times so far. Like Wireshark, records before the
  file's first absolute-time record are left out (except in 3.5 files, whose times are absolute).

Records that are no packets (signature, time, performance data...) produce nothing and are counted.
A damaged record (a size of 0, a header or record running past the page, a file cut short) stops the
walk: what was written stays and :class:`NstraceInfo` says where and why. Only
:class:`~auditor.errors.CaptureError` escapes (a file that cannot be opened or is no NetScaler trace,
or damage before the first time record, where Wireshark opens nothing).

The file is streamed in 1 MiB reads; the pcap is written in chunks of about 1 MiB. The signatures,
page sizes and record tables the walk reads by are in nstrace_format.py.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from auditor.capture.nstrace_format import (
    ABSTIME,
    ABSTIME_V10,
    HEAD,
    HR_MASK,
    HR_MUL,
    M32,
    NS,
    PAGE,
    PAGE3,
    RELTIME,
    RELTIME_V10,
    U16,
    U32,
    U64,
    V2_TYPES,
    V10,
    V10_FULL,
    V10_PART,
    V30,
    V35,
    identify,
)
from auditor.errors import CaptureError

CHUNK = 1 << 20  # a multiple of both page sizes

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)
_REC = struct.Struct("<IIII")


@dataclass
class NstraceInfo:
    """What :func:`to_pcap` found: the version (captype's name), the packets written, the records
    that are no packets (signature, time, performance and other records; unused space is not
    counted), and what went wrong (a damaged or cut-short record, packets before the first time
    record)."""

    version: str
    packets: int = 0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)


class _Damage(Exception):
    def __init__(self, offset: int, reason: str, cut: bool = False) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.cut = cut  # the file ends inside the record


class _Walk:
    """One walk of a trace: the file, the output, the counters and the time state."""

    def __init__(self, path: str, f: BinaryIO, out: BinaryIO, version: str) -> None:
        self.path = path
        self.f = f
        self.out = out
        self.info = NstraceInfo(version)
        self.parts: list[bytes] = []
        self.curtime = 0  # seconds of the last absolute time
        self.msec = 0  # Wireshark's millisecond clock for relative-time records
        self.lastmsec = 0
        self.crel = 0  # nanoseconds: the sum of packet relative times (or the last absolute time)
        self.base = 0  # file offset of the buffer's first byte
        self.eof = False
        self.bad_headerlen = 0

    # -- buffer ----------------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        chunks = []
        while n > 0 and not self.eof:
            b = self.f.read(n)
            if not b:
                self.eof = True
                break
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)

    def refill(self, buf: bytes, keep: int) -> bytes:
        """``buf`` from ``keep`` on, followed by the next CHUNK bytes of the file."""
        self.base += keep
        return buf[keep:] + self.read(CHUNK)

    def flush(self) -> None:
        if self.parts:
            self.out.write(b"".join(self.parts))
            self.parts.clear()

    # -- time records ----------------------------------------------------------------------------
    def abstime(self, seconds: int, rel_ms: int) -> None:
        self.curtime = seconds
        self.msec += rel_ms
        self.lastmsec = self.msec

    def reltime(self, rel_ms: int) -> None:
        self.msec += rel_ms
        rsec = ((self.msec - self.lastmsec) & M32) // 1000
        self.curtime = (self.curtime + rsec) & M32
        self.lastmsec += rsec * 1000

    # -- the first absolute time (versions 1.0, 2.x, 3.0) -------------------------------------------
    def find_start(self, page: int, v10: bool) -> tuple[int, int]:
        """(file offset of the page, offset in it) where reading starts: after the first absolute-time
        record, whose time is taken; (0, 0) when there is none. Packets before it are counted out."""
        f, off, before, seen = self.f, 0, 0, 0
        if v10:
            def is_packet(t: int) -> bool:
                return t in V10_FULL or t in V10_PART
        elif page == PAGE:
            def is_packet(t: int) -> bool:
                return t in V2_TYPES
        else:
            def is_packet(t: int) -> bool:
                return 0xA8 <= t <= 0xAF
        while True:
            f.seek(off)
            pg = f.read(page)
            plen = len(pg)
            if not plen:
                f.seek(0)
                return 0, 0
            pos = 0
            while pos < plen:
                if pos + (4 if v10 else 3) > plen:
                    raise _Damage(off + pos, "record header runs past the page end")
                if v10:
                    t, size = struct.unpack_from("<HH", pg, pos)
                else:
                    t, lo = pg[pos], pg[pos + 1]
                    size = (pg[pos + 2] << 7) | (lo & 0x7F) if lo & 0x80 else lo
                if t == (ABSTIME_V10 if v10 else ABSTIME):
                    if pos + (12 if v10 else 8) > plen:
                        raise _Damage(off + pos, "time record runs past the page end")
                    if v10:
                        self.abstime(U32.unpack_from(pg, pos + 8)[0], U32.unpack_from(pg, pos + 4)[0])
                    else:
                        self.abstime(U32.unpack_from(pg, pos + 4)[0], U16.unpack_from(pg, pos + 2)[0])
                    self.info.skipped += seen + 1
                    if before:
                        self.info.warnings.append(
                            f"{self.path}: {before} packet record(s) before the first absolute-time record "
                            "left out, as Wireshark does")
                    f.seek(off)
                    return off, pos + size
                if t == 0:
                    break
                if size == 0:
                    raise _Damage(off + pos, "record of size 0")
                if is_packet(t):
                    before += 1
                else:
                    seen += 1
                pos += size
            off += plen

    # -- version 1.0 -------------------------------------------------------------------------------
    def walk_v10(self, start: int, pos0: int) -> None:
        f, rec, append, parts = self.f, _REC.pack, self.parts.append, self.parts
        v10, u16, u32 = V10.unpack_from, U16.unpack_from, U32.unpack_from
        hrmul, mask, ns_ = HR_MUL, HR_MASK, NS
        f.seek(start)
        self.base = start
        buf = self.read(CHUNK)
        ps, pos, n, skipped, crel = 0, pos0, self.info.packets, 0, self.crel
        try:
            while True:
                if ps + PAGE > len(buf) and not self.eof:
                    buf = self.refill(buf, ps)
                    pos -= ps
                    ps = 0
                plen = min(ps + PAGE, len(buf))
                if ps >= plen:
                    break
                while pos + 2 <= plen:
                    if buf[pos] == 0 and buf[pos + 1] == 0:
                        break
                    if pos + 12 > plen:
                        raise _Damage(self.base + pos, "record header runs past the page end")
                    t, size, rel = v10(buf, pos)
                    if t in V10_FULL or t in V10_PART:
                        hdr = 12 if t in V10_FULL else 16
                        if pos + hdr > plen:
                            raise _Damage(self.base + pos, "record header runs past the page end")
                        if size < hdr:
                            raise _Damage(self.base + pos, f"record size {size} is less than its header")
                        end = pos + size
                        if end > plen:
                            raise _Damage(self.base + pos, "record runs past the page end",
                                          cut=self.eof and plen < ps + PAGE)
                        crel += hrmul[rel >> 30] * (rel & mask)
                        q, nsec = divmod(crel, ns_)
                        cap = size - hdr
                        orig = cap if hdr == 12 else max(u16(buf, pos + 12)[0], cap)
                        append(rec((self.curtime + (q & M32)) & M32, nsec, cap, orig))
                        append(buf[pos + hdr:end])
                        n += 1
                        pos = end
                        continue
                    if size == 0:
                        raise _Damage(self.base + pos, "record of size 0")
                    if t == ABSTIME_V10:
                        self.abstime(u32(buf, pos + 8)[0], u32(buf, pos + 4)[0])
                    elif t == RELTIME_V10:
                        self.reltime(u32(buf, pos + 4)[0])
                    skipped += 1
                    pos += size
                ps += PAGE
                pos = ps
                if len(parts) > 4096:
                    self.flush()
        finally:
            self.info.packets, self.crel = n, crel
            self.info.skipped += skipped

    # -- versions 2.0 to 2.6 -------------------------------------------------------------------------
    def walk_v20(self, start: int, pos0: int) -> None:
        f, rec, append, parts = self.f, _REC.pack, self.parts.append, self.parts
        u16, u32, u64 = U16.unpack_from, U32.unpack_from, U64.unpack_from
        types, hrmul, mask, ns_, m32 = V2_TYPES, HR_MUL, HR_MASK, NS, M32
        f.seek(start)
        self.base = start
        buf = self.read(CHUNK)
        ps, pos, n, skipped, crel = 0, pos0, self.info.packets, 0, self.crel
        try:
            while True:
                if ps + PAGE > len(buf) and not self.eof:
                    buf = self.refill(buf, ps)
                    pos -= ps
                    ps = 0
                plen = min(ps + PAGE, len(buf))
                if ps >= plen:
                    break
                while pos < plen:
                    t = buf[pos]
                    d = types.get(t)
                    if d is not None:
                        hdr, part, absolute, ooff, vmoff = d
                        if pos + hdr > plen:
                            raise _Damage(self.base + pos, "record header runs past the page end",
                                          cut=self.eof and plen < ps + PAGE)
                        lo = buf[pos + 1]
                        size = (buf[pos + 2] << 7) | (lo & 0x7F) if lo & 0x80 else lo
                        if size < hdr:
                            raise _Damage(self.base + pos, f"record size {size} is less than its header")
                        end = pos + size
                        if end > plen:
                            raise _Damage(self.base + pos, "record runs past the page end",
                                          cut=self.eof and plen < ps + PAGE)
                        if absolute:
                            crel = u64(buf, pos + 4)[0]
                            sec, nsec = divmod(crel, ns_)
                            sec &= m32
                        else:
                            rel = u32(buf, pos + 4)[0]
                            crel += hrmul[rel >> 30] * (rel & mask)
                            q, nsec = divmod(crel, ns_)
                            sec = (self.curtime + (q & m32)) & m32
                        eth = pos + hdr
                        if vmoff:
                            eth = min(eth + buf[pos + vmoff] + buf[pos + vmoff + 1], end)
                        cap = end - eth
                        orig = max(u16(buf, pos + ooff)[0], cap) if part else cap
                        append(rec(sec, nsec, cap, orig))
                        append(buf[eth:end])
                        n += 1
                        pos = end
                        continue
                    if t == 0:
                        pos = plen if pos - ps >= PAGE // 2 else ps + PAGE // 2
                        continue
                    if pos + 8 > plen:
                        raise _Damage(self.base + pos, "record header runs past the page end",
                                      cut=self.eof and plen < ps + PAGE)
                    lo = buf[pos + 1]
                    size = (buf[pos + 2] << 7) | (lo & 0x7F) if lo & 0x80 else lo
                    if size == 0:
                        raise _Damage(self.base + pos, "record of size 0")
                    if t == ABSTIME:
                        self.abstime(u32(buf, pos + 4)[0], u16(buf, pos + 2)[0])
                    elif t == RELTIME:
                        self.reltime(u16(buf, pos + 2)[0])
                    skipped += 1
                    pos += size
                ps += PAGE
                pos = ps
                if len(parts) > 4096:
                    self.flush()
        finally:
            self.info.packets, self.crel = n, crel
            self.info.skipped += skipped

    # -- versions 3.0 and 3.5 -------------------------------------------------------------------------
    def walk_v30(self, start: int, pos0: int) -> None:
        f, rec, append, parts = self.f, _REC.pack, self.parts.append, self.parts
        v30, v35 = V30.unpack_from, V35.unpack_from
        ns_, m32 = NS, M32
        f.seek(start)
        self.base = start
        buf = self.read(CHUNK)
        ps, pos, n, skipped = 0, pos0, self.info.packets, 0
        try:
            while True:
                if ps + PAGE3 > len(buf) and not self.eof:
                    buf = self.refill(buf, ps)
                    pos -= ps
                    ps = 0
                plen = min(ps + PAGE3, len(buf))
                if ps >= plen:
                    break
                while pos < plen and buf[pos]:
                    if pos + 3 > plen:
                        raise _Damage(self.base + pos, "record header runs past the page end",
                                      cut=self.eof and plen < ps + PAGE3)
                    lo = buf[pos + 1]
                    size = (buf[pos + 2] << 7) | (lo & 0x7F) if lo & 0x80 else lo
                    if size == 0:
                        raise _Damage(self.base + pos, "record of size 0")
                    t = buf[pos]
                    if 0xA8 <= t <= 0xAF:
                        hdr = 35 if t >= 0xAC else 52
                        if pos + hdr > plen:
                            raise _Damage(self.base + pos, "record header runs past the page end",
                                          cut=self.eof and plen < ps + PAGE3)
                        if size < hdr:
                            raise _Damage(self.base + pos, f"record size {size} is less than its header")
                        end = pos + size
                        if end > len(buf):  # runs on past what is read: read on (or the file is cut)
                            if self.eof:
                                raise _Damage(self.base + pos, "record runs past the end of the file", cut=True)
                            buf = self.refill(buf, ps)
                            pos -= ps
                            plen -= ps
                            end -= ps
                            ps = 0
                            if end > len(buf):
                                raise _Damage(self.base + pos, "record runs past the end of the file", cut=True)
                        if hdr == 35:
                            absns, orig, eth = v35(buf, pos)
                            if not 35 <= eth <= size:
                                self.bad_headerlen += 1
                                eth = 35
                        else:
                            absns, orig, vs, vd = v30(buf, pos)
                            eth = min(52 + vs + vd, size)
                        sec, nsec = divmod(absns, ns_)
                        cap = size - eth
                        append(rec(sec & m32, nsec, cap, orig if orig > cap else cap))
                        append(buf[pos + eth:end])
                        n += 1
                        pos = end
                        if pos >= plen:  # it ran on into a later page: reading resumes there
                            ps += (pos - ps) // PAGE3 * PAGE3
                            if ps + PAGE3 > len(buf) and not self.eof:
                                buf = self.refill(buf, ps)
                                pos -= ps
                                ps = 0
                            plen = min(ps + PAGE3, len(buf))
                        continue
                    if t == RELTIME and pos + 8 > plen:
                        raise _Damage(self.base + pos, "time record runs past the page end",
                                      cut=self.eof and plen < ps + PAGE3)
                    skipped += 1
                    pos += size
                ps += PAGE3
                pos = ps
                if len(parts) > 4096:
                    self.flush()
        finally:
            self.info.packets = n
            self.info.skipped += skipped


def to_pcap(path: str, out: BinaryIO) -> NstraceInfo:
    """Write the packets of the NetScaler trace at ``path`` to ``out`` as a pcap file (nanosecond
    time stamps, Ethernet, snaplen 262144): one record per packet record, in file order, so frame N
    is Wireshark's frame N. Raises CaptureError when the file cannot be read, is no NetScaler trace,
    or is damaged before its first time record; later damage stops the walk with a warning. The
    walk seeks: ``path`` is an uncompressed regular file."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below, after the walk)
    except OSError as e:
        raise CaptureError(f"{path}: cannot open: {e.strerror or e}") from e
    with f:
        return _convert(path, f, out)


def _convert(path: str, f: BinaryIO, out: BinaryIO) -> NstraceInfo:
    try:
        version = identify(f.read(HEAD))
    except OSError as e:
        raise CaptureError(f"{path}: cannot read: {e.strerror or e}") from e
    if version is None:
        raise CaptureError(f"{path}: not a NetScaler trace (no signature record in its first 8 KiB)")
    walk = _Walk(path, f, out, version)
    try:
        if version == "nstrace35":
            start, pos = 0, 0
        else:
            start, pos = walk.find_start(PAGE3 if version == "nstrace30" else PAGE, version == "nstrace10")
    except _Damage as d:
        raise CaptureError(f"{path}: damaged NetScaler record at offset {d.offset} ({d.reason}) before "
                           "the first time record") from None
    except (OSError, struct.error, IndexError, ValueError) as e:
        raise CaptureError(f"{path}: cannot read: {e}") from e
    out.write(_PCAP_HEADER)
    run = {"nstrace10": walk.walk_v10, "nstrace20": walk.walk_v20}.get(version, walk.walk_v30)
    try:
        run(start, pos)
    except _Damage as d:
        k = walk.info.packets
        if d.cut:
            walk.info.warnings.append(f"{path}: last NetScaler record at offset {d.offset} is cut short "
                                      f"(file truncated): stopped after packet {k}")
        else:
            walk.info.warnings.append(f"{path}: damaged NetScaler record at offset {d.offset} ({d.reason}): "
                                      f"stopped after packet {k}")
    except (struct.error, IndexError, ValueError) as e:  # not expected: the bounds are checked
        walk.info.warnings.append(f"{path}: damaged NetScaler record after offset {walk.base} ({e}): "
                                  f"stopped after packet {walk.info.packets}")
    except OSError as e:
        raise CaptureError(f"{path}: cannot read: {e.strerror or e}") from e
    finally:
        walk.flush()
    if walk.bad_headerlen:
        walk.info.warnings.append(f"{path}: {walk.bad_headerlen} NetScaler 3.5 record(s) with a header length "
                                  "outside the record: their frames are taken from byte 35")
    return walk.info
