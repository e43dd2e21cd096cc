"""Captures of short conversations are read by two processes that each keep half of the
conversations (auditor/parallel.py): chosen automatically for large, dense, non-flood captures,
exactly one process's result, and read again by one process when a share reaches a bound."""

from __future__ import annotations

import dataclasses
import gc
import json
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor import parallel
from auditor.audit import collect
from auditor.capture import CaptureSet, split
from auditor.cli import main
from auditor.conversations import ConversationResult
from auditor.model import Flow, FlowKey
from auditor.names import NameEvidence
from tests.capture_factory import eth_ipv4_tcp, eth_ipv4_udp, write_pcap
from tests.test_cli_audit import run_cli, strip_run

ROOT = Path(__file__).resolve().parent.parent
PORTS = frozenset({("tcp", 443), ("udp", 53)})
ROLES = "roles:\n  User Device: [10.1.0.0/16]\n  StoreFront Server: [10.0.1.20]\n"


def _short(n: int, seed: int = 1) -> list[tuple[float, bytes]]:
    """n short conversations: a DNS query and answer, a handshake, one TLS record, a FIN exchange;
    some rejected, some never answered."""
    rnd = random.Random(seed)
    frames: list[bytes] = []
    for i in range(n):
        c, s = f"10.1.{i // 250}.{i % 250 + 1}", rnd.choice(["10.0.1.20", "10.0.1.21", "192.0.2.7"])
        sp = 20000 + i % 40000
        frames += [eth_ipv4_udp(c, "10.0.0.53", sp, 53, b"\x00\x01\x01\x00" + b"\x00" * 8),
                   eth_ipv4_udp("10.0.0.53", c, 53, sp, b"\x00\x01\x81\x80" + b"\x00" * 8),
                   eth_ipv4_tcp(c, s, sp, 443, "S", seq=1)]
        kind = rnd.random()
        if kind < 0.1:
            frames.append(eth_ipv4_tcp(s, c, 443, sp, "RA", ack=2))
        elif kind < 0.2:
            frames.append(eth_ipv4_tcp(c, s, sp, 443, "S", seq=1))
        else:
            frames += [eth_ipv4_tcp(s, c, 443, sp, "SA", seq=5, ack=2),
                       eth_ipv4_tcp(c, s, sp, 443, "A", seq=2, ack=6),
                       eth_ipv4_tcp(c, s, sp, 443, "PA", b"\x17\x03\x03" + b"\x00" * 40, seq=2, ack=6),
                       eth_ipv4_tcp(c, s, sp, 443, "FA", seq=45, ack=6),
                       eth_ipv4_tcp(s, c, 443, sp, "FA", seq=6, ack=46)]
    return [(1_700_000_000.0 + i * 0.0005, f) for i, f in enumerate(frames)]


def _long(n: int) -> list[tuple[float, bytes]]:
    c, s = "10.1.0.1", "10.0.1.20"
    frames = [eth_ipv4_tcp(c, s, 50000, 443, "S", seq=1), eth_ipv4_tcp(s, c, 443, 50000, "SA", seq=5, ack=2)]
    frames += [eth_ipv4_tcp(c, s, 50000, 443, "PA", b"\x17\x03\x03" + b"\x00" * 40, seq=2 + 43 * k, ack=6)
               for k in range(n)]
    return [(1_700_000_000.0 + i * 0.0005, f) for i, f in enumerate(frames)]


def _flood(n: int, *, by_share: bool = False) -> list[tuple[float, bytes]]:
    """n initial SYNs from n sources to one service; ``by_share``: first the sources of one share
    of two (parallel: a hash of the addresses' last two bytes), then those of the other."""
    sources = list(range(n))
    if by_share:
        sources.sort(key=lambda i: ((i >> 8 & 255) + (i & 255) + 1 + 20) % 2)
    return [(1_700_000_000.0 + k * 0.0001, eth_ipv4_tcp(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "10.0.1.20",
                                                         1024 + i % 60000, 443, "S")) for k, i in enumerate(sources)]


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "cpus", lambda: 2)
    monkeypatch.setattr(parallel, "DENSE_MIN_BYTES", 0)
    monkeypatch.setattr(split, "MIN_SPLIT_BYTES", 0)


def _audit(tmp_path: Path, cap: Path, jobs: str) -> dict[str, Any]:
    roles = tmp_path / "roles.yaml"
    roles.write_text(ROLES)
    out = tmp_path / f"j{jobs}.json"
    result = CliRunner().invoke(main, [str(cap), "--roles", str(roles), "--json", str(out), "--no-html", "-q",
                                       "-j", jobs])
    assert result.exit_code == 0, result.output
    return strip_run(json.loads(out.read_text()))


def test_dense_captures_are_sharded_and_others_are_not(tmp_path: Path, two_cores: None) -> None:
    short = write_pcap(tmp_path / "short.pcap", _short(400))
    long = write_pcap(tmp_path / "long.pcap", _long(2000))
    flood = write_pcap(tmp_path / "flood.pcap", _flood(3000))
    assert split.sample(str(short)).slow >= split.DENSE and split.sample(str(short)).syn < parallel.FLOOD_SYNS
    assert split.sample(str(flood)).syn >= parallel.FLOOD_SYNS
    assert parallel.dense(CaptureSet([str(short)]))
    assert not parallel.dense(CaptureSet([str(long)])) and not parallel.dense(CaptureSet([str(flood)]))
    # Short conversations: no split (the replay would cost what walking costs), two shares instead.
    assert CaptureSet([str(short)]).split_plan() is None
    assert parallel.auto_jobs(CaptureSet([str(short)]), "fast") == 2
    assert CaptureSet([str(long)]).split_plan() is not None
    assert parallel.auto_jobs(CaptureSet([str(flood)]), "fast") == 1


def test_a_sharded_read_is_one_process_read(tmp_path: Path, two_cores: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cap = write_pcap(tmp_path / "short.pcap", _short(1500, seed=4))
    shares: list[tuple[int, int]] = []

    class Recording(CaptureSet):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            shares.append(self.shard)

    monkeypatch.setattr(parallel, "CaptureSet", Recording)
    auto, one = _audit(tmp_path, cap, "0"), _audit(tmp_path, cap, "1")
    assert shares == [(0, 2)]  # -j 0 chose the sharded read: this process read share 0 of 2
    assert [k for k in one if one[k] != auto[k]] == []
    assert len(one["flows"]) > 500 and one["summary"]["packets"] == len(_short(1500, seed=4))


def test_a_share_that_reaches_a_bound_is_read_again_by_one_process(tmp_path: Path) -> None:
    # 1,500 unanswered attempts on one service, first the 750 of one share: one process keeps the
    # first 1,000 as flows and summarises the rest (its flood fan-in); each share would keep its first
    # 500, so the merged shares would summarise other attempts than one process does.
    cap = write_pcap(tmp_path / "attempts.pcap", _flood(1500, by_share=True))
    one, _ = collect(CaptureSet([str(cap)]), PORTS)
    merged = ConversationResult()
    for k in (0, 1):
        part, _ = collect(CaptureSet([str(cap)], shard=(k, 2)), PORTS, shard=(k, 2))
        assert part.overflowed
        merged.merge(part)
    assert one.overflowed and one.stats.summarised_connections == 500
    assert merged.flows.keys() != one.flows.keys()  # other attempts kept as flows of their own
    conv, names = parallel.collect_parallel(CaptureSet([str(cap)]), PORTS, 2)
    assert isinstance(names, NameEvidence)
    assert conv.stats == one.stats and conv.flows.keys() == one.flows.keys()
    assert all(conv.flows[k].connections == f.connections for k, f in one.flows.items())


def test_standard_input_is_read_by_one_process(tmp_path: Path) -> None:
    cap = write_pcap(tmp_path / "short.pcap", _short(300))
    (tmp_path / "roles.yaml").write_text(ROLES)
    docs = []
    for args, stdin in ((["-", "-j", "2"], cap.read_bytes()), ([str(cap), "-j", "1"], b"")):
        out = tmp_path / "out.json"
        done = run_cli([*args, "--roles", "roles.yaml", "--json", out, "--no-html", "-q"], tmp_path,
                       input=stdin)
        assert done.returncode == 0, done.stderr
        docs.append(json.loads(out.read_text()))
    piped, filed = docs
    assert piped["flows"] == filed["flows"] and piped["summary"] == filed["summary"]



def test_reading_a_capture_leaves_no_cyclic_garbage(tmp_path: Path) -> None:
    # collect() pauses the cyclic collector (parallel.paused_gc): right only while reading creates no
    # reference cycles, which would then pile up until the run ends. Samples of every deployment
    # (DNS, TLS SNI and HTTP Host names, ICMP errors, tunnels, TFTP, DHCP...), a dense generated
    # capture, and a flood that reaches the bounds.
    samples = sorted((ROOT / "sample_pcaps").glob("*.pcapng"))
    captures = [*samples, write_pcap(tmp_path / "short.pcap", _short(300)),
                write_pcap(tmp_path / "flood.pcap", _flood(3000))]
    assert len(samples) == 5
    gc.collect()
    for cap in captures:
        conv, names = collect(CaptureSet([str(cap)]), PORTS)
        assert conv.flows
        del conv, names
    assert gc.collect() == 0


def test_the_sample_of_what_is_no_uncompressed_capture_is_empty(tmp_path: Path, two_cores: None) -> None:
    # auto_jobs samples the largest input whatever it is: a compressed capture, another format or
    # damage must give "nothing to say", never an exception (several small gzip files once crashed
    # -j 0 with an internal error).
    short = write_pcap(tmp_path / "short.pcap", _short(300))
    gz = [write_pcap(tmp_path / f"part{i}.pcap.gz", _short(300, seed=i), compression="gzip") for i in range(3)]
    text = tmp_path / "notes.txt"
    text.write_text("not a capture\n" * 100)
    for path in (*gz, text):
        assert split.sample(str(path)) == split.Share(0.0, 0.0)
    assert split.sample(str(short)).slow > 0
    cs = CaptureSet([str(p) for p in gz])
    assert not cs.inflatable() and parallel.auto_jobs(cs, "fast") == 1
    doc = _audit(tmp_path, gz[0], "0")
    assert doc["summary"]["packets"] == len(_short(300, seed=0))


def test_a_flow_crosses_processes_whole() -> None:
    """A share's flows come back pickled (Flow.__reduce__): every field, in its place."""
    flow = Flow(FlowKey("10.0.0.1", "fd00::2", "udp", 2598), connections=9, established=2, rejected=3,
                unanswered=4, orig_pkts=5, orig_bytes=6, resp_pkts=7, resp_bytes=8, first_seen=1.5,
                last_seen=2.5, first_frame=(1, 10), direction_evidence={"protocol": 2, "first_packet": 7},
                conn_states={"SF": 2, "S0": 7}, bad_checksums=11, tunnels=frozenset({"vxlan a->b vni 7"}),
                summarised=True)
    assert len(flow.__reduce__()[1]) == len(dataclasses.fields(Flow))
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(flow, protocol=protocol))
        assert again == flow and again is not flow
