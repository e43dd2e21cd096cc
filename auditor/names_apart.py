"""Name evidence read by a second process beside the one that reads the conversations.

On two cores, an automatic one-process read of regular, uncompressed capture files
(audit.read_captures) forks a process that walks the same files for name evidence alone (DNS
answers, TLS SNI, HTTP Host: auditor/names.py), with a lane that takes every packet the kernel
offers and keeps nothing (conversations/lane.py, ``NamesLane``), while this process reads the
conversations without it (engine.read_records with no names): about a sixth of the reading's work
moves to the second core, which otherwise only hashes the inputs. When its conversations are read,
this process sends the addresses they name; the other answers with the evidence about those
addresses and every counter (``NameEvidence.only``), which is all an audit asks of the names (the
hosts' names, the counters), in a few kilobytes where the whole table would take 0.2 s to unpickle.

The same evidence as one process reading both (tests/test_names_apart.py): the name table reads only
the records a kernel makes whatever lane it has (a lane is offered only packets that carry nothing
the table reads), in the same order. If the second process fails or ends without an answer, this one
reads the names itself (``read_names``): the same result, later.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Final

from auditor.names import MAX_NAMES, NameEvidence

if TYPE_CHECKING:
    from auditor.capture import CaptureSet
    from auditor.conversations import ConversationResult

APART_MIN: Final = 64 << 20
"""Inputs of fewer bytes in all are read by one process. On the shared realistic traffic the second
process gains nothing at 62 MB (150,000 packets), ~0.1 s at 124 MB and ~0.5 s at 412 MB (1M
packets; bench/README.md)."""


def worth(capture: CaptureSet) -> bool:
    """Whether the names of these inputs are worth a second process: two cores or more, regular
    uncompressed pcap or pcapng files read whole by the fast engine, APART_MIN bytes or more, on a
    platform that forks."""
    from auditor.parallel import cpus

    return (capture.engine == "fast" and not capture.streams and not capture.foreign and not capture.compressed
            and all(c.whole for c in capture.chunks) and capture.total_bytes >= APART_MIN
            and sys.platform.startswith("linux") and cpus() > 1)


def read_names(paths: list[str], verify_checksums: bool) -> NameEvidence:
    """The name evidence of these inputs (regular files the fast engine reads), read alone: every
    packet the kernel offers a lane is taken and dropped, every record it makes goes to the name
    table; the inputs are not hashed (their reader hashes them)."""
    from auditor.capture import CaptureSet, native
    from auditor.parallel import paused_gc

    names = NameEvidence(max_names=MAX_NAMES)
    cs = CaptureSet(paths, engine="fast", verify_checksums=verify_checksums)
    cs.digest = False
    cs.lane = native.KERNEL.of("auditor.conversations.lane").NamesLane(names.lane_table())
    observe = names.observer()
    with paused_gc():
        for rec in cs:  # the kernel's walks hand theirs to the lane: any others are read here
            if rec.payload:
                observe(rec)
    return names


def addresses(conv: ConversationResult) -> set[str]:
    """The addresses the conversations name: their flows' initiators and responders."""
    out: set[str] = set()
    for key in conv.flows:
        out.add(key.initiator)
        out.add(key.responder)
    return out


class NamesApart:
    """The second process: ``start`` it before this one reads, ``result`` after, ``stop`` always."""

    def __init__(self, capture: CaptureSet) -> None:
        from auditor.capture.decompress import start_child

        self.paths = list(capture.paths)
        self.verify = capture.verify_checksums
        ask_r, ask_w = os.pipe()
        try:
            self._proc: Any = None
            self._proc, self._answers = start_child(_child, "pcap-audit-names", self.paths, self.verify, ask_r, ask_w)
        finally:
            os.close(ask_r)
        self._ask = ask_w

    def result(self, wanted: Collection[str]) -> NameEvidence:
        """The evidence about the addresses ``wanted``, with every counter: the second process's
        answer, or (it failed) this process's own reading of the names."""
        got: Any = None
        with contextlib.suppress(OSError, EOFError, pickle.UnpicklingError, ValueError):
            with os.fdopen(self._ask, "wb", closefd=False) as ask:
                pickle.dump(frozenset(wanted), ask, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(self._answers, "rb", closefd=False) as answers:
                got = pickle.load(answers)
        if isinstance(got, NameEvidence):
            return got
        return read_names(self.paths, self.verify).only(wanted)

    def stop(self) -> None:
        """End the second process (done or not), reap it and close the pipes."""
        from auditor.capture.decompress import stop_child

        if self._proc is not None:
            stop_child(self._proc)
            self._proc = None
            for fd in (self._ask, self._answers):
                with contextlib.suppress(OSError):
                    os.close(fd)


def _child(paths: list[str], verify: bool, ask_r: int, ask_w: int, wfd: int, rfd: int) -> None:
    """The second process: read the names, wait for the addresses wanted, answer with their evidence
    (or with None: it failed; the reading process then reads the names itself)."""
    import signal

    os.close(rfd)
    os.close(ask_w)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reading process's to handle
    answer: NameEvidence | None = None
    try:
        from auditor.parallel import tune_gc

        tune_gc()
        names = read_names(paths, verify)
        with os.fdopen(ask_r, "rb", closefd=False) as ask:
            wanted = pickle.load(ask)
        answer = names.only(wanted)
    except BaseException:  # any failure is answered with None: the reader reads the names itself
        answer = None
    with contextlib.suppress(OSError), os.fdopen(wfd, "wb", closefd=False) as out:
        pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)
