"""Capture files: formats, byte orders, resolutions, compression, several inputs, stdin, damage."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from auditor import capture as capture_mod
from auditor.capture import CaptureSet, open_captures
from auditor.capture.source import HashingReader
from auditor.errors import CaptureError
from auditor.model import PacketRecord
from tests.capture_factory import (
    eth_ipv4_tcp,
    eth_ipv4_udp,
    ipv4_tcp,
    ipv6_udp,
    null_loopback,
    pcap_bytes,
    pcapng_bytes,
    sll,
    sll2,
    write_bytes,
    write_pcap,
    write_pcapng,
)

SYN = eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "S")
SYNACK = eth_ipv4_tcp("10.0.0.2", "10.0.0.1", 443, 50000, "SA", seq=5, ack=1001)
DNS = eth_ipv4_udp("10.0.0.1", "10.0.0.53", 5353, 53, b"\x12\x34" + b"\x00" * 10)


def read(*paths: str | Path, **kw: object) -> tuple[list[PacketRecord], object]:
    cs = open_captures([str(p) for p in paths], **kw)  # type: ignore[arg-type]
    return list(cs), cs


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, byteorder: str, nano: bool) -> None:
    p = write_pcap(tmp_path / "a.pcap", [(1700000000.123456789, SYN), (1700000001.5, SYNACK)],
                   nano=nano, byteorder=byteorder)
    recs, cs = read(p)
    assert [(r.frame, r.sport, r.dport, r.tcp_flags) for r in recs] == [
        (1, 50000, 443, 2), (2, 443, 50000, 18)]
    assert recs[0].ts == pytest.approx(1700000000.123456789, abs=1e-9 if nano else 1e-6)
    info = cs.inputs[0]
    assert (info.format, info.packets, info.link_types, info.truncated) == ("pcap", 2, {"EN10MB": 2}, False)
    assert info.sha256 == hashlib.sha256(p.read_bytes()).hexdigest() and info.size == p.stat().st_size
    assert info.first_ts == recs[0].ts and info.last_ts == recs[1].ts


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("block", ["epb", "opb"])
def test_pcapng_multi_interface(tmp_path: Path, byteorder: str, block: str) -> None:
    ip = ipv6_udp("fd00::1", "fd00::2", 1000, 2000, b"x")
    pk = [(0, 1700000000.5, SYN), (1, 1700000001.25, sll2(ip)), (2, 1700000002.0, sll(ip)),
          (3, 1700000003.0, ipv4_tcp("10.1.1.1", "10.1.1.2", 1, 2))]
    p = write_pcapng(tmp_path / "a.pcapng", [1, (276, 9), (113, 0x80 | 20), 101], pk, byteorder=byteorder,
                     block=block)
    recs, cs = read(p)
    assert [r.frame for r in recs] == [1, 2, 3, 4]
    assert [r.ts for r in recs] == pytest.approx([1700000000.5, 1700000001.25, 1700000002.0, 1700000003.0])
    assert recs[1].src == recs[2].src and recs[1].dport == 2000
    assert cs.inputs[0].link_types == {"EN10MB": 1, "LINUX_SLL2": 1, "LINUX_SLL": 1, "RAW": 1}
    assert cs.inputs[0].format == "pcapng"


def test_pcapng_simple_packet_blocks_and_sections(tmp_path: Path) -> None:
    p = write_pcapng(tmp_path / "spb.pcapng", [1], [SYN, SYNACK], block="spb")
    recs, _ = read(p)
    assert [r.tcp_flags for r in recs] == [2, 18]
    p = write_pcapng(tmp_path / "sections.pcapng", [1], [SYN, SYNACK], byteorder="mixed", sections=3)
    recs, cs = read(p)
    assert [r.frame for r in recs] == [1, 2, 3, 4, 5, 6] and cs.stats.frames == 6


@pytest.mark.parametrize("compression", ["gzip", "bz2", "xz", "zstd"])
def test_compressed_detected_by_magic(tmp_path: Path, compression: str) -> None:
    p = write_pcap(tmp_path / "capture.pcap", [SYN, SYNACK, DNS], compression=compression)
    recs, cs = read(p)
    assert len(recs) == 3 and cs.inputs[0].compression == compression
    assert cs.inputs[0].sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


def test_several_inputs_in_order_frames_restart(tmp_path: Path) -> None:
    a = write_pcap(tmp_path / "a.pcap", [SYN, SYNACK])
    b = write_pcapng(tmp_path / "b.pcapng", [1], [DNS])
    seen = []
    recs, cs = read(a, b, progress=lambda done, total: seen.append((done, total)))
    assert [(r.input_index, r.frame) for r in recs] == [(0, 1), (0, 2), (1, 1)]
    assert [i.path for i in cs.inputs] == [str(a), str(b)]
    assert cs.total_bytes == a.stat().st_size + b.stat().st_size
    assert seen and seen[-1] == (cs.total_bytes, cs.total_bytes)
    assert cs.stats.frames == 3 and cs.stats.records == 3


def test_stdin(tmp_path: Path) -> None:
    data = pcap_bytes([SYN, SYNACK])
    code = ("import sys; from auditor.capture import open_captures; cs = open_captures(['-']); "
            "n = sum(1 for _ in cs); i = cs.inputs[0]; print(n, i.size, i.sha256, i.path)")
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, check=True,
                         cwd=Path(__file__).parent.parent).stdout.decode().split()
    assert out == ["2", str(len(data)), hashlib.sha256(data).hexdigest(), "-"]


def test_stdin_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pcapng_bytes([1], [(0, 1.0, SYN)])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    recs, cs = read("-")
    assert len(recs) == 1 and cs.inputs[0].size == len(data) and cs.total_bytes == 0


def test_other_link_types(tmp_path: Path) -> None:
    ip4 = ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2)
    ip6 = ipv6_udp("fd00::1", "fd00::2", 3, 4)
    cases = [(0, [null_loopback(ip4), null_loopback(ip6, ">")]), (108, [null_loopback(ip4, ">")]),
             (12, [ip4]), (14, [ip6]), (228, [ip4]), (229, [ip6]), (113, [sll(ip4)]), (276, [sll2(ip6)])]
    for lt, frames in cases:
        recs, _ = read(write_pcap(tmp_path / f"lt{lt}.pcap", frames, linktype=lt))
        assert [r.sport for r in recs] == [3 if ip6 in f else 1 for f in frames], lt
        assert {r.proto for r in recs} <= {6, 17} and len(recs) == len(frames), lt


def test_unsupported_link_type_counted(tmp_path: Path) -> None:
    recs, cs = read(write_pcap(tmp_path / "tokenring.pcap", [b"\x08\x00" + b"\x00" * 30], linktype=6))
    assert recs == [] and cs.stats.unsupported == {"linktype:DLT_IEEE802": 1}
    assert cs.stats.examples["linktype:DLT_IEEE802"] == (0, 1)


def test_truncated_file_yields_what_was_read(tmp_path: Path) -> None:
    data = pcap_bytes([SYN, SYNACK, DNS])
    p = write_bytes(tmp_path / "cut.pcap", data[:-10])
    recs, cs = read(p)
    info = cs.inputs[0]
    assert len(recs) == 2 and info.truncated and "stopped after frame 2" in info.warnings[0]
    assert info.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


def test_truncated_compressed_file(tmp_path: Path) -> None:
    import gzip
    data = gzip.compress(pcap_bytes([SYN] * 200))
    _, cs = read(write_bytes(tmp_path / "cut.pcap.gz", data[: len(data) // 2]))
    assert cs.inputs[0].truncated and cs.inputs[0].warnings


def test_truncated_pcapng(tmp_path: Path) -> None:
    data = pcapng_bytes([1], [(0, 1.0, SYN), (0, 2.0, SYNACK)])
    recs, cs = read(write_bytes(tmp_path / "cut.pcapng", data[:-7]))
    assert len(recs) == 1 and cs.inputs[0].truncated and "after frame 1" in cs.inputs[0].warnings[0]


@pytest.mark.parametrize(("content", "message"), [
    (b"GIF89a....", "not a pcap or pcapng file (magic 0x47494638)"),
    (b"", "empty file"),
])
def test_bad_magic_is_one_line_capture_error(tmp_path: Path, content: bytes, message: str) -> None:
    p = write_bytes(tmp_path / "capture.pcap", content)
    with pytest.raises(CaptureError) as e:
        open_captures([str(p)])
    assert str(e.value) == f"{p}: {message}" + ("" if content else ", not a pcap or pcapng file")
    assert "\n" not in str(e.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"nope\.pcap: cannot open"):
        open_captures([str(tmp_path / "nope.pcap")])
    with pytest.raises(CaptureError, match="is a directory"):
        open_captures([str(tmp_path)])


def test_gzip_of_non_capture_refused(tmp_path: Path) -> None:
    p = write_bytes(tmp_path / "x.gz", b"hello world" * 10, "gzip")
    with pytest.raises(CaptureError, match=r"gzip-compressed, magic 0x68656c6c"):
        open_captures([str(p)])


def test_input_file_not_modified(tmp_path: Path) -> None:
    p = write_pcap(tmp_path / "a.pcap", [SYN])
    before = (p.read_bytes(), p.stat().st_mtime_ns)
    read(p)
    assert (p.read_bytes(), p.stat().st_mtime_ns) == before


class _Flaky(io.RawIOBase):
    """A file that returns short reads, then fails: what the read-ahead thread must pass on."""

    def __init__(self, data: bytes, fail_after: int | None) -> None:
        self.data, self.pos, self.fail_after = data, 0, fail_after

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise OSError(5, "Input/output error")
        n = min(size if size >= 0 else len(self.data), 1 + (self.pos * 7919) % 70_000)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def test_read_ahead_hashes_and_returns_every_byte() -> None:
    data = bytes(random.Random(5).getrandbits(8) for _ in range(300_000))
    reader = HashingReader(_Flaky(data, None))  # type: ignore[arg-type]
    assert reader.peek_start(6) == data[:6]
    got = [reader.read(6)]
    rnd = random.Random(1)
    while chunk := reader.read(rnd.choice((1, 100, 5000, 1 << 20))):
        got.append(chunk)
    assert b"".join(got) == data
    assert reader.nread == len(data)
    assert reader.hexdigest() == hashlib.sha256(data).hexdigest()
    reader.close()


def test_read_ahead_error_reaches_the_reader() -> None:
    data = b"x" * 200_000
    reader = HashingReader(_Flaky(data, 50_000))  # type: ignore[arg-type]
    reader.peek_start(4)
    got = 0
    with pytest.raises(OSError, match="Input/output error"):
        while chunk := reader.read(4096):
            got += len(chunk)
    assert 50_000 <= got + 4 <= 200_000
    assert reader.read(10) == b""  # after the error: the end, not a hang
    reader.close()


def test_read_ahead_thread_ends_when_the_reader_stops_early(tmp_path: Path) -> None:
    # A run that stops reading (an error, a refused file) must not leave the read-ahead thread behind.
    p = tmp_path / "big.bin"
    p.write_bytes(b"\x00" * (40 << 20))  # several read-ahead blocks: the queue fills up
    with p.open("rb") as fh:
        reader = HashingReader(fh)
        reader.peek_start(4)
        assert reader.read(1024)
        thread = reader._thread
        assert thread is not None and thread.is_alive()
        reader.close()
        assert not thread.is_alive()


def test_read_ahead_shortens_the_switch_interval_while_it_runs(tmp_path: Path) -> None:
    # The decoding thread would otherwise keep the GIL for whole intervals while the read-ahead
    # thread waits to hand a chunk over (source.READ_AHEAD_SWITCH); the interval comes back after.
    from auditor.capture import source

    p = tmp_path / "big.bin"
    p.write_bytes(b"\x00" * (40 << 20))
    before = sys.getswitchinterval()
    with p.open("rb") as fh, p.open("rb") as fh2:
        reader, second = HashingReader(fh), HashingReader(fh2)
        reader.peek_start(4)
        second.peek_start(4)
        assert reader.read(1024) and second.read(1024)  # both threads run (the queue fills up)
        assert sys.getswitchinterval() == pytest.approx(min(before, source.READ_AHEAD_SWITCH))
        reader.close()
        assert sys.getswitchinterval() == pytest.approx(min(before, source.READ_AHEAD_SWITCH))
        second.close()
    assert sys.getswitchinterval() == before



def _big_frames(n: int) -> list[bytes]:
    rnd = random.Random(5)
    return [eth_ipv4_udp("10.0.0.1", "10.0.0.2", 40000 + i % 7, 53, rnd.randbytes(100) * 11) for i in range(n)]


def _complete_records(data: bytes) -> int:
    pos, n = 24, 0
    while pos + 16 <= len(data):
        caplen = int.from_bytes(data[pos + 8:pos + 12], "little")
        if pos + 16 + caplen > len(data):
            break
        pos += 16 + caplen
        n += 1
    return n


def _read_inflating(path: Path, inflate: bool) -> tuple[list[PacketRecord], CaptureSet]:
    cs = open_captures([str(path)])
    cs.inflate = inflate
    return list(cs), cs


@pytest.fixture
def _inflate_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_mod, "INFLATE_MIN", 0)


@pytest.mark.usefixtures("_inflate_all")
@pytest.mark.parametrize("compression", ["gzip", "bz2", "xz", "zstd"])
def test_a_decompressing_process_reads_the_same(tmp_path: Path, compression: str) -> None:
    # Whole and cut: the same records, warnings, hash and size as decompressing in line.
    p = write_pcap(tmp_path / f"big.pcap.{compression}", _big_frames(9_000), compression=compression)
    data = p.read_bytes()
    q = write_bytes(tmp_path / f"cut.pcap.{compression}", data[:int(len(data) * 0.6)])
    for path in (p, q):
        recs, cs = _read_inflating(path, False)
        recs2, cs2 = _read_inflating(path, True)
        assert recs2 == recs and cs2.inputs == cs.inputs and cs2.stats == cs.stats
        assert cs2.inputs[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert len(recs) == 9_000 if path is p else (1_000 < len(recs) < 9_000 and cs.inputs[0].truncated)


@pytest.mark.usefixtures("_inflate_all")
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_cut_compressed_input_yields_every_record_before_the_cut(tmp_path: Path, compression: str) -> None:
    # Several CHUNKs of capture bytes through the decompressing process; the stream cut: every record
    # decompressible before the cut, then the warnings: of the damage and of the record it cut.
    import zlib

    import zstandard

    p = write_pcap(tmp_path / f"big.pcap.{compression}", _big_frames(25_000), compression=compression)
    data = p.read_bytes()
    cut = data[:int(len(data) * 0.6)]
    if compression == "gzip":
        prefix = zlib.decompressobj(31).decompress(cut)
    else:
        prefix = zstandard.ZstdDecompressor().decompressobj().decompress(cut)
    recs, cs = _read_inflating(write_bytes(tmp_path / f"cut.pcap.{compression}", cut), True)
    expect = _complete_records(prefix)
    assert expect > 10_000 and len(recs) == expect
    warnings = cs.inputs[0].warnings
    assert cs.inputs[0].truncated and f"after frame {expect}" in warnings[-1]
    assert [w for w in warnings if "damaged" in w] == [
        f"{compression} data is damaged (Compressed file ended before the end-of-stream marker was reached); "
        "read what came before"]


@pytest.mark.usefixtures("_inflate_all")
def test_stopping_early_ends_the_decompressing_process(tmp_path: Path) -> None:
    import multiprocessing

    p = write_pcap(tmp_path / "big.pcap.gz", _big_frames(25_000), compression="gzip")
    cs = open_captures([str(p)])
    cs.inflate = True
    it = iter(cs)
    assert [next(it) for _ in range(5)]
    assert [c.name for c in multiprocessing.active_children()] == ["pcap-audit-inflate"]
    it.close()  # type: ignore[attr-defined]
    assert multiprocessing.active_children() == []


@pytest.mark.usefixtures("_inflate_all")
def test_a_failing_decompressing_process_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor.capture import source

    p = write_pcap(tmp_path / "big.pcap.gz", _big_frames(2_000), compression="gzip")

    def broken(self: source.Source, size: int) -> bytes:
        raise RuntimeError("boom")

    cs = open_captures([str(p)])  # sniffed in line, before the break
    monkeypatch.setattr(source.Source, "_decompress", broken)  # in the forked process too
    cs.inflate = True
    with pytest.raises(CaptureError, match=r"big\.pcap\.gz: the decompressing process failed \(RuntimeError: "
                                           r"boom\); run with -j 1$"):
        list(cs)


def test_zstd_frames_followed_to_tell_a_cut_stream() -> None:
    # Frames with and without checksums and content sizes, raw / RLE / compressed blocks, a skippable
    # frame: whole, the stream ends outside a frame; cut anywhere inside one, it does not.
    import zstandard

    from auditor.capture.decompress import ZstdFrames

    rnd = random.Random(3)
    payload = rnd.randbytes(300_000) + b"\x00" * 400_000 + b"abc" * 50_000
    frames = [
        zstandard.ZstdCompressor(write_checksum=True).compress(payload),
        zstandard.ZstdCompressor(write_content_size=False, level=1).compress(payload[:1000]),
        struct.pack("<II", 0x184D2A53, 7) + b"skipped",
        zstandard.ZstdCompressor(level=19).compress(b""),
        zstandard.ZstdCompressor().compress(rnd.randbytes(200_000)),
    ]
    data = b"".join(frames)
    ends = {sum(len(f) for f in frames[:i]) for i in range(len(frames) + 1)}

    def inside(prefix: bytes, piece: int) -> bool:
        z = ZstdFrames(io.BytesIO(prefix))
        while z.read(piece):
            pass
        return z.inside

    cuts = sorted(ends | {rnd.randrange(1, len(data)) for _ in range(150)} | {1, 3, 5, 9, len(data) - 1})
    for cut in cuts:
        assert inside(data[:cut], rnd.choice((1, 7, 4096, 1 << 20))) == (cut not in ends), cut


@pytest.mark.parametrize("inflate", [False, True])
def test_a_zstd_capture_cut_between_records_is_reported(tmp_path: Path, inflate: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Cut inside the frame where the decompressed bytes end exactly at a record boundary: nothing but
    # the decompressor can tell, and it must say so.
    import zstandard

    monkeypatch.setattr(capture_mod, "INFLATE_MIN", 0)
    raw = pcap_bytes([SYN, SYNACK, DNS] * 50)
    frame = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(raw)
    p = write_bytes(tmp_path / "cut.pcap.zst", frame[:-4])  # the checksum cut off: every byte decodes
    recs, cs = _read_inflating(p, inflate)
    assert len(recs) == 150
    assert cs.inputs[0].truncated and cs.inputs[0].warnings == [
        "zstd data is damaged (Compressed file ended before the end-of-stream marker was reached); "
        "read what came before"]
    recs, cs = _read_inflating(write_bytes(tmp_path / "whole.pcap.zst", frame), inflate)
    assert len(recs) == 150 and not cs.inputs[0].warnings
