"""The per-packet kernel: the one hot path from capture bytes to a PacketRecord or the fast lane.

Framing (``Kernel.walk``): pcap records and pcapng Enhanced Packet Blocks, read in the reader's
block buffer (capture/pcapfile.py's window; pcapng's other blocks and section state:
capture/pcapng.py). Then (``Kernel.decode``) Ethernet (+one 802.1Q tag), Linux cooked (SLL, SLL2),
raw IP and BSD loopback, carrying IPv4 without options or fragmentation or IPv6 without extension
headers, then TCP or plain UDP: decoded with precompiled structs on the reader's block buffer,
offered to the conversation core's fast lane (``FastLane.take``) when the packet needs nothing but counting,
else built into a record. Everything else, and any doubt, goes to the general decoder (``slow``:
capture/decode.py), which checks every bound and counts what it cannot decode. Both the walk and
``Decoder.decode`` (the other readers) call ``Kernel.decode``: there is no other copy.

The module is kept to what mypyc compiles well (typed locals, no lambdas, no object.__new__): an
install with a C compiler builds it native (setup.py), and capture/native.py chooses which runs; this
pure-Python module is the reference, always installed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol

from auditor.apps import APP_SNAP
from auditor.model import PAYLOAD_SNAP
from auditor.record import PacketRecord

if TYPE_CHECKING:
    # Only its type: the kernel calls the lane's take through its class (in the compiled build a C
    # call, the numbers unboxed), and is handed the lane by its reader (capture/decode.py).
    from auditor.conversations.lane import FastLane

Slow = Callable[[bytes, int, int, float, int, int], PacketRecord | None]
"""The general decoder: (buf, frame start, frame end, ts, frame number, link type)."""
Tick = Callable[[], None]

UDP_KEY: Final = b"\x11"
"""What a UDP packet's table key starts with, before the addresses and ports the kernel slices from
the packet (auditor/conversations/state.py's conn_key and UDP_KEY, which
tests/test_conversations_lane.py holds it to; the kernel does not import the core)."""
MAX_RECORD: Final = 1 << 24
"""The largest record or block a walk accepts (a corrupt length must not read gigabytes into memory)."""
PROGRESS_EVERY = 1 << 15
"""A walk calls its ``tick`` every this many frames (read when it starts: tests replace it)."""
NG_MORE: Final = 0
NG_SKIP: Final = 1
NG_FRAME: Final = 2
NG_STOP: Final = 3
"""What ``Sections.block`` tells the walk to do with a pcapng block (capture/pcapng.py)."""


class Window(Protocol):
    """The read window over the capture bytes (capture/pcapfile.py's _Reader)."""

    buf: bytes
    pos: int
    base: int
    unsafe: bool

    def more(self, pos: int, frame: int = 0) -> bool: ...

    def stop(self, frame: int, why: str) -> None: ...


class Sections(Protocol):
    """A pcapng file's section state and its blocks other than whole Enhanced Packet Blocks of a
    known interface (capture/pcapng.py's Blocks)."""

    @property
    def big(self) -> bool: ...

    @property
    def ifaces(self) -> list[Any]: ...

    def block(self, r: Window, buf: bytes, pos: int, blen: int, frame: int) -> tuple[Any, ...]: ...


class Walked(Protocol):
    """Where a walk got to, written when it ends (however it ends)."""

    frame: int
    records: int
    pos: int
    lo: float
    hi: float

# Ethernet type, IPv4 (version+IHL, total length, flags+fragment offset, protocol) and the TCP
# ports, data offset and flags (for UDP: its ports and 6 more bytes) in one read, untagged and with
# one 802.1Q tag; the same from the IPv4 header on (other link layers); IPv6 (payload length, next
# header) and the same transport fields. The addresses, TCP seq/ack and UDP length/checksum are read
# apart, only when needed: a packet the lane takes makes one object, its table key (the addresses
# and ports, one slice), where it made the two addresses, two integers and a tuple. These formats are
# the one description of the headers: in the compiled build each ``a, b, ... = _X(buf, off)`` below is
# a read of the bytes by index (setup.py's unrolled_reads), which makes no tuple and no integer.
_E4: Final = struct.Struct("!12xHBxH2xHxB10xHH8xBB").unpack_from
_E4V: Final = struct.Struct("!16xHBxH2xHxB10xHH8xBB").unpack_from
_I4: Final = struct.Struct("!BxH2xHxB10xHH8xBB").unpack_from
_I6: Final = struct.Struct("!4xHBx32xHH8xBB").unpack_from
_SEQACK: Final = struct.Struct("!II").unpack_from
_ULEN_SUM: Final = struct.Struct("!HH").unpack_from
_U16: Final = struct.Struct("!H").unpack_from
_U32: Final = struct.Struct("!I").unpack_from
_U32LE: Final = struct.Struct("<I").unpack_from
# A pcap record header (seconds, sub-second, captured and original length) and the head of a pcapng
# Enhanced Packet Block (type, length, interface, timestamp high and low, captured length), in
# each byte order.
_REC_BE: Final = struct.Struct(">IIII").unpack_from
_REC_LE: Final = struct.Struct("<IIII").unpack_from
_EPB_BE: Final = struct.Struct(">IIIIII").unpack_from
_EPB_LE: Final = struct.Struct("<IIIIII").unpack_from

VXLAN_PORT: Final = 4789
GENEVE_PORT: Final = 6081
ETH_IPV4: Final = 0x0800
ETH_IPV6: Final = 0x86DD
# BSD loopback address families meaning IPv6 (Linux, NetBSD/OpenBSD, FreeBSD, Darwin).
AF_INET6: Final = frozenset((10, 24, 28, 30))
# Link types whose frames are a bare IP packet (RAW, IPV4, IPV6).
RAW_LINKTYPES: Final = frozenset((101, 12, 14, 228, 229))

# TCP segments keep only the first payload byte when they can carry no name evidence
# (auditor/names.py: DNS over TCP on port 53, a TLS handshake record 0x16, an HTTP request line),
# and apps.APP_SNAP bytes for protocol identification (auditor/apps.py); the conversation core reads
# TCP payload not at all. Letters of either case are kept in full (HTTP methods are upper-case; lower
# case costs nothing to keep). Read when a Kernel is made (tests replace it).
KEEP_FIRST = frozenset(b"\x16ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

# Transport checksums cost about a third of decoding. They only tell whether the capture host
# offloaded checksumming, so the kernel verifies every packet whose frame starts in the first
# VERIFY_ALL_BYTES of an input (of its decompressed data, for a compressed one), and after that
# every TCP SYN, FIN and RST (so each TCP connection still gets its own verdict, and its 'C' history
# letter) and the other packets whose timestamp, in microseconds, is a multiple of VERIFY_EVERY (the
# count stays a count, of a sample; the report says so). Both are the packet's own: a byte range of
# a file (capture/ranges.py) knows where its frames are in the file and their timestamps, so it
# verifies exactly the packets one read of the file does (a count of frames would differ). The
# timestamp's microsecond is as good as random in real traffic; a prime spreads coarse clocks
# (milliseconds, whole seconds) over the sample as well, and a checksum field or payload would not
# do (offloaded checksums can be the same in every packet of a connection). Packets on the general
# path (tunnels, fragments, options) are always verified.
VERIFY_ALL_BYTES = 4 << 20
VERIFY_EVERY: Final = 61
CHECKSUM_POLICY = (f"every packet in the first {VERIFY_ALL_BYTES >> 20} MiB of each input, then every TCP "
                   f"SYN, FIN and RST and, of the other packets on the common path, those whose timestamp "
                   f"in microseconds is a multiple of {VERIFY_EVERY} (1 in {VERIFY_EVERY})")


def checksum_bad(buf: bytes, a: int, b: int, addrs: bytes, proto: int) -> bool:
    """Internet checksum over pseudo-header (``addrs``: the source address, then the destination) +
    segment buf[a:b].

    Since 2**16 == 1 (mod 0xFFFF), the one's-complement sum of 16-bit words is congruent to the
    whole big-endian integer mod 0xFFFF: one C-level conversion instead of a Python loop (and the
    two addresses, of an even number of bytes each, as one). A correct segment sums to 0xFFFF, i.e.
    0 mod 0xFFFF.
    """
    n = int.from_bytes(buf[a:b], "big")
    if (b - a) & 1:
        n <<= 8
    return (n + int.from_bytes(addrs, "big") + proto + b - a) % 0xFFFF != 0


class Kernel:
    """The hot path of one input's decoder (capture/decode.py's Decoder makes it and owns ``slow``)."""

    __slots__ = ("all_below", "ii", "keep", "lane", "laned", "slow", "verify", "verify_all")

    def __init__(self, input_index: int, verify: bool, all_below: int, slow: Slow) -> None:
        self.ii = input_index
        self.verify = verify
        self.all_below = all_below
        """The offset in the input before which a frame has its checksums verified (VERIFY_ALL_BYTES)."""
        self.verify_all = True
        """Verify every checksum, not the sample: until the walk meets a frame at ``all_below`` or past it."""
        self.slow = slow
        self.keep: frozenset[int] = KEEP_FIRST
        self.lane: FastLane | None = None
        """The conversation core's fast lane, offered the common packets that need no record."""
        self.laned = 0
        """Packets the lane took (records in all but object: the walk counts them as records)."""

    def decode(self, buf: bytes, off: int, caplen: int, ts: float, frame: int, lt: int) -> PacketRecord | None:
        """The frame buf[off:off+caplen] of link type ``lt``: its record, or None when the lane took
        it or the general decoder (``slow``) found nothing to record."""
        end = off + caplen
        et: int
        vihl: int = 0x45
        tot: int = 0
        frag: int = 0
        proto: int
        sport: int
        dport: int
        offb: int
        flags: int
        p: int
        if lt == 1:
            if caplen < 54:
                return self.slow(buf, off, end, ts, frame, lt)
            if buf[off + 12] == 0x81 and buf[off + 13] == 0:  # one 802.1Q tag
                et, vihl, tot, frag, proto, sport, dport, offb, flags = _E4V(buf, off)
                p = off + 18
            else:
                et, vihl, tot, frag, proto, sport, dport, offb, flags = _E4(buf, off)
                p = off + 14
        else:
            # Other link layers: find the IP header and its ethertype (0: the general path's).
            if lt == 113:  # Linux cooked (SLL)
                if caplen < 16:
                    return self.slow(buf, off, end, ts, frame, lt)
                p, et = off + 16, _U16(buf, off + 14)[0]
            elif lt == 276:  # Linux cooked v2 (SLL2)
                if caplen < 20:
                    return self.slow(buf, off, end, ts, frame, lt)
                p, et = off + 20, _U16(buf, off)[0]
            elif lt in RAW_LINKTYPES:
                v = buf[off] >> 4 if caplen else 0
                p, et = off, ETH_IPV4 if v == 4 else ETH_IPV6 if v == 6 else 0
            elif lt == 0 or lt == 108:  # BSD loopback: NULL in host byte order (guessed), LOOP big-endian
                if caplen < 4:
                    return self.slow(buf, off, end, ts, frame, lt)
                big = lt == 108 or (buf[off] == 0 and buf[off + 1] == 0)
                fam: int = _U32(buf, off)[0] if big else _U32LE(buf, off)[0]
                p, et = off + 4, ETH_IPV4 if fam == 2 else ETH_IPV6 if fam in AF_INET6 else 0
            else:
                return self.slow(buf, off, end, ts, frame, lt)
            if et == ETH_IPV4:
                if end - p < 40:
                    return self.slow(buf, off, end, ts, frame, lt)
                vihl, tot, frag, proto, sport, dport, offb, flags = _I4(buf, p)
        if et == ETH_IPV4:
            if vihl != 0x45 or frag & 0x3FFF:
                return self.slow(buf, off, end, ts, frame, lt)
            l4 = p + 20
            ka = p + 12  # the addresses, then the ports: the 5-tuple's table key (conversations/state.conn_key)
            l4len = tot - 20
            ttl = buf[p + 8]
        elif et == ETH_IPV6 and end - p >= 54 and buf[p] >> 4 == 6:
            l4len, proto, sport, dport, offb, flags = _I6(buf, p)
            l4 = p + 40
            ka = p + 8
            tot = 40 + l4len
            ttl = buf[p + 7]  # the hop limit
        else:
            return self.slow(buf, off, end, ts, frame, lt)
        lane = self.lane
        if proto == 6:
            doff = (offb >> 4) << 2
            plen = l4len - doff
            if l4len < 20 or end - l4 < 20 or doff < 20 or plen < 0:
                return self.slow(buf, off, end, ts, frame, lt)
            ipend = l4 + l4len
            quiet = True  # no payload that names.py reads
            a = b = 0
            if plen:
                a = l4 + doff
                b = ipend if ipend < end else end
                if a < b and buf[a] not in self.keep and sport != 53 and dport != 53:
                    if b > a + APP_SNAP:
                        b = a + APP_SNAP
                else:
                    quiet = a >= b
                    if b > a + PAYLOAD_SNAP:
                        b = a + PAYLOAD_SNAP
            bad = False
            if (self.verify and ipend <= end
                    and (self.verify_all or flags & 7 or not int(ts * 1e6 + 0.5) % VERIFY_EVERY)):
                bad = checksum_bad(buf, l4, ipend, buf[ka:l4], 6)
            if quiet and not bad and lane is not None and lane.take(6, buf[ka:l4 + 4], ts, flags, plen, tot):
                self.laned += 1
                return None
            seq: int
            ack: int
            seq, ack = _SEQACK(buf, l4 + 4)
            half = (l4 - ka) >> 1  # an address's length: 4 or 16
            return PacketRecord(self.ii, frame, ts, buf[ka:ka + half], buf[ka + half:l4], 6, tot, sport, dport,
                                flags, seq, ack, plen, buf[a:b] if plen else b"", -1, -1, 0, None, bad, None, False,
                                ttl)
        if proto == 17 and l4len >= 8 and dport != VXLAN_PORT and dport != GENEVE_PORT:
            ulen: int
            ucs: int
            ulen, ucs = _ULEN_SUM(buf, l4 + 4)
            if ulen < 8 or ulen > l4len:
                return self.slow(buf, off, end, ts, frame, lt)
            plen = ulen - 8
            bad = False
            if (ucs and self.verify and l4 + ulen <= end
                    and (self.verify_all or not int(ts * 1e6 + 0.5) % VERIFY_EVERY)):
                bad = checksum_bad(buf, l4, l4 + ulen, buf[ka:l4], 17)
            if (not bad and lane is not None and sport != 53 and dport != 53
                    and lane.take(17, UDP_KEY + buf[ka:l4 + 4], ts, 0, plen, tot)):
                self.laned += 1
                return None
            payload = b""
            if plen:
                a = l4 + 8
                b = a + plen
                if b > end:
                    b = end
                if b > a + PAYLOAD_SNAP:
                    b = a + PAYLOAD_SNAP
                payload = buf[a:b]
            half = (l4 - ka) >> 1
            return PacketRecord(self.ii, frame, ts, buf[ka:ka + half], buf[ka + half:l4], 17, tot, sport, dport,
                                0, 0, 0, plen, payload, -1, -1, 0, None, bad, None, False, ttl)
        return self.slow(buf, off, end, ts, frame, lt)

    def walk(self, r: Window, pos: int, w: Walked, tick: Tick, ng: Sections | None,
             hl: int, lt: int, limit: int, big: bool, scale: float) -> Iterator[PacketRecord]:
        """The records of the frames in the window ``r`` from ``pos`` on: pcap records (header length
        ``hl``, link type ``lt``, captured lengths up to ``limit``, ``big``: big-endian record
        headers, ``scale``: seconds per sub-second unit), or with ``ng`` pcapng blocks. Every frame goes to
        ``decode``; what it leaves for a record is yielded. The walk ends at the end of the data or
        at damage (``r.stop``, with why), and writes where it got to into ``w``, however it ends (a
        decode.BadRun from the general decoder goes through)."""
        buf = r.buf
        blen = len(buf)
        frame = records = 0
        lo, hi = float("inf"), float("-inf")
        pmask = PROGRESS_EVERY - 1
        sec: int
        frac: int
        caplen: int
        start: int
        nxt: int
        ts: float
        btype: int
        blk: int
        ifid: int
        tsh: int
        tsl: int
        # pcapng: the interface of the last whole EPB and what the loop needs of it, so that a run
        # of packets from one interface (the common case) costs no lookups.
        if ng is not None:
            big = ng.big
        ifaces: list[Any] = ng.ifaces if ng is not None else []
        nif = len(ifaces)
        maxblk = MAX_RECORD + 4096
        cur_if = -1
        div = 1
        toff = 0
        iface: Any = None
        counted = 0  # the frames of ``iface`` (the interface of the last whole EPB) not yet added to it
        # Every checksum verified while the frames start before ``all_below`` in the input (r.base:
        # the input's offset of buf[0]); then the sample.
        below = self.all_below
        everything = self.verify_all = True
        # A lane that takes the records too (FastLane.put): the walk then yields none.
        sink = self.lane if self.lane is not None and self.lane.puts else None
        try:
            while True:
                if ng is None:
                    if blen - pos < hl:
                        if r.more(pos, frame):
                            buf = r.buf
                            blen = len(buf)
                            pos = r.pos
                            continue
                        if blen - pos:
                            r.stop(frame, f"file ends inside a record header ({blen - pos} bytes)")
                        break
                    if big:
                        sec, frac, caplen, _origlen = _REC_BE(buf, pos)
                    else:
                        sec, frac, caplen, _origlen = _REC_LE(buf, pos)
                    start = pos + hl
                    nxt = start + caplen
                    if nxt > blen:
                        if caplen > limit:
                            r.stop(frame, f"corrupt record header (captured length {caplen})")
                            break
                        if r.more(pos, frame):
                            buf = r.buf
                            blen = len(buf)
                            pos = r.pos
                            continue
                        r.stop(frame, f"file ends inside a record ({blen - start} of {caplen} bytes)")
                        break
                    if caplen > limit:
                        r.stop(frame, f"corrupt record header (captured length {caplen})")
                        break
                    frame += 1
                    ts = sec + frac * scale
                    if ts < lo:
                        lo = ts
                    if ts > hi:
                        hi = ts
                    pos = nxt
                else:
                    # The common block first, with one unpack: a whole, well-formed Enhanced Packet
                    # Block of a known interface. Anything else is Sections.block's to judge.
                    whole = False
                    if blen - pos >= 28:
                        if big:
                            btype, blk, ifid, tsh, tsl, caplen = _EPB_BE(buf, pos)
                        else:
                            btype, blk, ifid, tsh, tsl, caplen = _EPB_LE(buf, pos)
                        whole = (btype == 6 and 32 <= blk <= blen - pos and not blk & 3 and blk <= maxblk
                                 and ifid < nif and caplen <= blk - 32)
                    if whole:
                        if ifid != cur_if:
                            if iface is not None:
                                iface.frames += counted
                            cur_if, iface, counted = ifid, ifaces[ifid], 0
                            div, toff, lt = iface.div, iface.offset, iface.lt
                        counted += 1
                        start = pos + 28
                        pos += blk
                        frame += 1
                        ts = ((tsh << 32) | tsl) / div + toff
                        if ts < lo:
                            lo = ts
                        if ts > hi:
                            hi = ts
                    else:
                        act = ng.block(r, buf, pos, blen, frame)
                        big, ifaces = ng.big, ng.ifaces  # a new section or interface
                        nif, cur_if = len(ifaces), -1
                        kind: int = act[0]
                        if kind == NG_MORE:
                            if r.more(pos, frame):
                                buf = r.buf
                                blen = len(buf)
                                pos = r.pos
                                continue
                            if act[1]:
                                r.stop(frame, act[1])
                            break
                        if kind == NG_SKIP:
                            pos = act[1]
                            frame += act[2]
                            continue
                        if kind != NG_FRAME:
                            r.stop(frame, act[1])
                            break
                        pos, start, caplen, other = act[1], act[2], act[3], act[5]
                        other.frames += 1
                        frame += 1
                        if act[4] is None:
                            ts = 0.0
                        else:
                            ts = act[4]
                            if ts < lo:
                                lo = ts
                            if ts > hi:
                                hi = ts
                        lt = other.lt
                if everything and r.base + start >= below:
                    everything = self.verify_all = False
                if not frame & pmask:
                    tick()
                rec = self.decode(buf, start, caplen, ts, frame, lt)
                if rec is not None:
                    records += 1
                    if sink is None:
                        yield rec
                    else:
                        sink.put(rec)
        finally:
            if iface is not None:
                iface.frames += counted
            w.frame, w.records, w.pos, w.lo, w.hi = frame, records, pos, lo, hi
