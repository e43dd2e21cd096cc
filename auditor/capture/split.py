"""Two processes over one capture, with the result of one: a byte-range split of large captures.

The conversation state machine is one sequence (a packet's effect depends on every packet before it),
so the run stays one pass in this process; what moves to a second process is the walk (record
headers, Ethernet/IP/TCP unpacking), which is most of the per-packet cost:

1. ``plan`` picks a *chain* of consecutive uncompressed inputs the worker can walk (Ethernet pcap;
   pcapng whose interfaces are described before its first packet) and a boundary about SPLIT_AT of
   the way into the bytes (``choose``: inputs before the chain are this process's share too). Inside
   a file the boundary is a guess: ``find_boundary`` (a chain of plausible pcap record headers) or
   pcapng.find_block_boundary (block lengths repeated at their ends); at an input's first record it
   is certain.
2. A forked worker (capture/spill.py) walks the chain from the boundary to the end of its last
   input with ``walk_pcap``/``walk_pcapng(spill=...)`` (a pcapng walk is first handed the file's
   blocks before its first packet) and writes a *spill* (``ENTRY``). Consecutive fast-lane packets (up to
   MAX_WINDOW frames of up to MAX_CONVS conversations) form a *window*: one entry for the window (its
   frames' file region and record lengths) and one per conversation in it, with per-direction packet
   and byte counts, the timestamps summarised and the history letters in order. Any other frame ends
   the window and is one entry, its bytes in a side blob. Batches go to an unlinked temporary file; a
   pipe says how far the file is written, and where each input ends (with what the walk learned of
   it: why it stopped early, its time span, frames per pcapng interface).
3. Meanwhile this process walks up to the boundary as usual (``HashingReader.bound``). If its walk
   ends exactly there, the guess was a record boundary (the walk from the file's start is the only
   true chain of records) and ``Split.replay`` applies the spill through the same fast lane and
   decoder, in order, input by input. If the walk ends inside a record (or, in pcapng, meets an
   interface or section described after the first packet, which the worker would not know), the
   split is dropped: the worker is stopped and this process reads on by itself. A pcapng worker
   hands back at any block it would not walk as this process does (a new section or interface, a
   damaged block): this process reads on from there. Either way the conversations, counters and
   warnings are exactly those of one process (tests/test_capture_split.py and
   test_capture_split_ng.py compare whole results, also on every corpus pcap and pcapng).

Between two frames that need the decoder, the fast lane's packets of different connections commute:
each changes only its own connection (and the packet counts). So a window is applied at once, one
update per conversation, when every packet in it would have been taken by the lane one by one:
each conversation's connection is live (a key id's table entry is cached with the connection's
``gen``) and is no other conversation's, no gap reaches the idle timeout, the sweep is not due, and
the frames the checksum policy samples (frame numbers are known only here) have good checksums
(those frames are read back with ``os.pread``). Otherwise the window's records are read back and
decoded one by one, as the walk would have. On the bench capture a conversation entry covers ~47
frames, and this process replays a frame in ~0.8 µs of CPU against ~2.1 µs for walking it (most of
the 0.8 is opening and closing connections); where conversations interleave packet by packet, ~3.6.
The SHA-256 is still of each whole file: the read-ahead thread hashes the rest (through memory maps)
while the spill is replayed.

Costs and limits: the spill is ~7 bytes a frame on the bench capture and ~29 where conversations
interleave packet by packet (plus the bytes of frames that need the decoder); it lives in the
temporary folder (not writable, or less free room than SPILL_SHARE of the worker's part: one process
reads). A worker's part under (1 - SPLIT_AT) MIN_SPLIT_BYTES is not worth it. Compressed inputs are
never split (source.Inflater decompresses them in a second process instead).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from array import array
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, NamedTuple

from auditor.capture.decode import VERIFY_ALL_FRAMES, VERIFY_EVERY_MASK, BadRun, Decoder, bad_run_why
from auditor.capture.source import start_child, stop_child
from auditor.capture.spill import (
    _TAKE_ALL,
    ENTRY,
    HEADER,
    KIND_LANE,
    KIND_NEW4,
    KIND_RAW,
    NEW4,
    NEW6,
    _StandIn,
    _worker,
)
from auditor.errors import CaptureError
from auditor.model import Lane, PacketRecord

SPLIT_AT = 0.38
"""Where the worker's range starts, as a share of the file. This process walks the first part at
full cost (~2.2 µs a frame on the bench capture, with the other process and the hashing thread
sharing the two cores) and then replays the rest (~0.8 µs a frame, most of it opening and closing
connections), while the worker walks the rest (~1.8 µs a frame of CPU): 0.35-0.4 balances the two on
the 10M-packet bench capture (bench/README.md)."""
SPILL_SHARE = 0.2
"""Room to keep free in the temporary folder, as a share of the worker's part of the file: the spill
takes ~1 % of it on the bench capture, ~5 % where conversations interleave packet by packet (29
bytes a frame, bench/README.md), more where many frames need the decoder (their bytes are copied).
With less room one process reads the file."""
MIN_SPLIT_BYTES = 64 << 20
"""Smaller captures are not worth a second process."""
DENSE = 0.3
"""No split when this share of the frames (or more) would need the decoder and the conversation
core's slow path (``slow_share``): the replay of those frames costs what walking them costs, so the
second process only adds its overhead. Measured on bench captures of 140,000 conversations
(bench/README.md, full audit, one process against two): a share of 0.43 (1M packets) 8.5 s against
9.2; 0.20 (2M) 10.8 against 10.2-10.7; 0.14 (3M) 11.5-12.2 against 11.2-11.4; 0.09 (5M) 15.6
against 12.7."""
SAMPLE = 1 << 20
"""Bytes of a capture's start that ``slow_share`` reads."""
_PROGRESS_MASK = (1 << 15) - 1
Parse = Callable[[bytes, int], tuple[int, int, float, int, int]]
"""A walk's reading of the record at an offset of a buffer: (start of the frame, captured length,
ts, link type, offset of the next record)."""


# -- choosing the boundary --------------------------------------------------------------------------

def find_boundary(path: str, target: int, *, chain: int = 32, window: int = 4 << 20) -> int | None:
    """A file offset at or after ``target`` where a run of ``chain`` plausible pcap record headers
    starts (captured length within the snapshot length and the original length, sub-second field in
    range, timestamps close to the first record's and to each other), or None. A guess: the reading
    process checks it (module docstring)."""
    from auditor.capture.pcapfile import pcap_header

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


class SplitPlan(NamedTuple):
    """Inputs ``first`` to ``last`` (indexes into the run's inputs) form the worker's chain: it walks
    ``first`` from offset ``boundary`` on, and every later one of the chain from its first record
    (``starts``: where each input's records start); this process walks everything before the
    boundary and replays the spill."""

    first: int
    boundary: int
    last: int
    starts: tuple[int, ...]




def _splittable(path: str) -> tuple[int, int]:
    """(size, where its first record starts) if the worker can walk ``path``, else (0, 0): an
    uncompressed Ethernet pcap file (the fused walk is what is worth moving), or an uncompressed
    pcapng file whose interfaces are described before its first packet."""
    from auditor.capture.pcapfile import PCAPNG_MAGIC, pcap_header
    from auditor.capture.pcapng import first_packet_offset

    if path == "-" or not os.path.isfile(path):
        return 0, 0
    with open(path, "rb") as fh:
        head = fh.read(HEADER)
    if head[:4] == PCAPNG_MAGIC:
        start = first_packet_offset(path)
        return (0, 0) if start is None else (os.path.getsize(path), start)
    header = pcap_header(head)
    return (os.path.getsize(path), HEADER) if header is not None and header.lt == 1 else (0, 0)


def choose(sizes: Sequence[int], ok: Sequence[bool]) -> tuple[int, int, int] | None:
    """(first, offset in first, last) of the chain that saves the most time, by the cost model of
    SPLIT_AT: with this process walking P bytes (the inputs before the boundary, the boundary's own
    input up to it) while the worker walks the W bytes of the chain after it, then replaying those
    at ``r`` of the cost of walking them, the chain takes max(P + r W, W); the inputs after the chain
    follow in this process alone. The offset is HEADER where the boundary is an input's start. A
    worker part under (1 - SPLIT_AT) MIN_SPLIT_BYTES is not worth a process: None."""
    r = (1 - 2 * SPLIT_AT) / (1 - SPLIT_AT)
    total = sum(sizes)
    best: tuple[int, int, int] | None = None
    best_time = float(total)
    start = [0, *itertools.accumulate(sizes)]
    i = 0
    while i < len(sizes):
        if not ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(sizes) and ok[j + 1]:
            j += 1
        end = start[j + 1]
        target = max(start[i], int(SPLIT_AT * end))
        k = i
        while start[k + 1] <= target and k < j:
            k += 1
        off = max(HEADER, target - start[k])
        work = end - start[k] - off
        time = max(start[k] + off + r * work, work) + total - end
        if work >= (1 - SPLIT_AT) * MIN_SPLIT_BYTES and time < best_time:
            best, best_time = (k, off, j), time
        i = j + 1
    return best


def plan(paths: Sequence[str]) -> SplitPlan | None:
    """The split for these inputs (``choose``), or None: no input the worker can walk, too little
    to gain, too little room in the temporary folder for the spill (SPILL_SHARE of the worker's
    part), or no plausible record boundary near the chosen offset (then the next input's start is
    the boundary, if the chain goes on)."""
    from auditor.capture.pcapng import find_block_boundary

    found = [_splittable(p) for p in paths]
    sizes = [size for size, _ in found]
    chosen = choose(sizes, [s > 0 for s in sizes])
    if chosen is None:
        return None
    first, off, last = chosen
    work = sum(sizes[first:last + 1]) - off
    try:
        free = shutil.disk_usage(tempfile.gettempdir()).free
    except OSError:
        return None
    if free < SPILL_SHARE * work:
        return None
    if slow_share(paths[first]) >= DENSE:
        return None
    starts = tuple(start for _, start in found[first:last + 1])
    if off > starts[0]:
        seek = find_block_boundary if starts[0] != HEADER else find_boundary
        boundary = seek(paths[first], off)
        if boundary is not None:
            return SplitPlan(first, boundary, last, starts)
        if first == last:
            return None
        first, starts = first + 1, starts[1:]
    return SplitPlan(first, starts[0], last, starts)


class _Sample:
    """A capture's first bytes, read by a walk as if they were all of it (``slow_share``)."""

    compression = "none"

    def read(self, size: int) -> bytes:
        return b""

    def unbound(self) -> None:
        pass

    def hash_rest(self) -> None:
        pass


class _Counter(_StandIn):
    """A lane that takes what the conversation core's fast lane could take of a live connection
    (FastLane.take: all but SYN, FIN and RST; the decoder offers no packet that needs more), and
    counts it, and the SYNs it is offered. It knows no connections: a first packet counts as the
    lane's, so the share is that of frames that need the slow path whatever came before them."""

    def __init__(self) -> None:
        super().__init__()
        self.taken = self.syns = 0

        def take(proto: int, src: bytes, sport: int, dst: bytes, dport: int, ts: float, flags: int,
                 plen: int, ip_len: int) -> bool:
            if flags & 7:
                if flags & 0x12 == 0x02:
                    self.syns += 1
                return False
            self.taken += 1
            return True

        self.take = take


class Share(NamedTuple):
    """What a capture's first SAMPLE bytes say of its frames (``sample``)."""

    slow: float
    """Share of frames that need the decoder and the conversation core's slow path."""
    syn: float
    """Share of frames that are initial SYNs (a flood of attempts when high)."""


def slow_share(path: str) -> float:
    """``sample(path).slow``."""
    return sample(path).slow


def sample(path: str) -> Share:
    """The shares of the frames in the first SAMPLE bytes of a pcap or pcapng file that need the
    decoder and the slow path (SYN, FIN, RST, DNS, name evidence, non-TCP/UDP, damage...), and that
    are initial SYNs, by the walk and decoder themselves. (0.0, 0.0) for anything else: a compressed
    file, another format, a damaged header, no whole frame in the sample."""
    from auditor.capture.info import InputInfo, ReadStats
    from auditor.capture.pcapfile import PCAP_MAGICS, PCAPNG_MAGIC, walk_pcap
    from auditor.capture.pcapng import walk_pcapng

    try:
        with open(path, "rb") as fh:
            data = fh.read(SAMPLE)
    except OSError:
        return Share(0.0, 0.0)
    if data[:4] not in PCAP_MAGICS and data[:4] != PCAPNG_MAGIC:
        return Share(0.0, 0.0)
    info = InputInfo(path=path)
    dec = Decoder(ReadStats(), 0, verify_checksums=True)
    counter = dec.lane = _Counter()
    walk = walk_pcapng if data[:4] == PCAPNG_MAGIC else walk_pcap
    try:
        for _ in walk(_Sample(), data, info, dec, lambda: None, fused=False):
            pass
    except CaptureError:  # a header the reading itself will refuse, saying why
        return Share(0.0, 0.0)
    frames = info.packets - (1 if info.truncated else 0)  # a frame cut by the sample's end is not one
    if frames <= 0:
        return Share(0.0, 0.0)
    return Share((frames - counter.taken) / frames, counter.syns / frames)


# -- this process: start the worker, check the boundary, replay the spill ---------------------------

class Split:
    """The worker started on a chain of inputs (SplitPlan) and the spill it writes, which this
    process replays input by input (``replay``, called by the walk of each)."""

    def __init__(self, paths: Sequence[str], plan: SplitPlan) -> None:
        self.parts = [(paths[i], plan.boundary if i == plan.first else plan.starts[i - plan.first])
                      for i in range(plan.first, plan.last + 1)]
        self._first = plan.first
        self._part = 0
        self.path, self.boundary = self.parts[0]
        """The input whose part is replayed next, and where this process's walk of it ends."""
        self._starts = plan.starts
        self.records_at = plan.starts[0]
        """Where that input's records start: the worker knows the blocks before (pcapng), no others."""
        self.verified = False
        """Set by the walk (pcapfile._Reader) when it ended exactly at the boundary."""
        self.position = 0
        """File offset of the frame being replayed (for progress)."""
        self.why = ""
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.iface_frames: list[int] = []
        """pcapng: the replayed frames per interface of the section."""
        self.resume: int | None = None
        """pcapng: where the worker handed back (the reading process reads on from there)."""
        self._spill = tempfile.TemporaryFile(prefix="pcap-audit-spill-")  # noqa: SIM115 - close()
        self._proc: Any
        self._proc, rmsg = start_child(_worker, "pcap-audit-split", self.parts, self._spill.fileno())
        self._msgs = os.fdopen(rmsg, "rb")
        self._input = os.open(self.path, os.O_RDONLY)
        self._fpos = 0

    @property
    def next_input(self) -> int:
        """The index (among the run's inputs) of the input replayed next; -1 once it is all
        replayed or the split is dropped."""
        return -1 if self._proc is None else self._first + self._part

    def _advance(self) -> None:
        """One input's part is replayed: on to the next one, or the end."""
        self._part += 1
        if self._part == len(self.parts):
            self.close()
            return
        os.close(self._input)
        self.path, self.boundary = self.parts[self._part]
        self.records_at = self._starts[self._part]
        self._input = os.open(self.path, os.O_RDONLY)
        self.verified = False
        self.position = 0

    def abandon(self) -> None:
        """The walk did not end at the boundary: stop the worker, drop the spill (this process
        reads every input that is left)."""
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            stop_child(self._proc)
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
            self.iface_frames, self.resume = end["ifaces"], end["resume"]
            return

    def replay(self, dec: Decoder, frame: int, tick: Callable[[], None],
               parse: Parse) -> Generator[PacketRecord, None, tuple[int, int]]:
        """Apply the spill after frame ``frame`` as the walk would have walked those frames: the
        same fast-lane updates (conversations.FastLane.take, here per conversation of a window of
        packets at once), the same records through ``dec``. Returns (last frame, records).

        A window is applied at once when each of its packets would have been taken (module
        docstring): every conversation's connection is live (the key id's cached table entries,
        checked by the connection's ``gen``, or a lookup; both directions on the one connection; no
        two conversations on one connection), no gap reaches the idle timeout, the sweep countdown
        does not run out, and the frames due a checksum check pass it (``_checksums_good``).
        Otherwise its frames are read back from the file and decoded one by one, exactly as the
        walk would have (``_frames``; ``parse`` reads a record of the walk's format)."""
        lane: Lane | None = dec.lane
        decode = dec.decode
        verify, verify_all, vmask, pmask = dec.verify, VERIFY_ALL_FRAMES, VERIFY_EVERY_MASK, _PROGRESS_MASK
        vshift = vmask.bit_length()
        new4, new6 = NEW4.unpack_from, NEW6.unpack_from
        keys: list[tuple[Any, ...]] = []
        cache: list[Any] = []
        """Per key id: None, or (connection, is_orig of direction 0, its gen, whether direction 1
        is the same connection the other way)."""
        records = taken = cd = end = 0
        done = False
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
            batches = self._batches()
            for ents, blob in batches:
                bp = 0
                if lane is not None:
                    cd = lane.hold()
                entries = it(ents)
                for kind, order, n, n1, kid, tot0, tot1, ts, tmax, tmin, gap, off, length in entries:
                    if (frame ^ (frame + n)) & ~pmask:
                        self.position = off
                        tick()
                    if kind == KIND_RAW:
                        frame += 1
                        if lane is not None:
                            lane.release(cd, taken)
                            taken = 0
                        end = off + length + tot0  # where the frame's record ends (tot0: what follows the frame)
                        rec = decode(blob[bp:bp + length], 0, length, ts, frame, order)  # order: the link type
                        bp += length
                        if rec is not None:
                            records += 1
                            yield rec
                        if lane is not None:
                            cd = lane.hold()
                        continue
                    # A window of n frames: its conversations' entries follow (kid of the window: how many).
                    convs = [next(entries) for _ in range(kid)]
                    for ckind, _, _, _, ckid, *_ in convs:
                        if ckind != KIND_LANE:  # a new key id, its 5-tuple in the blob
                            if ckind == KIND_NEW4:
                                proto, s, d, sport, dport = new4(blob, bp)
                                bp += 13
                            else:
                                proto, s, d, sport, dport = new6(blob, bp)
                                bp += 37
                            if not ckid:
                                keys.clear()
                                cache.clear()
                            keys.append((proto, s, sport, d, dport))
                            cache.append(None)
                    sizes = blob[bp:bp + 4 * n]
                    bp += 4 * n
                    if tget is not None and cd > n:
                        # Between two frames that need the decoder the lane's packets of different
                        # connections commute: each changes only its own connection (and the counts).
                        # So the window goes at once if every packet of every conversation would
                        # have been taken, each conversation on a connection of its own.
                        ready = []
                        seen: set[int] = set()
                        for _, order, n0, n1, ckid, tot0, tot1, first, tmax, tmin, gap, _, _ in convs:
                            ent = cache[ckid]
                            if ent is None or ent[0].gen != ent[2]:
                                key = keys[ckid]
                                e = tget(key)
                                if e is None:
                                    break
                                c = e[0]
                                back = tget((key[0], key[3], key[4], key[1], key[2]))
                                ent = cache[ckid] = (c, e[1], c.gen,
                                                     back is not None and back[0] is c and back[1] is not e[1])
                            c, is_orig, _, both = ent
                            timeout = c.timeout
                            if not (first - c.last <= timeout and gap <= timeout
                                    and (not n0 or (c.os if is_orig else c.rs))
                                    and (not n1 or (both and (c.rs if is_orig else c.os)))
                                    and id(c) not in seen):
                                break
                            seen.add(id(c))
                            ready.append((c, is_orig, order, n0, n1, tot0, tot1, tmax, tmin))
                        else:
                            if not (verify and (frame < verify_all or (frame + n) >> vshift != frame >> vshift)
                                    and not self._checksums_good(dec, off, sizes, frame, parse)):
                                frame += n
                                cd -= n
                                taken += n
                                records += n
                                for c, is_orig, order, n0, n1, tot0, tot1, tmax, tmin in ready:
                                    if tmax > c.last:
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
                    # Not every packet of the window would have been taken: decode its frames from the file.
                    if lane is not None:
                        lane.release(cd, taken)
                        taken = 0
                    for rec in self._frames(dec, off, length, frame, parse):
                        records += 1
                        yield rec
                    frame += n
                    if lane is not None:
                        cd = lane.hold()
                if lane is not None:
                    lane.release(cd, taken)
                    taken = 0
            done = True
        except BadRun as e:
            # A run of malformed frames ends here. The worker's run began at the boundary too (a
            # walk that reaches the boundary inside a run drops the split, pcapfile._Reader.more), so
            # it gave up at this same frame, the last it spilled of this input: what is left is its
            # end message, which says how the input ends (why, time span, frames per interface).
            frame = e.frame
            for _ in batches:
                pass
            if not self.why:
                if e.offset < 0:
                    e.offset = end
                self.why = bad_run_why(e, "none")
            done = True
        finally:
            if taken and lane is not None:
                lane.release(cd, taken)
            if done:
                self._advance()
            else:
                self.close()
        return frame, records

    def _checksums_good(self, dec: Decoder, off: int, sizes: bytes, frame: int, parse: Parse) -> bool:
        """Whether the frames of a window (frame + 1, ...; its records start at ``off``, ``sizes``
        their lengths) that the checksum policy samples have good checksums, as Decoder.decode judges
        them (with a lane that takes whatever it is offered, and its count put back): then the window
        may be applied at once. Only the sampled records are read back from the file."""
        lengths = array("I")
        lengths.frombytes(sizes)
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
                start, caplen, ts, lt, _ = parse(buf, 0)
                if dec.decode(buf, start, caplen, ts, k, lt) is not None:
                    return False
                k = k + 1 if k < VERIFY_ALL_FRAMES else (k + 1 + VERIFY_EVERY_MASK) & ~VERIFY_EVERY_MASK
            return True
        finally:
            dec.lane, dec.laned = lane, laned

    def _frames(self, dec: Decoder, off: int, length: int, frame: int, parse: Parse) -> Iterator[PacketRecord]:
        """Decode the records in [off, off + length) of the file, frames frame + 1, ..., as the
        walk's own decoder would."""
        buf = os.pread(self._input, length, off)
        if len(buf) != length:
            raise CaptureError(f"{self.path}: changed while it was read (frames after {frame}); run with -j 1")
        decode = dec.decode
        pos = 0
        while pos < length:
            start, caplen, ts, lt, pos = parse(buf, pos)
            frame += 1
            try:
                rec = decode(buf, start, caplen, ts, frame, lt)
            except BadRun as e:
                e.offset = off + pos
                raise
            if rec is not None:
                yield rec
