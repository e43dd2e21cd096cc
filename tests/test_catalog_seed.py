"""The bundled catalog (rules/*.yaml, rules/roles.yaml) against the seed document it was built from.

Reads the YAML with plain ``yaml.safe_load`` on purpose: this checks the *data* (every seed row and
prose flow is there, repaired, with resolvable roles), independently of the loader in auditor.catalog.
The seed is ``../shared/seed/citrix-communication-ports.txt`` beside the repository; the tests that
need it are skipped, with the reason, when it is absent.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
DOCS = REPO / "docs"
SEED = REPO.parent / "shared" / "seed" / "citrix-communication-ports.txt"

# Rules per file, derived from the seed by hand. "rows" = data rows of the section's table(s),
# continuation rows (empty source/destination cells) included.
EXPECTED_COUNTS = {
    # 10 rows; row 9 "SNMP 161, 162 ... from ADC instances to SDX SVM" split into traps (instance ->
    # SVM, 162) and polling (SVM -> instance, 161): 10 + 1.
    "netscaler-sdx": 11,
    # 27 rows; row 22 "SNMP 161, 162 To send SNMP events/traps" split into traps and polling: 27 + 1.
    "netscaler": 28,
    # 20 rows (the line "Port to exchange heartbeats between HA nodes." is row 13's wrapped description);
    # rows 1 and 2 split per destination role (NetScaler NSIP / Citrix SD-WAN instance): +2; row 3
    # (ICMP) split into NSIP, SD-WAN instance and the secondary ADM its description names: +2;
    # prose: syslog from the SNIP (CTX124386) and NITRO/SSH/ICMP to the management SNIP in HA: +4.
    "netscaler-adm": 28,
    # 3 rows of the "Service Port Protocol" table + 10 rows of the Active Directory table = 13;
    # prose: admins to the admin interface on 443: +1 (the prose outbound-443 flow is table row 3).
    "connector-appliance": 14,
    # 4 rows (DigiCert URLs) + prose: outbound 443 to Citrix Cloud.
    "cloud-connector": 5,
    # 22 rows, one rule each.
    "citrix-daas": 22,
    # 1 row + prose: HDX proxied via the Cloud Connectors (443) + VDAs to *.nssvc.net (443 tcp+udp).
    "gateway-service": 3,
    # 17 rows, one rule each.
    "citrix-gateway": 17,
    # 15 rows; row 3 "DNS Service Domain Controller TCP, UDP TCP 53, 389" is two rows merged: +1.
    "xenserver": 16,
    # 8 rows, one rule each.
    "license-server": 8,
    # 23 rows; rows 6 and 18 "SNMP UDP 161, 162" each split into polling and traps: +2.
    "sd-wan": 25,
    # 21 rows; row 11 "Citrix Director and Admin Workstation" split per source role: +1.
    "cvad": 22,
    # 3 rows + the DCOM follow-on connection (dynamic RPC / static port) that row 2's text describes.
    "fas": 4,
    # 21 rows, one rule each (row 12's "UDP 66, 67" becomes UDP 67: see PORT_EXCEPTIONS).
    "provisioning": 21,
    # 2 rows, one rule each.
    "universal-print-server": 2,
    # 2 rows, one rule each (the note under the table adds no flow).
    "remote-pc-access": 2,
    # 3 rows, one rule each.
    "session-recording": 3,
    # 9 rows; row 7 "Delivery Controller, XenMobile" split per destination role: +1.
    "storefront": 10,
    # 9 rows, one rule each.
    "wem": 9,
    # Link-only sections: no port data.
    "session-recording-service": 0,
    "endpoint-management": 0,
    "app-layering": 0,
}

# Data rows per section's table(s) in the seed (cross-checked against the seed text below, and every
# row number 1..N must be the seed_row of at least one rule).
SEED_ROWS = {
    "netscaler-sdx": 10, "netscaler": 27, "netscaler-adm": 20, "connector-appliance": 13,
    "cloud-connector": 4, "citrix-daas": 22, "gateway-service": 1, "citrix-gateway": 17, "xenserver": 15,
    "license-server": 8, "sd-wan": 23, "cvad": 21, "fas": 3, "provisioning": 21,
    "universal-print-server": 2, "remote-pc-access": 2, "session-recording": 3, "storefront": 9, "wem": 9,
}

LINK_ONLY = {"session-recording-service": "Citrix Session Recording Service",
             "endpoint-management": "Citrix Endpoint Management",
             "app-layering": "Citrix App Layering"}

# Seed port numbers deliberately absent from a section's rules.
PORT_EXCEPTIONS = {
    # "UDP 66, 67 Only DHCP options: ... 66-TFTP Server Name ... 67-Boot file name": 66 and 67 are DHCP
    # option numbers. The flow is DHCP (server port UDP 67, which is catalogued); 66 is no port at all.
    ("Provisioning Services", 66),
    # ADM row 14 "NetScaler SNIP TCP 161 To send SNMP events": the events are traps, sent to ADM's
    # UDP 162 (netscaler-adm-018); 161 is the NetScaler's own agent port, polled by ADM in the NetScaler
    # table's split (netscaler-023), not a port of this row's flow.
    ("NetScaler ADM", 161),
}

# Rows whose seed text is machine-translation debris: each rule from them carries a note saying so.
GARBLED = {
    ("netscaler", "table row 3"),       # "synchroniza...tion" with Chinese in the middle (TCP 3008)
    ("netscaler", "table row 24"),      # TCP 5563 description in Chinese ("Au-dit" as Australian dollar)
    ("netscaler-adm", "table row 7"),   # "LDAP" + Chinese "external authentication server"
    ("xenserver", "table row 10"),      # "8892<year>,21064<year>" + Chinese "communication between all"
    ("provisioning", "table row 14"),   # "TFTP" + Chinese "server"
    ("storefront", "table row 5"),      # prose below the table: "<" + Chinese "endpoint" + "uri = ...>"
}

# Other seed quirks that must be explained in the rule's note.
QUIRKS = {
    ("netscaler-sdx", "table row 9"),      # SNMP 161, 162 in one row
    ("netscaler", "table row 13"),         # LOM row carries the routing daemon's description
    ("netscaler", "table row 22"),         # SNMP 161, 162 in one row
    ("netscaler-adm", "table row 1"),      # "NetScaler NSIP or Citrix SD-WAN instance"
    ("netscaler-adm", "table row 6"),      # destination "Users" for SMTP
    ("netscaler-adm", "table row 13"),     # "Citirx ADM UDP 5005" broken over two lines
    ("netscaler-adm", "table row 14"),     # "NetScaler SNIP TCP 161 To send SNMP events"
    ("netscaler-adm", "table row 17"),     # "To receive syslog messages from NetScaler ADM"
    ("xenserver", "table row 2"),          # NTP over TCP, UDP
    ("xenserver", "table row 3"),          # DNS and LDAP rows merged
    ("xenserver", "table row 9"),          # Syslog TCP 514
    ("sd-wan", "table row 4"),             # RADIUS TCP 1812
    ("sd-wan", "table row 6"),             # SNMP 161, 162 "polling"
    ("sd-wan", "table row 7"),             # NetFlow "polling"
    ("sd-wan", "table row 8"),             # AppFlow TCP 4739
    ("sd-wan", "table row 9"),             # destination "API"
    ("sd-wan", "table row 11"),            # WANOP TCP N/A
    ("sd-wan", "table row 20"),            # destination 9.9.9.9
    ("cvad", "table row 11"),              # "Citrix Director and Admin Workstation"
    ("cvad", "table row 12"),              # LDAP 389 inheriting a VDA destination
    ("cvad", "table row 13"),              # Citrix Workspace app -> StoreFront over UDP
    ("provisioning", "table row 12"),      # DHCP options 66/67 as ports
    ("storefront", "table row 7"),         # "Delivery Controller, XenMobile"
}

RULE_KEYS = {"id", "source", "destination", "protocols", "ports", "type", "description", "seed_row",
             "bidirectional", "configurable", "one_way", "loopback_only", "hostnames", "note", "feature",
             "apps", "apps_on"}
FLAGS = ("bidirectional", "configurable", "one_way", "loopback_only")
CJK = re.compile(r"[\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
                 r"\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")
ROW_RE = re.compile(r"table row (\d+)")


def norm(name: str) -> str:
    return " ".join(name.split()).casefold()


@cache
def rule_files() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
            for p in sorted(RULES.glob("*.yaml")) if p.name not in ("roles.yaml", "alternatives.yaml")}


@cache
def roles() -> list[dict[str, Any]]:
    return yaml.safe_load((RULES / "roles.yaml").read_text(encoding="utf-8"))["roles"]


@cache
def index() -> dict[str, str]:
    """Normalised name or alias -> canonical name."""
    out: dict[str, str] = {}
    for r in roles():
        for n in (r["name"], *r.get("aliases", [])):
            out[norm(n)] = r["name"]
    return out


def all_rules() -> list[tuple[str, dict[str, Any]]]:
    return [(stem, r) for stem, f in rule_files().items() for r in f["rules"]]


def canon(name: str) -> str:
    return index()[norm(name)]


def played_by(role: str) -> set[str]:
    """Canonical roles whose hosts also play ``role`` (itself included), transitively; family aware."""
    by_name = {r["name"]: r for r in roles()}
    target = by_name[canon(role)]
    if target.get("family") == "citrix":
        return {r["name"] for r in roles() if r.get("citrix")} | {target["name"]}
    out: set[str] = set()
    todo = [target["name"]]
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo.extend(canon(s) for s in by_name[n].get("satisfied_by", []))
    return out


def port_ranges(ports: list[Any]) -> list[tuple[int, int]]:
    out = []
    for p in ports:
        if isinstance(p, int):
            out.append((p, p))
        else:
            lo, hi = (int(x) for x in p.split("-"))
            out.append((lo, hi))
    return out


# --------------------------------------------------------------------------------------------- files


def test_every_section_has_its_file_and_rule_count() -> None:
    files = rule_files()
    assert set(files) == set(EXPECTED_COUNTS)
    counts = {stem: len(f["rules"]) for stem, f in files.items()}
    assert counts == EXPECTED_COUNTS
    assert sum(counts.values()) == 250


def test_file_fields_and_orders() -> None:
    files = rule_files()
    for stem, f in files.items():
        assert set(f) <= {"product", "order", "port_data", "link", "description", "rules"}, stem
        assert isinstance(f["order"], int) and isinstance(f["port_data"], bool), stem
    orders = [f["order"] for f in files.values()]
    assert sorted(orders) == list(range(1, len(files) + 1))
    assert files["storefront"]["order"] == 18
    assert len({norm(f["product"]) for f in files.values()}) == len(files)


def test_link_only_sections() -> None:
    files = rule_files()
    for stem, product in LINK_ONLY.items():
        f = files[stem]
        assert f["product"] == product
        assert f["port_data"] is False and f["rules"] == [] and f["link"].strip()
    for stem, f in files.items():
        if stem not in LINK_ONLY:
            assert f["port_data"] is True and f["rules"], stem


def test_ids_unique_and_named_after_their_file() -> None:
    seen: set[str] = set()
    for stem, f in rule_files().items():
        for i, r in enumerate(f["rules"], 1):
            assert re.fullmatch(rf"{re.escape(stem)}-\d{{3}}", r["id"]), r["id"]
            assert r["id"] == f"{stem}-{i:03d}", f"{r['id']}: ids run in seed order without gaps"
            assert r["id"] not in seen
            seen.add(r["id"])


def test_rule_schema() -> None:
    for _stem, r in all_rules():
        rid = r["id"]
        assert set(r) <= RULE_KEYS, rid
        assert r["protocols"] and set(r["protocols"]) <= {"tcp", "udp", "icmp"}, rid
        assert len(set(r["protocols"])) == len(r["protocols"]), rid
        ranges = port_ranges(r["ports"])
        assert all(0 < lo <= hi <= 65535 for lo, hi in ranges), rid
        if r["protocols"] == ["icmp"]:
            assert r["ports"] == [], rid
        for key in ("type", "description", "seed_row"):
            assert isinstance(r[key], str) and r[key].strip(), (rid, key)
        assert r["seed_row"].startswith(("table row ", "prose: ")), rid
        for flag in FLAGS:
            assert isinstance(r.get(flag, False), bool), (rid, flag)
        assert isinstance(r.get("note", ""), str) and isinstance(r.get("hostnames", []), list), rid
        if not r["ports"] and "icmp" not in r["protocols"]:
            assert r.get("note"), f"{rid}: a rule without ports must say why"


def test_every_seed_row_is_catalogued() -> None:
    for stem, n in SEED_ROWS.items():
        rows = {int(m) for r in rule_files()[stem]["rules"] for m in ROW_RE.findall(r["seed_row"])}
        assert rows == set(range(1, n + 1)), stem


# --------------------------------------------------------------------------------------------- roles


def test_role_names_and_aliases_unique() -> None:
    seen: dict[str, str] = {}
    for r in roles():
        assert set(r) <= {"name", "aliases", "citrix", "satisfied_by", "family", "hostnames", "description",
                          "feature"}
        for n in (r["name"], *r.get("aliases", [])):
            key = norm(n)
            assert key not in seen, f"{n!r} of {r['name']!r} already names {seen[key]!r}"
            seen[key] = r["name"]
        for other in r.get("satisfied_by", []):
            assert norm(other) in index(), f"{r['name']}: satisfied_by {other!r} is not a role"
        assert r.get("description", "").strip(), r["name"]


def test_every_rule_role_resolves() -> None:
    for _, r in all_rules():
        for end in ("source", "destination"):
            assert norm(r[end]) in index(), f"{r['id']}: {end} {r[end]!r} is not a role or alias"
            assert r[end] == canon(r[end]), f"{r['id']}: use the canonical name for {r[end]!r}"


@pytest.mark.parametrize("names", [
    ("VDA", "Virtual Delivery Agent"),
    ("Citrix Hypervisor", "XenServer"),
    ("Citirx ADM", "NetScaler ADM", "Citrix ADM", "NetScaler ADM Appliance"),
    ("Controller", "Delivery Controller", "Delivery Controllers"),
    ("Director Server", "Director", "Citrix Director"),
    ("StoreFront", "StoreFront Server"),
    ("Citrix Workspace app", "Citrix Workspace App", "User Device"),
    ("Cloud Connector", "Cloud Connectors"),
    ("Active Directory Domain", "Domain Controller"),
    ("STA", "Secure Ticketing Authority", "Secure Ticketing Authority (STA)"),
    ("NTP Service", "NTP Server"),
    ("DNS Service", "DNS", "DNS Server"),
    ("FileServer", "NAS Head/ File Server", "File Server"),
    ("RADIUS external authentication server", "RADIUS Server (Load Balancing)", "RADIUS", "RADIUS Server"),
    ("TACACS+", "TACACS external authentication server", "TACACS Server"),
    ("LDAP Server (Load Balancing)", "LDAP external authentication server", "LDAP Server"),
    ("Citrix FAS Server", "FAS Server"),
    ("Admin Workstation (XenCenter)", "Admin Workstation"),
    ("Infrastructure service", "WEM Infrastructure Service"),
    ("Agent host", "WEM Agent"),
])
def test_seed_spellings_are_one_role(names: tuple[str, ...]) -> None:
    assert len({canon(n) for n in names}) == 1


def test_ambiguous_bare_names_are_not_aliases() -> None:
    assert "agent" not in index()   # WEM agent or NetScaler ADM agent
    assert "users" not in index()   # the recipients of ADM's mail, not user devices


@pytest.mark.parametrize(("role", "player"), [
    ("NetScaler Appliance (for High Availability)", "NetScaler NSIP"),
    ("NetScaler Appliances in cluster setup", "NetScaler NSIP"),
    ("NetScaler Appliance (For Global Site Load Balancing)", "NetScaler NSIP"),
    ("NetScaler instance", "NetScaler NSIP"),
    ("NetScaler/CPX instance", "NetScaler NSIP"),
    ("NetScaler", "NetScaler SNIP"),
    ("XenServer Resource Pool Master", "XenServer"),
    ("Clustering", "Citrix Hypervisor"),
    ("Citrix Gateway SNIP", "NetScaler SNIP"),
    ("Citrix SD-WAN Instance", "SD-WAN WANOP Edition"),
    ("Secure Ticketing Authority", "Delivery Controller"),
    ("Secure Ticketing Authority", "Cloud Connector"),
    ("LDAP Server", "Domain Controller"),
    ("TFTP Server", "Provisioning Server"),
    ("Citrix Cloud", "Gateway Service"),
    ("Any Citrix Component", "Virtual Delivery Agent"),
    ("Any Citrix Component", "NetScaler ADM"),
    ("Any Citrix Component", "XenServer"),
])
def test_families(role: str, player: str) -> None:
    assert canon(player) in played_by(role)


@pytest.mark.parametrize("role", [
    "DNS Server", "NTP Server", "Microsoft SQL Server", "Domain Controller", "VMware vCenter Server",
    "Microsoft SCVMM Server", "Nutanix AHV", "User Device", "Admin Workstation", "Citrix Cloud",
    "Gateway Service", "DigiCert", "Citrix WEM Service",
])
def test_not_a_citrix_component(role: str) -> None:
    assert canon(role) not in played_by("Any Citrix Component")


def test_cloud_endpoints_have_hostnames() -> None:
    by_name = {r["name"]: r for r in roles()}
    assert {"*.cloud.com", "*.citrixworkspacesapi.net"} <= set(by_name["Citrix Cloud"]["hostnames"])
    assert by_name["Gateway Service"]["hostnames"] == ["*.nssvc.net"]
    assert by_name["Citrix Insight Services"]["hostnames"] == ["cis.citrix.com"]
    assert by_name["DigiCert"]["hostnames"] == ["*.digicert.com"]


# --------------------------------------------------------------------------------------------- repairs


def test_no_cjk_in_catalog_or_docs() -> None:
    paths = [*RULES.glob("*.yaml"), *(DOCS / n for n in ("roles.md", "catalog-notes.md"))]
    for path in paths:
        if path.exists():
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                assert not CJK.search(line), f"{path.name}:{n}: {line}"


def _rules_at(stem: str, row: str) -> list[dict[str, Any]]:
    found = [r for r in rule_files()[stem]["rules"] if re.search(rf"\b{row}\b", r["seed_row"])]
    assert found, f"no rule from {stem} {row}"
    return found


def test_garbled_rows_are_repaired_and_noted() -> None:
    assert len(GARBLED) >= 6
    for stem, row in GARBLED:
        rules = _rules_at(stem, row)
        assert any("machine-translation" in r.get("note", "").casefold() for r in rules), (stem, row)
        assert all(r.get("note", "").strip() for r in rules), (stem, row)
    noted = [r for _, r in all_rules() if "machine-translation" in r.get("note", "").casefold()]
    assert len(noted) >= 6


def test_seed_quirks_are_noted() -> None:
    for stem, row in QUIRKS:
        for r in _rules_at(stem, row):
            assert r.get("note", "").strip(), f"{r['id']} ({stem} {row}) needs a note"


def test_flags_where_the_seed_implies_them() -> None:
    rules = dict((r["id"], r) for _, r in all_rules())

    def find(stem: str, **want: Any) -> list[dict[str, Any]]:
        return [r for s, r in all_rules() if s == stem and all(r.get(k) == v for k, v in want.items())]

    assert find("cvad", destination="Virtual Delivery Agent", source="HdxVideo.js")[0]["loopback_only"]
    assert all(r.get("bidirectional") for r in find("cvad", ports=[80], destination="Virtual Delivery Agent"))
    assert find("cvad", ports=["16500-16509"])[0]["bidirectional"]
    assert find("remote-pc-access", ports=[9])[0]["one_way"]
    for stem, port in (("netscaler", 3003), ("netscaler", 7000), ("netscaler-adm", 5005), ("sd-wan", 2055),
                       ("netscaler", 162), ("netscaler-adm", 162), ("netscaler-adm", 4739)):
        assert all(r.get("one_way") for r in find(stem, ports=[port])), (stem, port)
    assert all(r.get("configurable") for r in find("universal-print-server"))
    assert find("provisioning", ports=["6910-6930"])[0]["configurable"]
    nssvc = [r for r in find("gateway-service") if r["seed_row"].startswith("prose")
             and r["source"] == "Virtual Delivery Agent"]
    assert nssvc[0]["hostnames"] == ["*.nssvc.net", "*.c.nssvc.net", "*.g.nssvc.net"]
    assert sorted(nssvc[0]["protocols"]) == ["tcp", "udp"] and nssvc[0]["ports"] == [443]
    assert find("license-server", ports=[443])[0]["hostnames"] == ["cis.citrix.com"]
    assert all(any("digicert.com" in h for h in r["hostnames"])
               for r in find("cloud-connector", destination="DigiCert"))
    sf_p2p = find("storefront", source="StoreFront Server", destination="StoreFront Server", ports=[])
    assert sf_p2p and "random" in sf_p2p[0]["note"].casefold()
    assert rules["sd-wan-012"]["ports"] == [] and "N/A" in rules["sd-wan-012"]["note"]
    # One rule per protocol pair, never one per protocol: "TCP, UDP" rows are a single rule.
    assert find("storefront", ports=[88])[0]["protocols"] == ["tcp", "udp"]
    # Prose flows.
    assert find("connector-appliance", destination="Citrix Cloud", ports=[443])
    assert find("connector-appliance", destination="Connector Appliance", ports=[443])
    assert find("cloud-connector", destination="Citrix Cloud", ports=[443])
    assert find("connector-appliance", ports=["49152-65535"])[0]["destination"] == "Domain Controller"


# --------------------------------------------------------------------------------------------- seed

TABLE_HEADERS = {"Source Destination Type Port Details": "flows",
                 "Service Port Supported Domain Protocol": "services"}
SUBHEADINGS = {
    "Connector Appliance with Active Directory": "Connector Appliance",
    "Rendezvous Protocol and HDX Enlightened Data Transport Protocol (EDT)": "Citrix Gateway Service",
}
# "<type> <ports>" in a Source/Destination table ("TCP, UDP TCP 53, 389" is the merged XenServer row).
FLOW_PORTS = re.compile(r"(?<![\w/])(?:TCP,\s?UDP|UDP/TCP|TCP|UDP|HTTPS|HTTP|SNMP|Syslog|RADIUS|TACACS|"
                        r"DCOM|SSH)\s+(?:TCP\s+)?(\d[\d\s,.\u5e74]*)")
# "<service> <port> <protocol>" in the Connector Appliance tables.
SERVICE_PORTS = re.compile(r"(?<!\S)(\d+(?:\.\.\d+)?)\s+(?:TCP/UDP|TCP|UDP)\b")
TYPE_TOKEN = re.compile(r"\b(?:TCP|UDP|ICMP|HTTPS?|SNMP|Syslog|RADIUS|TACACS|DCOM|SSH)\b")


@cache
def seed_rows() -> list[tuple[str, str]]:
    """(product heading, "<table kind>\t<row text>") of every data row of the seed's tables."""
    if not SEED.exists():
        pytest.skip(f"seed document not found at {SEED}")
    products = {f["product"] for f in rule_files().values()}
    section, in_table, rows = "", None, []
    for line in SEED.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if not s:
            in_table = None
        elif in_table:
            if TYPE_TOKEN.search(s):   # else a description wrapped onto its own line (ADM row 13)
                rows.append((section, in_table, s))
        elif s in products:
            section = s
        elif s in SUBHEADINGS:
            section = SUBHEADINGS[s]
        elif header := next((h for h in TABLE_HEADERS if s.startswith(h)), None):
            in_table = TABLE_HEADERS[header]
    return [(sec, f"{kind}\t{text}") for sec, kind, text in rows]


def seed_ports(kind_text: str) -> list[tuple[int, int]]:
    kind, text = kind_text.split("\t", 1)
    specs = SERVICE_PORTS.findall(text) if kind == "services" else FLOW_PORTS.findall(text)
    out = []
    for spec in specs:
        for m in re.finditer(r"(\d+)(?:\.\.(\d+))?", spec):
            lo = int(m.group(1))
            out.append((lo, int(m.group(2) or lo)))
    return out


def test_seed_row_counts_match() -> None:
    by_product = {f["product"]: stem for stem, f in rule_files().items()}
    counted: dict[str, int] = {}
    for product, _ in seed_rows():
        counted[by_product[product]] = counted.get(by_product[product], 0) + 1
    assert counted == SEED_ROWS


def test_every_seed_port_is_catalogued() -> None:
    by_product = {f["product"]: f for f in rule_files().values()}
    missing = []
    seen_any = 0
    for product, row in seed_rows():
        covered = [rng for r in by_product[product]["rules"] for rng in port_ranges(r["ports"])]
        for lo, hi in seed_ports(row):
            seen_any += 1
            if (product, lo) in PORT_EXCEPTIONS and lo == hi:
                continue
            if not any(a <= lo and hi <= b for a, b in covered):
                missing.append((product, lo if lo == hi else f"{lo}-{hi}", row.split("\t", 1)[1][:60]))
    assert seen_any > 200
    assert not missing, missing


def test_products_are_seed_headings() -> None:
    if not SEED.exists():
        pytest.skip(f"seed document not found at {SEED}")
    lines = {line.strip() for line in SEED.read_text(encoding="utf-8").splitlines()}
    for f in rule_files().values():
        assert f["product"] in lines, f["product"]
