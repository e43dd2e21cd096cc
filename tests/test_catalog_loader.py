"""Catalog loading: every error names file, line and field; one run lists them all."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from auditor.catalog import (
    UnknownRoleError,
    export_csv,
    export_json,
    load_catalog,
    validate_files,
)
from auditor.catalog.rule import Citation, FlowRule
from auditor.errors import CatalogError
from auditor.yamlsafe import YamlError, load_yaml, load_yaml_text

Write = Callable[[str, str], Path]

RULE = """\
  - id: {id}
    source: {source}
    destination: StoreFront Server
    protocols: {protocols}
    ports: {ports}
    type: TCP
    description: test
"""


def site(*rules: str, product: str = "Site: Business") -> str:
    return f"product: \"{product}\"\nrules:\n" + "".join(rules)


def rule(id: str = "site-001", source: str = "User Device", protocols: str = "[tcp]",
         ports: str = "[443]") -> str:
    return RULE.format(id=id, source=source, protocols=protocols, ports=ports)


def problems_of(fixture_rules: Path, path: Path) -> list[str]:
    with pytest.raises(CatalogError) as exc:
        load_catalog(fixture_rules, [path])
    return exc.value.problems


# ------------------------------------------------------------------------------------ yamlsafe


def test_yaml_line_map_paths() -> None:
    data, lines = load_yaml_text("a: 1\nrules:\n  - id: x\n    ports:\n      - 80\n      - 443\n", "f.yaml")
    assert data == {"a": 1, "rules": [{"id": "x", "ports": [80, 443]}]}
    assert lines.line("a") == 1
    assert lines.line("rules[0]") == 3
    assert lines.line("rules[0].ports") == 4
    assert lines.line("rules[0].ports[1]") == 6
    assert lines.line("rules[0].missing") == 3  # nearest existing parent


def test_yaml_duplicate_keys_all_reported() -> None:
    with pytest.raises(YamlError) as exc:
        load_yaml_text("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", "f.yaml")
    assert exc.value.problems == ["f.yaml:4: duplicate key 'c' (first on line 3)",
                                  "f.yaml:5: duplicate key 'a' (first on line 1)"]


def test_yaml_unparsable_has_line(write: Write) -> None:
    path = write("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(YamlError) as exc:
        load_yaml(path, "bad.yaml")
    assert exc.value.problems[0].startswith("bad.yaml:")
    assert "cannot parse YAML" in str(exc.value)


def test_yaml_unreadable_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(YamlError, match="cannot read file"):
        load_yaml(tmp_path / "absent.yaml")
    with pytest.raises(YamlError, match="not UTF-8"):
        load_yaml_text(b"a: \xff\xfe\n", "x.yaml")


def test_yaml_is_safe() -> None:
    with pytest.raises(YamlError, match="cannot parse YAML"):
        load_yaml_text("a: !!python/object/apply:os.system ['true']\n", "x.yaml")


# ------------------------------------------------------------------------------------ loading


def test_fixture_catalog_loads(fixture_rules: Path) -> None:
    cat = load_catalog(fixture_rules)
    assert [r.id for r in cat.rules] == ["netscaler-001", "netscaler-002", "netscaler-003",
                                         "storefront-001", "storefront-002"]
    sf = cat.by_id("storefront-001")
    assert sf is not None
    assert (sf.source, sf.destination) == ("StoreFront Server", "Delivery Controller")
    assert sf.ports == ((80, 80), (49152, 65535), (1494, 1495))
    assert sf.protocols == ("tcp", "udp")
    assert sf.bidirectional and sf.note == "repaired"
    assert sf.source_file == "rules/storefront.yaml:14"
    assert cat.by_id("nope") is None
    assert [(s.product, s.link[:8]) for s in cat.products_without_port_data()] == [("App Layering", "https://")]
    assert cat.digest.startswith("sha256:") and len(cat.digest) == 7 + 64
    assert cat.files[0].name == "roles.yaml"


def test_digest_changes_with_content(fixture_rules: Path) -> None:
    before = load_catalog(fixture_rules).digest
    assert load_catalog(fixture_rules).digest == before
    (fixture_rules / "storefront.yaml").write_text(
        (fixture_rules / "storefront.yaml").read_text().replace("XML service", "XML"))
    assert load_catalog(fixture_rules).digest != before


def test_server_ports_exclude_dynamic_and_wide(fixture_rules: Path, write: Write) -> None:
    extra = write("site.yaml", site(rule(ports='["5000-5100", "6000-6063", 7000]')))
    ports = load_catalog(fixture_rules, [extra]).server_ports()
    assert ("tcp", 443) in ports and ("udp", 3003) in ports and ("tcp", 1495) in ports
    assert ("tcp", 6000) in ports and ("tcp", 6063) in ports and ("tcp", 7000) in ports
    assert ("tcp", 5050) not in ports  # 101 ports wide: a client range
    assert not any(p >= 49152 for _, p in ports)
    assert not any(proto == "icmp" for proto, _ in ports)


def test_vocabulary(fixture_rules: Path) -> None:
    v = load_catalog(fixture_rules).vocabulary
    assert v.lookup("  citirx   ADM ") == "NetScaler ADM"
    assert v.lookup("vda") == "Virtual Delivery Agent"
    assert v.lookup("Nope") is None
    assert v.resolve("Controller") == "Delivery Controller"
    with pytest.raises(ValueError, match="did you mean 'Delivery Controller'"):
        v.resolve("Delivery Controler")
    with pytest.raises(UnknownRoleError):
        v.resolve("Nothing Like It At All")
    assert v.suggest("Storefront Srv") == ["StoreFront Server"]
    assert "NetScaler HA Peer" in v.expand({"NetScaler NSIP"})  # every feature: what it can play
    assert "Any Citrix Component" in v.expand({"Delivery Controller"})
    assert "Any Citrix Component" not in v.expand({"DNS Server"})
    assert v.expand({"VDA"}) == {"Virtual Delivery Agent", "Any Citrix Component"}
    assert "Any Citrix Component" in v.names


def test_rules_for_uses_families(fixture_rules: Path) -> None:
    cat = load_catalog(fixture_rules)
    assert [r.id for r in cat.rules_for({"Delivery Controller"}, {"DNS Server"})] == ["netscaler-003"]
    assert cat.rules_for({"DNS Server"}, {"DNS Server"}) == []
    assert [r.id for r in cat.rules_for({"NetScaler NSIP"}, {"NetScaler NSIP"})] == ["netscaler-001"]


@pytest.mark.parametrize(("body", "expected"), [
    (site(rule(), rule()), "site.yaml:10 rules[1].id: duplicate id 'site-001' (first at site.yaml:3)"),
    (site(rule(id="storefront-001")), "site.yaml:3 rules[0].id: duplicate id 'storefront-001' "
                                      "(first at rules/storefront.yaml:14)"),
    (site(rule(source="Delivery Controler")),
     "site.yaml:4 rules[0].source: unknown role 'Delivery Controler' (did you mean 'Delivery Controller'?)"),
    (site(rule(ports='["2000-1000"]')),
     "site.yaml:7 rules[0].ports[0]: reversed range '2000-1000': 2000 > 1000"),
    (site(rule(ports="[80, 70000]")), "site.yaml:7 rules[0].ports[1]: port 70000 out of range (0-65535)"),
    (site(rule(protocols="[tcp, sctp]")), "site.yaml:6 rules[0].protocols[1]: unknown protocol 'sctp'"),
    (site(rule(protocols="[icmp]", ports="[8]")), "site.yaml:7 rules[0].ports: ports given for an icmp-only"),
    (site(rule(ports="443")), "site.yaml:7 rules[0].ports: expected a list, got an integer"),
    (site(rule(ports="[http]")), "site.yaml:7 rules[0].ports[0]: bad port 'http'"),
    (site(rule(protocols="[]")), "site.yaml:6 rules[0].protocols: at least one protocol"),
    (site(rule()).replace("    type: TCP\n", ""), "site.yaml:3 rules[0]: missing required field 'type'"),
    (site(rule()).replace("    type: TCP\n", "    type: TCP\n    prots: [tcp]\n"),
     "site.yaml:9 rules[0].prots: unknown key (did you mean 'ports'?)"),
    (site(rule()).replace("    type: TCP\n", "    type: TCP\n    one_way: maybe\n"),
     "site.yaml:9 rules[0].one_way: expected true or false, got a string"),
    (site(rule()).replace("    type: TCP\n", "    type: TCP\n    type: UDP\n"),
     "site.yaml:9: duplicate key 'type' (first on line 8)"),
    ("product: X\nrules: [\n", "site.yaml:3: cannot parse YAML"),
    ("- just\n- a list\n", "site.yaml:1: expected a rule file (a mapping), got a list"),
    ("rules: []\n", "site.yaml:1: missing required field 'product'"),
    ("product: X\norder: first\nrules: []\n", "site.yaml:2 order: expected an integer, got a string"),
    ("product: X\nport_data: false\nrules: []\n", "site.yaml:2 port_data: a section without port data needs"),
    ("product: StoreFront\nrules: []\n",
     "site.yaml:1 product: product 'StoreFront' also in rules/storefront"),
    (site(rule()) + "roles:\n  - name: VDA\n", "site.yaml:11 roles[0].name: role 'VDA' already defined"),
    (site(rule()) + "roles:\n  - name: Kiosk\n    aliases: [StoreFront]\n",
     "site.yaml:12 roles[0].aliases[0]: alias 'StoreFront' already names role 'StoreFront Server'"),
    (site(rule()) + "roles:\n  - name: Kiosk\n    satisfied_by: [Usr Device]\n",
     "site.yaml:12 roles[0].satisfied_by[0]: unknown role 'Usr Device' (did you mean 'User Device'?)"),
    (site(rule()) + "roles:\n  - name: Kiosk\n    family: vmware\n",
     "site.yaml:12 roles[0].family: unknown family 'vmware'"),
])
def test_each_error_has_its_location(fixture_rules: Path, write: Write, body: str, expected: str) -> None:
    path = write("site.yaml", body)
    problems = problems_of(fixture_rules, path)
    shown = [p.replace(str(path), "site.yaml") for p in problems]
    assert any(p.startswith(expected) for p in shown), shown
    assert validate_files([path], load_catalog(fixture_rules)) == problems


def test_one_run_lists_every_problem(fixture_rules: Path, write: Write) -> None:
    a = write("a.yaml", site(
        rule(id="a-1", source="Delivery Controler"),
        rule(id="a-2", ports='["2000-1000", 70000]'),
        rule(id="a-3", protocols="[tcp, gre]"),
        rule(id="a-1"),
    ))
    b = write("b.yaml", "product: B\nrules:\n  - id: a-2\n    id: again\n")
    c = write("c.yaml", site(rule(id="c-1"), product="C").replace("type: TCP", "type: [TCP]"))
    problems = problems_of(fixture_rules, a)
    with pytest.raises(CatalogError) as exc:
        load_catalog(fixture_rules, [a, b, c])
    everything = exc.value.problems
    assert set(problems) <= set(everything)
    text = "\n".join(everything)
    for needle in ("a.yaml:4 rules[0].source: unknown role", "a.yaml:14 rules[1].ports[0]: reversed range",
                   "a.yaml:14 rules[1].ports[1]: port 70000 out of range", "a.yaml:20 rules[2].protocols[1]",
                   "a.yaml:24 rules[3].id: duplicate id 'a-1'", "b.yaml:4: duplicate key 'id'",
                   "c.yaml:8 rules[0].type: expected a string, got a list"):
        assert needle in text, text
    assert "(and " in str(exc.value)


def test_catalog_folder_errors(tmp_path: Path, fixture_rules: Path) -> None:
    with pytest.raises(CatalogError, match="not a catalog folder"):
        load_catalog(tmp_path / "absent")
    (fixture_rules / "roles.yaml").unlink()
    with pytest.raises(CatalogError, match=r"no roles\.yaml"):
        load_catalog(fixture_rules)


def test_site_roles_and_unreadable_site_file(fixture_rules: Path, write: Write, tmp_path: Path) -> None:
    path = write("site.yaml", site(rule(source="Kiosk")) + "roles:\n  - name: Kiosk\n"
                 "    aliases: [Thin Client]\n    satisfied_by: [User Device]\n")
    cat = load_catalog(fixture_rules, [path])
    assert cat.by_id("site-001") is not None
    assert cat.vocabulary.lookup("thin client") == "Kiosk"
    assert cat.extra == (path,)
    assert cat.rules[-1].id == "site-001"  # site sections come after the catalog's
    assert cat.rules[-1].source_file == f"{path}:3"
    with pytest.raises(CatalogError, match="cannot read file"):
        load_catalog(fixture_rules, [tmp_path / "missing.yaml"])


def test_validate_files_without_base(fixture_rules: Path, write: Write) -> None:
    files = sorted(fixture_rules.glob("*.yaml"))
    assert validate_files(files, None) == []
    assert validate_files([fixture_rules / "storefront.yaml"], None) == []  # roles.yaml beside it
    assert validate_files(files, load_catalog(fixture_rules)) == []
    bad = write("site/bad.yaml", site(rule(ports="[99999]")))
    problems = validate_files([bad], load_catalog(fixture_rules))
    assert problems == [f"{bad}:7 rules[0].ports[0]: port 99999 out of range (0-65535)"]
    (fixture_rules / "netscaler.yaml").write_text("product: [\n")
    problems = validate_files([fixture_rules / "netscaler.yaml"], None)
    assert len(problems) == 1 and problems[0].startswith("rules/netscaler.yaml:2: cannot parse YAML")


# ------------------------------------------------------------------------------------ export


def _from_record(rec: dict[str, object]) -> FlowRule:
    ports: list[tuple[int, int]] = []
    for p in rec["ports"]:  # type: ignore[attr-defined]
        if isinstance(p, int):
            ports.append((p, p))
        else:
            lo, hi = str(p).split("-")
            ports.append((int(lo), int(hi)))
    return FlowRule(
        id=str(rec["id"]), product=str(rec["product"]), source=str(rec["source"]),
        destination=str(rec["destination"]), protocols=tuple(rec["protocols"]),  # type: ignore[arg-type]
        ports=tuple(ports), type=str(rec["type"]), description=str(rec["description"]),
        bidirectional=rec["bidirectional"] is True, configurable=rec["configurable"] is True,
        one_way=rec["one_way"] is True, loopback_only=rec["loopback_only"] is True,
        hostnames=tuple(rec["hostnames"]), note=str(rec["note"]),  # type: ignore[arg-type]
        seed_row=str(rec["seed_row"]), source_file=str(rec["source_file"]), layer=str(rec["layer"]),
        feature=str(rec["feature"]), uncited=str(rec.get("uncited", "")),
        citation=Citation(**rec["citation"]) if isinstance(rec.get("citation"), dict) else None,  # type: ignore[arg-type]
        apps=tuple(rec.get("apps", ())), apps_on=tuple(rec.get("apps_on", ())),  # type: ignore[arg-type]
    )


def rules_from_csv(text: str) -> list[FlowRule]:
    merged: dict[str, dict[str, object]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        rec = merged.get(row["id"])
        if rec is not None:
            rec["protocols"].append(row["protocol"])  # type: ignore[attr-defined]
            continue
        ports: list[int | str] = [int(p) if p.isdigit() else p for p in row["ports"].split(",") if p]
        merged[row["id"]] = {
            **row, "protocols": [row["protocol"]], "ports": ports,
            "hostnames": row["hostnames"].split(), "apps": row["apps"].split(), "apps_on": row["apps_on"].split(),
            **{k: row[k] == "true" for k in ("bidirectional", "configurable", "one_way", "loopback_only")},
        }
    # The CSV carries a citation as one line of text (citation_text): compare the rest.
    return [_from_record({**r, "citation": None}) for r in merged.values()]


def _uncited(rules: Iterable[FlowRule]) -> list[FlowRule]:
    return [dataclasses.replace(r, citation=None) for r in rules]


def test_csv_round_trip(fixture_rules: Path) -> None:
    cat = load_catalog(fixture_rules)
    text = export_csv(cat.rules)
    header = text.splitlines()[0].split(",")
    assert header[:7] == ["id", "product", "source", "destination", "protocol", "ports", "type"]
    assert len(text.splitlines()) == 1 + sum(len(r.protocols) for r in cat.rules)
    assert "49152-65535" in text
    assert rules_from_csv(text) == _uncited(cat.rules)


def test_csv_with_pandas(fixture_rules: Path) -> None:
    import pandas as pd

    cat = load_catalog(fixture_rules)
    df = pd.read_csv(io.StringIO(export_csv(cat.rules)), dtype=str, keep_default_na=False)
    assert set(df["id"]) == {r.id for r in cat.rules}
    assert {"id", "product", "source", "destination", "protocol", "ports", "description"} <= set(df.columns)
    row = df[(df["id"] == "storefront-001") & (df["protocol"] == "udp")].iloc[0]
    assert row["ports"] == "80,49152-65535,1494-1495"


def test_json_round_trip(fixture_rules: Path) -> None:
    cat = load_catalog(fixture_rules)
    data = json.loads(export_json(cat.rules))
    assert data[3]["ports"] == [80, "49152-65535", "1494-1495"]
    assert data[3]["protocols"] == ["tcp", "udp"]
    assert [_from_record(r) for r in data] == list(cat.rules)


# ------------------------------------------------------------------------------------ real data


def test_real_catalog(real_rules: Path) -> None:
    cat = load_catalog(real_rules)
    v = cat.vocabulary
    assert v.lookup("Citirx ADM") == "NetScaler ADM"
    assert v.lookup("VDA") == "Virtual Delivery Agent"
    assert v.lookup("Controller") == "Delivery Controller"
    assert "Any Citrix Component" in v.expand({"Delivery Controller"})
    assert "Any Citrix Component" not in v.expand({"DNS Server"})
    assert "NetScaler HA Peer" in v.expand({"NetScaler NSIP"})  # every feature: what it can play
    assert "NetScaler HA Peer" not in v.expand({"NetScaler NSIP"}, features=())
    assert "NetScaler HA Peer" in v.expand({"NetScaler NSIP"}, features={"netscaler-ha"})
    assert "Delivery Controller" not in v.expand({"Cloud Connector"})
    assert "Secure Ticketing Authority" in v.expand({"Cloud Connector"}, features=())
    assert "NetScaler HA Peer" not in v.expand({"NetScaler NSIP"}, features=())
    assert "NetScaler HA Peer" in v.expand({"NetScaler NSIP"}, features={"netscaler-ha"})
    assert "Delivery Controller" not in v.expand({"Cloud Connector"})
    assert "Secure Ticketing Authority" in v.expand({"Cloud Connector"}, features=())
    assert "Citrix Gateway Plug-in" not in v.expand({"User Device"}, features=("citrix-gateway",))
    assert v.role_feature("Citrix Gateway Plug-in") == "gateway-vpn"
    assert v.lookup_feature("NetScaler-HA") == "netscaler-ha" and "rendezvous" in v.feature_names()
    assert {g.id for g in cat.alternatives} >= {"netscaler-ha-sync", "hdx-user-device"}
    assert cat.by_id("cvad-017") is not None and cat.by_id("cvad-017").feature == "udp-audio"  # type: ignore[union-attr]
    assert v.lookup("Citrix Hypervisor") == "XenServer"
    assert v.lookup("STA") == "Secure Ticketing Authority"
    assert v.lookup("Citrix Workspace app") == v.lookup("Citrix Workspace App") == "User Device"
    assert ("tcp", 1494) in cat.server_ports() and ("tcp", 2598) in cat.server_ports()
    assert ("tcp", 27000) in cat.server_ports()
    assert not any(p >= 49152 for _, p in cat.server_ports() if p == 65535)
    for product in ("Session Recording Service", "Endpoint Management", "App Layering"):
        assert any(product.lower() in s.product.lower() for s in cat.products_without_port_data()), product
    assert json.loads(export_json(cat.rules)) and rules_from_csv(export_csv(cat.rules)) == _uncited(cat.rules)
    assert [_from_record(r) for r in json.loads(export_json(cat.rules))] == list(cat.rules)
    assert validate_files(list(cat.files), None) == []
