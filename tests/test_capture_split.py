"""A pcap read by two processes split by byte ranges (capture/split.py) gives exactly the result of
one process: the same flows, conversation and read counters, names, per-input facts (SHA-256,
packets, time span, warnings), whatever the split point, and also when the guessed boundary is wrong,
the file is cut or corrupt in either part, or the worker fails."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import re
import struct
from collections.abc import Container
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.audit import collect
from auditor.capture import CaptureSet, pcapfile, spill, split
from auditor.capture import decode as decode_mod
from auditor.capture.source import HashingReader
from auditor.cli import main
from auditor.errors import CaptureError
from tests.capture_factory import eth_ipv4_tcp, eth_ipv4_udp, write_pcap, write_pcapng
from tests.test_cli_audit import strip_run
from tests.test_conversations_lane import _conversations, _make_capture

ROOT = Path(__file__).resolve().parent.parent
PORTS = frozenset({("tcp", 443), ("tcp", 1494), ("udp", 53)})


@pytest.fixture(autouse=True)
def _small_splits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    return small_splits(monkeypatch)


def small_splits(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Split test-sized files, sample checksums past frame 100 (so the replay samples too), and
    count what the split did (replays and abandoned splits; in split.WINDOWS, the windows)."""
    monkeypatch.setattr(split, "MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(split, "DENSE", 2.0)  # test captures are all handshakes: split them anyway
    monkeypatch.setattr(spill, "FLUSH", 4096)  # many batches
    monkeypatch.setattr(spill, "MAX_IDS", 64)  # the worker forgets its key ids often
    for mod in (decode_mod, pcapfile, split):
        monkeypatch.setattr(mod, "VERIFY_ALL_FRAMES", 100)
    seen = {"replayed": 0, "abandoned": 0}
    replay, abandon = split.Split.replay, split.Split.abandon
    batches, frames = split.Split._batches, split.Split._frames
    windows = {"windows": 0, "shared": 0, "decoded": 0}  # windows; of several conversations; decoded instead

    def counting_batches(self: split.Split) -> Any:
        for ents, blob in batches(self):
            for e in spill.ENTRY.iter_unpack(ents):
                if e[0] == spill.KIND_WINDOW:
                    windows["windows"] += 1
                    windows["shared"] += e[4] > 1
            yield ents, blob

    def counting_frames(self: split.Split, *a: Any) -> Any:
        windows["decoded"] += 1
        return frames(self, *a)

    def counting_replay(self: split.Split, *a: Any) -> Any:
        seen["replayed"] += 1
        return (yield from replay(self, *a))

    def counting_abandon(self: split.Split) -> None:
        seen["abandoned"] += 1
        abandon(self)

    monkeypatch.setattr(split.Split, "replay", counting_replay)
    monkeypatch.setattr(split.Split, "abandon", counting_abandon)
    monkeypatch.setattr(split.Split, "_batches", counting_batches)
    monkeypatch.setattr(split.Split, "_frames", counting_frames)
    monkeypatch.setattr(split, "WINDOWS", windows, raising=False)
    return seen


def _run(paths: list[Path], use_split: bool) -> tuple[Any, ...]:
    cs = CaptureSet([str(p) for p in paths])
    cs.split = use_split
    conv, names = collect(cs, PORTS)
    flows = sorted((k, dataclasses.asdict(f)) for k, f in conv.flows.items())
    found = {a: names.names_for(a) for a in names._by_addr}
    inputs = [dataclasses.asdict(i) for i in cs.inputs]
    return flows, dataclasses.asdict(conv.stats), dataclasses.asdict(cs.stats), names.stats, found, inputs


def _same(paths: list[Path]) -> tuple[Any, ...]:
    one = _run(paths, False)
    two = _run(paths, True)
    assert [i for i, (a, b) in enumerate(zip(one, two, strict=True)) if a != b] == []
    return one


def _mixed(tmp_path: Path, seed: int, n: int = 6000, **kw: Any) -> Path:
    return write_pcap(tmp_path / f"mix{seed}.pcap", _conversations(random.Random(seed), n), **kw)


def _offsets(path: Path) -> list[int]:
    """Where each record of a (little-endian, microsecond) pcap starts."""
    data = path.read_bytes()
    out, pos = [], 24
    while pos + 16 <= len(data):
        out.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("at", [0.05, 0.5, 0.9])
def test_split_equals_one_process_on_mixed_conversations(tmp_path: Path, seed: int, at: float,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         _small_splits: dict[str, int]) -> None:
    monkeypatch.setattr(split, "SPLIT_AT", at)
    cap = _mixed(tmp_path, seed)
    flows, conv, read, _, names, inputs = _same([cap])
    assert _small_splits == {"replayed": 1, "abandoned": 0}
    # Windows of interleaved conversations were applied at once, and others decoded instead (this mix
    # is full of handshakes, resets, idle gaps and bad checksums).
    w = split.WINDOWS  # type: ignore[attr-defined]
    if at < 0.9:
        assert w["shared"] > 10 and 0 < w["decoded"] < 0.9 * w["windows"], w
    assert read["frames"] == conv["packets"] == 6000 and len(flows) > 20 and names
    assert inputs[0]["sha256"] == hashlib.sha256(cap.read_bytes()).hexdigest()


@pytest.mark.parametrize("max_ids", [64, 1 << 17])
def test_split_equals_one_process_on_bench_traffic(tmp_path: Path, max_ids: int, monkeypatch: pytest.MonkeyPatch,
                                                   _small_splits: dict[str, int]) -> None:
    monkeypatch.setattr(spill, "MAX_IDS", max_ids)
    cap = tmp_path / "bench.pcap"
    written, _ = _make_capture().generate(cap, 60_000, conversations=3_000)
    _, conv, *_ = _same([cap])
    assert _small_splits["replayed"] == 1
    assert conv["packets"] == written and conv["connections"] > 2_000
    w = split.WINDOWS  # type: ignore[attr-defined]
    assert w["shared"] > 10 and w["decoded"] < w["windows"] // 4, w


def test_split_equals_one_process_on_a_syn_flood(tmp_path: Path, _small_splits: dict[str, int]) -> None:
    cap = tmp_path / "flood.pcap"
    _make_capture().generate_flood(cap, 30_000)
    _same([cap])
    assert _small_splits["replayed"] == 1


@pytest.mark.parametrize(("nano", "order"), [(True, "<"), (False, ">"), (True, ">")])
def test_split_reads_every_pcap_variant(tmp_path: Path, nano: bool, order: str,
                                        _small_splits: dict[str, int]) -> None:
    cap = _mixed(tmp_path, 7, 3000, nano=nano, byteorder=order)
    _same([cap])
    assert _small_splits["replayed"] == 1


def test_the_split_input_among_others(tmp_path: Path, _small_splits: dict[str, int]) -> None:
    small = _mixed(tmp_path, 1, 500)
    big = _mixed(tmp_path, 2, 5000)
    _same([small, big, small])
    # The three are one chain: the boundary falls in the big one (SPLIT_AT of all the bytes), and
    # the worker walks the rest of it and the last small one.
    assert _small_splits == {"replayed": 2, "abandoned": 0}


def _pieces(cap: Path, cuts: list[float], name: str = "part") -> list[Path]:
    """``cap`` cut into consecutive files at these shares of its records (a ring buffer's files:
    conversations run on from one into the next)."""
    data = cap.read_bytes()
    offsets = [*_offsets(cap), len(data)]
    at = [0] + [int(c * (len(offsets) - 1)) for c in cuts] + [len(offsets) - 1]
    out = []
    for i in range(len(at) - 1):
        piece = cap.parent / f"{name}{i}.pcap"
        piece.write_bytes(data[:24] + data[offsets[at[i]]:offsets[at[i + 1]]])
        out.append(piece)
    return out


@pytest.mark.parametrize("at", [0.1, 0.38, 0.5, 0.7])
def test_several_files_are_one_chain(tmp_path: Path, at: float, monkeypatch: pytest.MonkeyPatch,
                                     _small_splits: dict[str, int]) -> None:
    # Four files of one capture: the boundary falls in the first, the second (inside, or at its
    # start for 0.5 with a boundary search that finds nothing) or the third; the worker walks the
    # rest of that file and every later one, and this process replays each in turn.
    monkeypatch.setattr(split, "SPLIT_AT", at)
    if at == 0.5:
        monkeypatch.setattr(split, "find_boundary", lambda path, target: None)
    cap = _mixed(tmp_path, 11, 8000)
    parts = _pieces(cap, [0.25, 0.5, 0.75])
    plan = split.plan([str(p) for p in parts])
    assert plan is not None and plan.last == 3
    assert plan.first == {0.1: 0, 0.38: 1, 0.5: 2, 0.7: 2}[at]
    assert (plan.boundary == spill.HEADER) == (at == 0.5)
    flows, _, read, _, _, inputs = _same(parts)
    assert _small_splits == {"replayed": 4 - plan.first, "abandoned": 0}
    assert [i["sha256"] for i in inputs] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in parts]
    assert read["frames"] == 8000 and sum(i["packets"] for i in inputs) == 8000
    # Conversations span the files: the flows and their packets are the whole capture's (frame
    # numbers restart with each file, and the checksum sample with them).
    def packets(fl: list[Any]) -> list[Any]:
        return [(k, f["connections"], f["orig_pkts"], f["resp_pkts"]) for k, f in fl]

    assert packets(flows) == packets(_run([cap], False)[0])


def test_a_chain_stops_at_an_input_the_worker_cannot_walk(tmp_path: Path, _small_splits: dict[str, int]) -> None:
    import gzip

    cap = _mixed(tmp_path, 12, 8000)
    a, b, c, d = _pieces(cap, [0.45, 0.9, 0.95])
    gz = tmp_path / "part2.pcap.gz"
    gz.write_bytes(gzip.compress(c.read_bytes()))
    paths = [a, b, gz, d]
    plan = split.plan([str(p) for p in paths])
    # The first two files are one chain, the last is another; the larger gain is the first chain.
    assert plan is not None and (plan.first, plan.last) == (0, 1)
    _same(paths)
    assert _small_splits == {"replayed": 2, "abandoned": 0}


@pytest.mark.parametrize("where", ["own", "worker"])
def test_a_damaged_file_in_a_chain(tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch,
                                   _small_splits: dict[str, int]) -> None:
    # Damage before the boundary: this process's walk of that input stops there, as one process's
    # would, and it reads the later inputs itself. Damage in a later file: the worker's walk of it
    # stops there, and the chain goes on with the next file.
    monkeypatch.setattr(split, "SPLIT_AT", 0.3)
    cap = _mixed(tmp_path, 13, 8000)
    parts = _pieces(cap, [0.25, 0.5, 0.75])
    victim = parts[1] if where == "own" else parts[2]
    data = victim.read_bytes()
    at = _offsets(victim)[100 if where == "own" else 1500]
    victim.write_bytes(data[:at + 8] + struct.pack("<I", 1 << 30) + data[at + 12:])
    *_, inputs = _same(parts)
    damaged = [i for i in inputs if i["warnings"]]
    assert [d["path"] for d in damaged] == [str(victim)] and damaged[0]["truncated"]
    expect = {"own": {"replayed": 0, "abandoned": 1}, "worker": {"replayed": 3, "abandoned": 0}}
    assert _small_splits == expect[where]


def test_a_worker_failing_in_a_later_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _mixed(tmp_path, 14, 4000)
    parts = _pieces(cap, [0.5])
    real = spill._Tail

    class Broken(real):  # type: ignore[misc,valid-type]
        def __init__(self, path: str, offset: int) -> None:
            if path == str(parts[1]):
                raise OSError(5, "Input/output error")
            super().__init__(path, offset)

    monkeypatch.setattr(split, "SPLIT_AT", 0.2)
    monkeypatch.setattr(spill, "_Tail", Broken)
    cs = CaptureSet([str(p) for p in parts])
    cs.split = True
    with pytest.raises(CaptureError, match=r"part1\.pcap: the second reading process failed \(cannot read: "
                                           r"Input/output error\); run with -j 1$"):
        collect(cs, PORTS)


def test_choose_balances_the_two_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    mb = 1 << 20
    monkeypatch.setattr(split, "MIN_SPLIT_BYTES", 64 * mb)
    yes, no = True, False
    # One file: the boundary at SPLIT_AT of it.
    assert split.choose([1000 * mb], [yes]) == (0, int(split.SPLIT_AT * 1000 * mb), 0)
    # Four equal files: SPLIT_AT of the whole, so in the second, and the worker walks to the end.
    assert split.choose([100 * mb] * 4, [yes] * 4) == (1, int(split.SPLIT_AT * 400 * mb) - 100 * mb, 3)
    # An input only this process can read (compressed, pcapng) before the chain is walked by it
    # while the worker starts: the chain starts at the first pcap's first record.
    assert split.choose([300 * mb, 100 * mb, 100 * mb], [no, yes, yes]) == (1, spill.HEADER, 2)
    # Of two chains the one that saves more time.
    assert split.choose([50 * mb, 50 * mb, 10 * mb, 500 * mb], [yes, yes, no, yes])[0] == 3
    # Too little for the worker.
    assert split.choose([10 * mb, 10 * mb], [yes, yes]) is None
    assert split.choose([1000 * mb], [no]) is None


def test_a_wrong_boundary_costs_time_not_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 _small_splits: dict[str, int]) -> None:
    cap = _mixed(tmp_path, 3)
    offsets = _offsets(cap)
    for wrong in (offsets[len(offsets) // 2] + 5, offsets[len(offsets) // 3] + 16):
        monkeypatch.setattr(split, "find_boundary", lambda path, target, b=wrong: b)
        _same([cap])
    assert _small_splits == {"replayed": 0, "abandoned": 2}


@pytest.mark.parametrize("where", [0.3, 0.8])
def test_a_cut_or_corrupt_file_stops_where_one_process_stops(tmp_path: Path, where: float,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "SPLIT_AT", 0.5)
    cap = _mixed(tmp_path, 4)
    data = cap.read_bytes()
    offsets = _offsets(cap)
    at = offsets[int(len(offsets) * where)]
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:at + 30])  # inside a record
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes(data[:at + 8] + struct.pack("<I", 1 << 30) + data[at + 12:])
    for path in (cut, corrupt):
        *_, inputs = _same([path])
        assert inputs[0]["truncated"] and len(inputs[0]["warnings"]) == 1
        assert f"stopped after frame {int(len(offsets) * where)}" in inputs[0]["warnings"][0]
        assert inputs[0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_find_boundary_finds_the_next_record(tmp_path: Path) -> None:
    cap = _mixed(tmp_path, 5, 3000)
    offsets = _offsets(cap)
    rnd = random.Random(1)
    for _ in range(40):
        target = rnd.randrange(24, offsets[-40])
        assert split.find_boundary(str(cap), target) == min(o for o in offsets if o >= target)
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(cap.read_bytes()[:24] + rnd.randbytes(200_000))
    assert split.find_boundary(str(junk), 1000) is None
    assert split.find_boundary(str(cap), offsets[-5]) is None  # too few records left for a chain


def test_only_large_uncompressed_ethernet_pcaps_are_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _mixed(tmp_path, 6, 2000)
    assert CaptureSet([str(cap)]).split_plan() is not None
    gz = tmp_path / "mix.pcap.gz"
    import gzip

    gz.write_bytes(gzip.compress(cap.read_bytes()))
    raw = write_pcap(tmp_path / "raw.pcap", [(1.0 + i, f[14:]) for i, (_, f) in
                                             enumerate(_conversations(random.Random(6), 2000))], linktype=101)
    for path in (gz, raw):
        assert CaptureSet([str(path)]).split_plan() is None
    monkeypatch.setattr(split, "MIN_SPLIT_BYTES", cap.stat().st_size + 1)
    assert CaptureSet([str(cap)]).split_plan() is None


def test_a_failing_worker_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _mixed(tmp_path, 8, 3000)

    class Broken(HashingReader):
        def read(self, size: int = -1, /) -> bytes:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(spill, "HashingReader", Broken)  # the worker's reader; the forked worker inherits it
    cs = CaptureSet([str(cap)])
    cs.split = True
    with pytest.raises(CaptureError, match=r"mix8\.pcap: the second reading process failed \(cannot read: "
                                           r"Input/output error\); run with -j 1$"):
        collect(cs, PORTS)


def test_cli_jobs_2_splits_and_gives_the_same_json(tmp_path: Path, _small_splits: dict[str, int]) -> None:
    cap = tmp_path / "bench.pcap"
    _make_capture().generate(cap, 40_000, conversations=2_000)
    roles = tmp_path / "roles.yaml"
    roles.write_text("roles:\n  Delivery Controller: [10.0.0.1]\n", encoding="utf-8")
    docs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}.json"
        result = CliRunner().invoke(main, [str(cap), "--roles", str(roles), "--json", str(out), "--no-html",
                                           "-q", "-j", jobs])
        assert result.exit_code == 0, result.output
        docs.append(strip_run(json.loads(out.read_text(encoding="utf-8"))))
    assert _small_splits["replayed"] == 1
    assert [k for k in docs[0] if docs[0][k] != docs[1][k]] == []


def test_hashing_reader_bound_and_hash_rest(tmp_path: Path) -> None:
    data = random.Random(2).randbytes(3 * (8 << 20) + 12345)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    for limit in (5, 8 << 20, (8 << 20) + 7, len(data)):
        r = HashingReader(path.open("rb"))
        r.peek_start(4)
        r.bound(limit)
        got = io.BytesIO()
        while chunk := r.read(1 << 20):
            got.write(chunk)
        assert got.getvalue() == data[:limit]
        r.hash_rest()
        r.drain()
        r.close()
        assert r.hexdigest() == hashlib.sha256(data).hexdigest()
    r = HashingReader(path.open("rb"))
    r.bound(1000)
    assert len(r.read(-1)) == 1000 and r.read(10) == b""
    r.unbound()
    rest = r.read(-1)
    r.close()
    assert len(rest) == len(data) - 1000 and r.hexdigest() == hashlib.sha256(data).hexdigest()


CORPUS = ROOT.parent / "shared" / "corpus"


def same_or_refused_alike(path: Path) -> bool:
    """Read ``path`` by one process and split: the same result (True), or refused alike (False)."""
    try:
        one = _run([path], False)
    except CaptureError as e:
        with pytest.raises(CaptureError, match=re.escape(str(e))):
            _run([path], True)
        return False
    assert _run([path], True) == one, path
    return True


def split_the_corpus(magics: Container[bytes], seen: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> int:
    """Split every corpus file of at least 4 KiB whose first four bytes are in ``magics`` and that has a
    plausible boundary in its middle; each gives the one-process result (or is refused alike), with
    one split replayed or dropped. The number of such files."""
    if not CORPUS.is_dir():
        pytest.skip(f"public capture corpus not found at {CORPUS}")
    monkeypatch.setattr(split, "SPLIT_AT", 0.5)
    split_files = 0
    for p in sorted(CORPUS.rglob("*")):
        if not p.is_file() or p.stat().st_size < 4096 or p.read_bytes()[:4] not in magics:
            continue
        if CaptureSet([str(p)]).split_plan() is None:
            continue
        split_files += 1
        before = seen["replayed"] + seen["abandoned"]
        if same_or_refused_alike(p):
            assert seen["replayed"] + seen["abandoned"] == before + 1, p
    return split_files


@pytest.mark.corpus
def test_split_equals_one_process_on_the_corpus_pcaps(monkeypatch: pytest.MonkeyPatch,
                                                      _small_splits: dict[str, int]) -> None:
    # Every uncompressed Ethernet pcap of the public corpus with a plausible boundary in its middle
    # (real traffic: DHCP, DNS, TFTP, ICMP errors, fragments, bad checksums, odd timestamps, and
    # files damaged on purpose) gives the one-process result when split there.
    assert split_the_corpus(pcapfile.PCAP_MAGICS, _small_splits, monkeypatch) >= 50
    assert _small_splits["replayed"] >= 40


def test_no_room_for_the_spill_reads_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    _small_splits: dict[str, int]) -> None:
    import tempfile

    cap = _mixed(tmp_path, 9, 3000)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    _same([cap])
    assert _small_splits == {"replayed": 0, "abandoned": 0}


def test_too_little_room_for_the_spill_reads_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            _small_splits: dict[str, int]) -> None:
    import shutil
    from types import SimpleNamespace

    cap = _mixed(tmp_path, 10, 3000)
    assert split.plan([str(cap)]) is not None
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9 - 1, free=1))
    assert split.plan([str(cap)]) is None
    _same([cap])
    assert _small_splits == {"replayed": 0, "abandoned": 0}


# --- captures of short conversations are not split ---------------------------------------------


def _short_and_long(tmp_path: Path, conversations: int, data: int, *, ng: bool = False) -> Path:
    """``conversations`` TCP conversations one after another, each a handshake, ``data`` data
    packets and a FIN exchange: 3 + 3 frames of the slow path (SYN, SYN-ACK, FIN, FIN, and the
    DNS query and answer before each) and ``data`` + 1 of the lane (the handshake's ACK and data)."""
    c, s, dns = "10.0.0.1", "10.0.0.2", "10.0.0.53"
    frames = []
    for i in range(conversations):
        sp = 10000 + i
        frames += [eth_ipv4_udp(c, dns, sp, 53, b"\x00\x01\x01\x00" + b"\x00" * 8),
                   eth_ipv4_udp(dns, c, 53, sp, b"\x00\x01\x81\x80" + b"\x00" * 8),
                   eth_ipv4_tcp(c, s, sp, 443, "S", seq=1), eth_ipv4_tcp(s, c, 443, sp, "SA", seq=5, ack=2),
                   eth_ipv4_tcp(c, s, sp, 443, "A", seq=2, ack=6)]
        record = b"\x17\x03\x03" + b"\x00" * 97
        frames += [eth_ipv4_tcp(c, s, sp, 443, "PA", record, seq=2 + 100 * k, ack=6) for k in range(data)]
        frames += [eth_ipv4_tcp(c, s, sp, 443, "FA", seq=2 + 100 * data, ack=6),
                   eth_ipv4_tcp(s, c, 443, sp, "FA", seq=6, ack=3 + 100 * data)]
    if ng:
        return write_pcapng(tmp_path / f"conv{data}.pcapng", [1],
                            [(0, 1.0 + i * 0.001, f) for i, f in enumerate(frames)])
    return write_pcap(tmp_path / f"conv{data}.pcap", [(1.0 + i * 0.001, f) for i, f in enumerate(frames)])


@pytest.mark.parametrize("data", [0, 4, 60])
def test_slow_share_counts_what_the_slow_path_would_take(tmp_path: Path, data: int) -> None:
    cap = _short_and_long(tmp_path, 20, data)
    assert split.slow_share(str(cap)) == pytest.approx(6 / (data + 7))
    ng = _short_and_long(tmp_path, 20, data, ng=True)
    assert split.slow_share(str(ng)) == pytest.approx(6 / (data + 7))


def test_captures_of_short_conversations_are_not_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every frame the replay would decode costs it what walking it costs: where a third of the frames
    # or more need the slow path, a second process only adds its own work (split.DENSE).
    monkeypatch.setattr(split, "DENSE", 0.3)
    short, long = _short_and_long(tmp_path, 200, 4), _short_and_long(tmp_path, 20, 60)
    assert split.slow_share(str(short)) > 0.3 > split.slow_share(str(long))
    assert CaptureSet([str(short)]).split_plan() is None
    assert CaptureSet([str(long)]).split_plan() is not None
    # The sample is the start of the input where the boundary falls.
    assert CaptureSet([str(long), str(short)]).split_plan() is not None
    monkeypatch.setattr(split, "SPLIT_AT", 0.9)
    assert CaptureSet([str(long), str(short)]).split_plan() is None
