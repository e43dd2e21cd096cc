"""The capture engine: files in, PacketRecord out.

    cs = open_captures(["a.pcapng", "b.pcap.gz", "-"], engine="fast", progress=cb)
    for rec in cs: ...            # all inputs in order; frame numbers restart at 1 per input
    cs.inputs, cs.stats           # per-input facts and counters (complete after iteration)

    cs = CaptureSet.from_chunks(ranges.plan(paths, 4)[2:3])   # a byte range of a file (ranges.py)

Only CaptureError escapes, and only for a whole file that cannot be read (missing, unreadable, not a
capture). Inputs that are no regular file (standard input, pipes: ``streams``) are read once, by this
process, when their turn comes. Everything wrong inside a capture is counted in ReadStats or noted in
InputInfo.warnings.
Two engines share this interface: "fast" (our own pcap/pcapng walker and decoder, the default) and
"tshark" (tshark -T fields, for cross-checking and for whatever our decoder does not know).

The modules: source.py (bytes: files, stdin, SHA-256) with decompress.py (decompression by magic;
Inflater decompresses in a second process), pcapfile.py (the record walk, pcap and pcapng) and
pcapng.py (pcapng's sections, interfaces and other blocks), kernel.py (the common path: Ethernet/cooked/raw/loopback
IPv4/IPv6 TCP/UDP -> PacketRecord or the fast lane, written once), decode.py (the general decoder:
IP, fragments, transport, ICMP) with link.py (link layers) and tunnels.py, ranges.py (files cut
into byte ranges at record boundaries, read as chunks) with fragments.py (the IP fragments a byte
range's first fragments began before it), tshark.py (the tshark engine), foreign.py (files in other
capture formats: named by Wireshark's captype, read from editcap's pcapng copy or by the tshark
engine; NetScaler traces converted by a second process into a pipe), nstrace.py (NetScaler traces:
converted to pcap without Wireshark) with nstrace_format.py (their signatures and record tables),
info.py (per-input facts and read counters).
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from auditor.capture import nstrace_format
from auditor.capture.decode import Decoder
from auditor.capture.decompress import CHUNK, DECOMPRESS_ERRORS
from auditor.capture.fragments import table_before
from auditor.capture.info import InputInfo, ReadStats
from auditor.capture.kernel import PROGRESS_EVERY
from auditor.capture.pcapfile import PCAP_MAGICS, PCAPNG_MAGIC, walk_pcap
from auditor.capture.pcapng import walk_pcapng
from auditor.capture.ranges import Chunk, ChunkBytes
from auditor.capture.source import Source, sniff
from auditor.errors import CaptureError
from auditor.model import PacketRecord

if TYPE_CHECKING:
    from auditor.capture import foreign
    from auditor.conversations.lane import FastLane

__all__ = ["ENGINES", "CaptureSet", "Chunk", "InputInfo", "ReadStats", "open_captures"]

ENGINES = ("fast", "tshark")
INFLATE_MIN = 16 << 20
"""Compressed files smaller than this are not worth a decompressing process."""
Progress = Callable[[int, int], None]


def _magic_error(path: str, head: bytes, compression: str, *, hint: str = "") -> CaptureError:
    if not head:
        what = "empty file" if compression == "none" else f"empty after {compression} decompression"
        return CaptureError(f"{path}: {what}, not a pcap or pcapng file")
    inside = "" if compression == "none" else f"{compression}-compressed, "
    return CaptureError(f"{path}: not a pcap or pcapng file ({inside}magic 0x{head[:4].hex()}){hint}")


def check_magic(path: str, head: bytes, compression: str) -> None:
    if head[:4] not in PCAP_MAGICS and head[:4] != PCAPNG_MAGIC:
        raise _magic_error(path, head, compression)


def _streamed(path: str) -> bool:
    """Whether ``path`` is read as a stream: standard input, or no regular file (a pipe, a device)."""
    if path == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise CaptureError(f"{path}: cannot open: {e.strerror or e}") from e
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _once_each(paths: Sequence[str]) -> None:
    """Refuse a pipe given twice (also as "-" and /dev/stdin): the second reading would wait for a
    writer that has finished, or read what the first left."""
    seen: dict[tuple[int, int], str] = {}
    for path in paths:
        try:
            st = os.fstat(0) if path == "-" else os.stat(path)
        except OSError:
            continue
        if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)):
            continue
        first = seen.setdefault((st.st_dev, st.st_ino), path)
        if first != path or paths.count(path) > 1:
            raise CaptureError(f"{path}: a pipe can be read only once, and it is given twice"
                               + (f" (as {first})" if first != path else ""))


class CaptureSet:
    """The inputs of one run, read in order as one stream of PacketRecords (iterate once)."""

    def __init__(self, paths: Sequence[str], *, engine: str = "fast", progress: Progress | None = None,
                 verify_checksums: bool = True) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown capture engine {engine!r} (choose from {', '.join(ENGINES)})")
        if list(paths).count("-") > 1:
            raise CaptureError("-: standard input can be given only once")
        self.paths = list(paths)
        self.streams: frozenset[str] = frozenset()
        """Inputs that are no regular file: standard input, a named pipe, ``<(zcat x.pcap.gz)``,
        /dev/stdin from a pipe, a device. Each can be read only once: it is opened when its turn
        comes, looked at through a buffer that the reader continues from (source.Source.head), and
        read by this process alone (always one chunk: ranges.plan)."""
        self.engine = engine
        self.verify_checksums = verify_checksums
        self.chunks = [Chunk(path, index, 0, -1, 0) for index, path in enumerate(self.paths)]
        """What is read, in order: each input whole, or (``from_chunks``) byte ranges of inputs."""
        self.lane: FastLane | None = None
        """The conversation core's fast lane (ConversationBuilder.lane), set by the consumer before
        iterating: common TCP/UDP packets of live connections go to it, not out as records."""
        self.inputs: list[InputInfo] = []
        self.stats = ReadStats()
        self._progress = progress
        self._done_bytes = 0
        self._last_tick = 0.0
        self.total_bytes = 0
        self.frames_read = 0
        """Frames read so far, to within PROGRESS_EVERY (for progress rates)."""
        self.digest = True
        """Hash each input (SHA-256, InputInfo.sha256) as it is read; off for a second reading of
        inputs another reader hashes (auditor/names_apart.py)."""
        self._inflatable = False
        self.inflate = False
        """Decompress each compressed file of at least INFLATE_MIN bytes in a second process
        (decompress.Inflater). Set before iterating."""
        self.foreign: dict[str, str] = {}
        """Inputs in another format (capture/foreign.py): path -> captype's name of the format. They
        are read as nstrace.py converts them (NetScaler traces), from editcap's pcapng copy, or by
        the tshark engine."""
        self.compressed: set[str] = set()
        """Regular files stored compressed (decompressed as they are read)."""
        self.streams = frozenset(p for p in self.paths if _streamed(p))
        _once_each([p for p in self.paths if p in self.streams])
        # Refuse a bad file before an hour of reading the good ones before it. (Not a stream: it
        # cannot be read twice, and its writer may wait for the inputs before it to be read.)
        for path in self.paths:
            if path in self.streams:
                continue
            head, compression = sniff(path, nstrace_format.HEAD)
            if head[:4] not in PCAP_MAGICS and head[:4] != PCAPNG_MAGIC:
                from auditor.capture import foreign  # other formats only: imported when one comes (~0.01 s)

                fmt = None
                if head:
                    fmt = nstrace_format.identify(head) or foreign.identify(path)
                if fmt is None:
                    raise _magic_error(path, head, compression, hint=foreign.hint(path) if head else "")
                self.foreign[path] = fmt
            size = os.path.getsize(path)
            self.total_bytes += size
            if compression != "none":
                self.compressed.add(path)
                if size >= INFLATE_MIN and path not in self.foreign:
                    self._inflatable = True

    @classmethod
    def from_chunks(cls, chunks: Sequence[Chunk], *, engine: str = "fast", progress: Progress | None = None,
                    verify_checksums: bool = True) -> CaptureSet:
        """A set that reads these chunks (capture/ranges.py), in order: ``inputs`` has one InputInfo
        per chunk (ranges.join makes one per input of them), and each record's ``input_index`` is its
        chunk's. A byte range of an input is read by the fast engine, whatever ``engine`` says."""
        paths = list(dict.fromkeys(c.path for c in chunks))
        cs = cls(paths, engine=engine, progress=progress, verify_checksums=verify_checksums)
        cs.chunks = list(chunks)
        for c in cs.chunks:
            if not c.whole and (c.path in cs.streams or c.path in cs.foreign):
                raise CaptureError(f"{c.path}: a byte range of a stream or of a file in another format "
                                   "cannot be read by itself")
        cs.total_bytes = sum(os.path.getsize(c.path) - c.start if c.end < 0 else c.end - c.start
                             for c in cs.chunks if c.path not in cs.streams)
        return cs

    def inflatable(self) -> bool:
        """Whether an input is a compressed regular file worth a decompressing process."""
        return self._inflatable and self.engine == "fast"

    def __iter__(self) -> Iterator[PacketRecord]:
        for chunk in self.chunks:
            path, index = chunk.path, chunk.input_index
            info = InputInfo(path=path)
            self.inputs.append(info)
            if not chunk.whole:
                yield from self._read_fast(path, index, info, chunk=chunk)
            elif path in self.streams:
                yield from self._read_once(path, index, info)
            elif path in self.foreign and self.engine == "fast":
                yield from self._read_converted(path, index, info)
            elif self.engine == "tshark" or path in self.foreign:
                from auditor.capture.tshark import read_tshark

                yield from read_tshark(path, index, info, self.stats, self._report,
                                       foreign=self.foreign.get(path))
            else:
                yield from self._read_fast(path, index, info)

    def _report(self, nread: int, final: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if final or now - self._last_tick >= 0.1:
            self._last_tick = now
            self._progress(self._done_bytes + nread, self.total_bytes)

    def _read_once(self, path: str, index: int, info: InputInfo) -> Iterator[PacketRecord]:
        """An input that can be read once (``streams``): opened now, named by its first capture
        bytes (Source.head: the reader continues from them), read by this process from there on,
        hashed as it is read. A pcap or pcapng stream only: a NetScaler trace is converted by
        seeking in it (nstrace.to_pcap), and other formats are named and converted by Wireshark's
        tools from a file."""
        src = Source(path)
        try:
            try:
                head = src.head(4)
                if head[:4] not in PCAP_MAGICS and head[:4] != PCAPNG_MAGIC:
                    head = src.head(nstrace_format.HEAD)
            except DECOMPRESS_ERRORS as e:
                raise CaptureError(f"{path}: {src.compression} data cannot be decompressed: {e}") from e
            except OSError as e:
                raise CaptureError(f"{path}: cannot read: {e.strerror or e}") from e
            if head[:4] not in PCAP_MAGICS and head[:4] != PCAPNG_MAGIC:
                fmt = nstrace_format.identify(head)
                if fmt is not None:
                    from auditor.capture import foreign

                    raise CaptureError(f"{path}: cannot read a {foreign.describe(fmt)} from a pipe (it is "
                                       "converted by seeking in it): give the trace as a file")
                hint = "; from a pipe only pcap and pcapng are read: give other formats as a file" if head else ""
                raise _magic_error(path, head, src.compression, hint=hint)
        except BaseException:
            src.close_quietly()
            raise
        if self.engine == "tshark":
            from auditor.capture.tshark import read_tshark

            yield from read_tshark(path, index, info, self.stats, self._report, src=src)
        else:
            yield from self._read_fast(path, index, info, src=src)

    def _read_converted(self, path: str, index: int, info: InputInfo) -> Iterator[PacketRecord]:
        """An input in another capture format (foreign.py): a NetScaler trace as nstrace.py converts
        it in a second process (``foreign.stream_nstrace``), anything else from editcap's pcapng copy
        of it; read by the fast reader (which hashes neither: the stored file is hashed as it is
        converted) and described as the original. The tshark engine reads it when it cannot be
        converted (foreign.py says when)."""
        from auditor.capture import foreign

        fmt = self.foreign[path]
        if fmt in nstrace_format.SIGNATURES:
            stream = foreign.stream_nstrace(path)
            if stream is not None:
                yield from self._read_stream(path, stream, index, info, fmt)
                return
        else:
            copied = foreign.convert(path)
            if copied is not None:
                try:
                    yield from self._read_fast(copied.copy, index, info, digest=False)
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(copied.copy)
                self._describe(path, info, fmt, copied)
                return
        from auditor.capture.tshark import read_tshark

        yield from read_tshark(path, index, info, self.stats, self._report, foreign=fmt)

    def _read_stream(self, path: str, stream: foreign.NstraceStream, index: int, info: InputInfo,
                     fmt: str) -> Iterator[PacketRecord]:
        try:
            try:
                yield from self._read_fast(stream.path, index, info, digest=False)
            except CaptureError:
                stream.result()  # the converter's own error, if it had one (nothing came through)
                raise
            converted = stream.result()
        finally:
            stream.close()
        self._done_bytes += os.path.getsize(path)
        self._describe(path, info, fmt, converted)

    @staticmethod
    def _describe(path: str, info: InputInfo, fmt: str, converted: foreign.Copy) -> None:
        from auditor.capture import foreign

        info.sha256, info.size = converted.sha256, os.path.getsize(path)
        info.format, info.compression = fmt, converted.compression
        info.warnings[:0] = [f"{foreign.describe(fmt)} capture: {converted.how}, frame for frame",
                             *converted.warnings]

    def _read_fast(self, path: str, index: int, info: InputInfo, *, digest: bool = True,
                   src: Source | None = None, chunk: Chunk | None = None) -> Iterator[PacketRecord]:
        """``src``: the input already opened (``_read_once``); ``chunk``: a byte range of it."""
        data: Source | ChunkBytes
        if chunk is not None:
            data = ChunkBytes(chunk)
            info.first_frame_unknown = chunk.start > 0
        else:
            if src is None:
                src = Source(path, digest=digest and self.digest)
            data = src
            if self.inflate and src.size >= INFLATE_MIN:
                src.inflate_apart()
        info.compression = data.compression
        complete = False
        dec: Decoder | None = None
        try:
            try:
                first = data.read(CHUNK)
            except DECOMPRESS_ERRORS as e:
                raise CaptureError(f"{path}: {data.compression} data cannot be decompressed: {e}") from e
            check_magic(path, first, data.compression)
            dec = Decoder(self.stats, index, verify_checksums=self.verify_checksums)
            dec.lane = self.lane
            if chunk is not None and chunk.start > 0:
                dec.behind = functools.partial(table_before, chunk)

            def tick() -> None:
                # The walkers tick every PROGRESS_EVERY frames: a running count for rates, with no
                # per-packet cost (stats.frames is settled when the input ends).
                self.frames_read += PROGRESS_EVERY
                self._report(data.nread)

            if isinstance(data, ChunkBytes):
                bounded = data if chunk is not None and chunk.end >= 0 else None
                if first[:4] == PCAPNG_MAGIC:
                    yield from walk_pcapng(data, first, info, dec, tick, bounded=bounded, base=data.base,
                                           records_at=data.records_at)
                else:
                    yield from walk_pcap(data, first, info, dec, tick, bounded=bounded, base=data.base)
            elif first[:4] == PCAPNG_MAGIC:
                yield from walk_pcapng(data, first, info, dec, tick)
            else:
                yield from walk_pcap(data, first, info, dec, tick)
            complete = True
        finally:
            if dec is not None:
                dec.close()
            if complete:
                info.sha256 = data.finish()
                if isinstance(data, ChunkBytes):
                    info.size = os.path.getsize(path)
                    self._done_bytes += data.nread
                else:
                    info.size = data.raw.stored if data.once else data.size
                    self._done_bytes += data.size
                self._report(0, final=True)
            else:
                data.close_quietly()


def open_captures(paths: Sequence[str], *, engine: str = "fast", progress: Progress | None = None,
                  verify_checksums: bool = True) -> CaptureSet:
    """Open the inputs (checking each file's magic now) for one pass of reading."""
    return CaptureSet(paths, engine=engine, progress=progress, verify_checksums=verify_checksums)
