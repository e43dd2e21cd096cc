"""Byte sources: a file, a pipe or standard input, hashed while streaming, decompressed by magic.

The SHA-256 is of the bytes as stored (the compressed bytes for a compressed file) and is computed
on the single pass that reads the capture; whatever the reader did not consume is drained into the
hash when the source is closed, so a capture cut short by corruption still gets its full hash.

An input that is no regular file (standard input, a named pipe, ``<(zcat x.pcap.gz)``, /dev/stdin,
a device: ``Source.once``) can be read only once, so it is never reopened: its first capture bytes
are looked at through ``Source.head``, which the reads after it return again.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import gzip
import hashlib
import lzma
import mmap
import os
import queue
import stat
import struct
import sys
import threading
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol, cast

import zstandard

from auditor.errors import CaptureError

# Read size from disk and from decompressors: large blocks keep the per-record cost low. The
# read-ahead thread reads the same size: it needs the GIL (held by the decoding thread, which gives
# it up only every sys.getswitchinterval()) a few times per block, so small blocks left the decoder
# waiting for data (4 MiB: ~8 % of the time at 200 MB/s).
CHUNK = 8 << 20
MAP_WINDOW = 16 << 20
"""Window of the memory map that hashes what the reader skips (HashingReader.hash_rest)."""

# Errors a decompressor raises on a damaged or cut stream: the capture is then truncated, not fatal.
DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (
    EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError, ValueError,
)

_MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


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
        self._frames: _ZstdFrames | None = None
        self.compression = "none"
        for magic, name in _MAGICS:
            if start.startswith(magic):
                self.compression = name
        self.stream: Readable
        self._read1: Callable[[int], bytes]
        raw = cast(BinaryIO, self.raw)  # duck-typed: decompressors only call read()
        if stored:
            self.stream = self.raw
        elif self.compression == "gzip":
            self.stream = gzip.GzipFile(fileobj=raw, mode="rb")
        elif self.compression == "bz2":
            self.stream = bz2.BZ2File(raw, mode="rb")
        elif self.compression == "xz":
            self.stream = lzma.LZMAFile(raw, mode="rb")  # noqa: SIM115 - lives as long as Source
        elif self.compression == "zstd":
            dctx = zstandard.ZstdDecompressor()
            self._frames = _ZstdFrames(raw)
            self.stream = dctx.stream_reader(cast(BinaryIO, self._frames), read_size=CHUNK, read_across_frames=True)
        else:
            self.stream = self.raw
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


class _ZstdFrames:
    """The compressed bytes of a zstd stream on their way to the decompressor, with its frame
    structure followed (RFC 8878 §3.1: frame headers, block headers, checksums, skippable frames;
    block contents are skipped unread), so that ``inside`` tells whether the input ended inside a
    frame. Bytes that are not a frame stop the following: the decompressor reports them."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._skip = 0
        """Bytes to pass over before the next field."""
        self._field = b""
        self._need = 4
        self._state = "magic"
        self._checksum = 0
        self._inside = False

    @property
    def inside(self) -> bool:
        """Whether the bytes so far end inside a frame (its magic number included)."""
        return self._state != "lost" and (self._inside or bool(self._field))

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        pos = 0
        while pos < len(data) and self._state != "lost":
            if self._skip:
                step = min(self._skip, len(data) - pos)
                self._skip -= step
                pos += step
                if not self._skip and self._state == "end":
                    self._state, self._need, self._inside = "magic", 4, False
                continue
            take = min(self._need - len(self._field), len(data) - pos)
            self._field += data[pos:pos + take]
            pos += take
            if len(self._field) == self._need:
                field, self._field = self._field, b""
                self._parsed(field)
        return data

    def _parsed(self, field: bytes) -> None:
        state = self._state
        if state == "magic":
            magic = int.from_bytes(field, "little")
            if magic == 0xFD2FB528:
                self._state, self._need, self._inside = "descriptor", 1, True
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state, self._need, self._inside = "skippable", 4, True
            else:
                self._state = "lost"
        elif state == "skippable":
            self._state, self._skip, self._need = "end", int.from_bytes(field, "little"), 4
            if not self._skip:
                self._state, self._inside = "magic", False
        elif state == "descriptor":
            fhd = field[0]
            single = fhd >> 5 & 1
            self._checksum = 4 if fhd >> 2 & 1 else 0
            fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
            self._skip = (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
            self._state, self._need = "block", 3
        elif state == "block":
            head = int.from_bytes(field, "little")
            kind, size = head >> 1 & 3, head >> 3
            self._skip = 1 if kind == 1 else size
            if head & 1:  # the last block: then the checksum, if any, and the frame is whole
                self._skip += self._checksum
                self._state = "end"
                if not self._skip:
                    self._state, self._need, self._inside = "magic", 4, False


_MSG = struct.Struct("<BQQ")
"""An Inflater message: kind (_DATA, _DAMAGED, _FAILED, _END), payload length, stored bytes read."""
_DATA, _DAMAGED, _FAILED, _END = range(4)


class Inflater:
    """Decompression in a forked process: it reads the compressed file with its own Source (in
    line, the same pieces and the same errors) and sends the capture bytes down a pipe. zlib and
    the others release the GIL while they work, but the walk never does, so a decompressing thread
    waited for it at every step: in a second process decompression runs beside the walk (a gzip
    capture took ~40 % longer than the same pcap uncompressed, bench/README.md)."""

    def __init__(self, path: str, compression: str) -> None:
        self.path = path
        self.compression = compression
        self.nread = 0
        self._left = b""
        self._ended = False
        self._proc: Any
        self._proc, self._fd = start_child(_inflate, "pcap-audit-inflate", path)

    def _exact(self, n: int) -> bytes:
        parts = []
        while n:
            got = os.read(self._fd, min(n, CHUNK))
            if not got:
                raise CaptureError(f"{self.path}: the decompressing process ended without a word; "
                                   "run with -j 1")
            parts.append(got)
            n -= len(got)
        return b"".join(parts)

    def read(self, size: int) -> bytes:
        if not self._left:
            if self._ended:
                return b""
            kind, length, self.nread = _MSG.unpack(self._exact(_MSG.size))
            payload = self._exact(length)
            if kind != _DATA:
                self._ended = True
                if kind == _END:
                    return b""
                text = payload.decode("utf-8", "replace")
                if kind == _DAMAGED:
                    raise _Damaged(text)
                raise CaptureError(f"{self.path}: the decompressing process failed ({text}); run with -j 1")
            self._left = payload
        out, self._left = self._left[:size], self._left[size:]
        return out

    def close(self) -> None:
        if self._proc is not None:
            stop_child(self._proc)
            self._proc = None
            os.close(self._fd)


def start_child(target: Callable[..., None], name: str, *args: Any) -> tuple[Any, int]:
    """Fork a process running ``target(*args, wfd, rfd)`` that writes to a pipe (it closes ``rfd``,
    its copy of this end): the process and the pipe's end to read."""
    import multiprocessing as mp

    rfd, wfd = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # room for a fast writer (Linux)
        fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, 1 << 20)
    proc = mp.get_context("fork").Process(target=target, name=name, daemon=True, args=(*args, wfd, rfd))
    proc.start()
    os.close(wfd)
    return proc, rfd


def stop_child(proc: Any) -> None:
    """End a process of start_child's (done or not) and reap it."""
    if proc.is_alive():
        proc.terminate()
    proc.join(timeout=10)


class _Damaged(OSError):
    """A decompression error in the Inflater's process (its text as that process's error said)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _inflate(path: str, wfd: int, rfd: int) -> None:
    """The Inflater's process: decompress ``path`` into the pipe, in CHUNK messages."""
    import signal

    os.close(rfd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reading process's to handle

    def send(kind: int, payload: bytes, nread: int) -> None:
        data = _MSG.pack(kind, len(payload), nread) + payload
        while data:
            data = data[os.write(wfd, data):]

    src: Source | None = None
    try:
        src = Source(path, digest=False)
        while True:
            try:
                data = src.read(CHUNK)
            except DECOMPRESS_ERRORS as e:
                send(_DAMAGED, str(e).encode(), src.raw.nread)
                break
            if not data:
                send(_END, b"", src.raw.nread)
                break
            send(_DATA, data, src.raw.nread)
    except BrokenPipeError:  # the reading process stopped early
        pass
    except Exception as e:
        with contextlib.suppress(OSError):
            send(_FAILED, f"{type(e).__name__}: {e}".encode(), 0)
    finally:
        if src is not None:
            src.close_quietly()


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
