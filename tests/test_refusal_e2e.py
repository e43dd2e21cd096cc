"""Who refused a failing flow, from capture files to the outputs: packets written with dpkt (an
independent encoder: its own headers and checksums), read by both engines and the product's CLI."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import shutil
from pathlib import Path
from typing import Any

import dpkt
import pytest
from click.testing import CliRunner

from auditor.audit import collect
from auditor.capture import open_captures
from auditor.cli import main
from auditor.model import FlowKey

C, VDA, VDA2, FW = "10.0.0.1", "10.0.0.5", "10.0.0.6", "10.0.0.254"
C6, VDA6 = "fd00::1", "fd00::5"
ROLES = f"""roles:
  User Device: [{C}, "{C6}"]
  Virtual Delivery Agent: [{VDA}, {VDA2}, "{VDA6}"]
"""
TCP_FLAGS = {"S": dpkt.tcp.TH_SYN, "A": dpkt.tcp.TH_ACK, "F": dpkt.tcp.TH_FIN, "R": dpkt.tcp.TH_RST,
             "P": dpkt.tcp.TH_PUSH}


def _ip(src: str, dst: str, ttl: int, proto: int, l4: dpkt.Packet) -> dpkt.Packet:
    if ":" in src:
        ip6 = dpkt.ip6.IP6(src=ipaddress.ip_address(src).packed, dst=ipaddress.ip_address(dst).packed, nxt=proto,
                           hlim=ttl, data=l4)
        ip6.plen = len(bytes(l4))
        return ip6
    return dpkt.ip.IP(src=ipaddress.ip_address(src).packed, dst=ipaddress.ip_address(dst).packed, p=proto,
                      ttl=ttl, data=l4)


def _frame(ip: dpkt.Packet) -> bytes:
    if isinstance(ip, dpkt.ip6.IP6):
        # dpkt computes the transport checksum when the packet is packed inside its IP header.
        ip.data.sum = 0
    eth = dpkt.ethernet.Ethernet(src=b"\x02\x00\x00\x00\x00\x01", dst=b"\x02\x00\x00\x00\x00\x02",
                                 type=dpkt.ethernet.ETH_TYPE_IP6 if isinstance(ip, dpkt.ip6.IP6)
                                 else dpkt.ethernet.ETH_TYPE_IP, data=ip)
    return bytes(eth)


def tcp(src: str, dst: str, sport: int, dport: int, flags: str, ttl: int, seq: int = 1000, ack: int = 0,
        payload: bytes = b"") -> dpkt.Packet:
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, win=65535, data=payload,
                       flags=sum(TCP_FLAGS[f] for f in flags))
    return _ip(src, dst, ttl, dpkt.ip.IP_PROTO_TCP, seg)


def unreachable(src: str, dst: str, code: int, quoted: dpkt.Packet, ttl: int = 254) -> dpkt.Packet:
    """An ICMP destination unreachable quoting ``quoted``'s IP header and first 8 transport bytes."""
    head = bytes(quoted)[:28]
    msg = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_UNREACH, code=code, data=dpkt.icmp.ICMP.Unreach(data=head))
    return _ip(src, dst, ttl, dpkt.ip.IP_PROTO_ICMP, msg)


def accepted(client: str, server: str, cport: int, port: int, server_ttl: int) -> list[dpkt.Packet]:
    return [tcp(client, server, cport, port, "S", 64, seq=100),
            tcp(server, client, port, cport, "SA", server_ttl, seq=900, ack=101),
            tcp(client, server, cport, port, "A", 64, seq=101, ack=901),
            tcp(client, server, cport, port, "PA", 64, seq=101, ack=901, payload=b"hello"),
            tcp(server, client, port, cport, "PA", server_ttl, seq=901, ack=106, payload=b"world"),
            tcp(server, client, port, cport, "FA", server_ttl, seq=906, ack=106),
            tcp(client, server, cport, port, "FA", 64, seq=106, ack=907),
            tcp(server, client, port, cport, "A", server_ttl, seq=907, ack=107)]


def capture(tmp_path: Path) -> Path:
    syn_2598 = tcp(C, VDA2, 50020, 2598, "S", 64, seq=300)
    packets = [
        *accepted(C, VDA, 50000, 443, 120),  # the VDA's own TTL: 128 - 8 hops
        # Port 8080 closed on the VDA: its own RST, with its own TTL.
        tcp(C, VDA, 50010, 8080, "S", 64, seq=200), tcp(VDA, C, 8080, 50010, "RA", 120, ack=201),
        # ICA blocked by an IPS near the capture point that resets in the VDA's name (initial TTL 255).
        tcp(C, VDA, 50011, 1494, "S", 64, seq=210), tcp(VDA, C, 1494, 50011, "RA", 253, ack=211),
        tcp(C, VDA, 50012, 1494, "S", 64, seq=220), tcp(VDA, C, 1494, 50012, "RA", 253, ack=221),
        # Session Reliability to the other VDA: a firewall answers "communication administratively prohibited".
        syn_2598, unreachable(FW, C, 13, syn_2598),
        # IPv6: the hop limit.
        *accepted(C6, VDA6, 50030, 443, 57),
        tcp(C6, VDA6, 50031, 1494, "S", 64, seq=400), tcp(VDA6, C6, 1494, 50031, "RA", 250, ack=401),
    ]
    path = tmp_path / "refused.pcap"
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i, p in enumerate(packets):
            w.writepkt(_frame(p), ts=1_700_000_000 + i * 0.01)
    return path


RSTS = {(VDA, 120), (VDA, 253), (VDA6, 250)}
"""(source, TTL) of the RSTs in ``capture``."""


def _rst_ttls(engine: str, path: Path) -> set[tuple[str, int]]:
    recs = list(open_captures([str(path)], engine=engine))
    assert all(r.ttl >= 0 for r in recs)  # every record carries its TTL
    return {(str(ipaddress.ip_address(r.src)), r.ttl) for r in recs if r.tcp_flags & dpkt.tcp.TH_RST}


def test_records_carry_the_ttl(tmp_path: Path) -> None:
    path = capture(tmp_path)
    assert _rst_ttls("fast", path) == RSTS
    if shutil.which("tshark"):
        assert _rst_ttls("tshark", path) == RSTS


@pytest.mark.parametrize("engine", ["fast", "tshark"])
def test_the_core_names_the_refusers(tmp_path: Path, engine: str) -> None:
    if engine == "tshark" and not shutil.which("tshark"):
        pytest.skip("tshark not on PATH")
    conv, _ = collect(open_captures([str(capture(tmp_path))], engine=engine), frozenset())
    assert conv.host_ttls == {VDA: 1 << 120, VDA6: 1 << 57}  # SYN-ACKs and FINs only
    got = {k: f.refusals for k, f in conv.flows.items() if f.refusals}
    assert got == {
        FlowKey(C, VDA, "tcp", 8080): {("rst", VDA, -1, -1, 120, True): 1},
        FlowKey(C, VDA, "tcp", 1494): {("rst", VDA, -1, -1, 253, True): 2},
        FlowKey(C, VDA2, "tcp", 2598): {("icmp", FW, 3, 13, -1, False): 1},
        FlowKey(C6, VDA6, "tcp", 1494): {("rst", VDA6, -1, -1, 250, True): 1},
    }


def _audit(tmp_path: Path, *extra: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    roles = tmp_path / "roles.yaml"
    roles.write_text(ROLES)
    out, table = tmp_path / "a.json", tmp_path / "a.csv"
    res = CliRunner().invoke(main, [str(capture(tmp_path)), "--roles", str(roles), "--json", str(out),
                                    "--csv", str(table), "-o", str(tmp_path / "r.html"), "-q", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text()), list(csv.DictReader(io.StringIO(table.read_text())))


def test_json_csv_and_html_say_who_refused(tmp_path: Path) -> None:
    doc, rows = _audit(tmp_path)
    flows = {(f["initiator"], f["responder"], f["port"]): f for f in doc["flows"]}
    ica = flows[(C, VDA, 1494)]
    assert ica["classification"] == "expected" and ica["failing"] and ica["outcome"] == "rejected"
    assert ica["refused_by"] == [{
        "kind": "rst", "address": VDA, "party": "likely middlebox (TTL differs)", "icmp_type": None,
        "icmp_code": None, "ttl": 253, "ttl_check": "differs",
        "text": f"RST likely from a middlebox (firewall, IPS) in the name of {VDA}: TTL 253, its SYN-ACKs and "
                "FINs 120",
        "connections": 2}]
    closed = flows[(C, VDA, 8080)]["refused_by"]
    assert [(e["party"], e["ttl"], e["ttl_check"]) for e in closed] == [("responder", 120, "same")]
    (cgp,) = flows[(C, VDA2, 2598)]["refused_by"]
    assert cgp == {"kind": "icmp", "address": FW, "party": "other host", "icmp_type": 3, "icmp_code": 13,
                   "ttl": None, "ttl_check": None,
                   "text": f"ICMP communication administratively prohibited from {FW} (not the responder)",
                   "connections": 1}
    (v6,) = flows[(C6, VDA6, 1494)]["refused_by"]
    assert (v6["party"], v6["ttl"], v6["ttl_check"]) == ("likely middlebox (TTL differs)", 250, "differs")
    assert "hop limit 250" in v6["text"]
    assert flows[(C, VDA, 443)]["refused_by"] == []

    by_key = {(r["initiator"], r["responder"], r["port"]): r for r in rows}
    assert by_key[(C, VDA2, "2598")]["refused_by"] == (
        f"ICMP communication administratively prohibited from {FW} (not the responder)")
    assert by_key[(C, VDA, "1494")]["refused_by"].endswith("SYN-ACKs and FINs 120, 2 connections")
    assert by_key[(C, VDA, "443")]["refused_by"] == ""
    assert list(rows[0])[:4] == ["classification", "failing", "outcome", "refused_by"]

    html = (tmp_path / "r.html").read_text()
    assert f"ICMP communication administratively prohibited from {FW} (not the responder)" in html
    assert f"RST likely from a middlebox (firewall, IPS) in the name of {VDA}" in html


def test_the_tshark_engine_gives_the_same_refusals(tmp_path: Path) -> None:
    if not shutil.which("tshark"):
        pytest.skip("tshark not on PATH")
    fast, _ = _audit(tmp_path)
    slow, _ = _audit(tmp_path, "--engine", "tshark")
    assert [f["refused_by"] for f in fast["flows"]] == [f["refused_by"] for f in slow["flows"]]
