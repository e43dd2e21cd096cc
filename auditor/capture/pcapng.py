"""pcapng block walking (pcapng spec, draft-ietf-opsawg-pcapng): sections, interfaces with their own
link types and timestamp resolutions, Enhanced, Simple and obsolete Packet Blocks. Shares the read
window (pcapfile._Reader) and the decoder with the pcap walk. (Where a file's first packet block
starts and where a later one does, for reading a file by byte ranges: capture/ranges.py.)"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from auditor.capture.decode import Decoder, linktype_name
from auditor.capture.info import InputInfo
from auditor.capture.kernel import MAX_RECORD, NG_FRAME, NG_MORE, NG_SKIP, NG_STOP, Tick, Window
from auditor.capture.pcapfile import PCAPNG_BYTE_ORDERS, Bounded, CaptureBytes, walk_pcap
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



def walk_pcapng(src: CaptureBytes, first: bytes, info: InputInfo, dec: Decoder, tick: Tick, *,
                bounded: Bounded | None = None, base: int = 0,
                records_at: int = 0) -> Iterator[PacketRecord]:
    """Records of a pcapng file: the pcap record walk (pcapfile.walk_pcap, with the decoder's kernel) reads
    whole, well-formed Enhanced Packet Blocks of known interfaces itself and hands every other block
    to ``Blocks``.

    ``bounded``, ``base``: a chunk's bytes, as for walk_pcap; ``first`` starts with the file's
    blocks before its first packet block, and a section header or interface block at or after the
    file offset ``records_at`` (where the chunk's own blocks start) is one that the file's later
    chunks would not know of."""
    ng = Blocks(dec, records_at if bounded is not None else -1)
    return walk_pcap(src, first, info, dec, tick, ng=ng, bounded=bounded, base=base)


class Blocks:
    """A pcapng file's section state (byte order, interfaces) and its blocks other than a whole,
    well-formed Enhanced Packet Block of a known interface, which the record walk reads itself:
    section headers, interfaces, Simple and obsolete Packet Blocks, damaged blocks, and blocks with
    nothing to audit (statistics, name resolution, custom)."""

    def __init__(self, dec: Decoder, records_at: int = -1) -> None:
        self._bad = dec.bad
        self.records_at = records_at
        """In a chunk's walk: the file offset where its own blocks start (before: the file's first
        blocks); -1: not a chunk."""
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
        self.big = order == ">"
        """The section's byte order (the walk reads whole Enhanced Packet Blocks itself)."""

    def block(self, r: Window, buf: bytes, pos: int, blen: int, frame: int) -> tuple[Any, ...]:
        """What the walk does with the block at ``pos`` (``frame`` frames so far):
        (NG_MORE, why): it needs more bytes; ``why`` says why it stops if there are none ("" at a
        clean end). (NG_SKIP, next, frames): nothing to audit, or a damaged packet (counted here,
        and ``frames`` of them). (NG_FRAME, next, start, caplen, ts or None, interface): a packet.
        (NG_STOP, why): the walk stops."""
        if blen - pos < 12:
            return NG_MORE, f"file ends inside a block header ({blen - pos} bytes)" if blen - pos else ""
        bad = self._bad
        btype, blk = self.hdr(buf, pos)
        maxblk = MAX_RECORD + 4096
        if (btype == 0x0A0D0D0A or btype == 1) and 0 <= self.records_at <= r.base + pos:
            r.unsafe = True  # the file's later chunks would not know of this section or interface
        if btype == 0x0A0D0D0A:  # Section Header Block (the same in either byte order)
            bom = PCAPNG_BYTE_ORDERS.get(buf[pos + 8:pos + 12])
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
            return NG_FRAME, nxt, body + 20, caplen, ((tsh << 32) | tsl) / iface.div + iface.offset, iface
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
            return NG_FRAME, nxt, body + 4, caplen, None, ifaces[0]
        if btype == 1:  # Interface Description Block
            if bend - body < 8:
                bad("pcapng-bad-block", frame + 1)
                return NG_SKIP, nxt, 0
            iface = _idb(buf, body, bend, self.order)
            ifaces.append(iface)
            self.every.append(iface)
        return NG_SKIP, nxt, 0  # name resolution, statistics, custom, ...: nothing to audit
