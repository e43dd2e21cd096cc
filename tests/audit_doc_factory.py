"""Build realistic audit JSON documents (docs/json-schema.md, schema 1) in memory for report tests.

The documents are internally consistent: ``summary`` and ``roles[].counts`` are computed from the
generated ``flows`` and ``rules``, so a test can compare what a renderer shows against either.
``hostile=True`` plants capture strings that try to break out of HTML, attributes and script blocks.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor.criteria import criteria_record
from auditor.report.load import load_document
from auditor.report.model import AuditDocument

# Strings an attacker could put in a capture (DNS answers, SNI, HTTP Host). Each must show as text.
HOSTILE_DNS = "<script>alert(1)</script>.evil.example"
HOSTILE_SNI = '"><img src=x onerror=alert(1)>'
HOSTILE_PWN = "<img src=x onerror=window.__pwned=1>"
HOSTILE_SCRIPT_CLOSE = "</script><script>window.__pwned=2</script>"
HOSTILE_LINE_SEP = "line\u2028sep\u2029para.example"
HOSTILE_LONG = "a" * 5000 + ".long.example"
HOSTILE_NAMES = [HOSTILE_DNS, HOSTILE_SNI, HOSTILE_PWN, HOSTILE_SCRIPT_CLOSE, HOSTILE_LINE_SEP, HOSTILE_LONG]

# (role, address prefix, number of hosts)
DEFAULT_ROLES: list[tuple[str, str, int]] = [
    ("Delivery Controller", "10.0.1.", 2),
    ("StoreFront Server", "10.0.2.", 2),
    ("Virtual Delivery Agent", "10.0.20.", 10),
    ("Citrix License Server", "10.0.3.", 1),
    ("Domain Controller", "10.0.4.", 2),
    ("SQL Server", "10.0.5.", 1),
    ("Director", "10.0.6.", 1),
    ("User Device", "192.168.50.", 20),
]

# (id, source, destination, protocol, ports, description, note)
DEFAULT_RULES: list[tuple[str, str, str, str, str, str, str]] = [
    ("cvad-017", "Virtual Delivery Agent", "Delivery Controller", "tcp", "80",
     "VDA registration with the Delivery Controller", ""),
    ("cvad-018", "Delivery Controller", "Virtual Delivery Agent", "tcp", "80",
     "Controller to VDA brokering", ""),
    ("sf-001", "StoreFront Server", "Delivery Controller", "tcp", "443", "XML service (HTTPS)", ""),
    ("sf-002", "User Device", "StoreFront Server", "tcp", "443", "Workspace app to StoreFront", ""),
    ("cvad-040", "User Device", "Virtual Delivery Agent", "tcp", "1494", "ICA session", ""),
    ("cvad-041", "User Device", "Virtual Delivery Agent", "tcp", "2598", "Session Reliability", ""),
    ("cvad-042", "User Device", "Virtual Delivery Agent", "udp", "1494",
     "EDT (HDX over UDP)", "The seed lists EDT as 1494 and 2598; both are kept."),
    ("lic-001", "Delivery Controller", "Citrix License Server", "tcp", "27000",
     "License checkout (lmadmin)", ""),
    ("lic-002", "Delivery Controller", "Citrix License Server", "tcp", "7279", "Citrix vendor daemon", ""),
    ("cvad-060", "Delivery Controller", "SQL Server", "tcp", "1433", "Site database", ""),
    ("ad-001", "Delivery Controller", "Domain Controller", "tcp", "389", "LDAP", ""),
    ("ad-002", "Virtual Delivery Agent", "Domain Controller", "udp", "88", "Kerberos", ""),
    ("dir-001", "Director", "Delivery Controller", "tcp", "80", "Director to Controller (OData)", ""),
    ("dir-002", "Director", "Virtual Delivery Agent", "tcp", "5985", "WinRM",
     "The seed's row reads 'Windows Remote Management (WinRM) 5985'; description repaired."),
    ("sf-010", "StoreFront Server", "StoreFront Server", "tcp", "808", "Subscription store replication", ""),
]

EPOCH = datetime(2026, 11, 26, 13, 0, 0, tzinfo=UTC)


def _ts(seconds: float) -> str:
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hosts_of(roles: list[tuple[str, str, int]]) -> dict[str, list[str]]:
    return {role: [f"{prefix}{10 + i}" for i in range(n)] for role, prefix, n in roles}


def make_audit_document(**kwargs: Any) -> AuditDocument:
    """``make_audit_doc(...)`` loaded as the typed document the renderers take."""
    return load_document(make_audit_doc(**kwargs))


def make_audit_doc(
    *,
    flows: int = 60,
    unmapped: int | None = None,
    roles: list[tuple[str, str, int]] | None = None,
    hostile: bool = False,
    inputs: int = 1,
    seed: int = 7,
) -> dict[str, Any]:
    """An audit document with about ``flows`` role flows plus ``unmapped`` unmapped ones.

    Roughly 70% of role flows are expected (a tenth of them failing), 30% unexpected with a reason.
    """
    rng = random.Random(seed)
    role_spec = DEFAULT_ROLES if roles is None else roles
    role_hosts = _hosts_of(role_spec)
    role_names = [r for r, _, _ in role_spec]
    rules_spec = [r for r in DEFAULT_RULES if r[1] in role_hosts and r[2] in role_hosts]
    n_unmapped = max(1, flows // 10) if unmapped is None else unmapped

    host_roles: dict[str, list[str]] = {}
    for role, addrs in role_hosts.items():
        for a in addrs:
            host_roles.setdefault(a, []).append(role)
    # One host holds two roles, as a Controller that is also the STA would.
    if "Delivery Controller" in role_hosts and "Director" in role_hosts:
        host_roles[role_hosts["Delivery Controller"][0]].append("Director")

    names: dict[str, list[str]] = {}
    for addr, rl in host_roles.items():
        slug = rl[0].lower().replace(" ", "")[:8]
        names[addr] = [f"{slug}{addr.rsplit('.', 1)[1]}.corp.example"]
    hostile_at: list[str] = []
    if hostile:
        addrs = sorted(host_roles)
        for i, bad in enumerate(HOSTILE_NAMES):
            a = addrs[(i * 3) % len(addrs)]
            names[a] = [bad, *names[a]]
            hostile_at.append(a)

    flow_list: list[dict[str, Any]] = []
    rule_flow_count: dict[str, int] = {r[0]: 0 for r in rules_spec}
    rule_failing_only: dict[str, bool] = {r[0]: True for r in rules_spec}
    frame = 10
    t = 0.0
    for i in range(flows):
        roll = rng.random()
        failing = False
        reason: str | None = None
        reason_text: str | None = None
        if roll < 0.7 and rules_spec:
            rid, src, dst, proto, ports, _desc, _note = rules_spec[rng.randrange(len(rules_spec))]
            init = rng.choice(role_hosts[src])
            resp = rng.choice([h for h in role_hosts[dst] if h != init] or role_hosts[dst])
            port = int(ports.split(",")[0].split("-")[0])
            classification = "expected"
            failing = rng.random() < 0.1
            rule_ids = [rid]
        else:
            ra, rb = rng.choice(role_names), rng.choice(role_names)
            init, resp = rng.choice(role_hosts[ra]), rng.choice(role_hosts[rb])
            proto = rng.choice(["tcp", "tcp", "udp"])
            port = rng.choice([22, 135, 445, 3389, 8080, 5900, 49731])
            classification = "unexpected"
            rule_ids = []
            reason = rng.choice(["no-rule-between-roles", "other-port-or-protocol", "peer-not-in-roles"])
            if reason == "peer-not-in-roles":
                resp = f"172.16.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                reason_text = f"{resp} is not in roles.yaml"
            elif reason == "other-port-or-protocol":
                reason_text = f"{ra} to {rb} is documented, but not on {proto}/{port} (closest: cvad-017)"
            else:
                reason_text = f"no catalog rule from {ra} to {rb}"
        conns = rng.randint(1, 20)
        if failing:
            outcome = rng.choice(["rejected", "unanswered"])
            rej = conns if outcome == "rejected" else 0
            est, unans = 0, conns - rej
            states = {"REJ" if outcome == "rejected" else "S0": conns}
        else:
            outcome = "established" if proto == "tcp" else rng.choice(["established", "one-way"])
            est, rej, unans = conns, 0, 0
            states = {"SF": conns} if proto == "tcp" else {}
        opk, rpk = rng.randint(1, 5000) * conns, (0 if failing else rng.randint(1, 5000) * conns)
        ob, rb_ = opk * rng.randint(60, 1400), rpk * rng.randint(60, 1400)
        t += rng.random() * 3
        evidence = rng.choice(["syn", "syn", "synack", "catalog_port", "wellknown_port", "first_packet"])
        if proto == "udp" and evidence in ("syn", "synack"):
            evidence = "wellknown_port"
        flow = _flow(
            init, resp, proto, port, host_roles, names, classification, failing, outcome, rule_ids,
            reason, reason_text, conns, est, rej, unans, opk, rpk, ob, rb_, t, frame, i % inputs,
            evidence, states,
        )
        frame += rng.randint(1, 50)
        flow_list.append(flow)
        for rid in rule_ids:
            rule_flow_count[rid] += 1
            if not failing:
                rule_failing_only[rid] = False

    for _ in range(n_unmapped):
        init = f"198.51.100.{rng.randrange(1, 255)}"
        resp = f"203.0.113.{rng.randrange(1, 255)}"
        pk = rng.randint(1, 200)
        t += rng.random()
        flow_list.append(_flow(
            init, resp, "udp", rng.choice([53, 123, 5353]), host_roles, names, "unmapped", False,
            "established", [], None, None, 1, 1, 0, 0, pk, pk, pk * 80, pk * 120, t, frame, 0,
            "protocol", {},
        ))
        frame += 3

    rules: list[dict[str, Any]] = []
    for rid, src, dst, proto, ports, desc, note in rules_spec:
        n = rule_flow_count[rid]
        status = "missing" if n == 0 else ("failing" if rule_failing_only[rid] else "observed")
        lacking: list[str] = []
        if status != "observed" or rng.random() < 0.3:
            lacking = role_hosts[src][-1:] if len(role_hosts[src]) > 1 else []
        rules.append({
            "id": rid, "product": "Citrix Virtual Apps and Desktops", "source": src, "destination": dst,
            "protocols": [proto], "ports": ports, "description": desc, "note": note,
            "status": status, "flows": n, "hosts_lacking": lacking,
        })

    # A missing rule is guaranteed, and two not-applicable / not-observable ones.
    rules.append({
        "id": "cvad-099", "product": "Citrix Virtual Apps and Desktops", "source": role_names[0],
        "destination": role_names[-1], "protocols": ["tcp"], "ports": "9095",
        "description": "Never seen in this capture", "note": "", "status": "missing", "flows": 0,
        "hosts_lacking": role_hosts[role_names[0]][:1],
    })
    rules.append({
        "id": "pvs-001", "product": "Provisioning Services", "source": "Provisioning Server",
        "destination": "Target Device", "protocols": ["udp"], "ports": "6890-6909",
        "description": "Streaming", "note": "", "status": "not-applicable", "flows": 0, "hosts_lacking": [],
    })
    rules.append({
        "id": "wem-001", "product": "Workspace Environment Management", "source": "WEM Agent",
        "destination": "WEM Infrastructure Service", "protocols": ["tcp"], "ports": "8286",
        "description": "Agent service port", "note": "", "status": "not-observable", "flows": 0,
        "hosts_lacking": [],
    })

    for r in rules:
        for k, v in (("one_way", False), ("bidirectional", False), ("layer", "document"), ("feature", None),
                     ("citation", None), ("uncited", None), ("group", None), ("covered_by", [])):
            r.setdefault(k, v)
    role_entries = []
    for role in role_names:
        members = role_hosts[role] + ([role_hosts["Delivery Controller"][0]] if role == "Director"
                                      and "Delivery Controller" in role_hosts else [])
        as_any = [f for f in flow_list if role in f["initiator_roles"] or role in f["responder_roles"]]
        role_entries.append({
            "role": role, "hosts": members, "entries": members,
            "counts": {
                "expected": sum(1 for f in as_any if f["classification"] == "expected"),
                "failing": sum(1 for f in as_any if f["failing"]),
                "unexpected": sum(1 for f in as_any if f["classification"] == "unexpected"),
                "missing": sum(1 for r in rules if r["status"] == "missing"
                               and role in (r["source"], r["destination"])),
            },
        })

    n_packets = sum(f["packets"] for f in flow_list)
    statuses = ["observed", "failing", "missing", "not-observable", "not-applicable"]
    summary = {
        "packets": n_packets, "connections": sum(f["connections"] for f in flow_list),
        "flows": len(flow_list),
        "expected": sum(1 for f in flow_list if f["classification"] == "expected"),
        "expected_failing": sum(1 for f in flow_list if f["failing"]),
        "unexpected": sum(1 for f in flow_list if f["classification"] == "unexpected"),
        "unmapped": sum(1 for f in flow_list if f["classification"] == "unmapped"),
        "rules": {s: sum(1 for r in rules if r["status"] == s) for s in statuses},
    }
    input_list = [{
        "path": f"/captures/site-a/{'<b>odd</b>' if hostile and k == 0 else 'cap'}{k}.pcapng.zst",
        "sha256": f"{k:02x}" * 32, "size": 123_456_789 + k, "packets": n_packets // inputs,
        "first_ts": _ts(0), "last_ts": _ts(t), "link_types": {"EN10MB": n_packets // inputs, "LINUX_SLL2": 3},
        "format": "pcapng", "compression": "zstd", "truncated": k == inputs - 1 and inputs > 1,
        "warnings": ["file ends inside a packet record after 1203 packets"] if k == inputs - 1 and inputs > 1
        else [],
    } for k in range(inputs)]
    return {
        "schema_version": "2.1",
        "tool": {"name": "pcap-audit", "version": "0.1.0"},
        "run": {
            "started": _ts(t + 100), "finished": _ts(t + 112.5),
            "command_line": "pcap-audit cap0.pcapng.zst --roles roles.yaml -o report.html",
            "engine": "fast",
        },
        "criteria": criteria_record(summary, ("unexpected", "failing")),
        "catalog": {
            "source": {"title": "Communication Ports Used by Citrix Technologies", "publisher": "Citrix",
                       "url": "https://docs.citrix.com/en-us/tech-zone/build/tech-papers/citrix-communication-ports.html",
                       "revision": None, "reviewed": "2026-12-06"},
            "digest": "sha256:" + "ab" * 32, "rules": len(rules), "site_rule_files": ["site.yaml"],
            "products_without_port_data": [
                {"product": "Citrix App Layering", "link": "Firewall Ports"},
                {"product": "Session Recording Service", "link": "Session Recording ports"},
            ],
        },
        "roles_file": {"path": "roles.yaml", "digest": "sha256:" + "cd" * 32},
        "vantage": {"hosts": [], "source": "none"},
        "inputs": input_list,
        "not_audited": {
            "frames": n_packets + 16, "records": n_packets + 12, "non_ip": 4,
            "malformed": {"tcp-short": 2, "ipv4-bad-ihl": 1},
            "unsupported": {"linktype:IEEE802_11": 3},
            "other_protocols": {"ipproto:50": 1, "ipproto:47": 2},
            "bad_checksums": 17, "checksums_verified": "every packet",
            "summarised_flows": 0, "summarised_connections": 0, "summarised_packets": 0,
            "tunnels": {"vxlan": 12}, "evicted_live": 0,
            "names": {"names_kept": 9, "names_dropped": 0, "names_refused": 2, "parse_errors": 1},
            "examples": {"tcp-short": {"input": 0, "frame": 77}, "ipv4-bad-ihl": {"input": 0, "frame": 91}},
        },
        "hosts": [
            {"address": a, "roles": host_roles.get(a, []),
             "names": [{"name": n, "source": "dns" if j == 0 else "sni", "input": 0, "frame": 5 + j}
                       for j, n in enumerate(names.get(a, []))]}
            for a in sorted(host_roles)
        ],
        "flows": flow_list,
        "rules": rules,
        "roles": role_entries,
        "summary": summary,
    }


def _refused_by(resp: str, rejected: int, frame: int) -> list[dict[str, Any]]:
    """Who refused a rejected flow: the responder's RST, or (every third) a firewall's ICMP error."""
    if not rejected:
        return []
    if frame % 3:
        return [{"kind": "rst", "address": resp, "party": "responder", "icmp_type": None, "icmp_code": None,
                 "ttl": 128, "ttl_check": "same", "text": f"RST from the responder {resp} (TTL 128, as its other "
                 "packets)", "connections": rejected}]
    return [{"kind": "icmp", "address": "10.0.0.1", "party": "other host", "icmp_type": 3, "icmp_code": 13,
             "ttl": None, "ttl_check": None,
             "text": "ICMP communication administratively prohibited from 10.0.0.1 (not the responder)",
             "connections": rejected}]


def _flow(
    init: str, resp: str, proto: str, port: int, host_roles: dict[str, list[str]],
    names: dict[str, list[str]], classification: str, failing: bool, outcome: str, rule_ids: list[str],
    reason: str | None, reason_text: str | None, conns: int, est: int, rej: int, unans: int,
    opk: int, rpk: int, ob: int, rb: int, t: float, frame: int, input_no: int, evidence: str,
    states: dict[str, int],
) -> dict[str, Any]:
    return {
        "initiator": init, "responder": resp, "protocol": proto, "port": port,
        "initiator_roles": list(host_roles.get(init, [])), "responder_roles": list(host_roles.get(resp, [])),
        "initiator_names": list(names.get(init, [])), "responder_names": list(names.get(resp, [])),
        "classification": classification, "failing": failing, "outcome": outcome,
        "refused_by": _refused_by(resp, rej, frame), "rule_ids": rule_ids,
        "reason": reason, "reason_text": reason_text,
        "connections": conns, "established": est, "rejected": rej, "unanswered": unans,
        "packets": opk + rpk, "bytes": ob + rb,
        "orig_packets": opk, "resp_packets": rpk, "orig_bytes": ob, "resp_bytes": rb,
        "first_seen": _ts(t), "last_seen": _ts(t + conns * 2.5),
        "first_frame": {"input": input_no, "frame": frame},
        "direction_evidence": evidence, "direction_inferred": evidence not in ("syn", "synack"),
        "conn_states": states, "tunnels": [], "summarised": False,
    }
