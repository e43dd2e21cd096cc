"""tshark as the oracle (SPEC §3): every TCP/UDP conversation in `tshark -z conv,tcp -z conv,udp` is one of
ours, with the same packet counts per direction, on generated captures of every format we read and on a
deterministic sample of the public corpus. The whole corpus: `python bench/oracle_corpus.py`.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import capture_factory as cf
from tests.oracle import TSHARK, compare

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

needs_tshark = pytest.mark.skipif(TSHARK is None and os.environ.get("CI") != "true",
                                  reason="tshark not installed (CI installs it)")

# Sample captures where we knowingly see different conversations than tshark, and why (the whole corpus,
# with the same reasons: docs/oracle.md). The test fails on a stale entry too.
KNOWN_DIFFERENCES = {
    "dpkt/examples/data/nb6-http.pcap": "L2TP (udp/1701) carrying PPP: tshark opens the tunnel, we audit the "
                                        "outer UDP conversation",
    "tcpdump/tests/arcnet-rfc1051-arp-icmp-http.pcap": "ARCNET link type (7): not read",
    "zeek/testing/btest/Traces/tunnels/gtp/gtp4_udp_2152_inside.pcap": "GTP-U (udp/2152, mobile core): tshark "
                                                                      "opens the tunnel, we do not",
}


def _conversation(client: str, server: str, cport: int, sport: int, v6: bool = False) -> list[bytes]:
    t = cf.ipv6_tcp if v6 else cf.ipv4_tcp
    return [t(client, server, cport, sport, "S"), t(server, client, sport, cport, "SA"),
            t(client, server, cport, sport, "A"), t(client, server, cport, sport, "PA", b"GET / HTTP/1.1\r\n\r\n"),
            t(server, client, sport, cport, "PA", b"HTTP/1.1 200 OK\r\n\r\n"), t(client, server, cport, sport, "FA"),
            t(server, client, sport, cport, "FA"), t(client, server, cport, sport, "A")]


def _mixed_ip() -> list[bytes]:
    """IP packets (no link layer): TCP over v4 and v6, UDP both ways, one unanswered SYN, one RST."""
    pk = _conversation("10.0.0.1", "10.0.0.2", 50000, 443)
    pk += _conversation("2001:db8::1", "2001:db8::2", 50001, 1494, v6=True)
    pk += [cf.ipv4_udp("10.0.0.1", "10.0.0.53", 50002, 53, b"\x12\x34\x01\x00" + bytes(8)),
           cf.ipv4_udp("10.0.0.53", "10.0.0.1", 53, 50002, b"\x12\x34\x81\x80" + bytes(8)),
           cf.ipv4_tcp("10.0.0.1", "10.0.0.9", 50003, 1433, "S"),
           cf.ipv4_tcp("10.0.0.1", "10.0.0.9", 50004, 27000, "S"),
           cf.ipv4_tcp("10.0.0.9", "10.0.0.1", 27000, 50004, "RA")]
    return pk


GENERATED: dict[str, Callable[[Path], Path]] = {
    "pcap-us-le": lambda d: cf.write_pcap(d / "a.pcap", [cf.eth_ip(p) for p in _mixed_ip()]),
    "pcap-ns-be": lambda d: cf.write_pcap(d / "a.pcap", [cf.eth_ip(p) for p in _mixed_ip()], nano=True,
                                          byteorder=">"),
    "pcap-gzip": lambda d: cf.write_pcap(d / "a.pcap.gz", [cf.eth_ip(p) for p in _mixed_ip()], compression="gzip"),
    "pcap-vlan-qinq": lambda d: cf.write_pcap(d / "a.pcap", [cf.eth_ip(p, vlan=[100, 20] if i % 2 else 7)
                                                             for i, p in enumerate(_mixed_ip())]),
    "pcap-sll": lambda d: cf.write_pcap(d / "a.pcap", [cf.sll(p) for p in _mixed_ip()], linktype=113),
    "pcap-sll2": lambda d: cf.write_pcap(d / "a.pcap", [cf.sll2(p) for p in _mixed_ip()], linktype=276),
    "pcap-raw": lambda d: cf.write_pcap(d / "a.pcap", _mixed_ip(), linktype=101),
    "pcap-null": lambda d: cf.write_pcap(d / "a.pcap", [cf.null_loopback(p) for p in _mixed_ip()], linktype=0),
    "pcapng-two-interfaces": lambda d: cf.write_pcapng(
        d / "a.pcapng", [1, 101],
        [(i % 2, 1_700_000_000.0 + i * 0.001, cf.eth_ip(p) if i % 2 == 0 else p)
         for i, p in enumerate(_mixed_ip())]),
    "pcapng-be-nanosecond": lambda d: cf.write_pcapng(
        d / "a.pcapng", [(1, 9)], [(0, 1_700_000_000.0 + i * 0.001, cf.eth_ip(p)) for i, p in enumerate(_mixed_ip())],
        byteorder=">"),
    "pcapng-zstd": lambda d: cf.write_pcapng(d / "a.pcapng.zst", [1], [cf.eth_ip(p) for p in _mixed_ip()],
                                             compression="zstd"),
    "vxlan": lambda d: cf.write_pcap(d / "a.pcap", [cf.vxlan("192.0.2.1", "192.0.2.2", cf.eth_ip(p))
                                                    for p in _mixed_ip()]),
    "gre": lambda d: cf.write_pcap(d / "a.pcap", [cf.gre("192.0.2.1", "192.0.2.2", p,
                                                         protocol=0x86DD if p[0] >> 4 == 6 else 0x0800)
                                                  for p in _mixed_ip()]),
    # Formats the corpus run showed we missed (docs/oracle.md).
    "pktap": lambda d: cf.write_pcap(d / "a.pcap", [cf.pktap(cf.eth_ip(p)) for p in _mixed_ip()], linktype=258),
    "fddi": lambda d: cf.write_pcap(d / "a.pcap", [cf.fddi(p) for p in _mixed_ip()], linktype=10),
    "ipoib": lambda d: cf.write_pcap(d / "a.pcap", [cf.ipoib(p) for p in _mixed_ip()], linktype=242),
    "juniper-ether": lambda d: cf.write_pcap(d / "a.pcap", [cf.juniper_ether(cf.eth_ip(p)) for p in _mixed_ip()],
                                             linktype=178),
    "macsec": lambda d: cf.write_pcap(d / "a.pcap", [cf.macsec(p, sci=i % 2 == 0) for i, p in enumerate(_mixed_ip())]),
    "pim-register": lambda d: cf.write_pcap(d / "a.pcap", [cf.pim_register("192.0.2.1", "192.0.2.2", p)
                                                           for p in _mixed_ip()]),
    "ah-ipcomp": lambda d: cf.write_pcap(d / "a.pcap", [
        cf.ipv4_tunnel("192.0.2.1", "192.0.2.2", 51, cf.ah(108, cf.ipcomp(4 if p[0] >> 4 == 4 else 41, p, cpi=0x4000)))
        for p in _mixed_ip()]),
}


@needs_tshark
@pytest.mark.tshark
@pytest.mark.parametrize("kind", sorted(GENERATED))
def test_generated_captures_match_tshark(kind: str, tmp_path: Path) -> None:
    path = GENERATED[kind](tmp_path)
    diff = compare(path)
    assert diff is not None, "tshark or pcap-audit could not read the capture"
    assert diff.theirs, "tshark saw no conversation: the generated capture is broken"
    assert not diff.missing, f"tshark conversations we lack or count differently: {diff.missing}"


def _corpus_sample() -> list[str]:
    """A deterministic eighth of the corpus (by SHA-256), small files only, to keep CI fast."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    picked = [r["path"] for r in rows if int(r["bytes"]) < 2_000_000
              and hashlib.sha256(r["path"].encode()).digest()[0] < 32]
    return sorted(set(picked) | set(KNOWN_DIFFERENCES))


SAMPLE = _corpus_sample()


@needs_tshark
@pytest.mark.corpus
@pytest.mark.skipif(not SAMPLE and os.environ.get("CI") != "true", reason=f"corpus not found at {CORPUS}")
def test_corpus_sample_matches_tshark() -> None:
    assert SAMPLE, f"corpus not found at {CORPUS}"
    compared, unexpected, still_known = 0, {}, set()
    for rel in SAMPLE:
        path = CORPUS / rel
        if not path.exists():
            continue
        diff = compare(path)
        if diff is None:
            continue  # one of the two refused the file (refusals are tested in test_capture_robust)
        compared += 1
        if diff.missing:
            if rel in KNOWN_DIFFERENCES:
                still_known.add(rel)
            else:
                unexpected[rel] = diff.missing[:3]
    assert compared > 100, f"only {compared} corpus captures compared"
    assert not unexpected, f"conversations tshark sees and we do not: {unexpected}"
    stale = {k for k in KNOWN_DIFFERENCES if (CORPUS / k).exists()} - still_known
    assert not stale, f"no longer different from tshark, remove from KNOWN_DIFFERENCES: {sorted(stale)}"
