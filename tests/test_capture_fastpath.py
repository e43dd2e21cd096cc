"""The kernel (capture/kernel.py) against the general decoder, the record walk against the kernel frame
by frame, and the TCP payload rule.

The kernel is the only copy of the common path; the general decoder (``Decoder.slow``) reads every
packet the kernel reads, so it is the kernel's oracle: on varied frames both give the same records,
but for the kernel's trim of TCP payloads that no name evidence needs (apps.APP_SNAP bytes) and its
checksum sample (a decoder verifies every checksum until a walk passes the first
kernel.VERIFY_ALL_BYTES of its input). The walks (pcap, pcapng) must give what calling
``Decoder.decode`` on each frame gives.
"""

from __future__ import annotations

import inspect
import random
import struct
from pathlib import Path
from types import ModuleType

import pytest

from auditor import record
from auditor.apps import APP_SNAP
from auditor.audit import collect
from auditor.capture import decode as decode_mod
from auditor.capture import open_captures, pcapfile, pcapng
from auditor.capture.decode import Decoder
from auditor.capture.decompress import CHUNK
from auditor.capture.info import InputInfo, ReadStats
from auditor.capture.source import Source
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

# Each test runs with either kernel (conftest.each_kernel).
pytestmark = pytest.mark.usefixtures("each_kernel")

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


def _walk(path: Path, *, verify: bool = True) -> tuple[list[PacketRecord], ReadStats, InputInfo, int]:
    src = Source(str(path))
    info = InputInfo(path=str(path))
    dec = Decoder(ReadStats(), 0, verify_checksums=verify)
    ticks = []
    walk = pcapng.walk_pcapng if path.suffix == ".pcapng" else pcapfile.walk_pcap
    recs = list(walk(src, src.read(CHUNK), info, dec, lambda: ticks.append(1)))
    src.finish()
    return recs, dec.stats, info, len(ticks)


def _starts(path: Path) -> list[int]:
    """File offset of each frame of a pcap or pcapng file (pcapng: Enhanced and Simple Packet Blocks)."""
    data, out = path.read_bytes(), []
    if path.suffix == ".pcap":
        order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        pos = 24
        while pos + 16 <= len(data):
            out.append(pos + 16)
            pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
        return out
    pos, order = 0, "<"
    while pos + 12 <= len(data):
        if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        btype, blen = struct.unpack_from(order + "II", data, pos)
        if btype in (3, 6):
            out.append(pos + (28 if btype == 6 else 12))
        pos += blen
    return out


def _by_frame(frames: list[tuple[int, bytes]], ts: dict[int, float], starts: list[int],
              verify: bool) -> tuple[list[PacketRecord], ReadStats]:
    """``Decoder.decode`` on each (link type, frame) in turn, with its timestamp (``ts``, by frame
    number) and, from its offset in the file (``starts``), every checksum verified or the sample:
    what a walk must give."""
    dec = Decoder(ReadStats(), 0, verify_checksums=verify)
    out = []
    for i, (lt, f) in enumerate(frames, 1):
        dec.kernel.verify_all = starts[i - 1] < decode_mod.VERIFY_ALL_BYTES
        rec = dec.decode(f, 0, len(f), ts.get(i, 0.0), i, lt)
        if rec is not None:
            out.append(rec)
    return out, dec.stats


def _same(path: Path, frames: list[tuple[int, bytes]], verify: bool = True) -> list[PacketRecord]:
    walked, stats, info, _ = _walk(path, verify=verify)
    ref, ref_stats = _by_frame(frames, {r.frame: r.ts for r in walked}, _starts(path), verify)
    assert walked == ref
    assert (stats.malformed, stats.unsupported, stats.tunnels) == (ref_stats.malformed, ref_stats.unsupported,
                                                                   ref_stats.tunnels)
    assert stats.records == len(walked) and stats.frames == info.packets == len(frames)
    return walked


def _both_regimes(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every checksum verified in the first quarter of the file, then the sample."""
    starts = _starts(path)
    monkeypatch.setattr(decode_mod, "VERIFY_ALL_BYTES", starts[len(starts) // 4])


@pytest.mark.parametrize("seed", range(6))
def test_walk_equals_decoder(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _frames(seed, 600)
    path = write_pcap(tmp_path / "mix.pcap", [(1_700_000_000 + i * 0.001, f) for i, f in enumerate(frames)],
                      nano=bool(seed & 1), byteorder="<" if seed < 3 else ">")
    _both_regimes(path, monkeypatch)
    recs = _same(path, [(1, f) for f in frames])
    assert len(recs) > 300
    assert any(r.checksum_bad for r in recs) and any(r.tunnel for r in recs) and any(r.fragment for r in recs)
    _same(path, [(1, f) for f in frames], verify=False)


@pytest.mark.parametrize("seed", range(4))
def test_pcapng_walk_equals_decoder(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two Ethernet interfaces (micro- and nanoseconds) and a raw-IP one, Simple Packet Blocks, both
    # byte orders.
    from tests.capture_factory import pcapng_bytes, write_bytes

    frames = _frames(seed, 600)
    packets = [(2 if i % 7 == 0 and f[12:14] == b"\x08\x00" else i % 2, 1_700_000_000 + i * 0.001,
                f[14:] if i % 7 == 0 and f[12:14] == b"\x08\x00" else f) for i, f in enumerate(frames)]
    bo = "<" if seed < 2 else ">"
    data = pcapng_bytes([1, (1, 9), 101], packets, bo)
    order = [(101 if ifid == 2 else 1, f) for ifid, _, f in packets]
    if seed & 1:
        data += pcapng_bytes([1], [(0, 0.0, f) for f in frames[:100]], bo, block="spb")
        order += [(1, f) for f in frames[:100]]
    path = write_bytes(tmp_path / "mix.pcapng", data)
    _both_regimes(path, monkeypatch)
    recs = _same(path, order)
    assert len(recs) > 300 and any(r.checksum_bad for r in recs) and any(r.tunnel for r in recs)
    _same(path, order, verify=False)


@pytest.mark.parametrize(("chunk", "window"), [(97, 1 << 18), (4000, 50), (3000, 700)])
def test_walk_across_buffer_refills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int,
                                    window: int, each_kernel: ModuleType) -> None:
    # Records straddle reads; with a window smaller than a read, cut records are joined through the
    # window (and records longer than the window in full), then the walk goes on in the read block.
    frames = _frames(99, 300)
    path = write_pcap(tmp_path / "small.pcap", frames)
    ng = write_pcapng(tmp_path / "small.pcapng", [1], frames)
    whole = _walk(path)[0]  # one read holds the whole file
    whole_ng = list(open_captures([str(ng)]))
    monkeypatch.setattr(pcapfile, "CHUNK", chunk)
    monkeypatch.setattr(pcapfile._Reader, "WINDOW", window)
    monkeypatch.setattr(each_kernel, "PROGRESS_EVERY", 8)
    assert _same(path, [(1, f) for f in frames]) == whole
    assert _same(ng, [(1, f) for f in frames]) == whole_ng
    assert list(open_captures([str(ng)])) == whole_ng
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(path.read_bytes()[:-30])  # the file ends inside a record
    assert _walk(cut)[2].truncated
    assert _walk(cut)[0] == whole[:-1]


def _relink(f: bytes, lt: int) -> bytes:
    """An untagged Ethernet frame's packet on another link layer."""
    et, ip = f[12:14], f[14:]
    if lt == 113:
        return b"\x00\x00\x00\x01\x00\x06" + b"\x00" * 8 + et + ip
    if lt == 276:
        return et + b"\x00" * 18 + ip
    if lt in (0, 108):
        fam = 2 if et == b"\x08\x00" else 24
        return (fam.to_bytes(4, "big") if lt == 108 else fam.to_bytes(4, "little")) + ip
    return ip


@pytest.mark.parametrize("lt", [1, 113, 276, 101, 0, 108])
@pytest.mark.parametrize("seed", range(3))
def test_kernel_equals_general_decoder(seed: int, lt: int, each_kernel: ModuleType) -> None:
    # The general decoder reads every packet the kernel reads: the same record, but for the kernel's
    # payload trim (a TCP segment names.py does not read keeps apps.APP_SNAP bytes) and with every
    # checksum verified (no sample). Both count the same malformed frames.
    kernel, general = Decoder(ReadStats(), 0), Decoder(ReadStats(), 0)
    fast = trimmed = 0
    for i, f in enumerate(_frames(seed + 10, 1500), 1):
        if lt != 1:
            if f[12:14] not in (b"\x08\x00", b"\x86\xdd"):
                continue
            f = _relink(f, lt)
        k = kernel.kernel.decode(f, 0, len(f), 1.5, i, lt)
        g = general.slow(f, 0, len(f), 1.5, i, lt)
        if k is None or g is None:
            assert k is g, i
            continue
        if k.payload != g.payload:
            assert len(k.payload) == APP_SNAP and g.payload.startswith(k.payload) and k.proto == 6, i
            assert k.payload[0] not in each_kernel.KEEP_FIRST and 53 not in (k.sport, k.dport), i
            trimmed += 1
            k = k.replace(payload=g.payload)
        assert k == g, i
        fast += not k.tunnel and not k.fragment
    assert kernel.stats == general.stats
    assert fast > 400 and trimmed > 20


def test_records_are_built_by_position() -> None:
    # The kernel builds records with positional arguments (no keyword parsing per packet): it must
    # learn of any new field.
    assert tuple(inspect.signature(record.PacketRecord).parameters) == FIELDS == record.FIELDS \
        == record.PacketRecord.__slots__


def _one(tmp_path: Path, frame: bytes) -> PacketRecord:
    (rec,) = _same(write_pcap(tmp_path / "one.pcap", [frame]), [(1, frame)])
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


def test_payload_rule_changes_no_audit_result(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              each_kernel: ModuleType) -> None:
    frames = [eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "PA", _payload(random.Random(i))) for i in range(50)]
    extra = write_pcap(tmp_path / "x.pcap", frames)
    snapped = _collect_samples(extra)
    everything = frozenset(range(256))
    monkeypatch.setattr(each_kernel, "KEEP_FIRST", everything)
    assert snapped == _collect_samples(extra)


def test_nanosecond_and_microsecond_timestamps(tmp_path: Path) -> None:
    f = eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "S")
    for nano in (False, True):
        path = tmp_path / f"ts{nano}.pcap"
        raw = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        raw += struct.pack("<IIII", 1_700_000_123, 999_999_999 if nano else 999_999, len(f), len(f)) + f
        path.write_bytes(bytes(raw))
        (rec,) = _same(path, [(1, f)])
        assert rec.ts == 1_700_000_123 + (999_999_999 * 1e-9 if nano else 999_999 * 1e-6)
