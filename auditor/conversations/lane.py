"""The conversation core's fast lane: common packets of live connections taken by their fields
alone, without a PacketRecord (see the package's docstring)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from auditor.conversations.state import _A, _D, _RESP, CLOSE_LINGER, _Run
from auditor.model import ACK
from auditor.nametable import NameTable
from auditor.record import PacketRecord

TICK_RECORDS: Final = 4096
"""A reading loop's ``tick`` is looked at every this many records (engine.read_records)."""

if TYPE_CHECKING:
    from auditor.conversations.builder import ConversationBuilder


class FastLane:
    """A capture reader's way into the core for common packets, without a PacketRecord.

    ``take(proto, key, ts, flags, payload_len, ip_len)`` takes a TCP/UDP packet of an already live
    connection by its fields alone (``key``: its 5-tuple's, state.conn_key) and returns True; it
    returns False, having changed nothing, when the packet needs ``ConversationBuilder.feed``. Its counters and history
    letters are written as the slow path writes them (``_Conn.add``, ``_Conn.mark``): the capture
    layer hands values in, never state. UDP packets are offered with ``flags`` 0.

    A reader may offer only packets whose record would have no checksum error, no tunnel, no fragment
    flag and no payload that names.py reads (capture/decode.py): ``feed`` of such a record would
    itself go to ``take`` (and to the slow path, which does the same, when ``take`` declines), and
    names.py would ignore it (tests/test_conversations_lane.py). It declines a direction's first
    payload (the slow path keeps its first bytes for auditor/apps.py), and every SWEEP_EVERY-th
    packet, so the amortised sweep stays in ``feed``.
    """

    def __init__(self, builder: ConversationBuilder, names: NameTable | None = None,
                 tick: Callable[[], None] | None = None, *, puts: bool | None = None) -> None:
        self.builder = builder
        self.table = builder._table
        self.stats = builder.stats
        self.names = names
        """The name table ``put`` gives the records with a payload to (None: none). With one, the lane
        takes the reader's records too (``puts``): the kernel's walk hands each to the core and the
        table where it makes it, in order with the packets the lane takes, rather than yield it up
        through the readers' generators to a reading loop."""
        self.puts = names is not None if puts is None else puts
        """Whether the kernel's walk hands its records to ``put`` rather than yield them: by default
        with a name table; without one, records go to the core alone (the name evidence is read
        apart: auditor/names_apart.py)."""
        self.tick = tick
        """Called every TICK_RECORDS records ``put`` takes (a reading loop's own ``tick``)."""
        self.records = 0
        """The records ``put`` took."""

    def put(self, rec: PacketRecord) -> None:
        """A record of the kernel's walk, as the reading loop takes it (engine.read_records): to the
        core, and to the name table when it has a payload."""
        self.builder.feed(rec)
        self.records += 1
        if rec.payload and self.names is not None:
            self.names.observe(rec)
        if not self.records % TICK_RECORDS and self.tick is not None:
            self.tick()

    def take(self, proto: int, key: bytes, ts: float, flags: int, plen: int, ip_len: int) -> bool:
        # The kernel (capture/kernel.py) and the builder call this through its class: in the compiled
        # build a C call with the numbers unboxed, not a call of a Python callable.
        ent = self.table.get(key)
        builder = self.builder
        if ent is None or flags & 7 or builder._countdown == 1:
            return False
        c, is_orig = ent
        if ts - c.last > c.timeout or not (c.os if is_orig else c.rs):
            return False
        if plen and (c.ho if is_orig else c.hr) is None:
            return False  # a direction's first payload: the slow path keeps its first bytes
        bit = _D if plen or proto == 17 else (_A if flags & ACK else 0)
        chain = c.chain
        run: _Run | None = None
        if chain is not None:  # a head chain of a chunk: a run (_Run) for a merge to replay
            if ts - c.last > CLOSE_LINGER or len(c.keys) != 2:
                # A record: a run never spans a gap that may end a connection, and its counts are
                # per direction of the connection's own 5-tuple (not of a joined TFTP transfer).
                return False
            run = chain.run
            if run is None:
                run = chain.run = _Run()
                run.start(c, ts)
                chain.log.append(run)
            elif ts > run.last:
                run.last = ts
            elif ts < run.first:
                run.first = ts
        builder._countdown -= 1
        self.stats.packets += 1
        c.add(is_orig, 1, ip_len, ts, ts)
        if bit:
            mask = bit if is_orig else bit << _RESP
            c.mark(mask)
            if run is not None and not run.seen & mask:
                run.seen |= mask
                run.letters.append(mask)
        return True


class DropLane(FastLane):
    """A lane that takes every packet offered and keeps nothing: for a walk that wants only the
    frames the kernel never offers a lane (capture/fragments.py: IP fragments)."""

    def __init__(self) -> None:
        self.names = None
        self.puts = False

    def take(self, proto: int, key: bytes, ts: float, flags: int, plen: int, ip_len: int) -> bool:
        return True


class NamesLane(DropLane):
    """A lane for a walk that reads name evidence alone (auditor/names_apart.py): it takes every
    packet offered and keeps nothing (DropLane), and gives the walk's records to the name table. The
    packets a kernel offers a lane carry nothing the name table reads (FastLane's contract), so the
    table sees every record it would see beside a conversation core, in the same order."""

    def __init__(self, names: NameTable) -> None:
        self.names = self.into = names
        self.puts = True
        self.tick = None
        self.records = 0

    def put(self, rec: PacketRecord) -> None:
        self.records += 1
        if rec.payload:
            self.into.observe(rec)
