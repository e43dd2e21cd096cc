"""Process-level helpers for a run: garbage collector and C heap settings, the number of usable
cores, and how many processes a run uses when ``-j`` is not given (``auto_jobs``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
from collections.abc import Iterator
from typing import Any

from auditor.capture import CaptureSet


def tune_gc() -> None:
    """The audit allocates millions of short-lived objects and keeps a few large tables: collecting
    the young generation less often measured 30-45 % faster (bench/README.md)."""
    gc.set_threshold(200_000, 50, 1000)


@contextlib.contextmanager
def paused_gc(*, keep: bool = False) -> Iterator[None]:
    """No cyclic garbage collection inside: reading a capture creates no reference cycles (its
    objects are freed by their reference counts: tests/test_parallel.py checks that a collection
    afterwards finds nothing), so the collector's passes over the young objects are pure cost:
    ~11 % of collect on the 5M bench capture (bench/README.md), the same peak memory.

    ``keep``: what was made inside lives on (the conversations and names of audit.collect), so it
    is frozen on the way out (``gc.freeze``): without, the first collection after the pause walks
    every object made inside once more (~0.2 s after reading the shared 1M-packet capture), finding
    nothing. Frozen objects are still freed by their reference counts."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if keep:
            gc.freeze()
        if enabled:
            gc.enable()


_M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter (malloc.h)."""

LARGE_BLOCK = 2 << 20
"""``lean_heap``: C blocks of this many bytes or more get pages of their own (the read-ahead
buffers, 1 MiB, stay in the heap, which reuses their pages)."""


@functools.cache
def _glibc() -> Any:
    """The process's C library when it is glibc (its mallopt and malloc_trim), else None."""
    import ctypes  # only where it is used: a run in one process never loads it

    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # no C library to load by that name (Windows)
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None  # musl, macOS: not glibc's mallopt


def lean_heap() -> None:
    """The C heap of a process that reads a chunk beside others (engine.run_local, ``-j N``): blocks
    of LARGE_BLOCK bytes or more (the tables of the largest dicts and sets) get pages of their own,
    given back when freed. By default glibc raises that threshold to the size of the largest block
    freed so far (up to 32 MiB): an outgrown table of 8-16 MiB, once freed, then leaves its pages in
    the heap, between blocks that outlive it. Reading half of the shared realistic capture peaks
    10-22 MiB lower so, for up to 0.12 s more system time (fresh pages for each new large table;
    bench/README.md). Only where the C library is glibc; elsewhere nothing."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK)


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim), after large frees."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_jobs(capture: CaptureSet, engine: str) -> int:
    """Two when there are two cores and a large compressed input that a second process decompresses
    (capture.decompress.Inflater) while this one reads; otherwise one."""
    if engine != "fast" or cpus() < 2:
        return 1
    return 2 if capture.inflatable() else 1
