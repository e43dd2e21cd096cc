"""Files read as byte ranges (capture/ranges.py): chunks of a pcap or pcapng file, read one by one
and joined in order (ranges.join: frames renumbered, chunks after an unverified end dropped), give
exactly the records, facts and counters of one sequential read, wherever the cuts fall (record
boundaries or not), also around damage; the boundary finders; the plan."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import random
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.capture import CaptureSet, Chunk, kernel, ranges
from auditor.capture import decode as decode_mod
from auditor.capture.info import InputInfo, ReadStats
from auditor.errors import CaptureError
from auditor.model import PacketRecord
from tests import broken_checksums
from tests.capture_factory import _block, pcapng_bytes, sll, write_pcap
from tests.test_conversations_lane import _conversations

IFACES: list[int | tuple[int, int]] = [1, (101, 9), 113]


ALL_BELOW = 64_000
"""kernel.VERIFY_ALL_BYTES for these small captures: every checksum verified in about their first
fifth, then the sample, so that ranges start on both sides of it (test_a_byte_range_verifies_the_
checksums_one_read_verifies: the real one)."""


@pytest.fixture(scope="module", autouse=True)
def _small_verify_all_region() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode_mod, "VERIFY_ALL_BYTES", ALL_BELOW)
        yield


def _packets(seed: int, n: int) -> list[tuple[int, float, bytes]]:
    """Mixed conversations on three interfaces: Ethernet, raw IP (nanoseconds), Linux cooked."""
    out = []
    for i, (ts, frame) in enumerate(_conversations(random.Random(seed), n)):
        ip = frame[14:] if frame[12:14] == b"\x08\x00" else None
        if ip is not None and i % 5 == 0:
            out.append((1, ts, ip))
        elif ip is not None and i % 7 == 0:
            out.append((2, ts, sll(ip)))
        else:
            out.append((0, ts, frame))
    return out


def _pcap_offsets(data: bytes, order: str = "<", hl: int = 16) -> list[int]:
    out, pos = [], 24
    while pos + hl <= len(data):
        out.append(pos)
        pos += hl + struct.unpack_from(order + "I", data, pos + 8)[0]
    return out


def _ng_blocks(data: bytes, bo: str = "<") -> list[tuple[int, int]]:
    """(offset, type) of every block (one byte order)."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        btype, blk = struct.unpack_from(bo + "II", data, pos)
        out.append((pos, btype))
        pos += blk
    return out


class Capture:
    def __init__(self, path: Path, records: list[int]) -> None:
        self.path = path
        self.records = records
        """Where records (pcapng: packet blocks) start."""
        self.size = path.stat().st_size


def _captures(root: Path) -> dict[str, Capture]:
    out: dict[str, Capture] = {}
    pk = _packets(1, 2500)
    eth = [(ts, f) for i, ts, f in pk if i == 0]
    data = write_pcap(root / "le.pcap", eth).read_bytes()
    out["pcap"] = Capture(root / "le.pcap", _pcap_offsets(data))
    data = write_pcap(root / "be.pcap", eth, nano=True, byteorder=">").read_bytes()
    out["pcap-be-nano"] = Capture(root / "be.pcap", _pcap_offsets(data, ">"))
    # A corrupt record header in the middle: one read stops there.
    good = (root / "le.pcap").read_bytes()
    at = out["pcap"].records[len(out["pcap"].records) // 2]
    bad = good[:at + 8] + struct.pack("<I", 1 << 30) + good[at + 12:]
    (root / "corrupt.pcap").write_bytes(bad)
    out["pcap-corrupt"] = Capture(root / "corrupt.pcap", out["pcap"].records)
    ng = pcapng_bytes(IFACES, pk, "<")
    (root / "three.pcapng").write_bytes(ng)
    out["pcapng"] = Capture(root / "three.pcapng", [o for o, t in _ng_blocks(ng) if t in (6, 3)])
    # An interface described after the first packets, which later packets use (later chunks would
    # not know of it), and another section in the other byte order.
    third = len(pk) // 3
    late = pcapng_bytes(IFACES, pk[:third], "<") + _block(1, struct.pack("<HHI", 101, 0, 0), "<")
    rest = pcapng_bytes([*IFACES, 101], [(3 if i == 1 else i, ts, f) for i, ts, f in pk[third:]], "<")
    late += rest[next(o for o, t in _ng_blocks(rest) if t == 6):]
    late += pcapng_bytes([1], [(0, ts, f) for ts, f in eth[:300]], ">")
    packets = [o for o, t in _ng_blocks(ng) if t == 6]
    (root / "late.pcapng").write_bytes(late)
    out["pcapng-late-iface"] = Capture(root / "late.pcapng", [o for o, t in _ng_blocks(late) if t == 6])
    # A damaged block in the middle (its length is not a multiple of 4).
    mid = packets[len(packets) // 2]
    broken = ng[:mid + 4] + struct.pack("<I", 4099) + ng[mid + 8:]
    (root / "broken.pcapng").write_bytes(broken)
    out["pcapng-damaged"] = Capture(root / "broken.pcapng", [o for o, t in _ng_blocks(ng) if t == 6])
    return out


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Capture]:
    return _captures(tmp_path_factory.mktemp("ranges"))


def _sequential(path: Path) -> tuple[list[PacketRecord], InputInfo, ReadStats]:
    cs = CaptureSet([str(path)])
    recs = list(cs)
    return recs, cs.inputs[0], cs.stats


def _chunks(path: Path, cuts: Sequence[int]) -> list[Chunk]:
    edges = [0, *cuts, -1]
    return [Chunk(str(path), 0, edges[k], edges[k + 1], k) for k in range(len(edges) - 1)]


def _chunked(chunks: Sequence[Chunk]) -> tuple[list[PacketRecord], InputInfo, ReadStats, list[InputInfo]]:
    """Each chunk read by a set of its own, then joined as a merge would."""
    parts = []
    for c in chunks:
        cs = CaptureSet.from_chunks([c])
        recs = list(cs)
        [info] = cs.inputs
        assert info.first_frame_unknown == (c.start > 0)
        assert (info.sha256 != "") == (c.start == 0)
        parts.append((recs, info, cs.stats))
    info, offsets = ranges.join([p[1] for p in parts])
    recs: list[PacketRecord] = []
    stats = ReadStats()
    for (rs, _, part_stats), off in zip(parts, offsets, strict=False):
        recs += [r.replace(frame=r.frame + off) for r in rs]
        part_stats.renumber(0, off)
        stats.merge(part_stats)
    return recs, info, stats, [p[1] for p in parts]


def _facts(info: InputInfo) -> dict[str, Any]:
    d = dataclasses.asdict(info)
    for k in ("end_verified", "first_frame_unknown"):
        d.pop(k)
    return d


def _same(path: Path, cuts: Sequence[int]) -> list[InputInfo]:
    recs, info, stats = _sequential(path)
    got, joined, jstats, infos = _chunked(_chunks(path, cuts))
    assert len(got) == len(recs)
    for a, b in zip(got, recs, strict=True):
        assert a == b
    assert _facts(joined) == _facts(info)
    assert jstats == stats
    return infos


def _cuts(cap: Capture) -> st.SearchStrategy[list[int]]:
    first = cap.records[0]
    at = st.one_of(st.sampled_from(cap.records), st.integers(first, cap.size - 1))
    return st.lists(at, max_size=4, unique=True).map(sorted)


@pytest.mark.parametrize("name", ["pcap", "pcap-be-nano", "pcap-corrupt", "pcapng", "pcapng-late-iface",
                                  "pcapng-damaged"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_chunks_read_as_one_walk(captures: dict[str, Capture], name: str, data: st.DataObject) -> None:
    cap = captures[name]
    _same(cap.path, data.draw(_cuts(cap)))


@pytest.mark.parametrize("name", ["pcap", "pcapng"])
@pytest.mark.parametrize("parts", [1, 2, 3, 5])
def test_chunks_at_record_boundaries_are_all_used(captures: dict[str, Capture], name: str, parts: int) -> None:
    cap = captures[name]
    cuts = [cap.records[len(cap.records) * k // parts] for k in range(1, parts)]
    infos = _same(cap.path, cuts)
    assert all(i.end_verified for i in infos[:-1])
    assert sum(i.packets for i in infos) == _sequential(cap.path)[1].packets
    if name == "pcapng" and parts > 1:
        assert all(set(i.link_types) == {"EN10MB", "RAW", "LINUX_SLL"} for i in infos)


def test_a_cut_inside_a_record_is_read_on(captures: dict[str, Capture]) -> None:
    cap = captures["pcap"]
    cut = cap.records[100] + 5
    infos = _same(cap.path, [cut, cap.records[300]])
    # The first chunk read on to the end of the file; the later ones are not used.
    assert not infos[0].end_verified and infos[0].packets == len(cap.records)


def test_an_interface_after_the_first_packets_ends_the_chunking_there(captures: dict[str, Capture]) -> None:
    cap = captures["pcapng-late-iface"]
    n = len(cap.records)
    infos = _same(cap.path, [cap.records[n // 10], cap.records[n // 2], cap.records[n * 9 // 10]])
    # The second chunk met the interface block: it read on, the last two are not used.
    assert infos[0].end_verified and not infos[1].end_verified
    assert infos[0].packets + infos[1].packets == _sequential(cap.path)[1].packets


def test_a_damaged_record_ends_the_reading_there(captures: dict[str, Capture]) -> None:
    cap = captures["pcap-corrupt"]
    n = len(cap.records)
    infos = _same(cap.path, [cap.records[n // 4], cap.records[n * 3 // 4]])
    assert infos[0].end_verified and not infos[1].end_verified and infos[1].truncated
    assert infos[1].stopped is not None and infos[1].stopped[0] == n // 2 - n // 4
    # Joined: the stop is counted from the file's start, as one read says it.
    _, joined, *_ = _chunked(_chunks(cap.path, [cap.records[n // 4], cap.records[n * 3 // 4]]))
    assert joined.stopped is not None and joined.stopped[0] == n // 2
    assert f"stopped after frame {n // 2}" in joined.warnings[0]


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[broken_checksums.Frame]]:
    path = tmp_path_factory.mktemp("broken") / "broken.pcap"
    return path, broken_checksums.write(path)


def test_a_byte_range_verifies_the_checksums_one_read_verifies(
        broken: tuple[Path, list[broken_checksums.Frame]], monkeypatch: pytest.MonkeyPatch) -> None:
    # The real verify-all region and sample, on a capture larger than the region with wrong checksums
    # all along: a range that starts inside the region and two that start past it verify exactly the
    # packets one read verifies (a chunk that counted its own frames would verify others).
    monkeypatch.setattr(decode_mod, "VERIFY_ALL_BYTES", kernel.VERIFY_ALL_BYTES)
    path, frames = broken
    n = len(frames)
    past = next(i for i, f in enumerate(frames) if f.offset >= kernel.VERIFY_ALL_BYTES)
    assert n // 8 < past < n // 2
    cuts = [frames[i].offset - 16 for i in (n // 8, past + 10, n * 3 // 4)]
    infos = _same(path, cuts)
    assert all(i.end_verified for i in infos[:-1])
    recs = _sequential(path)[0]
    verified = broken_checksums.verified(frames, kernel.VERIFY_ALL_BYTES, kernel.VERIFY_EVERY)
    assert [r.frame for r in recs if r.checksum_bad] == [i for i, (f, v) in enumerate(zip(frames, verified,
                                                                                            strict=True), 1)
                                                         if f.bad and v]
    # Past the region: wrong checksums the sample verifies (not only SYN/FIN/RST) and others it does not.
    late = [(f, v) for f, v in zip(frames, verified, strict=True) if f.offset >= cuts[1]]
    assert sum(f.bad and v and not f.flags & 7 for f, v in late) >= 5
    assert sum(f.bad and not v for f, v in late) >= 500


RUN = 300


@pytest.mark.parametrize("where", ["before", "inside", "after"])
def test_a_run_of_junk_gives_up_as_one_walk(tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run of malformed frames (decode.BAD_RUN_MAX) before a cut, across it (the chunk before ends
    inside the run: it reads on) or past where one walk gives up."""
    monkeypatch.setattr(decode_mod, "BAD_RUN_MAX", RUN // 2)
    rnd = random.Random(5)
    before, after = _conversations(rnd, 2000), _conversations(rnd, 1000)
    t = before[-1][0]
    junk = [(t + i * 0.001, b"\x02" * 10) for i in range(RUN)]
    after = [(ts - after[0][0] + t + 1, f) for ts, f in after]
    cap = write_pcap(tmp_path / "run.pcap", [*before, *junk, *after])
    offsets = _pcap_offsets(cap.read_bytes())
    cut = offsets[{"before": len(before) - 50, "inside": len(before) + 50, "after": len(before) + RUN - 10}[where]]
    infos = _same(cap, [cut])
    assert infos[0].end_verified == (where == "before")
    assert sum(1 for w in ranges.join(infos)[0].warnings if "gave up after" in w) == 1


def test_the_first_chunk_hashes_the_whole_file(captures: dict[str, Capture]) -> None:
    cap = captures["pcap"]
    whole = hashlib.sha256(cap.path.read_bytes()).hexdigest()
    for cut in (cap.records[10], cap.records[-10]):
        for c in _chunks(cap.path, [cut]):
            cs = CaptureSet.from_chunks([c])
            list(cs)
            assert cs.inputs[0].sha256 == (whole if c.part == 0 else "")
            assert cs.inputs[0].size == cap.size


def test_one_set_reads_several_chunks_in_order(captures: dict[str, Capture]) -> None:
    cap, ng = captures["pcap"], captures["pcapng"]
    chunks = [*_chunks(cap.path, [cap.records[500]]),
              *(c._replace(input_index=1) for c in _chunks(ng.path, [ng.records[700]]))]
    cs = CaptureSet.from_chunks(chunks)
    recs = list(cs)
    assert [i.path for i in cs.inputs] == [str(cap.path)] * 2 + [str(ng.path)] * 2
    assert [i.first_frame_unknown for i in cs.inputs] == [False, True, False, True]
    assert {r.input_index for r in recs} == {0, 1}
    assert len(recs) == len(_sequential(cap.path)[0]) + len(_sequential(ng.path)[0])


def test_a_range_of_what_cannot_be_cut_is_refused(tmp_path: Path, captures: dict[str, Capture]) -> None:
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(captures["pcap"].path.read_bytes()))
    with pytest.raises(CaptureError, match="byte range"):
        list(CaptureSet.from_chunks([Chunk(str(gz), 0, 0, 5000, 0)]))
    with pytest.raises(CaptureError, match="byte range"):
        list(CaptureSet.from_chunks([Chunk(str(gz), 0, 5000, -1, 1)]))


# -- the plan ------------------------------------------------------------------------------------------

def test_plan_cuts_large_files_at_records(tmp_path: Path, captures: dict[str, Capture]) -> None:
    cap, ng = captures["pcap"], captures["pcapng"]
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(cap.path.read_bytes()))
    paths = [str(cap.path), str(gz), str(ng.path), "-"]
    chunks = ranges.plan(paths, 4, min_bytes=1000)
    by_input = [[c for c in chunks if c.input_index == i] for i in range(4)]
    assert [len(b) for b in by_input] == [4, 1, 4, 1]
    for b, records in ((by_input[0], cap.records), (by_input[2], ng.records)):
        assert [c.part for c in b] == [0, 1, 2, 3] and b[0].start == 0 and b[-1].end == -1
        assert all(c.end == d.start for c, d in itertools.pairwise(b))
        assert all(c.start in records for c in b[1:])
    assert by_input[1][0].whole and by_input[3][0].whole
    # Smaller than the minimum, or one part: whole.
    assert all(c.whole for c in ranges.plan(paths[:3], 4))
    assert all(c.whole for c in ranges.plan(paths[:3], 1, min_bytes=0))
    _same(cap.path, [c.start for c in by_input[0][1:]])


# -- the boundary finders --------------------------------------------------------------------------------

def test_find_boundary_finds_the_next_record(captures: dict[str, Capture], tmp_path: Path) -> None:
    cap = captures["pcap"]
    offsets = cap.records
    rnd = random.Random(1)
    for _ in range(40):
        target = rnd.randrange(24, offsets[-40])
        assert ranges.find_boundary(str(cap.path), target) == min(o for o in offsets if o >= target)
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(cap.path.read_bytes()[:24] + rnd.randbytes(200_000))
    assert ranges.find_boundary(str(junk), 1000) is None
    assert ranges.find_boundary(str(cap.path), offsets[-5]) is None  # too few records left for a chain


def test_find_block_boundary_finds_the_next_packet_block(captures: dict[str, Capture], tmp_path: Path) -> None:
    cap = captures["pcapng"]
    offsets = cap.records
    rnd = random.Random(1)
    for _ in range(40):
        target = rnd.randrange(offsets[0], offsets[-40])
        assert ranges.find_block_boundary(str(cap.path), target) == min(o for o in offsets if o >= target)
    junk = tmp_path / "junk.pcapng"
    junk.write_bytes(cap.path.read_bytes()[:offsets[0]] + rnd.randbytes(200_000))
    assert ranges.find_block_boundary(str(junk), offsets[0] + 100) is None
    assert ranges.first_packet_offset(str(cap.path)) == offsets[0]
    assert ranges.first_packet_offset(str(junk)) is None


def test_first_packet_offset_past_large_first_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Name resolution and custom blocks before the first packet, larger than the first read.
    data = pcapng_bytes(IFACES, _packets(10, 50), "<")
    offsets = [o for o, t in _ng_blocks(data) if t == 6]
    big = _block(4, b"\x00" * 20_000, "<") + _block(0x40000BAD, b"\x01" * 9_000, "<")
    cap = tmp_path / "big-prelude.pcapng"
    cap.write_bytes(data[:offsets[0]] + big + data[offsets[0]:])
    assert ranges.first_packet_offset(str(cap)) == offsets[0] + len(big)
    monkeypatch.setattr(ranges, "PRELUDE_MAX", 16_384)
    assert ranges.first_packet_offset(str(cap)) is None
