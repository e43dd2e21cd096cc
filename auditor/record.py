"""The packet record: one decoded IP packet, the unit the conversation core consumes (SPEC §3).

Compiled with the conversation core where a compiler exists (auditor/capture/native.py's COMPILED):
the kernel makes a record of every packet the fast lane does not take (about half of them on captures
of short conversations) and the core reads some twenty fields of each; as a class compiled with them
it is made and read in C, where a Python dataclass is made by its interpreted ``__init__`` and read
through Python's attribute look-up. A plain class, not a ``@dataclass``: mypyc's dataclass constructor
is slower than Python's (bench/README.md, round 25). Records are made of the class of the build that
runs (``auditor.model.PacketRecord`` and ``make_record`` give it); the core's entries take a record of
either build (``as_record``: tests run both builds in one process). No I/O here.
"""

from __future__ import annotations

from typing import Any, Final

from auditor.model import QuotedPacket, TunnelInfo


class PacketRecord:
    """One decoded IP packet. Addresses are packed bytes so that the hot path never formats text;
    the core converts them once per connection. Compares equal to a record of the same fields;
    unhashable (as the dataclass it was)."""

    __slots__ = ("input_index", "frame", "ts", "src", "dst", "proto", "ip_len", "sport", "dport",  # noqa: RUF023
                 "tcp_flags", "seq", "ack", "payload_len", "payload", "icmp_type", "icmp_code", "icmp_id", "quoted",
                 "checksum_bad", "tunnel", "fragment", "ttl")
    """``FIELDS``: as Python runs it, no dict per record."""

    def __init__(self, input_index: int, frame: int, ts: float, src: bytes, dst: bytes, proto: int,
                 ip_len: int, sport: int = 0, dport: int = 0, tcp_flags: int = 0, seq: int = 0, ack: int = 0,
                 payload_len: int = 0, payload: bytes = b"", icmp_type: int = -1, icmp_code: int = -1,
                 icmp_id: int = 0, quoted: QuotedPacket | None = None, checksum_bad: bool = False,
                 tunnel: TunnelInfo | None = None, fragment: bool = False, ttl: int = -1) -> None:
        self.input_index = input_index
        """Which input of the run (0-based, in the order given)."""
        self.frame = frame
        """1-based frame number inside that input, as tshark and Wireshark number them."""
        self.ts = ts
        """Capture timestamp, seconds since the epoch."""
        self.src = src
        """Packed source address (4 bytes IPv4, 16 bytes IPv6)."""
        self.dst = dst
        """Packed destination address."""
        self.proto = proto
        """IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, anything else is counted by the core)."""
        self.ip_len = ip_len
        """Bytes of the IP packet as on the wire (IPv4 total length; IPv6 40 + payload length)."""
        self.sport = sport
        """TCP/UDP source port (0 for ICMP and others)."""
        self.dport = dport
        """TCP/UDP destination port."""
        self.tcp_flags = tcp_flags
        """TCP flag byte (FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10)."""
        self.seq = seq
        """TCP sequence number."""
        self.ack = ack
        """TCP acknowledgement number."""
        self.payload_len = payload_len
        """Transport payload length in bytes (as on the wire, not as captured)."""
        self.payload = payload
        """The first captured bytes of the transport payload, at most PAYLOAD_SNAP."""
        self.icmp_type = icmp_type
        """ICMP/ICMPv6 type, -1 when not ICMP."""
        self.icmp_code = icmp_code
        """ICMP/ICMPv6 code, -1 when not ICMP."""
        self.icmp_id = icmp_id
        """ICMP echo identifier (echo request/reply only)."""
        self.quoted = quoted
        """For ICMP errors (unreachable, time exceeded...): the packet quoted in the error."""
        self.checksum_bad = checksum_bad
        """A transport checksum was verified and found wrong (counted, never dropped: offload)."""
        self.tunnel = tunnel
        """The encapsulation this packet was found inside, if any."""
        self.fragment = fragment
        """The packet is an IP fragment (ports come from the first fragment where it was seen)."""
        self.ttl = ttl
        """The audited IP header's TTL (IPv6: hop limit) as captured, -1 when unknown. Only records carry
        it (the fast lane's packets never need it): the core compares a RST's with its sender's SYN-ACKs
        and FINs to tell a middlebox's injected RST from the responder's own."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        # A record of either build (a test can run both in one process) compares by its fields.
        if type(other).__qualname__ != "PacketRecord":
            return NotImplemented
        theirs: Any = other
        return fields_of(self) == _fields(theirs)

    def __repr__(self) -> str:
        return "PacketRecord(" + ", ".join(f"{n}={v!r}" for n, v in zip(FIELDS, fields_of(self), strict=True)) + ")"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as the constructor's arguments (a chunk's logs travel from a worker process).
        return PacketRecord, fields_of(self)

    def replace(self, **changes: Any) -> PacketRecord:
        """A copy with these fields changed (what dataclasses.replace gave)."""
        values = dict(zip(FIELDS, fields_of(self), strict=True))
        for name in changes:
            if name not in values:
                raise TypeError(f"PacketRecord has no field {name!r}")
        values.update(changes)
        return PacketRecord(**values)


FIELDS: Final = ("input_index", "frame", "ts", "src", "dst", "proto", "ip_len", "sport", "dport", "tcp_flags",
                  "seq", "ack", "payload_len", "payload", "icmp_type", "icmp_code", "icmp_id", "quoted",
                  "checksum_bad", "tunnel", "fragment", "ttl")
"""The record's fields, in the constructor's order."""


def fields_of(r: PacketRecord) -> tuple[Any, ...]:
    """A record's fields, in the constructor's order."""
    return (r.input_index, r.frame, r.ts, r.src, r.dst, r.proto, r.ip_len, r.sport, r.dport, r.tcp_flags, r.seq,
            r.ack, r.payload_len, r.payload, r.icmp_type, r.icmp_code, r.icmp_id, r.quoted, r.checksum_bad,
            r.tunnel, r.fragment, r.ttl)


def _fields(r: Any) -> tuple[Any, ...]:
    """The fields of a record of either build."""
    return tuple(getattr(r, name) for name in FIELDS)


def as_record(r: Any) -> PacketRecord:
    """``r`` as a record of this build: itself, or a copy of a record of the other build (a test can
    run both builds in one process; the compiled core takes records of its own build only)."""
    if type(r) is PacketRecord:
        found: PacketRecord = r
        return found
    return PacketRecord(*_fields(r))
