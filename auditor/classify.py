"""Flows x catalog x roles -> verdicts, and the status of every catalog rule (SPEC §4).

Pure functions over in-memory values: no I/O. The caller supplies, per address, the roles it holds
(`HostView`), already resolved from roles.yaml and the capture's name evidence.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from auditor.apps import UNKNOWN
from auditor.catalog import AlternativeGroup
from auditor.catalog.rule import FlowRule
from auditor.flow import Flow
from auditor.model import Classification, Outcome, RuleState, frozen_rows

# Reasons an observed flow is unexpected (SPEC §4), most specific first.
REASON_REVERSE = "reverse-of-rule"
REASON_OTHER_PORT = "other-port-or-protocol"
REASON_NO_RULE = "no-rule-between-roles"
REASON_PEER_UNMAPPED = "peer-not-in-roles"
REASON_FEATURE = "feature-not-in-use"
REASON_MISMATCH = "protocol-mismatch"
"""The port is documented between these roles, but the payload was recognised as an application
protocol that every matching rule refuses (SPEC §6)."""


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
    potential: frozenset[str] = frozenset()
    """`roles` expanded with every feature on: what the host would play if the deployment used every
    feature (only to tell a user which undeclared feature a flow belongs to)."""


_DOTTED = re.compile(r"(\d{1,3})\.\d{1,3}\.\d{1,3}\.\d{1,3}\Z")
"""Four dotted numbers: the text of an IPv4 address, or of none (ipaddress decides the doubtful ones)."""


def is_wildcard_address(addr: str) -> bool:
    # An audit asks once per address, a few thousand times: an IPv4 address below 224 or above 239
    # that is neither 0.0.0.0 nor 255.255.255.255 is decided without parsing it (ipaddress's 10 us
    # each), the same answer ipaddress gives (an invalid one is no address to it: False alike).
    m = _DOTTED.match(addr)
    if m is not None and not 224 <= int(m[1]) <= 239:
        return addr in ("0.0.0.0", "255.255.255.255")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if ip.is_multicast or ip.is_unspecified:
        return True
    return ip.version == 4 and addr == "255.255.255.255"


@frozen_rows
class FlowVerdict:
    flow: Flow
    initiator: HostView
    responder: HostView
    classification: Classification
    failing: bool
    rule_ids: tuple[str, ...]
    reason: str | None
    reason_text: str | None
    reverse_rule_ids: tuple[str, ...] = ()
    """The rule_ids matched only because the rule is bidirectional (the responder's side opened it in
    the rule's own wording): the report captions the flow by the others."""
    layers: tuple[str, ...] = ()
    """The catalog layers of the matching rules ('document', 'supplement', 'site')."""
    mismatch_rule_ids: tuple[str, ...] = ()
    """protocol-mismatch only: the rules that matched the flow's roles and port and refused what its
    payload carried. The flow does not count as theirs (they are not ``rule_ids``)."""


@dataclass(slots=True)
class RuleResult:
    rule: FlowRule
    state: RuleState
    flows: int = 0
    hosts_lacking: list[str] = field(default_factory=list)
    group: str | None = None
    """The alternative group the rule belongs to (rules/alternatives.yaml), if any."""
    covered_by: tuple[str, ...] = ()
    """For a covered rule: the members of its group that were observed, or, when none was, the
    member reported missing for the whole group."""
    users: set[str] = field(default_factory=set)
    """Hosts that used the rule in a flow that did not fail."""
    mismatched: int = 0
    """Flows on the rule's roles and port whose payload it refused (protocol-mismatch): they do not
    make it observed."""


def _is_loopback(addr: str) -> bool:
    # Addresses reach here in canonical text form (model.addr_str), so no parsing is needed.
    return addr.startswith("127.") or addr == "::1"


def in_use(rule: FlowRule, features: frozenset[str] | None) -> bool:
    """A rule applies only while its feature, if it has one, is in use (None: every feature is)."""
    return not rule.feature or features is None or rule.feature in features


class RuleIndex:
    """Catalog rules indexed by (source role, destination role) for per-flow lookups.

    ``features``: the deployment features in use; a rule of another feature never matches, but is
    kept to tell the user which feature a flow would need (None: every feature is in use).
    ``role_features`` and ``feature_titles`` (catalog data) name those features in reasons."""

    def __init__(self, rules: Sequence[FlowRule], features: Iterable[str] | None = None,
                 role_features: Mapping[str, str] | None = None,
                 feature_titles: Mapping[str, str] | None = None) -> None:
        features_in_use = None if features is None else frozenset(features)
        self.rules = [r for r in rules if in_use(r, features_in_use)]
        self.all_rules = list(rules)
        self.features = features_in_use
        self.role_features = dict(role_features or {})
        self.feature_titles = dict(feature_titles or {})
        self.by_pair: dict[tuple[str, str], list[FlowRule]] = defaultdict(list)
        self.all_by_pair: dict[tuple[str, str], list[FlowRule]] = defaultdict(list)
        self.cache: dict[tuple[object, ...], _Judgement] = {}
        for r in self.rules:
            self.by_pair[(r.source, r.destination)].append(r)
        for r in self.all_rules:
            self.all_by_pair[(r.source, r.destination)].append(r)

    def potential(self, a: HostView, b: HostView) -> list[FlowRule]:
        """Rules from a's to b's roles were every feature in use (the feature hint)."""
        out: list[FlowRule] = []
        for s in a.potential or a.effective:
            for d in b.potential or b.effective:
                out.extend(self.all_by_pair.get((s, d), ()))
        return out

    def features_needed(self, rule: FlowRule, a: HostView, b: HostView) -> list[str]:
        """The features (not in use) that would make ``rule`` apply between a and b."""
        need = []
        if rule.feature and (self.features is not None and rule.feature not in self.features):
            need.append(rule.feature)
        for role, host in ((rule.source, a), (rule.destination, b)):
            f = self.role_features.get(role)
            if role not in host.effective and f and f not in need:
                need.append(f)
        return need

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
    reverse_ids: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    reason: str | None = None
    reason_text: str | None = None
    """None where the text names the flow's own addresses (built per flow)."""
    allowed: frozenset[str] | None = None
    """Expected only: the application protocols the matching rules allow on the flow's transport, when
    every one of them names some (SPEC §6); None when one refuses nothing."""


def _judge(a: HostView, b: HostView, protocol: str, port: int, loopback: bool, index: RuleIndex) -> _Judgement:
    forward = [r for r in index.candidates(a, b) if _port_ok(r, protocol, port)]
    backward = [r for r in index.candidates(b, a) if r.bidirectional and _port_ok(r, protocol, port)]
    matched = [r for r in forward + backward if not r.loopback_only or loopback]
    if matched:
        fwd = sorted({r.id for r in matched if r in forward})
        rev = sorted({r.id for r in matched} - set(fwd))
        apps = frozenset(a for r in matched for a in r.apps) if all(r.constrains(protocol) for r in matched) else None
        return _Judgement(Classification.EXPECTED, tuple(fwd + rev), any(r.one_way for r in matched),
                          tuple(rev), tuple(sorted({r.layer for r in matched})), allowed=apps)
    port_text = f"{protocol}/{port}" if protocol != "icmp" else "icmp"
    loopback_rules = [r for r in forward + backward if r.loopback_only]
    if loopback_rules and a.roles and b.roles:
        id_text = ", ".join(sorted({r.id for r in loopback_rules}))
        text = f"{port_text} between these roles is documented on 127.0.0.1 only ({id_text}), not across a network"
        return _Judgement(Classification.UNEXPECTED, reason=REASON_OTHER_PORT, reason_text=text)
    if not a.roles or not b.roles:
        return _Judgement(Classification.UNEXPECTED, reason=REASON_PEER_UNMAPPED)
    hint = _feature_hint(a, b, protocol, port, loopback, index)
    if hint is not None:
        return hint
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


def _feature_hint(a: HostView, b: HostView, protocol: str, port: int, loopback: bool,
                  index: RuleIndex) -> _Judgement | None:
    """A flow that a rule would match if a feature the deployment does not use were in use."""
    if a.wildcard or b.wildcard or (not a.potential and not b.potential):
        return None
    found = [r for r in index.potential(a, b) if _port_ok(r, protocol, port)]
    found += [r for r in index.potential(b, a) if r.bidirectional and _port_ok(r, protocol, port)]
    found = [r for r in found if not r.loopback_only or loopback]
    needs: dict[str, set[str]] = defaultdict(set)
    for r in found:
        fwd = r.source in (a.potential or a.effective) and r.destination in (b.potential or b.effective)
        for f in (index.features_needed(r, a, b) if fwd else index.features_needed(r, b, a)):
            needs[f].add(r.id)
    if not needs:
        return None
    port_text = f"{protocol}/{port}" if protocol != "icmp" else "icmp"
    parts = [f"{f} ({index.feature_titles.get(f, f)}: {', '.join(sorted(ids)[:3])})"
             for f, ids in sorted(needs.items())]
    return _Judgement(Classification.UNEXPECTED, reason=REASON_FEATURE,
                      reason_text=f"{port_text} is documented between these hosts only with a feature the "
                                  f"deployment does not declare: {'; '.join(parts)}; if it is in use, list it "
                                  f"under features: in roles.yaml")


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
    return _verdict(flow, a, b, j)


def _verdict(flow: Flow, a: HostView, b: HostView, j: _Judgement) -> FlowVerdict:
    """A flow's verdict of its hosts' judgement (a: the initiator as classify_flow sees it)."""
    k = flow.key
    if j.classification == Classification.EXPECTED:
        if j.allowed is not None and flow.apps:
            refused = sorted(a for a in flow.apps if a != UNKNOWN and a not in j.allowed)
            if refused:
                return _mismatch(flow, a, b, j, refused)
        outcome = flow.outcome
        failing = outcome in (Outcome.REJECTED, Outcome.UNANSWERED, Outcome.ONE_WAY)
        if failing and outcome != Outcome.REJECTED and j.one_way and k.protocol != "tcp":
            failing = False  # a one-way rule (trap, syslog, heartbeat) needs no reply
        return FlowVerdict(flow, a, b, Classification.EXPECTED, failing, j.rule_ids, None, None,
                           j.reverse_ids, j.layers)
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


def _mismatch(flow: Flow, a: HostView, b: HostView, j: _Judgement, refused: list[str]) -> FlowVerdict:
    """SPEC §6: the payload was recognised as something every matching rule refuses. One refused
    protocol among allowed ones is enough (a tunnel beside real sessions is what an auditor looks for)."""
    k = flow.key
    apps = flow.apps or {}
    found = ", ".join(f"{p} ({apps[p]} of {flow.connections} connections)" if apps[p] != flow.connections else p
                      for p in refused)
    ids = ", ".join(j.rule_ids[:3]) + (f" and {len(j.rule_ids) - 3} more" if len(j.rule_ids) > 3 else "")
    rules = f"the rule {ids} allows" if len(j.rule_ids) == 1 else f"the rules {ids} allow"
    text = f"{found} on {k.protocol}/{k.port}; {rules} {', '.join(sorted(j.allowed or ()))}"
    return FlowVerdict(flow, a, b, Classification.UNEXPECTED, False, (), REASON_MISMATCH, text,
                       mismatch_rule_ids=j.rule_ids)


_UNMAPPED = _Judgement(Classification.UNMAPPED)
"""classify_flows's judgement of flows between two hosts without roles."""


def classify_flows(flows: Iterable[Flow], host: Callable[[str], HostView], index: RuleIndex) -> list[FlowVerdict]:
    """classify_flow of each flow, the judgement looked up by what it depends on: each host's part of
    classify_flow's key, numbered once per address (as initiator, as responder), protocol and port."""
    views: dict[str, tuple[HostView, int, HostView, int]] = {}
    """address -> (its view as initiator, that view's part's number, as responder, its number)."""
    parts: dict[tuple[Any, ...], int] = {}
    judged: dict[tuple[int, int, str, int], tuple[_Judgement, tuple[bool, str, str] | None]] = {}
    """(initiator's part, responder's part, protocol, port) -> its judgement (_UNMAPPED: no roles) and,
    when the reason's text names the flow's address, (the initiator's?, the text before it, after it)."""

    def view(addr: str) -> tuple[HostView, int, HostView, int]:
        h = a = host(addr)
        if a.wildcard and not _unspecified(addr):
            a = HostView(a.address, a.roles, a.effective, a.names, wildcard=False)
        loop = _is_loopback(addr)
        pa = (a.roles, a.effective, a.wildcard, a.address if a.wildcard and not a.roles else "", loop)
        pb = (h.roles, h.effective, h.wildcard, h.address if h.wildcard and not h.roles else "", loop)
        found = views[addr] = (a, parts.setdefault(pa, len(parts)), h, parts.setdefault(pb, len(parts)))
        return found

    get, known = views.get, judged.get
    out = []
    for f in flows:
        k = f.key
        a, pa, _, _ = get(k.initiator) or view(k.initiator)
        _, _, b, pb = get(k.responder) or view(k.responder)
        jkey = (pa, pb, k.protocol, k.port)
        hit = known(jkey)
        if hit is None:  # the first flow of its kind: judged as classify_flow judges it
            v = classify_flow(f, a, b, index)
            loopback = _is_loopback(k.initiator) and _is_loopback(k.responder)
            j = _UNMAPPED if v.classification == Classification.UNMAPPED else index.cache[(
                a.roles, a.effective, a.wildcard, b.roles, b.effective, b.wildcard, k.protocol, k.port,
                loopback, a.address if a.wildcard and not a.roles else "",
                b.address if b.wildcard and not b.roles else "")]
            named = None
            if j is not _UNMAPPED and j.classification != Classification.EXPECTED and j.reason_text is None:
                # _verdict's text, but for the address (all else is in the key).
                wild = (a.wildcard and not a.roles) or (b.wildcard and not b.roles)
                named = (not a.roles, ("initiator " if not a.roles else "responder ")
                         + ("broadcast/multicast " if wild else ""),
                         f" holds no role in roles.yaml ({k.protocol}/{k.port})" if k.protocol != "icmp"
                         else " holds no role in roles.yaml (icmp)")
            judged[jkey] = (j, named)
            out.append(v)
            continue
        j, named = hit
        if named is not None:
            addr = k.initiator if named[0] else k.responder
            out.append(FlowVerdict(f, a, b, Classification.UNEXPECTED, False, (), j.reason,
                                   named[1] + ("a summarised set of sources" if addr == "*" else addr) + named[2]))
        elif j is _UNMAPPED:
            out.append(FlowVerdict(f, a, b, Classification.UNMAPPED, False, (), None, None))
        else:
            out.append(_verdict(f, a, b, j))
    return out


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
    """Hosts at the capture point, when known: addresses, and the keys ``hosts_by_role`` gives
    roles.yaml entries the capture never showed."""
    features: frozenset[str] | None = None
    """Deployment features in use; a rule of another feature is not applicable (None: every one)."""
    groups: Sequence[AlternativeGroup] = ()
    """Alternative groups: one member observed covers the others."""


def rule_status(rules: Sequence[FlowRule], verdicts: Sequence[FlowVerdict], ctx: StatusContext) -> list[RuleResult]:
    results = _rule_states(rules, verdicts, ctx)
    _apply_alternatives(results, ctx)
    return results


_SEEN_STATES = (RuleState.OBSERVED, RuleState.FAILING)


def _apply_alternatives(results: list[RuleResult], ctx: StatusContext) -> None:
    """SPEC §4: a group is observed when any member is; a member not observed while another is, is
    covered; a group none of whose members is observed is one missing finding, named by its first
    (most secure) applicable member. Hosts lacking a member are those that used no member at all."""
    by_id = {r.rule.id: r for r in results}
    for g in ctx.groups:
        members = [by_id[m] for m in g.members if m in by_id]
        for m in members:
            m.group = g.id
        live = [m for m in members if m.state in (*_SEEN_STATES, RuleState.MISSING)]
        seen = [m for m in live if m.state in _SEEN_STATES]
        if seen:
            for m in live:
                if m.state == RuleState.MISSING:
                    m.state = RuleState.COVERED
                    m.covered_by = tuple(x.rule.id for x in seen)
        else:
            for m in live[1:]:
                m.state = RuleState.COVERED
                m.covered_by = (live[0].rule.id,)
        users: set[str] = set()
        for m in live:
            if m.state in _SEEN_STATES:
                users |= m.users
        for m in live:
            if m.hosts_lacking:
                m.hosts_lacking = [h for h in m.hosts_lacking if h not in users]
            if m.state == RuleState.COVERED:
                m.hosts_lacking = []


def _rule_states(rules: Sequence[FlowRule], verdicts: Sequence[FlowVerdict], ctx: StatusContext) -> list[RuleResult]:
    matched: dict[str, list[FlowVerdict]] = defaultdict(list)
    mismatched: dict[str, int] = defaultdict(int)
    for v in verdicts:
        for rid in v.rule_ids:
            matched[rid].append(v)
        for rid in v.mismatch_rule_ids:
            mismatched[rid] += 1
    results = []
    for r in rules:
        res = RuleResult(r, RuleState.NOT_APPLICABLE, mismatched=mismatched.get(r.id, 0))
        hits = matched.get(r.id, [])
        res.flows = len(hits)
        src_hosts = ctx.hosts_by_role.get(r.source, frozenset())
        dst_hosts = ctx.hosts_by_role.get(r.destination, frozenset())
        feature_ok = in_use(r, ctx.features)
        if hits:
            res.state = RuleState.FAILING if all(v.failing for v in hits) else RuleState.OBSERVED
        elif not feature_ok:
            pass  # SPEC §4: a rule of a feature the deployment does not use is not applicable
        elif r.loopback_only:
            res.state = RuleState.NOT_OBSERVABLE  # 127.0.0.1 never crosses a wire
        else:
            distinct = len(src_hosts | dst_hosts) >= 2 if r.source == r.destination else True
            # SPEC §4: applicable when roles.yaml (or the capture's name evidence) maps hosts to both
            # roles. A cloud service is no exception: an on-premises site has no Gateway Service.
            applicable = bool(src_hosts) and bool(dst_hosts) and distinct
            if applicable:
                if ctx.vantage:  # a rule with neither side at the capture point cannot be seen there
                    observable = bool((src_hosts | dst_hosts) & ctx.vantage)
                else:
                    observable = bool(src_hosts & ctx.seen) or bool(dst_hosts & ctx.seen)
                res.state = RuleState.MISSING if observable else RuleState.NOT_OBSERVABLE
        if res.state in (RuleState.OBSERVED, RuleState.FAILING, RuleState.MISSING):
            singles = ctx.single_hosts.get(r.source, ())
            if r.bidirectional:  # either side may open it: a destination that never took part lacks it too
                singles = tuple(dict.fromkeys((*singles, *ctx.single_hosts.get(r.destination, ()))))
            users: set[str] = set()
            for v in hits:
                if not v.failing:
                    users.add(v.flow.key.initiator)
                    # The responder used the rule too when either side may open it, or when the two are
                    # peers of a same-kind rule and it answered (DDC<->DDC, HA heartbeats 3003<->3003).
                    peers = r.source in v.responder.effective and r.destination in v.initiator.effective
                    if r.bidirectional or (peers and v.flow.resp_pkts):
                        users.add(v.flow.key.responder)
            res.users = users
            if len(singles) >= 1:
                res.hosts_lacking = [h for h in singles if h not in users
                                     and (not ctx.vantage or h in ctx.vantage or bool(dst_hosts & ctx.vantage))]
        results.append(res)
    return results
