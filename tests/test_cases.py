"""Domain cases (sqlfluff's idea): tests/cases/<product>.yml, one tiny conversation and the verdict a
Citrix engineer expects. Run one with `pytest -k storefront_ldap_unexpected`.

A case:
    - name: storefront_user_https_expected        # unique, becomes the test id
      roles: {User Device: [10.1.0.5], StoreFront Server: [10.0.1.20]}
      traffic:                                     # each item one connection, built as real packet records
        - {from: 10.1.0.5, to: 10.0.1.20, proto: tcp, port: 443, kind: handshake}
      expect:                                      # optional: the verdict of the flow of traffic[0]
        classification: expected                   # expected | unexpected | unmapped
        failing: false
        rule: storefront-001                       # a rule id the flow must match
        reason: other-port-or-protocol             # for unexpected
      rules:                                       # optional: rule statuses
        storefront-002: missing
      features: [netscaler-ha]                     # optional: roles.yaml features: (schema 2)
      vantage: [10.0.1.0/24, VDA]                  # optional: roles.yaml vantage: (schema 2)
kinds: handshake (SYN, SYN-ACK, ACK, data both ways, FIN), rejected (SYN answered by RST),
unanswered (SYN and two retransmissions), udp (request and reply), udp-oneway, icmp-echo,
icmp-refused (UDP answered by ICMP port unreachable).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from auditor.audit import analyse
from auditor.catalog import Catalog, load_catalog
from auditor.model import ACK, FIN, RST, SYN, PacketRecord, QuotedPacket, make_record
from auditor.roles import parse_roles

CASES_DIR = Path(__file__).parent / "cases"


def _packed(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def build_records(traffic: list[dict[str, Any]]) -> list[PacketRecord]:
    recs: list[PacketRecord] = []
    ts = 1_700_000_000.0
    frame = 0
    for i, t in enumerate(traffic):
        a, b = _packed(str(t["from"])), _packed(str(t["to"]))
        proto, port, kind = t.get("proto", "tcp"), int(t.get("port", 0)), t.get("kind", "handshake")
        sport = int(t.get("sport", 50000 + i))
        hdr = 20 if len(a) == 4 else 40

        def add(src: bytes, dst: bytes, ipproto: int, sp: int, dp: int, flags: int = 0, plen: int = 0,
                payload: bytes = b"", hdr: int = hdr, **kw: Any) -> None:
            nonlocal ts, frame
            frame += 1
            ts += 0.01
            l4 = 20 if ipproto == 6 else 8
            recs.append(make_record(0, frame, ts, src, dst, ipproto, hdr + l4 + plen, sp, dp, flags,
                                     payload_len=plen, payload=payload, **kw))

        if proto == "tcp":
            if kind == "handshake":
                add(a, b, 6, sport, port, SYN)
                add(b, a, 6, port, sport, SYN | ACK)
                add(a, b, 6, sport, port, ACK)
                add(a, b, 6, sport, port, ACK, 100, b"x" * 100)
                add(b, a, 6, port, sport, ACK, 200, b"y" * 200)
                add(a, b, 6, sport, port, FIN | ACK)
                add(b, a, 6, port, sport, FIN | ACK)
                add(a, b, 6, sport, port, ACK)
            elif kind == "rejected":
                add(a, b, 6, sport, port, SYN)
                add(b, a, 6, port, sport, RST | ACK)
            elif kind == "unanswered":
                for _ in range(3):
                    add(a, b, 6, sport, port, SYN)
            else:
                raise ValueError(f"unknown tcp kind {kind!r}")
        elif proto == "udp":
            add(a, b, 17, sport, port, plen=48, payload=b"\x00" * 48)
            if kind == "udp":
                add(b, a, 17, port, sport, plen=48, payload=b"\x00" * 48)
            elif kind == "icmp-refused":
                quoted = QuotedPacket(a, b, 17, sport, port)
                add(b, a, 1 if len(a) == 4 else 58, 0, 0, plen=28, icmp_type=3 if len(a) == 4 else 1,
                    icmp_code=3 if len(a) == 4 else 4, quoted=quoted)
            elif kind != "udp-oneway":
                raise ValueError(f"unknown udp kind {kind!r}")
        elif proto == "icmp":
            v4 = len(a) == 4
            add(a, b, 1 if v4 else 58, 0, 0, plen=56, icmp_type=8 if v4 else 128, icmp_code=0, icmp_id=7)
            if kind == "icmp-echo":
                add(b, a, 1 if v4 else 58, 0, 0, plen=56, icmp_type=0 if v4 else 129, icmp_code=0, icmp_id=7)
        else:
            raise ValueError(f"unknown proto {proto!r}")
    return recs


def _cases() -> Iterator[Any]:
    for path in sorted(CASES_DIR.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in doc.get("cases", []):
            yield pytest.param(doc.get("product", path.stem), case, id=case["name"])


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize(("product", "case"), list(_cases()))
def test_case(product: str, case: dict[str, Any], catalog: Catalog) -> None:
    doc: dict[str, Any] = {"roles": case["roles"]}
    for key in ("features", "vantage"):  # roles.yaml schema 2 keys
        if key in case:
            doc[key] = case[key] if isinstance(case[key], list) else [case[key]]
    roles = parse_roles(yaml.safe_dump(doc), f"case {case['name']}", catalog.vocabulary)
    traffic = case.get("traffic", [])
    analysis = analyse(build_records(traffic), catalog, roles)
    if "expect" in case:
        first = traffic[0]
        key = (str(ipaddress.ip_address(first["from"])), str(ipaddress.ip_address(first["to"])),
               first.get("proto", "tcp"))
        mine = [v for v in analysis.verdicts
                if (v.flow.key.initiator, v.flow.key.responder, v.flow.key.protocol) == key]
        assert len(mine) == 1, f"expected one flow for {key}, got {[v.flow.key for v in analysis.verdicts]}"
        v = mine[0]
        exp = case["expect"]
        assert str(v.classification) == exp["classification"], (v.reason_text, v.rule_ids)
        if "failing" in exp:
            assert v.failing is exp["failing"]
        if "rule" in exp:
            assert exp["rule"] in v.rule_ids, v.rule_ids
        if "reason" in exp:
            assert v.reason == exp["reason"], v.reason_text
    statuses = {r.rule.id: r for r in analysis.rules}
    for rid, want in case.get("rules", {}).items():
        assert rid in statuses, f"no rule {rid} in the catalog"
        assert str(statuses[rid].state) == want, f"{rid}: {statuses[rid].state}"
    assert "expect" in case or case.get("rules"), "a case must assert something"


def test_every_product_section_has_expected_unexpected_and_missing_cases(catalog: Catalog) -> None:
    seen: dict[str, set[str]] = {}
    for param in _cases():
        product, case = param.values
        kinds = seen.setdefault(product, set())
        if "expect" in case:
            kinds.add(case["expect"]["classification"])
        if "missing" in case.get("rules", {}).values():
            kinds.add("missing")
    products = {s.product for s in catalog.sections if s.port_data}
    lacking = {p: sorted({"expected", "unexpected", "missing"} - seen.get(p, set())) for p in products}
    lacking = {p: k for p, k in lacking.items() if k}
    assert not lacking, f"product sections lacking case kinds: {lacking}"
