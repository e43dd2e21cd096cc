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
Inputs that overlap in time (two interfaces captured at once) are read again by one process, in
order, and the result says so (``Collected.reread``).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditor.capture import CaptureSet, ranges
from auditor.capture.info import InputInfo, ReadStats
from auditor.conversations import DISORDER_SLACK, ConversationBuilder, ConversationResult
from auditor.errors import AuditorError
from auditor.names import NameEvidence
from auditor.parallel import paused_gc, tune_gc

Progress = Callable[[int, int, int], None]
"""(bytes done, bytes in all, frames read)."""


@dataclass
class Part:
    """What reading one chunk gave: mergeable with the parts before and after it."""

    chunk: ranges.Chunk
    size: int
    """Bytes of the chunk."""
    conv: ConversationBuilder
    names: NameEvidence
    stats: ReadStats
    inputs: list[InputInfo]


@dataclass
class Collected:
    """The merge of every part: what audit.collect returns, and the facts of the inputs."""

    conv: ConversationResult
    names: NameEvidence
    inputs: list[InputInfo] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)
    reread: bool = False
    """The inputs overlapped in time: read again by one process (see the module's docstring)."""


def plan(paths: Sequence[str], parts: int, *, min_bytes: int = ranges.MIN_BYTES) -> list[ranges.Chunk]:
    """The chunks of these inputs, in order: every input, uncompressed pcap and pcapng files of at
    least ``min_bytes`` cut into ``parts`` byte ranges at record boundaries (capture/ranges.py)."""
    return ranges.plan(paths, parts, min_bytes=min_bytes)


_PARTS = 1 << 20
"""Virtual input index of chunk ``part`` of input ``i``: ``i * _PARTS + part``."""


def _virtual(chunk: ranges.Chunk) -> int:
    return chunk.input_index * _PARTS + chunk.part


def _size(chunk: ranges.Chunk) -> int:
    end = os.path.getsize(chunk.path) if chunk.end < 0 else chunk.end
    return max(0, end - chunk.start)


def read_chunk(chunk: ranges.Chunk, server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
               first: bool) -> Part:
    """Read one chunk (``first``: it starts the run, so nothing can continue into it). Its records
    carry the chunk's virtual input index (``_virtual``)."""
    tune_gc()
    cs = CaptureSet.from_chunks([chunk._replace(input_index=_virtual(chunk))], engine=engine,
                                verify_checksums=verify)
    builder = ConversationBuilder(server_ports=server_ports, chunk=not first)
    names = NameEvidence()
    feed, observe = builder.feed, names.observe
    cs.lane = builder.lane()
    with paused_gc():
        for rec in cs:
            feed(rec)
            if rec.payload:
                observe(rec)
    return Part(chunk, _size(chunk), builder.end_chunk(), names, cs.stats, cs.inputs)


def merge(parts: Iterator[Part]) -> tuple[Collected, bool]:
    """Merge parts given in input order. Returns the result and whether it is exact: False when a
    part began before the parts ahead of it ended (inputs overlapping in time). The chunks of an input
    after one whose walk did not end at its boundary are dropped: that walk read on to the input's end
    (ranges.join)."""
    acc: Part | None = None
    exact = True
    infos: dict[int, list[tuple[int, InputInfo]]] = {}
    ended: set[int] = set()
    for part in parts:
        i = part.chunk.input_index
        if i in ended:
            continue
        (info,) = part.inputs
        infos.setdefault(i, []).append((_virtual(part.chunk), info))
        if part.chunk.end >= 0 and not info.end_verified:
            ended.add(i)
        if acc is None:
            acc = part
            continue
        if acc.conv.last_ts > part.conv.first_ts + DISORDER_SLACK:
            exact = False
        acc.conv.absorb(part.conv)
        acc.names.merge(part.names)
        acc.stats.merge(part.stats)
    assert acc is not None
    conv = acc.conv.finish()
    inputs: list[InputInfo] = []
    where: dict[int, tuple[int, int]] = {}
    for i in sorted(infos):
        joined, offsets = ranges.join([info for _, info in infos[i]])
        joined.path = infos[i][0][1].path
        inputs.append(joined)
        for (vi, _), by in zip(infos[i], offsets, strict=False):
            where[vi] = (i, by)
    _renumber(conv, acc.names, acc.stats, where)
    return Collected(conv, acc.names, inputs, acc.stats), exact


def _renumber(conv: ConversationResult, names: NameEvidence, stats: ReadStats,
              where: dict[int, tuple[int, int]]) -> None:
    """(virtual input, frame in its chunk) -> (input, frame in the input), everywhere a frame is kept."""

    def frame(at: tuple[int, int]) -> tuple[int, int]:
        i, by = where.get(at[0], (at[0] // _PARTS, 0))
        return i, at[1] + by

    for f in conv.flows.values():
        f.first_frame = frame(f.first_frame)
        if f.app_evidence:
            f.app_evidence = {k: ev._replace(frame=frame(ev.frame)) for k, ev in f.app_evidence.items()}
    for c in conv.connections:
        c.first_frame = frame(c.first_frame)
        if c.app_evidence is not None:
            c.app_evidence = c.app_evidence._replace(frame=frame(c.app_evidence.frame))
    stats.examples = {k: frame(v) for k, v in stats.examples.items()}
    names.renumber(frame)


def _worker(conn: Any, chunk: ranges.Chunk, server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
            first: bool) -> None:
    """A worker process: read one chunk, send its part back (or the error that stopped it)."""
    try:
        message: tuple[str, Any] = ("part", read_chunk(chunk, server_ports, engine, verify, first))
    except BaseException as e:
        message = ("error", e)
    try:
        conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        conn.close()


def run_local(chunks: list[ranges.Chunk], server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
              jobs: int, progress: Progress | None = None) -> tuple[Collected, bool]:
    """Read the chunks on up to ``jobs`` local processes at a time (one per chunk, forked where the
    platform can) and merge their parts in input order as they come in. A stop (Ctrl-C, SIGTERM) or
    an error ends the workers at once: no pool, no shared queue whose lock a killed worker could hold."""
    ctx: Any = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    total = sum(_size(c) for c in chunks)
    running: dict[int, tuple[Any, Any]] = {}
    finished = [0, 0]

    def start(i: int) -> None:
        rconn, wconn = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, name=f"pcap-audit chunk {i}", daemon=True,
                           args=(wconn, chunks[i], server_ports, engine, verify, i == 0))
        running[i] = (proc, rconn)
        proc.start()
        wconn.close()

    def parts() -> Iterator[Part]:
        ahead = 0
        for i in range(len(chunks)):
            while ahead < len(chunks) and ahead < i + max(1, jobs):
                start(ahead)
                ahead += 1
            proc, rconn = running[i]
            try:
                kind, value = pickle.loads(rconn.recv_bytes())
            except EOFError:
                proc.join()
                raise RuntimeError(f"the process reading {chunks[i].path} ended ({proc.exitcode})") from None
            rconn.close()
            proc.join()
            del running[i]
            if kind == "error":
                raise value
            finished[0] += value.size
            finished[1] += value.stats.frames
            if progress is not None:
                progress(finished[0], total, finished[1])
            yield value

    try:
        return merge(parts())
    finally:
        for proc, rconn in running.values():
            if proc.pid is not None:  # started (a stop may come while it is being forked)
                with contextlib.suppress(OSError, ValueError):
                    proc.kill()
                    proc.join()
            rconn.close()


def run_dask(chunks: list[ranges.Chunk], server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
             address: str, progress: Progress | None = None) -> tuple[Collected, bool]:
    """Submit the chunks to the Dask distributed scheduler at ``address`` and merge the parts here,
    in order, as they come back. The workers read the same paths (a shared filesystem)."""
    try:
        distributed: Any = importlib.import_module("distributed")
    except ImportError as e:  # the optional extra
        raise AuditorError("--scheduler needs Dask's distributed scheduler: pip install 'pcap-audit[dask]'") from e
    total = sum(_size(c) for c in chunks)
    try:
        client = distributed.Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise AuditorError(f"--scheduler {address}: cannot reach the Dask scheduler ({e})") from e
    with client:
        futures = [client.submit(read_chunk, c, server_ports, engine, verify, i == 0, pure=False)
                   for i, c in enumerate(chunks)]
        finished = [0, 0]

        def parts() -> Iterator[Part]:
            for f in futures:  # in input order: the merge takes them so
                part: Part = f.result()
                finished[0] += part.size
                finished[1] += part.stats.frames
                if progress is not None:
                    progress(finished[0], total, finished[1])
                yield part

        return merge(parts())
