"""The audit's engine: the inputs as chunks, each read by a conversation builder of its own, merged
exactly in input order (SPEC §8).

    chunks = plan(paths, jobs)                  # one per input file (a regular file)
    part = read_chunk(chunk, ports, ...)        # anywhere: this process, a local worker, a Dask worker
    whole = merge(parts)                        # in input order: ConversationBuilder.absorb

A chunk's result (``Part``) is a value: its ended conversation builder (closed flows, the connections
open at its edges, its head chains: auditor/conversations/chunks.py), its name evidence and what reading
found (InputInfo, ReadStats). Merging parts in input order gives the result of one sequential read,
whatever ran them: ``run_local`` (processes of this machine, ``-j N``) or ``run_dask`` (an existing
Dask distributed cluster, ``--scheduler ADDRESS``, whose workers can read the same paths).

One condition: a chunk's head chains cover the 5-tuples first seen within one idle timeout of its
first packet, which holds when the inputs follow each other in time (a ring buffer, an archive).
Inputs that overlap in time (two interfaces captured at once) are read again by one process, in
order, and the result says so (``Collected.reread``).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from auditor.capture import CaptureSet
from auditor.capture.info import InputInfo, ReadStats
from auditor.conversations import ConversationBuilder, ConversationResult
from auditor.errors import AuditorError
from auditor.names import NameEvidence
from auditor.parallel import paused_gc, tune_gc

Progress = Callable[[int, int, int], None]
"""(bytes done, bytes in all, frames read)."""


@dataclass(frozen=True)
class Chunk:
    """A unit of work: one input file (its position among the inputs: ``index``)."""

    path: str
    index: int
    size: int = 0


@dataclass
class Part:
    """What reading one chunk gave: mergeable with the parts before and after it."""

    chunk: Chunk
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


def plan(paths: Sequence[str]) -> list[Chunk]:
    """The chunks of these inputs, in order: one per input."""
    return [Chunk(p, i, os.path.getsize(p)) for i, p in enumerate(paths)]


def read_chunk(chunk: Chunk, server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
               first: bool) -> Part:
    """Read one chunk (``first``: it starts the run, so nothing can continue into it)."""
    tune_gc()
    cs = CaptureSet([chunk.path], engine=engine, verify_checksums=verify, index_base=chunk.index)
    builder = ConversationBuilder(server_ports=server_ports, chunk=not first)
    names = NameEvidence()
    feed, observe = builder.feed, names.observe
    cs.lane = builder.lane()
    with paused_gc():
        for rec in cs:
            feed(rec)
            if rec.payload:
                observe(rec)
    return Part(chunk, builder.end_chunk(), names, cs.stats, cs.inputs)


def merge(parts: Iterator[Part]) -> tuple[Collected, bool]:
    """Merge parts given in input order. Returns the result and whether it is exact: False when a
    part began before the parts ahead of it ended (inputs overlapping in time)."""
    acc: Part | None = None
    exact = True
    inputs: list[InputInfo] = []
    for part in parts:
        inputs.extend(part.inputs)
        if acc is None:
            acc = part
            continue
        if part.conv.first_ts < acc.conv.last_ts:
            exact = False
        acc.conv.absorb(part.conv)
        acc.names.merge(part.names)
        acc.stats.merge(part.stats)
    assert acc is not None
    return Collected(acc.conv.finish(), acc.names, inputs, acc.stats), exact


def _in_order(done: dict[int, Part], n: int, ready: Callable[[], None]) -> Iterator[Part]:
    """Parts in input order as they come in (``ready`` waits for the next one to finish)."""
    for i in range(n):
        while i not in done:
            ready()
        yield done.pop(i)


def run_local(chunks: list[Chunk], server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
              jobs: int, progress: Progress | None = None) -> tuple[Collected, bool]:
    """Read the chunks on ``jobs`` local processes and merge them in order as they come in."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(chunks)), mp_context=mp.get_context(method))
    total = sum(c.size for c in chunks)
    try:
        futures: dict[Future[Part], int] = {
            pool.submit(read_chunk, c, server_ports, engine, verify, c.index == chunks[0].index): i
            for i, c in enumerate(chunks)}
        pending = set(futures)
        done: dict[int, Part] = {}
        finished = [0, 0]

        def ready() -> None:
            nonlocal pending
            complete, pending = wait(pending, return_when=FIRST_EXCEPTION)
            failed = sorted(futures[f] for f in complete if f.exception() is not None)
            if failed:
                first = next(f for f in complete if futures[f] == failed[0])
                raise first.exception()  # type: ignore[misc]
            for f in complete:
                part = f.result()
                done[futures[f]] = part
                finished[0] += part.chunk.size
                finished[1] += part.stats.frames
                if progress is not None:
                    progress(finished[0], total, finished[1])

        return merge(_in_order(done, len(chunks), ready))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_dask(chunks: list[Chunk], server_ports: frozenset[tuple[str, int]], engine: str, verify: bool,
             address: str, progress: Progress | None = None) -> tuple[Collected, bool]:
    """Submit the chunks to the Dask distributed scheduler at ``address`` and merge the parts here,
    in order, as they come back. The workers read the same paths (a shared filesystem)."""
    try:
        distributed: Any = importlib.import_module("distributed")
    except ImportError as e:  # the optional extra
        raise AuditorError("--scheduler needs Dask's distributed scheduler: pip install 'pcap-audit[dask]'") from e
    total = sum(c.size for c in chunks)
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
                finished[0] += part.chunk.size
                finished[1] += part.stats.frames
                if progress is not None:
                    progress(finished[0], total, finished[1])
                yield part

        return merge(parts())
