"""`pcap-audit catalog ...` through click's CliRunner: output and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from auditor.catalog import export_json, load_catalog
from auditor.cli import main

Write = Callable[[str, str], Path]


def run(rules: Path | None, *args: str) -> Result:
    pre = ["catalog", "--rules-dir", str(rules)] if rules is not None else ["catalog"]
    return CliRunner().invoke(main, [*pre, *args], catch_exceptions=False)


def ids(result: Result) -> list[str]:
    return [line.split()[0] for line in result.stdout.splitlines()[1:] if line and not line[0].isdigit()]


def test_list_all(fixture_rules: Path) -> None:
    r = run(fixture_rules, "list")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].split()[:2] == ["ID", "PRODUCT"]
    assert ids(r) == ["netscaler-001", "netscaler-002", "netscaler-003", "storefront-001", "storefront-002"]
    assert "User Device → StoreFront Server" in r.stdout
    assert "80,443" in r.stdout and "5 rules" in r.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["--product", "storefront"], ["storefront-001", "storefront-002"]),
    (["--product", "Net"], ["netscaler-001", "netscaler-002", "netscaler-003"]),
    (["--role", "controller"], ["netscaler-003", "storefront-001"]),  # via the citrix family
    (["--role", "NetScaler NSIP"], ["netscaler-001", "netscaler-002", "netscaler-003"]),  # HA rules too
    (["--role", "DNS Server"], ["netscaler-003"]),
    (["--port", "1495"], ["storefront-001"]),
    (["--port", "50000", "--protocol", "udp"], ["storefront-001"]),
    (["--protocol", "icmp"], ["netscaler-002"]),
    (["--port", "443", "--role", "StoreFront"], ["storefront-002"]),
])
def test_list_filters(fixture_rules: Path, args: list[str], expected: list[str]) -> None:
    r = run(fixture_rules, "list", *args)
    assert r.exit_code == 0, r.output
    assert ids(r) == expected


def test_list_nothing_and_bad_filters(fixture_rules: Path) -> None:
    r = run(fixture_rules, "list", "--port", "9")
    assert r.exit_code == 0 and r.stdout == "" and "0 rules" in r.stderr
    r = run(fixture_rules, "list", "--role", "Delivery Controler")
    assert r.exit_code == 2 and "did you mean 'Delivery Controller'" in r.stderr
    r = run(fixture_rules, "list", "--product", "Nope")
    assert r.exit_code == 2 and "unknown product 'Nope'" in r.stderr
    r = run(fixture_rules, "list", "--port", "70000")
    assert r.exit_code == 2


def test_list_with_site_rules(fixture_rules: Path, write: Write) -> None:
    site = write("site.yaml", """\
        product: "Site: Business"
        roles:
          - name: Backup Server
        rules:
          - id: site-001
            source: Backup Server
            destination: VDA
            protocols: [tcp]
            ports: [10000]
            type: TCP
            description: Nightly backup
        """)
    r = run(fixture_rules, "list", "--rules", str(site), "--role", "Backup Server")
    assert r.exit_code == 0, r.output
    assert ids(r) == ["site-001"]
    r = run(fixture_rules, "roles", "--rules", str(site))
    assert "Backup Server" in r.stdout


def test_show(fixture_rules: Path) -> None:
    r = run(fixture_rules, "show", "storefront-001")
    assert r.exit_code == 0, r.output
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert fields["source"] == "StoreFront Server"
    assert fields["ports"] == "80,49152-65535,1494-1495"
    assert fields["bidirectional"] == "yes" and fields["one_way"] == "no"
    assert fields["note"] == "repaired"
    assert fields["source_file"] == "rules/storefront.yaml:14"
    r = run(fixture_rules, "show", "storefront-002")
    assert "table row 1" in r.stdout and "*.digicert.com" in r.stdout


def test_show_unknown(fixture_rules: Path) -> None:
    r = run(fixture_rules, "show", "storefront-01")
    assert r.exit_code == 2
    assert "no rule 'storefront-01'" in r.stderr and "storefront-001" in r.stderr


def test_validate_ok_and_bad(fixture_rules: Path, write: Write) -> None:
    r = run(fixture_rules, "validate", *map(str, sorted(fixture_rules.glob("*.yaml"))))
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "4 files OK"
    bad = write("site.yaml", """\
        product: Site
        rules:
          - id: s-1
            source: Delivery Controler
            destination: VDA
            protocols: [tcp, sctp]
            ports: [70000, "9-1"]
            type: TCP
            description: bad
          - id: s-1
            source: VDA
            destination: VDA
            protocols: [tcp]
            ports: [1]
            type: TCP
            description: dup
        """)
    r = run(fixture_rules, "validate", str(bad))
    assert r.exit_code == 2
    lines = r.stderr.splitlines()
    assert lines[-1] == "5 problems"
    for needle in (":4 rules[0].source: unknown role", ":6 rules[0].protocols[1]: unknown protocol 'sctp'",
                   ":7 rules[0].ports[0]: port 70000 out of range", ":7 rules[0].ports[1]: reversed range",
                   ":10 rules[1].id: duplicate id 's-1'"):
        assert sum(needle in line for line in lines) == 1, (needle, lines)


def test_validate_broken_catalog_itself(fixture_rules: Path) -> None:
    (fixture_rules / "storefront.yaml").write_text("product: StoreFront\nrules:\n  - id: x\n")
    r = run(fixture_rules, "validate", str(fixture_rules / "storefront.yaml"))
    assert r.exit_code == 2
    assert "rules/storefront.yaml:3 rules[0]: missing required field 'source'" in r.stderr
    r = run(fixture_rules, "list")  # any other command: the problems on stderr, exit 2, no traceback
    assert r.exit_code == 2 and "rules/storefront.yaml:3" in r.stderr and "Traceback" not in r.output


def test_export_csv_stdout(fixture_rules: Path) -> None:
    r = run(fixture_rules, "export", "--format", "csv")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("id,product,source,destination,protocol,ports,type,description")
    assert len(lines) == 1 + 7  # five rules, two of them on two protocols


def test_export_json_to_file_atomically(fixture_rules: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "catalog.json"
    out.parent.mkdir()
    out.write_text("old")
    r = run(fixture_rules, "export", "--format", "json", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_text() == export_json(load_catalog(fixture_rules).rules)
    assert [p.name for p in out.parent.iterdir()] == ["catalog.json"]  # no temp file left behind
    assert len(json.loads(out.read_text())) == 5


def test_export_errors(fixture_rules: Path, tmp_path: Path) -> None:
    r = run(fixture_rules, "export", "--format", "xml")
    assert r.exit_code == 2
    r = run(fixture_rules, "export", "-o", str(tmp_path / "no" / "such" / "dir.csv"))
    assert r.exit_code == 2 and "cannot write" in r.stderr


def test_roles(fixture_rules: Path) -> None:
    r = run(fixture_rules, "roles")
    assert r.exit_code == 0, r.output
    rows = {line.split("  ")[0]: line for line in r.stdout.splitlines()[1:]}
    assert "Citirx ADM" in rows["NetScaler ADM"]
    assert "family:citrix" in rows["Any Citrix Component"]
    assert "NetScaler HA Peer" in rows["NetScaler NSIP"]


def test_bad_rules_dir(tmp_path: Path) -> None:
    r = run(tmp_path / "absent", "list")
    assert r.exit_code == 2 and "not a catalog folder" in r.stderr


def test_bundled_catalog(real_rules: Path) -> None:
    r = run(None, "list", "--role", "NetScaler NSIP")
    assert r.exit_code == 0, r.output
    assert "NetScaler HA Peer" in r.stdout  # HA rules too: the NSIP plays the HA peer
    r = run(None, "list", "--port", "1494")
    assert r.exit_code == 0 and ids(r), r.output
    r = run(None, "validate", *map(str, sorted(real_rules.glob("*.yaml"))))
    assert r.exit_code == 0, r.output
    r = run(None, "roles")
    assert r.exit_code == 0 and "Virtual Delivery Agent" in r.stdout
