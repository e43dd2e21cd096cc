"""Classification of flows and rule status (SPEC §4), on hand-built rules and hosts."""

from __future__ import annotations

import ipaddress
import itertools

from auditor.catalog.rule import FlowRule
from auditor.classify import (
    REASON_NO_RULE,
    REASON_OTHER_PORT,
    REASON_PEER_UNMAPPED,
    REASON_REVERSE,
    HostView,
    RuleIndex,
    StatusContext,
    classify_flow,
    classify_flows,
    is_wildcard_address,
    rule_status,
)
from auditor.flow import Flow
from auditor.model import Classification, FlowKey, RuleState

DDC, VDA, LIC, SQL = "Delivery Controller", "Virtual Delivery Agent", "Citrix License Server", "SQL Server"
ADM, NSIP = "NetScaler ADM", "NetScaler NSIP"

RULES = [
    FlowRule("cvad-001", "CVAD", DDC, SQL, ("tcp",), ((1433, 1433),), "TCP", "SQL"),
    FlowRule("cvad-002", "CVAD", VDA, DDC, ("tcp",), ((80, 80),), "TCP", "registration", bidirectional=True),
    FlowRule("lic-001", "Lic", DDC, LIC, ("tcp",), ((27000, 27000), (7279, 7279)), "TCP", "licensing"),
    FlowRule("ns-001", "NS", NSIP, ADM, ("udp",), ((162, 162),), "SNMP", "traps", one_way=True),
    FlowRule("ns-002", "NS", ADM, NSIP, ("icmp",), (), "ICMP", "reachability"),
    FlowRule("hdx-001", "CVAD", VDA, VDA, ("tcp",), ((9001, 9001),), "TCP", "loopback", loopback_only=True),
]
INDEX = RuleIndex(RULES)


def host(addr: str, *roles: str) -> HostView:
    return HostView(addr, frozenset(roles), frozenset(roles))


def flow(a: str, b: str, proto: str, port: int, *, est: int = 0, rej: int = 0, unans: int = 0,
         resp_pkts: int | None = None) -> Flow:
    f = Flow(FlowKey(a, b, proto, port), connections=est + rej + unans, established=est, rejected=rej,
             unanswered=unans, orig_pkts=3, resp_pkts=(2 if est or rej else 0) if resp_pkts is None else resp_pkts)
    return f


def test_expected_and_failing() -> None:
    ok = classify_flow(flow("10.0.0.1", "10.0.0.9", "tcp", 1433, est=1), host("10.0.0.1", DDC),
                       host("10.0.0.9", SQL), INDEX)
    assert ok.classification == Classification.EXPECTED and ok.rule_ids == ("cvad-001",) and not ok.failing
    rej = classify_flow(flow("10.0.0.1", "10.0.0.5", "tcp", 27000, rej=2), host("10.0.0.1", DDC),
                        host("10.0.0.5", LIC), INDEX)
    assert rej.classification == Classification.EXPECTED and rej.failing
    unans = classify_flow(flow("10.0.0.1", "10.0.0.5", "tcp", 7279, unans=1), host("10.0.0.1", DDC),
                          host("10.0.0.5", LIC), INDEX)
    assert unans.failing


def test_bidirectional_rule_matches_both_ways() -> None:
    v = classify_flow(flow("10.0.0.1", "10.0.20.5", "tcp", 80, est=1), host("10.0.0.1", DDC),
                      host("10.0.20.5", VDA), INDEX)
    assert v.classification == Classification.EXPECTED and v.rule_ids == ("cvad-002",)


def test_one_way_rule_without_reply_is_not_failing() -> None:
    v = classify_flow(flow("10.1.0.1", "10.1.0.9", "udp", 162, unans=1), host("10.1.0.1", NSIP),
                      host("10.1.0.9", ADM), INDEX)
    assert v.classification == Classification.EXPECTED and not v.failing
    # ... but an ICMP-refused trap is.
    r = classify_flow(flow("10.1.0.1", "10.1.0.9", "udp", 162, rej=1, resp_pkts=0), host("10.1.0.1", NSIP),
                      host("10.1.0.9", ADM), INDEX)
    assert r.failing


def test_icmp_rule_matches_any_type() -> None:
    v = classify_flow(flow("10.1.0.9", "10.1.0.1", "icmp", 8, est=1), host("10.1.0.9", ADM),
                      host("10.1.0.1", NSIP), INDEX)
    assert v.classification == Classification.EXPECTED


def test_unexpected_reasons() -> None:
    rev = classify_flow(flow("10.0.0.9", "10.0.0.1", "tcp", 1433, est=1), host("10.0.0.9", SQL),
                        host("10.0.0.1", DDC), INDEX)
    assert rev.reason == REASON_REVERSE and "cvad-001" in (rev.reason_text or "")
    other = classify_flow(flow("10.0.0.1", "10.0.0.9", "tcp", 3389, est=1), host("10.0.0.1", DDC),
                          host("10.0.0.9", SQL), INDEX)
    assert other.reason == REASON_OTHER_PORT and "1433" in (other.reason_text or "")
    none = classify_flow(flow("10.0.20.5", "10.0.0.9", "tcp", 1433, est=1), host("10.0.20.5", VDA),
                         host("10.0.0.9", SQL), INDEX)
    assert none.reason == REASON_NO_RULE
    peer = classify_flow(flow("10.0.20.5", "8.8.8.8", "udp", 53, est=1), host("10.0.20.5", VDA),
                         host("8.8.8.8"), INDEX)
    assert peer.classification == Classification.UNEXPECTED and peer.reason == REASON_PEER_UNMAPPED
    unm = classify_flow(flow("192.0.2.1", "192.0.2.2", "tcp", 22, est=1), host("192.0.2.1"),
                        host("192.0.2.2"), INDEX)
    assert unm.classification == Classification.UNMAPPED and unm.reason is None


def test_broadcast_side_stands_for_the_role_the_rule_needs() -> None:
    rules = RuleIndex([FlowRule("pvs-001", "PVS", "Target Device", "DHCP Server", ("udp",), ((67, 67),), "UDP",
                                "DHCP")])
    bcast = HostView("255.255.255.255", frozenset(), frozenset(), wildcard=True)
    unspec = HostView("0.0.0.0", frozenset(), frozenset(), wildcard=True)
    v = classify_flow(flow("0.0.0.0", "10.30.0.5", "udp", 67, est=1), unspec,
                      host("10.30.0.5", "DHCP Server"), rules)
    assert v.classification == Classification.EXPECTED and v.rule_ids == ("pvs-001",)
    other = classify_flow(flow("0.0.0.0", "10.30.0.5", "udp", 137, est=1), unspec,
                          host("10.30.0.5", "DHCP Server"), rules)
    assert other.reason == REASON_PEER_UNMAPPED and "broadcast" in (other.reason_text or "")
    # A broadcast or multicast *source* is spoofed or bogus: it stands for no role.
    spoofed = classify_flow(flow("255.255.255.255", "10.30.0.5", "udp", 67, est=1), bcast,
                            host("10.30.0.5", "DHCP Server"), rules)
    assert spoofed.classification == Classification.UNEXPECTED and spoofed.reason == REASON_PEER_UNMAPPED
    to_bcast = classify_flow(flow("10.30.0.9", "255.255.255.255", "udp", 67, est=1), host("10.30.0.9", "Target Device"),
                             bcast, rules)
    assert to_bcast.classification == Classification.EXPECTED
    both = classify_flow(flow("0.0.0.0", "255.255.255.255", "udp", 67, est=1),
                         HostView("0.0.0.0", frozenset(), frozenset(), wildcard=True), bcast, rules)
    assert both.classification == Classification.UNMAPPED


def test_classify_flows_gives_each_flow_what_classify_flow_gives() -> None:
    """Flows whose judgement is looked up (the same roles, protocol and port as an earlier flow) have
    the verdict classify_flow gives them: their own addresses in the reason's text."""
    hosts = {
        "10.0.0.1": host("10.0.0.1", DDC), "10.0.0.2": host("10.0.0.2", DDC), "10.0.0.9": host("10.0.0.9", SQL),
        "10.0.0.5": host("10.0.0.5", LIC), "10.9.0.1": host("10.9.0.1"), "10.9.0.2": host("10.9.0.2"),
        "127.0.0.1": host("127.0.0.1", VDA), "127.0.0.2": host("127.0.0.2", VDA),
        "10.0.20.5": host("10.0.20.5", VDA), "10.0.20.6": host("10.0.20.6", VDA), "*": host("*"),
        "255.255.255.255": HostView("255.255.255.255", frozenset(), frozenset(), wildcard=True),
        "239.1.1.1": HostView("239.1.1.1", frozenset(), frozenset(), wildcard=True),
        "0.0.0.0": HostView("0.0.0.0", frozenset(), frozenset(), wildcard=True),
    }
    flows = [
        flow("10.0.0.1", "10.0.0.9", "tcp", 1433, est=1), flow("10.0.0.2", "10.0.0.9", "tcp", 1433, rej=1),
        flow("10.9.0.1", "10.0.0.9", "tcp", 1433, est=1), flow("10.9.0.2", "10.0.0.9", "tcp", 1433, est=1),
        flow("10.0.0.9", "10.9.0.1", "tcp", 1433, est=1), flow("10.0.0.9", "10.9.0.2", "tcp", 1433, est=1),
        flow("*", "10.0.0.9", "tcp", 1433, est=1), flow("10.0.0.1", "10.0.0.5", "tcp", 5, est=1),
        flow("10.0.0.2", "10.0.0.5", "tcp", 5, est=1), flow("10.9.0.1", "10.9.0.2", "tcp", 5, est=1),
        flow("10.9.0.2", "10.9.0.1", "tcp", 5, est=1), flow("10.0.0.1", "255.255.255.255", "udp", 137, est=1),
        flow("10.0.0.2", "239.1.1.1", "udp", 137, est=1), flow("10.0.0.1", "239.1.1.1", "udp", 137, est=1),
        flow("255.255.255.255", "10.0.0.1", "udp", 137, est=1),
        flow("239.1.1.1", "10.0.0.2", "udp", 137, est=1), flow("0.0.0.0", "10.0.0.5", "udp", 137, est=1),
        flow("127.0.0.1", "127.0.0.2", "tcp", 9001, est=1), flow("10.0.20.5", "10.0.20.6", "tcp", 9001, est=1),
        flow("127.0.0.2", "127.0.0.1", "tcp", 9001, est=1), flow("10.0.20.6", "10.0.20.5", "tcp", 9001, est=1),
        flow("10.0.0.1", "10.0.0.9", "icmp", 0, est=1), flow("10.9.0.1", "10.0.0.9", "icmp", 0, est=1),
        flow("10.9.0.2", "10.0.0.9", "icmp", 0, est=1),
    ]
    batch = classify_flows(flows, hosts.__getitem__, RuleIndex(RULES))
    one = [classify_flow(f, hosts[f.key.initiator], hosts[f.key.responder], RuleIndex(RULES)) for f in flows]
    assert batch == one
    assert {v.reason_text for v in batch} >= {
        "initiator 10.9.0.2 holds no role in roles.yaml (tcp/1433)",
        "responder 10.9.0.2 holds no role in roles.yaml (tcp/1433)",
        "initiator a summarised set of sources holds no role in roles.yaml (tcp/1433)",
        "responder broadcast/multicast 239.1.1.1 holds no role in roles.yaml (udp/137)",
        "initiator 10.9.0.2 holds no role in roles.yaml (icmp)",
    }


def test_loopback_only_rule_needs_loopback_addresses() -> None:
    wire = classify_flow(flow("10.0.20.5", "10.0.20.6", "tcp", 9001, est=1), host("10.0.20.5", VDA),
                         host("10.0.20.6", VDA), INDEX)
    assert wire.classification == Classification.UNEXPECTED
    lo = classify_flow(flow("127.0.0.1", "127.0.0.1", "tcp", 9001, est=1), host("127.0.0.1", VDA),
                       host("127.0.0.1", VDA), INDEX)
    assert lo.classification == Classification.EXPECTED


def ctx(**kw: object) -> StatusContext:
    base: dict[str, object] = {
        "hosts_by_role": {DDC: frozenset({"10.0.0.1", "10.0.0.2"}), SQL: frozenset({"10.0.0.9"}),
                          LIC: frozenset({"10.0.0.5"}), VDA: frozenset({"10.0.20.5", "10.0.20.6"})},
        "seen": frozenset({"10.0.0.1", "10.0.0.2", "10.0.0.9", "10.0.0.5", "10.0.20.5", "10.0.20.6"}),
        "single_hosts": {DDC: ("10.0.0.1", "10.0.0.2"), VDA: ("10.0.20.5", "10.0.20.6")},
    }
    base.update(kw)
    return StatusContext(**base)  # type: ignore[arg-type]


def test_rule_status_kinds_and_hosts_lacking() -> None:
    verdicts = [
        classify_flow(flow("10.0.0.1", "10.0.0.9", "tcp", 1433, est=1), host("10.0.0.1", DDC),
                      host("10.0.0.9", SQL), INDEX),
        classify_flow(flow("10.0.0.1", "10.0.0.5", "tcp", 27000, rej=1), host("10.0.0.1", DDC),
                      host("10.0.0.5", LIC), INDEX),
    ]
    res = {r.rule.id: r for r in rule_status(RULES, verdicts, ctx())}
    assert res["cvad-001"].state == RuleState.OBSERVED
    assert res["cvad-001"].hosts_lacking == ["10.0.0.2"]        # the second controller never used SQL
    assert res["lic-001"].state == RuleState.FAILING
    assert res["cvad-002"].state == RuleState.MISSING
    # Bidirectional: hosts of either side that never took part lack it.
    assert res["cvad-002"].hosts_lacking == ["10.0.20.5", "10.0.20.6", "10.0.0.1", "10.0.0.2"]
    assert res["ns-001"].state == RuleState.NOT_APPLICABLE       # no NetScaler mapped
    assert res["hdx-001"].state == RuleState.NOT_OBSERVABLE      # loopback never crosses a wire


def test_not_observable_when_no_packet_touches_the_hosts() -> None:
    c = ctx(seen=frozenset({"10.0.20.5"}))
    res = {r.rule.id: r for r in rule_status(RULES, [], c)}
    assert res["cvad-001"].state == RuleState.NOT_OBSERVABLE
    assert res["cvad-002"].state == RuleState.MISSING


def test_vantage_limits_observability() -> None:
    # SPEC §4: with a vantage, a rule with neither side in it is not observable (it stays applicable).
    c = ctx(vantage=frozenset({"10.0.0.9"}))                    # captured on the SQL server
    res = {r.rule.id: r for r in rule_status(RULES, [], c)}
    assert res["cvad-001"].state == RuleState.MISSING
    assert res["lic-001"].state == RuleState.NOT_OBSERVABLE


def _wildcard_by_ipaddress(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return ip.is_multicast or ip.is_unspecified or (ip.version == 4 and addr == "255.255.255.255")


def test_wildcard_addresses_are_what_ipaddress_says() -> None:
    # is_wildcard_address decides most IPv4 texts without parsing them: never otherwise than parsing.
    cases = ["0.0.0.0", "255.255.255.255", "224.0.0.1", "239.255.255.250", "240.0.0.1", "223.255.255.255",
             "0.0.0.1", "255.255.255.254", "::", "ff02::1", "ff::1", "::ffff:224.0.0.1", "*", "", "1.2.3",
             "1.2.3.4\n", "256.1.1.1", "224.999.1.1", "01.2.3.4", "00.0.0.0", "0224.0.0.1"]
    octets = ["0", "00", "1", "01", "127", "223", "224", "239", "240", "255", "256", "999"]
    cases += [".".join(p) for p in itertools.product(octets, repeat=4)]
    wrong = [a for a in cases if is_wildcard_address(a) != _wildcard_by_ipaddress(a)]
    assert not wrong
    assert sum(map(is_wildcard_address, cases)) > 100  # both answers are met
