"""Who refused a failing flow: the responder's RST, a RST a middlebox forged in its name, or an ICMP
destination unreachable and its sender (SPEC §4: "a firewall's 'administratively prohibited' is not
the server's RST").

The conversation core records, per flow, what refused its rejected connections (model.Refusal) and,
per responder, the TTLs of its SYN-ACKs and FINs (ConversationResult.host_ttls). Both merge exactly,
so this judgement runs once, on the whole run's result: pure functions, no I/O.

Why the TTL: a firewall or IPS that rejects a connection with a RST forges the server's address, but
not its distance nor (usually) its initial TTL. Every hop decrements the TTL (RFC 791; IPv6 hop limit,
RFC 8200), so at one capture point the packets of one host on one path all arrive with the same value;
a RST that arrives with another one was most likely sent by something else on the path. Differences
of up to TTL_TOLERANCE are not counted: a SPAN that copies a routed packet on both VLANs sees it once
before and once after the router, and equal-cost paths may differ by a hop. The comparison is with the
responder's SYN-ACKs and FINs anywhere in the run (earlier or later, any connection): a server that
rejects a port usually accepts others. Without any, the check says "unknown". What it cannot see: a
middlebox one hop in front of the server with the server's initial TTL, and SYN proxies (their
SYN-ACKs are the middlebox's too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from auditor.flow import Flow
from auditor.model import REFUSAL_OTHER, Refusal

TTL_TOLERANCE = 1
"""A RST whose TTL differs from every TTL of its sender's other packets by more than this counts."""

PARTY_RESPONDER = "responder"
PARTY_OTHER = "other host"
PARTY_MIDDLEBOX = "likely middlebox (TTL differs)"

# ICMPv4 destination unreachable (type 3) codes, RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1.
ICMP4_UNREACHABLE = {
    0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
    4: "fragmentation needed", 5: "source route failed", 6: "destination network unknown",
    7: "destination host unknown", 8: "source host isolated", 9: "network administratively prohibited",
    10: "host administratively prohibited", 11: "network unreachable for type of service",
    12: "host unreachable for type of service", 13: "communication administratively prohibited",
    14: "host precedence violation", 15: "precedence cutoff in effect",
}
# ICMPv6 destination unreachable (type 1) codes, RFC 4443 §3.1, RFC 8754 §4.3.1.
ICMP6_UNREACHABLE = {
    0: "no route to destination", 1: "communication administratively prohibited",
    2: "beyond scope of source address", 3: "address unreachable", 4: "port unreachable",
    5: "source address failed ingress/egress policy", 6: "reject route to destination",
    7: "error in source routing header",
}


@dataclass(frozen=True, slots=True)
class RefusedBy:
    """One way a flow's connections were refused, judged (a flows[].refused_by entry)."""

    kind: str
    """'rst', 'icmp', or 'other' (refusals beyond the REFUSALS_MAX a flow keeps)."""
    address: str
    """The RST's source address (always the responder's), or the ICMP error's sender."""
    party: str
    """'responder', 'other host' (an ICMP error from a router or firewall on the path), or 'likely
    middlebox (TTL differs)' (a RST in the responder's name whose TTL is not its own)."""
    icmp_type: int | None
    icmp_code: int | None
    ttl: int | None
    """The RST's TTL (IPv6 hop limit) as captured; None for ICMP or when unknown."""
    ttl_check: str | None
    """For a RST: 'same' (within TTL_TOLERANCE of one of the responder's SYN-ACK/FIN TTLs),
    'differs', or 'unknown' (nothing to compare with); None for ICMP."""
    text: str
    connections: int


def ttls_of(seen: int) -> list[int]:
    """The TTLs in a bit set of ConversationResult.host_ttls, lowest first."""
    return [t for t in range(seen.bit_length()) if seen >> t & 1]


def ttl_check(ttl: int, seen: int) -> str:
    """'same', 'differs' or 'unknown': a RST's TTL against the bit set of its sender's other TTLs."""
    if ttl < 0 or not seen:
        return "unknown"
    lo = max(ttl - TTL_TOLERANCE, 0)
    near = ((1 << (ttl + TTL_TOLERANCE + 1)) - 1) >> lo << lo
    return "same" if seen & near else "differs"


def icmp_text(address: str, icmp_type: int, icmp_code: int) -> str:
    """'communication administratively prohibited' for an unreachable's type and code."""
    v6 = ":" in address
    if icmp_type == (1 if v6 else 3):
        name = (ICMP6_UNREACHABLE if v6 else ICMP4_UNREACHABLE).get(icmp_code)
        if name is not None:
            return name
    return f"unreachable, type {icmp_type} code {icmp_code}"


def judge(r: Refusal, host_ttls: dict[str, int], connections: int) -> RefusedBy:
    """One Flow.refusals entry, judged against the run's responder TTLs."""
    if r.kind == "icmp":
        mine = r.from_responder
        what = f"ICMP{'v6' if ':' in r.sender else ''} {icmp_text(r.sender, r.icmp_type, r.icmp_code)}"
        text = (f"{what} from the responder {r.sender}" if mine
                else f"{what} from {r.sender} (not the responder)")
        return RefusedBy("icmp", r.sender, PARTY_RESPONDER if mine else PARTY_OTHER, r.icmp_type, r.icmp_code,
                         None, None, text, connections)
    if r.kind == "rst":
        label = "hop limit" if ":" in r.sender else "TTL"
        seen = host_ttls.get(r.sender, 0)
        check = ttl_check(r.ttl, seen)
        ttl = r.ttl if r.ttl >= 0 else None
        if check == "differs":
            others = ", ".join(str(t) for t in ttls_of(seen)[:4])
            text = (f"RST likely from a middlebox (firewall, IPS) in the name of {r.sender}: {label} {r.ttl}, "
                    f"its SYN-ACKs and FINs {others}")
            party = PARTY_MIDDLEBOX
        elif check == "same":
            text = f"RST from the responder {r.sender} ({label} {r.ttl}, as on its SYN-ACKs and FINs)"
            party = PARTY_RESPONDER
        else:
            why = "unknown" if ttl is None else f"{r.ttl}"
            text = (f"RST from the responder {r.sender} ({label} {why}; no SYN-ACK or FIN of it to "
                    f"compare with)")
            party = PARTY_RESPONDER
        return RefusedBy("rst", r.sender, party, None, None, ttl, check, text, connections)
    return RefusedBy("other", "", PARTY_OTHER, None, None, None, None,
                     "refused in other ways (beyond the ones listed)", connections)


def refused_by(flow: Flow, host_ttls: dict[str, int]) -> list[RefusedBy]:
    """A flow's refusals, judged; most connections first, the overflow entry last. Entries that judge
    alike (RSTs of several TTLs all the responder's own) stay apart: their TTLs differ."""
    counts = flow.refusals
    if not counts:
        return []
    order = sorted(counts.items(), key=lambda kv: (kv[0] == REFUSAL_OTHER, -kv[1], kv[0]))
    return [judge(r, host_ttls, n) for r, n in order]


def summary_text(entries: Iterable[Mapping[str, Any]]) -> str:
    """flows[].refused_by as one line (the CSV column, the HTML outcome cell): 'RST from the responder
    10.0.0.5 (TTL 128, as its other packets), 3 connections; ICMP port unreachable from ...'."""
    return "; ".join(str(e["text"]) + (f", {e['connections']} connections" if e["connections"] != 1 else "")
                     for e in entries)
