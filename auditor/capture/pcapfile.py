"""The record walk over large blocks of capture bytes: pcap records, and pcapng Enhanced Packet Blocks
(pcapng's other blocks and its section state: capture/pcapng.py).

The walkers work on one read block at a time (CHUNK, 8 MiB; a record cut by a read is joined through
a small window, see _Reader), read record headers with precompiled structs and hand (buffer, offset,
length) to the decoder's kernel (capture/kernel.py), for every link type: no per-packet objects but
the record itself, and none at all for a packet the conversation core's fast lane takes
(Decoder.lane). A record that runs past the end of the data ends the walk with ``truncated`` and a
warning naming the last frame read; a corrupt record or block header does the same (there is no way
to resynchronise safely), and so does a run of decode.BAD_RUN_MAX malformed frames in a row (junk
after a valid header: the rest is not read).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from auditor.capture.decode import BadRun, Decoder, bad_run_why, linktype_name
from auditor.capture.decompress import CHUNK, DECOMPRESS_ERRORS
from auditor.capture.info import InputInfo
from auditor.errors import CaptureError
from auditor.model import PacketRecord

if TYPE_CHECKING:
    from auditor.capture.pcapng import Blocks

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


NG_MORE, NG_SKIP, NG_FRAME, NG_STOP = range(4)
"""What pcapng.Blocks.block tells the walk to do with a block (see there)."""


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
    """What a walk reads from: a Source (capture/source.py), or a chunk's bytes (capture/ranges.py)."""

    compression: str

    def read(self, size: int) -> bytes: ...

    def hash_rest(self) -> None: ...


class Bounded(Protocol):
    """Capture bytes that end at a chunk's end (capture/ranges.py): the walk checks that it ends
    there at a record boundary, and reads on past it (``read_on``) where it does not."""

    def read_on(self) -> None: ...

    def at_end(self) -> None: ...


class _Reader:
    """The window over the capture bytes; ``more`` moves it on when a record needs more data.

    A record cut by a block boundary is joined without copying the whole new block: the window
    becomes the cut record's start plus the first WINDOW bytes of the block, and once the walker is
    past the joint it continues in the block itself (at ``pos``). Copying every 8 MiB block into a
    new buffer cost ~3 % of a run.
    """

    WINDOW = 1 << 18

    def __init__(self, src: CaptureBytes, first: bytes, info: InputInfo, dec: Decoder,
                 bounded: Bounded | None, base: int) -> None:
        self.src = src
        self.info = info
        self.dec = dec
        self.buf = first
        self.pos = 0
        self.eof = False
        self._block: bytes | None = None
        """While the window is a joint: the block it continues into."""
        self._joint = 0
        """While the window is a joint: where the block starts in it."""
        self.base = base
        """Offset in the capture file of ``buf[0]`` (where a run of malformed frames ends)."""
        self.bounded = bounded
        """A chunk's bytes, until the walk has checked their end (``more``)."""
        self.unsafe = False
        """A chunk's walk met a block that the next chunk would not know of (pcapng: a section header
        or an interface after the first packet): it does not end at the chunk's end."""

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
        if not chunk and self.bounded is not None:
            # The end of a chunk's byte range. The next chunk starts here and counts its own frames
            # and malformed runs, with the interfaces of the file's first blocks: where that would
            # not read as one walk does (the range ends inside a record, in a run of malformed
            # frames, or after a new section or interface), this walk reads on to the end of the
            # input instead, and says so (InputInfo.end_verified stays False: the input's later
            # chunks are not used).
            bounded, self.bounded = self.bounded, None
            if pos == len(self.buf) and not self.unsafe and not self.dec.in_bad_run(frame):
                self.info.end_verified = True
                bounded.at_end()
            else:
                bounded.read_on()
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

    def give_up(self, frame: int, e: BadRun) -> None:
        """Stop at a run of malformed frames (decode.BadRun) that ends at ``e.offset``: the rest of
        the input is hashed, not read."""
        self.stop(frame, bad_run_why(e, self.src.compression))
        self.src.hash_rest()

    def stop(self, frame: int, why: str) -> None:
        self.info.truncated = True
        self.info.stop(frame, why)


def walk_pcap(src: CaptureBytes, first: bytes, info: InputInfo, dec: Decoder, tick: Tick, *,
              ng: Blocks | None = None, bounded: Bounded | None = None,
              base: int = 0) -> Iterator[PacketRecord]:
    """Records of a pcap file, or with ``ng`` of a pcapng file (its section state and its blocks
    other than whole Enhanced Packet Blocks of a known interface: capture/pcapng.py). Every frame
    goes to the decoder's kernel (``dec.kernel.decode``), which offers common TCP/UDP packets to the
    conversation core's fast lane before it builds a record.

    ``bounded``: ``src`` is a chunk's bytes (capture/ranges.py), whose end the walk checks
    (``_Reader.more``); ``base``: the file offset of the byte after ``first``'s file header or
    first blocks minus their length (a chunk's range starts after them; only for the offsets in
    warnings)."""
    r = _Reader(src, first, info, dec, bounded, base)
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
    kernel = dec.kernel
    decode = kernel.decode
    buf = r.buf
    blen = len(buf)
    frame = records = 0
    lo, hi = float("inf"), float("-inf")
    try:
        pmask = PROGRESS_EVERY - 1
        if ng is not None:
            epbh, ifaces, block = ng.epbh, ng.ifaces, ng.block
            maxblk = _MAX_RECORD + 4096
            nif = len(ifaces)
            # The interface of the last whole EPB and what the loop needs of it, so that a run of
            # packets from one interface (the common case) costs no lookups.
            cur_if, div, toff = -1, 1, 0
            iface: Any = None
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
                    start = pos + 28
                    pos += blk
                    frame += 1
                    ts = ((tsh << 32) | tsl) / div + toff
                    if ts < lo:
                        lo = ts
                    if ts > hi:
                        hi = ts
                else:
                    act = block(r, buf, pos, blen, frame)
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
                    if kind != NG_FRAME:
                        r.stop(frame, act[1])
                        break
                    _, pos, start, caplen, stamp, iface = act
                    ts = 0.0 if stamp is None else stamp
                    frame += 1
                    if stamp is not None:
                        if ts < lo:
                            lo = ts
                        if ts > hi:
                            hi = ts
                    lt = iface.lt
                iface.frames += 1
            if not frame & pmask:
                tick()
            rec = decode(buf, start, caplen, ts, frame, lt)
            if rec is not None:
                records += 1
                yield rec
    except BadRun as e:
        # The decoder (or Blocks.block, for a packet block it cannot place) counted the frame that
        # made the run; ``pos`` is past its record (a block's start, from Blocks.block).
        frame = max(frame, e.frame)
        e.offset = r.base + pos
        r.give_up(frame, e)
    finally:
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
        dec.stats.records += records + kernel.laned
        kernel.laned = 0
