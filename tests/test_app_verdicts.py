"""Protocol evidence in verdicts (SPEC §6), through the whole audit: captures written with real wire
formats (the server's ICA banner, an SSH identification string, an HTTP request, a TLS ClientHello),
the real command in a subprocess. A port is a claim; the payload is evidence."""

from __future__ import annotations

import html as htmllib
import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from auditor.cli_audit import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK
from auditor.report.load import load_document
from tests.capture_factory import eth_ipv4_tcp, eth_ipv4_udp, write_pcap
from tests.test_cli_audit import assert_one_error_line, run_cli

USER, VDA, DDC, LIC = "10.9.0.5", "10.9.20.10", "10.9.1.10", "10.9.1.30"
ROLES = (f"roles:\n  User Device: [{USER}]\n  Virtual Delivery Agent: [{VDA}]\n"
         f"  Delivery Controller: [{DDC}]\n  Citrix License Server: [{LIC}]\n")

ICA_BANNER = b"\x7f\x7fICA\x00\x01\x00\x00\x00"
SSH_SERVER = b"SSH-2.0-OpenSSH_9.6\r\n"
SSH_CLIENT = b"SSH-2.0-PuTTY_Release_0.80\r\n"
HTTP_GET = b"GET /<script>alert(1)</script> HTTP/1.1\r\nHost: vda\r\n\r\n"
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
# X.224 Connection Request in TPKT, with an RDP negotiation request (TLS | CredSSP), as mstsc sends it.
RDP_CR = b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00"
CGP_BANNER = b"\x1aCGP/01"


def client_hello() -> bytes:
    """A TLS 1.2 ClientHello record (one cipher suite, no extensions)."""
    body = b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x02\x00\x2f" + b"\x01\x00"
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def session(client: str, server: str, cport: int, sport: int, server_first: bytes = b"",
            client_first: bytes = b"") -> list[bytes]:
    """A whole TCP connection: handshake, the server's then the client's first payload (either may be
    empty), FIN teardown."""
    c_seq, s_seq = 1000, 5000
    frames = [eth_ipv4_tcp(client, server, cport, sport, "S", seq=c_seq),
              eth_ipv4_tcp(server, client, sport, cport, "SA", seq=s_seq, ack=c_seq + 1),
              eth_ipv4_tcp(client, server, cport, sport, "A", seq=c_seq + 1, ack=s_seq + 1)]
    c_seq, s_seq = c_seq + 1, s_seq + 1
    if server_first:
        frames.append(eth_ipv4_tcp(server, client, sport, cport, "PA", server_first, seq=s_seq, ack=c_seq))
        s_seq += len(server_first)
    if client_first:
        frames.append(eth_ipv4_tcp(client, server, cport, sport, "PA", client_first, seq=c_seq, ack=s_seq))
        c_seq += len(client_first)
    frames += [eth_ipv4_tcp(client, server, cport, sport, "FA", seq=c_seq, ack=s_seq),
               eth_ipv4_tcp(server, client, sport, cport, "FA", seq=s_seq, ack=c_seq + 1),
               eth_ipv4_tcp(client, server, cport, sport, "A", seq=c_seq + 1, ack=s_seq + 1)]
    return frames


def audit(tmp_path: Path, frames: list[bytes], *extra: str | Path, roles: str = ROLES,
          html: bool = False) -> tuple[int, dict[str, Any], str, str]:
    cap = write_pcap(tmp_path / "cap.pcap", frames)
    roles_path = tmp_path / "roles.yaml"
    roles_path.write_text(roles, encoding="utf-8")
    out = tmp_path / "audit.json"
    if out.exists():
        out.unlink()
    outputs: list[str | Path] = ["-o", tmp_path / "report.html"] if html else ["--no-html"]
    proc = run_cli([cap, "--roles", roles_path, "--json", out, *outputs, *extra], tmp_path)
    doc = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    return proc.returncode, doc, proc.stdout.decode(), proc.stderr.decode()


def flow(doc: dict[str, Any], a: str, b: str, port: int) -> dict[str, Any]:
    (f,) = [f for f in doc["flows"] if (f["initiator"], f["responder"], f["port"]) == (a, b, port)]
    return f


def rule(doc: dict[str, Any], rule_id: str) -> dict[str, Any]:
    (r,) = [r for r in doc["rules"] if r["id"] == rule_id]
    return r


# --- what the payload says about the port ------------------------------------------------------------------


def test_ica_on_1494_is_expected_and_verified(tmp_path: Path) -> None:
    code, doc, _, _ = audit(tmp_path, session(USER, VDA, 50001, 1494, ICA_BANNER, b"\x00" * 8))
    assert code == EXIT_OK
    f = flow(doc, USER, VDA, 1494)
    assert f["classification"] == "expected" and "cvad-015" in f["rule_ids"]
    assert f["app_protocol"] == "ica" and f["apps"] == {"ica": 1} and f["unverified"] == 0
    ev = f["app_evidence"]["ica"]
    assert ev["direction"] == "resp" and ev["head"].startswith("7f7f49434100")
    assert ev["frame"] == {"input": 0, "frame": 4}  # the SYN, SYN-ACK, ACK, then the banner
    s = doc["summary"]
    assert (s["verified"], s["unverified"], s["mismatched"]) == (1, 0, 0)
    assert rule(doc, "cvad-015")["apps"] == ["ica", "tls"]
    assert rule(doc, "cvad-015")["status"] == "observed"


@pytest.mark.parametrize(("port", "server_first", "client_first", "found"), [
    (1494, SSH_SERVER, SSH_CLIENT, "ssh"),
    (2598, SSH_SERVER, SSH_CLIENT, "ssh"),
    (1494, HTTP_OK, HTTP_GET, "http"),
    (2598, b"", HTTP_GET, "http"),
    (1494, b"", RDP_CR, "rdp"),
    (2598, b"", RDP_CR, "rdp"),
], ids=["ssh-1494", "ssh-2598", "http-1494", "http-2598", "rdp-1494", "rdp-2598"])
def test_another_protocol_on_an_hdx_port_is_a_mismatch(tmp_path: Path, port: int, server_first: bytes,
                                                      client_first: bytes, found: str) -> None:
    code, doc, out, _ = audit(tmp_path, session(USER, VDA, 50001, port, server_first, client_first))
    assert code == EXIT_OK  # a report, not a judgement, without --fail-on
    f = flow(doc, USER, VDA, port)
    assert f["classification"] == "unexpected" and f["reason"] == "protocol-mismatch"
    assert f["app_protocol"] == found and f["rule_ids"] == []
    allowed = "ica, tls" if port == 1494 else "cgp, tls"
    assert f["reason_text"].startswith(f"{found} on tcp/{port};") and f"allow {allowed}" in f["reason_text"]
    hdx = "cvad-015" if port == 1494 else "cvad-016"
    assert hdx in f["reason_text"]
    # The documented HDX flow was not seen: its rule is not observed, and it counts the mismatch.
    r = rule(doc, hdx)
    assert r["status"] != "observed" and r["flows"] == 0 and r["mismatched_flows"] == 1
    s = doc["summary"]
    assert (s["verified"], s["unverified"], s["mismatched"], s["unexpected"]) == (0, 0, 1, 1)
    assert "1 protocol-mismatch" in out and f"tcp/{port} ({found})" in out


def test_tls_on_1494_is_allowed(tmp_path: Path) -> None:
    """An SSL-enabled VDA cannot be told from the capture (SPEC §6)."""
    code, doc, _, _ = audit(tmp_path, session(USER, VDA, 50001, 1494, b"", client_hello()))
    assert code == EXIT_OK
    f = flow(doc, USER, VDA, 1494)
    assert f["classification"] == "expected" and f["app_protocol"] == "tls" and f["reason"] is None
    assert f["app_evidence"]["tls"]["direction"] == "orig"


def test_cgp_on_2598_is_expected_but_ica_banner_on_2598_is_not(tmp_path: Path) -> None:
    code, doc, _, _ = audit(tmp_path, session(USER, VDA, 50001, 2598, CGP_BANNER, b"\x00" * 4)
                            + session(USER, VDA, 50002, 1494, CGP_BANNER, b"\x00" * 4))
    assert code == EXIT_OK
    assert flow(doc, USER, VDA, 2598)["classification"] == "expected"
    wrong = flow(doc, USER, VDA, 1494)
    assert wrong["reason"] == "protocol-mismatch" and wrong["app_protocol"] == "cgp"


@pytest.mark.parametrize("payload", [b"", b"\x00\x01\x02\x03 opaque \xff\xfe"], ids=["empty", "opaque"])
def test_an_unrecognised_payload_never_changes_a_verdict(tmp_path: Path, payload: bytes) -> None:
    code, doc, _, _ = audit(tmp_path, session(USER, VDA, 50001, 1494, payload, payload))
    assert code == EXIT_OK
    f = flow(doc, USER, VDA, 1494)
    assert f["classification"] == "expected" and f["reason"] is None
    assert f["app_protocol"] == "unknown" and f["apps"] == {} and f["unverified"] == 1 and f["app_evidence"] == {}
    s = doc["summary"]
    assert (s["verified"], s["unverified"], s["mismatched"]) == (0, 1, 0)
    assert rule(doc, "cvad-015")["status"] == "observed"


def test_one_refused_connection_among_allowed_ones_makes_the_flow_a_mismatch(tmp_path: Path) -> None:
    """A tunnel beside real sessions is what an auditor looks for: the flow is a mismatch, and the
    reason says how many of its connections carried what."""
    frames = (session(USER, VDA, 50001, 1494, ICA_BANNER, b"\x00" * 8)
              + session(USER, VDA, 50002, 1494, ICA_BANNER, b"\x00" * 8)
              + session(USER, VDA, 50003, 1494, SSH_SERVER, SSH_CLIENT))
    code, doc, _, _ = audit(tmp_path, frames)
    assert code == EXIT_OK
    f = flow(doc, USER, VDA, 1494)
    assert f["reason"] == "protocol-mismatch"
    assert f["app_protocol"] == "ica" and f["apps"] == {"ica": 2, "ssh": 1}
    assert f["reason_text"].startswith("ssh (1 of 3 connections) on tcp/1494;")
    assert set(f["app_evidence"]) == {"ica", "ssh"}


def test_a_rule_without_apps_refuses_nothing(tmp_path: Path) -> None:
    """SSH to the licence server's 27000: its rule names no protocol, so the port's claim stands."""
    code, doc, _, _ = audit(tmp_path, session(DDC, LIC, 50001, 27000, SSH_SERVER, SSH_CLIENT))
    assert code == EXIT_OK
    f = flow(doc, DDC, LIC, 27000)
    assert f["classification"] == "expected" and f["app_protocol"] == "ssh" and f["reason"] is None
    assert rule(doc, "license-server-001")["apps"] == []


def test_one_matching_rule_without_apps_keeps_the_flow_expected(tmp_path: Path) -> None:
    """SPEC §6: a flow is a mismatch only when EVERY rule matching its roles and port refuses it."""
    site = tmp_path / "site.yaml"
    site.write_text("product: Site\nrules:\n  - id: site-001\n    source: User Device\n"
                    "    destination: Virtual Delivery Agent\n    protocols: [tcp]\n    ports: [1494]\n"
                    "    type: TCP\n    description: Jump host SSH on the HDX port (accepted business traffic)\n",
                    encoding="utf-8")
    frames = session(USER, VDA, 50001, 1494, SSH_SERVER, SSH_CLIENT)
    code, doc, _, _ = audit(tmp_path, frames, "--rules", site)
    assert code == EXIT_OK
    f = flow(doc, USER, VDA, 1494)
    assert f["classification"] == "expected" and f["reason"] is None and "site-001" in f["rule_ids"]
    # Without the site rule the same capture is a mismatch.
    code, doc, _, _ = audit(tmp_path, frames)
    assert flow(doc, USER, VDA, 1494)["reason"] == "protocol-mismatch"


SYSLOG = b"<134>1 2026-12-06T07:00:00Z vda01 app - - - a datagram no rule of this port allows"


def test_apps_on_leaves_other_transports_unconstrained(tmp_path: Path) -> None:
    """A site rule that names apps only for TCP refuses nothing on UDP."""
    site = tmp_path / "site.yaml"
    site.write_text("product: Site\nrules:\n  - id: site-001\n    source: User Device\n"
                    "    destination: Virtual Delivery Agent\n    protocols: [tcp, udp]\n    ports: [4000]\n"
                    "    type: TCP, UDP\n    description: A site service\n    apps: [tls]\n    apps_on: [tcp]\n",
                    encoding="utf-8")
    frames = [*session(USER, VDA, 50001, 4000, SSH_SERVER, SSH_CLIENT),
              eth_ipv4_udp(USER, VDA, 50002, 4000, SYSLOG), eth_ipv4_udp(VDA, USER, 4000, 50002, SYSLOG)]
    code, doc, _, _ = audit(tmp_path, frames, "--rules", site)
    assert code == EXIT_OK
    tcp, udp = (f for f in doc["flows"] if f["port"] == 4000 and f["protocol"] in ("tcp", "udp"))
    by_proto = {f["protocol"]: f for f in (tcp, udp)}
    assert by_proto["tcp"]["reason"] == "protocol-mismatch"
    assert by_proto["udp"]["classification"] == "expected" and by_proto["udp"]["app_protocol"] == "syslog"


# --- --fail-on mismatch ----------------------------------------------------------------------------------


def test_fail_on_mismatch(tmp_path: Path) -> None:
    code, doc, _, err = audit(tmp_path, session(USER, VDA, 50001, 1494, SSH_SERVER, SSH_CLIENT),
                              "--fail-on", "mismatch")
    assert code == EXIT_FINDINGS, err
    assert "--fail-on: mismatch found" in err
    assert doc["criteria"] == {"fail_on": ["mismatch"], "result": "FAIL", "hits": ["mismatch"]}
    # Real ICA passes the same criteria.
    code, doc, _, err = audit(tmp_path, session(USER, VDA, 50001, 1494, ICA_BANNER, b"\x00"), "--fail-on", "mismatch")
    assert code == EXIT_OK, err
    assert doc["criteria"]["result"] == "PASS"


# --- the catalog's vocabulary --------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "message"), [
    ("apps", "[ica, sshh]", "unknown application protocol 'sshh' (did you mean 'ssh'?)"),
    ("apps", "[]", "an empty apps list"),
    ("apps_on", "[udp]", "apps_on 'udp' is not one of the rule's transports (tcp)"),
], ids=["unknown-name", "empty", "apps-on-transport"])
def test_the_catalog_refuses_bad_apps_with_one_line(tmp_path: Path, field: str, value: str, message: str) -> None:
    site = tmp_path / "site.yaml"
    extra = "    apps: [tls]\n" if field == "apps_on" else ""
    site.write_text("product: Site\nrules:\n  - id: site-001\n    source: User Device\n"
                    "    destination: Virtual Delivery Agent\n    protocols: [tcp]\n    ports: [1494]\n"
                    f"    type: TCP\n    description: A site rule\n{extra}    {field}: {value}\n", encoding="utf-8")
    code, _, _, err = audit(tmp_path, session(USER, VDA, 50001, 1494), "--rules", site)
    assert code == EXIT_BAD_INPUT
    line = assert_one_error_line(err)
    assert f"site.yaml:{10 + bool(extra)} rules[0].{field}" in line and message in line, line


# --- the reports -------------------------------------------------------------------------------------------


def test_html_shows_the_protocol_beside_the_port_and_escapes_the_evidence(tmp_path: Path) -> None:
    frames = (session(USER, VDA, 50001, 1494, ICA_BANNER, b"\x00" * 8)
              + session(USER, VDA, 50002, 2598, b"", HTTP_GET)
              + session(DDC, VDA, 50003, 80))
    code, _, out, _ = audit(tmp_path, frames, "--csv", tmp_path / "flows.csv", html=True)
    assert code == EXIT_OK
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "tcp/1494 \u00b7 ica" in page
    assert "tcp/2598 \u00b7 http" in page
    assert "tcp/80 \u00b7 unverified" in page
    # The evidence is on demand (the service cell's title), and the capture's bytes are escaped.
    assert "<script>alert(1)" not in page
    titles = [htmllib.unescape(t) for t in re.findall(r'title="([^"]*)"', page)]
    assert any("ica: 1 connection; first bytes from the responder, frame 4: 7f7f4943410001000000" in t
               for t in titles), titles
    assert any("(GET /<script>alert(1)</script> HTTP/1.1)" in t for t in titles)
    # The summary counts verified, unverified and mismatched expected flows.
    for name, n in (("verified", 1), ("unverified", 1), ("mismatched", 1)):
        assert f'data-count="{name}">{n}<' in page, name
    assert "protocol evidence: 1 expected flows verified by their payload, 1 unverified (port only), " \
           "1 protocol-mismatch" in out
    csv_text = (tmp_path / "flows.csv").read_text(encoding="utf-8")
    header = csv_text.splitlines()[0].split(",")
    assert header[header.index("port") + 1] == "app_protocol"
    assert ",1494,ica," in csv_text


def test_a_saved_document_reads_back_with_its_evidence(tmp_path: Path) -> None:
    code, doc, _, _ = audit(tmp_path, session(USER, VDA, 50001, 1494, ICA_BANNER, b"\x00"))
    assert code == EXIT_OK and doc["schema_version"] == "2.2"
    loaded = load_document(doc)
    (row,) = [r for r in loaded.flows if r.port == 1494]
    assert row.app_protocol == "ica" and row.app_evidence["ica"].frame.frame == 4
    # An older (2.1) document has none of it: it reads as unverified, not as an error.
    for f in doc["flows"]:
        for key in ("app_protocol", "apps", "unverified", "app_evidence"):
            f.pop(key)
    for key in ("verified", "unverified", "mismatched"):
        doc["summary"].pop(key)
    old = load_document(doc)
    (row,) = [r for r in old.flows if r.port == 1494]
    assert row.app_protocol == "unknown" and row.apps == {} and old.summary.mismatched == 0
