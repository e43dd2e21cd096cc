"""IP fragments across byte-range boundaries (capture/fragments.py): a file cut into byte ranges at
every record boundary around fragmented datagrams reads, chunk by chunk and merged, exactly as one
read of the file: the same records (ports of later fragments, orphans), flows and counters."""

from __future__ import annotations

import dataclasses
import itertools
import struct
from pathlib import Path
from typing import Any

import pytest

from auditor import engine
from auditor.audit import collect
from auditor.capture import CaptureSet, Chunk, fragments
from auditor.capture.decode import FRAG_TIMEOUT
from auditor.capture.ranges import first_packet_offset
from tests.capture_factory import (
    eth_ip,
    eth_ipv4_udp,
    ext_header,
    ipv4,
    ipv4_fragments,
    ipv6,
    tcp,
    udp,
    write_pcap,
    write_pcapng,
)

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
T0 = 1_700_000_000.0
PORTS = frozenset({("udp", 2049), ("udp", 514), ("udp", 53)})


def _frames() -> list[tuple[float, bytes]]:
    """Fragmented datagrams among other packets: interleaved with their own 5-tuple's packets, out of
    order, an identification used again, one fragment past the reassembly timeout, an orphan, IPv6."""
    out: list[tuple[float, bytes]] = [(T0 + i * 0.1, eth_ipv4_udp(A, B, 40000 + i % 3, 53, b"q" * 20))
                                      for i in range(40)]
    d1 = ipv4_fragments(A, B, 17, udp(A, B, 5000, 2049, b"a" * 40), size=16, ident=100)
    d2 = ipv4_fragments(C, B, 17, udp(C, B, 6000, 514, b"b" * 56), size=16, ident=7)
    d3 = ipv4_fragments(A, B, 17, udp(A, B, 5001, 2049, b"c" * 24), size=16, ident=100)
    d4 = ipv4_fragments(C, A, 17, udp(C, A, 7000, 2049, b"d" * 32), size=16, ident=8)
    seg6 = tcp("fd00::1", "fd00::2", 4000, 80, "PA", b"w" * 40)
    d6 = [ipv6("fd00::1", "fd00::2", 6, seg6[:24], [ext_header(44, 0, True, 9)]),
          ipv6("fd00::1", "fd00::2", 6, seg6[24:], [ext_header(44, 3, False, 9)])]
    t = T0 + 5
    plan: list[bytes] = [
        eth_ip(d1[0]), eth_ipv4_udp(A, B, 5000, 2049, b"plain"), eth_ip(d1[1]),
        eth_ipv4_udp(B, A, 2049, 5000, b"reply"), eth_ip(d1[2]),
        *map(eth_ip, (d2[2], d2[0], d2[1], d2[3])),  # the third fragment first: an orphan in one read too
        *map(eth_ip, d3),  # identification 100 again, other ports
        eth_ip(ipv4(A, "10.9.9.9", 17, b"z" * 16, ident=999, flags=0, frag_offset=4)),  # no first fragment
        *map(eth_ip, d6),
        eth_ip(d4[0]),
    ]
    for frame in plan:
        out.append((t, frame))
        t += 0.25
    out.append((t + 2, eth_ip(d4[1])))  # within the timeout
    out.append((t + FRAG_TIMEOUT + 1, eth_ip(d4[2])))  # past it: an orphan
    out += [(t + FRAG_TIMEOUT + 2 + i * 0.1, eth_ipv4_udp(A, C, 41000, 53, b"r" * 20)) for i in range(40)]
    return out


@pytest.fixture(params=["pcap", "pcapng"])
def capture(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    frames = _frames()
    if request.param == "pcap":
        return write_pcap(tmp_path / "frags.pcap", frames)
    return write_pcapng(tmp_path / "frags.pcapng", [1], [(0, ts, f) for ts, f in frames])


def _boundaries(path: Path) -> list[int]:
    """File offsets where each record (pcap) or packet block (pcapng) starts."""
    data = path.read_bytes()
    out = []
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        pos = first_packet_offset(str(path))
        assert pos is not None
        while pos < len(data):
            out.append(pos)
            pos += struct.unpack_from("<I", data, pos + 4)[0]
    else:
        pos = 24
        while pos < len(data):
            out.append(pos)
            pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return out


def _fragment_region(path: Path) -> list[int]:
    """The record boundaries from the record before the first fragment to the record after the last."""
    starts = _boundaries(path)
    frags = [i for i, r in enumerate(CaptureSet([str(path)])) if r.fragment]
    assert len(starts) > frags[-1] + 2
    return starts[frags[0] - 1:frags[-1] + 3]


def _record(r: Any, by: int) -> tuple[Any, ...]:
    return (r.frame + by, r.ts, r.src, r.dst, r.proto, r.sport, r.dport, r.fragment, r.payload_len, r.ip_len)


Read = tuple[list[tuple[Any, ...]], dict[str, int], dict[str, Any], dict[str, Any]]
"""Records (frames counted from the file's start), malformed counts, conversations and names, and
the read counters of the audit."""


def _one_read(path: Path) -> Read:
    cs = CaptureSet([str(path)])
    records = [_record(r, 0) for r in cs]
    audited = CaptureSet([str(path)])
    conv, names = collect(audited, PORTS)
    return records, cs.stats.malformed, _facts(conv, names), dataclasses.asdict(audited.stats)


def _facts(conv: Any, names: Any) -> dict[str, Any]:
    s = dataclasses.asdict(conv.stats)
    for name in ("idle_splits", "peak_live"):  # depend on when the sweep ran (docs/scale.md)
        s.pop(name)
    return {"flows": sorted((k, dataclasses.asdict(f)) for k, f in conv.flows.items()), "conv": s,
            "names": {a: names.names_for(a) for a in names._by_addr}}


def _chunks(path: Path, cuts: list[int]) -> list[Chunk]:
    edges = [0, *cuts, -1]
    return [Chunk(str(path), 0, edges[k], edges[k + 1], k) for k in range(len(edges) - 1)]


def _chunked(chunks: list[Chunk]) -> Read:
    records: list[tuple[Any, ...]] = []
    malformed: dict[str, int] = {}
    by = 0
    for c in chunks:
        cs = CaptureSet.from_chunks([c])
        records += [_record(r, by) for r in cs]
        by += cs.inputs[0].packets
        for k, n in cs.stats.malformed.items():
            malformed[k] = malformed.get(k, 0) + n
    got, exact = engine.merge(iter([engine.read_chunk(c, PORTS, "fast", True, i == 0) for i, c in enumerate(chunks)]))
    assert exact
    return records, malformed, _facts(got.conv, got.names), dataclasses.asdict(got.stats)


def test_one_read_places_fragments_and_counts_orphans(capture: Path) -> None:
    # The case the chunked reads must match: not every later fragment finds its ports.
    records, malformed, _, _ = _one_read(capture)
    frag_ports = [(r[2], r[5], r[6]) for r in records if r[7]]
    assert malformed == {"fragment-orphan": 3}  # out of order, no first fragment, past the timeout
    assert frag_ports.count((bytes([10, 0, 0, 1]), 5000, 2049)) == 3
    assert frag_ports.count((bytes([10, 0, 0, 1]), 5001, 2049)) == 2
    assert frag_ports.count((bytes([10, 0, 0, 3]), 7000, 2049)) == 2


def test_every_cut_around_fragments_reads_as_one(capture: Path) -> None:
    one = _one_read(capture)
    region = _fragment_region(capture)
    for cut in region:
        assert _chunked(_chunks(capture, [cut])) == one, cut
    # A short chunk in between, of one record or two: the walk back crosses more than one chunk.
    for cuts in [*itertools.pairwise(region), *zip(region, region[2:], strict=False)]:
        assert _chunked(_chunks(capture, list(cuts))) == one, cuts


def test_the_walk_back_starts_at_a_guessed_boundary(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A short first step: the walk back starts at a boundary found in the file (ranges), not at the
    # first record, and goes further back until it covers the reassembly timeout.
    monkeypatch.setattr(fragments, "STEP", 300)
    one = _one_read(capture)
    for cut in _fragment_region(capture)[::3]:
        assert _chunked(_chunks(capture, [cut])) == one, cut


def test_plan_cuts_read_as_one(capture: Path) -> None:
    # engine.plan's own cuts (guessed boundaries), on local processes.
    _, _, facts, stats = _one_read(capture)
    for parts in (2, 3, 5):
        got, exact = engine.run_local(engine.plan([str(capture)], parts, min_bytes=1), PORTS, "fast", True, 2)
        assert exact
        assert (_facts(got.conv, got.names), dataclasses.asdict(got.stats)) == (facts, stats)
