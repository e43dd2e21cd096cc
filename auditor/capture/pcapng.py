"""pcapng block walking (pcapng spec, draft-ietf-opsawg-pcapng): sections, interfaces with their own
link types and timestamp resolutions, Enhanced, Simple and obsolete Packet Blocks. Shares the read
window (pcapfile._Reader) and the decoder with the pcap walk."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from auditor.capture.decode import Decoder, linktype_name
from auditor.capture.info import InputInfo
from auditor.capture.pcapfile import _MAX_RECORD, PROGRESS_EVERY, CaptureBytes, Tick, _Reader
from auditor.model import PacketRecord


class _Iface:
    __slots__ = ("div", "frames", "lt", "name", "offset", "snaplen")

    def __init__(self, lt: int, snaplen: int, div: int, offset: int) -> None:
        self.frames = 0
        self.lt = lt
        self.name = linktype_name(lt)
        self.snaplen = snaplen
        self.div = div
        self.offset = offset


def _idb(buf: bytes, body: int, bend: int, order: str) -> _Iface:
    lt, snaplen = struct.unpack_from(order + "H2xI", buf, body)
    div, offset = 1_000_000, 0
    p = body + 8
    opt = struct.Struct(order + "HH").unpack_from
    while bend - p >= 4:
        code, olen = opt(buf, p)
        p += 4
        if code == 0 or bend - p < olen:
            break
        if code == 9 and olen >= 1:  # if_tsresol: 10^-n, or 2^-n with the high bit set
            v = buf[p]
            div = 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
        elif code == 14 and olen >= 8:  # if_tsoffset, seconds
            offset = struct.unpack_from(order + "q", buf, p)[0]
        p += (olen + 3) & ~3
    return _Iface(lt & 0xFFFF, snaplen, div, offset)


_BOMS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}


def walk_pcapng(src: CaptureBytes, first: bytes, info: InputInfo, dec: Decoder,
                tick: Tick) -> Iterator[PacketRecord]:
    r = _Reader(src, first, info)
    info.format = "pcapng"
    decode = dec.decode
    bad = dec.bad
    buf = r.buf
    blen = len(buf)
    pos = 0
    frame = records = 0
    order = "<"
    hdr = struct.Struct("<II").unpack_from
    epb = struct.Struct("<IIIII").unpack_from
    opb = struct.Struct("<HHIIII").unpack_from
    u32 = struct.Struct("<I").unpack_from
    ifaces: list[_Iface] = []
    every_iface: list[_Iface] = []
    """Of all sections, for the frame count per link type."""
    lo, hi = float("inf"), float("-inf")
    epbh = struct.Struct("<IIIIII").unpack_from
    maxblk = _MAX_RECORD + 4096
    try:
        while True:
            # The common block first, with one unpack: a whole, well-formed Enhanced Packet Block of
            # a known interface. Anything else goes through the general checks below; both end in
            # the same per-packet tail.
            fast = False
            if blen - pos >= 28:
                btype, blk, ifid, tsh, tsl, caplen = epbh(buf, pos)
                fast = (btype == 6 and 32 <= blk <= blen - pos and not blk & 3 and blk <= maxblk
                        and ifid < len(ifaces) and caplen <= blk - 32)
            if fast:
                start = pos + 28
                pos += blk
                frame += 1
                stamped = True
            else:
                if blen - pos < 12:
                    if r.more(pos):
                        buf, blen, pos = r.buf, len(r.buf), r.pos
                        continue
                    if blen - pos:
                        r.stop(frame, f"file ends inside a block header ({blen - pos} bytes)")
                    break
                btype, blk = hdr(buf, pos)
                if btype == 0x0A0D0D0A:  # Section Header Block (the same in either byte order)
                    bom = _BOMS.get(buf[pos + 8:pos + 12])
                    if bom is None:
                        bad("pcapng-bad-block", frame + 1)
                        r.stop(frame, "section header with a bad byte-order magic")
                        break
                    major = struct.unpack_from(bom + "H", buf, pos + 12)[0] if blen - pos >= 14 else 1
                    if major != 1:
                        # pcapng §4.1: a section of an unknown major version cannot be parsed; like
                        # tshark, stop here rather than guess.
                        r.stop(frame, f"section with pcapng version {major}.x, which this reader does not know")
                        break
                    if bom != order:
                        order = bom
                        hdr = struct.Struct(order + "II").unpack_from
                        epb = struct.Struct(order + "IIIII").unpack_from
                        opb = struct.Struct(order + "HHIIII").unpack_from
                        u32 = struct.Struct(order + "I").unpack_from
                        epbh = struct.Struct(order + "IIIIII").unpack_from
                        btype, blk = hdr(buf, pos)
                    ifaces = []
                if blk < 12 or blk & 3 or blk > maxblk:
                    bad("pcapng-bad-block", frame + 1)
                    r.stop(frame, f"corrupt block header (type 0x{btype:08x}, length {blk})")
                    break
                if blk > blen - pos:
                    if r.more(pos):
                        buf, blen, pos = r.buf, len(r.buf), r.pos
                        continue
                    r.stop(frame, f"file ends inside a block ({blen - pos} of {blk} bytes)")
                    break
                body = pos + 8
                bend = pos + blk - 4
                pos += blk
                if btype == 6 or btype == 2:  # Enhanced Packet Block / obsolete Packet Block
                    if bend - body < 20:
                        bad("pcapng-bad-block", frame + 1)
                        continue
                    if btype == 6:
                        ifid, tsh, tsl, caplen, _origlen = epb(buf, body)
                    else:
                        ifid, _drops, tsh, tsl, caplen, _origlen = opb(buf, body)
                    frame += 1
                    if ifid >= len(ifaces):
                        bad("pcapng-bad-interface", frame)
                        continue
                    if caplen > bend - body - 20:
                        bad("pcapng-bad-block", frame)
                        continue
                    start = body + 20
                    stamped = True
                elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
                    if bend - body < 4:
                        bad("pcapng-bad-block", frame + 1)
                        continue
                    frame += 1
                    if not ifaces:
                        bad("pcapng-bad-interface", frame)
                        continue
                    ifid = 0
                    caplen = min(u32(buf, body)[0], bend - body - 4)
                    if ifaces[0].snaplen:
                        caplen = min(caplen, ifaces[0].snaplen)
                    start = body + 4
                    stamped = False
                elif btype == 1:  # Interface Description Block
                    if bend - body < 8:
                        bad("pcapng-bad-block", frame + 1)
                        continue
                    iface = _idb(buf, body, bend, order)
                    ifaces.append(iface)
                    every_iface.append(iface)
                    continue
                else:  # SHB (handled above), name resolution, statistics, custom, ...: nothing to audit
                    continue
            iface = ifaces[ifid]
            if stamped:
                ts = ((tsh << 32) | tsl) / iface.div + iface.offset
                if ts < lo:
                    lo = ts
                if ts > hi:
                    hi = ts
            else:
                ts = 0.0
            iface.frames += 1
            rec = decode(buf, start, caplen, ts, frame, iface.lt)
            if not frame & (PROGRESS_EVERY - 1):
                tick()
            if rec is not None:
                records += 1
                yield rec
    finally:
        info.packets = frame
        for iface in every_iface:
            if iface.frames:
                info.link_types[iface.name] = info.link_types.get(iface.name, 0) + iface.frames
        if hi >= lo:
            info.first_ts, info.last_ts = lo, hi
        dec.stats.frames += frame
        dec.stats.records += records + dec.laned
        dec.laned = 0
