"""Nothing in a capture may crash the reader: the public corpus and mutated generated files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.audit import collect
from auditor.capture import open_captures
from auditor.errors import CaptureError
from tests.capture_factory import (
    eth_ipv4_tcp,
    eth_ipv4_udp,
    eth_ipv6_tcp,
    ext_header,
    geneve,
    gre,
    icmp,
    ipv4,
    ipv4_fragments,
    ipv4_udp,
    pcap_bytes,
    pcapng_bytes,
    sll2,
    udp,
    vxlan,
)

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"


def read_all(path: Path) -> tuple[int, str | None]:
    """Read to the end; (records, None) or (0, the CaptureError line)."""
    try:
        return sum(1 for _ in open_captures([str(path)])), None
    except CaptureError as e:
        return 0, str(e)


@pytest.mark.corpus
def test_corpus_read_to_end_or_refused_with_one_line() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"public capture corpus not found at {CORPUS}")
    skip = ("MANIFEST.tsv", "README.md")
    files = [p for p in sorted(CORPUS.rglob("*")) if p.is_file() and p.name not in skip]
    assert len(files) > 1000
    t = time.monotonic()
    for p in files:
        _, err = read_all(p)  # any other exception fails the test with the file in the traceback
        if err is not None:
            assert err.startswith(f"{p}: ") and "\n" not in err
    assert time.monotonic() - t < 60


INNER = eth_ipv4_tcp("192.168.1.1", "192.168.1.2", 1000, 443, "S")
FRAMES = [
    eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "PA", b"GET / HTTP/1.1\r\n", vlan=5),
    eth_ipv4_udp("10.0.0.1", "10.0.0.3", 5353, 53, b"\x00" * 12),
    eth_ipv6_tcp("fd00::1", "fd00::2", 1, 2, "S", ext=[ext_header(0), ext_header(44, 0, True)]),
    vxlan("1.1.1.1", "2.2.2.2", INNER), geneve("1.1.1.1", "2.2.2.2", INNER),
    gre("1.1.1.1", "2.2.2.2", INNER[14:], key=5),
    eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2)[:14]
    + ipv4("10.0.0.9", "10.0.0.1", 1, icmp(3, 3, data=ipv4_udp("10.0.0.1", "10.0.0.9", 1, 2)[:28])),
] + [eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2)[:14] + f for f in
     ipv4_fragments("10.0.0.1", "10.0.0.2", 17, udp("10.0.0.1", "10.0.0.2", 7, 8, b"f" * 30))]
# One conversation past its handshake, so that mutated captures also reach the fast lane.
FRAMES += [eth_ipv4_tcp(a, b, sp, dp, fl, pl) for a, b, sp, dp, fl, pl in (
    ("10.0.0.7", "10.0.0.8", 40001, 443, "S", b""), ("10.0.0.8", "10.0.0.7", 443, 40001, "SA", b""),
    ("10.0.0.7", "10.0.0.8", 40001, 443, "A", b""), ("10.0.0.7", "10.0.0.8", 40001, 443, "PA", b"\x17" * 40),
    ("10.0.0.8", "10.0.0.7", 443, 40001, "PA", b"\x17" * 90), ("10.0.0.7", "10.0.0.8", 40001, 443, "A", b""))]
PCAP = pcap_bytes(FRAMES)
PCAPNG = pcapng_bytes([1, (276, 9)], [(i % 2, 1.0 + i, f if i % 2 == 0 else sll2(f[14:]))
                                      for i, f in enumerate(FRAMES)])


@pytest.mark.corpus
def test_corpus_through_the_conversation_core() -> None:
    # The reader with the core's fast lane attached (as an audit runs it): every corpus capture is
    # taken to the end or refused with one line, and every record read reaches the core.
    if not CORPUS.is_dir():
        pytest.skip(f"public capture corpus not found at {CORPUS}")
    files = [p for p in sorted(CORPUS.rglob("*")) if p.is_file() and p.name not in ("MANIFEST.tsv", "README.md")]
    fed = 0
    for p in files:
        try:
            cs = open_captures([str(p)])
            conv, _ = collect(cs, frozenset({("tcp", 443), ("tcp", 1494)}))
        except CaptureError as e:
            assert str(e).startswith(f"{p}: ") and "\n" not in str(e)
            continue
        assert conv.stats.packets == cs.stats.records, p
        fed += conv.stats.packets
    assert fed > 100_000


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([PCAP, PCAPNG])))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, len(data) - 1)) if data else 0
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[i] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, 5, 0x45, 0x60]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 16))]
        else:
            del data[draw(st.integers(0, len(data))):]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_captures_never_crash(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "fuzz.cap"
    p.write_bytes(data)
    cs = None
    try:
        cs = open_captures([str(p)])
        recs = list(cs)
    except CaptureError as e:
        assert "\n" not in str(e)
        return
    assert cs.stats.records == len(recs) and len(cs.inputs) == 1
    # Through the conversation core, with its fast lane and without: no crash, the same result.
    with_lane = collect(open_captures([str(p)]), frozenset({("tcp", 443)}))
    plain = collect(iter(open_captures([str(p)])), frozenset({("tcp", 443)}))
    assert with_lane[0].stats.packets == plain[0].stats.packets == len(recs)
    assert sorted(with_lane[0].flows.items()) == sorted(plain[0].flows.items())
