"""Several processes over one capture.

Large uncompressed Ethernet pcaps are split by byte ranges (capture/split.py): one worker walks the
later part while this process walks the start, and large compressed files are decompressed by a
second process (capture/source.py, Inflater), with the results of one process. Otherwise
every worker reads every packet, and keeps the conversations of its own share of address pairs
(a symmetric hash of the two addresses). A conversation, its ICMP
errors, its TFTP transfer and its names all stay with one worker, so the merged result is the one a
single process would give; only reading and decoding are repeated, the conversation work is split.
That holds while no bound is reached: each share has 1/n of every bound of the conversation core
and of the names, so a share that reaches none (ConversationResult.overflowed, names dropped) is
part of a result where one process reaches none either. When one does (a flood, a scan), the
inputs are read again by one process.

The calling process reads share 0 itself and keeps what it learned of the inputs (hashes, link types,
malformed packets), which every worker sees alike; forked workers return mergeable partial results
(ConversationResult, NameEvidence).
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

from auditor.capture import CaptureSet
from auditor.capture import split as splitting
from auditor.conversations import ConversationResult
from auditor.names import NameEvidence


def tune_gc() -> None:
    """The audit allocates millions of short-lived objects and keeps a few large tables: collecting
    the young generation less often measured 30-45 % faster (bench/README.md)."""
    gc.set_threshold(200_000, 50, 1000)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside: reading a capture creates no reference cycles (its
    objects are freed by their reference counts: tests/test_parallel.py checks that a collection
    afterwards finds nothing), so the collector's passes over the young objects are pure cost:
    ~11 % of collect on the 5M bench capture (bench/README.md), the same peak memory."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


DENSE_MIN_BYTES = 64 << 20
"""Smaller captures of short conversations are read by one process (``dense``)."""
FLOOD_SYNS = 0.4
"""A capture whose first frames are this share of initial SYNs or more is taken for a flood or a
scan: its conversations would reach the core's bounds, and a sharded read would be read again."""


def dense(capture: CaptureSet) -> bool:
    """Whether the inputs are large regular pcap/pcapng files of short conversations (split.DENSE of
    their frames or more need the slow path), which the hash-sharded mode reads faster than one
    process: reading and decoding every packet twice costs less there than the conversation work it
    splits (bench/README.md). Not for what looks like a flood (FLOOD_SYNS)."""
    if capture.foreign or capture.streams or capture.total_bytes < DENSE_MIN_BYTES:
        return False
    share = splitting.sample(max(capture.paths, key=os.path.getsize))
    return share.slow >= splitting.DENSE and share.syn < FLOOD_SYNS


def auto_jobs(capture: CaptureSet, engine: str) -> int:
    """Two processes when there are two cores and the second has work that keeps the results
    those of one process: walking a byte range of large uncompressed Ethernet pcaps
    (capture/split.py), decompressing a large compressed file (source.Inflater), or, for large
    captures of short conversations (``dense``), half of the conversations in the hash-sharded
    mode below. Otherwise one."""
    if engine != "fast" or cpus() < 2:
        return 1
    return 2 if capture.split_plan() is not None or capture.inflatable() or dense(capture) else 1


@dataclass
class _Part:
    conv: ConversationResult
    names: NameEvidence


def _work(paths: list[str], engine: str, verify: bool, shard: int, jobs: int,
          server_ports: frozenset[tuple[str, int]]) -> _Part:
    """One forked worker: shard k of n of every input (k > 0; the parent reads share 0 and keeps
    what it learns of the inputs, which every worker sees alike)."""
    from auditor.audit import collect  # here: audit imports this module

    cs = CaptureSet(paths, engine=engine, verify_checksums=verify, shard=(shard, jobs))
    conv, names = collect(cs, server_ports, shard=(shard, jobs))
    return _Part(conv, names)


def collect_parallel(capture: CaptureSet, server_ports: frozenset[tuple[str, int]], jobs: int,
                     progress: Callable[[int, int, int], None] | None = None
                     ) -> tuple[ConversationResult, NameEvidence]:
    """Like audit.collect over `capture`, on `jobs` processes: this one reads share 0 itself (one
    process fewer to start, one partial result fewer to pickle), jobs - 1 forked workers the rest.
    Fills capture.inputs and capture.stats."""
    from auditor.audit import collect  # here: audit imports this module

    if capture.split_plan() is not None or capture.inflatable():
        # Inputs are split by byte ranges: a worker walks the later part while this process walks
        # the first, and this process applies the rest in order; compressed files are decompressed
        # by a second process. Either way the result is exactly one process's. Only one worker: this
        # process's replay (or walk) is then the bound, more do not help.
        capture.split = True
        capture.inflate = True
        return collect(capture, server_ports)
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    ctx = mp.get_context(method)
    pool = ProcessPoolExecutor(max_workers=jobs - 1, mp_context=ctx, initializer=tune_gc)
    try:
        futures: list[Future[_Part]] = [
            pool.submit(_work, capture.paths, capture.engine, capture.verify_checksums, k, jobs, server_ports)
            for k in range(1, jobs)
        ]
        tick = None
        if progress is not None:
            report = progress

            def tick(done: int, total: int) -> None:
                report(done, total, own.frames_read)

        own = CaptureSet(capture.paths, engine=capture.engine, verify_checksums=capture.verify_checksums,
                         shard=(0, jobs), progress=tick)
        conv, names = collect(own, server_ports, shard=(0, jobs))
        wait(futures, return_when=FIRST_EXCEPTION)
        for f in futures:
            if f.done() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        parts = [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if any(p.conv.overflowed or p.names.stats["names_dropped"] for p in [_Part(conv, names), *parts]):
        # A share reached a bound: its summary is not part of one process's. Read again, as one,
        # without the shares' results: they are as large as the bounds allow, and kept alive they
        # would sit under the second read's own tables (bench/bench_hosts.py).
        del parts, futures, conv, names, own

        def tick_again(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total, again.frames_read)

        again = CaptureSet(capture.paths, engine=capture.engine, verify_checksums=capture.verify_checksums,
                           progress=tick_again)
        conv, names = collect(again, server_ports)
        capture.stats, capture.inputs = again.stats, again.inputs
        return conv, names
    for part in parts:
        conv.merge(part.conv)
        names.merge(part.names)
    capture.stats = own.stats
    capture.inputs = own.inputs
    # This process built records only for its share of the common packets: every record was fed to
    # exactly one process, so the fed count is the run's record count.
    capture.stats.records = conv.stats.packets
    return conv, names
