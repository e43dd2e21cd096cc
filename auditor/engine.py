"""The audit's engine: the inputs as chunks, each read by a conversation builder of its own, merged
exactly in input order (SPEC §8).

    chunks = plan(paths, parts)                 # input files, large ones cut in byte ranges
    part = read_chunk(chunk, ports, ...)        # anywhere: this process, a local worker, a Dask worker
    whole = merge(parts)                        # in input order: ConversationBuilder.absorb

A chunk's result (``Part``) is a value: its ended conversation builder (closed flows, the connections
open at its edges, its head chains: auditor/conversations/chunks.py), its name evidence and what reading
found (InputInfo, ReadStats). Merging parts in input order gives the result of one sequential read,
whatever ran them: ``run_local`` (processes of this machine, ``-j N``) or ``run_dask`` (an existing
Dask distributed cluster, ``--scheduler ADDRESS``, whose workers can read the same paths).

A byte range of a file counts its frames from 1 at its first record: its records carry a virtual
input index (``_virtual``), so that frame numbers still order the whole run, and the merged result is
renumbered once at the end, when the frames of every chunk are known (capture/ranges.py ``join``).

One condition: a chunk's head chains cover the 5-tuples first seen within one idle timeout of its
first packet, which holds when the inputs follow each other in time (a ring buffer, an archive).
When it does not hold (inputs that overlap in time: two interfaces captured at once), or when a merge
finds a packet it cannot place as one read would (a chain settled apart that continues something, a
DHCP or TFTP packet that belongs to a connection of an earlier chunk: conversations/chunks.py), the
result is not exact and says why (``Collected.inexact``): the audit reads the inputs again in one
process, in order.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# The conversation core's builder and merge are looked up at each use (conversations.ConversationBuilder,
# conversations.merging): of the build that runs (auditor/capture/native.py), as its kernel is.
from auditor import conversations, pipe
from auditor.capture import CaptureSet, ranges
from auditor.capture.info import InputInfo, ReadStats
from auditor.conversations import DISORDER_SLACK
from auditor.conversations.lane import TICK_RECORDS
from auditor.conversations.state import Head
from auditor.errors import AuditorError
from auditor.model import PacketRecord
from auditor.names import NameEvidence
from auditor.parallel import lean_heap, paused_gc, trim_heap, tune_gc

if TYPE_CHECKING:
    from auditor.conversations import ConversationBuilder, ConversationResult

Progress = Callable[[int, int, int], None]
"""(bytes done, bytes in all, frames read)."""


@dataclass
class Part:
    """What reading one chunk (or a run of whole files, one after the other) gave: mergeable with
    the parts before and after it."""

    chunks: list[ranges.Chunk]
    """What was read, in order: one chunk, or several whole files (``group``)."""
    size: int
    """Bytes of the chunks."""
    conv: ConversationBuilder
    names: NameEvidence
    stats: ReadStats
    inputs: list[InputInfo]
    """One per chunk."""

    @property
    def chunk(self) -> ranges.Chunk:
        return self.chunks[0]


@dataclass
class Collected:
    """The merge of every part: what audit.collect returns, and the facts of the inputs."""

    conv: ConversationResult
    names: NameEvidence
    inputs: list[InputInfo] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)
    inexact: str = ""
    """Why the merge is not that of one sequential read ("": it is; see the module's docstring)."""


def plan(paths: Sequence[str], parts: int, *, min_bytes: int = ranges.MIN_BYTES) -> list[ranges.Chunk]:
    """The chunks of these inputs, in order: every input, uncompressed pcap and pcapng files of at
    least ``min_bytes`` cut into ``parts`` byte ranges at record boundaries (capture/ranges.py)."""
    return ranges.plan(paths, parts, min_bytes=min_bytes)


CHUNK_MAX = 1 << 30
"""Bytes of a byte range that local processes read, at most: a chunk keeps the logs of the head
chains of conversations that go on through it (long ones: to its end), so its memory grows with it
(~100 MB per GB on the 10M-packet bench capture: docs/scale.md)."""


def plan_local(paths: Sequence[str], jobs: int, *, min_bytes: int = ranges.MIN_BYTES) -> list[ranges.Chunk]:
    """The chunks for ``jobs`` local processes: each input cut into its share of ``jobs`` by size
    (rounded up), so that there are about ``jobs`` chunks of similar size and no more (every chunk
    adds head chains to merge): four ring files on two processes stay four chunks, one large file
    is cut into ``jobs``, or more when they would be larger than CHUNK_MAX."""
    sizes = []
    for path in paths:
        try:
            sizes.append(os.path.getsize(path) if path != "-" else 0)
        except OSError:
            sizes.append(0)  # the reading says why
    total = sum(sizes) or 1
    out: list[ranges.Chunk] = []
    for index, (path, size) in enumerate(zip(paths, sizes, strict=True)):
        parts = max(1, -(-jobs * size // total), -(-size // CHUNK_MAX))
        out.extend(c._replace(input_index=index) for c in ranges.plan([path], parts, min_bytes=min_bytes))
    return out


_PARTS = 1 << 20
"""Virtual input index of chunk ``part`` of input ``i``: ``i * _PARTS + part``."""


def _virtual(chunk: ranges.Chunk) -> int:
    return chunk.input_index * _PARTS + chunk.part


def _size(chunk: ranges.Chunk) -> int:
    end = os.path.getsize(chunk.path) if chunk.end < 0 else chunk.end
    return max(0, end - chunk.start)


def group(chunks_: Sequence[ranges.Chunk], jobs: int) -> list[list[ranges.Chunk]]:
    """The chunks as ``jobs`` runs of about equal size for local processes: consecutive whole files
    go together (one builder reads them one after the other, as one process would: only the first
    starts head chains, and one part travels instead of several); a byte range is a run of its own."""
    sizes = [_size(c) for c in chunks_]
    total = sum(sizes) or 1
    out: list[list[ranges.Chunk]] = []
    before: float | None = None
    done = 0
    for c, size in zip(chunks_, sizes, strict=True):
        share = None if c.start or c.end >= 0 else (done + size / 2) * jobs // total
        if share is None or share != before or not out:
            out.append([c])
        else:
            out[-1].append(c)
        before = share
        done += size
    return out


def read_records(records: Iterable[PacketRecord], builder: ConversationBuilder, names: NameEvidence | None,
                 tick: Callable[[], None] | None = None, every: float = 0.05) -> None:
    """Every record into the conversation core and the name evidence: the one reading loop, of a
    sequential read (audit.collect) and of a chunk (read_chunk). From a CaptureSet, most packets never
    become records: the builder's fast lane takes them from the decoder by their fields
    (ConversationBuilder.lane), in order with the records around them; and the records the kernel's
    walk makes go to the lane too (FastLane.put: in the compiled build a C call where the record is
    made), so that this loop takes only those of the other readers. ``tick`` is called about every
    ``every`` seconds. ``names`` None: the records go to the core alone (the name evidence is read
    apart: auditor/names_apart.py)."""
    countdown, due = TICK_RECORDS, time.monotonic() + every

    def timely() -> None:
        nonlocal due
        if tick is not None and time.monotonic() >= due:
            tick()
            due = time.monotonic() + every

    if isinstance(records, CaptureSet):
        # The kernel's walks hand their records to the lane (FastLane.put), which feeds them as this
        # loop would: this loop then takes only those of the other readers (tshark, converted inputs).
        table = names.lane_table() if names is not None else None
        records.lane = builder.lane(table, timely if tick is not None else None,
                                    puts=table is not None or names is None)
    feed = builder.feed
    observe = names.observer() if names is not None else None
    stream = iter(records)
    try:
        for rec in stream:
            feed(rec)
            if rec.payload and observe is not None:
                observe(rec)
            countdown -= 1
            if not countdown:
                countdown = TICK_RECORDS
                timely()
    finally:
        # A stop (Ctrl-C, SIGTERM) or an error leaves the reader suspended: close it now, so that its
        # clean-up runs (temporary copies of other formats, converting processes) before the process
        # exits, not whenever the traceback that holds it is released.
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def read_chunk(chunk: ranges.Chunk | Sequence[ranges.Chunk], server_ports: frozenset[tuple[str, int]], engine: str,
               verify: bool, first: bool, last: bool = False, tick: Callable[[], None] | None = None,
               every: float = 0.05, freeze: bool = False) -> Part:
    """Read one chunk, or several whole files one after the other (``first``: it starts the run, so
    nothing can continue into it; ``last``: it ends it, so its connections are closed here, nothing
    can continue them). Its records carry their chunk's virtual input index (``_virtual``). ``tick``
    is called about every ``every`` seconds while reading (``run_local``: the workers that finished
    reading make room for the next ones meanwhile). ``freeze``: what the reading made is frozen for
    the garbage collector (parallel.paused_gc), in this process's own workers and the audit's process,
    not in a long-lived Dask worker, whose later garbage it would keep."""
    tune_gc()
    run = [chunk] if isinstance(chunk, ranges.Chunk) else list(chunk)
    cs = CaptureSet.from_chunks([c._replace(input_index=_virtual(c)) for c in run], engine=engine,
                                verify_checksums=verify)
    builder = conversations.ConversationBuilder(server_ports=server_ports, chunk=not first)
    names = NameEvidence()
    with paused_gc(keep=freeze):
        read_records(cs, builder, names, tick, every)
        part = Part(run, sum(map(_size, run)), builder.end_chunk(last), names, cs.stats, cs.inputs)
    return part


class Merger:
    """Parts merged in input order (``add``), then ``result``. The chunks of an input after one whose
    walk did not end at its boundary are dropped (``wanted``): that walk read on to the input's end
    (ranges.join)."""

    def __init__(self, progress: Progress | None = None, total: int = 0) -> None:
        self.progress = progress
        """Told (bytes, ``total``, frames) of the parts merged so far, after each."""
        self.total = total
        self.done_bytes = self.done_frames = 0
        self.acc: Part | None = None
        self.exact = True
        self.infos: dict[int, list[tuple[int, InputInfo]]] = {}
        self.ended: set[int] = set()

    def wanted(self, chunk: ranges.Chunk) -> bool:
        return chunk.input_index not in self.ended

    def decide(self, firsts: list[Head]) -> list[bool]:
        """Which of the next part's head chains continue something here (conversations/chunks.py)."""
        return conversations.merging.decide(self.acc.conv, firsts) if self.acc is not None else [False] * len(firsts)

    def add(self, part: Part, decided: tuple[list[Head], list[bool]] | None = None,
            rest: pipe.Rest | None = None) -> None:
        """Merge the next part. ``decided``: its chains' first packets and which continue something
        here (``decide``; the part was ``settle``d with them). ``rest``: its flows and names, to come in
        pieces after it (a worker's, ``pipe.send_part``): each piece is merged and let go as it comes,
        where the whole part's would have been."""
        if not self.wanted(part.chunk):
            return
        built = type(part.conv).__module__
        here = conversations.ConversationBuilder.__module__
        if built != here:  # a Dask worker with another install
            raise AuditorError(f"{part.chunk.path}: read by a process that runs another build of pcap-audit "
                               f"({built}, here {here}): install the same pcap-audit, "
                               "compiled or pure alike (pcap-audit --version), on every worker")
        for chunk, info in zip(part.chunks, part.inputs, strict=True):
            self.infos.setdefault(chunk.input_index, []).append((_virtual(chunk), info))
            if chunk.end >= 0 and not info.end_verified:
                self.ended.add(chunk.input_index)
        self.done_bytes += part.size
        self.done_frames += part.stats.frames
        if self.progress is not None:
            self.progress(self.done_bytes, self.total, self.done_frames)
        acc = self.acc
        if acc is None:
            self.acc = acc = part
            if rest is not None:
                part.conv.result.take(f for piece in rest.take("flows") for f in piece)
        else:
            if acc.conv.last_ts > part.conv.first_ts + DISORDER_SLACK:
                self.exact = False
            if decided is None:
                assert rest is None  # only a settled part travels in pieces
                acc.conv.absorb(part.conv)
            else:
                conversations.merging.absorb_decided(acc.conv, part.conv, *decided,
                                                     more=rest.take("flows") if rest is not None else ())
            conversations.merging.close_idle(acc.conv)  # what the later parts cannot continue: closed as it comes
            acc.names.merge(part.names)
            acc.stats.merge(part.stats)
        if rest is not None:  # the part's names, after its flows
            for names in rest.take("names"):
                acc.names.merge(names)
            rest.end()

    def result(self) -> tuple[Collected, bool]:
        """The merged result, renumbered; and whether it is exact (False: a part began before the
        parts ahead of it ended, or the merge found packets it could not place as one read would;
        ``Collected.inexact`` says which)."""
        acc = self.acc
        assert acc is not None
        inexact = "" if self.exact else "the inputs overlap in time"
        if acc.conv.merge_misses and not inexact:
            inexact = (f"{acc.conv.merge_misses} packet(s) belong to conversations that cross the parts' "
                       "boundaries in a way the merge cannot place")
        conv = acc.conv.finish()
        inputs: list[InputInfo] = []
        where: dict[int, tuple[int, int]] = {}
        for i in sorted(self.infos):
            joined, offsets = ranges.join([info for _, info in self.infos[i]])
            joined.path = self.infos[i][0][1].path
            inputs.append(joined)
            for (vi, _), by in zip(self.infos[i], offsets, strict=False):
                where[vi] = (i, by)
        _renumber(conv, acc.names, acc.stats, where)
        return Collected(conv, acc.names, inputs, acc.stats, inexact), not inexact


def merge(parts: Iterator[Part]) -> tuple[Collected, bool]:
    """Merge parts given in input order: the result, and whether it is exact (Merger.result)."""
    merger = Merger()
    for part in parts:
        merger.add(part)
    return merger.result()


def _renumber(conv: ConversationResult, names: NameEvidence, stats: ReadStats,
              where: dict[int, tuple[int, int]]) -> None:
    """(virtual input, frame in its chunk) -> (input, frame in the input), everywhere a frame is kept."""

    def frame(at: tuple[int, int]) -> tuple[int, int]:
        i, by = where.get(at[0], (at[0] // _PARTS, 0))
        return i, at[1] + by

    # The first input's first chunk is numbered as its input already (virtual index 0, from frame 0):
    # its flows and names (half of them, of two processes) are left as they are.
    same = {vi for vi, (i, by) in where.items() if vi == i and by == 0}
    if 0 not in where:
        same.add(0)  # frame() maps it to itself too
    for f in conv.flows.values():
        if f.first_frame[0] not in same:
            f.first_frame = frame(f.first_frame)
        if f.app_evidence and any(ev.frame[0] not in same for ev in f.app_evidence.values()):
            f.app_evidence = {k: ev._replace(frame=frame(ev.frame)) for k, ev in f.app_evidence.items()}
    for c in conv.connections:
        c.first_frame = frame(c.first_frame)
        if c.app_evidence is not None:
            c.app_evidence = c.app_evidence._replace(frame=frame(c.app_evidence.frame))
    stats.examples = {k: frame(v) for k, v in stats.examples.items()}
    names.renumber(frame, same)


def _worker(conn: Any, chunk: list[ranges.Chunk], server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
            first: bool, last: bool) -> None:
    """A worker process: read one chunk; send the first packets of its head chains; receive which of
    them continue something in the chunks before (or None: the chunk is not wanted); fold the others
    into its flows (chunks.settle) and send the part. An error is sent in place of either message.
    A worker whose parent is gone (killed outright: no stop reached it) ends itself: its pipes may be
    held open by its siblings, so it would otherwise wait for ever."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent watch", daemon=True).start()
    lean_heap()
    try:
        try:
            part = read_chunk(chunk, server_ports, engine, verify, first, last, freeze=True)
            pipe.send(conn, ("heads", conversations.merging.heads(part.conv)))
            joins = pickle.loads(conn.recv_bytes())
            if joins is None:
                return
            conversations.merging.settle(part.conv, joins)
        except BaseException as e:
            pipe.send(conn, ("error", e))
            return
        pipe.send_part(conn, part)
    except (EOFError, OSError):
        pass  # the parent stopped: nothing to answer
    finally:
        conn.close()


def _context() -> Any:
    """Where the workers come from: on Linux a fork server started from a lean interpreter with the
    engine imported (a worker forked from this process would share its pages, read and merged parts
    included, and copy those its reference counts touch), else fresh interpreters."""
    if not sys.platform.startswith("linux"):
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def run_local(chunks_: list[ranges.Chunk], server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
              jobs: int, progress: Progress | None = None) -> tuple[Collected, bool]:
    """Read the chunks on ``jobs`` local processes at a time (this one, which reads the first, and
    one per further chunk, from a fork server where the platform has one) and merge their parts in
    input order. Consecutive whole files are read as ``jobs`` runs (``group``), each by one builder.

    The cores stay busy: while this process reads the first chunk, jobs - 1 workers read the next
    ones; after it, and whenever a worker has finished reading (its head chains' first packets have
    come), the next chunk's worker starts, so ``jobs`` chunks are being read at any time until all
    are. A worker that finished reading waits for its turn in the merge. At its turn, this process
    looks its head chains' first packets up in the merge so far (chunks.decide): the worker folds
    the chains that continue nothing itself, and only the others' logs come back. A stop (Ctrl-C,
    SIGTERM) or an error ends the workers at once: no pool, no shared queue whose lock a killed
    worker could hold."""
    lean_heap()
    ctx = _context()
    running: dict[int, tuple[Any, Any]] = {}
    got: dict[int, Any] = {}
    """Chunk -> the first packets of its head chains, once its worker has sent them."""
    merger = Merger(progress, sum(_size(c) for c in chunks_))
    runs = group(chunks_, jobs)
    last = len(runs) - 1
    upcoming = iter(range(1, len(runs)))

    def start() -> None:
        i = next(upcoming, None)
        if i is None:
            return
        here, there = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker, name=f"pcap-audit chunk {i}", daemon=True,
                           args=(there, runs[i], server_ports, engine, verify, i == 0, i == last))
        running[i] = (proc, here)
        proc.start()
        there.close()

    def message(i: int) -> tuple[str, Any]:
        proc, here = running[i]
        try:
            stream = pipe.Stream(here)
            kind, value = pickle.load(stream)
            stream.end()
        except EOFError:
            proc.join()
            raise RuntimeError(f"the process reading {runs[i][0].path} ended ({proc.exitcode})") from None
        if kind == "error":
            raise value
        return kind, value

    def receive(i: int) -> Any:
        return message(i)[1]

    def poll(timeout: float | None = 0.0) -> None:
        """The workers that have finished reading (their heads have come) make room for the next
        ones (``timeout`` None: wait for one)."""
        reading = {running[j][1]: j for j in running if j not in got}
        for here in mpc.wait(list(reading), timeout):
            j = reading[here]
            got[j] = receive(j)
            start()

    def heads_of(i: int) -> Any:
        """Wait for chunk ``i``'s heads; a worker of a later chunk that finishes reading meanwhile
        makes room for the next one."""
        while i not in got:
            poll(None)
        return got.pop(i)

    try:
        for _ in range(jobs - 1):
            start()
        # While this process reads the first run (longer when it also hashes a large first file),
        # a worker that has read its run is replaced at once, not when this one is done.
        merger.add(read_chunk(runs[0], server_ports, engine, verify, True, last == 0, tick=poll, freeze=True))
        start()  # this process reads no more: its core goes to the next chunk
        with paused_gc(keep=True):  # the parts received and merged live on, as the result
            for i, run in enumerate(runs):
                if i == 0:
                    continue
                firsts = heads_of(i)
                proc, here = running[i]
                if not merger.wanted(run[0]):
                    here.send_bytes(pickle.dumps(None))
                else:
                    joins = merger.decide(firsts)
                    here.send_bytes(pickle.dumps(joins, protocol=pickle.HIGHEST_PROTOCOL))
                    merger.add(receive(i), (firsts, joins), pipe.Rest(functools.partial(message, i)))
                    del firsts
                    trim_heap()  # the part's pieces, unpickled and let go
                here.close()
                proc.join()
                del running[i]
            return merger.result()
    finally:
        for proc, here in running.values():
            if proc.pid is not None:  # started (a stop may come while it is being forked)
                with contextlib.suppress(OSError, ValueError):
                    proc.kill()
                    proc.join()
            here.close()


def run_dask(chunks: list[ranges.Chunk], server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
             address: str, progress: Progress | None = None) -> tuple[Collected, bool]:
    """Submit the chunks to the Dask distributed scheduler at ``address`` and merge the parts here,
    in order, as they come back. The workers read the same paths (a shared filesystem)."""
    try:
        distributed: Any = importlib.import_module("distributed")
    except ImportError as e:  # the optional extra
        raise AuditorError("--scheduler needs Dask's distributed scheduler: pip install 'pcap-audit[dask]'") from e
    try:
        client = distributed.Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise AuditorError(f"--scheduler {address}: cannot reach the Dask scheduler ({e})") from e
    with client:
        futures = [client.submit(read_chunk, c, server_ports, engine, verify, i == 0, i == len(chunks) - 1, pure=False)
                   for i, c in enumerate(chunks)]
        merger = Merger(progress, sum(_size(c) for c in chunks))
        for chunk, f in zip(chunks, futures, strict=True):  # in input order: the merge takes them so
            # The part stays on its worker until the merge has looked its chain heads up; the worker
            # settles it and only the chains that continue something travel with their logs.
            firsts: list[Head] = client.submit(_heads_of, f, pure=False).result()
            if merger.wanted(chunk):
                joins = merger.decide(firsts)
                merger.add(client.submit(_settled, f, joins, pure=False).result(), (firsts, joins))
            f.release()
        return merger.result()


def _heads_of(part: Part) -> list[Head]:
    return conversations.merging.heads(part.conv)


def _settled(part: Part, joins: list[bool]) -> Part:
    conversations.merging.settle(part.conv, joins)
    return part
