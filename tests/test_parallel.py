"""Process-level helpers (auditor/parallel.py): how many processes read when -j is not given (chunks
for large uncompressed inputs, a decompressing process for a large compressed one, one otherwise),
reading creates no cyclic garbage, and flows cross processes whole."""

from __future__ import annotations

import dataclasses
import gc
import json
import pickle
import platform
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor import capture, parallel
from auditor.audit import collect
from auditor.capture import CaptureSet
from auditor.cli import main
from auditor.flow import Flow
from auditor.model import FlowKey
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


def _flood(n: int) -> list[tuple[float, bytes]]:
    """n initial SYNs from n sources to one service."""
    sources = list(range(n))
    return [(1_700_000_000.0 + k * 0.0001, eth_ipv4_tcp(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "10.0.1.20",
                                                         1024 + i % 60000, 443, "S")) for k, i in enumerate(sources)]


def _audit(tmp_path: Path, cap: Path, jobs: str) -> dict[str, Any]:
    roles = tmp_path / "roles.yaml"
    roles.write_text(ROLES)
    out = tmp_path / f"j{jobs}.json"
    result = CliRunner().invoke(main, [str(cap), "--roles", str(roles), "--json", str(out), "--no-html", "-q",
                                       "-j", jobs])
    assert result.exit_code == 0, result.output
    return strip_run(json.loads(out.read_text()))


def test_every_job_count_reads_a_small_file_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file smaller than a chunk (ranges.MIN_BYTES) is read by this process whatever -j says: no
    # worker, the same audit.
    monkeypatch.setattr(parallel, "cpus", lambda: 2)
    cap = write_pcap(tmp_path / "short.pcap", _short(1500, seed=4))
    assert parallel.auto_jobs(CaptureSet([str(cap)]), "fast") == 1
    docs = {jobs: _audit(tmp_path, cap, jobs) for jobs in ("0", "1", "3")}
    assert docs["0"] == docs["1"] == docs["3"]
    assert len(docs["1"]["flows"]) > 500 and docs["1"]["summary"]["packets"] == len(_short(1500, seed=4))


def test_a_large_compressed_input_gets_a_decompressing_process(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "cpus", lambda: 2)
    gz = write_pcap(tmp_path / "short.pcap.gz", _short(300), compression="gzip")
    assert parallel.auto_jobs(CaptureSet([str(gz)]), "fast") == 1  # smaller than INFLATE_MIN
    monkeypatch.setattr(capture, "INFLATE_MIN", 0)
    assert parallel.auto_jobs(CaptureSet([str(gz)]), "fast") == 2
    assert parallel.auto_jobs(CaptureSet([str(gz)]), "tshark") == 1
    monkeypatch.setattr(parallel, "cpus", lambda: 1)
    assert parallel.auto_jobs(CaptureSet([str(gz)]), "fast") == 1


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
    gc.unfreeze()  # what earlier collect() calls froze (paused_gc(keep=True)), collected now
    gc.collect()
    for cap in captures:
        conv, names = collect(CaptureSet([str(cap)]), PORTS)
        assert conv.flows
        del conv, names
    gc.unfreeze()  # collect freezes what it made (paused_gc(keep=True)): the collection must see it
    assert gc.collect() == 0


def test_a_flow_crosses_processes_whole() -> None:
    """Flows cross processes pickled (Flow.__reduce__): every field, in its place."""
    flow = Flow(FlowKey("10.0.0.1", "fd00::2", "udp", 2598), connections=9, established=2, rejected=3,
                unanswered=4, orig_pkts=5, orig_bytes=6, resp_pkts=7, resp_bytes=8, first_seen=1.5,
                last_seen=2.5, first_frame=(1, 10), direction_evidence={"protocol": 2, "first_packet": 7},
                conn_states={"SF": 2, "S0": 7}, bad_checksums=11, tunnels=frozenset({"vxlan a->b vni 7"}),
                summarised=True)
    assert len(flow.__reduce__()[1]) == len(dataclasses.fields(Flow))
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(flow, protocol=protocol))
        assert again == flow and again is not flow


def test_automatic_choice_reads_a_large_file_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -j the inputs are read by this process whatever their size: chunks measured slower than
    one process on one machine (docs/scale.md); -j N asks for them."""
    from auditor import audit, engine

    cap = write_pcap(tmp_path / "short.pcap", _short(300))
    monkeypatch.setattr(parallel, "cpus", lambda: 8)
    asked: list[int] = []
    monkeypatch.setattr(engine, "run_local", lambda chunks, *a, **k: asked.append(len(chunks)) or 1 / 0)
    cs = CaptureSet([str(cap)])
    cs.total_bytes = 100 << 30  # as if the file were 100 GiB
    conv, _ = audit.read_captures(cs, frozenset())
    assert asked == [] and conv.flows
    two = [str(cap), str(write_pcap(tmp_path / "more.pcap", _short(300, seed=2)))]
    conv, _ = audit.read_captures(CaptureSet(two), frozenset())
    assert asked == [] and conv.flows
    with pytest.raises(ZeroDivisionError):  # -j 2 does go to the engine's chunks
        audit.read_captures(CaptureSet(two), frozenset(), jobs=2)
    assert asked == [2]


def test_the_heap_settings_act_only_on_glibc() -> None:
    # lean_heap and trim_heap call glibc's mallopt and malloc_trim, whose parameters are glibc's:
    # found where the C library is glibc, never elsewhere (musl, macOS, Windows: nothing is done).
    is_glibc = platform.libc_ver()[0] == "glibc"
    assert (parallel._glibc() is not None) == is_glibc
    parallel.lean_heap()  # and harmless where it is
    parallel.trim_heap()
