"""Two processes over one capture, with the result of one: a byte-range split of a large pcap.

The conversation state machine is one sequence (a packet's effect depends on every packet before it),
so the run stays one pass in this process; what moves to a second process is the walk (record
headers, Ethernet/IP/TCP unpacking), which is most of the per-packet cost:

1. ``find_boundary`` guesses a record boundary about SPLIT_AT of the way into the file (a chain of
   plausible record headers).
2. A forked worker walks the file from there to the end with ``walk_pcap(spill=...)`` and writes a
   *spill* (``ENTRY``): consecutive fast-lane packets of one conversation (both directions) become
   one *run* entry, with per-direction packet and byte counts, the timestamps summarised, the
   history letters in order and the record lengths; any other frame is one entry with its bytes in
   a side blob. Batches go to an unlinked temporary file; a pipe says how far the file is written.
3. Meanwhile this process walks the file up to the boundary as usual (``HashingReader.bound``). If
   its walk ends exactly there, the guess was a record boundary (the walk from the file header is
   the only true chain of records) and ``Split.replay`` applies the spill through the same fast lane
   and decoder, in order. If the walk ends inside a record, the guess was wrong: the worker is
   stopped and this walk reads on by itself. Either way the conversations, counters and warnings are
   exactly those of one process (tests/test_capture_split.py compares whole results, also on every
   corpus pcap).

A run is applied at once only when every packet of it would have been taken by the fast lane one by
one: its connection is live (a key id's table entry is cached with the connection's ``gen``), no gap
reaches the idle timeout, the sweep is not due, and the frames the checksum policy samples (frame
numbers are known only here) have good checksums (those frames are read back with ``os.pread``).
Otherwise the run's records are read back and decoded one by one, as the walk would have. On the
bench capture a run holds ~47 frames, and this process replays a frame in ~0.8 µs of CPU against
~2.1 µs for walking it (most of the 0.8 is opening and closing connections). The SHA-256 is still
of the whole file: the read-ahead thread hashes the rest (through memory maps) while the spill is
replayed.

Costs and limits: the spill is ~7 bytes a frame on the bench capture and up to ~67 (plus the bytes of
frames that need the decoder) on traffic where conversations interleave packet by packet; it lives
in the temporary folder (none writable: one process reads). Only one input (the largest) is split,
and only an uncompressed Ethernet pcap of at least MIN_SPLIT_BYTES.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing as mp
import os
import signal
import struct
import tempfile
from array import array
from collections.abc import Callable, Generator, Iterator
from typing import Any

from auditor.capture.decode import VERIFY_ALL_FRAMES, VERIFY_EVERY_MASK, Decoder
from auditor.capture.info import InputInfo, ReadStats
from auditor.capture.source import HashingReader
from auditor.errors import CaptureError
from auditor.model import Lane, PacketRecord

ENTRY = struct.Struct("<BHHHIIIddddQI")
"""kind, history order, n0, n1, key id, IP bytes 0, IP bytes 1, ts of the first frame, largest and
smallest ts, largest gap, file offset, length.

KIND_LANE: a *run* of consecutive frames, all TCP/UDP packets for the fast lane of one conversation,
named by its key id: a key id stands for a 5-tuple (its direction 0, as first seen) and its reverse
(direction 1). Per direction the packets (n0, n1) and their IP bytes; the timestamps summarised (the
gap: the largest step of a frame's ts beyond all before it in the run); the history letters set, in
order of first appearance (3 bits each: 1 data and 2 a pure ACK in direction 0, 3 and 4 in direction
1); the file region of the records (offset of the first record header, length to the end of the
last), and in the blob each record's length (array "I", n0 + n1 of them). KIND_NEW4 and KIND_NEW6:
the same with a new key id, its 5-tuple in the blob before the lengths (NEW4, NEW6; ids count up from
0, and an id 0 starts the numbering afresh: the worker forgets its ids every MAX_IDS).
KIND_RAW: one other frame: its ts, file offset and captured length, its bytes in the blob."""
KIND_LANE, KIND_NEW4, KIND_NEW6, KIND_RAW = 0, 1, 2, 3
NEW4 = struct.Struct("!B4s4sHH")
NEW6 = struct.Struct("!B16s16sHH")
MAX_IDS = 1 << 15
"""Key ids the worker (and the replay) remember at a time: bounds both when keys never repeat."""
MAX_RUN = 1024
"""Frames in one run entry at most (a run the replay cannot apply at once, because the conversation
core's sweep falls due inside it, is decoded frame by frame: SWEEP_EVERY is 8192)."""
SPLIT_AT = 0.38
"""Where the worker's range starts, as a share of the file. This process walks the first part at
full cost (~2.2 µs a frame on the bench capture, with the other process and the hashing thread
sharing the two cores) and then replays the rest (~0.8 µs a frame, most of it opening and closing
connections), while the worker walks the rest (~1.8 µs a frame of CPU): 0.35-0.4 balances the two on
the 10M-packet bench capture (bench/README.md)."""
MIN_SPLIT_BYTES = 64 << 20
"""Smaller captures are not worth a second process."""
FLUSH = 1 << 20
"""Spill entry bytes per batch."""
BLOB_MAX = 8 << 20
"""Frame bytes per batch, about."""
_PROGRESS_MASK = (1 << 15) - 1


# -- choosing the boundary --------------------------------------------------------------------------

def find_boundary(path: str, target: int, *, chain: int = 32, window: int = 4 << 20) -> int | None:
    """A file offset at or after ``target`` where a run of ``chain`` plausible pcap record headers
    starts (captured length within the snapshot length and the original length, sub-second field in
    range, timestamps close to the first record's and to each other), or None. A guess: the reading
    process checks it (module docstring)."""
    from auditor.capture.pcapfile import _MAX_RECORD, PCAP_MAGICS

    with open(path, "rb") as fh:
        header = fh.read(24)
        first = fh.read(24)
        fh.seek(target)
        win = fh.read(window)
    if len(header) < 24 or header[:4] not in PCAP_MAGICS or len(first) < 16:
        return None
    order, nano, hl = PCAP_MAGICS[header[:4]]
    snaplen = struct.unpack_from(order + "16xI", header)[0]
    limit = min(max(snaplen, 262144), _MAX_RECORD)
    frac_max = 1_000_000_000 if nano else 1_000_000
    rec = struct.Struct(order + "IIII").unpack_from
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


def split_point(path: str, size: int) -> int | None:
    """Where to split the (uncompressed pcap) file at ``path``, or None: too small, no plausible
    boundary near SPLIT_AT."""
    if size < MIN_SPLIT_BYTES:
        return None
    return find_boundary(path, int(size * SPLIT_AT))


# -- the worker: walk the rest of the file into a spill ---------------------------------------------

class SplitError(Exception):
    """The worker cannot go on (and says why)."""


class _Tail:
    """The capture bytes from the boundary on (after the file header, which the walk reads first)."""

    compression = "none"

    def __init__(self, path: str, offset: int) -> None:
        fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        fh.seek(offset)
        self.raw = HashingReader(fh, digest=False)

    def read(self, size: int) -> bytes:
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


class SpillWriter(Lane):
    """The worker's side: ``walk_pcap(spill=...)`` hands it every frame, as a fast-lane packet
    (``lane``: runs of one key id are gathered into one entry) or as bytes (``raw``); Decoder.decode
    offers it, as the lane it stands in for, the packets it would give the real lane (``take``
    accepts all but SYN/FIN/RST, as FastLane.take does without looking at state: the replay decides)."""

    def __init__(self, out: int, msg: int, shift: int) -> None:
        self.table = {}
        self.letters = {}
        self.data_bit = self.ack_bit = self.resp_shift = 0
        self._out = out
        self._msg = msg
        self.ents = bytearray()
        self.blob = bytearray()
        self.why = ""
        """Why the walk stopped early (set by walk_pcap), for the end message."""
        self.ids: dict[tuple[object, ...], int] = {}
        """5-tuple -> key id << 1 | direction (0 for the 5-tuple first seen, 1 for its reverse)."""
        self._hit = False
        self._cur = (0, 0)
        pack = ENTRY.pack
        ents, blob, ids = self.ents, self.blob, self.ids
        # The run being gathered (closure cells: the worker's per-packet path): key id (-1: none),
        # kind, packets and IP bytes per direction, letters (order, seen, how many), ts of the first,
        # max, min, gap, region start and end.
        rkid, rkind, rn0, rn1, rtot0, rtot1 = -1, 0, 0, 0, 0, 0
        rorder, rseen, rcount = 0, 0, 0
        rfirst, rmax, rmin, rgap, rstart, rend = 0.0, 0.0, 0.0, 0.0, 0, 0
        rsizes = array("I")  # the length of each record of the run, header included
        size = rsizes.append

        nkids = 0

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
            """Add the run being gathered (if any) to the batch."""
            nonlocal rkid
            if rkid >= 0:
                ents.extend(pack(rkind, rorder, rn0, rn1, rkid, rtot0, rtot1, rfirst, rmax, rmin, rgap,
                                 rstart + shift, rend - rstart))
                blob.extend(rsizes.tobytes())
                del rsizes[:]
                rkid = -1
                if len(ents) >= FLUSH:
                    self.flush()

        self.emit = emit

        def lane(key: tuple[Any, ...], ts: float, bit: int, ip_len: int, start: int, end: int) -> None:
            """One fast-lane packet whose record spans [start, end) of the walk's bytes; ``bit``: 1
            data, 2 a pure ACK, 0 neither."""
            nonlocal rkid, rkind, rn0, rn1, rtot0, rtot1, rorder, rseen, rcount
            nonlocal rfirst, rmax, rmin, rgap, rstart, rend
            v = ids.get(key)
            if v is not None and v >> 1 == rkid and rn0 + rn1 < MAX_RUN:
                if v & 1:
                    rn1 += 1
                    rtot1 += ip_len
                    if bit:
                        bit += 2
                else:
                    rn0 += 1
                    rtot0 += ip_len
                if ts > rmax:
                    if ts - rmax > rgap:
                        rgap = ts - rmax
                    rmax = ts
                elif ts < rmin:
                    rmin = ts
                if bit and not rseen >> bit & 1:
                    rseen |= 1 << bit
                    rorder |= bit << 3 * rcount
                    rcount += 1
                rend = end
                size(end - start)
                return
            if rkid >= 0:
                emit()
            if v is None:
                rkind, rkid = new_id(key)
                v = 0
            else:
                rkind, rkid = KIND_LANE, v >> 1
            if v & 1:
                rn0, rn1, rtot0, rtot1 = 0, 1, 0, ip_len
                if bit:
                    bit += 2
            else:
                rn0, rn1, rtot0, rtot1 = 1, 0, ip_len, 0
            rorder, rseen, rcount = bit, (1 << bit if bit else 0), (1 if bit else 0)
            rfirst = rmax = rmin = ts
            rgap, rstart, rend = 0.0, start, end
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

        def raw(buf: bytes, start: int, caplen: int, ts: float, off: int) -> None:
            emit()
            ents.extend(pack(KIND_RAW, 0, 1, 0, 0, 0, 0, ts, ts, ts, 0.0, off + shift, caplen))
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
        dec.decode(buf, start, caplen, ts, frame, lt)
        if not self._hit:
            self.raw(buf, start, caplen, ts, off)

    def flush(self) -> None:
        """Write the batch (not the run being gathered) and say so on the pipe."""
        _write_all(self._out, bytes(self.ents) + bytes(self.blob))
        _write_all(self._msg, b"B %d %d\n" % (len(self.ents), len(self.blob)))
        del self.ents[:]
        del self.blob[:]

    def end(self, info: InputInfo | None, error: str = "") -> None:
        if not error:
            self.emit()
            self.flush()
        end: dict[str, Any] = {"error": error}
        if info is not None:
            end.update(why=self.why, first=info.first_ts, last=info.last_ts, frames=info.packets)
        _write_all(self._msg, b"E " + json.dumps(end).encode() + b"\n")


class _TakeAll(Lane):
    """A lane that takes every packet offered (Split._checksums_good)."""

    def __init__(self) -> None:
        self.table = {}
        self.letters = {}
        self.data_bit = self.ack_bit = self.resp_shift = 0
        self.take = lambda *packet: True

    def hold(self) -> int:
        return 0

    def release(self, countdown: int, taken: int) -> None:
        pass


_TAKE_ALL = _TakeAll()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _worker(path: str, boundary: int, header: bytes, out: int, msg: int, rmsg: int) -> None:
    """The forked process: walk [boundary, end) of ``path`` into the spill."""
    from auditor.capture.pcapfile import walk_pcap

    os.close(rmsg)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reading process's to handle (close())
    writer = SpillWriter(out, msg, boundary - len(header))
    try:
        tail = _Tail(path, boundary)
        info = InputInfo(path=path)
        dec = Decoder(ReadStats(), 0, verify_checksums=False)
        dec.lane = writer
        try:
            for _ in walk_pcap(tail, header, info, dec, lambda: None, spill=writer):
                pass
        finally:
            tail.close()
        writer.end(info)
    except SplitError as e:
        writer.end(None, str(e))
    except Exception as e:  # reported to the reading process, which names the file
        writer.end(None, f"{type(e).__name__}: {e}")


# -- this process: start the worker, check the boundary, replay the spill ---------------------------

class Split:
    """One split input: the worker started on [boundary, end) and the spill it writes."""

    def __init__(self, path: str, boundary: int) -> None:
        self.path = path
        self.boundary = boundary
        self.verified = False
        """Set by the walk (pcapfile._Reader) when it ended exactly at the boundary."""
        self.position = 0
        """File offset of the frame being replayed (for progress)."""
        self.why = ""
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        with open(path, "rb") as fh:
            header = fh.read(24)
        self._spill = tempfile.TemporaryFile(prefix="pcap-audit-spill-")  # noqa: SIM115 - close()
        rmsg, wmsg = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # room for a long run's batch notes
            fcntl.fcntl(wmsg, fcntl.F_SETPIPE_SZ, 1 << 20)
        ctx = mp.get_context("fork")
        self._proc: Any = ctx.Process(target=_worker, name="pcap-audit-split", daemon=True,
                                      args=(path, boundary, header, self._spill.fileno(), wmsg, rmsg))
        self._proc.start()
        os.close(wmsg)
        self._msgs = os.fdopen(rmsg, "rb")
        self._input = os.open(path, os.O_RDONLY)
        self._fpos = 0

    def abandon(self) -> None:
        """The walk did not end at the boundary: stop the worker, drop the spill."""
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.terminate()
            self._proc.join(timeout=10)
            self._proc = None
            self._msgs.close()
            self._spill.close()
            os.close(self._input)

    def _batches(self) -> Iterator[tuple[bytes, bytes]]:
        while True:
            line = self._msgs.readline()
            if line.startswith(b"B "):
                ne, nb = (int(x) for x in line[2:].split())
                data = os.pread(self._spill.fileno(), ne + nb, self._fpos)
                if len(data) != ne + nb:
                    raise CaptureError(f"{self.path}: the spill of the second reading process is short "
                                       f"({len(data)} of {ne + nb} bytes); run with -j 1")
                self._fpos += ne + nb
                yield data[:ne], data[ne:]
                continue
            end: dict[str, Any] = (json.loads(line[2:]) if line.startswith(b"E ")
                                   else {"error": "it ended without a word"})
            if end["error"]:
                raise CaptureError(f"{self.path}: the second reading process failed ({end['error']}); "
                                   f"run with -j 1")
            self.why = end["why"]
            self.first_ts, self.last_ts = end["first"], end["last"]
            return

    def replay(self, dec: Decoder, frame: int, tick: Callable[[], None], lt: int,
               rec_header: struct.Struct, scale: float) -> Generator[PacketRecord, None, tuple[int, int]]:
        """Apply the spill after frame ``frame`` as walk_pcap would have walked those frames: the
        same fast-lane updates (conversations.FastLane.take, here for a whole run of packets at
        once), the same records through ``dec``. Returns (last frame, records).

        A run is applied at once when each of its packets would have been taken: its connection is
        live (the key id's cached table entries, checked by the connection's ``gen``, or a lookup;
        both directions on the one connection), no gap reaches the idle timeout, the sweep countdown
        does not run out, and the frames due a checksum check pass it (``_checksums_good``).
        Otherwise its frames are read back from the file and decoded one by one, exactly as the
        walk would have (``_frames``)."""
        lane: Lane | None = dec.lane
        decode = dec.decode
        verify, verify_all, vmask, pmask = dec.verify, VERIFY_ALL_FRAMES, VERIFY_EVERY_MASK, _PROGRESS_MASK
        vshift = vmask.bit_length()
        new4, new6 = NEW4.unpack_from, NEW6.unpack_from
        keys: list[tuple[Any, ...]] = []
        cache: list[Any] = []
        """Per key id: None, or (connection, is_orig of direction 0, its gen, whether direction 1
        is the same connection the other way)."""
        records = taken = cd = 0
        if lane is not None:
            tget = lane.table.get
            letters = lane.letters
            o_d, o_a = lane.data_bit, lane.ack_bit
            r_d, r_a = o_d << lane.resp_shift, o_a << lane.resp_shift
            bits_orig = (0, o_d, o_a, r_d, r_a)  # history codes (ENTRY) when direction 0 is the orig's
            bits_resp = (0, r_d, r_a, o_d, o_a)
        else:
            tget = None
        it = ENTRY.iter_unpack
        try:
            for ents, blob in self._batches():
                bp = 0
                if lane is not None:
                    cd = lane.hold()
                for kind, order, n0, n1, kid, tot0, tot1, ts, tmax, tmin, gap, off, length in it(ents):
                    n = n0 + n1
                    if (frame ^ (frame + n)) & ~pmask:
                        self.position = off
                        tick()
                    if kind == KIND_RAW:
                        frame += 1
                        if lane is not None:
                            lane.release(cd, taken)
                            taken = 0
                        rec = decode(blob[bp:bp + length], 0, length, ts, frame, lt)
                        bp += length
                        if rec is not None:
                            records += 1
                            yield rec
                        if lane is not None:
                            cd = lane.hold()
                        continue
                    if kind != KIND_LANE:  # a new key id, its 5-tuple in the blob
                        if kind == KIND_NEW4:
                            proto, s, d, sport, dport = new4(blob, bp)
                            bp += 13
                        else:
                            proto, s, d, sport, dport = new6(blob, bp)
                            bp += 37
                        if not kid:
                            keys.clear()
                            cache.clear()
                        keys.append((proto, s, sport, d, dport))
                        cache.append(None)
                    sizes = blob[bp:bp + 4 * n]
                    bp += 4 * n
                    if tget is not None and cd > n:
                        ent = cache[kid]
                        if ent is None or ent[0].gen != ent[2]:
                            key = keys[kid]
                            e = tget(key)
                            if e is None:
                                ent = None
                            else:
                                c = e[0]
                                back = tget((key[0], key[3], key[4], key[1], key[2]))
                                ent = (c, e[1], c.gen, back is not None and back[0] is c and back[1] is not e[1])
                            cache[kid] = ent
                        if ent is not None:
                            c, is_orig, _, both = ent
                            last = c.last
                            timeout = c.timeout
                            if (ts - last <= timeout and gap <= timeout
                                    and (not n0 or (c.os if is_orig else c.rs))
                                    and (not n1 or (both and (c.rs if is_orig else c.os)))
                                    and not (verify and (frame < verify_all or (frame + n) >> vshift != frame >> vshift)
                                             and not self._checksums_good(dec, off, sizes, frame, lt, rec_header,
                                                                          scale))):
                                frame += n
                                cd -= n
                                taken += n
                                records += n
                                if tmax > last:
                                    c.last = tmax
                                if tmin < c.first:
                                    c.first = tmin
                                if is_orig:
                                    c.opk += n0
                                    c.oby += tot0
                                    c.rpk += n1
                                    c.rby += tot1
                                    bits = bits_orig
                                else:
                                    c.rpk += n0
                                    c.rby += tot0
                                    c.opk += n1
                                    c.oby += tot1
                                    bits = bits_resp
                                while order:
                                    bit = bits[order & 7]
                                    if not c.hseen & bit:
                                        c.hseen |= bit
                                        c.hist.append(letters[bit])
                                    order >>= 3
                                continue
                    # Not all of the run would have been taken: decode its frames from the file.
                    if lane is not None:
                        lane.release(cd, taken)
                        taken = 0
                    for rec in self._frames(dec, off, length, frame, lt, rec_header, scale):
                        records += 1
                        yield rec
                    frame += n
                    if lane is not None:
                        cd = lane.hold()
                if lane is not None:
                    lane.release(cd, taken)
                    taken = 0
        finally:
            if taken and lane is not None:
                lane.release(cd, taken)
            self.close()
        return frame, records

    def _checksums_good(self, dec: Decoder, off: int, sizes: bytes, frame: int, lt: int,
                        rec_header: struct.Struct, scale: float) -> bool:
        """Whether the frames of a run (frame + 1, ...; its records start at ``off``, ``sizes`` their
        lengths) that the checksum policy samples have good checksums, as Decoder.decode judges them
        (with a lane that takes whatever it is offered, and its count put back): then the run may be
        applied at once. Only the sampled records are read back from the file."""
        lengths = array("I")
        lengths.frombytes(sizes)
        unpack, hl = rec_header.unpack_from, rec_header.size
        lane, laned, dec.lane = dec.lane, dec.laned, _TAKE_ALL
        try:
            k = frame + 1  # the first frame due a check: every one up to VERIFY_ALL_FRAMES, then 1 in 64
            if k > VERIFY_ALL_FRAMES:
                k = (k + VERIFY_EVERY_MASK) & ~VERIFY_EVERY_MASK
            while k - frame <= len(lengths):
                j = k - frame - 1
                size = lengths[j]
                at = off + sum(lengths[:j])
                buf = os.pread(self._input, size, at)
                if len(buf) != size:
                    return False
                sec, frac, caplen, _ = unpack(buf, 0)
                if dec.decode(buf, hl, caplen, sec + frac * scale, k, lt) is not None:
                    return False
                k = k + 1 if k < VERIFY_ALL_FRAMES else (k + 1 + VERIFY_EVERY_MASK) & ~VERIFY_EVERY_MASK
            return True
        finally:
            dec.lane, dec.laned = lane, laned

    def _frames(self, dec: Decoder, off: int, length: int, frame: int, lt: int, rec_header: struct.Struct,
                scale: float) -> Iterator[PacketRecord]:
        """Decode the records in [off, off + length) of the file, frames frame + 1, ..., as the
        walk's own decoder would."""
        buf = os.pread(self._input, length, off)
        if len(buf) != length:
            raise CaptureError(f"{self.path}: changed while it was read (frames after {frame}); run with -j 1")
        unpack, hl, decode = rec_header.unpack_from, rec_header.size, dec.decode
        pos = 0
        while pos < length:
            sec, frac, caplen, _ = unpack(buf, pos)
            frame += 1
            rec = decode(buf, pos + hl, caplen, sec + frac * scale, frame, lt)
            if rec is not None:
                yield rec
            pos += hl + caplen
