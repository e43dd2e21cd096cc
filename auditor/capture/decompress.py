"""Decompression: what a capture is compressed with (by its magic), the decompressor that reads it,
and the second process (``Inflater``) that can decompress a regular file beside the walk.

capture/source.py builds on this: a Source hashes the stored bytes and hands them to the
decompressor opened here.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import gzip
import lzma
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol, cast

import zstandard

from auditor.errors import CaptureError

# Read size from disk and from decompressors: large blocks keep the per-record cost low. The
# read-ahead thread (source.HashingReader) reads the same size: it needs the GIL (held by the
# decoding thread, which gives it up only every sys.getswitchinterval()) a few times per block, so
# small blocks left the decoder waiting for data (4 MiB: ~8 % of the time at 200 MB/s).
CHUNK = 8 << 20

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


def compression_of(start: bytes) -> str:
    """What the stored bytes starting with ``start`` are compressed with ('none' when nothing)."""
    found = "none"
    for magic, name in _MAGICS:
        if start.startswith(magic):
            found = name
    return found


def open_stream(raw: Readable, compression: str) -> tuple[Readable, ZstdFrames | None]:
    """The decompressor reading ``raw`` (``raw`` itself when not compressed) and, for zstd, the
    frame follower that tells whether the input ended inside a frame."""
    fh = cast(BinaryIO, raw)  # duck-typed: decompressors only call read()
    if compression == "gzip":
        return gzip.GzipFile(fileobj=fh, mode="rb"), None
    if compression == "bz2":
        return bz2.BZ2File(fh, mode="rb"), None
    if compression == "xz":
        return lzma.LZMAFile(fh, mode="rb"), None
    if compression == "zstd":
        frames = ZstdFrames(raw)
        dctx = zstandard.ZstdDecompressor()
        return dctx.stream_reader(cast(BinaryIO, frames), read_size=CHUNK, read_across_frames=True), frames
    return raw, None


class ZstdFrames:
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

    from auditor.capture.source import Source  # imported here: source.py imports this module

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
