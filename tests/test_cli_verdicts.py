"""The audit command's judgement options: --catalog document, repeatable --vantage (with roles.yaml's
vantage:), features: in roles.yaml, roles.yaml lint warnings and --strict-roles. Real captures written
with dpkt, the real CLI in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auditor.cli_audit import EXIT_BAD_INPUT, EXIT_OK
from auditor.report.load import load_document
from tests.capture_factory import write_pcap
from tests.test_cli_audit import assert_one_error_line, handshake, run_cli

DDC, VDA, DC, SQL, USER = "10.0.1.10", "10.0.20.5", "10.0.1.5", "10.0.1.40", "10.1.0.5"


def audit(tmp_path: Path, roles: str, frames: list[bytes], *extra: str) -> tuple[int, dict[str, Any], str, str]:
    cap = write_pcap(tmp_path / "cap.pcap", frames)
    roles_path = tmp_path / "roles.yaml"
    roles_path.write_text(roles, encoding="utf-8")
    out = tmp_path / "audit.json"
    proc = run_cli([cap, "--roles", roles_path, "--json", out, "--no-html", *extra], tmp_path)
    doc = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return proc.returncode, doc, proc.stdout.decode(), proc.stderr.decode()


def flow(doc: dict[str, Any], a: str, b: str, port: int) -> dict[str, Any]:
    (f,) = [f for f in doc["flows"] if (f["initiator"], f["responder"], f["port"]) == (a, b, port)]
    return f


def status(doc: dict[str, Any], rule_id: str) -> str:
    (r,) = [r for r in doc["rules"] if r["id"] == rule_id]
    return str(r["status"])


def test_catalog_document_drops_the_supplement(tmp_path: Path) -> None:
    roles = f"roles:\n  VDA: [{VDA}]\n  Domain Controller: [{DC}]\n"
    frames = handshake(VDA, DC, 50000, 88)
    code, full, _, _ = audit(tmp_path, roles, frames)
    assert code == EXIT_OK
    kerberos = flow(full, VDA, DC, 88)
    assert kerberos["classification"] == "expected" and kerberos["layers"] == ["supplement"]
    assert "supplement" in full["catalog"]["layers"] and full["catalog"]["rules_by_layer"]["supplement"] > 0
    (rule,) = [r for r in full["rules"] if r["id"] == kerberos["rule_ids"][0]]
    assert rule["layer"] == "supplement" and rule["citation"]["url"].startswith("https://")
    code, doc, _, _ = audit(tmp_path, roles, frames, "--catalog", "document")
    assert code == EXIT_OK
    assert flow(doc, VDA, DC, 88)["classification"] == "unexpected"
    assert "supplement" not in doc["catalog"]["layers"]
    assert not any(r["layer"] == "supplement" for r in doc["rules"])


def test_vantage_option_repeats_and_adds_to_the_roles_file(tmp_path: Path) -> None:
    roles = (f"roles:\n  Delivery Controller: [{DDC}, 10.0.1.11]\n  VDA: [{VDA}]\n  SQL Server: [{SQL}]\n"
             f"  User Device: [{USER}]\nvantage: [{VDA}]\n")
    frames = handshake(VDA, DDC, 50000, 80) + handshake(USER, VDA, 50001, 1494)
    code, doc, _, _ = audit(tmp_path, roles, frames)
    assert code == EXIT_OK
    assert doc["vantage"]["source"] == "roles.yaml" and doc["vantage"]["hosts"] == [VDA]
    assert status(doc, "cvad-005") == "not-observable"  # Controller -> SQL never crosses the VDA
    code, doc, _, _ = audit(tmp_path, roles, frames, "--vantage", SQL, "--vantage", "10.0.1.0/24")
    assert code == EXIT_OK
    assert doc["vantage"]["source"] == "roles.yaml and option"
    assert {VDA, SQL, DDC} <= set(doc["vantage"]["hosts"])  # a second --vantage never replaces the first
    assert status(doc, "cvad-005") == "missing"


def test_bad_vantage_is_one_line(tmp_path: Path) -> None:
    roles = f"roles:\n  VDA: [{VDA}]\n"
    code, _, _, err = audit(tmp_path, roles, handshake(USER, VDA, 50000, 1494), "--vantage", "Delivery Controler")
    assert code == EXIT_BAD_INPUT
    assert "did you mean 'Delivery Controller'" in assert_one_error_line(err)


def test_features_declared_in_roles_yaml(tmp_path: Path) -> None:
    frames = handshake(USER, VDA, 50000, 3149)
    plain = f"roles:\n  User Device: [{USER}]\n  VDA: [{VDA}]\n"
    code, doc, out, _ = audit(tmp_path, plain, frames)
    f = flow(doc, USER, VDA, 3149)
    assert f["classification"] == "unexpected" and f["reason"] == "feature-not-in-use"
    assert "gateway-vpn" in f["reason_text"] and doc["features"] == []
    assert status(doc, "citrix-gateway-014") == "not-applicable"
    code, doc, out, _ = audit(tmp_path, plain + "features: [gateway-vpn]\n", frames)
    assert code == EXIT_OK
    assert flow(doc, USER, VDA, 3149)["rule_ids"] == ["citrix-gateway-014"]
    assert [f["id"] for f in doc["features"]] == ["gateway-vpn"]
    assert "features in use: gateway-vpn" in out


def test_unknown_feature_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    roles = f"roles:\n  VDA: [{VDA}]\nfeatures: [gateway-vnp]\n"
    code, _, _, err = audit(tmp_path, roles, handshake(USER, VDA, 50000, 1494))
    assert code == EXIT_BAD_INPUT
    line = assert_one_error_line(err)
    assert "roles.yaml:3" in line and "gateway-vpn" in line


def test_lint_warnings_and_strict_roles(tmp_path: Path) -> None:
    # User Device 10.0.0.0/8 swallows the Controllers: without the most-specific rule the VDA's
    # registration answered by a "user device" would read as expected the other way round.
    roles = (f"roles:\n  User Device: [10.0.0.0/8]\n  Delivery Controller: [{DDC}]\n  VDA: [{VDA}]\n"
             "  StoreFront Server: [10.9.9.9, storefront.corp.example]\n  License Server: [10.0.3.4/24]\n")
    frames = handshake(VDA, DDC, 50000, 80)
    code, doc, out, _ = audit(tmp_path, roles, frames)
    assert code == EXIT_OK
    codes = {w["code"] for w in doc["warnings"]}
    assert {"overlap", "unmatched-entry", "name-not-resolved", "host-bits"} <= codes
    overlap = next(w for w in doc["warnings"] if w["code"] == "overlap")
    assert overlap["line"] == 2 and DDC in overlap["message"]
    assert "roles warning:" in out
    ddc = next(h for h in doc["hosts"] if h["address"] == DDC)
    assert ddc["roles"] == ["Delivery Controller"]  # the most specific entry decides
    assert flow(doc, VDA, DDC, 80)["rule_ids"][0] == "cvad-018"
    code, _, _, err = audit(tmp_path, roles, frames, "--strict-roles")
    assert code == EXIT_BAD_INPUT
    line = assert_one_error_line(err)
    assert "roles.yaml:" in line and "--strict-roles" in line


def test_clean_roles_file_passes_strict(tmp_path: Path) -> None:
    roles = f"roles:\n  Delivery Controller: [{DDC}]\n  VDA: [{VDA}]\n"
    code, doc, _, err = audit(tmp_path, roles, handshake(VDA, DDC, 50000, 80), "--strict-roles")
    assert code == EXIT_OK, err
    assert doc["warnings"] == []


def test_registration_is_captioned_in_its_own_direction(tmp_path: Path) -> None:
    roles = f"roles:\n  Delivery Controller: [{DDC}]\n  VDA: [{VDA}]\n"
    _, doc, _, _ = audit(tmp_path, roles, handshake(VDA, DDC, 50000, 80))
    f = flow(doc, VDA, DDC, 80)
    # cvad-018 (VDA -> Controller) is the flow's own direction; cvad-006 (Controller -> VDA,
    # bidirectional) matches only in reverse and is never its caption.
    assert f["rule_ids"] == ["cvad-018", "cvad-006"] and f["reverse_rule_ids"] == ["cvad-006"]
    from auditor.report.html import render_html

    html = render_html(load_document(doc))
    assert "cvad-006 \u2014 the same service, opened from the other side" in html
    assert "cvad-006 \u2014 Delivery Controller initiates" not in html


def test_reason_lists_only_ports_of_rules_in_use(tmp_path: Path) -> None:
    # Without Gateway VPN, the VPN ports 3108/3148/3149 between a user device and a VDA are not
    # "documented ports" of this deployment: the reason must not suggest them.
    roles = f"roles:\n  User Device: [{USER}]\n  VDA: [{VDA}]\n"
    _, doc, _, _ = audit(tmp_path, roles, handshake(USER, VDA, 50000, 3150))
    f = flow(doc, USER, VDA, 3150)
    assert f["reason"] == "other-port-or-protocol"
    assert "1494" in f["reason_text"] and "2598" in f["reason_text"]
    assert "3149" not in f["reason_text"] and "3108" not in f["reason_text"]
    _, doc, _, _ = audit(tmp_path, roles + "features: [gateway-vpn]\n", handshake(USER, VDA, 50000, 3150))
    assert "3149" in flow(doc, USER, VDA, 3150)["reason_text"]
