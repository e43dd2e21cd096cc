"""What the conversation core returns: flows, connections, counters (all mergeable)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from auditor.flow import Flow
from auditor.model import (
    Connection,
    FlowKey,
)


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
    The result is then a bounded summary whose details depend on the order packets came in (and, for
    chunks merged by auditor/engine.py, on where the chunks were cut; the totals stay exact)."""

    def merge(self, other: ConversationResult) -> None:
        """Combine two partial audits (e.g. two captures, or two halves of one) into this one. The
        other's flows are taken over, not copied (the shares of a parallel run mostly hold different
        flows): it is not to be used afterwards."""
        self.overflowed = self.overflowed or other.overflowed
        self.take(other.flows.values())
        self.connections.extend(other.connections)
        self.stats.merge(other.stats)
        ttls = self.host_ttls
        for addr, seen in other.host_ttls.items():
            ttls[addr] = ttls.get(addr, 0) | seen

    def take(self, flows: Iterable[Flow]) -> None:
        """Take these flows over (those of a key already here are merged into its flow), in order:
        ``merge``'s, or the flows of a part that come in pieces after it (auditor/engine.py)."""
        mine = self.flows
        for flow in flows:
            key = flow.key
            old = mine.get(key)
            if old is None:
                mine[key] = flow
            else:
                old.merge(flow)
