"""Every alternative group of rules/alternatives.yaml, through the whole audit (SPEC §4): one member
seen covers the others and none of them is missing; with none seen, exactly one finding (the first
applicable member) is missing and the others are covered by it. Deployments are built from the
members' own roles and features, so a group added to the catalog is tested without a new case."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import yaml

from auditor.audit import analyse
from auditor.catalog import AlternativeGroup, Catalog, load_catalog
from auditor.catalog.rule import FlowRule
from auditor.model import RuleState
from auditor.roles import parse_roles
from tests.test_cases import build_records

CATALOG = load_catalog()


def _deployment(group: AlternativeGroup, catalog: Catalog) -> tuple[dict[str, list[str]], list[str], dict[str, str]]:
    """roles.yaml entries (one host per role of any member), features, and role -> host."""
    hosts: dict[str, str] = {}
    features: set[str] = set()
    net = ipaddress.ip_address("10.77.0.10")
    for rid in group.members:
        rule = catalog.by_id(rid)
        assert rule is not None
        if rule.feature:
            features.add(rule.feature)
        for role in (rule.source, rule.destination):
            f = catalog.vocabulary.role_feature(role)
            if f:
                features.add(f)
            if role not in hosts:
                hosts[role] = str(net + len(hosts))
    roles = {role: [addr] for role, addr in hosts.items()}
    for rid in group.members:  # a same-role rule needs two hosts of that role
        rule = catalog.by_id(rid)
        assert rule is not None
        if rule.source == rule.destination and len(roles[rule.source]) == 1:
            roles[rule.source].append(str(net + 100 + len(roles)))
    return roles, sorted(features), hosts


def _traffic(rule: FlowRule, roles: dict[str, list[str]]) -> dict[str, Any]:
    src = roles[rule.source][0]
    dst = roles[rule.destination][-1]
    proto = rule.protocols[0]
    if proto == "icmp":
        return {"from": src, "to": dst, "proto": "icmp", "kind": "icmp-echo"}
    port = rule.ports[0][0] if rule.ports else 4444
    return {"from": src, "to": dst, "proto": proto, "port": port, "kind": "handshake" if proto == "tcp" else "udp"}


def _audit(roles: dict[str, list[str]], features: list[str], traffic: list[dict[str, Any]]) -> dict[str, Any]:
    text = yaml.safe_dump({"roles": roles, **({"features": features} if features else {})})
    role_map = parse_roles(text, "group case", CATALOG.vocabulary)
    analysis = analyse(build_records(traffic), CATALOG, role_map)
    return {r.rule.id: r for r in analysis.rules}


@pytest.mark.parametrize("group", CATALOG.alternatives, ids=[g.id for g in CATALOG.alternatives])
def test_one_member_seen_covers_the_others(group: AlternativeGroup) -> None:
    roles, features, _ = _deployment(group, CATALOG)
    last = CATALOG.by_id(group.members[-1])
    assert last is not None
    res = _audit(roles, features, [_traffic(last, roles)])
    assert res[last.id].state == RuleState.OBSERVED, (last.id, res[last.id].state)
    for rid in group.members[:-1]:
        r = res[rid]
        assert r.group == group.id
        assert r.state in (RuleState.COVERED, RuleState.OBSERVED), (rid, r.state)  # never missing
        if r.state == RuleState.COVERED:
            assert last.id in r.covered_by


@pytest.mark.parametrize("group", CATALOG.alternatives, ids=[g.id for g in CATALOG.alternatives])
def test_none_seen_is_one_missing_finding_named_by_the_first(group: AlternativeGroup) -> None:
    roles, features, _ = _deployment(group, CATALOG)
    # Every host is seen (an undocumented ping to each from an unmapped address, one per ping so that
    # no single host touches every packet and becomes the detected vantage), no member is used.
    addrs = [a for group_addrs in roles.values() for a in group_addrs]
    traffic = [{"from": f"192.0.2.{i + 1}", "to": addr, "proto": "icmp", "kind": "icmp-echo"}
               for i, addr in enumerate(addrs)]
    res = _audit(roles, features, traffic)
    states = {rid: res[rid].state for rid in group.members}
    missing = [rid for rid, s in states.items() if s == RuleState.MISSING]
    assert missing == [group.members[0]], states
    for rid in group.members[1:]:
        assert states[rid] == RuleState.COVERED and res[rid].covered_by == (group.members[0],), (rid, states)
