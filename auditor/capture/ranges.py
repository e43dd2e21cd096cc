"""Byte ranges of capture files, for reading one file as several chunks.

``plan`` cuts each large regular uncompressed pcap or pcapng file into byte ranges at record
boundaries (``Chunk``); every other input is one chunk. ``CaptureSet.from_chunks`` reads chunks
(capture/__init__.py) with ``ChunkBytes``: a chunk of a pcap file is the file header and then the
records from ``start`` to ``end``; of a pcapng file, the file's blocks before its first packet block
(section header, interfaces) and then the blocks from ``start`` to ``end``.

A boundary inside a file is a guess (``find_boundary``: a chain of plausible pcap record headers;
``find_block_boundary``: pcapng block lengths repeated at their ends). The walk of the chunk before
it checks it: it must end exactly there, at a record boundary, not inside a run of malformed frames,
and (pcapng) after no section header or interface block past the file's first blocks, which the
later chunks would not know of. Where it does not, that walk reads on to the end of the input and
the input's later chunks are dropped (``join``; InputInfo.end_verified). So chunks read, joined,
exactly as one walk of the file: the same records, frame numbers once renumbered, counters and
warnings (tests/test_capture_ranges.py).

Frame numbers of a chunk that starts inside its file count from 1 at its first record
(InputInfo.first_frame_unknown); ``join`` says how many frames come before each chunk. The SHA-256 of
a file is computed by the chunk that starts at offset 0: it reads its range and its read-ahead
thread hashes the rest of the file (through memory maps) without decoding it. The other chunks hash
nothing.

The later fragments of an IP datagram whose first fragment is in the chunk before find it as one
walk does (capture/fragments.py). The checksum sample is chosen by what a chunk knows of each packet
as one walk does, its offset in the file and its timestamp (kernel.VERIFY_ALL_BYTES, VERIFY_EVERY):
a chunk verifies the checksums of exactly the packets one walk verifies.
"""

from __future__ import annotations

import copy
import os
import stat
import struct
from collections.abc import Sequence
from typing import BinaryIO, NamedTuple

from auditor.capture.info import InputInfo
from auditor.capture.kernel import MAX_RECORD
from auditor.capture.pcapfile import PCAP_MAGICS, PCAPNG_BYTE_ORDERS, PCAPNG_MAGIC, pcap_header
from auditor.capture.source import Source
from auditor.errors import CaptureError

MIN_BYTES = 64 << 20
"""Smaller files are one chunk."""
PRELUDE_MAX = 1 << 20
"""The blocks before a pcapng file's first packet that a chunk reads first, at most (more: the file is
one chunk)."""


class Chunk(NamedTuple):
    """A byte range of an input, or a whole input."""

    path: str
    input_index: int
    """The input's place among the run's inputs (PacketRecord.input_index)."""
    start: int
    """File offset of the chunk's first record (0: the file's start, header included)."""
    end: int
    """File offset where the next chunk starts; -1: the end of the input."""
    part: int
    """The chunk's place among the input's chunks (0: the first, which starts at offset 0)."""

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end < 0


def plan(paths: Sequence[str], parts: int, *, min_bytes: int = MIN_BYTES) -> list[Chunk]:
    """The chunks of the inputs, in order: each regular uncompressed pcap or pcapng file of at least
    ``min_bytes`` cut into up to ``parts`` byte ranges of about equal size at (likely) record
    boundaries; every other input (smaller, compressed, another format, a pipe or standard input,
    no plausible boundary) is one chunk."""
    chunks: list[Chunk] = []
    for index, path in enumerate(paths):
        cuts = _cuts(path, parts, min_bytes)
        edges = [0, *cuts, -1]
        chunks.extend(Chunk(path, index, edges[k], edges[k + 1], k) for k in range(len(edges) - 1))
    return chunks


def _cuts(path: str, parts: int, min_bytes: int) -> list[int]:
    """Boundaries inside ``path`` (ascending, past its first record), or none."""
    if parts < 2 or path == "-":
        return []
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size < min_bytes:
            return []
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError:
        return []  # the reading says why
    size = st.st_size
    if head[:4] in PCAP_MAGICS:
        first: int | None = 24
        seek = find_boundary
    elif head[:4] == PCAPNG_MAGIC:
        first = first_packet_offset(path)
        seek = find_block_boundary
    else:
        return []
    if first is None:
        return []
    cuts: list[int] = []
    for k in range(1, parts):
        target = max(first + 1, size * k // parts, cuts[-1] + 1 if cuts else 0)
        if target >= size:
            break
        at = seek(path, target)
        if at is not None and at > (cuts[-1] if cuts else first) and at < size:
            cuts.append(at)
    return cuts


def records_start(path: str, head: bytes) -> int | None:
    """Where the records of a pcap or pcapng file (``head``: its first bytes) start: after the file
    header, or after the blocks before the first packet block; None if not known."""
    if head[:4] == PCAPNG_MAGIC:
        return first_packet_offset(path)
    return 24 if pcap_header(head) is not None else None


class ChunkBytes:
    """The capture bytes of a chunk (pcapfile.CaptureBytes, Bounded): the chunk that starts at
    offset 0 reads the file through a Source, which hashes the whole file (``finish``); a later
    chunk reads the file's header or first blocks, then its range, and hashes nothing."""

    compression = "none"

    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        path = chunk.path
        self._src: Source | None = None
        self._fh: BinaryIO | None = None
        self._pos = 0
        self._end = chunk.end
        self._first = b""
        if chunk.start == 0:
            self._src = Source(path)
            try:
                head = self._src.head(24)
                if self._src.compression != "none" or self._src.once:
                    raise CaptureError(f"{path}: a byte range of a compressed file or a stream cannot be read "
                                       "by itself")
                at = records_start(path, head)
            except BaseException:
                self._src.close_quietly()
                raise
            self.records_at = 0 if at is None else at
            """File offset where the chunk's own records start (before: the file header or first
            blocks)."""
            self.base = 0
            """The file offset of the bytes read, minus their position in what ``read`` returns."""
            if chunk.end >= 0:
                self._src.raw.bound(chunk.end)
            return
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - closed by finish/close_quietly
            head = self._fh.read(24)
            at = records_start(path, head)
            if at is None or at > chunk.start:
                raise CaptureError(f"{path}: not a pcap or pcapng file whose records start before offset "
                                   f"{chunk.start}: this byte range cannot be read by itself")
            self._fh.seek(0)
            self._first = self._fh.read(at)
            self._fh.seek(chunk.start)
        except OSError as e:
            self.close_quietly()
            raise CaptureError(f"{path}: cannot read: {e.strerror or e}") from e
        except BaseException:
            self.close_quietly()
            raise
        self._pos = chunk.start
        self.records_at = chunk.start
        self.base = chunk.start - len(self._first)

    def read(self, size: int) -> bytes:
        if self._src is not None:
            return self._src.read(size)
        first, self._first = self._first, b""
        if self._fh is None:
            return first
        want = size - len(first)
        if self._end >= 0:
            want = min(want, self._end - self._pos)
        data = self._fh.read(want) if want > 0 else b""
        self._pos += len(data)
        return first + data if first else data

    @property
    def nread(self) -> int:
        """Bytes of the file read so far (for progress)."""
        return self._src.nread if self._src is not None else self._pos - self.chunk.start

    def read_on(self) -> None:
        """Hand out the bytes past the chunk's end after all, to the end of the file."""
        self._end = -1
        if self._src is not None:
            self._src.raw.unbound()

    def at_end(self) -> None:
        """The walk ended at the chunk's end: only the hash needs the rest of the file."""
        self.hash_rest()

    def hash_rest(self) -> None:
        if self._src is not None:
            self._src.raw.unbound()
            self._src.hash_rest()
        else:
            self._end = self._pos  # nothing more to read

    def finish(self) -> str:
        """Close; the SHA-256 of the whole file ("" from a chunk that does not start at offset 0)."""
        if self._src is not None:
            self._src.raw.unbound()
            return self._src.finish()
        self.close_quietly()
        return ""

    def close_quietly(self) -> None:
        if self._src is not None:
            self._src.close_quietly()
        if self._fh is not None:
            self._fh.close()


def join(infos: Sequence[InputInfo]) -> tuple[InputInfo, list[int]]:
    """What the chunks of one input (their InputInfos, in order) read of it, as one walk of the input
    would have; and for each chunk that is part of that reading, how many frames come before it
    (add them to its frame numbers: its records, ReadStats.renumber). A chunk after one that did not
    end verified (InputInfo.end_verified) is not part of it: the merge drops its records and
    counters (the chunk before read on to the end of the input, or stopped where one walk stops)."""
    out = copy.deepcopy(infos[0])
    offsets = [0]
    prev = infos[0]
    for info in infos[1:]:
        if not prev.end_verified:
            break
        later = copy.deepcopy(info)
        later.renumber(out.packets)
        offsets.append(out.packets)
        out.packets += later.packets
        for name, n in later.link_types.items():
            out.link_types[name] = out.link_types.get(name, 0) + n
        if later.first_ts is not None and later.last_ts is not None:
            out.first_ts = later.first_ts if out.first_ts is None else min(out.first_ts, later.first_ts)
            out.last_ts = later.last_ts if out.last_ts is None else max(out.last_ts, later.last_ts)
        out.truncated = out.truncated or later.truncated
        out.warnings.extend(later.warnings)
        out.stopped = later.stopped
        out.sha256 = out.sha256 or later.sha256
        out.end_verified = later.end_verified
        prev = info
    out.first_frame_unknown = False
    return out, offsets


# -- boundaries ---------------------------------------------------------------------------------------

def find_boundary(path: str, target: int, *, chain: int = 32, window: int = 4 << 20) -> int | None:
    """A file offset at or after ``target`` where a run of ``chain`` plausible pcap record headers
    starts (captured length within the snapshot length and the original length, sub-second field in
    range, timestamps close to the first record's and to each other), or None. A guess: the walk of
    the chunk before checks it (module docstring)."""
    with open(path, "rb") as fh:
        header = pcap_header(fh.read(24))
        first = fh.read(24)
        fh.seek(target)
        win = fh.read(window)
    if header is None or len(first) < 16:
        return None
    hl, limit = header.hl, header.limit
    frac_max = 1_000_000_000 if header.nano else 1_000_000
    rec = header.record.unpack_from
    sec0 = rec(first)[0]
    year = 366 * 86400

    def plausible(p: int) -> bool:
        prev = -1
        for _ in range(chain):
            if p + hl > len(win):
                return False
            sec, frac, caplen, origlen = rec(win, p)
            if (caplen > limit or caplen > origlen or frac >= frac_max or abs(sec - sec0) > 10 * year
                    or (prev >= 0 and abs(sec - prev) > 3600)):
                return False
            prev = sec
            p += hl + caplen
        return True

    for p in range(0, max(0, len(win) - hl)):
        if plausible(p):
            return target + p
    return None


def first_packet_offset(path: str) -> int | None:
    """Where the first packet block of a pcapng file starts, after its section header and
    interface (and other) blocks, or None: not a well-formed start of a pcapng file, or more than
    PRELUDE_MAX bytes of blocks before a packet."""
    with open(path, "rb") as fh:
        data = fh.read(4096)  # a file's first blocks are small: more only where they are not
        order = PCAPNG_BYTE_ORDERS.get(data[8:12])
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
    the walk of the chunk before checks it."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        fh.seek(target)
        win = fh.read(window)
    order = PCAPNG_BYTE_ORDERS.get(head[8:12])
    if order is None:
        return None
    hdr = struct.Struct(order + "II").unpack_from
    u32 = struct.Struct(order + "I").unpack_from
    maxblk = MAX_RECORD + 4096

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
