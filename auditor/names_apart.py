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
import struct
import sys
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any, Final

from auditor.capture import CaptureSet, native
from auditor.capture.decode import Decoder
from auditor.capture.decompress import start_child, stop_child
from auditor.capture.info import ReadStats
from auditor.capture.pcapfile import PCAPNG_BYTE_ORDERS, PCAPNG_MAGIC, pcap_header
from auditor.names import MAX_NAMES, NameEvidence
from auditor.parallel import cpus, paused_gc, tune_gc

if TYPE_CHECKING:
    from auditor.conversations import ConversationResult

APART_MIN: Final = 64 << 20
"""Inputs of fewer bytes in all are read by one process. On the shared realistic traffic the second
process gains nothing at 62 MB (150,000 packets), ~0.1 s at 124 MB and ~0.5 s at 412 MB (1M
packets; bench/README.md)."""


SAMPLE_BYTES: Final = 1 << 20
"""The bytes of the largest input whose frames ``worth`` looks at (a few thousand frames, ~5 ms)."""
APART_SHARE: Final = 0.02
"""The share of a sample's records the name table must read (DNS answers, TLS ClientHellos, HTTP
requests) for a second process to pay. It costs the reader ~0.1 us a packet while it runs (the
second core is shared with the inputs' hashing), and saves ~5 us a record the table reads: on the
shared realistic capture (1 in 10 records) it saves ~0.5 s of 4; on the 10M-packet one of long
conversations (none) it cost ~1 s of 8 (bench/README.md)."""


def worth(capture: CaptureSet) -> bool:
    """Whether the names of these inputs are worth a second process: two cores or more, regular
    uncompressed pcap or pcapng files read whole by the fast engine, APART_MIN bytes or more, on a
    platform that forks, and at least APART_SHARE of the records of the largest input's first
    SAMPLE_BYTES for the name table."""
    if not (capture.engine == "fast" and not capture.streams and not capture.foreign and not capture.compressed
            and all(c.whole for c in capture.chunks) and capture.total_bytes >= APART_MIN
            and sys.platform.startswith("linux") and cpus() > 1):
        return False
    try:
        largest = max(capture.paths, key=os.path.getsize)
    except OSError:  # gone since it was opened: the read says so
        return False
    return name_share(largest) >= APART_SHARE


def name_share(path: str) -> float:
    """The share of the records of the frames in the first SAMPLE_BYTES of this pcap or pcapng file
    that the name table reads (0.0 when none can be read: the reading says why)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SAMPLE_BYTES)
    except OSError:
        return 0.0
    dec = Decoder(ReadStats(), 0, verify_checksums=False)
    names = NameEvidence()
    records = 0
    try:
        for frame, (off, caplen, lt) in enumerate(_frames(head), 1):
            rec = dec.decode(head, off, caplen, 0.0, frame, lt)
            if rec is not None:
                records += 1
                if rec.payload:
                    names.observe(rec)
    except Exception:  # a sample that cannot be read is no reason to stop: the read says why
        return 0.0
    finally:
        dec.close()
    s = names.stats
    return (s["dns_responses"] + s["sni"] + s["http_host"] + s["parse_errors"]) / records if records else 0.0


def _frames(buf: bytes) -> Iterator[tuple[int, int, int]]:
    """(offset, captured length, link type) of the whole frames in the first bytes of a pcap or pcapng
    file, as far as they read plainly (a sample: anything unusual ends it)."""
    pcap = pcap_header(buf)
    if pcap is not None:
        off = 24
        while off + pcap.hl <= len(buf):
            caplen = pcap.record.unpack_from(buf, off)[2]
            if off + pcap.hl + caplen > len(buf):
                return
            yield off + pcap.hl, caplen, pcap.lt
            off += pcap.hl + caplen
        return
    order = PCAPNG_BYTE_ORDERS.get(buf[8:12])
    if buf[:4] != PCAPNG_MAGIC or order is None:
        return
    links: list[int] = []
    off = 0
    while off + 12 <= len(buf):
        kind, size = struct.unpack_from(order + "II", buf, off)
        if size < 12 or size % 4 or off + size > len(buf):
            return
        if kind == 1 and size >= 20:  # an Interface Description Block
            links.append(struct.unpack_from(order + "H", buf, off + 8)[0])
        elif kind == 6 and size >= 32:  # an Enhanced Packet Block
            ifid, caplen = struct.unpack_from(order + "I12xI", buf, off + 8)
            if ifid >= len(links) or 28 + caplen > size:
                return
            yield off + 28, caplen, links[ifid]
        elif kind == 0x0A0D0D0A and off:  # a second section: its interfaces are new
            return
        off += size


def read_names(paths: list[str]) -> tuple[NameEvidence, tuple[int, ...]]:
    """The name evidence of these inputs (regular files the fast engine reads), read alone, and the
    frames read of each: every packet the kernel offers a lane is taken and dropped, every record it
    makes goes to the name table. Checksums are not verified (the name table reads a record whatever
    its checksum), nor the inputs hashed (their reader does both)."""
    names = NameEvidence(max_names=MAX_NAMES)
    cs = CaptureSet(paths, engine="fast", verify_checksums=False)
    cs.digest = False
    cs.lane = native.KERNEL.of("auditor.conversations.lane").NamesLane(names.lane_table())
    observe = names.observer()
    with paused_gc(keep=True):  # the names live on (as collect's do)
        for rec in cs:  # the kernel's walks hand theirs to the lane: any others are read here
            if rec.payload:
                observe(rec)
    return names, tuple(info.packets for info in cs.inputs)


def addresses(conv: ConversationResult) -> set[str]:
    """The addresses the conversations name: their flows' initiators and responders."""
    out: set[str] = set()
    for key in conv.flows:
        out.add(key.initiator)
        out.add(key.responder)
    return out


class NamesApart:
    """The second process, started when this is made (before this process reads): ``result`` once the
    conversations are read, ``stop`` always."""

    def __init__(self, capture: CaptureSet) -> None:
        self.paths = list(capture.paths)
        ask_r, ask_w = os.pipe()
        self._proc: Any = None
        try:
            self._proc, self._answers = start_child(_child, "pcap-audit-names", self.paths, ask_r, ask_w)
        except BaseException:
            os.close(ask_w)
            raise
        finally:
            os.close(ask_r)
        self._ask = ask_w

    def result(self, wanted: Collection[str], frames: tuple[int, ...]) -> NameEvidence:
        """The evidence about the addresses ``wanted``, with every counter: the second process's
        answer, or this process's own reading of the names where it failed or read other frames than
        ``frames`` (each input's, as this process read them: a file that grew meanwhile)."""
        got: Any = None
        with contextlib.suppress(OSError, EOFError, pickle.UnpicklingError, ValueError):
            with os.fdopen(self._ask, "wb", closefd=False) as ask:
                pickle.dump(wanted, ask, protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(self._answers, "rb", closefd=False) as answers:
                got = pickle.load(answers)
        if isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], NameEvidence) and got[1] == frames:
            return got[0]
        return read_names(self.paths)[0].only(wanted)

    def stop(self) -> None:
        """End the second process (done or not), reap it and close the pipes."""
        if self._proc is not None:
            stop_child(self._proc)
            self._proc = None
            for fd in (self._ask, self._answers):
                with contextlib.suppress(OSError):
                    os.close(fd)


def _child(paths: list[str], ask_r: int, ask_w: int, wfd: int, rfd: int) -> None:
    """The second process: read the names, wait for the addresses wanted, answer with their evidence
    and the frames read of each input (or with None: it failed; the reading process then reads the
    names itself)."""
    import signal

    os.close(rfd)
    os.close(ask_w)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reading process's to handle
    answer: tuple[NameEvidence, tuple[int, ...]] | None = None
    try:
        tune_gc()
        names, frames = read_names(paths)
        with os.fdopen(ask_r, "rb", closefd=False) as ask:
            wanted = pickle.load(ask)
        answer = names.only(wanted), frames
    except BaseException:  # any failure is answered with None: the reader reads the names itself
        answer = None
    with contextlib.suppress(OSError), os.fdopen(wfd, "wb", closefd=False) as out:
        pickle.dump(answer, out, protocol=pickle.HIGHEST_PROTOCOL)
