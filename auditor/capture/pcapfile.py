"""The record walk over large blocks of capture bytes: pcap records, and pcapng Enhanced Packet Blocks
(pcapng's other blocks and its section state: capture/pcapng.py).

The walkers work on one read block at a time (CHUNK, 8 MiB; a record cut by a read is joined through
a small window, see _Reader), read record headers with precompiled structs and hand (buffer, offset,
length) to the decoder: no per-packet objects but the record itself, and none at all for a packet the
conversation core's fast lane takes (Decoder.lane). For Ethernet (pcap, and pcapng interfaces) the walk, the decoder's
Ethernet/IPv4 fast path and the lane run fused in one loop. A record that runs past the end of the
data ends the walk with ``truncated`` and a warning naming the last frame read; a corrupt record or
block header does the same (there is no way to resynchronise safely), and so does a run of
decode.BAD_RUN_MAX malformed frames in a row (junk after a valid header: the rest is not read).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from auditor.apps import APP_SNAP
from auditor.capture.decode import (
    _E4L,
    _E4LV,
    _I6L,
    _KEEP_FIRST,
    _SEQACK,
    _ULEN_SUM,
    DHCP_PORTS,
    GENEVE_PORT,
    VERIFY_ALL_FRAMES,
    VERIFY_EVERY_MASK,
    VXLAN_PORT,
    BadRun,
    Decoder,
    bad_run_why,
    linktype_name,
)
from auditor.capture.info import InputInfo
from auditor.capture.source import CHUNK, DECOMPRESS_ERRORS
from auditor.errors import CaptureError
from auditor.model import PAYLOAD_SNAP, PacketRecord

if TYPE_CHECKING:
    from auditor.capture.pcapng import Blocks
    from auditor.capture.spill import SpillWriter, _Tail
    from auditor.capture.split import Parse, Split

PCAP_MAGICS = {
    # magic as stored -> (byte order, nanosecond, record header length)
    b"\xd4\xc3\xb2\xa1": ("<", False, 16),
    b"\xa1\xb2\xc3\xd4": (">", False, 16),
    b"\x4d\x3c\xb2\xa1": ("<", True, 16),
    b"\xa1\xb2\x3c\x4d": (">", True, 16),
    # Alexey Kuznetsov's patched libpcap: 8 more bytes per record header (ifindex, protocol, type).
    b"\x34\xcd\xb2\xa1": ("<", False, 24),
    b"\xa1\xb2\xcd\x34": (">", False, 24),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

# Largest record we accept: libpcap's 262144-byte maximum snapshot, or the file's snaplen, within a
# bound that keeps a corrupt length from making us read gigabytes into memory.
_MAX_RECORD = 1 << 24
# Progress callback cadence: every this many frames (and no more often than every 0.1 s).
PROGRESS_EVERY = 1 << 15

Tick = Callable[[], None]


NG_MORE, NG_SKIP, NG_FRAME, NG_STOP, NG_END = range(5)
"""What pcapng.Blocks.block tells the walk to do with a block (see there)."""


def _record_parser(record: struct.Struct, hl: int, scale: float, lt: int) -> Parse:
    """A split replay's reading of a pcap record (see split.Parse); ``hl``: the record header's
    length (24 in Kuznetsov's format, where ``record`` reads its first 16 bytes)."""
    unpack = record.unpack_from

    def parse(b: bytes, p: int) -> tuple[int, int, float, int, int]:
        sec, frac, caplen, _ = unpack(b, p)
        return p + hl, caplen, sec + frac * scale, lt, p + hl + caplen

    return parse


class PcapHeader(NamedTuple):
    nano: bool
    """Nanosecond timestamps."""
    hl: int
    """Record header length."""
    lt: int
    """Link type (the upper bits of the field carry FCS information, pcap draft §4: dropped)."""
    limit: int
    """The largest captured length a record may have (larger: a corrupt header)."""
    record: struct.Struct
    """The record header: seconds, sub-second, captured length, original length."""


def pcap_header(head: bytes) -> PcapHeader | None:
    """The facts of a pcap file header (its first 24 bytes), or None if ``head`` is not one."""
    if len(head) < 24 or head[:4] not in PCAP_MAGICS:
        return None
    order, nano, hl = PCAP_MAGICS[head[:4]]
    snaplen, network = struct.unpack_from(order + "16xII", head)
    return PcapHeader(nano, hl, network & 0xFFFF, min(max(snaplen, 262144), _MAX_RECORD),
                      struct.Struct(order + "IIII"))


class CaptureBytes(Protocol):
    """What a walk reads from: a Source (capture/source.py), or a split worker's tail of a file."""

    compression: str

    def read(self, size: int) -> bytes: ...

    def unbound(self) -> None: ...

    def hash_rest(self) -> None: ...


class _Reader:
    """The window over the capture bytes; ``more`` moves it on when a record needs more data.

    A record cut by a block boundary is joined without copying the whole new block: the window
    becomes the cut record's start plus the first WINDOW bytes of the block, and once the walker is
    past the joint it continues in the block itself (at ``pos``). Copying every 8 MiB block into a
    new buffer cost ~3 % of a run.
    """

    WINDOW = 1 << 18

    def __init__(self, src: CaptureBytes, first: bytes, info: InputInfo) -> None:
        self.src = src
        self.info = info
        self.buf = first
        self.pos = 0
        self.eof = False
        self._block: bytes | None = None
        """While the window is a joint: the block it continues into."""
        self._joint = 0
        """While the window is a joint: where the block starts in it."""
        self.base = 0
        """Offset in the capture bytes of ``buf[0]`` (a spill writer records where frames are)."""
        self.split: Split | None = None
        """The split this walk reads up to (auditor/capture/split.py): its end is checked here."""
        self.why = ""
        """Why the walk stopped early (``stop``), for a spill writer's end message."""
        self.dec: Decoder | None = None
        """The walk's decoder (whether a run of malformed frames goes on at a split's boundary)."""

    def more(self, pos: int, frame: int = 0) -> bool:
        """Move the window on from ``pos`` (the walker's position in ``buf``, after ``frame``
        frames); afterwards the walker goes on at ``self.pos`` in ``self.buf``. False at the end or
        on a read error."""
        block = self._block
        if block is not None:
            self._block = None
            if pos >= self._joint:  # past the joint: the rest of the window is in the block
                self.buf, self.pos = block, pos - self._joint
                self.base += self._joint
            else:  # a record longer than the window straddles the joint: join in full
                self.buf, self.pos = self.buf[pos:] + block[len(self.buf) - self._joint:], 0
                self.base += pos
            return True
        if self.eof:
            return False
        try:
            chunk = self.src.read(CHUNK)
        except DECOMPRESS_ERRORS as e:
            self.eof = True
            self.info.warnings.append(f"{self.src.compression} data is damaged ({e}); read what came before")
            self.info.truncated = True
            return False
        if not chunk and self.split is not None:
            # The end of this process's byte range: at a record boundary the other process's spill
            # takes over from here; inside a record the boundary was a guess gone wrong, and this
            # walk reads on itself (the split is dropped: slower, never different).
            split, self.split = self.split, None
            # A run of malformed frames going on at the boundary would go on in the worker's part,
            # where the worker's count of it starts at 0: the split is dropped (decode.BadRun).
            if pos == len(self.buf) and not (self.dec is not None and self.dec.in_bad_run(frame)):
                split.verified = True
                self.src.hash_rest()
            else:
                split.abandon()
                self.src.unbound()
                return self.more(pos, frame)
        if not chunk:
            self.eof = True
            return False
        self.base += pos
        tail = self.buf[pos:]
        if not tail:
            self.buf = chunk
        elif len(chunk) <= self.WINDOW:
            self.buf = tail + chunk
        else:
            self.buf, self._block, self._joint = tail + chunk[:self.WINDOW], chunk, len(tail)
        self.pos = 0
        return True

    def restart(self, src: CaptureBytes, base: int) -> None:
        """Read on from ``src``, which starts at offset ``base`` of the capture bytes (a split's
        worker handed the rest back, capture/pcapng.py)."""
        self.src = src
        self.buf = b""
        self.pos = 0
        self.base = base
        self.eof = False
        self._block = None
        self.split = None

    def give_up(self, frame: int, e: BadRun) -> None:
        """Stop at a run of malformed frames (decode.BadRun) that ends at ``e.offset``: the rest of
        the input is hashed, not read."""
        self.stop(frame, bad_run_why(e, self.src.compression))
        self.src.hash_rest()

    def stop(self, frame: int, why: str) -> None:
        self.why = why
        self.info.truncated = True
        self.info.warnings.append(f"{why}: stopped after frame {frame}" if frame else
                                  f"{why}: stopped before the first frame")


def walk_pcap(src: CaptureBytes, first: bytes, info: InputInfo, dec: Decoder, tick: Tick, *,
              fused: bool = True, split: Split | None = None,
              spill: SpillWriter | None = None, ng: Blocks | None = None) -> Iterator[PacketRecord]:
    """Records of a pcap file, or with ``ng`` of a pcapng file (its section state and its blocks
    other than whole Enhanced Packet Blocks of a known interface: capture/pcapng.py). For Ethernet
    (link type 1) the walk, the decoder's fast path and the fast lane (``dec.lane``, inlined) run
    fused in one loop (``fused=False``: one ``Decoder.decode`` call per frame instead; both give the
    same records and conversations, see tests/test_capture_fastpath.py and
    tests/test_conversations_lane.py).

    ``split``: ``src`` ends at the split's boundary, past which a worker process spilled the frames
    (capture/split.py); a walk that ends there replays the spill instead of reading on (pcapng: and
    reads on where the worker handed back, ``Split.resume``).
    ``spill`` (in that worker): every frame goes to the spill writer; nothing is yielded."""
    r = _Reader(src, first, info)
    r.split = split
    r.dec = dec
    if ng is None:
        while len(r.buf) < 24:
            if not r.more(0):
                raise CaptureError(f"{info.path}: truncated pcap file header ({len(r.buf)} bytes)")
        header = pcap_header(r.buf)
        assert header is not None  # the caller checked the magic
        info.format = "pcap"
        # The record format: read only where ``ng`` is None (pcapng blocks carry their own).
        hl, lt, limit, record = header.hl, header.lt, header.limit, header.record
        scale = 1e-9 if header.nano else 1e-6
        unpack = record.unpack_from
        pos = 24
    else:
        info.format = "pcapng"
        lt = 0  # each frame's link type is its interface's
        pos = 0
    decode = dec.decode
    buf = r.buf
    blen = len(buf)
    frame = records = 0
    lo, hi = float("inf"), float("-inf")
    taken = cd = 0
    resumed: _Tail | None = None
    try:
        # For Ethernet (``eth``), Decoder.decode's Ethernet/IPv4 TCP/UDP fast path is inlined here:
        # one Python call per frame fewer, and the decoder's attributes bound to locals once. Keep it
        # in step with Decoder.decode (the equivalence tests compare the two on varied captures).
        # Other link types (and fused=False) call Decoder.decode for every frame.
        # With a fast lane (conversations.FastLane), its ``take`` is inlined too: a packet of a
        # live connection updates the connection here and never becomes a record. The sweep
        # countdown ``cd`` and the count ``taken`` live in locals and go back to the core
        # (``release``) before anything else reaches it: a yielded record or a decode() call.
        e4, e4v, seqack, ulensum, keep, new = _E4L, _E4LV, _SEQACK, _ULEN_SUM, _KEEP_FIRST, object.__new__
        i6 = _I6L
        ii, verify, jobs, shard, lane = dec.ii, dec.verify, dec.jobs, dec.shard, dec.lane
        pmask, verify_all, vmask, snap = PROGRESS_EVERY - 1, VERIFY_ALL_FRAMES, VERIFY_EVERY_MASK, PAYLOAD_SNAP
        appsnap = APP_SNAP
        eth = lt == 1 and fused
        if spill is not None:
            slane = spill.lane
        if (eth or ng is not None) and fused and lane is not None and spill is None:
            tget = lane.table.get
            letters = lane.letters
            o_d, o_a = lane.data_bit, lane.ack_bit
            r_d, r_a = o_d << lane.resp_shift, o_a << lane.resp_shift
            cd = lane.hold()
        else:
            tget = None
        if ng is not None:
            epbh, ifaces, block = ng.epbh, ng.ifaces, ng.block
            maxblk = _MAX_RECORD + 4096
            nif = len(ifaces)
            # The interface of the last whole EPB and what the loop needs of it, so that a run of
            # packets from one interface (the common case) costs no lookups.
            cur_if, div, toff = -1, 1, 0
            iface: Any = None
        while True:  # once more where a split's worker handed back (pcapng)
            while True:
                rstart = pos  # where the record (pcapng: the block) starts
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
                    sec, frac, caplen, _origlen = unpack(buf, pos)
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
                    # Block of a known interface. Anything else is Blocks.block's to judge.
                    whole = False
                    if blen - pos >= 28:
                        btype, blk, ifid, tsh, tsl, caplen = epbh(buf, pos)
                        whole = (btype == 6 and 32 <= blk <= blen - pos and not blk & 3 and blk <= maxblk
                                 and ifid < nif and caplen <= blk - 32)
                    if whole:
                        if ifid != cur_if:
                            cur_if, iface = ifid, ifaces[ifid]
                            div, toff, lt = iface.div, iface.offset, iface.lt
                            eth = lt == 1 and fused
                        start = pos + 28
                        pos += blk
                        frame += 1
                        ts = ((tsh << 32) | tsl) / div + toff
                        if ts < lo:
                            lo = ts
                        if ts > hi:
                            hi = ts
                    else:
                        act = block(r, buf, pos, blen, frame, spill)
                        epbh, ifaces = ng.epbh, ng.ifaces  # a new section or interface
                        nif, cur_if = len(ifaces), -1
                        kind = act[0]
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
                        if kind != NG_FRAME:  # the walk stops (or, in a split's worker, hands back)
                            if kind == NG_STOP:
                                r.stop(frame, act[1])
                            break
                        _, pos, start, caplen, stamp, iface, rstart = act
                        ts = 0.0 if stamp is None else stamp
                        frame += 1
                        if stamp is not None:
                            if ts < lo:
                                lo = ts
                            if ts > hi:
                                hi = ts
                        lt = iface.lt
                        eth = lt == 1 and fused
                    iface.frames += 1
                    nxt = start + caplen
                if not frame & pmask:
                    tick()
                if eth and caplen >= 54:
                    if buf[start + 12] == 0x81 and buf[start + 13] == 0:  # 802.1Q: one unpack, not two
                        et, vihl, tot, frag, proto, s, d, sport, dport, offb, flags = e4v(buf, start)
                        p = start + 18
                    else:
                        et, vihl, tot, frag, proto, s, d, sport, dport, offb, flags = e4(buf, start)
                        p = start + 14
                    fast = False  # a plain IPv4/IPv6 TCP/UDP packet: taken by the lane or built here
                    ihl = 0  # IP header length: 20 for IPv4 without options, 40 for IPv6 without extensions
                    if et == 0x0800:
                        if vihl == 0x45 and not frag & 0x3FFF:
                            ihl = 20
                    elif et == 0x86DD and caplen - (p - start) >= 54 and buf[p] >> 4 == 6:
                        l4len, proto, s, d, sport, dport, offb, flags = i6(buf, p)
                        tot = 40 + l4len
                        ihl = 40
                    if ihl:
                        l4 = p + ihl
                        if proto == 6 and tot >= ihl + 20 and nxt - l4 >= 20:
                            doff = (offb >> 4) << 2
                            plen = tot - ihl - doff
                            if doff >= 20 and plen >= 0:
                                if ihl == 20 and jobs > 1 and (s[-1] + s[-2] + d[-1] + d[-2]) % jobs != shard:
                                    dec.skipped += 1
                                    continue
                                ipend = p + tot
                                quiet = True  # no payload that names.py reads
                                a = b = 0
                                if plen:
                                    a = l4 + doff
                                    b = ipend if ipend < nxt else nxt
                                    if a < b and buf[a] not in keep and sport != 53 and dport != 53:
                                        if b > a + appsnap:
                                            b = a + appsnap
                                    else:
                                        quiet = a >= b
                                        if b > a + snap:
                                            b = a + snap
                                bad = False
                                if verify and ipend <= nxt and (frame <= verify_all or flags & 7 or not frame & vmask):
                                    n = int.from_bytes(buf[l4:ipend], "big")
                                    if tot & 1:
                                        n <<= 8
                                    bad = (n + int.from_bytes(s, "big") + int.from_bytes(d, "big")
                                           + 6 + tot - ihl) % 0xFFFF != 0
                                fast = True
                                takeable = quiet and not bad and not flags & 7
                                data = plen
                        elif proto == 17 and tot >= ihl + 8:
                            ulen, ucs = ulensum(buf, l4 + 4)
                            if 8 <= ulen <= tot - ihl and dport != VXLAN_PORT and dport != GENEVE_PORT:
                                if (ihl == 20 and jobs > 1 and sport not in DHCP_PORTS and dport not in DHCP_PORTS
                                        and (s[-1] + s[-2] + d[-1] + d[-2]) % jobs != shard):
                                    dec.skipped += 1
                                    continue
                                plen = ulen - 8
                                bad = False
                                if (ucs and verify and l4 + ulen <= nxt
                                        and (frame <= verify_all or not frame & vmask)):
                                    n = int.from_bytes(buf[l4:l4 + ulen], "big")
                                    if ulen & 1:
                                        n <<= 8
                                    bad = (n + int.from_bytes(s, "big") + int.from_bytes(d, "big")
                                           + 17 + ulen) % 0xFFFF != 0
                                fast = True
                                takeable = not bad and sport != 53 and dport != 53
                                data = 1  # every UDP packet counts as data in the history
                    if fast:
                        records += 1
                        if spill is not None:  # the worker of a split: the fields, or the frame
                            if takeable:
                                slane((proto, s, sport, d, dport), ts, 1 if data else (2 if flags & 0x10 else 0),
                                      tot, r.base + rstart, r.base + pos)
                            else:
                                spill.raw(buf, start, caplen, ts, r.base + start, lt, r.base + pos)
                            continue
                        if takeable and tget is not None and cd != 1:
                            ent = tget((proto, s, sport, d, dport))
                            if ent is not None:
                                c, is_orig = ent
                                last = c.last
                                if ts - last <= c.timeout and (c.os if is_orig else c.rs) and not (
                                        plen and (c.ho if is_orig else c.hr) is None) and c.chain is None:
                                    # FastLane.take, inlined
                                    cd -= 1
                                    taken += 1
                                    if ts > last:
                                        c.last = ts
                                    elif ts < c.first:
                                        c.first = ts
                                    if is_orig:
                                        c.opk += 1
                                        c.oby += tot
                                        bit = o_d if data else (o_a if flags & 0x10 else 0)
                                    else:
                                        c.rpk += 1
                                        c.rby += tot
                                        bit = r_d if data else (r_a if flags & 0x10 else 0)
                                    if bit and not c.hseen & bit:
                                        c.hseen |= bit
                                        c.hist.append(letters[bit])
                                    continue
                        # PacketRecord's own __init__ is a Python call through type.__call__
                        # (~0.2 µs of the ~1 µs per record on 3.11); it has no __post_init__,
                        # so set every slot here (a test pins the field list).
                        out = new(PacketRecord)
                        out.input_index = ii
                        out.frame = frame
                        out.ts = ts
                        out.src = s
                        out.dst = d
                        out.ip_len = tot
                        out.sport = sport
                        out.dport = dport
                        out.payload_len = plen
                        if proto == 6:
                            out.proto = 6
                            out.tcp_flags = flags
                            out.seq, out.ack = seqack(buf, l4 + 4)
                            out.payload = buf[a:b] if plen else b""
                        else:
                            out.proto = 17
                            out.tcp_flags = out.seq = out.ack = 0
                            if plen:
                                a = l4 + 8
                                b = a + plen
                                if b > nxt:
                                    b = nxt
                                if b > a + snap:
                                    b = a + snap
                                out.payload = buf[a:b]
                            else:
                                out.payload = b""
                        out.icmp_type = -1
                        out.icmp_code = -1
                        out.icmp_id = 0
                        out.quoted = None
                        out.checksum_bad = bad
                        out.tunnel = None
                        out.fragment = False
                        out.ttl = buf[p + 8] if ihl == 20 else buf[p + 7]  # TTL, IPv6 hop limit
                        if tget is not None:
                            lane.release(cd, taken)  # type: ignore[union-attr]
                            taken = 0
                            yield out
                            cd = lane.hold()  # type: ignore[union-attr]
                        else:
                            yield out
                        continue
                if tget is not None:
                    lane.release(cd, taken)  # type: ignore[union-attr]
                    taken = 0
                    rec = decode(buf, start, caplen, ts, frame, lt)
                    if rec is not None:
                        records += 1
                        yield rec
                    cd = lane.hold()  # type: ignore[union-attr]
                elif spill is not None:
                    spill.decode(dec, buf, start, caplen, ts, frame, lt, r.base + start, start - rstart, r.base + pos)
                else:
                    rec = decode(buf, start, caplen, ts, frame, lt)
                    if rec is not None:
                        records += 1
                        yield rec
            if tget is not None:
                lane.release(cd, taken)  # type: ignore[union-attr]
                taken = 0
            if split is None or not split.verified:
                break
            # This walk ended at the boundary: the worker's spill holds the rest.
            parse = _record_parser(record, hl, scale, lt) if ng is None else ng.parser()
            frame, more = yield from split.replay(dec, frame, tick, parse)
            records += more
            if split.first_ts is not None and split.last_ts is not None:
                lo, hi = min(lo, split.first_ts), max(hi, split.last_ts)
            if ng is not None:
                for iface, n in zip(ng.ifaces, split.iface_frames, strict=False):
                    iface.frames += n
            if split.why:
                r.stop(frame, split.why)
                break
            if split.resume is None:
                break
            # The worker handed back at a block it does not walk alike (pcapng): read on from there.
            from auditor.capture.spill import reader_at

            resumed = reader_at(info.path, split.resume)
            r.restart(resumed, split.resume)
            buf, blen, pos = r.buf, 0, 0
            split = None
            if tget is not None:
                cd = lane.hold()  # type: ignore[union-attr]
    except BadRun as e:
        # The decoder (or Blocks.block, for a packet block it cannot place) counted the frame that
        # made the run; ``pos`` is past its record (a block's start, from Blocks.block).
        frame = max(frame, e.frame)
        e.offset = r.base + pos + (spill.shift if spill is not None else 0)
        r.give_up(frame, e)
    finally:
        if taken:  # stopped between yields (an exception in the loop): hand back what was taken
            lane.release(cd, taken)  # type: ignore[union-attr]
        if resumed is not None:
            resumed.close()
        if spill is not None:
            spill.why = r.why
            if ng is not None:
                spill.iface_frames = [iface.frames for iface in ng.ifaces]
        info.packets = frame
        if ng is None:
            if frame:
                info.link_types[linktype_name(lt)] = frame
        else:
            for iface in ng.every:
                if iface.frames:
                    info.link_types[iface.name] = info.link_types.get(iface.name, 0) + iface.frames
        if hi >= lo:
            info.first_ts, info.last_ts = lo, hi
        dec.stats.frames += frame
        dec.stats.records += records + dec.laned
        dec.laned = 0
