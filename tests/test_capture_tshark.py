"""The tshark engine gives the same PacketRecords as the fast engine, payload bytes included (the
fast path keeps at most PAYLOAD_SNAP of them, and of a TCP segment that names.py does not read, the
first byte)."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from auditor.capture import open_captures
from auditor.conversations import ConversationBuilder
from auditor.errors import CaptureError
from auditor.record import FIELDS
from tests.capture_factory import (
    eth_ip,
    eth_ipv4_tcp,
    eth_ipv4_udp,
    eth_ipv6_tcp,
    eth_ipv6_udp,
    ext_header,
    icmp,
    icmp_echo,
    ipv4,
    ipv4_fragments,
    ipv4_udp,
    ipv6_fragments,
    sll2,
    tcp,
    udp,
    vxlan,
    write_pcap,
    write_pcapng,
)

pytestmark = [pytest.mark.tshark,
              pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")]

A, B = "10.0.0.1", "10.0.0.2"
T0 = 1_700_000_000.0
INNER = eth_ipv4_tcp("192.168.1.10", "192.168.1.20", 51000, 2598, "S")


def comparable(path: Path, engine: str) -> list[tuple[object, ...]]:
    out = []
    for r in open_captures([str(path)], engine=engine):
        d = {name: getattr(r, name) for name in FIELDS}
        d["ts"] = round(r.ts, 6)
        out.append(tuple(d.values()))
    return out


CAPTURES = {
    "tcp-udp-vlan": [eth_ipv4_tcp(A, B, 50000, 443, "S"),
                     eth_ipv4_tcp(B, A, 443, 50000, "SA", seq=9, ack=1001),
                     eth_ipv4_tcp(A, B, 50000, 443, "PA", b"hello", seq=1001, ack=10, vlan=7),
                     eth_ipv4_udp(A, "10.0.0.53", 5353, 53, b"\x12\x34" + b"\x00" * 10),
                     eth_ipv4_tcp(A, B, 1, 2, "R", bad_checksum=True)],
    "ipv6": [eth_ipv6_tcp("fd00::1", "fd00::2", 1000, 443, "S", ext=[ext_header(0)]),
             eth_ipv6_udp("fd00::1", "fd00::2", 123, 123, b"\x23" + b"\x00" * 47)],
    "icmp": [eth_ip(ipv4(A, B, 1, icmp_echo(0x1234))), eth_ip(ipv4(B, A, 1, icmp_echo(0x1234, reply=True))),
             eth_ip(ipv4(B, A, 1, icmp(3, 3, data=ipv4_udp(A, B, 40000, 161, b"x")[:28])))],
    "vxlan": [vxlan("172.16.0.1", "172.16.0.2", INNER, vni=4242)],
    "fragments": [eth_ip(f) for f in ipv4_fragments(A, B, 17, udp(A, B, 5000, 514, b"y" * 40))],
    # A TCP segment's first fragment: its payload bytes counted as the fast engine counts them.
    "fragments-tcp": [eth_ip(f) for f in ipv4_fragments(A, B, 6, tcp(A, B, 40000, 443, "PA", b"t" * 40), size=24)],
    # A fragment more than the reassembly timeout (30 s) after its datagram's first is an orphan in
    # both engines, and so is one whose first fragment was never captured.
    "fragments-late": [(T0 + t, eth_ip(f)) for t, f in
                       zip((0.0, 1.0, 31.5), ipv4_fragments(A, B, 17, udp(A, B, 5000, 514, b"y" * 40)), strict=True)]
    + [(T0 + 32.0, eth_ip(ipv4_fragments(A, B, 17, udp(A, B, 5001, 514, b"w" * 40), ident=7)[1]))],
    # IPv6 fragments: the transport after the fragment header, the later ones placed by the first.
    "fragments-ipv6": [eth_ip(f) for f in ipv6_fragments("fd00::1", "fd00::2", 17,
                                                         udp("fd00::1", "fd00::2", 5000, 514, b"z" * 40))]
    + [eth_ip(f) for f in ipv6_fragments("fd00::1", "fd00::2", 6,
                                         tcp("fd00::1", "fd00::2", 40000, 443, "PA", b"t" * 40), size=24, ident=8)],
}


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_engines_agree_pcap(tmp_path: Path, name: str) -> None:
    p = write_pcap(tmp_path / f"{name}.pcap", CAPTURES[name])
    fast = comparable(p, "fast")
    assert len(fast) == len(CAPTURES[name])
    assert comparable(p, "tshark") == fast


def test_engines_count_fragment_orphans_alike(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "late.pcap", CAPTURES["fragments-late"])
    counts = []
    for engine in ("fast", "tshark"):
        cs = open_captures([str(p)], engine=engine)
        recs = list(cs)
        counts.append((cs.stats.malformed.get("fragment-orphan"), [(r.sport, r.dport) for r in recs if r.fragment]))
    # The third fragment came 31.5 s after the first; the fourth's datagram began unseen.
    assert counts[0] == counts[1] == (2, [(5000, 514), (5000, 514), (0, 0), (0, 0)])


def test_engines_agree_pcapng_multi_interface_gzip(tmp_path: Path) -> None:
    frames = [(0, 1.5, CAPTURES["tcp-udp-vlan"][0]), (1, 2.25, sll2(CAPTURES["ipv6"][1][14:]))]
    p = write_pcapng(tmp_path / "multi", [1, (276, 9)], frames, compression="gzip")
    cs = open_captures([str(p)], engine="tshark")
    recs = list(cs)
    assert comparable(p, "tshark") == comparable(p, "fast") and len(recs) == 2
    info = cs.inputs[0]
    assert info.compression == "gzip" and info.format == "pcapng" and info.packets == 2 and info.sha256


# Corpus captures where the two engines knowingly give different conversations, and why.
ENGINE_DIFFERENCES = {
    "tcpdump/tests/LINKTYPE_IPV4_invalid.pcap": "an IPv6 packet under the IPv4 link type: tshark refuses it",
    "tcpdump/tests/arcnet-rfc1051-arp-icmp-http.pcap": "ARCNET: only tshark decodes this link type",
    "tcpdump/tests/bigtcp-ipv4-geneve-ipv4.pcap": "Geneve over a TSO-sized outer packet: tshark does not open it",
    "zeek/testing/btest/Traces/tunnels/gtp/gtp4_udp_2152_inside.pcap": "GTP: tshark opens it, the fast path does not",
    "dpkt/examples/data/nb6-http.pcap": "L2TP: tshark opens it, the fast path does not",
}
# They differed while the tshark engine carried no payloads: the direction of these comes from the
# DNS header (53<->53) and the DHCP op (67/68).
FROM_PAYLOADS = ("zeek/testing/btest/Traces/dns53.pcap", "gopacket/pcapgo/tests/be/test001.pcapng",
                 "gopacket/pcapgo/tests/be/test016.pcapng")
# They differed while the tshark engine audited an IPv6 fragment's fragment header as its protocol.
IPV6_FRAGMENTS = ("pcap4j/pcap4j-packettest/src/test/resources/IpV6ExtFragmentPacketTest.pcap",
                  "zeek/testing/btest/Traces/ipv6-fragmented-dns.pcap",
                  "zeek/testing/btest/Traces/ipv6-reassembly-state-leak.pcap")


def _conversations(path: Path, engine: str) -> Counter[tuple[object, ...]] | None:
    b = ConversationBuilder(keep_connections=True, join_related=False, tcp_idle_timeout=1e12,
                            udp_idle_timeout=1e12)
    try:
        for rec in open_captures([str(path)], engine=engine):
            b.feed(rec)
    except CaptureError:
        return None
    return Counter((c.protocol, c.orig_h, c.orig_p, c.resp_h, c.resp_p, c.orig_pkts, c.resp_pkts)
                   for c in b.finish().connections)


def test_engines_agree_on_a_corpus_sample() -> None:
    """The tshark engine gives the same conversations as the fast path on captures both read."""
    corpus = Path(__file__).resolve().parents[2] / "shared" / "corpus"
    manifest = corpus / "MANIFEST.tsv"
    if not manifest.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"corpus not found at {corpus}")
        pytest.skip(f"corpus not found at {corpus}")
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    sample = sorted({r["path"] for r in rows if int(r["bytes"]) < 300_000
                     and hashlib.sha256(r["path"].encode()).digest()[0] < 6}
                    | set(ENGINE_DIFFERENCES) | set(FROM_PAYLOADS) | set(IPV6_FRAGMENTS))
    compared, differ = 0, {}
    for rel in sample:
        fast, slow = _conversations(corpus / rel, "fast"), _conversations(corpus / rel, "tshark")
        if fast is None or slow is None:
            continue
        compared += 1
        if fast != slow and rel not in ENGINE_DIFFERENCES:
            differ[rel] = (sorted((fast - slow).elements())[:2], sorted((slow - fast).elements())[:2])
    assert compared >= 30, compared
    assert not differ, f"engines disagree (fast-only, tshark-only): {differ}"
    for rel in FROM_PAYLOADS + IPV6_FRAGMENTS:
        assert _conversations(corpus / rel, "fast") == _conversations(corpus / rel, "tshark"), rel
