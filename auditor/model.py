"""Shared data types: what flows between the layers.

capture/ produces PacketRecord; conversations/ turns them into Connection and Flow (auditor/flow.py);
catalog/ produces FlowRule (auditor.catalog.rule); classify.py produces FlowVerdict and RuleStatus.
No I/O here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar, dataclass_transform

from auditor.addrtext import addr_str as addr_str  # the Python modules' way to it

if TYPE_CHECKING:
    from auditor.record import PacketRecord as PacketRecord  # at run time: __getattr__ below

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


DISPLAY_CHARS: Final = 120
"""The report cuts longer strings for display (report/cells.py); a cell's title holds the bounded full
text."""
HEAD_CHARS: Final = 32
"""An application's evidence shows its first bytes' text bounded to this many characters."""
HEAD_KEY: Final = HEAD_CHARS + 1
"""The first bytes' texts are made, and looked up, by their first HEAD_KEY characters:
``bounded(head[:HEAD_KEY], HEAD_CHARS)`` is ``bounded(head, HEAD_CHARS)`` (cleaning a text never
shortens it and cleans a prefix into a prefix), so flows whose first ten or so bytes are alike (the
record and handshake headers of TLS ClientHellos) share one text where their whole heads differ."""
REASON_CHARS: Final = 400
"""A reason's text is bounded to this many characters in the report and the export."""


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
    """For the records made once per flow or per distinct table cell (classify.FlowVerdict,
    report.model.FlowRow, report.cells.Cell): frozen to the type checker, a plain slotted dataclass at
    run time. A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, about
    0.1 µs a field: for FlowRow's 41 fields, half of what building a row costs, and every renderer
    builds every row. None of them is ever hashed (unhashable at run time: a dataclass with ``eq``
    and not frozen)."""
    return dataclass(slots=True)(cls)


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


class SharedCounts(dict[str, int]):
    """A tally of Flow.direction_evidence or Flow.conn_states that flows with the same tally share
    once they are final (``share_counts``). Read as any dict; Flow.add and Flow.merge give their flow
    a copy of its own before they change it."""

    __slots__ = ()


def __getattr__(name: str) -> Any:
    # PacketRecord lives in auditor/record.py, compiled with the conversation core: this name gives
    # the class of the build that runs (its compiled build, or the Python module), looked up when it
    # is used (not at import: choosing the build imports the compiled modules, which import this one).
    if name == "PacketRecord":
        return _record_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _record_class() -> Any:
    from auditor.capture import native

    return native.KERNEL.of("auditor.record").PacketRecord


def make_record(*args: Any, **kwargs: Any) -> PacketRecord:
    """A record of the build that runs now (PacketRecord's arguments), for the decoders outside the
    kernel and for tests: the compiled core takes records of its own build only."""
    record: PacketRecord = _record_class()(*args, **kwargs)
    return record
