"""Per-connection state of the conversation core: the live connection (_Conn), head chains of a
chunk (_Chain, _Run), history bits, endpoint states and the constants they use."""

from __future__ import annotations

import re
import struct
from typing import Any, Final

from auditor.addrtext import addr_str
from auditor.apps import APP_SNAP, AppEvidence
from auditor.model import (
    ACK,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    PROTO_NAMES,
    SYN,
    TunnelInfo,
)
from auditor.record import PacketRecord

# Endpoint states, as Zeek's TCP_ENDPOINT_* (zeek/analyzer/protocol/tcp/TCP_Endpoint.h).
# Constants are Final (as model.py's): the compiled core reads them as C constants or statics, not by
# a look-up in the module's dict each time. HOST_TTLS_MAX is not: a test lowers it.
INACTIVE: Final = 0
SYN_SENT: Final = 1
SYN_ACK_SENT: Final = 2
PARTIAL: Final = 3
ESTABLISHED: Final = 4
CLOSED: Final = 5
RESET: Final = 6
_CLOSING: Final = (CLOSED, RESET)
_O_INACTIVE: Final = (INACTIVE, PARTIAL)

# Direction evidence, as indexes into model.DIRECTION_EVIDENCE (lower = stronger).
EV_SYN: Final = 0
EV_SYNACK: Final = 1
EV_PROTOCOL: Final = 2
EV_CATALOG: Final = 3
EV_WELLKNOWN: Final = 4
EV_FIRST: Final = 5

# History "seen" bits: originator in the low half, responder shifted by _RESP.
_S: Final = 1 << 0
_A: Final = 1 << 1
_D: Final = 1 << 2
_F: Final = 1 << 3
_R: Final = 1 << 4
_C: Final = 1 << 5
_I: Final = 1 << 6
_Q: Final = 1 << 7
_RESP: Final = 16
_HIST_LETTER: Final[dict[int, str]] = {}
for _i, _ch in enumerate("SADFRCIQ"):
    _HIST_LETTER[1 << _i] = _ch
    _HIST_LETTER[1 << (_i + _RESP)] = _ch.lower()
_D_BOTH: Final = _D | (_D << _RESP)
# Any of these means the connection is past its handshake: a later initial SYN is a new one.
_NOT_HANDSHAKE: Final = (_D | _F | _R | _I | _Q) * (1 | (1 << _RESP))
# Zeek's conn.zeek: RSTOS0 only when the history is a SYN followed by the originator's RST.
_RSTOS0: Final = re.compile(r"\^?S[^HAFGIQ]*R.*")
_SYN_LETTERS: Final = {True: ("S", "H"), False: ("s", "h")}
"""History letter of a SYN (without, with ACK) by whether the originator sent it."""
_POW10: Final = frozenset(10**i for i in range(19))

DISORDER_SLACK: Final = 60.0
"""Seconds a chunk may begin before the chunks ahead of it end (timestamps a little out of order)
and still be merged exactly: its head chains cover one idle timeout and this much more."""
SWEEP_EVERY: Final = 8192
CLOSE_LINGER: Final = 5.0
DYNAMIC_PORTS: Final = 49152
TFTP_PORT: Final = 69
TFTP_PENDING_MAX: Final = 4096
FANIN_TARGETS_MAX: Final = 100_000
HOST_TTLS_MAX = 65_536
"""Responders whose TTLs the core keeps (ConversationResult.host_ttls)."""
_ATTEMPT_STATES: Final = frozenset(("REJ", "RSTOS0", "RSTRH", "SH", "SHR"))
_RESET_STATES: Final = ("REJ", "RSTRH")
"""TCP states of a connection the responder's RST refused (when Flow.add counts it rejected)."""
_DHCP_GROUPS: Final = (b"\xff\xff\xff\xff", b"\xff\x02" + bytes(11) + b"\x01\x00\x02")
"""Where a DHCP client sends its requests before it knows a server: IPv4's limited broadcast
(RFC 2131 §4.1), IPv6's All_DHCP_Relay_Agents_and_Servers, ff02::1:2 (RFC 8415 §7.1)."""
_DHCP_PORTS: Final = {67: 68, 547: 546}
"""A DHCP server's port -> its clients' (DHCPv4, DHCPv6)."""
_DNS_PORTS: Final = (53,)
_ICMP_ECHO: Final = {IPPROTO_ICMP: (8, 0), IPPROTO_ICMPV6: (128, 129)}
_PORTS: Final = struct.Struct("!HH").pack
_WIDE: Final = struct.Struct("!qq").pack
_IDENT: Final = struct.Struct("!q").pack
UDP_KEY: Final = b"\x11"
"""What a UDP 5-tuple's table key starts with (``conn_key``)."""
_NO_TUNNELS: Final[frozenset[str]] = frozenset()
_REPLAYED_COUNTERS = ("port_reuse", "idle_splits", "icmp_errors_matched", "icmp_refusals", "icmp_errors_unmatched",
                      "tftp_transfers", "dhcp_replies_joined", "bad_checksums")
"""What the slow path counts: a chain replayed in a merge takes back what its own chunk counted."""


def conn_key(proto: int, src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """The live table's key of a TCP or UDP 5-tuple, one direction: the source and destination
    addresses, then the source and destination ports, as they follow each other in a packet of an
    IPv4 header without options (or an IPv6 header without extensions) and its transport header, so
    that the capture kernel takes a packet's key as one slice of it; a UDP key after the byte
    ``UDP_KEY``. Keys of TCP are 12 bytes (IPv6: 36), of UDP 13 (37), of ICMP 18 (42, ``icmp_key``),
    with ports out of range 24 or 25 (48 or 49): no two kinds share a length. One bytes object,
    compared with one memcmp, where a tuple of five was compared field by field, each address a
    separate object (bench/README.md)."""
    try:
        ports = _PORTS(sport, dport)
    except struct.error:  # ports out of range (an engine's "unknown"): a key no packet's can equal
        ports = _WIDE(sport, dport)
    if proto == 6:
        return src + dst + ports
    return UDP_KEY + src + dst + ports


def icmp_key(proto: int, echo: bool, src: bytes, dst: bytes, ident: int) -> bytes:
    """The live table's key of an ICMP or ICMPv6 conversation, one direction: an echo's by its
    identifier, any other message's by its type (``ident``; -1 when the message was cut before it)."""
    return bytes((proto, 1 if echo else 2)) + src + dst + _IDENT(ident)


_CONN_FIELDS: Final = ("appc", "bad_o", "bad_r", "chain", "data", "dead", "ev", "ff", "first", "fo", "fr", "hist", "ho",
                       "hr", "hseen", "isn", "keys", "last", "later", "marks", "oa", "oby", "op", "opk", "oprev", "os",
                       "proto", "queued", "ra", "rby", "refused", "rp", "rpk", "rprev", "rs", "rst_ttl", "timeout",
                       "tunnels")
"""_Conn's fields: its __slots__ in Python, what its pickled state holds in either build (a class compiled
with mypyc has no __slots__ to read them from)."""


class _Conn:
    """Live per-connection state: plain fields, read and written on the hot path."""

    __slots__ = _CONN_FIELDS
    proto: int
    oa: bytes
    op: int
    ra: bytes
    rp: int
    first: float
    last: float
    ff: tuple[int, int]
    opk: int
    oby: int
    rpk: int
    rby: int
    hseen: int
    hist: list[str]
    os: int
    """The initiator's TCP endpoint state (tcp.py). A UDP or ICMP connection's sides are ESTABLISHED
    (the fast lane takes their packets), but the initiator of a DHCP client's requests to all servers,
    INACTIVE: each of its requests goes to the slow path, which keeps its transaction id
    (related.dhcp_request)."""
    rs: int
    oprev: int
    rprev: int
    ev: int
    isn: int
    marks: list[int] | None
    data: bool
    bad_o: int
    bad_r: int
    ho: bytes | None
    """The initiator's first payload bytes (at most apps.APP_SNAP; b"" when none were captured), None
    before its first segment with payload: what auditor/apps.py identifies the protocol from."""
    hr: bytes | None
    """The responder's, alike."""
    fo: tuple[int, int]
    """(input_index, frame) of ``ho``'s packet."""
    fr: tuple[int, int]
    refused: tuple[bytes, int, int] | None
    """The first destination unreachable refusing what the initiator sent: (sender, type, code)."""
    rst_ttl: int
    """TTL of the responder's first RST (-1: none, or unknown)."""
    tunnels: set[TunnelInfo] | None
    timeout: float
    keys: tuple[bytes, ...]
    """Table keys of this connection: both directions, plus TFTP transfer aliases."""
    dead: bool
    """Closed (``_close``): the sweep's queues skip it without looking its key up."""
    queued: float
    """When one of the sweep's two queues (ConversationBuilder._queue, ``_later``) last took it in:
    each queue holds its live connections in this order. Kept here rather than beside it in the
    queue: the sweep takes each connection in again until it expires, and a pair made for each took
    a tenth of reading a capture when the sweep looked at every connection every few seconds."""
    later: bool
    """Its place in the sweep is in the long queue (``_later``): an entry of the long queue whose
    connection says False is one left behind when its timeout shrank (``ConversationBuilder.soon``)."""
    appc: tuple[AppEvidence | None] | None
    """The application protocol its first payloads show (auditor/apps.py), worked out ahead of its
    close once both are final (``chunks.end_chunk``: in the chunk's own process), or None."""
    chain: _Chain | None
    """In a chunk that does not start the run (``ConversationBuilder(chunk=True)``): the head chain this
    connection belongs to, whose packets are logged for a merge to replay (see _Chain)."""

    def add(self, is_orig: bool, packets: int, nbytes: int, first: float, last: float) -> None:
        """Packets and IP bytes sent one way, and the times they span: the one writer of the
        connection's counters and times (the slow path's ``_account``, the fast lane, a merge's
        replay of a lane run)."""
        if last > self.last:
            self.last = last
        if first < self.first:
            self.first = first
        if is_orig:
            self.opk += packets
            self.oby += nbytes
        else:
            self.rpk += packets
            self.rby += nbytes

    def mark(self, mask: int) -> None:
        """The history letter of ``mask`` (one "seen" bit: the initiator's, or the responder's shifted
        by _RESP), the first time it is seen: the one writer of letters recorded once (D, A, I, Q). The
        TCP machine's S, F and R (again at a new sequence number), a checksum's C (at 1, 10, 100...)
        and a flip's ^ follow their own rules (tcp.py, ConversationBuilder._account)."""
        if not self.hseen & mask:
            self.hseen |= mask
            self.hist.append(_HIST_LETTER[mask])

    def __getstate__(self) -> tuple[Any, ...]:
        # A chunk's live connections travel from a worker process: values only, in slot order.
        return tuple([getattr(self, name) for name in _CONN_FIELDS])

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(_CONN_FIELDS, state, strict=True):
            setattr(self, name, value)


class _Run:
    """Fast-lane packets of a head chain's connection between two logged records: per table key (one
    direction of the connection: ``k0``, ``k1``) the packets and IP bytes, the run's first and last
    time, and the history letters (D, A) in the order they first appeared in the run. Their effect on
    any connection state is the same (see chunks.apply_run): the lane takes only plain packets of
    active senders, at most CLOSE_LINGER after the connection's last one.

    While it is open (``start``) the lane keeps only its times and letters: the packets and bytes are
    the connection's own counters since the run began, taken as differences when it is sealed
    (``seal``: before the slow path touches the connection, when it closes, at the chunk's end). A
    chunk's head chains then cost the lane a few comparisons per packet, not a table update. Sealed,
    a run is plain fields (a chunk keeps tens of thousands until the merge: no dict, no list per
    direction, its letters as bits)."""

    __slots__ = ("base", "conn", "first", "k0", "k1", "last", "letters", "n0", "n1", "seen", "v0", "v1")

    def __init__(self, k0: bytes = b"", k1: bytes = b"") -> None:
        self.k0 = k0
        self.k1 = k1
        """The table keys of the connection's two directions (its own ``keys``, in their order)."""
        self.n0 = self.v0 = self.n1 = self.v1 = 0
        """Packets and IP bytes sent on ``k0`` and on ``k1`` (no packets: the run has none that way)."""
        self.letters: list[int] = []
        """History bits in the order they first appeared: a bit of ``k0``'s sender, or one shifted by
        _RESP: of ``k1``'s."""
        self.seen = 0
        """The bits already in ``letters``."""
        self.first = self.last = 0.0
        """The run's first and last packet times (the lane keeps them while the run is open)."""
        self.conn: _Conn | None = None
        """The connection while the run is open."""
        self.base: tuple[int, int, int, int] = (0, 0, 0, 0)
        """Its packets and bytes each way when the run began."""

    def start(self, c: _Conn, ts: float) -> None:
        self.conn = c
        self.k0, self.k1 = c.keys[0], c.keys[1]
        self.base = (c.opk, c.oby, c.rpk, c.rby)
        self.first = self.last = ts

    def seal(self) -> None:
        c = self.conn
        if c is None:
            return
        self.conn = None
        opk, oby, rpk, rby = self.base
        self.n0, self.v0, self.n1, self.v1 = c.opk - opk, c.oby - oby, c.rpk - rpk, c.rby - rby


class _Chain:
    """The connections of one 5-tuple from its first packet in a chunk until a full idle timeout
    passes without one (then any earlier state would have expired: what follows is the same whatever
    came before the chunk). A chunk that does not start the run cannot know whether a connection of
    the previous chunk continues into it, so it keeps, per chain, what a merge needs either way: the
    connections as this chunk closed them (``closed``, folded into flows when the previous chunk
    had no such connection), and the log of the chain's packets (records, and _Run aggregates of the
    fast lane's) to replay on the previous chunk's connection when it had one (SPEC §8)."""

    __slots__ = ("aside", "ck", "closed", "conn", "first_ts", "last_ts", "log", "proto", "run", "ttls")

    def __init__(self, ck: bytes, proto: int, ts: float) -> None:
        self.ck = ck
        self.proto = proto
        self.first_ts = self.last_ts = ts
        self.log: list[PacketRecord | _Run | bytes] = []
        self.run: _Run | None = None
        self.closed: list[tuple[Any, ...]] = []
        """Per closed connection, one tuple: Flow.add's arguments, then the initiator, the responder and
        its port (with Flow.add's protocol, state and packets: ConversationBuilder._flow_for's), and the
        Connection when connections are kept (else None)."""
        self.conn: _Conn | None = None
        """The chain's latest connection (the one live at the chunk's end, if any)."""
        self.ttls: dict[bytes, int] | None = None
        """The responders' SYN-ACK and FIN TTLs seen on the chain (ConversationResult.host_ttls); None:
        none (most chains: made when one comes)."""
        self.aside: list[tuple[bytes, float]] | None = None
        """(table key, time) of 5-tuples first seen within the chunk's head window on which the place
        of a packet the chain's connections took depends: a DHCP reply or TFTP transfer joined to its
        request, an ICMP error whose quoted connection was not live. A sequential read would have
        given such a packet to a connection of the chunk before live on that 5-tuple (related.note_aside;
        chunks.decide looks them up too). None: none (made when one comes)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # A chunk's chains travel from a worker process. Compiled with mypyc, the class would be
        # rebuilt by calling it without arguments: made from its first three fields here instead.
        return (_Chain, (self.ck, self.proto, self.first_ts),
                (self.last_ts, self.log, self.run, self.closed, self.conn, self.ttls, self.aside))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.last_ts, self.log, self.run, self.closed, self.conn, self.ttls, self.aside = state

    def seal(self) -> None:
        """Close the open run (_Run.seal), if any; ``last_ts`` then counts its packets."""
        run = self.run
        if run is not None:
            if run.conn is not None and run.last > self.last_ts:
                self.last_ts = run.last
            run.seal()
            self.run = None

    def record(self, rec: PacketRecord) -> None:
        """Log a record of the chain (its payload cut to what a replay reads): after the first (what a
        merge looks up: ``chunks.heads``), a plain TCP or UDP one as bytes (``packed``), a third of
        its size as an object."""
        if self.run is not None:
            self.seal()
        payload = rec.payload
        if len(payload) > APP_SNAP:
            payload = payload[:APP_SNAP]
        if self.log and rec.quoted is None and rec.tunnel is None:
            self.log.append(packed(rec, payload))
        else:
            self.log.append(rec if payload is rec.payload else rec.replace(payload=payload))
        if rec.ts > self.last_ts:
            self.last_ts = rec.ts


Head = tuple[PacketRecord | bytes, tuple[tuple[bytes, float], ...]]
"""What a merge looks up of a head chain (chunks.heads): its first packet (``packed`` when it can be: a
part's heads travel, and wait in the merging process for their turn), and its ``aside`` packets."""

_RECORD: Final = struct.Struct("<qqdBIiiHQQIhhq??hB")
"""A logged record's fields before its addresses and payload (``_Chain.record``, ``unpacked``)."""


def packed(rec: PacketRecord, payload: bytes) -> bytes:
    """A record without ``quoted`` and ``tunnel`` as bytes (``unpacked`` gives it back), with
    ``payload`` in place of its own (cut to what a replay reads)."""
    return _RECORD.pack(rec.input_index, rec.frame, rec.ts, rec.proto, rec.ip_len, rec.sport, rec.dport, rec.tcp_flags,
                        rec.seq, rec.ack, rec.payload_len, rec.icmp_type, rec.icmp_code, rec.icmp_id, rec.checksum_bad,
                        rec.fragment, rec.ttl, len(rec.src)) + rec.src + rec.dst + payload


def unpacked(item: bytes) -> PacketRecord:
    """The record ``packed`` made bytes."""
    (ii, frame, ts, proto, ip_len, sport, dport, flags, seq, ack, plen, itype, icode, iid, bad, frag, ttl,
     alen) = _RECORD.unpack_from(item)
    at = _RECORD.size
    return PacketRecord(ii, frame, ts, item[at:at + alen], item[at + alen:at + 2 * alen], proto, ip_len, sport, dport,
                        flags, seq, ack, plen, item[at + 2 * alen:], itype, icode, iid, None, bad, None, frag, ttl)


def direction(server_ports: frozenset[tuple[str, int]], rec: PacketRecord) -> tuple[bool, int]:
    """(is the sender the initiator?, evidence) for a connection's first packet."""
    proto, sport, dport = rec.proto, rec.sport, rec.dport
    if proto == IPPROTO_TCP:
        flags = rec.tcp_flags
        if flags & SYN:
            return (False, EV_SYNACK) if flags & ACK else (True, EV_SYN)
    else:
        hint = _udp_protocol_hint(sport, dport, rec.payload)
        if hint is not None:
            return hint, EV_PROTOCOL
    pname = PROTO_NAMES[proto]
    sp = sport < DYNAMIC_PORTS and (pname, sport) in server_ports
    dp = dport < DYNAMIC_PORTS and (pname, dport) in server_ports
    if sp != dp:
        return dp, EV_CATALOG
    rs, rd = _port_rank(sport), _port_rank(dport)
    if rs != rd:
        return rd < rs, EV_WELLKNOWN
    return True, EV_FIRST


def _port_rank(port: int) -> int:
    if 0 < port < 1024:
        return 0
    if 1024 <= port < DYNAMIC_PORTS:
        return 1
    return 2


def _udp_protocol_hint(sport: int, dport: int, payload: bytes) -> bool | None:
    """Does this UDP message show its sender is the initiator (True), the responder (False)?"""
    if (sport in _DNS_PORTS or dport in _DNS_PORTS) and len(payload) >= 3:
        response = bool(payload[2] & 0x80)  # DNS header QR bit (RFC 1035 §4.1.1)
        if response and sport in _DNS_PORTS:
            return False
        if not response and dport in _DNS_PORTS:
            return True
    if (sport == 123 or dport == 123) and payload:
        mode = payload[0] & 7  # NTP mode (RFC 5905 §7.3): 3 client, 4 server
        if mode == 3:
            return True
        if mode == 4:
            return False
    if sport in (67, 68) and dport in (67, 68) and payload:
        op = payload[0]  # BOOTP op (RFC 951): 1 request, 2 reply
        if op in (1, 2):
            return op == 1
    if sport in (546, 547) and dport in (546, 547) and payload:
        msg = payload[0]  # DHCPv6 msg-type (RFC 8415 §7.3): advertise 2, reply 7, reconfigure 10
        if msg in (2, 7, 10):
            return False
        if msg in (1, 3, 4, 5, 6, 8, 9, 11):
            return True
    return None


def _tunnel_text(t: TunnelInfo) -> str:
    text = f"{t.kind} {addr_str(t.outer_src)}->{addr_str(t.outer_dst)}"
    return f"{text} vni {t.vni}" if t.vni else text

