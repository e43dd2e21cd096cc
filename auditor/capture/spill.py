"""The worker's side of a split read (capture/split.py): the spill's format, the writer that fills
it from a walk, and the forked process that walks its chain of inputs into it."""

from __future__ import annotations

import gc
import json
import os
import signal
import struct
from array import array
from typing import Any

from auditor.capture.decode import BadRun, Decoder
from auditor.capture.info import InputInfo, ReadStats
from auditor.capture.source import HashingReader
from auditor.model import Lane

ENTRY = struct.Struct("<BHHHIIIddddQI")
"""kind, history order, n0, n1, key id, IP bytes 0, IP bytes 1, ts of the first frame, largest and
smallest ts, largest gap, file offset, length.

KIND_WINDOW: n consecutive frames, all TCP/UDP packets for the fast lane (n in n0, the number of
conversations in the key id field); the file region of their records (offset of the first record
header, length to the end of the last); in the blob, after the new 5-tuples of its conversations,
each record's length (array "I"). The window's conversation entries follow it:
KIND_LANE: the window's packets of one conversation, named by its key id: a key id stands for a
5-tuple (its direction 0, as first seen) and its reverse (direction 1). Per direction the packets
(n0, n1) and their IP bytes; the timestamps summarised (ts: the first; the gap: the largest step of
a frame's ts beyond all its conversation's before it in the window); the history letters set, in
order of first appearance (3 bits each: 1 data and 2 a pure ACK in direction 0, 3 and 4 in direction
1). KIND_NEW4 and KIND_NEW6: the same with a new key id, its 5-tuple in the blob (NEW4, NEW6; ids
count up from 0, and an id 0 starts the numbering afresh: the worker forgets its ids every MAX_IDS).
KIND_RAW: one other frame: its link type (in the history order field), ts, file offset and captured
length, its bytes in the blob; in the IP bytes 0 field, how far its record goes on after the frame
(pcapng: padding, options, the repeated length), so that the record's end is known."""
KIND_LANE, KIND_NEW4, KIND_NEW6, KIND_RAW, KIND_WINDOW = 0, 1, 2, 3, 4
NEW4 = struct.Struct("!B4s4sHH")
NEW6 = struct.Struct("!B16s16sHH")
MAX_IDS = 1 << 15
"""Key ids the worker (and the replay) remember at a time: bounds both when keys never repeat."""
MAX_WINDOW = 256
"""Frames in one window at most (a window the replay cannot apply at once, because the conversation
core's sweep falls due inside it, is decoded frame by frame: SWEEP_EVERY is 8192)."""
MAX_CONVS = 64
"""Conversations in one window at most."""
FLUSH = 1 << 20
"""Spill entry bytes per batch."""
BLOB_MAX = 8 << 20
"""Frame bytes per batch, about."""
HEADER = 24
"""A pcap file header's length: a boundary there is a record boundary by definition."""


class SplitError(Exception):
    """The worker cannot go on (and says why)."""


class _Tail:
    """The capture bytes from the boundary on (after the file's first blocks, which the walk reads
    first), in the worker; ``reader_at`` in the reading process."""

    compression = "none"

    def __init__(self, path: str, offset: int, *, worker: bool = True) -> None:
        fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        fh.seek(offset)
        self.raw = HashingReader(fh, digest=False)
        self._worker = worker

    def read(self, size: int) -> bytes:
        if not self._worker:
            return self.raw.read(size)
        try:
            return self.raw.read(size)
        except OSError as e:  # not a "damaged" capture: the reading process says why it stops
            raise SplitError(f"cannot read: {e.strerror or e}") from e

    def unbound(self) -> None:  # the worker's walk is never bounded
        pass

    def hash_rest(self) -> None:
        pass

    def close(self) -> None:
        self.raw.close()


def reader_at(path: str, offset: int) -> _Tail:
    """The bytes of ``path`` from ``offset`` on, for a walk that reads on where a worker handed
    back (not hashed: the input's own reader hashes the whole file)."""
    return _Tail(path, offset, worker=False)


class _StandIn(Lane):
    """A lane for the decoder that is not the conversation core's: no table, no countdown."""

    def __init__(self) -> None:
        self.table = {}
        self.letters = {}
        self.data_bit = self.ack_bit = self.resp_shift = 0

    def hold(self) -> int:
        return 0

    def release(self, countdown: int, taken: int) -> None:
        pass


class SpillWriter(_StandIn):
    """The worker's side: ``walk_pcap(spill=...)`` hands it every frame, as a fast-lane packet
    (``lane``: gathered into windows, per conversation) or as bytes (``raw``); Decoder.decode
    offers it, as the lane it stands in for, the packets it would give the real lane (``take``
    accepts all but SYN/FIN/RST, as FastLane.take does without looking at state: the replay decides)."""

    def __init__(self, out: int, msg: int) -> None:
        super().__init__()
        self._out = out
        self._msg = msg
        self.ents = bytearray()
        self.blob = bytearray()
        self.why = ""
        """Why the walk stopped early (set by the walk), for the end message."""
        self.shift = 0
        self.tail_at = 0
        """Where the bytes from the boundary start in the walk (pcapng: the hand-back applies there)."""
        self.resume: int | None = None
        """Set by the pcapng walk: where it handed back, in walk offsets (the end message says
        the file offset)."""
        self.iface_frames: list[int] = []
        """Set by the pcapng walk: frames per interface of the section."""
        self._hit = False
        self._cur = (0, 0)
        pack = ENTRY.pack
        ents, blob = self.ents, self.blob
        ids: dict[tuple[object, ...], int] = {}
        """5-tuple -> key id << 1 | direction (0 for the 5-tuple first seen, 1 for its reverse)."""
        # The window being gathered (closure cells and lists: the worker's per-packet path): its
        # conversations (key id -> [kid, kind, n0, n1, tot0, tot1, first ts, max ts, min ts, gap,
        # letter order, letters seen, letters]), frames, region start and end, record lengths; the
        # conversation of the last packet and its two 5-tuples.
        win: dict[int, list[Any]] = {}
        wn = wstart = wend = 0
        wsizes = array("I")
        size = wsizes.append
        cur: list[Any] | None = None
        ckey0: tuple[Any, ...] | None = None
        ckey1: tuple[Any, ...] | None = None
        nkids = 0
        shift = 0
        """File offset of the walk's byte 0 in the input being walked."""

        def restart(offset: int, prelude: int) -> None:
            """A new input of the chain, walked from file offset ``offset`` after its first
            ``prelude`` bytes (the pcap file header; pcapng blocks before the first packet): its
            file offsets are its own, and its key ids count from 0 (each input's replay starts
            afresh)."""
            nonlocal nkids, shift
            ids.clear()
            nkids = 0
            shift = offset - prelude
            self.shift = shift
            self.tail_at = prelude
            self.why = ""
            self.resume = None
            self.iface_frames = []

        self.restart = restart

        def new_id(key: tuple[Any, ...]) -> tuple[int, int]:
            """(kind, id) for a 5-tuple without an id yet (nor its reverse); its fields go to the blob."""
            nonlocal nkids
            if nkids >= MAX_IDS:
                ids.clear()
                nkids = 0
            kid = nkids
            nkids += 1
            proto, src, sport, dst, dport = key
            rev = (proto, dst, dport, src, sport)
            if rev != key:
                ids[rev] = kid << 1 | 1
            ids[key] = kid << 1
            if len(src) == 4:
                blob.extend(NEW4.pack(proto, src, dst, sport, dport))
                return KIND_NEW4, kid
            blob.extend(NEW6.pack(proto, src, dst, sport, dport))
            return KIND_NEW6, kid

        def emit() -> None:
            """Add the window being gathered (if any) to the batch: its entry, one entry per
            conversation (in order of first appearance, as their new 5-tuples are in the blob), then
            the record lengths."""
            nonlocal wn, cur, ckey0, ckey1
            if wn:
                ents.extend(pack(KIND_WINDOW, 0, wn, 0, len(win), 0, 0, 0.0, 0.0, 0.0, 0.0, wstart + shift,
                                 wend - wstart))
                for kid, kind, n0, n1, tot0, tot1, first, tmax, tmin, gap, order, _, _ in win.values():
                    ents.extend(pack(kind, order, n0, n1, kid, tot0, tot1, first, tmax, tmin, gap, 0, 0))
                blob.extend(wsizes.tobytes())
                del wsizes[:]
                win.clear()
                wn = 0
                cur = ckey0 = ckey1 = None
                if len(ents) >= FLUSH:
                    self.flush()

        self.emit = emit

        def lane(key: tuple[Any, ...], ts: float, bit: int, ip_len: int, start: int, end: int) -> None:
            """One fast-lane packet whose record spans [start, end) of the walk's bytes; ``bit``: 1
            data, 2 a pure ACK, 0 neither."""
            nonlocal wn, wstart, wend, cur, ckey0, ckey1
            st: Any = cur
            d = 0 if key == ckey0 else 1 if key == ckey1 else -1
            if d < 0 or wn >= MAX_WINDOW:
                if wn >= MAX_WINDOW:
                    emit()
                v = ids.get(key)
                if v is None:
                    if nkids >= MAX_IDS or len(win) >= MAX_CONVS:  # the id numbering restarts / a full window
                        emit()
                    kind, kid = new_id(key)
                    d = 0
                    st = None
                else:
                    kid, d = v >> 1, v & 1
                    st = win.get(kid)
                    if st is None and len(win) >= MAX_CONVS:
                        emit()
                    kind = KIND_LANE
                if st is None:
                    st = win[kid] = [kid, kind, 0, 0, 0, 0, ts, ts, ts, 0.0, 0, 0, 0]
                if not wn:
                    wstart = start
                proto, src, sport, dst, dport = key
                rev = (proto, dst, dport, src, sport)
                cur, ckey0, ckey1 = st, (key, rev)[d], (rev, key)[d]
            if d:
                st[3] += 1
                st[5] += ip_len
                if bit:
                    bit += 2
            else:
                st[2] += 1
                st[4] += ip_len
            if ts > st[7]:
                if ts - st[7] > st[9]:
                    st[9] = ts - st[7]
                st[7] = ts
            elif ts < st[8]:
                st[8] = ts
            if bit and not st[11] >> bit & 1:
                st[11] |= 1 << bit
                st[10] |= bit << 3 * st[12]
                st[12] += 1
            wn += 1
            wend = end
            size(end - start)

        self.lane = lane

        def take(proto: int, src: bytes, sport: int, dst: bytes, dport: int, ts: float, flags: int,
                 plen: int, ip_len: int) -> bool:
            if flags & 7:  # SYN, FIN, RST: never the lane's (FastLane.take)
                return False
            start, end = self._cur
            lane((proto, src, sport, dst, dport), ts, 1 if plen or proto == 17 else (2 if flags & 0x10 else 0),
                 ip_len, start, end)
            self._hit = True
            return True

        self.take = take

        def raw(buf: bytes, start: int, caplen: int, ts: float, off: int, lt: int, end: int) -> None:
            emit()
            ents.extend(pack(KIND_RAW, lt, 1, 0, 0, end - off - caplen, 0, ts, ts, ts, 0.0, off + shift, caplen))
            blob.extend(buf[start:start + caplen])
            if len(ents) >= FLUSH or len(blob) > BLOB_MAX:
                self.flush()

        self.raw = raw

    def hold(self) -> int:  # never inlined by a walk: see walk_pcap
        return 0

    def release(self, countdown: int, taken: int) -> None:
        pass

    def decode(self, dec: Decoder, buf: bytes, start: int, caplen: int, ts: float, frame: int, lt: int,
               off: int, hl: int, end: int) -> None:
        """A frame the walk does not unpack itself: the decoder decides (its lane is this writer)."""
        self._cur = (off - hl, end)
        self._hit = False
        try:
            dec.decode(buf, start, caplen, ts, frame, lt)
        except BadRun:
            # The frame that made a run of malformed frames: the reading process decodes it too,
            # and gives up at it (its walk reached the boundary outside any run, or dropped the split).
            self.raw(buf, start, caplen, ts, off, lt, end)
            raise
        if not self._hit:
            self.raw(buf, start, caplen, ts, off, lt, end)

    def flush(self) -> None:
        """Write the batch (not the window being gathered) and say so on the pipe."""
        _write_all(self._out, bytes(self.ents) + bytes(self.blob))
        _write_all(self._msg, b"B %d %d\n" % (len(self.ents), len(self.blob)))
        del self.ents[:]
        del self.blob[:]

    def end(self, info: InputInfo | None, error: str = "") -> None:
        """The end of one input of the chain (``info``: what the walk learned of it), or of all of
        them with an ``error``."""
        if not error:
            self.emit()
            self.flush()
        end: dict[str, Any] = {"error": error}
        if info is not None:
            end.update(why=self.why, first=info.first_ts, last=info.last_ts, frames=info.packets,
                       ifaces=self.iface_frames, resume=None if self.resume is None else self.resume + self.shift)
        _write_all(self._msg, b"E " + json.dumps(end).encode() + b"\n")


class _TakeAll(_StandIn):
    """A lane that takes every packet offered (Split._checksums_good)."""

    def __init__(self) -> None:
        super().__init__()
        self.take = lambda *packet: True


_TAKE_ALL = _TakeAll()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _worker(parts: list[tuple[str, int]], out: int, msg: int, rmsg: int) -> None:
    """The forked process: walk each (path, offset) of the chain, from that offset to the end of
    the file, into the spill, with an end message after each."""
    from auditor.capture.pcapfile import PCAPNG_MAGIC, walk_pcap
    from auditor.capture.pcapng import first_packet_offset, walk_pcapng

    os.close(rmsg)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reading process's to handle (close())
    gc.disable()  # a walk makes no reference cycles: the collector's passes are pure cost (parallel.paused_gc)
    writer = SpillWriter(out, msg)
    try:
        for path, offset in parts:
            with open(path, "rb") as fh:
                prelude = fh.read(HEADER)
                ng = prelude[:4] == PCAPNG_MAGIC
                if ng:  # the section header and interfaces before the first packet
                    start = first_packet_offset(path)
                    if start is None:
                        raise SplitError("the file's first blocks changed")
                    fh.seek(0)
                    prelude = fh.read(start)
            writer.restart(offset, len(prelude))
            tail = _Tail(path, offset)
            info = InputInfo(path=path)
            dec = Decoder(ReadStats(), 0, verify_checksums=False)
            dec.lane = writer
            walk = walk_pcapng if ng else walk_pcap
            try:
                for _ in walk(tail, prelude, info, dec, lambda: None, spill=writer):
                    pass
            finally:
                tail.close()
            writer.end(info)
    except (SplitError, OSError) as e:
        writer.end(None, str(e) if isinstance(e, SplitError) else f"cannot read: {e.strerror or e}")
    except Exception as e:  # reported to the reading process, which names the file
        writer.end(None, f"{type(e).__name__}: {e}")
