"""pcapng block walking (pcapng spec, draft-ietf-opsawg-pcapng): sections, interfaces with their own
link types and timestamp resolutions, Enhanced, Simple and obsolete Packet Blocks. Shares the read
window (pcapfile._Reader) and the decoder with the pcap walk."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from auditor.capture.decode import Decoder, linktype_name
from auditor.capture.info import InputInfo
from auditor.capture.pcapfile import _MAX_RECORD, PROGRESS_EVERY, CaptureBytes, Tick, _Reader
from auditor.model import PacketRecord

if TYPE_CHECKING:
    from auditor.capture.spill import SpillWriter, _Tail
    from auditor.capture.split import Parse, Split


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


def walk_pcapng(src: CaptureBytes, first: bytes, info: InputInfo, dec: Decoder, tick: Tick, *,
                split: Split | None = None, spill: SpillWriter | None = None) -> Iterator[PacketRecord]:
    """Records of a pcapng file.

    ``split``: ``src`` ends at the split's boundary (a block boundary past the file's interface
    blocks), past which a worker process spilled the frames (capture/split.py); a walk that ends
    there replays the spill instead of reading on. An interface or section header between the first
    packet block (where the blocks the worker is handed end) and the boundary would leave the worker
    with the wrong interfaces: the split is dropped there and this walk reads on. The worker hands
    back (``resume``) at any block it does not walk as this walk would (a new section or interface,
    a damaged block): this walk reads on from there.
    ``spill`` (in that worker): ``first`` is the file's blocks before its first packet, then the
    bytes from the boundary; the frames go to the spill writer, nothing is yielded."""
    r = _Reader(src, first, info)
    r.split = split
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
    tail_at = spill.tail_at if spill is not None else 0
    """In the worker: where the bytes from the boundary start (before: the file's first blocks)."""
    resumed: _Tail | None = None
    try:
        while True:  # once more after the worker hands back
            while True:
                # The common block first, with one unpack: a whole, well-formed Enhanced Packet Block
                # of a known interface. Anything else goes through the general checks below; both
                # end in the same per-packet tail.
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
                    if spill is not None and r.base + pos >= tail_at and (
                            btype in _HAND_BACK or blk < 12 or blk & 3 or blk > maxblk):
                        spill.resume = r.base + pos  # a block this walk would not walk alike
                        break
                    pending = r.split  # an interface the worker would not know of: drop the split
                    if (btype == 0x0A0D0D0A or btype == 1) and pending and r.base + pos >= pending.records_at:
                        pending.abandon()
                        r.split = None
                        r.src.unbound()
                    if btype == 0x0A0D0D0A:  # Section Header Block (the same in either byte order)
                        bom = _BOMS.get(buf[pos + 8:pos + 12])
                        if bom is None:
                            bad("pcapng-bad-block", frame + 1)
                            r.stop(frame, "section header with a bad byte-order magic")
                            break
                        major = struct.unpack_from(bom + "H", buf, pos + 12)[0] if blen - pos >= 14 else 1
                        if major != 1:
                            # pcapng §4.1: a section of an unknown major version cannot be parsed;
                            # like tshark, stop here rather than guess.
                            r.stop(frame, f"section with pcapng version {major}.x, which this reader "
                                          "does not know")
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
                    if spill is not None and r.base + pos >= tail_at and (
                            btype == 6 or (btype == 3 and (bend - body < 4 or not ifaces))):
                        spill.resume = r.base + pos  # a damaged packet block: counted by this walk
                        break
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
                if not frame & (PROGRESS_EVERY - 1):
                    tick()
                if spill is not None:  # the worker of a split: the record spans [start - (28|12), pos)
                    spill.decode(dec, buf, start, caplen, ts, frame, iface.lt, r.base + start,
                                 start - (pos - blk) if fast else start - (body - 8), r.base + pos)
                    continue
                rec = decode(buf, start, caplen, ts, frame, iface.lt)
                if rec is not None:
                    records += 1
                    yield rec
            if split is None or not split.verified:
                break
            # This walk ended at the boundary: the worker's spill holds the rest.
            frame, more = yield from split.replay(dec, frame, tick, _packet_parser(ifaces, order))
            records += more
            if split.first_ts is not None and split.last_ts is not None:
                lo, hi = min(lo, split.first_ts), max(hi, split.last_ts)
            for iface, n in zip(ifaces, split.iface_frames, strict=False):
                iface.frames += n
            if split.why:
                r.stop(frame, split.why)
                break
            if split.resume is None:
                break
            # The worker handed back at a block it does not walk alike: read on from there.
            from auditor.capture.spill import reader_at

            resumed = reader_at(info.path, split.resume)
            r.restart(resumed, split.resume)
            buf, blen, pos = r.buf, 0, 0
            split = None
    finally:
        if resumed is not None:
            resumed.close()
        if spill is not None:
            spill.why = r.why
            spill.iface_frames = [iface.frames for iface in ifaces]
        info.packets = frame
        for iface in every_iface:
            if iface.frames:
                info.link_types[iface.name] = info.link_types.get(iface.name, 0) + iface.frames
        if hi >= lo:
            info.first_ts, info.last_ts = lo, hi
        dec.stats.frames += frame
        dec.stats.records += records + dec.laned
        dec.laned = 0


def _packet_parser(ifaces: list[_Iface], order: str) -> Parse:
    """A split replay's reading of a packet block of this section: an Enhanced Packet Block of a
    known interface, or a Simple one (the worker spills no other)."""
    hdr = struct.Struct(order + "II").unpack_from
    epb = struct.Struct(order + "IIIII").unpack_from
    u32 = struct.Struct(order + "I").unpack_from

    def parse(b: bytes, p: int) -> tuple[int, int, float, int, int]:
        btype, blk = hdr(b, p)
        if btype == 6:
            ifid, tsh, tsl, caplen, _ = epb(b, p + 8)
            i = ifaces[ifid]
            return p + 28, caplen, ((tsh << 32) | tsl) / i.div + i.offset, i.lt, p + blk
        caplen = min(u32(b, p + 8)[0], blk - 16)
        if ifaces[0].snaplen:
            caplen = min(caplen, ifaces[0].snaplen)
        return p + 12, caplen, 0.0, ifaces[0].lt, p + blk

    return parse


_HAND_BACK = frozenset({0x0A0D0D0A, 1, 2})
"""Blocks a split's worker hands back to the reading process: a section header, an interface, the
obsolete Packet Block (and damaged blocks, checked apart)."""


# -- for a split read (capture/split.py) --------------------------------------------------------------

PRELUDE_MAX = 1 << 20
"""The blocks before a file's first packet that a split's worker reads first, at most."""


def first_packet_offset(path: str) -> int | None:
    """Where the first packet block of a pcapng file starts, after its section header and
    interface (and other) blocks, or None: not a well-formed start of a pcapng file, or more than
    PRELUDE_MAX bytes of blocks before a packet."""
    with open(path, "rb") as fh:
        data = fh.read(4096)  # a file's first blocks are small: more only where they are not
        order = _BOMS.get(data[8:12])
        if data[:4] != b"\x0a\x0d\x0d\x0a" or order is None:
            return None
        hdr = struct.Struct(order + "II").unpack_from
        pos = 0
        while True:
            if pos + 12 > len(data):
                more = fh.read(min(len(data), PRELUDE_MAX - len(data)))
                if not more:
                    return None
                data += more
                continue
            btype, blk = hdr(data, pos)
            if btype in (6, 3, 2):
                return pos
            if blk < 12 or blk & 3 or pos + blk > PRELUDE_MAX or (pos and btype == 0x0A0D0D0A):
                return None
            pos += blk


def find_block_boundary(path: str, target: int, *, chain: int = 32, window: int = 4 << 20) -> int | None:
    """A file offset at or after ``target`` where a run of ``chain`` well-formed blocks starts with
    a packet block (each block's length repeated at its end, as pcapng requires), or None. A guess:
    the reading process checks it."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        fh.seek(target)
        win = fh.read(window)
    order = _BOMS.get(head[8:12])
    if order is None:
        return None
    hdr = struct.Struct(order + "II").unpack_from
    u32 = struct.Struct(order + "I").unpack_from
    maxblk = _MAX_RECORD + 4096

    def plausible(p: int) -> bool:
        for n in range(chain):
            if p + 12 > len(win):
                return False
            btype, blk = hdr(win, p)
            if (blk < 12 or blk & 3 or blk > maxblk or p + blk > len(win) or u32(win, p + blk - 4)[0] != blk
                    or (n == 0 and btype not in (6, 3))):
                return False
            p += blk
        return True

    for p in range(-target % 4, max(0, len(win) - 12), 4):  # blocks are 4-byte aligned in the file
        if plausible(p):
            return target + p
    return None
