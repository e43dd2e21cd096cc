"""The engine (auditor/engine.py): inputs read as chunks on local processes or on a Dask cluster and
merged in order give exactly what one process reading them in order gives (SPEC §8).

A realistic capture (the shared bench generator) is cut into files at record boundaries, so that
conversations, handshakes and DNS exchanges run across the files, as in a ring buffer."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import dpkt
import pytest

from auditor import engine, pipe
from auditor.audit import collect
from auditor.capture import CaptureSet
from auditor.conversations import DISORDER_SLACK, merging
from auditor.engine import Collected
from auditor.errors import AuditorError
from tests.capture_factory import eth_ipv4_udp
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT.parent / "shared" / "bench" / "gen_realistic_pcap.py"
ROLES = ROOT.parent / "shared" / "bench" / "realistic.roles.yaml"
PORTS = frozenset({("tcp", 1494), ("tcp", 2598), ("tcp", 443), ("udp", 53)})


def _bench_scale() -> ModuleType:
    return load_script(ROOT / "bench" / "bench_scale.py")


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("ring")
    whole = d / "whole.pcap"
    subprocess.run([sys.executable, str(GEN), "--packets", "60000", "--seed", "5", "--out", str(whole)],
                   check=True, capture_output=True)
    # Cut at record boundaries as a ring buffer writes files: bench/bench_scale.py's split.
    paths: list[Path] = _bench_scale().split(whole, 5, d)
    return paths


def _facts(conv: Any, names: Any, inputs: Any, stats: Any) -> dict[str, Any]:
    s = dataclasses.asdict(conv.stats)
    for name in ("idle_splits", "peak_live"):  # depend on when the sweep ran, in one process too
        s.pop(name)
    return {
        "flows": sorted((k, dataclasses.asdict(f)) for k, f in conv.flows.items()),
        "stats": s,
        "ttls": conv.host_ttls,
        "names": {a: names.names_for(a) for a in names._by_addr},
        "inputs": [dataclasses.asdict(i) for i in inputs],
        "read": dataclasses.asdict(stats),
    }


@pytest.fixture(scope="module")
def whole(ring: list[Path]) -> Path:
    return ring[0].parent / "whole.pcap"


@pytest.mark.parametrize("parts", [2, 5])
def test_byte_ranges_of_one_file_give_one_process_result(whole: Path, parts: int) -> None:
    # One large file cut at record boundaries into byte ranges: frames still count from the file's
    # start, the input is described once, its hash is the whole file's.
    cs = CaptureSet([str(whole)])
    conv, names = collect(cs, PORTS)
    want = _facts(conv, names, cs.inputs, cs.stats)
    chunks = engine.plan([str(whole)], parts, min_bytes=1)
    assert len(chunks) == parts and chunks[1].start > 0
    got, exact = engine.run_local(chunks, PORTS, "fast", True, 2)
    assert exact
    assert _got(got) == want
    assert got.inputs[0].sha256 == cs.inputs[0].sha256 and got.inputs[0].packets == cs.inputs[0].packets


@pytest.fixture(scope="module")
def sequential(ring: list[Path]) -> dict[str, Any]:
    cs = CaptureSet([str(p) for p in ring])
    conv, names = collect(cs, PORTS)
    assert conv.stats.connections > 5000
    return _facts(conv, names, cs.inputs, cs.stats)


def _got(c: Collected) -> dict[str, Any]:
    return _facts(c.conv, c.names, c.inputs, c.stats)


def test_local_processes_give_one_process_result(ring: list[Path], sequential: dict[str, Any]) -> None:
    seen: list[tuple[int, int, int]] = []
    got, exact = engine.run_local(engine.plan([str(p) for p in ring], 1), PORTS, "fast", True, 2,
                                  lambda *a: seen.append(a))
    assert exact
    assert _got(got) == sequential
    # Progress counts chunks' bytes and frames across the workers, up to all of them.
    assert seen[-1][0] == seen[-1][1] == sum(p.stat().st_size for p in ring)
    assert seen[-1][2] == sequential["read"]["frames"]


def test_a_workers_part_merged_piece_by_piece(ring: list[Path], sequential: dict[str, Any]) -> None:
    # How a worker sends its settled part (pipe.send_part), here through a pipe from a thread: the
    # part without its flows and names, then those in pieces, each merged as it comes where the whole
    # part's would have been (Merger.add with pipe.Rest): one process's result.
    runs = engine.group(engine.plan([str(p) for p in ring], 1), 2)
    merger = engine.Merger()
    merger.add(engine.read_chunk(runs[0], PORTS, "fast", True, True))
    part = engine.read_chunk(runs[1], PORTS, "fast", True, False, True)
    firsts = merging.heads(part.conv)
    joins = merger.decide(firsts)
    merging.settle(part.conv, joins)
    flows, addresses = len(part.conv.result.flows), len(part.names._by_addr)
    assert flows > 1000 and addresses > 1000
    here, there = multiprocessing.Pipe()
    sender = threading.Thread(target=pipe.send_part, args=(there, part, 97))
    sender.start()
    kinds: list[str] = []

    def message() -> tuple[str, Any]:
        stream = pipe.Stream(here)
        kind, value = pickle.load(stream)
        stream.end()
        kinds.append(kind)
        return kind, value

    kind, got = message()
    assert kind == "part" and not got.conv.result.flows and not got.names._by_addr
    merger.add(got, (firsts, joins), pipe.Rest(message))
    sender.join()
    assert kinds == ["part"] + ["flows"] * -(-flows // 97) + ["names"] * -(-addresses // 97) + ["end"]
    collected, exact = merger.result()
    assert exact and _got(collected) == sequential


def test_a_part_merged_without_all_its_pieces_is_an_error() -> None:
    sent = iter([("flows", []), ("end", None)])
    with pytest.raises(RuntimeError, match="without all of its pieces"):
        pipe.Rest(lambda: next(sent)).end()


def test_every_chunk_is_read_while_the_first_parts_merge(whole: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two processes, five byte ranges of one file: this process reads the first while a worker reads
    # the second; the next worker starts when one of the two has read its chunk (whichever is first:
    # this process looks while it reads), and another each time a worker has read its own (its head
    # chains have come), whatever the merge's order: when part k is merged, the workers of chunks
    # k + 1 and k + 2 have started (two chunks read while the parts merge).
    events: list[tuple[str, int]] = []
    real = engine._context()

    class Started:  # a worker process whose start is recorded
        def __init__(self, proc: Any, index: int) -> None:
            self.proc, self.index = proc, index

        def start(self) -> None:
            events.append(("start", self.index))
            self.proc.start()

        def __getattr__(self, name: str) -> Any:
            return getattr(self.proc, name)

    class Recording:
        def Pipe(self, duplex: bool = True) -> Any:
            return real.Pipe(duplex=duplex)

        def Process(self, **kw: Any) -> Any:
            return Started(real.Process(**kw), kw["args"][1][0].part)

    add = engine.Merger.add

    def merged(self: engine.Merger, part: engine.Part, *a: Any) -> None:
        events.append(("merge", part.chunk.part))
        add(self, part, *a)

    monkeypatch.setattr(engine, "_context", Recording)
    monkeypatch.setattr(engine.Merger, "add", merged)
    cs = CaptureSet([str(whole)])
    want = _facts(*collect(cs, PORTS), cs.inputs, cs.stats)
    got, exact = engine.run_local(engine.plan([str(whole)], 5, min_bytes=1), PORTS, "fast", True, 2)
    assert exact and _got(got) == want
    assert events[0] == ("start", 1)
    assert events.index(("start", 2)) < events.index(("merge", 1)), events
    assert sorted(i for kind, i in events if kind == "start") == [1, 2, 3, 4]
    for k in (1, 2):
        assert events.index(("start", k + 2)) < events.index(("merge", k)), events


def test_local_chunks_follow_the_inputs_sizes(ring: list[Path], whole: Path) -> None:
    # As many runs as processes, of about equal size: files are cut only when there are fewer than
    # processes, and consecutive files are read one after the other by one builder (every part that
    # travels costs its merge).
    files = [str(p) for p in ring]
    assert engine.plan_local(files, 2, min_bytes=1) == engine.plan(files, 1)
    runs = [[c.input_index for c in run] for run in engine.group(engine.plan(files, 1), 2)]
    assert len(runs) == 2 and runs[0] + runs[1] == [0, 1, 2, 3, 4] and {len(r) for r in runs} == {2, 3}
    ranges_ = engine.plan([str(whole)], 3, min_bytes=1)
    assert engine.group(ranges_, 2) == [[c] for c in ranges_]  # a byte range is a run of its own
    cut = engine.plan_local([str(whole)], 3, min_bytes=1)
    assert [c.part for c in cut] == [0, 1, 2] and cut[1].start > 0
    mixed = engine.plan_local([str(whole), files[0]], 2, min_bytes=1)  # the large file takes both shares
    assert [(c.input_index, c.part) for c in mixed] == [(0, 0), (0, 1), (1, 0)]


def test_the_last_chunk_closes_its_connections_itself(ring: list[Path], sequential: dict[str, Any]) -> None:
    # Nothing follows the last chunk: its connections are closed in its own process, none travels
    # open; the others leave open only what a later packet can continue, its app protocol worked out.
    chunks = engine.plan([str(p) for p in ring], 1)
    parts = [engine.read_chunk(c, PORTS, "fast", True, i == 0, i == len(chunks) - 1) for i, c in enumerate(chunks)]
    assert parts[-1].conv.live_connections == 0 and parts[0].conv.live_connections > 0
    left = [c for c, orig in parts[0].conv._table.values() if orig]
    assert all(parts[0].conv.last_ts - c.last <= c.timeout + DISORDER_SLACK for c in left)
    assert any(c.appc is not None for c in left)
    got, exact = engine.merge(iter(parts))
    assert exact and _got(got) == sequential


def test_merge_continues_conversations_across_files(ring: list[Path]) -> None:
    chunks = engine.plan([str(p) for p in ring], 1)
    parts = [engine.read_chunk(c, PORTS, "fast", True, i == 0) for i, c in enumerate(chunks)]
    first = parts[0].conv
    engine.merge(iter(parts))
    assert first.replays.get(6, 0) > 0  # TCP conversations cut by the files were joined


CLUSTER = """
import sys
from distributed import LocalCluster
with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()
"""


def test_dask_cluster_gives_one_process_result(ring: list[Path], tmp_path: Path) -> None:
    # A real cluster of two worker processes, in a process of its own (its threads never meet a fork
    # of this one); the audit submits the files to it through --scheduler.
    cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert cluster.stdout is not None
        address = cluster.stdout.readline().decode().strip()
        assert address.startswith("tcp://")
        docs = []
        for how in (["-j", "1"], ["--scheduler", address]):
            out = tmp_path / f"{how[0]}.json"
            p = _cli([*how, *map(str, ring), "--roles", str(ROLES), "--no-html", "--json", str(out), "-q"])
            assert p.returncode in (0, 1), p.stderr
            docs.append(out.read_text())
    finally:
        cluster.communicate(b"", timeout=60)
    strip = [d.split('"flows"', 1)[1] for d in docs]  # the run's own facts (times, command) differ
    assert strip[0] == strip[1]


def test_inputs_overlapping_in_time_are_read_again(ring: list[Path], tmp_path: Path) -> None:
    # Two interfaces' captures of the same time, given one after the other: the second begins long
    # before the first ends (here: the first is ring[0] moved 1,000 s later).
    later = tmp_path / "later.pcap"
    with ring[0].open("rb") as f, later.open("wb") as out:
        reader = dpkt.pcap.Reader(f)
        w = dpkt.pcap.Writer(out, linktype=reader.datalink())
        for ts, buf in reader:
            w.writepkt(buf, ts + 1000)
    paths = [str(later), str(ring[1])]
    _, exact = engine.run_local(engine.plan(paths, 1), PORTS, "fast", True, 2)
    assert not exact
    out = tmp_path / "r.json"
    p = _cli(["-j", "2", *paths, "--roles", str(ROLES), "--no-html", "--json", str(out), "-q"])
    assert p.returncode in (0, 1), p.stderr
    assert "overlap in time" in out.read_text()


def test_a_packet_the_merge_cannot_place_makes_the_audit_read_again(tmp_path: Path) -> None:
    # A DHCP client retrying across two ring files (tests/test_chunk_merge.py retrying_dhcp_client):
    # the second file's last reply belongs to the first file's connection, which only its requests in
    # the second file keep live. The merge finds it cannot place it; the audit reads again, in order.
    def dhcp(xid: int, server: str | None = None) -> bytes:
        body = xid.to_bytes(4, "big") + bytes(40)
        if server is None:
            return eth_ipv4_udp("0.0.0.0", "255.255.255.255", 68, 67, b"\x01\x01\x06\x00" + body)
        return eth_ipv4_udp(server, "255.255.255.255", 67, 68, b"\x02\x01\x06\x00" + body)

    files = {"a.pcap": [(0.0, dhcp(1)), (3.0, dhcp(1, "10.9.2.1"))],
             "b.pcap": [(50.0, dhcp(2)), (100.0, dhcp(3)), (150.0, dhcp(4)), (200.0, dhcp(1, "10.9.2.1"))]}
    paths = []
    for name, packets in files.items():
        path = tmp_path / name
        with path.open("wb") as f:
            w = dpkt.pcap.Writer(f)
            for ts, frame in packets:
                w.writepkt(frame, 1_700_000_000 + ts)
        paths.append(str(path))
    got, exact = engine.run_local(engine.plan(paths, 1), PORTS, "fast", True, 2)
    assert not exact and "cross the parts' boundaries" in got.inexact
    docs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}.json"
        p = _cli(["-j", jobs, *paths, "--roles", str(ROLES), "--no-html", "--json", str(out), "-q"])
        assert p.returncode in (0, 1), p.stderr
        docs.append(json.loads(out.read_text()))
    assert "cross the parts' boundaries" in json.dumps(docs[1]) and "boundaries" not in json.dumps(docs[0])
    flows = [[(f["initiator"], f["responder"], f["orig_packets"], f["resp_packets"]) for f in d["flows"]]
             for d in docs]
    assert flows[0] == flows[1] == [("0.0.0.0", "10.9.2.1", 4, 2)]


def test_cli_chunked_audit_equals_one_process(ring: list[Path], tmp_path: Path) -> None:
    docs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}.json"
        p = _cli(["-j", jobs, *map(str, ring), "--roles", str(ROLES), "--no-html", "--json", str(out), "-q"])
        assert p.returncode in (0, 1), p.stderr
        docs.append(out.read_text())
    strip = [d.split('"flows"', 1)[1] for d in docs]  # the run's own facts (times, command) differ
    assert strip[0] == strip[1]


def test_unreachable_scheduler_is_one_line(ring: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    p = _cli([str(ring[0]), "--roles", str(ROLES), "--no-html", "--json", str(out), "-q",
              "--scheduler", "tcp://127.0.0.1:9"], DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    err = p.stderr.decode().strip()
    assert p.returncode == 2 and "scheduler" in err and "\n" not in err and "Traceback" not in err, err
    assert not out.exists()


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess[bytes]:
    e = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "auditor.cli", *args], env=e, capture_output=True, timeout=300,
                          check=False)


def test_a_ring_buffer_written_by_editcap(whole: Path, tmp_path: Path) -> None:
    # `editcap -c N` writes the ring buffer a capture appliance would: its files, read as chunks on
    # three processes (finishing in whatever order), give the result of one process reading them.
    subprocess.run(["editcap", "-c", "9000", str(whole), str(tmp_path / "ring.pcap")], check=True,
                   capture_output=True)
    files = sorted(str(p) for p in tmp_path.glob("ring_*.pcap"))
    assert len(files) >= 6
    cs = CaptureSet(files)
    conv, names = collect(cs, PORTS)
    want = _facts(conv, names, cs.inputs, cs.stats)
    got, exact = engine.run_local(engine.plan(files, 3), PORTS, "fast", True, 3)
    assert exact
    assert _got(got) == want
    assert got.conv.stats.connections == conv.stats.connections


def test_a_part_of_another_build_is_refused_in_one_line(ring: list[Path]) -> None:
    """A Dask worker with another install (compiled where this one is pure, or the reverse) sends
    objects of other classes: the merge names the chunk and says what to do, instead of merging
    them or failing somewhere inside."""
    from auditor.conversations.builder import ConversationBuilder as Python

    class Elsewhere(Python):
        pass

    chunks = engine.plan([str(p) for p in ring], 1)
    first = engine.read_chunk(chunks[0], PORTS, "fast", True, True)
    second = engine.read_chunk(chunks[1], PORTS, "fast", True, False)
    merger = engine.Merger()
    merger.add(first)
    second.conv = Elsewhere(server_ports=PORTS, chunk=True).end_chunk(False)
    with pytest.raises(AuditorError, match=r"ring.*another build of pcap-audit.*on every worker"):
        merger.add(second)
