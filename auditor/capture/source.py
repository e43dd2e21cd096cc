"""Byte sources: a file, a pipe or standard input, hashed while streaming, decompressed by magic.

The SHA-256 is of the bytes as stored (the compressed bytes for a compressed file) and is computed
on the single pass that reads the capture; whatever the reader did not consume is drained into the
hash when the source is closed, so a capture cut short by corruption still gets its full hash.

An input that is no regular file (standard input, a named pipe, ``<(zcat x.pcap.gz)``, /dev/stdin,
a device: ``Source.once``) can be read only once, so it is never reopened: its first capture bytes
are looked at through ``Source.head``, which the reads after it return again.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import queue
import stat
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO, Final

from auditor.capture.decompress import (
    CHUNK,
    DECOMPRESS_ERRORS,
    Inflater,
    Readable,
    ZstdFrames,
    compression_of,
    open_stream,
)
from auditor.errors import CaptureError

MAP_WINDOW = 16 << 20
"""Window of the memory map that hashes what the reader skips (HashingReader.hash_rest)."""


READ_AHEAD_SWITCH: Final = 0.0005
"""The interpreter's switch interval, in seconds, while a read-ahead thread runs (Python's default is
0.005). The decoding thread holds the GIL all the time it decodes; the read-ahead thread needs it
back after each read and each hash of a chunk, and waited up to an interval each time: on a capture
of long conversations, which decodes fast, reading and hashing then ran at a third of their speed
and set the pace (bench/README.md)."""
_switching = threading.Lock()
_switch_users = [0, 0.0]
"""How many read-ahead threads run, and the switch interval before the first of them."""


def _switch_faster() -> None:
    with _switching:
        if not _switch_users[0]:
            _switch_users[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_users[1], READ_AHEAD_SWITCH))
        _switch_users[0] += 1


def _switch_back() -> None:
    with _switching:
        _switch_users[0] -= 1
        if not _switch_users[0]:
            sys.setswitchinterval(_switch_users[1])


class HashingReader:
    """Reads the raw stored bytes, feeding them to SHA-256 and a byte counter.

    After the first bytes (``peek_start``, read in line), reading and hashing run ahead on a helper
    thread, at most AHEAD chunks: both release the GIL (hashlib does for blocks over 2 KiB), so the
    SHA-256 of a multi-gigabyte capture no longer costs the decoding thread (in line it took about
    0.6 s per GB, bench/README.md). ``read`` may return fewer bytes than asked, as a raw file may;
    b"" only at the end. An error on the thread is raised by the ``read`` that reaches it.
    """

    AHEAD = 2

    def __init__(self, fh: BinaryIO, *, digest: bool = True) -> None:
        self._fh = fh
        self._digest = digest
        """False: no SHA-256 (a converted copy: the stored file is hashed as it is converted)."""
        self._hash = hashlib.sha256()
        self.nread = 0
        """Bytes handed to the reader so far."""
        self.stored = 0
        """Bytes read from the file so far, the read-ahead thread's included (not those hashed
        through memory maps): the size of a stream once it is drained."""
        self._pending = b""
        self._rest = b""
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(self.AHEAD)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = False
        self._limit: int | None = None
        """``bound``: hand out no bytes past this offset (the end of a chunk: capture/ranges.py)."""
        self._discard = False
        """``hash_rest``: the thread hashes the rest of the file without queueing it."""
        self.inline = False
        """Read in this thread, as much as is there (``Source.head``): no read-ahead yet."""

    def _run(self) -> None:
        _switch_faster()
        try:
            self._read_ahead()
        finally:
            _switch_back()

    def _read_ahead(self) -> None:
        q, stop, fh, h, digest = self._queue, self._stop, self._fh, self._hash, self._digest
        while not stop.is_set():
            item: bytes | BaseException
            try:
                item = fh.read(CHUNK)
                self.stored += len(item)
                if item and digest:
                    h.update(item)
            except Exception as e:  # raised again by the reading thread's read()
                item = e
            if self._discard and isinstance(item, bytes) and item:
                if digest and self._hash_mapped():
                    item = b""  # the end
                else:
                    continue
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="capture-read", daemon=True)
        self._thread.start()

    def _hash_mapped(self) -> bool:
        """Hash the rest of a regular file through memory maps, in windows of MAP_WINDOW bytes:
        no copy into a read buffer (about 0.13 s per GB less). False (nothing done) where the file
        cannot be mapped."""
        fh = self._fh
        try:
            fd = fh.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            pos, size = fh.tell(), os.fstat(fd).st_size
        except (OSError, ValueError, AttributeError):
            return False
        h = self._hash
        # Windows start at multiples of the allocation granularity; the first may start before pos.
        base = pos - pos % mmap.ALLOCATIONGRANULARITY
        while base < size and not self._stop.is_set():
            n = min(MAP_WINDOW, size - base)
            with mmap.mmap(fd, n, offset=base, access=mmap.ACCESS_READ) as mm:
                h.update(memoryview(mm)[pos - base:])
            pos = base = base + n
        return True

    def peek_start(self, n: int) -> bytes:
        """The first n bytes, read in line (before any thread starts); read() returns them again."""
        data = b""
        while len(data) < n:  # a pipe may deliver the first bytes in pieces
            more = self._fh.read(n - len(data))
            if not more:
                break
            data += more
        self._hash.update(data)
        self.nread += len(data)
        self.stored += len(data)
        self._pending = data
        return data

    def _read_raw(self, size: int) -> bytes:
        if self._limit is not None:
            if self.nread >= self._limit:
                return b""
            if size < 0 or size > self._limit - self.nread:
                size = self._limit - self.nread
        if size < 0:
            parts = []
            while chunk := self._read_raw(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if self._rest:
            item, self._rest = self._rest, b""
        else:
            if self._done:
                return b""
            if self.inline and self._thread is None:
                return self._read_inline(size)
            if self._thread is None:
                self._start()
            got = self._queue.get()
            if isinstance(got, BaseException):
                self._done = True
                raise got
            if not got:
                self._done = True
                return b""
            item = got
        if len(item) > size:
            item, self._rest = item[:size], item[size:]
        self.nread += len(item)
        return item

    def _read_inline(self, size: int) -> bytes:
        # read1: what one read of the pipe gives, not a wait until ``size`` bytes have come.
        fh = self._fh
        item = fh.read1(size) if hasattr(fh, "read1") else fh.read(size)
        if not item:
            self._done = True
            return b""
        if self._digest:
            self._hash.update(item)
        self.nread += len(item)
        self.stored += len(item)
        return item

    def read(self, size: int = -1, /) -> bytes:
        if self._pending:
            head = self._pending
            if 0 <= size < len(head):
                self._pending = head[size:]
                return head[:size]
            self._pending = b""
            if size < 0:
                return head + self._read_raw(-1)
            return head + self._read_raw(size - len(head)) if size > len(head) else head
        return self._read_raw(size)

    def bound(self, limit: int) -> None:
        """Hand out the stored bytes up to offset ``limit`` only; then read() returns b"" as at the
        end (a chunk's end: capture/ranges.py)."""
        self._limit = limit

    def unbound(self) -> None:
        """Hand out the bytes past the bound after all (the chunk's end was not where its walk ended)."""
        self._limit = None

    def hash_rest(self) -> None:
        """The reader needs no more bytes: the thread reads and hashes the rest of the file without
        handing it out (what it already queued is dropped), so the hash is complete at ``finish``."""
        self._discard = True
        self._limit = None
        self._rest = b""
        if self._thread is None and not self._done:
            self._start()
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._queue.get_nowait()
                if not isinstance(item, bytes) or not item:  # the end (or an error): keep it
                    self._queue.put(item)
                    break

    def drain(self) -> None:
        """Hash the rest of the stored bytes (the reader stopped early)."""
        while self._read_raw(CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest() if self._digest else ""

    def stop(self) -> None:
        """Stop reading ahead (standard input stays open)."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        # A stop (SIGTERM) can land inside Thread.start(): a thread that never started has nothing
        # to join (join would raise RuntimeError and turn a clean stop into an internal error).
        if self._thread is not None and self._thread.ident is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # still waiting for a pipe's writer: the file is its to keep
                return
        self._fh.close()


class Source:
    """One input: raw bytes -> (optional) decompressor -> capture bytes."""

    def __init__(self, path: str, *, digest: bool = True, stored: bool = False) -> None:
        """``stored``: the stored bytes as they are, never decompressed (a file that Wireshark's tools
        read themselves, which this process only hashes: capture/foreign.py); ``compression`` still
        names what they are compressed with."""
        self.path = path
        self.is_stdin = path == "-"
        self.once = True
        """Not a regular file (standard input, a pipe, a device): its bytes can be read once, in
        order, by this process alone; ``size`` is 0 (``raw.stored`` says how many there were)."""
        self.size = 0
        fh: BinaryIO
        if self.is_stdin:
            fh = sys.stdin.buffer
        else:
            try:
                if os.path.isdir(path):
                    raise CaptureError(f"{path}: is a directory, not a capture file")
                fh = open(path, "rb")  # noqa: SIM115 - closed by Source.close
                st = os.fstat(fh.fileno())
            except OSError as e:
                raise CaptureError(f"{path}: cannot open: {e.strerror or e}") from e
            if stat.S_ISREG(st.st_mode):
                self.once, self.size = False, st.st_size
        self.raw = HashingReader(fh, digest=digest)
        try:
            start = self.raw.peek_start(6)
        except OSError as e:
            raise CaptureError(f"{path}: cannot read: {e.strerror or e}") from e
        self._error: BaseException | None = None
        self._head = b""
        """Capture bytes ``head`` read that ``read`` returns first."""
        self._inflater: Inflater | None = None
        self._frames: ZstdFrames | None = None
        self.compression = compression_of(start)
        self.stream: Readable
        self._read1: Callable[[int], bytes]
        if stored:
            self.stream = self.raw
        else:
            self.stream, self._frames = open_stream(self.raw, self.compression)
        # read1: at most one read from the decompressor, so a failure loses nothing already decoded.
        self._read1 = getattr(self.stream, "read1", self.stream.read)

    def head(self, n: int) -> bytes:
        """The first ``n`` capture bytes (fewer only at the end), which ``read`` then returns again:
        how an input that can be read once is looked at before it is read. The stored bytes are
        read in this thread, only as many as the decompressor asks for (no read-ahead thread yet, so
        a process may still be forked). Call before any ``read``. A decompression error is raised
        when nothing came before it."""
        self.raw.inline = True
        try:
            while len(self._head) < n:
                try:
                    more = self._decompress(n - len(self._head))
                except DECOMPRESS_ERRORS as e:
                    if not self._head:
                        raise
                    self._error = e  # raised by the read after the head
                    break
                if not more:
                    break
                self._head += more
        finally:
            self.raw.inline = False
        return self._head[:n]

    def read(self, size: int) -> bytes:
        """Up to ``size`` capture bytes; b'' at the end. A decompression error is raised once the
        bytes decompressed before it have been returned (callers turn it into a truncation)."""
        if self._head:
            out, self._head = self._head[:size], self._head[size:]
            return out
        if self._inflater is not None:
            return self._inflater.read(size)
        return self._decompress(size)

    def _decompress(self, size: int) -> bytes:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if self.stream is self.raw:  # not compressed, or ``stored``
            return self.stream.read(size)
        # Decompressors lose a partly filled buffer when they fail: read piece by piece so that
        # everything before the damage reaches the reader.
        parts: list[bytes] = []
        got = 0
        while got < size:
            try:
                more = self._read1(min(size - got, 1 << 18))
            except DECOMPRESS_ERRORS as e:
                if not parts:
                    raise
                self._error = e
                break
            if not more:
                if self._frames is not None and self._frames.inside:
                    # zstandard's reader ends a stream cut inside a frame quietly: say so, as gzip does.
                    self._frames = None
                    cut = EOFError("Compressed file ended before the end-of-stream marker was reached")
                    if not parts:
                        raise cut
                    self._error = cut
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    @property
    def nread(self) -> int:
        """Stored bytes read so far (for progress)."""
        return self._inflater.nread if self._inflater is not None else self.raw.nread

    def inflate_apart(self) -> None:
        """Decompress in a second process (``Inflater``) from here on, a regular file only; this
        process's reader then only hashes the stored bytes (through memory maps). Call before the
        first read."""
        if self.compression != "none" and not self.once and self._inflater is None and not self._head:
            self._inflater = Inflater(self.path, self.compression)
            self.raw.hash_rest()

    def hash_rest(self) -> None:
        self.raw.hash_rest()

    def finish(self) -> str:
        """Drain the rest of the stored bytes into the hash, close, return the hex digest."""
        if self._inflater is not None:
            self._inflater.close()
        with contextlib.suppress(OSError):
            self.raw.drain()
        if not self.is_stdin:
            self.raw.close()
        return self.raw.hexdigest()

    def close_quietly(self) -> None:
        if self._inflater is not None:
            self._inflater.close()
        if self.is_stdin:
            self.raw.stop()
        else:
            self.raw.close()


def sniff(path: str, size: int = 4) -> tuple[bytes, str]:
    """First ``size`` capture bytes of a file (after decompression) and its compression, for early
    checks."""
    src = Source(path)
    try:
        try:
            head = src.read(size)
        except DECOMPRESS_ERRORS as e:
            raise CaptureError(f"{path}: {src.compression} data cannot be decompressed: {e}") from e
        return head, src.compression
    finally:
        src.close_quietly()
