"""The record walk over large blocks of capture bytes: pcap records, and pcapng Enhanced Packet Blocks
(pcapng's other blocks and its section state: capture/pcapng.py).

The walk works on one read block at a time (CHUNK, 8 MiB; a record cut by a read is joined through a
small window, see _Reader); its per-record loop is the kernel's (capture/kernel.py, ``Kernel.walk``),
which reads record headers with precompiled structs and decodes each frame in the read block, for
every link type: no per-packet objects but
the record itself, and none at all for a packet the conversation core's fast lane takes
(Decoder.lane). A record that runs past the end of the data ends the walk with ``truncated`` and a
warning naming the last frame read; a corrupt record or block header does the same (there is no way
to resynchronise safely), and so does a run of decode.BAD_RUN_MAX malformed frames in a row (junk
after a valid header: the rest is not read).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple, Protocol

from auditor.capture.decode import BadRun, Decoder, bad_run_why, linktype_name
from auditor.capture.decompress import CHUNK, DECOMPRESS_ERRORS
from auditor.capture.info import InputInfo
from auditor.capture.kernel import MAX_RECORD, Tick
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
PCAPNG_BYTE_ORDERS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
"""A pcapng section header's byte-order magic as stored -> the struct byte order of its section."""

# Largest record we accept: libpcap's 262144-byte maximum snapshot, or the file's snaplen, within the
# kernel's bound (a corrupt length must not make us read gigabytes into memory).




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

    @property
    def big(self) -> bool:
        """Big-endian headers."""
        return self.record.format[0] == ">"


def pcap_header(head: bytes) -> PcapHeader | None:
    """The facts of a pcap file header (its first 24 bytes), or None if ``head`` is not one."""
    if len(head) < 24 or head[:4] not in PCAP_MAGICS:
        return None
    order, nano, hl = PCAP_MAGICS[head[:4]]
    snaplen, network = struct.unpack_from(order + "16xII", head)
    return PcapHeader(nano, hl, network & 0xFFFF, min(max(snaplen, 262144), MAX_RECORD),
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
    other than whole Enhanced Packet Blocks of a known interface: capture/pcapng.py). The
    per-record loop is the decoder's kernel's (``dec.kernel.walk``), which decodes every frame and
    offers common TCP/UDP packets to the conversation core's fast lane before it builds a record.

    ``bounded``: ``src`` is a chunk's bytes (capture/ranges.py), whose end the walk checks
    (``_Reader.more``); ``base``: the file offset of the byte after ``first``'s file header or
    first blocks minus their length (a chunk's range starts after them; only for the offsets in
    warnings)."""
    r = _Reader(src, first, info, dec, bounded, base)
    kernel = dec.kernel
    w = _Walked()
    lt = 0  # pcap: the file's link type (pcapng: each interface's)
    try:
        if ng is None:
            while len(r.buf) < 24:
                if not r.more(0):
                    raise CaptureError(f"{info.path}: truncated pcap file header ({len(r.buf)} bytes)")
            header = pcap_header(r.buf)
            assert header is not None  # the caller checked the magic
            info.format = "pcap"
            lt = header.lt
            yield from kernel.walk(r, 24, w, tick, None, header.hl, lt, header.limit,
                                   header.big, 1e-9 if header.nano else 1e-6)
        else:
            info.format = "pcapng"
            yield from kernel.walk(r, 0, w, tick, ng, 0, 0, 0, False, 0.0)
    except BadRun as e:
        # The decoder (or Blocks.block, for a packet block it cannot place) counted the frame that
        # made the run; ``w.pos`` is past its record (a block's start, from Blocks.block).
        w.frame = max(w.frame, e.frame)
        e.offset = r.base + w.pos
        r.give_up(w.frame, e)
    finally:
        frame = info.packets = w.frame
        if ng is None:
            if frame:
                info.link_types[linktype_name(lt)] = frame
        else:
            for iface in ng.every:
                if iface.frames:
                    info.link_types[iface.name] = info.link_types.get(iface.name, 0) + iface.frames
        if w.hi >= w.lo:
            info.first_ts, info.last_ts = w.lo, w.hi
        dec.stats.frames += frame
        dec.stats.records += w.records + kernel.laned
        kernel.laned = 0


class _Walked:
    """Where a walk got to (kernel.Walked)."""

    __slots__ = ("frame", "hi", "lo", "pos", "records")

    def __init__(self) -> None:
        self.frame = self.records = self.pos = 0
        self.lo, self.hi = float("inf"), float("-inf")
