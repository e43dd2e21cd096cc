"""Flows x catalog x roles -> verdicts, and the status of every catalog rule (SPEC §4).

Pure functions over in-memory values: no I/O. The caller supplies, per address, the roles it holds
(`HostView`), already resolved from roles.yaml and the capture's name evidence.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from auditor.model import Classification, Flow, FlowRule, Outcome, RuleState

# Reasons an observed flow is unexpected (SPEC §4), most specific first.
REASON_REVERSE = "reverse-of-rule"
REASON_OTHER_PORT = "other-port-or-protocol"
REASON_NO_RULE = "no-rule-between-roles"
REASON_PEER_UNMAPPED = "peer-not-in-roles"


@dataclass(frozen=True, slots=True)
class HostView:
    """What the audit knows about one address."""

    address: str
    roles: frozenset[str]
    """Roles as mapped: roles.yaml (by address or by a name the capture tied to it) and catalog host names."""
    effective: frozenset[str]
    """`roles` plus every role they satisfy (families such as 'Any Citrix Component')."""
    names: tuple[str, ...] = ()
    wildcard: bool = False
    """A broadcast, multicast or unspecified address (0.0.0.0 of a DHCP client) with no role of its
    own: it stands for whichever role the rule needs on that side (the seed's "Broadcast/DHCPServer")."""


def is_wildcard_address(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if ip.is_multicast or ip.is_unspecified:
        return True
    return ip.version == 4 and addr == "255.255.255.255"


@dataclass(frozen=True, slots=True)
class FlowVerdict:
    flow: Flow
    initiator: HostView
    responder: HostView
    classification: Classification
    failing: bool
    rule_ids: tuple[str, ...]
    reason: str | None
    reason_text: str | None


@dataclass(slots=True)
class RuleResult:
    rule: FlowRule
    state: RuleState
    flows: int = 0
    hosts_lacking: list[str] = field(default_factory=list)


def _is_loopback(addr: str) -> bool:
    # Addresses reach here in canonical text form (model.addr_str), so no parsing is needed.
    return addr.startswith("127.") or addr == "::1"


class RuleIndex:
    """Catalog rules indexed by (source role, destination role) for per-flow lookups."""

    def __init__(self, rules: Sequence[FlowRule]) -> None:
        self.rules = list(rules)
        self.by_pair: dict[tuple[str, str], list[FlowRule]] = defaultdict(list)
        self.cache: dict[tuple[object, ...], _Judgement] = {}
        for r in self.rules:
            self.by_pair[(r.source, r.destination)].append(r)

    def candidates(self, a: HostView, b: HostView) -> list[FlowRule]:
        """Rules from a's roles to b's roles; a wildcard side accepts any role."""
        if a.wildcard and b.wildcard:
            return []
        if a.wildcard:
            return [r for r in self.rules if r.destination in b.effective]
        if b.wildcard:
            return [r for r in self.rules if r.source in a.effective]
        return self.between(a.effective, b.effective)

    def between(self, src_roles: Iterable[str], dst_roles: Iterable[str]) -> list[FlowRule]:
        dst = list(dst_roles)
        out: list[FlowRule] = []
        for s in src_roles:
            for d in dst:
                out.extend(self.by_pair.get((s, d), ()))
        return out


def _port_ok(rule: FlowRule, protocol: str, port: int) -> bool:
    if protocol not in rule.protocols:
        return False
    if protocol == "icmp" or not rule.ports:
        # ICMP rules have no ports; rules whose port the seed gives as N/A or "random" match any port.
        return True
    return rule.matches_port(port)


def _roles_text(h: HostView) -> str:
    if not h.roles:
        return f"broadcast/multicast {h.address}" if h.wildcard else h.address
    return " / ".join(sorted(h.roles))


@dataclass(frozen=True, slots=True)
class _Judgement:
    """What the catalog says of a (roles, roles, protocol, port): shared by every flow alike."""

    classification: Classification
    rule_ids: tuple[str, ...] = ()
    one_way: bool = False
    reason: str | None = None
    reason_text: str | None = None
    """None where the text names the flow's own addresses (built per flow)."""


def _judge(a: HostView, b: HostView, protocol: str, port: int, loopback: bool, index: RuleIndex) -> _Judgement:
    forward = [r for r in index.candidates(a, b) if _port_ok(r, protocol, port)]
    backward = [r for r in index.candidates(b, a) if r.bidirectional and _port_ok(r, protocol, port)]
    matched = [r for r in forward + backward if not r.loopback_only or loopback]
    if matched:
        return _Judgement(Classification.EXPECTED, tuple(sorted({r.id for r in matched})),
                          any(r.one_way for r in matched))
    port_text = f"{protocol}/{port}" if protocol != "icmp" else "icmp"
    loopback_rules = [r for r in forward + backward if r.loopback_only]
    if loopback_rules and a.roles and b.roles:
        id_text = ", ".join(sorted({r.id for r in loopback_rules}))
        text = f"{port_text} between these roles is documented on 127.0.0.1 only ({id_text}), not across a network"
        return _Judgement(Classification.UNEXPECTED, reason=REASON_OTHER_PORT, reason_text=text)
    if not a.roles or not b.roles:
        return _Judgement(Classification.UNEXPECTED, reason=REASON_PEER_UNMAPPED)
    reverse = [r for r in index.between(b.effective, a.effective) if _port_ok(r, protocol, port)]
    if reverse:
        id_text = ", ".join(sorted({r.id for r in reverse})[:3])
        return _Judgement(Classification.UNEXPECTED, reason=REASON_REVERSE,
                          reason_text=f"reverse direction of {id_text}: the catalog has the responder "
                                      f"initiate {port_text}")
    between = index.between(a.effective, b.effective)
    if between:
        allowed = sorted({f"{'/'.join(r.protocols)} {r.ports_text or 'any'}" for r in between})[:6]
        return _Judgement(Classification.UNEXPECTED, reason=REASON_OTHER_PORT,
                          reason_text=f"{port_text} is not a documented port between these roles "
                                      f"(documented: {'; '.join(allowed)})")
    return _Judgement(Classification.UNEXPECTED, reason=REASON_NO_RULE,
                      reason_text=f"no catalog rule between {_roles_text(a)} and {_roles_text(b)}")


def _unspecified(addr: str) -> bool:
    return addr in ("0.0.0.0", "::")


def classify_flow(flow: Flow, a: HostView, b: HostView, index: RuleIndex) -> FlowVerdict:
    k = flow.key
    if a.wildcard and not _unspecified(k.initiator):
        # Broadcast and multicast are destinations; as a source they stand for no role (spoofed).
        a = HostView(a.address, a.roles, a.effective, a.names, wildcard=False)
    if not a.roles and not b.roles:
        return FlowVerdict(flow, a, b, Classification.UNMAPPED, False, (), None, None)
    loopback = _is_loopback(k.initiator) and _is_loopback(k.responder)
    # The verdict depends on roles, protocol and port only: thousands of flows share one judgement.
    ckey = (a.roles, a.effective, a.wildcard, b.roles, b.effective, b.wildcard, k.protocol, k.port, loopback,
            a.address if a.wildcard and not a.roles else "", b.address if b.wildcard and not b.roles else "")
    j = index.cache.get(ckey)
    if j is None:
        j = index.cache[ckey] = _judge(a, b, k.protocol, k.port, loopback, index)
    if j.classification == Classification.EXPECTED:
        outcome = flow.outcome
        failing = outcome in (Outcome.REJECTED, Outcome.UNANSWERED, Outcome.ONE_WAY)
        if failing and outcome != Outcome.REJECTED and j.one_way and k.protocol != "tcp":
            failing = False  # a one-way rule (trap, syslog, heartbeat) needs no reply
        return FlowVerdict(flow, a, b, Classification.EXPECTED, failing, j.rule_ids, None, None)
    text = j.reason_text
    if text is None:
        port_text = f"{k.protocol}/{k.port}" if k.protocol != "icmp" else "icmp"
        missing_side = "initiator" if not a.roles else "responder"
        addr = k.initiator if not a.roles else k.responder
        who = "a summarised set of sources" if addr == "*" else addr
        if (a.wildcard and not a.roles) or (b.wildcard and not b.roles):
            who = f"broadcast/multicast {who}"
        text = f"{missing_side} {who} holds no role in roles.yaml ({port_text})"
    return FlowVerdict(flow, a, b, Classification.UNEXPECTED, False, (), j.reason, text)


def classify_flows(flows: Iterable[Flow], host: Callable[[str], HostView], index: RuleIndex) -> list[FlowVerdict]:
    return [classify_flow(f, host(f.key.initiator), host(f.key.responder), index) for f in flows]


@dataclass(frozen=True, slots=True)
class StatusContext:
    """What rule status needs to know about the deployment and the capture."""

    hosts_by_role: Mapping[str, frozenset[str]]
    """Effective role -> addresses holding it (mapped single addresses plus addresses seen in the capture)."""
    seen: frozenset[str]
    """Every address some audited packet touched."""
    single_hosts: Mapping[str, tuple[str, ...]]
    """Role -> hosts listed one by one in roles.yaml (for 'the one VDA of ten that never registered')."""
    vantage: frozenset[str] = frozenset()
    """Addresses at the capture point, when known."""


def rule_status(rules: Sequence[FlowRule], verdicts: Sequence[FlowVerdict], ctx: StatusContext) -> list[RuleResult]:
    matched: dict[str, list[FlowVerdict]] = defaultdict(list)
    for v in verdicts:
        for rid in v.rule_ids:
            matched[rid].append(v)
    results = []
    for r in rules:
        res = RuleResult(r, RuleState.NOT_APPLICABLE)
        hits = matched.get(r.id, [])
        res.flows = len(hits)
        src_hosts = ctx.hosts_by_role.get(r.source, frozenset())
        dst_hosts = ctx.hosts_by_role.get(r.destination, frozenset())
        if hits:
            res.state = RuleState.FAILING if all(v.failing for v in hits) else RuleState.OBSERVED
        elif r.loopback_only:
            res.state = RuleState.NOT_OBSERVABLE  # 127.0.0.1 never crosses a wire
        else:
            distinct = len(src_hosts | dst_hosts) >= 2 if r.source == r.destination else True
            # SPEC §4: applicable when roles.yaml (or the capture's name evidence) maps hosts to both
            # roles. A cloud service is no exception: an on-premises site has no Gateway Service.
            applicable = bool(src_hosts) and bool(dst_hosts) and distinct
            if applicable and ctx.vantage:
                applicable = bool((src_hosts | dst_hosts) & ctx.vantage)
            if applicable:
                observable = bool(src_hosts & ctx.seen) or bool(dst_hosts & ctx.seen)
                res.state = RuleState.MISSING if observable else RuleState.NOT_OBSERVABLE
        if res.state in (RuleState.OBSERVED, RuleState.FAILING, RuleState.MISSING):
            singles = ctx.single_hosts.get(r.source, ())
            if r.bidirectional:  # either side may open it: a destination that never took part lacks it too
                singles = tuple(dict.fromkeys((*singles, *ctx.single_hosts.get(r.destination, ()))))
            if len(singles) >= 1:
                users: set[str] = set()
                for v in hits:
                    if not v.failing:
                        users.add(v.flow.key.initiator)
                        # The responder used the rule too when either side may open it, or when the two are
                        # peers of a same-kind rule and it answered (DDC<->DDC, HA heartbeats 3003<->3003).
                        peers = r.source in v.responder.effective and r.destination in v.initiator.effective
                        if r.bidirectional or (peers and v.flow.resp_pkts):
                            users.add(v.flow.key.responder)
                res.hosts_lacking = [h for h in singles if h not in users
                                     and (not ctx.vantage or h in ctx.vantage or bool(dst_hosts & ctx.vantage))]
        results.append(res)
    return results
