"""The byte-range split (capture/split.py) on pcapng files: the worker starts from the file's first
blocks (section header, interfaces) and the bytes from the boundary, and hands back at any block it
would not walk as one process does (a new section or interface, a damaged block); the result is
always exactly one process's."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest

from auditor.capture import pcapfile, pcapng, spill, split
from tests.capture_factory import _block, pcapng_bytes, write_pcap
from tests.test_capture_split import _same, same_or_refused_alike, small_splits, split_the_corpus
from tests.test_conversations_lane import _conversations

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"


@pytest.fixture(autouse=True)
def _small_splits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    return small_splits(monkeypatch)


@pytest.fixture
def handbacks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Where the worker handed back (this process read on from there)."""
    seen: list[int] = []
    real = spill.reader_at

    def counting(path: str, offset: int) -> Any:
        seen.append(offset)
        return real(path, offset)

    monkeypatch.setattr(spill, "reader_at", counting)
    return seen


def _packets(seed: int, n: int, two: bool = True) -> list[tuple[int, float, bytes]]:
    """Mixed conversations; with ``two``, every fifth frame on a raw-IP interface in nanoseconds."""
    out = []
    for i, (ts, frame) in enumerate(_conversations(random.Random(seed), n)):
        out.append((1, ts, frame[14:]) if two and i % 5 == 0 and frame[12:14] == b"\x08\x00" else (0, ts, frame))
    return out


IFACES: list[int | tuple[int, int]] = [1, (101, 9)]


def _blocks(data: bytes, bo: str = "<") -> list[tuple[int, int]]:
    """(offset, type) of every block."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        btype, blk = struct.unpack_from(bo + "II", data, pos)
        out.append((pos, btype))
        pos += blk
    return out


def _insert(data: bytes, at_share: float, block: bytes, bo: str = "<") -> bytes:
    """``block`` inserted before the packet block at about this share of the file."""
    offsets = [o for o, t in _blocks(data, bo) if t in (6, 3)]
    at = offsets[int(len(offsets) * at_share)]
    return data[:at] + block + data[at:]


@pytest.mark.parametrize("at", [0.05, 0.5, 0.9])
@pytest.mark.parametrize("bo", ["<", ">"])
def test_pcapng_split_equals_one_process(tmp_path: Path, at: float, bo: str, monkeypatch: pytest.MonkeyPatch,
                                         _small_splits: dict[str, int]) -> None:
    monkeypatch.setattr(split, "SPLIT_AT", at)
    cap = tmp_path / "two.pcapng"
    cap.write_bytes(pcapng_bytes(IFACES, _packets(1, 6000), bo))
    _, _, read, _, names, inputs = _same([cap])
    assert _small_splits == {"replayed": 1, "abandoned": 0}
    assert read["frames"] == 6000 and set(inputs[0]["link_types"]) == {"EN10MB", "RAW"} and names
    w = split.WINDOWS  # type: ignore[attr-defined]
    if at < 0.9:
        assert w["shared"] > 10 and w["decoded"] < 0.9 * w["windows"], w


def test_simple_packet_blocks_and_blocks_with_nothing_to_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              _small_splits: dict[str, int]) -> None:
    # Simple Packet Blocks (no timestamps) and statistics / name resolution / custom blocks between
    # packets, on both sides of the boundary: the worker walks past the latter as one process does.
    monkeypatch.setattr(split, "SPLIT_AT", 0.5)
    data = pcapng_bytes([1], _packets(2, 4000, two=False), "<", block="spb")
    for share, btype in ((0.2, 5), (0.7, 4), (0.8, 0x40000BAD), (0.95, 5)):
        data = _insert(data, share, _block(btype, b"\x00" * 24, "<"))
    cap = tmp_path / "spb.pcapng"
    cap.write_bytes(data)
    _same([cap])
    assert _small_splits == {"replayed": 1, "abandoned": 0}


@pytest.mark.parametrize(("share", "expect"), [(0.3, {"replayed": 0, "abandoned": 1}),
                                               (0.8, {"replayed": 1, "abandoned": 0})])
def test_an_interface_described_late(tmp_path: Path, share: float, expect: dict[str, int], handbacks: list[int],
                                     monkeypatch: pytest.MonkeyPatch, _small_splits: dict[str, int]) -> None:
    # Before the boundary: the worker would not know it, so the split is dropped there. After it:
    # the worker hands back at it and this process reads on from there. Frames on it follow it.
    monkeypatch.setattr(split, "SPLIT_AT", 0.5)
    packets = _packets(3, 5000, two=False)
    cut = int(len(packets) * share)
    late = [(1 if i > cut and i % 3 == 0 else 0, ts, f) for i, (_, ts, f) in enumerate(packets)]
    data = pcapng_bytes([1, 1], late, "<")
    idb = [o for o, t in _blocks(data) if t == 1][1]
    idb_block = data[idb:idb + 20]
    data = data[:idb] + data[idb + 20:]  # the second interface's description...
    offsets = [o for o, t in _blocks(data) if t == 6]
    at = offsets[cut + 1]
    data = data[:at] + idb_block + data[at:]  # ...comes just before its first packet
    cap = tmp_path / "late.pcapng"
    cap.write_bytes(data)
    *_, inputs = _same([cap])
    assert _small_splits == expect
    assert inputs[0]["packets"] == 5000 and not inputs[0]["warnings"]
    assert handbacks == ([at] if expect["replayed"] else [])


@pytest.mark.parametrize("damage", ["interface", "caplen", "length", "section", "cut"])
def test_damage_in_the_workers_part(tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch,
                                    handbacks: list[int], _small_splits: dict[str, int]) -> None:
    # A packet on an unknown interface, a captured length past its block, a corrupt block length,
    # a second section, a file cut inside a block: counted, warned and stopped exactly as one
    # process does (the worker hands back, or its walk stops and says why).
    monkeypatch.setattr(split, "SPLIT_AT", 0.3)
    data = pcapng_bytes([1], _packets(4, 5000, two=False), "<")
    offsets = [o for o, t in _blocks(data) if t == 6]
    at = offsets[3500]
    if damage == "interface":
        data = data[:at + 8] + struct.pack("<I", 7) + data[at + 12:]
    elif damage == "caplen":
        data = data[:at + 20] + struct.pack("<I", 1 << 16) + data[at + 24:]
    elif damage == "length":
        data = data[:at + 4] + struct.pack("<I", 13) + data[at + 8:]
    elif damage == "section":
        data = data[:at] + pcapng_bytes([1], _packets(5, 300, two=False), "<") + data[at:]
    else:
        data = data[:at + 30]
    cap = tmp_path / f"{damage}.pcapng"
    cap.write_bytes(data)
    _, _, read, _, _, inputs = _same([cap])
    assert _small_splits == {"replayed": 1, "abandoned": 0}
    assert handbacks == ([] if damage == "cut" else [at])  # a cut file: the worker's walk says where it stopped
    if damage in ("interface", "caplen"):
        assert sum(read["malformed"].values()) >= 1 and not inputs[0]["warnings"]
    elif damage == "section":
        assert inputs[0]["packets"] == 5300
    else:
        assert inputs[0]["truncated"] and "stopped after frame 3500" in inputs[0]["warnings"][0]


def test_a_chain_of_pcap_and_pcapng_files(tmp_path: Path, _small_splits: dict[str, int]) -> None:
    a = write_pcap(tmp_path / "a.pcap", [(ts, f) for _, ts, f in _packets(6, 3000, two=False)])
    b = tmp_path / "b.pcapng"
    b.write_bytes(pcapng_bytes(IFACES, _packets(7, 3000), "<"))
    c = tmp_path / "c.pcapng"
    c.write_bytes(pcapng_bytes([1], _packets(8, 3000, two=False), ">"))
    plan = split.plan([str(a), str(b), str(c)])
    assert plan is not None and (plan.first, plan.last) == (1, 2)
    assert plan.starts[1] == pcapng.first_packet_offset(str(c))
    _same([a, b, c])
    assert _small_splits == {"replayed": 2, "abandoned": 0}


def test_find_block_boundary_finds_the_next_packet_block(tmp_path: Path) -> None:
    data = pcapng_bytes(IFACES, _packets(9, 3000), "<")
    cap = tmp_path / "x.pcapng"
    cap.write_bytes(data)
    offsets = [o for o, t in _blocks(data) if t == 6]
    rnd = random.Random(1)
    for _ in range(40):
        target = rnd.randrange(offsets[0], offsets[-40])
        assert pcapng.find_block_boundary(str(cap), target) == min(o for o in offsets if o >= target)
    junk = tmp_path / "junk.pcapng"
    junk.write_bytes(data[:offsets[0]] + rnd.randbytes(200_000))
    assert pcapng.find_block_boundary(str(junk), offsets[0] + 100) is None
    assert pcapng.first_packet_offset(str(cap)) == offsets[0]
    assert pcapng.first_packet_offset(str(junk)) is None


@pytest.mark.corpus
def test_pcapng_split_equals_one_process_on_the_corpus(monkeypatch: pytest.MonkeyPatch,
                                                      _small_splits: dict[str, int]) -> None:
    # Every uncompressed pcapng of the public corpus with a plausible block boundary in its middle
    # (several interfaces and link types, comments, name resolution, statistics, damage on purpose).
    assert split_the_corpus({pcapfile.PCAPNG_MAGIC}, _small_splits, monkeypatch) >= 10
    assert _small_splits["replayed"] >= 10, _small_splits


def test_first_packet_offset_past_large_first_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Name resolution and custom blocks before the first packet, larger than the first read.
    data = pcapng_bytes([1], _packets(10, 50, two=False), "<")
    offsets = [o for o, t in _blocks(data) if t == 6]
    big = _block(4, b"\x00" * 20_000, "<") + _block(0x40000BAD, b"\x01" * 9_000, "<")
    cap = tmp_path / "big-prelude.pcapng"
    cap.write_bytes(data[:offsets[0]] + big + data[offsets[0]:])
    assert pcapng.first_packet_offset(str(cap)) == offsets[0] + len(big)
    monkeypatch.setattr(pcapng, "PRELUDE_MAX", 16_384)
    assert pcapng.first_packet_offset(str(cap)) is None


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_mutated_files_split_as_one_process_reads_them(tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch,
                                                       handbacks: list[int], _small_splits: dict[str, int]) -> None:
    # Random bytes overwritten anywhere (record and block headers, lengths, interface ids, payloads)
    # on either side of the boundary: whatever one process makes of the file, the split makes too,
    # whether it replays, hands back or drops the split.
    monkeypatch.setattr(split, "SPLIT_AT", 0.4)
    rnd = random.Random(fmt)
    packets = _packets(11, 1500, two=fmt == "pcapng")
    if fmt == "pcap":
        clean = write_pcap(tmp_path / "clean.pcap", [(ts, f) for _, ts, f in packets]).read_bytes()
    else:
        clean = pcapng_bytes(IFACES, packets, "<")
    outcomes = set()
    for i in range(24):
        data = bytearray(clean)
        for _ in range(rnd.choice((1, 2, 5))):
            at = rnd.randrange(200, len(data) - 8)
            data[at:at + 4] = rnd.choice((rnd.randbytes(4), b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                                          struct.pack("<I", rnd.randrange(0, 70_000))))
        cap = tmp_path / f"m{i}.{fmt}"
        cap.write_bytes(bytes(data))
        before = dict(_small_splits)
        if not same_or_refused_alike(cap):
            continue
        outcomes.add("replayed" if _small_splits["replayed"] > before["replayed"] else
                      "dropped" if _small_splits["abandoned"] > before["abandoned"] else "none")
    assert "replayed" in outcomes, outcomes
    assert fmt == "pcap" or handbacks, "no mutation made the pcapng worker hand back"


def test_a_section_after_a_damaged_first_packet_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      _small_splits: dict[str, int]) -> None:
    # The worker's first blocks end at the first packet block, even a damaged one: a section or an
    # interface described after it (here a new section with other interfaces, before the boundary)
    # must drop the split, or the worker would read the second section with the first's interfaces.
    monkeypatch.setattr(split, "SPLIT_AT", 0.5)
    first = pcapng_bytes([1], [], "<") + _block(6, b"\x00" * 12, "<")  # an EPB too short to hold a packet
    second = pcapng_bytes([(1, 9), 101], _packets(12, 3000), "<")
    cap = tmp_path / "sections.pcapng"
    cap.write_bytes(first + second)
    *_, inputs = _same([cap])
    assert _small_splits == {"replayed": 0, "abandoned": 1}
    assert inputs[0]["packets"] == 3000
