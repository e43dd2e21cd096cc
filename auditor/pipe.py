"""How a local worker's messages travel on its pipe (engine.run_local): each message pickled as a
stream of frames, and a settled part followed by its flows and name observations in pieces, each
unpickled when the merge comes to it, so that neither process holds a whole pickled part, nor the
whole part's flows as objects beside its own."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditor.engine import Part


def send(conn: Any, message: tuple[str, Any]) -> None:
    """A worker's message, pickled as a stream of frames, each its own message on ``conn`` (``Stream``
    reads them): neither process holds the whole pickle beside the objects."""
    pickle.Pickler(_Frames(conn), protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    conn.send_bytes(b"")  # the end


PIECE = 4096
"""Flows, or addresses of name evidence, per piece of a worker's part (``send_part``)."""


def send_part(conn: Any, part: Part, piece: int = PIECE) -> None:
    """A worker's settled part: the part without its flows and name observations, then those in
    pieces of ``piece`` (each a message of its own, with its own memo: the pickler's memo of a whole
    part held an entry per object), then the end. Each piece is let go once sent; the merge takes
    them in order where the part's own would have been merged (``Rest``, engine.Merger.add)."""
    result = part.conv.result
    flows = list(result.flows.values())
    result.flows = {}
    names = part.names.split(piece)
    send(conn, ("part", part))
    flows.reverse()  # taken from the end
    while flows:
        send(conn, ("flows", [flows.pop() for _ in range(min(piece, len(flows)))]))
    for lot in names:
        send(conn, ("names", lot))
    send(conn, ("end", None))


class Rest:
    """What follows a worker's part on its pipe (``send_part``): its flows, then its names, in
    pieces, each unpickled when the merge comes to it (``take``), then the end."""

    def __init__(self, receive: Callable[[], tuple[str, Any]]) -> None:
        self.receive = receive
        self.ahead: tuple[str, Any] | None = None

    def take(self, kind: str) -> Iterator[Any]:
        """The pieces of this kind that come next."""
        while True:
            if self.ahead is None:
                self.ahead = self.receive()
            if self.ahead[0] != kind:
                return
            value, self.ahead = self.ahead[1], None
            yield value

    def end(self) -> None:
        """Check that all was taken."""
        if (self.ahead or self.receive())[0] != "end":
            raise RuntimeError("a worker's part was merged without all of its pieces")
        self.ahead = None


class _Frames:
    """What the pickler writes, sent as it comes."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def write(self, data: bytes) -> int:
        if data:
            self.conn.send_bytes(data)
        return len(data)


class Stream:
    """The frames ``send`` sent, read as one file by the unpickler (to the end marker)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.buf = memoryview(b"")

    def read(self, n: int = -1) -> bytes:
        got = []
        while n:
            if not self.buf:
                self.buf = memoryview(self.conn.recv_bytes())
                if not self.buf:
                    break
            piece = self.buf[:n] if n > 0 else self.buf
            self.buf = self.buf[len(piece):]
            got.append(piece)
            n -= len(piece)
        return b"".join(got)

    def readinto(self, into: Any) -> int:
        data = self.read(len(into))
        into[:len(data)] = data
        return len(data)

    def readline(self) -> bytes:  # not used by the binary protocols, but the unpickler asks for it
        raise pickle.UnpicklingError("a worker's message has no lines")

    def end(self) -> None:
        """Read to the end marker (the unpickler stops at the pickle's last frame)."""
        while self.read(1 << 16):
            pass
