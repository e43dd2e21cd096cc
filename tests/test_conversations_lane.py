"""The conversation core's fast lane (ConversationBuilder.lane) against plain records.

From a CaptureSet, audit.collect lets the decoder hand common TCP/UDP packets of live connections to
the lane by their fields instead of building records. These tests read the same captures both ways
(iterating the CaptureSet through a plain iterator turns the lane off) and require identical flows,
conversation counters, read counters and name evidence.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from auditor import conversations
from auditor.apps import APP_SNAP
from auditor.audit import collect
from auditor.capture import CaptureSet
from auditor.capture import decode as decode_mod
from auditor.conversations import SWEEP_EVERY, ConversationBuilder
from auditor.model import ACK, PSH, SYN
from tests.capture_factory import eth_ipv4_tcp, eth_ipv4_udp, eth_ipv6_tcp, eth_ipv6_udp, write_pcap, write_pcapng
from tests.records import tcp as tcp_rec
from tests.records import udp as udp_rec
from tests.scripts import load_script

# Each test runs with either kernel (conftest.each_kernel).
pytestmark = pytest.mark.usefixtures("each_kernel")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
PORTS = frozenset({("tcp", 443), ("tcp", 1494), ("udp", 53)})


def _make_capture() -> ModuleType:
    return load_script(ROOT / "bench" / "make_capture.py")


FED: list[int] = [0]
LANE_TAKEN: list[int] = [0]


def _run(paths: list[Path], lane: bool) -> tuple[Any, ...]:
    cs = CaptureSet([str(p) for p in paths])
    FED[0] = 0
    builder = conversations.ConversationBuilder  # the build each_kernel chose, as collect() finds it
    real_feed = builder.feed

    def counting_feed(self: ConversationBuilder, rec: Any) -> None:
        FED[0] += 1
        real_feed(self, rec)

    if lane:
        # The kernel's walk hands every record to the lane (FastLane.put), which counts them.
        conv, names = collect(cs, PORTS)
        taken = conv.stats.packets - cs.lane.records
    else:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(builder, "feed", counting_feed)
            conv, names = collect(iter(cs), PORTS)
        taken = conv.stats.packets - FED[0]
    # The lane is really used, or not at all.
    assert taken > 0 if lane else taken == 0
    if lane:
        LANE_TAKEN[0] = taken
    flows = sorted((k, dataclasses.asdict(f)) for k, f in conv.flows.items())
    found = {a: names.names_for(a) for a in names._by_addr}
    read = dataclasses.asdict(cs.stats)
    return flows, dataclasses.asdict(conv.stats), read, names.stats, found


def _same(paths: list[Path]) -> tuple[Any, ...]:
    with_lane = _run(paths, True)
    assert with_lane == _run(paths, False)
    return with_lane


def _conversations(rnd: random.Random, n: int) -> list[tuple[float, bytes]]:
    """Interleaved conversations of every kind the lane sees or must decline: handshakes, data both
    ways, TLS and HTTP first bytes (names), DNS over UDP and TCP, bad checksums, FIN/RST, idle gaps
    past the timeouts, VLAN tags and IPv6."""
    out: list[tuple[float, bytes]] = []
    t = 1_700_000_000.0
    live: list[tuple[str, str, int, int, bool, int | None]] = []
    for _ in range(n):
        if not live or rnd.random() < 0.08:
            v6 = rnd.random() < 0.2
            c = (f"fd00::{rnd.randrange(1, 30):x}" if v6 else f"10.0.0.{rnd.randrange(1, 30)}",
                 f"fd00::1:{rnd.randrange(1, 5):x}" if v6 else f"10.9.0.{rnd.randrange(1, 5)}",
                 rnd.randrange(40000, 40100), rnd.choice((443, 1494, 53, 8080, 123)), v6,
                 rnd.choice((None, None, 7)))
            live.append(c)
        a, b, sp, dp, v6, vlan = rnd.choice(live)
        t += rnd.choice((0.001, 0.01, 0.5, 2.0, 70.0 if rnd.random() < 0.02 else 0.001))
        fwd = rnd.random() < 0.6
        s, d, ps, pd = (a, b, sp, dp) if fwd else (b, a, dp, sp)
        payload = rnd.choice((b"", b"", b"\x17\x03\x03" + b"x" * 300, b"\x00" * 40,
                              b"\x16\x03\x01\x00\x05\x01abc", b"GET / HTTP/1.1\r\nHost: h.example\r\n\r\n",
                              b"\x12\x34\x81\x80" + b"\x00" * 20))
        bad = rnd.random() < 0.03
        if rnd.random() < 0.3:
            if v6:
                f = eth_ipv6_udp(s, d, ps, pd, payload)
            else:
                f = eth_ipv4_udp(s, d, ps, pd, payload, vlan=vlan, bad_checksum=bad)
        else:
            flags = rnd.choice(("A", "PA", "PA", "A", "S", "SA", "FA", "R"))
            if v6:
                f = eth_ipv6_tcp(s, d, ps, pd, flags, payload)
            else:
                f = eth_ipv4_tcp(s, d, ps, pd, flags, payload, vlan=vlan, seq=rnd.getrandbits(32),
                                 bad_checksum=bad)
        out.append((t, f))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_lane_equals_records_on_mixed_conversations(tmp_path: Path, seed: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_mod, "VERIFY_ALL_BYTES", 30_000)  # then the checksum sample
    packets = _conversations(random.Random(seed), 4000)
    pcap = write_pcap(tmp_path / "mix.pcap", packets)
    pcapng = write_pcapng(tmp_path / "mix.pcapng", [1], [(0, t, f) for t, f in packets])
    flows, conv_stats, read, _, names = _same([pcap])
    assert read["records"] == read["frames"] == len(packets)
    assert conv_stats["packets"] == len(packets) and len(flows) > 20 and names
    _same([pcapng])
    _same([pcap, pcapng])


@pytest.mark.parametrize("kind", ["tcp4", "udp4", "tcp4-vlan", "tcp6", "udp6"])
def test_the_kernel_finds_a_connection_by_the_key_it_slices(tmp_path: Path, kind: str, each_kernel: ModuleType) -> None:
    # The kernel offers the lane a packet's table key as one slice of it (the addresses, then the
    # ports; a UDP one after state.UDP_KEY); the core made the connection's keys from a record's fields
    # (state.conn_key). Every packet after each side's first payload is taken by the lane: the keys
    # agree, for each kind of packet the lane takes.
    assert each_kernel.UDP_KEY == conversations.conn_key(17, b"", 0, b"", 0)[:1] != b""
    v6 = kind.endswith("6")
    a, b = ("fd00::1", "fd00::2") if v6 else ("10.0.0.1", "10.0.0.2")
    frames = []
    for i in range(20):
        s, d, ps, pd = (a, b, 40000, 1494) if i % 2 == 0 else (b, a, 1494, 40000)
        payload = bytes([0x20 + i]) * 30
        if kind.startswith("udp"):
            frames.append(eth_ipv6_udp(s, d, ps, pd, payload) if v6 else eth_ipv4_udp(s, d, ps, pd, payload))
        elif v6:
            frames.append(eth_ipv6_tcp(s, d, ps, pd, "PA", payload))
        else:
            frames.append(eth_ipv4_tcp(s, d, ps, pd, "PA", payload, vlan=7 if kind.endswith("vlan") else None))
    pcap = write_pcap(tmp_path / f"{kind}.pcap", [(1_700_000_000.0 + i * 0.01, f) for i, f in enumerate(frames)])
    flows, conv_stats, *_ = _same([pcap])
    assert conv_stats["packets"] == 20 and len(flows) == 1
    assert LANE_TAKEN[0] == 20 - 2  # all but each side's first payload (kept for auditor/apps.py)


def test_lane_equals_records_on_bench_traffic(tmp_path: Path) -> None:
    cap = tmp_path / "bench.pcap"
    written, _ = _make_capture().generate(cap, 60_000, conversations=3_000)
    flows, conv_stats, *_ = _same([cap])
    assert conv_stats["connections"] > 2_000 and conv_stats["packets"] == written
    assert LANE_TAKEN[0] > written // 2  # most packets of real traffic are mid-connection
    assert any(f["established"] for _, f in flows) and any(f["unanswered"] for _, f in flows)


def test_lane_equals_records_on_samples() -> None:
    _same(sorted(SAMPLES.glob("*.pcap*")))


def _lane_accepts(builder: ConversationBuilder, r: Any) -> bool:
    key = conversations.conn_key(r.proto, r.src, r.sport, r.dst, r.dport)
    return builder.lane().take(r.proto, key, r.ts, r.tcp_flags, r.payload_len, r.ip_len)


def test_lane_takes_only_live_established_packets() -> None:
    b = ConversationBuilder()
    first = tcp_rec("10.0.0.1", "10.0.0.2", 40000, 443, SYN, 1.0)
    assert not _lane_accepts(b, first)  # no connection yet: the record must create it
    b.feed(first)
    synack = tcp_rec("10.0.0.2", "10.0.0.1", 443, 40000, SYN | ACK, 1.1)
    assert not _lane_accepts(b, synack)  # SYN/FIN/RST always go to feed
    b.feed(synack)
    data = tcp_rec("10.0.0.1", "10.0.0.2", 40000, 443, PSH | ACK, 1.2, payload=b"\x17" * 10)
    assert not _lane_accepts(b, data)  # a direction's first payload: the core keeps its first bytes
    b.feed(data)
    more = tcp_rec("10.0.0.1", "10.0.0.2", 40000, 443, PSH | ACK, 1.25, payload=b"\x17" * 10)
    assert _lane_accepts(b, more)
    assert b.stats.packets == 4
    late = tcp_rec("10.0.0.1", "10.0.0.2", 40000, 443, ACK, 1000.0)
    assert not _lane_accepts(b, late)  # past the idle timeout: feed splits the connection
    assert b.stats.packets == 4


def test_lane_leaves_the_sweep_to_feed() -> None:
    b = ConversationBuilder()
    b.feed(udp_rec("10.0.0.1", "10.0.0.2", 40000, 53, 1.0))
    declined = 0
    for i in range(SWEEP_EVERY + 10):
        r = udp_rec("10.0.0.1", "10.0.0.2", 40000, 53, 1.0 + i * 1e-6)
        if not _lane_accepts(b, r):
            declined += 1
            b.feed(r)
    assert declined == 1  # the one packet whose turn it is to sweep goes through feed
    assert b.stats.packets == SWEEP_EVERY + 11


def _relink(frame: bytes, lt: int) -> bytes:
    """An Ethernet frame as the given link type would carry it (tags kept where the link has an
    ethertype, stripped where it has none)."""
    et, body = frame[12:14], frame[14:]
    if et == b"\x81\x00" and lt in (101, 12, 0, 108):
        et, body = frame[16:18], frame[18:]
    if lt == 113:  # Linux cooked: packet type, ARPHRD, address length, 8 address bytes, protocol
        return struct.pack(">HHH", 0, 1, 6) + frame[6:12] + b"\x00\x00" + et + body
    if lt == 276:  # SLL2: protocol, reserved, interface index, ARPHRD, packet type, address length, 8 bytes
        return et + b"\x00\x00" + struct.pack(">IHBB", 3, 1, 0, 6) + frame[6:12] + b"\x00\x00" + body
    if lt in (0, 108):
        fam = 2 if et == b"\x08\x00" else 30 if et == b"\x86\xdd" else 99
        return (struct.pack(">I", fam) if lt == 108 else struct.pack("<I", fam)) + body
    return body  # raw IP


@pytest.mark.parametrize("lt", [113, 276, 101, 12, 0, 108])
def test_other_link_types_take_the_fast_path_and_the_lane(tmp_path: Path, lt: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Linux cooked (SLL, SLL2), raw IP and loopback captures go through the decoder's fast path and
    # the lane like Ethernet: frame by frame the records are those of the same untagged packets over
    # Ethernet (same path, same checksum sample, same trimmed payloads; a tagged frame may take the
    # general path on one link and not the other), and the conversations those of feeding every
    # record.
    from auditor.capture.decode import Decoder
    from auditor.capture.info import ReadStats

    monkeypatch.setattr(decode_mod, "VERIFY_ALL_BYTES", 30_000)  # then the checksum sample
    ether = _conversations(random.Random(lt), 3000)
    packets = [(t, _relink(f, lt)) for t, f in ether]
    other, eth = Decoder(ReadStats(), 0), Decoder(ReadStats(), 0)
    trimmed = compared = 0
    for i, ((t, f), (_, e)) in enumerate(zip(packets, ether, strict=True), 1):
        if e[12:14] == b"\x81\x00":
            continue
        other.kernel.verify_all = eth.kernel.verify_all = i <= 100  # then the checksum sample
        rec = other.decode(f, 0, len(f), t, i, lt)
        assert rec == eth.decode(e, 0, len(e), t, i, 1), i
        compared += 1
        # the fast path's own trim: apps.APP_SNAP bytes of a segment names.py does not read
        trimmed += rec is not None and rec.payload_len > len(rec.payload) == APP_SNAP
    assert other.stats == eth.stats and compared > 2000 and trimmed > 100
    cap = write_pcap(tmp_path / f"lt{lt}.pcap", packets, linktype=lt)
    flows, conv_stats, read, _, names = _same([cap])
    assert read["frames"] == len(packets) and conv_stats["packets"] == len(packets) and len(flows) > 20 and names
