"""The fused pcap walk (walk_pcap's Ethernet fast path) against Decoder.decode, and the TCP payload rule.

walk_pcap inlines Decoder.decode's Ethernet/IPv4 TCP/UDP fast path for link type 1; these tests read
varied captures both ways (``fused=False``: one Decoder.decode call per frame) and require identical
records, counters and input facts.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from pathlib import Path

import pytest

from auditor.apps import APP_SNAP
from auditor.audit import collect
from auditor.capture import decode as decode_mod
from auditor.capture import open_captures, pcapfile, pcapng
from auditor.capture.decode import Decoder
from auditor.capture.info import InputInfo, ReadStats
from auditor.capture.source import CHUNK, Source
from auditor.model import PAYLOAD_SNAP, PacketRecord
from tests.capture_factory import (
    eth,
    eth_ip,
    eth_ipv4_tcp,
    eth_ipv4_udp,
    eth_ipv6_tcp,
    eth_ipv6_udp,
    ipv4,
    ipv4_fragments,
    tcp,
    udp,
    vxlan,
    write_pcap,
    write_pcapng,
)

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"

FIELDS = ("input_index", "frame", "ts", "src", "dst", "proto", "ip_len", "sport", "dport", "tcp_flags", "seq",
          "ack", "payload_len", "payload", "icmp_type", "icmp_code", "icmp_id", "quoted", "checksum_bad",
          "tunnel", "fragment", "ttl")

FIRST_BYTES = (b"\x16\x03\x01\x00\x05\x01", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x17\x03\x03", b"\x00",
               b"0123", b"post", b"\xff" * 3, b"Z", b"\x15")


def _payload(rnd: random.Random) -> bytes:
    head = rnd.choice(FIRST_BYTES)
    return head + bytes(rnd.getrandbits(8) for _ in range(rnd.choice((0, 0, 1, 7, 60, 1400, 2100))))


def _frame(rnd: random.Random) -> bytes:
    a, b = f"10.0.{rnd.randrange(4)}.{rnd.randrange(1, 9)}", f"192.168.1.{rnd.randrange(1, 9)}"
    sport, dport = rnd.choice((40000, 53, 67, 68, 443)), rnd.choice((443, 53, 80, 67, 123, 4789, 6081))
    vlan = rnd.choice((None, None, 7, (5, 6)))
    k = rnd.randrange(12)
    if k < 4:
        f = eth_ipv4_tcp(a, b, sport, dport, rnd.choice(("S", "SA", "A", "PA", "FA", "R")), _payload(rnd),
                         vlan=vlan, seq=rnd.getrandbits(32), ack=rnd.getrandbits(32),
                         bad_checksum=rnd.random() < 0.2)
    elif k < 7:
        f = eth_ipv4_udp(a, b, sport, dport, _payload(rnd) if rnd.random() < 0.8 else b"", vlan=vlan,
                         bad_checksum=rnd.random() < 0.2)
    elif k == 7:
        f = eth_ipv6_tcp("fd00::1", "fd00::2", sport, dport, "PA", _payload(rnd))
    elif k == 8:
        f = eth_ipv6_udp("fd00::1", "fd00::2", sport, dport, _payload(rnd))
    elif k == 9:
        inner = eth_ipv4_tcp(a, b, sport, 443, "S")
        f = vxlan("172.16.0.1", "172.16.0.2", inner) if rnd.random() < 0.5 else inner
    elif k == 10:
        frags = ipv4_fragments(a, b, 17, udp(a, b, sport, dport, b"x" * 40))
        f = eth_ip(rnd.choice(frags), vlan=vlan)
    else:
        opts = eth_ip(ipv4(a, b, 6, tcp(a, b, sport, dport, "PA", b"GET /"), options=b"\x01\x01\x01\x00"))
        f = rnd.choice((opts, eth(b"\x00\x01\x08\x00" + b"\x00" * 24, ethertype=0x0806),
                        eth_ipv4_udp(a, b, sport, dport, b"\x00\x00", vlan=vlan)[:-1] + b"\x01"))
    r = rnd.random()
    if r < 0.15:  # cut by a snap length: headers or payload captured in part
        f = f[:rnd.randrange(1, len(f) + 1)]
    elif r < 0.3:  # a damaged header byte: wrong lengths, versions, protocols, offsets
        i = rnd.randrange(min(len(f), 70))
        f = f[:i] + bytes([rnd.getrandbits(8)]) + f[i + 1:]
    elif r < 0.35:  # Ethernet trailer padding
        f += b"\x00" * rnd.randrange(1, 20)
    return f


def _frames(seed: int, n: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [_frame(rnd) for _ in range(n)]


def _walk(path: Path, fused: bool, *, verify: bool = True) -> tuple[list[PacketRecord], ReadStats, InputInfo, int]:
    src = Source(str(path))
    info = InputInfo(path=str(path))
    dec = Decoder(ReadStats(), 0, verify_checksums=verify)
    ticks = []
    walk = pcapng.walk_pcapng if path.suffix == ".pcapng" else pcapfile.walk_pcap
    recs = list(walk(src, src.read(CHUNK), info, dec, lambda: ticks.append(1), fused=fused))
    src.finish()
    return recs, dec.stats, info, len(ticks)


def _same(path: Path, **kw: object) -> list[PacketRecord]:
    fused = _walk(path, True, **kw)  # type: ignore[arg-type]
    plain = _walk(path, False, **kw)  # type: ignore[arg-type]
    assert len(fused[0]) == len(plain[0])
    for a, b in zip(fused[0], plain[0], strict=True):
        assert a == b, (a, b)
    assert fused[1] == plain[1]
    assert dataclasses.asdict(fused[2]) == dataclasses.asdict(plain[2])
    assert fused[3] == plain[3]
    return fused[0]


@pytest.mark.parametrize("seed", range(6))
def test_fused_walk_equals_decoder(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Sampled checksums after a few frames, so both the verify-all and the 1-in-16 regimes are compared.
    monkeypatch.setattr(decode_mod, "VERIFY_ALL_FRAMES", 50)
    monkeypatch.setattr(pcapfile, "VERIFY_ALL_FRAMES", 50)
    frames = _frames(seed, 600)
    path = write_pcap(tmp_path / "mix.pcap", [(1_700_000_000 + i * 0.001, f) for i, f in enumerate(frames)],
                      nano=bool(seed & 1), byteorder="<" if seed < 3 else ">")
    recs = _same(path)
    assert len(recs) > 300
    assert any(r.checksum_bad for r in recs) and any(r.tunnel for r in recs) and any(r.fragment for r in recs)
    _same(path, verify=False)


@pytest.mark.parametrize("seed", range(4))
def test_fused_pcapng_walk_equals_decoder(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # pcapng takes the same fused loop for Enhanced Packet Blocks on Ethernet interfaces: two Ethernet
    # interfaces (micro- and nanoseconds) and a raw-IP one, Simple Packet Blocks, both byte orders.
    from tests.capture_factory import pcapng_bytes, write_bytes

    monkeypatch.setattr(decode_mod, "VERIFY_ALL_FRAMES", 50)
    monkeypatch.setattr(pcapfile, "VERIFY_ALL_FRAMES", 50)
    frames = _frames(seed, 600)
    packets = [(2 if i % 7 == 0 and f[12:14] == b"\x08\x00" else i % 2, 1_700_000_000 + i * 0.001,
                f[14:] if i % 7 == 0 and f[12:14] == b"\x08\x00" else f) for i, f in enumerate(frames)]
    bo = "<" if seed < 2 else ">"
    data = pcapng_bytes([1, (1, 9), 101], packets, bo)
    if seed & 1:
        data += pcapng_bytes([1], [(0, 0.0, f) for f in frames[:100]], bo, block="spb")
    path = write_bytes(tmp_path / "mix.pcapng", data)
    recs = _same(path)
    assert len(recs) > 300 and any(r.checksum_bad for r in recs) and any(r.tunnel for r in recs)
    _same(path, verify=False)


@pytest.mark.parametrize(("chunk", "window"), [(97, 1 << 18), (4000, 50), (3000, 700)])
def test_fused_walk_across_buffer_refills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int,
                                          window: int) -> None:
    # Records straddle reads; with a window smaller than a read, cut records are joined through the
    # window (and records longer than the window in full), then the walk goes on in the read block.
    frames = _frames(99, 300)
    path = write_pcap(tmp_path / "small.pcap", frames)
    ng = write_pcapng(tmp_path / "small.pcapng", [1], frames)
    whole = _walk(path, True)[0]  # one read holds the whole file
    whole_ng = list(open_captures([str(ng)]))
    monkeypatch.setattr(pcapfile, "CHUNK", chunk)
    monkeypatch.setattr(pcapfile._Reader, "WINDOW", window)
    monkeypatch.setattr(pcapfile, "PROGRESS_EVERY", 8)
    assert _same(path) == whole
    assert _same(ng) == whole_ng
    assert list(open_captures([str(ng)])) == whole_ng
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(path.read_bytes()[:-30])  # the file ends inside a record
    assert _walk(cut, True)[2].truncated
    assert _same(cut) == whole[:-1]


def test_fused_records_set_every_field() -> None:
    # The fused loop fills PacketRecord's slots itself instead of calling its __init__: it must learn of
    # any new field, and there must be no __post_init__ to skip.
    assert tuple(f.name for f in dataclasses.fields(PacketRecord)) == FIELDS
    assert not hasattr(PacketRecord, "__post_init__")


def _one(tmp_path: Path, frame: bytes) -> PacketRecord:
    (rec,) = _same(write_pcap(tmp_path / "one.pcap", [frame]))
    return rec


@pytest.mark.parametrize("payload", [
    b"\x16\x03\x01\x02\x00\x01" + b"\x00" * 3000,  # TLS handshake record: kept for the SNI
    b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
    b"hello world",  # any letter may start a request line
    b"Zz" * 10,
], ids=["tls", "http", "letter", "upper"])
def test_payload_kept_for_name_evidence(tmp_path: Path, payload: bytes) -> None:
    for frame in (eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "PA", payload),
                  eth_ipv6_tcp("fd00::1", "fd00::2", 50000, 443, "PA", payload)):
        assert _one(tmp_path, frame).payload == payload[:PAYLOAD_SNAP]


@pytest.mark.parametrize("payload", [b"\x17\x03\x03" + b"\x00" * 1400, b"\x00\x01", b"1234", b"\xff"],
                         ids=["tls-data", "zero", "digit", "ff"])
def test_tcp_payload_snapped_for_identification(tmp_path: Path, payload: bytes) -> None:
    # A segment names.py does not read keeps apps.APP_SNAP bytes, what protocol identification needs.
    for frame in (eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "PA", payload),
                  eth_ipv6_tcp("fd00::1", "fd00::2", 50000, 443, "PA", payload)):
        rec = _one(tmp_path, frame)
        assert rec.payload == payload[:APP_SNAP] and rec.payload_len == len(payload)
    # DNS over TCP (either direction) and UDP keep their payload whatever it starts with.
    for frame in (eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 53, 50000, "PA", payload),
                  eth_ipv4_tcp("10.0.0.2", "10.0.0.1", 50000, 53, "PA", payload),
                  eth_ipv4_udp("10.0.0.1", "10.0.0.2", 50000, 443, payload)):
        assert _one(tmp_path, frame).payload == payload


def _collect_samples(extra: Path) -> list[tuple[object, object, object]]:
    out = []
    for path in [*sorted(SAMPLES.glob("*.pcap*")), extra]:
        conv, names = collect(open_captures([str(path)]), frozenset())
        out.append((sorted(conv.flows.items()), names.stats, {a: names.names_for(a) for a in names._by_addr}))
    return out


def test_payload_rule_changes_no_audit_result(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    frames = [eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "PA", _payload(random.Random(i))) for i in range(50)]
    extra = write_pcap(tmp_path / "x.pcap", frames)
    snapped = _collect_samples(extra)
    everything = frozenset(range(256))
    monkeypatch.setattr(decode_mod, "_KEEP_FIRST", everything)
    monkeypatch.setattr(pcapfile, "_KEEP_FIRST", everything)
    assert snapped == _collect_samples(extra)


def test_nanosecond_and_microsecond_timestamps(tmp_path: Path) -> None:
    f = eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "S")
    for nano in (False, True):
        path = tmp_path / f"ts{nano}.pcap"
        raw = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        raw += struct.pack("<IIII", 1_700_000_123, 999_999_999 if nano else 999_999, len(f), len(f)) + f
        path.write_bytes(bytes(raw))
        (rec,) = _same(path)
        assert rec.ts == 1_700_000_123 + (999_999_999 * 1e-9 if nano else 999_999 * 1e-6)
