"""pcapng block walking (pcapng spec, draft-ietf-opsawg-pcapng): sections, interfaces with their own
link types and timestamp resolutions, Enhanced, Simple and obsolete Packet Blocks. Shares the read
window (pcapfile._Reader) and the decoder with the pcap walk."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from auditor.capture.decode import Decoder, linktype_name
from auditor.capture.info import InputInfo
from auditor.capture.pcapfile import (
    _MAX_RECORD,
    NG_END,
    NG_FRAME,
    NG_MORE,
    NG_SKIP,
    NG_STOP,
    CaptureBytes,
    Tick,
    _Reader,
    walk_pcap,
)
from auditor.model import PacketRecord

if TYPE_CHECKING:
    from auditor.capture.spill import SpillWriter
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
                fused: bool = True, split: Split | None = None,
                spill: SpillWriter | None = None) -> Iterator[PacketRecord]:
    """Records of a pcapng file: the pcap record walk (pcapfile.walk_pcap, fused for Ethernet) reads
    whole, well-formed Enhanced Packet Blocks of known interfaces itself and hands every other block
    to ``Blocks``.

    ``split``: ``src`` ends at the split's boundary (a block boundary past the file's interface
    blocks), past which a worker process spilled the frames (capture/split.py); a walk that ends
    there replays the spill instead of reading on. An interface or section header between the first
    packet block (where the blocks the worker is handed end) and the boundary would leave the worker
    with the wrong interfaces: the split is dropped there and this walk reads on. The worker hands
    back (``resume``) at any block it does not walk as this walk would (a new section or interface,
    a damaged block): this walk reads on from there.
    ``spill`` (in that worker): ``first`` is the file's blocks before its first packet, then the
    bytes from the boundary; the frames go to the spill writer, nothing is yielded."""
    ng = Blocks(dec, spill.tail_at if spill is not None else 0)
    return walk_pcap(src, first, info, dec, tick, fused=fused, split=split, spill=spill, ng=ng)


class Blocks:
    """A pcapng file's section state (byte order, interfaces) and its blocks other than a whole,
    well-formed Enhanced Packet Block of a known interface, which the record walk reads itself:
    section headers, interfaces, Simple and obsolete Packet Blocks, damaged blocks, and blocks with
    nothing to audit (statistics, name resolution, custom)."""

    def __init__(self, dec: Decoder, tail_at: int) -> None:
        self._bad = dec.bad
        self.tail_at = tail_at
        """In a split's worker: where the bytes from the boundary start (before: the file's first
        blocks, walked as they are)."""
        self.ifaces: list[_Iface] = []
        """The section's interfaces."""
        self.every: list[_Iface] = []
        """Of all sections, for the frame count per link type."""
        self._set_order("<")

    def _set_order(self, order: str) -> None:
        self.order = order
        self.hdr = struct.Struct(order + "II").unpack_from
        self.epb = struct.Struct(order + "IIIII").unpack_from
        self.opb = struct.Struct(order + "HHIIII").unpack_from
        self.u32 = struct.Struct(order + "I").unpack_from
        self.epbh = struct.Struct(order + "IIIIII").unpack_from
        """Block type and length, then an EPB's interface, timestamp and captured length."""

    def parser(self) -> Parse:
        return _packet_parser(self.ifaces, self.order)

    def block(self, r: _Reader, buf: bytes, pos: int, blen: int, frame: int,
              spill: SpillWriter | None) -> tuple[Any, ...]:
        """What the walk does with the block at ``pos`` (``frame`` frames so far):
        (NG_MORE, why): it needs more bytes; ``why`` says why it stops if there are none ("" at a
        clean end). (NG_SKIP, next, frames): nothing to audit, or a damaged packet (counted here,
        and ``frames`` of them). (NG_FRAME, next, start, caplen, ts or None, interface, block
        start): a packet. (NG_STOP, why): the walk stops. (NG_END,): a split's worker hands back
        here (``spill.resume``)."""
        if blen - pos < 12:
            return NG_MORE, f"file ends inside a block header ({blen - pos} bytes)" if blen - pos else ""
        bad = self._bad
        btype, blk = self.hdr(buf, pos)
        maxblk = _MAX_RECORD + 4096
        if spill is not None and r.base + pos >= self.tail_at and (
                btype in _HAND_BACK or blk < 12 or blk & 3 or blk > maxblk):
            spill.resume = r.base + pos  # a block this walk would not walk alike
            return (NG_END,)
        pending = r.split  # an interface the worker would not know of: drop the split
        if (btype == 0x0A0D0D0A or btype == 1) and pending and r.base + pos >= pending.records_at:
            pending.abandon()
            r.split = None
            r.src.unbound()
        if btype == 0x0A0D0D0A:  # Section Header Block (the same in either byte order)
            bom = _BOMS.get(buf[pos + 8:pos + 12])
            if bom is None:
                bad("pcapng-bad-block", frame + 1)
                return NG_STOP, "section header with a bad byte-order magic"
            major = struct.unpack_from(bom + "H", buf, pos + 12)[0] if blen - pos >= 14 else 1
            if major != 1:
                # pcapng §4.1: a section of an unknown major version cannot be parsed; like tshark,
                # stop here rather than guess.
                return NG_STOP, f"section with pcapng version {major}.x, which this reader does not know"
            if bom != self.order:
                self._set_order(bom)
                btype, blk = self.hdr(buf, pos)
            self.ifaces = []
        if blk < 12 or blk & 3 or blk > maxblk:
            bad("pcapng-bad-block", frame + 1)
            return NG_STOP, f"corrupt block header (type 0x{btype:08x}, length {blk})"
        if blk > blen - pos:
            return NG_MORE, f"file ends inside a block ({blen - pos} of {blk} bytes)"
        body = pos + 8
        bend = pos + blk - 4
        ifaces = self.ifaces
        if spill is not None and r.base + pos >= self.tail_at and (
                btype == 6 or (btype == 3 and (bend - body < 4 or not ifaces))):
            spill.resume = r.base + pos  # a damaged packet block: counted by the reading process
            return (NG_END,)
        nxt = pos + blk
        if btype == 6 or btype == 2:  # Enhanced Packet Block / obsolete Packet Block
            if bend - body < 20:
                bad("pcapng-bad-block", frame + 1)
                return NG_SKIP, nxt, 0
            if btype == 6:
                ifid, tsh, tsl, caplen, _origlen = self.epb(buf, body)
            else:
                ifid, _drops, tsh, tsl, caplen, _origlen = self.opb(buf, body)
            if ifid >= len(ifaces):
                bad("pcapng-bad-interface", frame + 1)
                return NG_SKIP, nxt, 1
            if caplen > bend - body - 20:
                bad("pcapng-bad-block", frame + 1)
                return NG_SKIP, nxt, 1
            iface = ifaces[ifid]
            return NG_FRAME, nxt, body + 20, caplen, ((tsh << 32) | tsl) / iface.div + iface.offset, iface, pos
        if btype == 3:  # Simple Packet Block: interface 0, no timestamp
            if bend - body < 4:
                bad("pcapng-bad-block", frame + 1)
                return NG_SKIP, nxt, 0
            if not ifaces:
                bad("pcapng-bad-interface", frame + 1)
                return NG_SKIP, nxt, 1
            caplen = min(self.u32(buf, body)[0], bend - body - 4)
            if ifaces[0].snaplen:
                caplen = min(caplen, ifaces[0].snaplen)
            return NG_FRAME, nxt, body + 4, caplen, None, ifaces[0], pos
        if btype == 1:  # Interface Description Block
            if bend - body < 8:
                bad("pcapng-bad-block", frame + 1)
                return NG_SKIP, nxt, 0
            iface = _idb(buf, body, bend, self.order)
            ifaces.append(iface)
            self.every.append(iface)
        return NG_SKIP, nxt, 0  # name resolution, statistics, custom, ...: nothing to audit


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
