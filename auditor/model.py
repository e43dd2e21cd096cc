"""Shared data types: what flows between the layers.

capture/ produces PacketRecord; conversations/ turns them into Connection and Flow;
catalog/ produces FlowRule (auditor.catalog.rule); classify.py produces FlowVerdict and RuleStatus.
No I/O here.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, TypeVar, dataclass_transform

UNKNOWN: Final = "unknown"
"""The application protocol of a connection or flow whose payload was absent or not recognised (apps.py)."""


class NameObservation(NamedTuple):
    """A name tied to an address (auditor/names.py). A NamedTuple, not a frozen dataclass: a capture
    ties tens of thousands, and a tuple is made in a third of the time. Here, not in names.py, so that
    one class serves both builds of nametable.py (as AppEvidence does for apps.py)."""

    name: str
    """Lowercased, no trailing dot, at most max_name_len characters; still hostile: escape it."""
    address: str
    """The address the name was tied to (text)."""
    source: str
    """'dns' (A/AAAA owner), 'dns-cname' (a name whose CNAME chain led there), 'sni', 'http-host'."""
    input_index: int
    frame: int
    """Evidence: where in which input the name was seen."""


class AppEvidence(NamedTuple):
    """Why a connection was identified as ``protocol`` (apps.identify_connection): which bytes, which
    direction, which frame. Here, not in apps.py, so that one class serves both builds of apps.py
    (auditor/capture/native.py compiles it)."""

    protocol: str
    direction: str
    """'orig' (the initiator's first payload) or 'resp' (the responder's)."""
    frame: tuple[int, int]
    """(input_index, frame) of the packet that carried the bytes."""
    head: str
    """The first bytes (at most 16) in hex."""
    detail: str = ""
    """A short printable summary: 'SSH-2.0-OpenSSH_9.6', 'POST /Citrix/CdsController/IRegistrar'."""


# IP protocol numbers the core understands.
# Constants are Final: the compiled modules (auditor/capture/native.py) then read them as C constants
# or statics, not by a look-up in a module's dict each time.
IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_ICMPV6: Final = 58

PROTO_NAMES: Final = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp", IPPROTO_ICMPV6: "icmp"}

# TCP flag bits.
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20

# How many bytes of transport payload a record carries (names and protocol evidence need no more).
PAYLOAD_SNAP: Final = 2048


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen_rows(cls: type[_T]) -> type[_T]:
    """For the records made once per flow (classify.FlowVerdict, report.model.FlowRow): frozen to the
    type checker, a plain slotted dataclass at run time. A frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__``, about 0.1 µs a field: for FlowRow's 41 fields, half of what
    building a row costs, and every renderer builds every row. Neither is ever hashed (they hold
    dicts and flows)."""
    return dataclass(slots=True)(cls)


_ADDR_CACHE: dict[bytes, str] = {}
_ADDR_CACHE_MAX = 1 << 16


def addr_str(packed: bytes) -> str:
    """Packed 4- or 16-byte address -> canonical text (IPv6 compressed). Cached: the same hosts
    close thousands of connections."""
    text = _ADDR_CACHE.get(packed)
    if text is None:
        text = socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)
        if len(_ADDR_CACHE) >= _ADDR_CACHE_MAX:
            _ADDR_CACHE.clear()
        _ADDR_CACHE[packed] = text
    return text


@dataclass(slots=True, frozen=True)
class QuotedPacket:
    """The packet an ICMP error quotes (its first header bytes), so the error joins that conversation."""

    src: bytes
    """Packed source address of the quoted (original) packet."""
    dst: bytes
    """Packed destination address of the quoted packet."""
    proto: int
    """IP protocol of the quoted packet."""
    sport: int
    """Source port of the quoted packet (0 if not TCP/UDP)."""
    dport: int
    """Destination port of the quoted packet (0 if not TCP/UDP)."""


@dataclass(slots=True, frozen=True)
class TunnelInfo:
    """The outermost encapsulation an audited (inner) packet arrived in."""

    kind: str
    """'vxlan', 'geneve', 'gre', 'erspan2', 'erspan3', 'ipip' (IPv4/IPv6 in IP), 'pim' (PIM Register),
    'wccp' (WCCP redirection over GRE)."""
    outer_src: bytes
    """Packed outer source address."""
    outer_dst: bytes
    """Packed outer destination address."""
    vni: int = 0
    """VXLAN/Geneve VNI, GRE key or ERSPAN session id (0 if none)."""


@dataclass(slots=True)
class PacketRecord:
    """One decoded IP packet: the unit the conversation core consumes.

    Built by capture/ (or by tests, in memory). Addresses are packed bytes so that the hot path
    never formats text; the core converts them once per connection.
    """

    input_index: int
    """Which input of the run (0-based, in the order given)."""
    frame: int
    """1-based frame number inside that input, as tshark and Wireshark number them."""
    ts: float
    """Capture timestamp, seconds since the epoch."""
    src: bytes
    """Packed source address (4 bytes IPv4, 16 bytes IPv6)."""
    dst: bytes
    """Packed destination address."""
    proto: int
    """IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, anything else is counted by the core)."""
    ip_len: int
    """Bytes of the IP packet as on the wire (IPv4 total length; IPv6 40 + payload length)."""
    sport: int = 0
    """TCP/UDP source port (0 for ICMP and others)."""
    dport: int = 0
    """TCP/UDP destination port."""
    tcp_flags: int = 0
    """TCP flag byte (FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10)."""
    seq: int = 0
    """TCP sequence number."""
    ack: int = 0
    """TCP acknowledgement number."""
    payload_len: int = 0
    """Transport payload length in bytes (as on the wire, not as captured)."""
    payload: bytes = b""
    """The first captured bytes of the transport payload, at most PAYLOAD_SNAP."""
    icmp_type: int = -1
    """ICMP/ICMPv6 type, -1 when not ICMP."""
    icmp_code: int = -1
    """ICMP/ICMPv6 code, -1 when not ICMP."""
    icmp_id: int = 0
    """ICMP echo identifier (echo request/reply only)."""
    quoted: QuotedPacket | None = None
    """For ICMP errors (unreachable, time exceeded...): the packet quoted in the error."""
    checksum_bad: bool = False
    """A transport checksum was verified and found wrong (counted, never dropped: offload)."""
    tunnel: TunnelInfo | None = None
    """The encapsulation this packet was found inside, if any."""
    fragment: bool = False
    """The packet is an IP fragment (ports come from the first fragment where it was seen)."""
    ttl: int = -1
    """The audited IP header's TTL (IPv6: hop limit) as captured, -1 when unknown. Only records carry
    it (the fast lane's packets never need it): the core compares a RST's with its sender's SYN-ACKs
    and FINs to tell a middlebox's injected RST from the responder's own."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as the constructor's arguments (a chunk's logs travel from a worker process).
        return PacketRecord, (self.input_index, self.frame, self.ts, self.src, self.dst, self.proto, self.ip_len,
                              self.sport, self.dport, self.tcp_flags, self.seq, self.ack, self.payload_len,
                              self.payload, self.icmp_type, self.icmp_code, self.icmp_id, self.quoted,
                              self.checksum_bad, self.tunnel, self.fragment, self.ttl)


class Outcome(enum.StrEnum):
    """How a flow's connections fared (SPEC §3)."""

    ESTABLISHED = "established"
    REJECTED = "rejected"
    UNANSWERED = "unanswered"
    ONE_WAY = "one-way"


class Classification(enum.StrEnum):
    EXPECTED = "expected"
    UNEXPECTED = "unexpected"
    UNMAPPED = "unmapped"


class RuleState(enum.StrEnum):
    OBSERVED = "observed"
    FAILING = "failing"
    MISSING = "missing"
    COVERED = "covered"
    """Not observed, but another member of its alternative group stands for it (SPEC §4)."""
    NOT_OBSERVABLE = "not-observable"
    NOT_APPLICABLE = "not-applicable"


# Strength order of direction evidence (strongest first), SPEC §3.
DIRECTION_EVIDENCE: Final = ("syn", "synack", "protocol", "catalog_port", "wellknown_port", "first_packet")


class Refusal(NamedTuple):
    """What refused one connection, as the core saw it; judged for the reports by auditor/refusal.py,
    against the run's TTLs of the responder (ConversationResult.host_ttls).

    A NamedTuple: it is a dict key of Flow.refusals, and tuples order, hash and pickle in C."""

    kind: str
    """'icmp' (a destination unreachable quoting the connection) or 'rst' (the responder's address
    reset it); 'other' only in Flow.refusals' overflow entry."""
    sender: str
    """Address of the ICMP error's sender, or the responder's (a RST always bears it)."""
    icmp_type: int = -1
    """ICMP type: 3 (IPv4) or 1 (ICMPv6) destination unreachable; -1 for a RST."""
    icmp_code: int = -1
    """ICMP code; -1 for a RST."""
    ttl: int = -1
    """The RST's IP TTL (IPv6: hop limit) as captured; -1 for ICMP, or unknown."""
    from_responder: bool = False
    """The sender is the connection's responder (always, for a RST)."""


REFUSALS_MAX = 8
"""Distinct refusals kept per flow; the rest are counted under REFUSAL_OTHER."""
REFUSAL_OTHER = Refusal("other", "")
"""Flow.refusals' entry for connections refused in ways beyond the REFUSALS_MAX kept."""


@dataclass(slots=True)
class Connection:
    """One bidirectional transport conversation (TCP/UDP 5-tuple, or ICMP by addresses, type and id)."""

    protocol: str
    """'tcp', 'udp' or 'icmp'."""
    orig_h: str
    """Initiator address (text)."""
    orig_p: int
    """Initiator port (ICMP: the echo id, or 0)."""
    resp_h: str
    """Responder address (text)."""
    resp_p: int
    """Responder port (ICMP: the request type, e.g. 8 for echo)."""
    first_seen: float
    last_seen: float
    first_frame: tuple[int, int]
    """(input_index, frame) of the connection's first packet."""
    orig_pkts: int = 0
    orig_bytes: int = 0
    """IP bytes sent by the initiator."""
    resp_pkts: int = 0
    resp_bytes: int = 0
    conn_state: str = "OTH"
    """Zeek conn_state (TCP); for UDP/ICMP: 'SF' answered, 'S0' not answered, 'REJ' ICMP-refused."""
    history: str = ""
    """Zeek-style history string."""
    direction_evidence: str = "first_packet"
    """One of DIRECTION_EVIDENCE."""
    bad_checksums: int = 0
    icmp_refused: bool = False
    """An ICMP unreachable quoting this connection's traffic was seen."""
    tunnels: frozenset[str] = frozenset()
    """Tunnel descriptions ('vxlan 10.0.0.1->10.0.0.2 vni 42') the packets arrived in."""
    refusal: Refusal | None = None
    """Who refused the connection, when it counts as rejected (see Flow.refusals)."""
    app_protocol: str = UNKNOWN
    """The application protocol its first payload bytes showed (auditor/apps.py), or 'unknown'."""
    app_evidence: AppEvidence | None = None
    """Which bytes showed it (None: no payload, or none recognised)."""


class FlowKey(NamedTuple):
    """The audit unit's identity: (initiator, responder, protocol, responder port).

    A NamedTuple, not a dataclass: it is hashed for every closed connection and sorted for every
    report, and tuples do both in C."""

    initiator: str
    responder: str
    protocol: str
    port: int


_TCP_ESTABLISHED = frozenset(("SF", "S1", "S2", "S3", "RSTO", "RSTR"))


class SharedCounts(dict[str, int]):
    """A tally of Flow.direction_evidence or Flow.conn_states that flows with the same tally share
    once they are final (``share_counts``). Read as any dict; Flow.add and Flow.merge give their flow
    a copy of its own before they change it."""

    __slots__ = ()


def share_counts(flows: Iterable[Flow]) -> None:
    """Make final flows with equal tallies share one copy of each (insertion order kept): two dicts
    of ~184 bytes a flow, where an audit of many hosts holds hundreds of thousands of flows whose
    tallies are a few dozen distinct ones ({"syn": 1}, {"SF": 1}...)."""
    seen: dict[tuple[tuple[str, int], ...], SharedCounts] = {}
    for f in flows:
        ev, states = f.direction_evidence, f.conn_states
        key = tuple(ev.items())
        one = seen.get(key)
        if one is None:
            one = seen[key] = SharedCounts(ev)
        f.direction_evidence = one
        key = (("", -1), *states.items())  # never equal to an evidence tally
        one = seen.get(key)
        if one is None:
            one = seen[key] = SharedCounts(states)
        f.conn_states = one


@dataclass(slots=True)
class Flow:
    """All connections of one FlowKey, aggregated. Mergeable: two partial audits combine."""

    key: FlowKey
    connections: int = 0
    established: int = 0
    """Connections that completed a handshake or carried data both ways."""
    rejected: int = 0
    """Connections answered by RST, or refused by an ICMP unreachable."""
    unanswered: int = 0
    """Connections that got no reply at all."""
    orig_pkts: int = 0
    orig_bytes: int = 0
    resp_pkts: int = 0
    resp_bytes: int = 0
    first_seen: float = float("inf")
    last_seen: float = float("-inf")
    first_frame: tuple[int, int] = (1 << 62, 0)
    direction_evidence: dict[str, int] = field(default_factory=dict)
    """How many connections had each kind of evidence."""
    conn_states: dict[str, int] = field(default_factory=dict)
    """How many connections ended in each conn_state."""
    bad_checksums: int = 0
    tunnels: frozenset[str] = frozenset()
    """Tunnels the flow's packets arrived in (shared empty set: most flows have none)."""
    summarised: bool = False
    """True for an aggregate of a flood beyond the flow table bound (initiator '*')."""
    refusals: dict[Refusal, int] | None = None
    """Rejected connections by who refused them (None: none recorded). Bounded: the REFUSALS_MAX
    smallest refusals are kept and the others counted under REFUSAL_OTHER, which is exactly the
    same whatever the order connections came in or partial flows were merged."""
    apps: dict[str, int] | None = None
    """Connections per recognised application protocol (auditor/apps.py); the others are unverified
    (``unverified``). None: no connection was recognised."""
    app_evidence: dict[str, AppEvidence] | None = None
    """Per recognised protocol, the evidence of its earliest connection (the smallest frame): exact
    whatever the order connections came in or partial flows were merged."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as the constructor's arguments (a share of a parallel run sends its flows back):
        # half the time of the dataclass's field-by-field state.
        return Flow, (self.key, self.connections, self.established, self.rejected, self.unanswered,
                      self.orig_pkts, self.orig_bytes, self.resp_pkts, self.resp_bytes, self.first_seen,
                      self.last_seen, self.first_frame, self.direction_evidence, self.conn_states,
                      self.bad_checksums, self.tunnels, self.summarised, self.refusals, self.apps, self.app_evidence)

    @property
    def packets(self) -> int:
        return self.orig_pkts + self.resp_pkts

    @property
    def bytes(self) -> int:
        return self.orig_bytes + self.resp_bytes

    @property
    def outcome(self) -> Outcome:
        if self.established:
            return Outcome.ESTABLISHED
        if self.rejected:
            return Outcome.REJECTED
        if self.key.protocol == "udp" and self.resp_pkts == 0:
            return Outcome.ONE_WAY
        return Outcome.UNANSWERED

    @property
    def app_protocol(self) -> str:
        """What the flow's connections carried: the most frequent recognised protocol (ties by name),
        or 'unknown' when none was recognised (SPEC §6)."""
        apps = self.apps
        if not apps:
            return UNKNOWN
        return min(apps, key=lambda name: (-apps[name], name))

    @property
    def unverified(self) -> int:
        """Connections whose payload was absent or not recognised."""
        return self.connections - (sum(self.apps.values()) if self.apps else 0)

    @property
    def strongest_evidence(self) -> str:
        for kind in DIRECTION_EVIDENCE:
            if self.direction_evidence.get(kind):
                return kind
        return "first_packet"

    @property
    def inferred(self) -> bool:
        """Direction not proven by a TCP handshake (SPEC §3: shown as inferred)."""
        return self.strongest_evidence not in ("syn", "synack")

    def add(self, protocol: str, conn_state: str, history: str, orig_pkts: int, orig_bytes: int,
            resp_pkts: int, resp_bytes: int, first_seen: float, last_seen: float,
            first_frame: tuple[int, int], direction_evidence: str, bad_checksums: int,
            icmp_refused: bool, tunnels: frozenset[str], refusal: Refusal | None = None,
            app: AppEvidence | None = None) -> None:
        """One closed connection, by its Connection fields (the core folds connections in without
        building Connection objects). ``refusal`` is recorded when the connection counts as rejected;
        ``app`` is its application-protocol evidence, if any."""
        self.connections += 1
        if app is not None:
            apps = self.apps
            if apps is None:
                apps = self.apps = {}
            apps[app.protocol] = apps.get(app.protocol, 0) + 1
            self._app_evidence(app.protocol, app)
        if protocol == "tcp":
            # Data both ways ('D' and 'd' in the Zeek history) is an established conversation even when
            # the handshake was not seen: a session captured mid-way and ended by the server's RST is
            # RSTRH, one whose capture stopped after a single FIN is SH (SPEC §3).
            if conn_state in _TCP_ESTABLISHED or (orig_pkts and resp_pkts and conn_state == "OTH") \
                    or ("D" in history and "d" in history):
                self.established += 1
            elif conn_state in ("REJ", "RSTRH") or icmp_refused:
                # RSTOS0 (originator gave up with a RST) and SH fall through to unanswered below.
                self.rejected += 1
                if refusal is not None:
                    self._refused({refusal: 1})
            elif resp_pkts and conn_state not in ("S0", "RSTOS0", "SH"):
                self.established += 1
            else:
                self.unanswered += 1
        else:
            if icmp_refused:
                self.rejected += 1
                if refusal is not None:
                    self._refused({refusal: 1})
            elif resp_pkts:
                self.established += 1
            else:
                self.unanswered += 1
        self.orig_pkts += orig_pkts
        self.orig_bytes += orig_bytes
        self.resp_pkts += resp_pkts
        self.resp_bytes += resp_bytes
        if first_seen < self.first_seen:
            self.first_seen = first_seen
        if last_seen > self.last_seen:
            self.last_seen = last_seen
        if first_frame < self.first_frame:
            self.first_frame = first_frame
        ev = self.direction_evidence
        if type(ev) is not dict:
            ev = self.direction_evidence = dict(ev)  # shared (share_counts): a copy of its own
        ev[direction_evidence] = ev.get(direction_evidence, 0) + 1
        states = self.conn_states
        if type(states) is not dict:
            states = self.conn_states = dict(states)
        states[conn_state] = states.get(conn_state, 0) + 1
        self.bad_checksums += bad_checksums
        if tunnels:
            self.tunnels = self.tunnels | tunnels

    def merge(self, other: Flow) -> None:
        """Fold another partial aggregate of the same key into this one."""
        if other.key != self.key:
            raise ValueError(f"cannot merge flow {other.key} into {self.key}")
        for name in ("connections", "established", "rejected", "unanswered", "orig_pkts", "orig_bytes",
                     "resp_pkts", "resp_bytes", "bad_checksums"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.first_frame = min(self.first_frame, other.first_frame)
        if type(self.direction_evidence) is not dict:  # shared (share_counts): a copy of its own
            self.direction_evidence = dict(self.direction_evidence)
        if type(self.conn_states) is not dict:
            self.conn_states = dict(self.conn_states)
        for src, dst in ((other.direction_evidence, self.direction_evidence),
                         (other.conn_states, self.conn_states)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
        self.tunnels |= other.tunnels
        self.summarised = self.summarised or other.summarised
        if other.refusals:
            self._refused(other.refusals)
        if other.apps:
            self._apps(other.apps, other.app_evidence or {})

    def _apps(self, counts: dict[str, int], evidence: dict[str, AppEvidence]) -> None:
        apps = self.apps
        if apps is None:
            apps = self.apps = {}
        for name, n in counts.items():
            apps[name] = apps.get(name, 0) + n
        if self.app_evidence is None:
            self.app_evidence = {}
        for name, ev in evidence.items():
            self._app_evidence(name, ev)

    def _app_evidence(self, name: str, ev: AppEvidence) -> None:
        """Keep ``ev`` as the evidence of ``name`` if it came first."""
        mine = self.app_evidence
        if mine is None:
            self.app_evidence = {name: ev}
            return
        kept = mine.get(name)
        if kept is None or ev.frame < kept.frame:
            mine[name] = ev

    def _refused(self, counts: dict[Refusal, int]) -> None:
        """Add refusal counts, keeping the REFUSALS_MAX smallest refusals: a refusal beyond them was
        beyond them in any order or grouping of the connections, so merging stays exact."""
        mine = self.refusals
        if mine is None:
            mine = self.refusals = {}
        for r, n in counts.items():
            mine[r] = mine.get(r, 0) + n
        if len(mine) > REFUSALS_MAX + (REFUSAL_OTHER in mine):
            kept = sorted(r for r in mine if r != REFUSAL_OTHER)
            for r in kept[REFUSALS_MAX:]:
                mine[REFUSAL_OTHER] = mine.get(REFUSAL_OTHER, 0) + mine.pop(r)
