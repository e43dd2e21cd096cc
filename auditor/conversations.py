"""Sans-IO conversation core: a PacketRecord stream in, Connection and Flow tables out (SPEC §3).

Nothing here opens a file or prints: tests feed records built in memory (h11's idea).

Design, for speed (the audit targets >= 300k packets/s in one process):
  * The live table is a plain dict holding every connection under BOTH directions of its key,
    ``(proto, src, sport, dst, dport) -> (conn, is_orig)``, so a packet costs one tuple and one
    lookup and its direction comes with the hit. ICMP keys have the same shape with a negative
    marker in the third slot (-1 echo by id, -2 other by type), so they never meet TCP/UDP keys.
  * An established TCP packet (no SYN/FIN/RST, its sender already active) and any UDP packet of a
    known connection take the fast lane (``FastLane.take``: from ``feed``, or straight from the
    capture decoder without a record); everything else goes to ``_slow``.
  * Expiry is decided per packet (``ts - last > timeout``), so results do not depend on when the
    amortised sweeps run; sweeps (every ``SWEEP_EVERY`` packets) only reclaim memory. A deque of
    (queued_at, conn) gives O(1) expiry and second-chance ("clock") eviction when the table
    holds ``max_live`` connections: an approximation of "close the idlest" without a heap.

Deviations from Zeek (documented because analysts cross-check with it):
  * Bad-checksum packets are processed like any other and add Zeek's 'C'/'c' (logarithmic: at 1,
    10, 100... packets); Zeek stops processing them (captures on the host see checksum offload).
  * No 't' (retransmission), 'g' (gap) or 'w' (zero window) letters: they need reassembly/window
    fields that PacketRecord does not carry. S/H, F and R repeat when their sequence number
    differs from the last one of that kind (Zeek's rule); A, D, I, Q are recorded once.
  * A SYN arriving after its SYN-ACK (two capture interfaces merged) joins the connection and
    establishes the originator, as if they had come in order.
  * An initial SYN after mid-stream data starts a new connection (Zeek: "SYN_seq_jump"), as does
    any SYN on a closed connection or a SYN whose ISN differs from the originator's first SYN.
  * ICMP connections get the UDP-style conn_state (SF/S0/SHR) and D/d history; Zeek logs OTH.
  * UDP connections refused by an ICMP unreachable get conn_state REJ (Zeek logs S0 and a separate
    ICMP connection). The ICMP error itself is NOT counted in the quoted connection's packets or
    bytes (as in Zeek): it often comes from a router or firewall, not the responder, and counting
    it would make a refused one-way UDP conversation look answered. It is counted in stats.
  * Closed TCP connections (FIN both ways, or any RST) linger ``CLOSE_LINGER`` seconds (Zeek's
    tcp_close_delay/tcp_reset_delay); later packets start a new connection.

Refusals (SPEC §4, "who refused it"): a connection counted rejected records what refused it in its
flow (Flow.refusals): the responder's RST with the RST's TTL, or the first ICMP unreachable quoting
it with its sender, type and code. The responders' TTLs on SYN-ACKs and FINs (packets that never
take the fast lane, so one process and the shares of a parallel run see the same ones) are kept per
host, bounded (HOST_TTLS_MAX), in ConversationResult.host_ttls; auditor/refusal.py compares a RST's
TTL with them once the partial results are merged.

Direction evidence ``wellknown_port``: ports rank 0 well-known (1-1023), 1 registered (1024-49151),
2 dynamic (49152-65535 and 0). When the two ranks differ, the side with the lower rank is the
server: 443 vs 51000, 443 vs 3000, 3389 vs 50000 decide; 1494 vs 40000 (both registered, as
Linux's ephemeral range is) and 123 vs 123 do not, and the next kind of evidence decides.
ICMP flows use the request type as their port: 8 (echo) or 128 (ICMPv6 echo); other ICMP types
are their own port (an unmatched unreachable is port 3); protocol is "icmp" for v4 and v6.
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from auditor.apps import APP_SNAP, UNKNOWN, AppEvidence, identify_connection
from auditor.model import (
    ACK,
    DIRECTION_EVIDENCE,
    FIN,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    PROTO_NAMES,
    RST,
    SYN,
    Connection,
    Flow,
    FlowKey,
    Lane,
    PacketRecord,
    Refusal,
    TunnelInfo,
    addr_str,
)

# Endpoint states, as Zeek's TCP_ENDPOINT_* (zeek/analyzer/protocol/tcp/TCP_Endpoint.h).
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
_CLOSING = (CLOSED, RESET)
_O_INACTIVE = (INACTIVE, PARTIAL)

# Direction evidence, as indexes into model.DIRECTION_EVIDENCE (lower = stronger).
EV_SYN, EV_SYNACK, EV_PROTOCOL, EV_CATALOG, EV_WELLKNOWN, EV_FIRST = range(6)

# History "seen" bits: originator in the low half, responder shifted by _RESP.
_S, _A, _D, _F, _R, _C, _I, _Q = (1 << i for i in range(8))
_RESP = 16
_HIST_LETTER = {}
for _i, _ch in enumerate("SADFRCIQ"):
    _HIST_LETTER[1 << _i] = _ch
    _HIST_LETTER[1 << (_i + _RESP)] = _ch.lower()
_D_BOTH = _D | (_D << _RESP)
# Any of these means the connection is past its handshake: a later initial SYN is a new one.
_NOT_HANDSHAKE = (_D | _F | _R | _I | _Q) * (1 | (1 << _RESP))
# Zeek's conn.zeek: RSTOS0 only when the history is a SYN followed by the originator's RST.
_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")
_SYN_LETTERS = {True: ("S", "H"), False: ("s", "h")}
"""History letter of a SYN (without, with ACK) by whether the originator sent it."""
_POW10 = frozenset(10**i for i in range(19))

SWEEP_EVERY = 8192
CLOSE_LINGER = 5.0
DYNAMIC_PORTS = 49152
TFTP_PORT = 69
TFTP_PENDING_MAX = 4096
FANIN_TARGETS_MAX = 100_000
HOST_TTLS_MAX = 65_536
"""Responders whose TTLs the core keeps (ConversationResult.host_ttls)."""
_ATTEMPT_STATES = frozenset(("REJ", "RSTOS0", "RSTRH", "SH", "SHR"))
_RESET_STATES = ("REJ", "RSTRH")
"""TCP states of a connection the responder's RST refused (when Flow.add counts it rejected)."""
_BROADCASTS = (b"\xff\xff\xff\xff",)
_DNS_PORTS = (53,)
_ICMP_ECHO = {IPPROTO_ICMP: (8, 0), IPPROTO_ICMPV6: (128, 129)}
_NO_TUNNELS: frozenset[str] = frozenset()
_REPLAYED_COUNTERS = ("port_reuse", "idle_splits", "icmp_errors_matched", "icmp_refusals", "icmp_errors_unmatched",
                      "tftp_transfers", "dhcp_replies_joined", "bad_checksums")
"""What the slow path counts: a chain replayed in a merge takes back what its own chunk counted."""


@dataclass
class ConversationStats:
    """What the core saw and what it had to bound. All counters add up under ``merge``."""

    packets: int = 0
    connections: int = 0
    """Connections closed into flows (including summarised ones)."""
    other_protocols: dict[str, int] = field(default_factory=dict)
    """Packets of IP protocols the core does not track, 'ipproto:50' -> n."""
    bad_checksums: int = 0
    icmp_errors_matched: int = 0
    """ICMP errors attributed to the connection they quote."""
    icmp_refusals: int = 0
    """Destination-unreachable errors that marked a connection refused."""
    icmp_errors_unmatched: int = 0
    """ICMP errors quoting nothing live: accounted as ICMP connections of their own."""
    port_reuse: int = 0
    """Connections ended by a new initial SYN on the same 5-tuple."""
    idle_splits: int = 0
    """Connections ended because a packet came after the idle timeout."""
    summarised_flows: int = 0
    summarised_connections: int = 0
    summarised_packets: int = 0
    evicted_live: int = 0
    """Live connections closed early because the live table was full (max_live)."""
    peak_live: int = 0
    dhcp_replies_joined: int = 0
    """DHCP server replies joined to the broadcast request with the same xid."""
    tftp_transfers: int = 0
    """TFTP transfers from a server's new port joined to their udp/69 request (RFC 1350)."""

    def merge(self, other: ConversationStats) -> None:
        for name in ("packets", "connections", "bad_checksums", "icmp_errors_matched", "icmp_refusals",
                     "icmp_errors_unmatched", "port_reuse", "idle_splits", "summarised_flows",
                     "summarised_connections", "summarised_packets", "evicted_live", "tftp_transfers",
                     "dhcp_replies_joined"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in other.other_protocols.items():
            self.other_protocols[k] = self.other_protocols.get(k, 0) + v
        self.peak_live = max(self.peak_live, other.peak_live)


@dataclass
class ConversationResult:
    flows: dict[FlowKey, Flow] = field(default_factory=dict)
    connections: list[Connection] = field(default_factory=list)
    """Every closed connection, only when the builder was made with keep_connections=True."""
    stats: ConversationStats = field(default_factory=ConversationStats)
    host_ttls: dict[str, int] = field(default_factory=dict)
    """Responder address -> the IP TTLs (IPv6 hop limits) of its SYN-ACKs and FINs, as a bit set
    (bit t: TTL t seen): what a RST bearing its address is compared with (auditor/refusal.py)."""
    overflowed: bool = False
    """A bound of the builder was reached: the live table (evicted_live), the flow table or a flood's
    fan-in (summarised flows), or the tables of pending TFTP and DHCP requests and of fan-in targets.
    The result is then a bounded summary whose details depend on the order packets came in, so a
    share of a parallel run (auditor/parallel.py) is no longer part of one process's result."""

    def merge(self, other: ConversationResult) -> None:
        """Combine two partial audits (e.g. two captures, or two halves of one) into this one. The
        other's flows are taken over, not copied (the shares of a parallel run mostly hold different
        flows): it is not to be used afterwards."""
        self.overflowed = self.overflowed or other.overflowed
        flows = self.flows
        for key, flow in other.flows.items():
            mine = flows.get(key)
            if mine is None:
                flows[key] = flow
            else:
                mine.merge(flow)
        self.connections.extend(other.connections)
        self.stats.merge(other.stats)
        ttls = self.host_ttls
        for addr, seen in other.host_ttls.items():
            ttls[addr] = ttls.get(addr, 0) | seen


class _Conn:
    """Live per-connection state: plain fields, read and written on the hot path."""

    __slots__ = ("bad_o", "bad_r", "chain", "data", "dead", "ev", "ff", "first", "fo", "fr", "gen", "hist", "ho", "hr",
                 "hseen", "isn", "keys",
                 "last", "marks", "oa", "oby", "op", "opk", "oprev", "os", "proto", "ra", "rby", "refused",
                 "rp", "rpk", "rprev", "rs", "rst_ttl", "timeout", "tunnels")
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
    keys: tuple[tuple[object, ...], ...]
    """Table keys of this connection: both directions, plus TFTP transfer aliases."""
    dead: bool
    """Closed (``_close``): the sweep's queue skips it without looking its key up."""
    chain: _Chain | None
    """In a chunk that does not start the run (``ConversationBuilder(chunk=True)``): the head chain this
    connection belongs to, whose packets are logged for a merge to replay (see _Chain)."""
    gen: int
    """Bumped whenever a table entry of this connection goes or changes (close, flip, a key taken
    over): a reader that cached an entry (capture/split.py) looks it up again."""


class _Run:
    """Fast-lane packets of a head chain between two logged records: per table key (one direction
    of a connection, or of a TFTP transfer or DHCP reply joined to it) the packets, IP bytes, first
    and last time and the history letters (D, A) in the order they first appeared. Their effect on
    any connection state is the same (see ConversationBuilder._apply_run): the lane takes only plain
    packets of active senders, at most CLOSE_LINGER after the connection's last one."""

    __slots__ = ("entries", "letters")

    def __init__(self) -> None:
        self.entries: dict[tuple[object, ...], list[Any]] = {}
        """Table key -> [packets, IP bytes, letter bits seen, first time, last time]."""
        self.letters: list[tuple[tuple[object, ...], int]] = []

    def add(self, key: tuple[object, ...], ts: float, ip_len: int, bit: int) -> None:
        e = self.entries.get(key)
        if e is None:
            e = self.entries[key] = [0, 0, 0, ts, ts]
        e[0] += 1
        e[1] += ip_len
        if bit and not e[2] & bit:
            e[2] |= bit
            self.letters.append((key, bit))
        if ts > e[4]:
            e[4] = ts
        elif ts < e[3]:
            e[3] = ts


class _Chain:
    """The connections of one 5-tuple from its first packet in a chunk until a full idle timeout
    passes without one (then any earlier state would have expired: what follows is the same whatever
    came before the chunk). A chunk that does not start the run cannot know whether a connection of
    the previous chunk continues into it, so it keeps, per chain, what a merge needs either way: the
    connections as this chunk closed them (``closed``, folded into flows when the previous chunk
    had no such connection), and the log of the chain's packets (records, and _Run aggregates of the
    fast lane's) to replay on the previous chunk's connection when it had one (SPEC §8)."""

    __slots__ = ("ck", "closed", "first_ts", "last_ts", "log", "proto", "run", "ttls")

    def __init__(self, ck: tuple[object, ...], proto: int, ts: float) -> None:
        self.ck = ck
        self.proto = proto
        self.first_ts = self.last_ts = ts
        self.log: list[PacketRecord | _Run] = []
        self.run: _Run | None = None
        self.closed: list[tuple[tuple[Any, ...], tuple[Any, ...], Connection | None]] = []
        """Per closed connection: ConversationBuilder._flow_for's and Flow.add's arguments, and the
        Connection when connections are kept."""
        self.ttls: dict[bytes, int] = {}
        """The responders' SYN-ACK and FIN TTLs seen on the chain (ConversationResult.host_ttls)."""


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


class FastLane(Lane):
    """A capture reader's way into the core for common packets, without a PacketRecord.

    ``take(proto, src, sport, dst, dport, ts, flags, payload_len, ip_len)`` takes a TCP/UDP packet of
    an already live connection by its fields alone and returns True; it returns False, having
    changed nothing, when the packet needs ``ConversationBuilder.feed``.

    A reader may offer only packets whose record would have no checksum error, no tunnel, no fragment
    flag and no payload that names.py reads (capture/decode.py): ``feed`` of such a record would
    itself go to ``take`` (and to the slow path, which does the same, when ``take`` declines), and
    names.py would ignore it (tests/test_conversations_lane.py). Every SWEEP_EVERY-th packet is
    declined, so the amortised sweep stays in ``feed``.

    The fused pcap walk (capture/pcapfile.py) inlines ``take`` on ``table`` with the history bits
    below, keeping the sweep countdown and its count of taken packets in locals: it calls ``hold()``
    before and ``release(countdown, taken)`` after every stretch of inlined packets, i.e. around every
    record it yields and every other call into the core. Keep the two copies in step.
    """

    __slots__ = ("_builder", "ack_bit", "data_bit", "letters", "resp_shift", "table", "take")

    def __init__(self, builder: ConversationBuilder) -> None:
        self._builder = builder
        self.table = builder._table
        self.letters = _HIST_LETTER
        self.data_bit, self.ack_bit, self.resp_shift = _D, _A, _RESP
        get = self.table.get
        stats = builder.stats
        letters = _HIST_LETTER

        def take(proto: int, src: bytes, sport: int, dst: bytes, dport: int, ts: float, flags: int,
                 plen: int, ip_len: int) -> bool:
            key = (proto, src, sport, dst, dport)
            ent = get(key)
            if ent is None or flags & 7 or builder._countdown == 1:
                return False
            c, is_orig = ent
            if ts - c.last > c.timeout or not (c.os if is_orig else c.rs):
                return False
            if plen and (c.ho if is_orig else c.hr) is None:
                return False  # a direction's first payload: the slow path keeps its first bytes
            bit = _D if plen or proto == 17 else (_A if flags & ACK else 0)
            chain = c.chain
            if chain is not None:  # a head chain of a chunk: logged (_Run) for a merge to replay
                if ts - c.last > CLOSE_LINGER:
                    return False  # a record: a run never spans a gap that may end a connection
                if ts > chain.last_ts:
                    chain.last_ts = ts
                run = chain.run
                if run is None:
                    run = chain.run = _Run()
                    chain.log.append(run)
                run.add(key, ts, ip_len, bit)
            builder._countdown -= 1
            stats.packets += 1
            if ts > c.last:
                c.last = ts
            elif ts < c.first:
                c.first = ts
            if is_orig:
                c.opk += 1
                c.oby += ip_len
            else:
                c.rpk += 1
                c.rby += ip_len
                bit <<= _RESP
            if bit and not c.hseen & bit:
                c.hseen |= bit
                c.hist.append(letters[bit])
            return True

        self.take = take

    def hold(self) -> int:
        """The sweep countdown, for a reader that counts it down itself (never below 2)."""
        return self._builder._countdown

    def release(self, countdown: int, taken: int) -> None:
        """Hand back the countdown and the number of packets taken since ``hold``."""
        self._builder._countdown = countdown
        self._builder.stats.packets += taken


class ConversationBuilder:
    """Feed PacketRecords, then ``finish()`` for the flows. Memory follows live connections."""

    def __init__(self, *, server_ports: frozenset[tuple[str, int]] = frozenset(),
                 tcp_idle_timeout: float = 300.0, udp_idle_timeout: float = 60.0,
                 icmp_idle_timeout: float = 60.0, max_live: int = 100_000, max_flows: int = 250_000,
                 flood_fanin: int = 1_000, share: int = 1,
                 keep_connections: bool = False, join_related: bool = True,
                 connection_sink: Callable[[Connection], None] | None = None, chunk: bool = False) -> None:
        # share > 1: this builder sees about 1/share of the run's conversations (one worker of
        # auditor/parallel.py), so its bounds shrink with it and the run's total stays one process's.
        share = max(1, share)
        max_live, max_flows, flood_fanin = max_live // share, max_flows // share, flood_fanin // share
        self._pending_max = max(1, TFTP_PENDING_MAX // share)
        self._targets_max = max(1, FANIN_TARGETS_MAX // share)
        self._server_ports = server_ports
        self._join = join_related
        """Join TFTP transfers and broadcast DHCP replies to their requests (off: plain 5-tuples, as
        tshark's conversation table has them)."""
        self._timeouts = {IPPROTO_TCP: tcp_idle_timeout, IPPROTO_UDP: udp_idle_timeout,
                          IPPROTO_ICMP: icmp_idle_timeout, IPPROTO_ICMPV6: icmp_idle_timeout}
        self._min_timeout = min(CLOSE_LINGER, tcp_idle_timeout, udp_idle_timeout, icmp_idle_timeout)
        self._max_live = max(1, max_live)
        self._max_flows = max(1, max_flows)
        self._max_summaries = max(16, max_flows // 16)
        self._flood_fanin = max(1, flood_fanin)
        self._fanin: dict[tuple[str, str, int], int] = {}
        self._ttls: dict[bytes, int] = {}
        """Responder (packed) -> bit set of its SYN-ACK and FIN TTLs (ConversationResult.host_ttls)."""
        self._ttls_max = max(1, HOST_TTLS_MAX // share)
        """Unanswered-attempt flows per (responder, protocol, port), for flood detection."""
        self._keep = keep_connections
        self._sink = connection_sink
        """Called with every connection as it closes (a Zeek conn.log streams them: memory stays that
        of the live connections)."""
        self._table: dict[tuple[object, ...], tuple[_Conn, bool]] = {}
        self._queue: deque[tuple[float, _Conn]] = deque()
        self._tftp: dict[tuple[bytes, bytes, int], _Conn] = {}
        self._dhcp: dict[bytes, _Conn] = {}
        """Pending broadcast DHCP requests: xid -> the connection."""
        """Pending TFTP requests: (server, client, client port) -> the udp/69 connection."""
        self._live = 0
        self._countdown = SWEEP_EVERY
        self._normal_flows = 0
        self._summaries = 0
        self.result = ConversationResult()
        self.stats = self.result.stats
        self._take = FastLane(self).take
        """The fast lane, for records too (``feed``)."""
        self._params = dict(server_ports=server_ports, tcp_idle_timeout=tcp_idle_timeout,
                            udp_idle_timeout=udp_idle_timeout, icmp_idle_timeout=icmp_idle_timeout,
                            max_live=max_live, max_flows=max_flows, flood_fanin=flood_fanin,
                            keep_connections=keep_connections, join_related=join_related)
        self._chunk = chunk
        """This builder reads a chunk that may not start the run: it keeps head chains (_Chain) for a
        merge (``absorb``) and ``end_chunk`` leaves its live connections open."""
        self._anchor: float | None = None
        """Time of the chunk's first connection: 5-tuples first seen within ``_window`` of it start
        head chains (later ones cannot continue a connection of an earlier chunk)."""
        self._window = max(tcp_idle_timeout, udp_idle_timeout, icmp_idle_timeout)
        self._seen: set[tuple[object, ...]] = set()
        """5-tuples (both directions as one, the smaller key) seen within the window."""
        self._chains: dict[tuple[object, ...], _Chain] = {}
        """Head chains still taking connections, by 5-tuple."""
        self.chains: list[_Chain] = []
        """Every head chain of this chunk whose results are not yet folded into flows, in order."""
        self.replays: dict[int, int] = {}
        """Chains of later chunks replayed here, by IP protocol of their first packet (what a merge
        found continuing across a chunk boundary)."""
        self.first_ts = float("inf")
        self.last_ts = float("-inf")
        """Time span of the connections (first and last packets), for the merge's order check."""

    @property
    def live_connections(self) -> int:
        return self._live

    # ---- feeding ------------------------------------------------------------------------------

    def feed(self, rec: PacketRecord) -> None:
        """One record. Established TCP and known UDP packets take the fast lane (``FastLane.take``:
        one dict lookup and a few integer updates); everything else goes to the slow path."""
        proto = rec.proto
        # SYN, FIN and RST never take the lane (FastLane.take declines them): straight to the slow path.
        if (proto == 6 or proto == 17) and not rec.tcp_flags & 7 and not rec.checksum_bad and rec.tunnel is None \
                and self._take(proto, rec.src, rec.sport, rec.dst, rec.dport, rec.ts, rec.tcp_flags, rec.payload_len,
                               rec.ip_len):
            return
        self.stats.packets += 1
        self._countdown -= 1
        if not self._countdown:
            self._countdown = SWEEP_EVERY
            self._sweep(rec.ts)
        self._slow(rec)

    def lane(self) -> FastLane:
        """The fast lane for a capture reader (see FastLane)."""
        return FastLane(self)

    def feed_many(self, recs: Iterable[PacketRecord]) -> None:
        """Several records, in order: the same as feeding them one at a time."""
        feed = self.feed
        for rec in recs:
            feed(rec)

    def finish(self) -> ConversationResult:
        """Close every live connection into its flow and return the result (call once). A chunk's
        builder (or the merge of chunks) folds its head chains in: nothing comes before it any more."""
        self._chunk = False
        for chain in self.chains:
            self._fold(chain)
        self.chains, self._chains, self._seen = [], {}, set()
        for key, (c, is_orig) in list(self._table.items()):
            if is_orig and c.keys[0] == key:
                self._close(c)
        self._queue.clear()
        self.result.host_ttls = {addr_str(a): seen for a, seen in self._ttls.items()}
        if self._keep:
            self.result.connections.sort(key=lambda x: (x.first_seen, x.first_frame))
        # The lane's closure holds this builder: no cycle left (audit.collect pauses the collector).
        vars(self).pop("_take", None)
        return self.result

    # ---- chunks and their merge (SPEC §8) -------------------------------------------------------

    def end_chunk(self) -> ConversationBuilder:
        """End a chunk: its live connections stay open, for the next chunk's merge (``absorb``) or
        ``finish``. The builder is then a value (picklable: a worker process sends it back)."""
        for c, _ in self._table.values():
            if c.last > self.last_ts:
                self.last_ts = c.last
        vars(self).pop("_take", None)
        return self

    def absorb(self, right: ConversationBuilder) -> ConversationBuilder:
        """Merge the chunk that comes next (``right``, ended with ``end_chunk``) into this one, exactly
        as one builder would have read both in order, and return this builder (``right`` is consumed).

        For each head chain of ``right`` (a 5-tuple seen in the first idle timeout of its chunk), its
        first packet is looked up here, as a sequential read would: when it continues a connection of
        this builder (or a TFTP/DHCP request waiting for its answer, or the connection an ICMP error
        quotes), the chain's log is replayed on that connection and the chain's own results are
        dropped; otherwise this builder's stale connection on the 5-tuple is closed as a sequential
        read would close it, and the chain's results stand. Then ``right``'s flows, counters and live
        connections are taken over. Below the table bounds the result is exactly one builder's.

        The merge is associative: chains this builder would still have to check against an earlier
        chunk stay chains (logs joined), so (a+b)+c and a+(b+c) give the same result."""
        if right._anchor is None:  # no connection at all: its counters only
            self._take_counts(right, set())
            return self
        if self._anchor is None:
            self._anchor, self._seen = right._anchor, right._seen
        dropped: set[int] = set()
        for chain in right.chains:
            first = chain.log[0]
            assert isinstance(first, PacketRecord)  # a chain starts with the record that made it
            if self._probe(first):
                self._replay_instead(chain)
                dropped.add(id(chain))
                self.replays[first.proto] = self.replays.get(first.proto, 0) + 1
            else:
                self._adopt(chain, right)
        self._take_counts(right, dropped)
        return self

    def _probe(self, rec: PacketRecord) -> bool:
        """Whether ``rec`` continues something live here (a connection, a pending TFTP or DHCP
        request, the connection an ICMP error quotes). When it does not, what a sequential read does
        before making a new connection is done: a stale connection on its 5-tuple is closed (idle
        split, or port reuse)."""
        proto = rec.proto
        if proto in (IPPROTO_TCP, IPPROTO_UDP):
            ent = self._table.get((proto, rec.src, rec.sport, rec.dst, rec.dport))
            if ent is not None and rec.ts - ent[0].last > ent[0].timeout:
                self.stats.idle_splits += 1
                self._close(ent[0])
                ent = None
            if ent is not None:
                if proto == IPPROTO_TCP and rec.tcp_flags & SYN and not self._syn_joins(ent[0], ent[1], rec):
                    self.stats.port_reuse += 1
                    self._close(ent[0])
                    return False
                return True
            if proto == IPPROTO_UDP and self._join:
                if self._tftp and self._tftp_pending(rec) is not None:
                    return True
                if rec.sport == 67 and rec.dport == 68 and self._dhcp and self._dhcp_pending(rec) is not None:
                    return True
            return False
        if proto not in _ICMP_ECHO:
            return False
        q = rec.quoted
        if q is not None and q.proto in (IPPROTO_TCP, IPPROTO_UDP):
            ent = self._table.get((q.proto, q.src, q.sport, q.dst, q.dport))
            if ent is not None and rec.ts - ent[0].last <= ent[0].timeout:
                return True
        request, reply = _ICMP_ECHO[proto]
        if rec.icmp_type in (request, reply):
            return self._lookup((proto, rec.src, -1, rec.dst, rec.icmp_id), rec.ts) is not None
        return self._lookup((proto, rec.src, -2, rec.dst, rec.icmp_type), rec.ts) is not None

    def _replay_instead(self, chain: _Chain) -> None:
        """Replay a chain of the next chunk here, in place of its own results. Its packets were
        counted there; the counters its own reading added are taken back (what a fresh builder
        replaying it counts), those of this replay added."""
        fresh = ConversationBuilder(**self._params)  # type: ignore[arg-type]
        fresh._replay(chain.log)
        mine, theirs = self.stats, fresh.stats
        for name in _REPLAYED_COUNTERS:
            setattr(mine, name, getattr(mine, name) - getattr(theirs, name))
        self._replay(chain.log)

    def _replay(self, log: list[PacketRecord | _Run]) -> None:
        for item in log:
            if type(item) is _Run:
                self._apply_run(item)
            else:
                self._slow(item)  # type: ignore[arg-type]

    def _apply_run(self, run: _Run) -> None:
        """The effect of a run of fast-lane packets: counters, times and history letters, on the
        connection each table key leads to here. The lane took them as plain packets of active
        senders within CLOSE_LINGER of the connection's last packet, so no connection ends inside the
        run and no endpoint state moves; a sender still inactive here (a responder's ACKs to a SYN it
        has not answered) would have sent only pure ACKs, whose effect on the slow path is the same.
        Chains of this builder log the part of the run that went to their connections."""
        table = self._table
        parts: dict[int, tuple[_Chain, _Run]] = {}
        for key, e in run.entries.items():
            ent = table.get(key)
            if ent is None:  # only when a bound evicted the connection in between
                self.result.overflowed = True
                continue
            c, is_orig = ent
            if is_orig:
                c.opk += e[0]
                c.oby += e[1]
            else:
                c.rpk += e[0]
                c.rby += e[1]
            if e[3] < c.first:
                c.first = e[3]
            if e[4] > c.last:
                c.last = e[4]
            chain = c.chain if self._chunk else None
            if chain is not None:
                part = parts.get(id(chain))
                if part is None:
                    part = parts[id(chain)] = (chain, _Run())
                part[1].entries[key] = e
                if e[4] > chain.last_ts:
                    chain.last_ts = e[4]
        for key, bit in run.letters:
            ent = table.get(key)
            if ent is None:
                continue
            c, is_orig = ent
            b = bit if is_orig else bit << _RESP
            if not c.hseen & b:
                c.hseen |= b
                c.hist.append(_HIST_LETTER[b])
            if c.chain is not None and id(c.chain) in parts:
                parts[id(c.chain)][1].letters.append((key, bit))
        for chain, sub in parts.values():
            chain.log.append(sub)
            chain.run = None

    def _adopt(self, chain: _Chain, right: ConversationBuilder) -> None:
        """A chain of the next chunk that starts afresh here too: its results stand. It stays a chain
        when this builder would still have to check it against an earlier chunk."""
        ck = chain.ck
        mine = self._chains.get(ck)
        if mine is not None and chain.first_ts - mine.last_ts > self._timeouts[chain.proto]:
            del self._chains[ck]  # this builder's chain ended with a full idle timeout
            mine = None
        if not self._chunk:
            self._fold(chain)
            keep: _Chain | None = None
        elif mine is not None:  # this builder's chain goes on: one log, one set of results
            mine.log.extend(chain.log)
            mine.closed.extend(chain.closed)
            for addr, bits in chain.ttls.items():
                mine.ttls[addr] = mine.ttls.get(addr, 0) | bits
            mine.last_ts = max(mine.last_ts, chain.last_ts)
            mine.run = None
            keep = mine
            if ck not in right._chains:
                del self._chains[ck]
        elif ck in self._seen or chain.first_ts - self._anchor > self._window:  # type: ignore[operator]
            self._fold(chain)
            keep = None
        else:
            keep = chain
            self.chains.append(chain)
            if ck in right._chains:
                self._chains[ck] = chain
        if keep is not chain:
            for c, _ in right._table.values():
                if c.chain is chain:
                    c.chain = keep

    def _fold(self, chain: _Chain) -> None:
        """A chain's results into the flows: nothing before it continues it."""
        for flow_args, args, conn in chain.closed:
            self._flow_for(*flow_args).add(*args)
            if conn is not None and self._keep:
                self.result.connections.append(conn)
        for addr, bits in chain.ttls.items():
            for ttl in range(bits.bit_length()):
                if bits >> ttl & 1:
                    self._ttl_seen(addr, ttl)
        chain.closed, chain.ttls = [], {}

    def _take_counts(self, right: ConversationBuilder, dropped: set[int]) -> None:
        """Take over the next chunk's flows, counters and live connections (but those of dropped
        chains, replayed here instead)."""
        result = self.result
        right.result.host_ttls = {}
        result.merge(right.result)
        for addr, bits in right._ttls.items():
            for ttl in range(bits.bit_length()):
                if bits >> ttl & 1:
                    self._ttl_seen(addr, ttl)
        self._normal_flows += right._normal_flows
        self._summaries += right._summaries
        for target, n in right._fanin.items():
            self._fanin[target] = self._fanin.get(target, 0) + n
        if right._seen is not self._seen and right._anchor is not None and self._anchor is not None \
                and right._anchor - self._anchor <= self._window:
            self._seen |= right._seen
        self.first_ts = min(self.first_ts, right.first_ts)
        self.last_ts = max(self.last_ts, right.last_ts)
        table = self._table
        moved: set[int] = set()
        for key, (c, is_orig) in right._table.items():
            if c.chain is not None and id(c.chain) in dropped:
                continue
            old = table.get(key)
            if old is not None and old[0] is not c:
                self._close(old[0])  # idle since long before: a sequential read's sweep closed it
            table[key] = (c, is_orig)
            if id(c) not in moved:
                moved.add(id(c))
                self._live += 1
                self._queue.append((c.last, c))
        for xid, c in right._dhcp.items():
            if id(c) in moved:
                self._dhcp[xid] = c
        for tkey, c in right._tftp.items():
            if id(c) in moved:
                self._tftp[tkey] = c
        if self._live > self.stats.peak_live:
            self.stats.peak_live = self._live

    def _chain_for(self, c: _Conn, proto: int, keys: tuple[tuple[object, ...], tuple[object, ...]],
                   ts: float) -> None:
        """A new connection in a chunk: part of its 5-tuple's head chain, if it has one."""
        if ts < self.first_ts:
            self.first_ts = ts
        if self._anchor is None:
            self._anchor = ts
        k0, k1 = keys
        ck = k0 if k0 <= k1 else k1
        chain = self._chains.get(ck)
        inside = ts - self._anchor <= self._window
        if chain is not None:
            if ts - chain.last_ts <= self._timeouts[proto]:
                c.chain = chain
                return
            del self._chains[ck]  # a full idle timeout since the chain's last packet: it ends
        elif inside and ck not in self._seen:
            chain = c.chain = _Chain(ck, proto, ts)
            self._chains[ck] = chain
            self.chains.append(chain)
        if inside:
            self._seen.add(ck)

    @staticmethod
    def _log(chain: _Chain, rec: PacketRecord) -> None:
        if len(rec.payload) > APP_SNAP:  # all that a replay reads of it
            rec = dataclasses.replace(rec, payload=rec.payload[:APP_SNAP])
        chain.log.append(rec)
        chain.run = None
        if rec.ts > chain.last_ts:
            chain.last_ts = rec.ts

    # ---- slow path ----------------------------------------------------------------------------

    def _slow(self, rec: PacketRecord) -> None:
        proto = rec.proto
        if rec.checksum_bad:
            self.stats.bad_checksums += 1
        if proto in (IPPROTO_TCP, IPPROTO_UDP):
            self._transport(rec, self._table.get((proto, rec.src, rec.sport, rec.dst, rec.dport)))
        elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            self._icmp(rec)
        else:
            other = self.stats.other_protocols
            name = f"ipproto:{proto}"
            other[name] = other.get(name, 0) + 1

    def _lookup(self, key: tuple[object, ...], ts: float) -> tuple[_Conn, bool] | None:
        ent = self._table.get(key)
        if ent is not None and ts - ent[0].last > ent[0].timeout:
            self.stats.idle_splits += 1
            self._close(ent[0])
            return None
        return ent

    def _transport(self, rec: PacketRecord, ent: tuple[_Conn, bool] | None) -> None:
        """A TCP/UDP packet off the fast path; ``ent`` is the live table's entry for its key."""
        proto = rec.proto
        if ent is not None and rec.ts - ent[0].last > ent[0].timeout:
            self.stats.idle_splits += 1
            self._close(ent[0])
            ent = None
        if ent is not None and proto == IPPROTO_TCP and rec.tcp_flags & SYN:
            ent = self._syn_on_existing(ent[0], ent[1], rec)
        if ent is None and proto == IPPROTO_UDP:
            if self._tftp:
                ent = self._tftp_transfer(rec)
            if ent is None and rec.sport == 67 and rec.dport == 68 and self._dhcp:
                ent = self._dhcp_reply(rec)
        if ent is None:
            ent = self._new_transport(rec)
        c, is_orig = ent
        self._account(c, is_orig, rec)
        if proto == IPPROTO_TCP:
            self._tcp_packet(c, is_orig, rec)
        else:
            self._hist_once(c, _D << (0 if is_orig else _RESP))

    def _decide(self, rec: PacketRecord) -> tuple[bool, int]:
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
        sp = sport < DYNAMIC_PORTS and (pname, sport) in self._server_ports
        dp = dport < DYNAMIC_PORTS and (pname, dport) in self._server_ports
        if sp != dp:
            return dp, EV_CATALOG
        rs, rd = _port_rank(sport), _port_rank(dport)
        if rs != rd:
            return rd < rs, EV_WELLKNOWN
        return True, EV_FIRST

    def _tftp_transfer(self, rec: PacketRecord) -> tuple[_Conn, bool] | None:
        """A TFTP server answers a read/write request from a new port (RFC 1350 §4): the transfer
        belongs to the request's udp/69 connection, as Zeek's TFTP analyzer expects it."""
        c = self._tftp_pending(rec)
        if c is None:
            return None
        del self._tftp[(rec.src, rec.dst, rec.dport)]
        from_server = (IPPROTO_UDP, rec.src, rec.sport, rec.dst, rec.dport)
        from_client = (IPPROTO_UDP, rec.dst, rec.dport, rec.src, rec.sport)
        c.keys = (*c.keys, from_server, from_client)
        self._take_over(from_server, (c, False))
        self._take_over(from_client, (c, True))
        self.stats.tftp_transfers += 1
        return c, False

    def _tftp_pending(self, rec: PacketRecord) -> _Conn | None:
        """The live udp/69 request this packet would be the transfer of (an expired one is dropped)."""
        c = self._tftp.get((rec.src, rec.dst, rec.dport))
        if c is None:
            return None
        ent = self._table.get(c.keys[0])
        if ent is None or ent[0] is not c or rec.ts - c.last > c.timeout:
            del self._tftp[(rec.src, rec.dst, rec.dport)]
            return None
        return c

    def _dhcp_pending(self, rec: PacketRecord) -> _Conn | None:
        """The live broadcast request this DHCP reply answers (an expired one is dropped)."""
        payload = rec.payload
        if len(payload) < 8 or payload[0] != 2:
            return None
        c = self._dhcp.get(payload[4:8])
        if c is None:
            return None
        ent = self._table.get(c.keys[0])
        if ent is None or ent[0] is not c or rec.ts - c.last > c.timeout:
            del self._dhcp[payload[4:8]]
            return None
        return c

    def _dhcp_reply(self, rec: PacketRecord) -> tuple[_Conn, bool] | None:
        """A DHCP server answers a broadcast request (from 0.0.0.0 to 255.255.255.255) from its own
        address: the reply joins the request (same xid, RFC 2131 §4.1) and names the server as the
        responder, so the flow is client -> DHCP server udp/67, as the catalog documents it."""
        c = self._dhcp_pending(rec)
        if c is None:
            return None
        if c.ra in _BROADCASTS:
            c.ra = rec.src
        from_server = (IPPROTO_UDP, rec.src, rec.sport, rec.dst, rec.dport)
        to_server = (IPPROTO_UDP, rec.dst, rec.dport, rec.src, rec.sport)
        c.keys = (*c.keys, from_server, to_server)
        self._take_over(from_server, (c, False))
        self._table.setdefault(to_server, (c, True))
        self.stats.dhcp_replies_joined += 1
        return c, False

    def _new_transport(self, rec: PacketRecord) -> tuple[_Conn, bool]:
        proto = rec.proto
        sender_orig, ev = self._decide(rec)
        if sender_orig:
            oa, op, ra, rp = rec.src, rec.sport, rec.dst, rec.dport
        else:
            oa, op, ra, rp = rec.dst, rec.dport, rec.src, rec.sport
        keys = ((proto, oa, op, ra, rp), (proto, ra, rp, oa, op))
        c = self._create(proto, oa, op, ra, rp, keys, ev, rec, sender_orig)
        if not self._join or proto != IPPROTO_UDP:
            pass
        elif rp == TFTP_PORT and sender_orig:
            if len(self._tftp) >= self._pending_max:
                self.result.overflowed = True
                del self._tftp[next(iter(self._tftp))]
            self._tftp[(ra, oa, op)] = c
        elif (rp == 67 and sender_orig and ra in _BROADCASTS
              and len(rec.payload) >= 8 and rec.payload[0] == 1):
            if len(self._dhcp) >= self._pending_max:
                self.result.overflowed = True
                del self._dhcp[next(iter(self._dhcp))]
            self._dhcp[rec.payload[4:8]] = c
        if proto == IPPROTO_TCP:
            c.os = c.rs = c.oprev = c.rprev = INACTIVE
        return c, sender_orig

    def _create(self, proto: int, oa: bytes, op: int, ra: bytes, rp: int,
                keys: tuple[tuple[object, ...], tuple[object, ...]], ev: int, rec: PacketRecord,
                sender_orig: bool) -> _Conn:
        if self._live >= self._max_live:
            self._evict(rec.ts)
        c = _Conn()
        c.proto, c.oa, c.op, c.ra, c.rp, c.keys, c.ev = proto, oa, op, ra, rp, keys, ev
        c.first = c.last = rec.ts
        c.ff = (rec.input_index, rec.frame)
        c.opk = c.oby = c.rpk = c.rby = c.hseen = c.bad_o = c.bad_r = 0
        c.hist = [] if sender_orig else ["^"]  # Zeek marks a flipped direction with '^'
        # UDP/ICMP have no endpoint states: a non-zero state lets them take the fast path.
        c.os = c.rs = c.oprev = c.rprev = ESTABLISHED
        c.isn = c.rst_ttl = -1
        c.marks = None
        c.data = False
        c.refused = None
        c.ho = c.hr = None
        c.fo = c.fr = c.ff
        c.tunnels = None
        c.timeout = self._timeouts[proto]
        c.gen = 0
        c.dead = False
        c.chain = None
        if self._chunk:
            self._chain_for(c, proto, keys, rec.ts)
        # keys[1] first: for a host talking to itself on one port both keys are the same, and the
        # entry must then be the initiator's (finish() closes connections by their orig entry).
        table = self._table
        if keys[0] in table or keys[1] in table:
            self._take_over(keys[1], (c, False))
            self._take_over(keys[0], (c, True))
        else:  # new keys, the common case: nobody's entry to take over
            table[keys[1]] = (c, False)
            table[keys[0]] = (c, True)
        self._queue.append((rec.ts, c))
        self._live += 1
        if self._live > self.stats.peak_live:
            self.stats.peak_live = self._live
        return c

    def _account(self, c: _Conn, is_orig: bool, rec: PacketRecord) -> None:
        ts = rec.ts
        if c.chain is not None:
            self._log(c.chain, rec)
        if ts > c.last:
            c.last = ts
        elif ts < c.first:
            c.first = ts
        if is_orig:
            c.opk += 1
            c.oby += rec.ip_len
            if rec.payload_len and c.ho is None:
                c.ho, c.fo = rec.payload[:APP_SNAP], (rec.input_index, rec.frame)
        else:
            c.rpk += 1
            c.rby += rec.ip_len
            if rec.payload_len and c.hr is None:
                c.hr, c.fr = rec.payload[:APP_SNAP], (rec.input_index, rec.frame)
        if rec.checksum_bad:
            if is_orig:
                c.bad_o += 1
                n, bit = c.bad_o, _C
            else:
                c.bad_r += 1
                n, bit = c.bad_r, _C << _RESP
            if n in _POW10:  # Zeek records 'C' logarithmically: at 1, 10, 100... packets
                c.hist.append(_HIST_LETTER[bit])
                c.hseen |= bit
        if rec.tunnel is not None:
            if c.tunnels is None:
                c.tunnels = set()
            c.tunnels.add(rec.tunnel)

    # ---- TCP ----------------------------------------------------------------------------------

    @staticmethod
    def _syn_joins(c: _Conn, is_orig: bool, rec: PacketRecord) -> bool:
        """Whether a SYN or SYN-ACK on a live key belongs to its connection (else: port reuse)."""
        if rec.tcp_flags & ACK:
            return True
        if c.os == RESET or c.rs == RESET or (c.os == CLOSED and c.rs == CLOSED):
            return False
        if c.isn >= 0:
            return is_orig and rec.seq == c.isn  # a retransmitted SYN
        return not c.hseen & _NOT_HANDSHAKE  # the SYN came after its SYN-ACK or ACK (reordered)

    def _syn_on_existing(self, c: _Conn, is_orig: bool, rec: PacketRecord) -> tuple[_Conn, bool] | None:
        """A SYN or SYN-ACK on a live key: same connection (maybe flipped), or None for a new one."""
        if not self._syn_joins(c, is_orig, rec):
            self.stats.port_reuse += 1
            self._close(c)
            return None
        handshake_only = not c.hseen & _NOT_HANDSHAKE
        if rec.tcp_flags & ACK:
            # SYN-ACK: its receiver is the initiator. Flip only while nothing but handshake was seen.
            if c.ev > EV_SYNACK and handshake_only:
                if is_orig:
                    self._flip(c)
                    is_orig = False
                c.ev = EV_SYNACK
            return c, is_orig
        if c.isn >= 0:
            return c, is_orig  # retransmitted SYN
        # The SYN came after its SYN-ACK or ACK (reordered capture): it settles the direction.
        if not is_orig:
            self._flip(c)
            is_orig = True
        c.ev = EV_SYN
        return c, is_orig

    def _take_over(self, key: tuple[object, ...], ent: tuple[_Conn, bool]) -> None:
        """Put ``ent`` in the live table under ``key``; a connection that had the key gets a new gen."""
        old = self._table.get(key)
        if old is not None:
            old[0].gen += 1
        self._table[key] = ent

    def _flip(self, c: _Conn) -> None:
        c.oa, c.ra, c.op, c.rp = c.ra, c.oa, c.rp, c.op
        c.opk, c.rpk, c.oby, c.rby = c.rpk, c.opk, c.rby, c.oby
        c.os, c.rs, c.oprev, c.rprev = c.rs, c.os, c.rprev, c.oprev
        c.bad_o, c.bad_r = c.bad_r, c.bad_o
        c.ho, c.hr, c.fo, c.fr = c.hr, c.ho, c.fr, c.fo
        low = (1 << _RESP) - 1
        c.hseen = ((c.hseen & low) << _RESP) | (c.hseen >> _RESP)
        if c.marks is not None:
            c.marks = c.marks[3:] + c.marks[:3]
        c.keys = (c.keys[1], c.keys[0])
        self._table[c.keys[1]] = (c, False)
        self._table[c.keys[0]] = (c, True)
        c.gen += 1
        c.hist.append("^")

    def _hist_once(self, c: _Conn, bit: int) -> None:
        if not c.hseen & bit:
            c.hseen |= bit
            c.hist.append(_HIST_LETTER[bit])

    def _tcp_packet(self, c: _Conn, is_orig: bool, rec: PacketRecord) -> None:
        flags, plen = rec.tcp_flags, rec.payload_len
        syn, fin, rst, ack = flags & SYN, flags & FIN, flags & RST, flags & ACK
        shift, base = (0, 0) if is_orig else (_RESP, 3)
        # History, as Zeek's update_history (TCPSessionAdapter.cc).
        nflags = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if nflags == 1:
            # S/H, F, R: recorded again when their sequence number differs from the last one.
            if syn:
                bit, slot, value = _S << shift, base, rec.seq
                letter = _SYN_LETTERS[is_orig][1 if ack else 0]
            elif fin:
                bit, slot, value = _F << shift, base + 1, (rec.seq + plen) & 0xFFFFFFFF  # after its data
                letter = "F" if is_orig else "f"
            else:
                bit, slot, value = _R << shift, base + 2, rec.seq
                letter = "R" if is_orig else "r"
            marks = c.marks
            if marks is None:
                marks = c.marks = [-1] * 6
            if not c.hseen & bit:
                c.hseen |= bit
                c.hist.append(letter)
            elif marks[slot] != value:
                c.hist.append(letter)
            marks[slot] = value
        elif nflags:
            self._hist_once(c, (_I if fin and rst else _Q) << shift)
        elif plen:
            self._hist_once(c, _D << shift)
        elif ack:
            self._hist_once(c, _A << shift)
        if plen and not rst:
            c.data = True
        if syn and not ack and is_orig and c.isn < 0:
            c.isn = rec.seq
        if not is_orig and rec.ttl >= 0:
            # The responder's TTL: of its first RST, and of its SYN-ACKs and FINs (never laned, so
            # seen alike by one process and by the shares of a parallel run) for comparison.
            if rst:
                if c.rst_ttl < 0:
                    c.rst_ttl = rec.ttl
            elif syn or fin:
                if c.chain is not None:
                    ttls = c.chain.ttls
                    ttls[rec.src] = ttls.get(rec.src, 0) | 1 << rec.ttl
                else:
                    self._ttl_seen(rec.src, rec.ttl)
        # Endpoint state machine, as Zeek's UpdateStateMachine.
        if is_orig:
            es, ep, ps, pp = c.os, c.oprev, c.rs, c.rprev
        else:
            es, ep, ps, pp = c.rs, c.rprev, c.os, c.oprev
        if es == INACTIVE:
            if syn:
                if is_orig:
                    if ack:
                        es, ep = SYN_ACK_SENT, es
                    elif ps == ESTABLISHED:
                        es, ep = ESTABLISHED, es  # SYN seen after its SYN-ACK
                    else:
                        es, ep = SYN_SENT, es
                else:
                    if ps == SYN_SENT:
                        ps, pp = ESTABLISHED, ps
                    es, ep = ESTABLISHED, es
            if fin:
                es, ep = CLOSED, es
            if rst:
                es, ep = RESET, es
            if es == INACTIVE:
                if not is_orig and plen == 0 and c.os == SYN_SENT:
                    pass  # an ACK of the SYN before the SYN-ACK is no partial connection
                elif ack and ps == ESTABLISHED:
                    es, ep = ESTABLISHED, es  # missed the SYN, saw the SYN-ACK and now an ACK
                else:
                    es, ep = PARTIAL, es
        elif es in (SYN_SENT, SYN_ACK_SENT):
            if fin:
                es, ep = CLOSED, es
            if rst:
                es, ep = RESET, es
        elif es in (PARTIAL, ESTABLISHED):
            if syn and es == PARTIAL and ps == INACTIVE and not ack:
                es, ep = SYN_SENT, es
            if fin and not rst:
                es, ep = CLOSED, es
                if ps == RESET and pp == CLOSED:
                    ps, pp = CLOSED, ps  # FIN then RST from the peer was a normal close
            if rst:
                es, ep = RESET, es
        elif es == CLOSED and rst and ps != CLOSED:
            es, ep = RESET, es
        if is_orig:
            c.os, c.oprev, c.rs, c.rprev = es, ep, ps, pp
        else:
            c.rs, c.rprev, c.os, c.oprev = es, ep, ps, pp
        if c.os == RESET or c.rs == RESET or (c.os == CLOSED and c.rs == CLOSED):
            c.timeout = min(c.timeout, CLOSE_LINGER)

    def _ttl_seen(self, addr: bytes, ttl: int) -> None:
        ttls = self._ttls
        seen = ttls.get(addr)
        if seen is None:
            if len(ttls) >= self._ttls_max:
                self.result.overflowed = True  # a host past the bound: its RSTs' TTL check says unknown
                return
            ttls[addr] = 1 << ttl
        elif not seen >> ttl & 1:
            ttls[addr] = seen | 1 << ttl

    def _tcp_conn_state(self, c: _Conn, history: str) -> str:
        """Zeek's conn_state() (base/protocols/conn/main.zeek), from the two endpoint states."""
        os, rs = c.os, c.rs
        o_inactive, r_inactive = os in _O_INACTIVE, rs in _O_INACTIVE
        if rs == RESET:
            size0 = not c.data and not c.hseen & _D_BOTH
            if os in (SYN_SENT, SYN_ACK_SENT) or (os == RESET and size0):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os == RESET:
            if r_inactive:
                return "RSTOS0" if _RSTOS0.fullmatch(history) else "OTH"
            return "RSTO"
        if os == CLOSED and rs == CLOSED:
            return "SF"
        if os == CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == CLOSED:
            return "SHR" if o_inactive else "S3"
        if os == SYN_SENT and rs == INACTIVE:
            return "S0"
        if os == ESTABLISHED and rs == ESTABLISHED:
            return "S1"
        return "OTH"

    # ---- ICMP ---------------------------------------------------------------------------------

    def _icmp(self, rec: PacketRecord) -> None:
        proto, itype = rec.proto, rec.icmp_type
        if rec.quoted is not None:
            if self._icmp_error(rec):
                return
            self.stats.icmp_errors_unmatched += 1
        request, reply = _ICMP_ECHO[proto]
        if itype in (request, reply):
            ent = self._lookup((proto, rec.src, -1, rec.dst, rec.icmp_id), rec.ts)
            if ent is None:
                sender_orig = itype == request
                oa, ra = (rec.src, rec.dst) if sender_orig else (rec.dst, rec.src)
                keys = ((proto, oa, -1, ra, rec.icmp_id), (proto, ra, -1, oa, rec.icmp_id))
                conn = self._create(proto, oa, rec.icmp_id, ra, request, keys, EV_PROTOCOL, rec, sender_orig)
                ent = conn, sender_orig
        else:
            ent = self._lookup((proto, rec.src, -2, rec.dst, itype), rec.ts)
            if ent is None:
                keys = ((proto, rec.src, -2, rec.dst, itype), (proto, rec.dst, -2, rec.src, itype))
                ent = self._create(proto, rec.src, 0, rec.dst, itype, keys, EV_FIRST, rec, True), True
        c, is_orig = ent
        self._account(c, is_orig, rec)
        self._hist_once(c, _D << (0 if is_orig else _RESP))

    def _icmp_error(self, rec: PacketRecord) -> bool:
        """Attribute an ICMP error to the live connection whose packet it quotes."""
        q = rec.quoted
        if q is None or q.proto not in (IPPROTO_TCP, IPPROTO_UDP):
            return False  # a quoted echo carries no id here: cannot be matched reliably
        ent = self._table.get((q.proto, q.src, q.sport, q.dst, q.dport))
        if ent is None or rec.ts - ent[0].last > ent[0].timeout:
            return False
        c, quoted_from_orig = ent
        if c.chain is not None:
            self._log(c.chain, rec)
        self.stats.icmp_errors_matched += 1
        # Destination unreachable (ICMPv4 type 3, ICMPv6 type 1), except "fragmentation needed"
        # (v4 code 4, RFC 1191 path-MTU discovery), which is no refusal. Only a refusal of what
        # the initiator sent refuses the connection; a responder's bounced reply does not.
        unreach = (rec.icmp_type == 3 and rec.icmp_code != 4) if rec.proto == IPPROTO_ICMP \
            else rec.icmp_type == 1
        if unreach and quoted_from_orig:
            if c.refused is None:
                c.refused = (rec.src, rec.icmp_type, rec.icmp_code)
            self.stats.icmp_refusals += 1
        return True

    # ---- closing, flows, memory -----------------------------------------------------------------

    def _close(self, c: _Conn) -> None:
        table = self._table
        c.dead = True
        keys = c.keys
        ent = table.get(keys[0])
        if ent is None or ent[0] is not c:
            return  # already closed
        del table[keys[0]]
        for key in keys[1:]:
            ent = table.get(key)
            if ent is not None and ent[0] is c:
                del table[key]
        self._live -= 1
        c.gen += 1
        history = "".join(c.hist)
        proto = c.proto
        refused = c.refused
        if proto == IPPROTO_TCP:
            state = self._tcp_conn_state(c, history)
        elif refused is not None:
            state = "REJ"
        elif c.opk:
            state = "SF" if c.rpk else "S0"
        else:
            state = "SHR" if c.rpk else "OTH"
        pname, orig_h, resp_h = PROTO_NAMES[proto], addr_str(c.oa), addr_str(c.ra)
        tunnels = frozenset(_tunnel_text(t) for t in c.tunnels) if c.tunnels else _NO_TUNNELS
        evidence = DIRECTION_EVIDENCE[c.ev]
        # Who refused it (Flow.add keeps it when the connection counts as rejected): the responder's
        # RST, else the ICMP error. A RST always bears the responder's address; its TTL is judged
        # later, against the responder's TTLs of the whole run (auditor/refusal.py).
        refusal = None
        if proto == IPPROTO_TCP and state in _RESET_STATES:
            refusal = Refusal("rst", resp_h, -1, -1, c.rst_ttl, True)
        elif refused is not None:
            refusal = Refusal("icmp", addr_str(refused[0]), refused[1], refused[2], -1, refused[0] == c.ra)
        app: AppEvidence | None = None
        if (c.ho or c.hr) and proto != IPPROTO_ICMP and proto != IPPROTO_ICMPV6:
            app = identify_connection(proto, c.op, c.rp, c.ho, c.fo, c.hr, c.fr)
        args = (pname, state, history, c.opk, c.oby, c.rpk, c.rby, c.first, c.last, c.ff, evidence,
                c.bad_o + c.bad_r, refused is not None, tunnels, refusal, app)
        chain = c.chain if self._chunk else None
        if chain is None:
            # Straight into the flow: a Connection object is built only when connections are kept
            # (it cost ~8 % of the per-connection work).
            self._flow_for(orig_h, resp_h, pname, c.rp, c.rpk, state, c.opk).add(*args)
        conn = None
        if self._keep or self._sink is not None:
            conn = Connection(
                protocol=pname, orig_h=orig_h, orig_p=c.op, resp_h=resp_h, resp_p=c.rp, first_seen=c.first,
                last_seen=c.last, first_frame=c.ff, orig_pkts=c.opk, orig_bytes=c.oby, resp_pkts=c.rpk,
                resp_bytes=c.rby, conn_state=state, history=history, direction_evidence=evidence,
                bad_checksums=c.bad_o + c.bad_r, icmp_refused=refused is not None, tunnels=tunnels,
                refusal=refusal, app_protocol=app.protocol if app is not None else UNKNOWN, app_evidence=app)
            if self._keep and chain is None:
                self.result.connections.append(conn)
            if self._sink is not None:
                self._sink(conn)
        if chain is not None:
            chain.closed.append(((orig_h, resp_h, pname, c.rp, c.rpk, state, c.opk), args, conn))

    def _flow_for(self, orig_h: str, resp_h: str, pname: str, resp_p: int, resp_pkts: int, state: str,
                  orig_pkts: int) -> Flow:
        """The flow a closing connection belongs to (made if new), or the flood summary it goes to."""
        stats = self.stats
        stats.connections += 1
        flows = self.result.flows
        key = FlowKey(orig_h, resp_h, pname, resp_p)
        flow = flows.get(key)
        if flow is None:
            # A flood is millions of unanswered attempts from different sources to one service: once
            # a service has had flood_fanin of them, further ones are summarised, while answered
            # conversations (and the few failing attempts of a real deployment) keep their own flows.
            allowed = self._normal_flows < self._max_flows
            if allowed and (resp_pkts == 0 or state in _ATTEMPT_STATES):
                target = (resp_h, pname, resp_p)
                seen = self._fanin.get(target, 0)
                if seen >= self._flood_fanin:
                    allowed = False
                elif len(self._fanin) < self._targets_max or seen:
                    self._fanin[target] = seen + 1
                else:
                    self.result.overflowed = True  # a target past the table's bound is not counted
            if allowed:
                self._normal_flows += 1
                flow = flows[key] = Flow(key)
            else:
                # Flow table full: aggregate per (responder, protocol, port) with initiator '*';
                # past a second bound, per protocol only, so a spoofed flood stays bounded.
                self.result.overflowed = True
                key = FlowKey("*", resp_h, pname, resp_p)
                flow = flows.get(key)
                if flow is None and self._summaries >= self._max_summaries:
                    key = FlowKey("*", "*", pname, 0)
                    flow = flows.get(key)
                if flow is None:
                    self._summaries += 1
                    stats.summarised_flows += 1
                    flow = flows[key] = Flow(key, summarised=True)
                stats.summarised_connections += 1
                stats.summarised_packets += orig_pkts + resp_pkts
        return flow

    def _sweep(self, clock: float) -> None:
        """Close connections idle past their timeout. Amortised O(1): each live connection is
        looked at about once per CLOSE_LINGER seconds of capture time."""
        queue = self._queue
        limit = clock - self._min_timeout
        while queue and queue[0][0] < limit:
            _, c = queue.popleft()
            if c.dead:
                continue  # closed since it was queued
            if clock - c.last > c.timeout:
                self._close(c)
            else:
                queue.append((clock, c))
        if len(queue) > 4 * self._live + 1024:
            self._queue = deque(e for e in queue if not e[1].dead)

    def _evict(self, clock: float) -> None:
        """The live table is full: close one of the idlest connections (second-chance order)."""
        queue = self._queue
        chances = 16
        while self._live >= self._max_live and queue:
            queued_at, c = queue.popleft()
            if c.dead:
                continue
            if clock - c.last > c.timeout:
                self._close(c)
            elif c.last > queued_at and chances:
                chances -= 1
                queue.append((c.last, c))
            else:
                self.result.overflowed = True
                self.stats.evicted_live += 1
                self._close(c)
