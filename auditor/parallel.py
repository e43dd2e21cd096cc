"""Several processes over one capture: every worker reads every packet, and keeps the conversations
of its own share of address pairs (a symmetric hash of the two addresses). A conversation, its ICMP
errors, its TFTP transfer and its names all stay with one worker, so the merged result is the one a
single process would give; only reading and decoding are repeated, the conversation work is split.

Workers return mergeable partial results (ConversationResult, NameEvidence); worker 0 also returns
what it learned of the inputs (hashes, link types, malformed packets), which every worker sees alike.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from auditor.capture import CaptureSet, InputInfo, ReadStats
from auditor.conversations import ConversationResult
from auditor.names import NameEvidence

PARALLEL_MIN_BYTES = 64 << 20
"""Below this, starting processes costs more than it saves."""

def tune_gc() -> None:
    """The audit allocates millions of short-lived objects and keeps a few large tables: collecting
    the young generation less often measured 30-45 % faster (bench/README.md)."""
    gc.set_threshold(200_000, 50, 1000)


def auto_jobs(capture: CaptureSet, engine: str) -> int:
    """Several workers for a large capture read by the fast engine from files (not stdin)."""
    if engine != "fast" or "-" in capture.paths or capture.total_bytes < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


@dataclass
class _Part:
    conv: ConversationResult
    names: NameEvidence
    stats: ReadStats | None
    inputs: list[InputInfo] | None


_COUNTERS: Any = None


def _init(counters: Any) -> None:
    global _COUNTERS
    _COUNTERS = counters
    tune_gc()


def _work(paths: list[str], engine: str, verify: bool, shard: int, jobs: int,
          server_ports: frozenset[tuple[str, int]]) -> _Part:
    counters = _COUNTERS

    def progress(done: int, total: int) -> None:
        if counters is not None:
            counters[0] = done
            counters[1] = cs.frames_read

    cs = CaptureSet(paths, engine=engine, verify_checksums=verify, progress=progress if shard == 0 else None,
                    shard=(shard, jobs))
    from auditor.audit import collect  # here: audit imports this module

    conv, names = collect(cs, server_ports, shard=(shard, jobs))
    if shard == 0:
        return _Part(conv, names, cs.stats, cs.inputs)
    return _Part(conv, names, None, None)


def collect_parallel(capture: CaptureSet, server_ports: frozenset[tuple[str, int]], jobs: int,
                     progress: Callable[[int, int, int], None] | None = None
                     ) -> tuple[ConversationResult, NameEvidence]:
    """Like audit.collect over `capture`, on `jobs` processes. Fills capture.inputs and capture.stats."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    ctx = mp.get_context(method)
    counters = ctx.Array("q", 2, lock=False)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init,
                             initargs=(counters,)) as pool:
        futures: list[Future[_Part]] = [
            pool.submit(_work, capture.paths, capture.engine, capture.verify_checksums, k, jobs, server_ports)
            for k in range(jobs)
        ]
        while True:
            done, pending = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
            if progress is not None:
                progress(int(counters[0]), capture.total_bytes, int(counters[1]))
            if not pending or any(f.exception() is not None for f in done):
                break
        for f in futures:
            if f.done() and f.exception() is not None:
                for other in futures:
                    other.cancel()
                raise f.exception()  # type: ignore[misc]
        parts = [f.result() for f in futures]
    conv, names = parts[0].conv, parts[0].names
    for part in parts[1:]:
        conv.merge(part.conv)
        names.merge(part.names)
    assert parts[0].stats is not None and parts[0].inputs is not None
    capture.stats = parts[0].stats
    capture.inputs = parts[0].inputs
    # Worker 0 built records only for its share of the common packets: every record was fed to
    # exactly one worker, so the fed count is the run's record count.
    capture.stats.records = conv.stats.packets
    return conv, names
