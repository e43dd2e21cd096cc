"""Name evidence read by a second process (auditor/names_apart.py).

A walk for names alone (``read_names``: a lane that takes every packet the kernel offers) must find
exactly the evidence of one process reading conversations and names together, in the same order,
with either build of the kernel: on the samples, generated realistic traffic (DNS answers, IPv6,
VLANs, HTTP), captures with IP fragments, tunnels and bad checksums, and a slice of the corpus. The
audit's read must give the same conversations and the same answers about every address they name,
with or without the second process, and when that process fails or dies.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from auditor import audit, names_apart
from auditor.audit import collect, read_captures
from auditor.capture import open_captures
from auditor.catalog import load_catalog
from auditor.errors import CaptureError
from auditor.names import NameEvidence
from tests.capture_factory import (
    eth,
    eth_ip,
    eth_ipv4_tcp,
    eth_ipv4_udp,
    eth_ipv6_udp,
    ipv4,
    ipv4_fragments,
    udp,
    vxlan,
    write_pcap,
)
from tests.test_names_lean import CORPUS_DNS

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
CORPUS = ROOT.parent / "shared" / "corpus"
REALISTIC = ROOT.parent / "shared" / "bench" / "gen_realistic_pcap.py"
PORTS = load_catalog().server_ports()


def _evidence(names: NameEvidence) -> tuple[Any, ...]:
    return list(names._by_addr.items()), dict(names.stats)


def _alone(path: Path) -> NameEvidence:
    return names_apart.read_names([str(path)])[0]


def _beside(path: Path) -> NameEvidence:
    return collect(open_captures([str(path)]), PORTS)[1]


def _frames(path: Path) -> tuple[int, ...]:
    capture = open_captures([str(path)])
    collect(capture, PORTS)
    return tuple(info.packets for info in capture.inputs)


def _dns_answer(qid: int, name: str, address: bytes) -> bytes:
    """A DNS response for ``name`` with one A record."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    head = qid.to_bytes(2, "big") + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
    return head + labels + b"\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + address


def _hard_capture(path: Path) -> None:
    """Names where the kernel does not make the record itself: a DNS answer in IP fragments, one in
    a VXLAN tunnel, one with a bad UDP checksum, one in a VLAN; HTTP Host and a TLS record; and
    plenty of plain TCP the lane takes."""
    frames: list[tuple[float, bytes]] = []
    t = 1_700_000_000.0
    answer = udp("10.0.0.53", "10.0.0.1", 53, 40000, _dns_answer(1, "fragmented.example.net", bytes([10, 9, 9, 1]))
                 + b"\x00" * 40)
    for piece in ipv4_fragments("10.0.0.53", "10.0.0.1", 17, answer, size=24):
        t += 0.001
        frames.append((t, eth_ip(piece)))
    inner = eth_ipv4_udp("10.1.0.53", "10.1.0.2", 53, 40001,
                         _dns_answer(2, "tunnelled.example.net", bytes([10, 9, 9, 2])))
    frames.append((t + 0.01, vxlan("192.0.2.1", "192.0.2.2", inner)))
    badsum = _dns_answer(3, "badsum.example.net", bytes([10, 9, 9, 3]))
    frames.append((t + 0.02, eth_ipv4_udp("10.0.0.53", "10.0.0.3", 53, 40002, badsum, bad_checksum=True)))
    frames.append((t + 0.03, eth(ipv4("10.0.0.53", "10.0.0.4", 17, udp("10.0.0.53", "10.0.0.4", 53, 40003, _dns_answer(
        4, "tagged.example.net", bytes([10, 9, 9, 4])))), vlan=12)))
    frames.append((t + 0.04, eth_ipv6_udp("2001:db8::53", "2001:db8::5", 53, 40004,
                                          _dns_answer(5, "six.example.net", bytes([10, 9, 9, 5])))))
    for i in range(40):  # a web conversation: SYN, data both ways, the lane's share
        c, s = "10.0.0.7", "10.0.0.80"
        ts = t + 1 + i * 0.01
        if i == 0:
            frames.append((ts, eth_ipv4_tcp(c, s, 41000, 80, "S")))
        elif i == 1:
            frames.append((ts, eth_ipv4_tcp(s, c, 80, 41000, "SA")))
        elif i == 2:
            frames.append((ts, eth_ipv4_tcp(c, s, 41000, 80, "PA",
                                            b"GET / HTTP/1.1\r\nHost: intranet.example.net\r\n\r\n")))
        else:
            frames.append((ts, eth_ipv4_tcp(s if i % 2 else c, c if i % 2 else s, 80 if i % 2 else 41000,
                                            41000 if i % 2 else 80, "A", b"x" * 100)))
    frames.append((t + 2, eth_ipv4_tcp("10.0.0.7", "10.0.0.44", 41001, 443, "PA",
                                       b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")))
    write_pcap(path, frames)


@pytest.mark.usefixtures("each_kernel")
def test_names_read_alone_are_those_read_beside_the_conversations(tmp_path: Path) -> None:
    hard = tmp_path / "hard.pcap"
    _hard_capture(hard)
    realistic = tmp_path / "realistic.pcap"
    subprocess.run([sys.executable, str(REALISTIC), "--packets", "40000", "--seed", "3", "--out", str(realistic)],
                   check=True, capture_output=True)
    paths = [hard, realistic, *sorted(SAMPLES.glob("*.pcap*"))]
    kept = {}
    for path in paths:
        alone, frames = names_apart.read_names([str(path)])
        assert _evidence(alone) == _evidence(_beside(path)), path.name
        assert frames == _frames(path), path.name
        kept[path.name] = alone.stats["names_kept"]
    assert all(kept.values()), kept
    hard_names = {o.name for obs in _alone(hard)._by_addr.values() for o in obs}
    # (IP fragments are not reassembled for their payload: the fragmented answer names nothing.)
    assert {"tunnelled.example.net", "badsum.example.net", "tagged.example.net",
            "six.example.net", "intranet.example.net"} <= hard_names
    assert kept["realistic.pcap"] > 1_000


@pytest.mark.corpus
def test_names_read_alone_on_the_corpus() -> None:
    if not CORPUS.is_dir():
        pytest.fail(f"the corpus is not at {CORPUS}")
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng")
                   and p.stat().st_size < 3_000_000)[::3]
    files += [CORPUS / rel for rel in CORPUS_DNS]
    compared = named = 0
    for path in files:
        try:
            beside = _beside(path)
        except CaptureError as e:
            with pytest.raises(CaptureError) as again:
                _alone(path)
            assert str(again.value) == str(e)
            continue
        alone = _alone(path)
        assert _evidence(alone) == _evidence(beside), path
        compared += 1
        named += bool(alone.stats["names_kept"])
    assert compared >= 150 and named >= 50, (compared, named)


def test_only_answers_for_the_addresses_asked_with_every_counter(tmp_path: Path) -> None:
    hard = tmp_path / "hard.pcap"
    _hard_capture(hard)
    whole = _alone(hard)
    asked = {"10.9.9.2", "10.9.9.4", "10.0.0.80", "192.0.2.99"}
    part = whole.only(asked)
    assert part.stats == whole.stats and part.stats is not whole.stats
    for address in {*whole._by_addr, *asked}:
        assert part.names_for(address) == (whole.names_for(address) if address in asked else []), address
    assert list(part._by_addr) == [a for a in whole._by_addr if a in asked]  # first-seen order kept
    assert part.addresses_matching("*.example.net") == {"10.9.9.2", "10.9.9.4", "10.0.0.80"}
    assert part._seen == {(a, o.name, o.source) for a in part._by_addr for o in part._by_addr[a]}


def _read(path: Path, jobs: int) -> tuple[Any, ...]:
    capture = open_captures([str(path)])
    conv, names = read_captures(capture, PORTS, jobs=jobs)
    flows = sorted((k, f.connections, f.packets, f.bytes) for k, f in conv.flows.items())
    hosts = {a for k in conv.flows for a in (k.initiator, k.responder)}
    return flows, {a: names.names_for(a) for a in sorted(hosts)}, names.stats, capture.inputs[0].sha256


@pytest.fixture
def apart(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every input worth a second process; the processes started, counted."""
    monkeypatch.setattr(names_apart, "APART_MIN", 0)
    monkeypatch.setattr(names_apart, "APART_SHARE", 0.0)
    monkeypatch.setattr(names_apart, "cpus", lambda: 2)
    started: list[int] = []
    real = names_apart.NamesApart.__init__

    def counting(self: names_apart.NamesApart, capture: Any) -> None:
        real(self, capture)
        started.append(self._proc.pid)

    monkeypatch.setattr(names_apart.NamesApart, "__init__", counting)
    return started


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the second process is forked on Linux only")
def test_the_read_is_the_same_with_the_names_read_apart(tmp_path: Path, apart: list[int]) -> None:
    realistic = tmp_path / "realistic.pcap"
    subprocess.run([sys.executable, str(REALISTIC), "--packets", "30000", "--seed", "5", "--out", str(realistic)],
                   check=True, capture_output=True)
    for path in (realistic, SAMPLES / "cvad-onprem.pcapng"):
        one = _read(path, 1)
        assert not apart
        got = _read(path, 0)
        assert len(apart) == 1 and _gone(apart.pop())  # started, then reaped
        assert got == one, path.name
        assert any(one[1].values()) and one[3]  # names were asked about, and the input hashed once


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the second process is forked on Linux only")
@pytest.mark.parametrize("how", ["dies", "fails", "grew"])
def test_a_failed_second_process_changes_nothing_but_the_time(tmp_path: Path, apart: list[int], how: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = SAMPLES / "gateway-dmz.pcapng"
    one = _read(path, 1)
    parent = os.getpid()
    if how == "dies":  # ends without a word (killed, out of memory)
        monkeypatch.setattr(names_apart, "_child", lambda *args: os._exit(9))
    else:
        real = names_apart.read_names
        read_here: list[int] = []

        def other(paths: list[str]) -> tuple[NameEvidence, tuple[int, ...]]:
            if os.getpid() == parent:
                read_here.append(1)
                return real(paths)
            if how == "fails":  # its reading fails: it answers None
                raise MemoryError
            names, frames = real(paths)  # it read another file than the reader did (one that grew)
            names._by_addr.clear()
            return names, tuple(n + 1 for n in frames)

        monkeypatch.setattr(names_apart, "read_names", other)
    assert _read(path, 0) == one
    if how != "dies":
        assert read_here == [1]  # the reader read the names itself
    assert len(apart) == 1 and _gone(apart[0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the second process is forked on Linux only")
def test_an_error_while_reading_stops_the_second_process(tmp_path: Path, apart: list[int],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: Any, **kw: Any) -> None:
        raise CaptureError("boom")

    monkeypatch.setattr(audit.engine, "read_records", failing)
    with pytest.raises(CaptureError, match="boom"):
        _read(SAMPLES / "pvs-boot.pcapng", 0)
    assert len(apart) == 1 and _gone(apart[0])
    assert not multiprocessing.active_children()


def test_which_inputs_are_worth_a_second_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(names_apart, "cpus", lambda: 2)
    plain = tmp_path / "plain.pcapng"
    shutil.copy(SAMPLES / "cvad-onprem.pcapng", plain)
    packed = tmp_path / "packed.pcapng.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    long_talks = tmp_path / "long.pcap"  # long TCP conversations: nothing for the name table
    write_pcap(long_talks, [(1.0 + i / 100, eth_ipv4_tcp("10.0.0.1" if i % 2 else "10.0.0.2", "10.0.0.2" if i % 2
                                                         else "10.0.0.1", 40000 + i % 7, 1494, "A", b"\x7f" * 200))
                            for i in range(3000)])
    assert not names_apart.worth(open_captures([str(plain)]))  # small: one process
    monkeypatch.setattr(names_apart, "APART_MIN", 0)
    assert names_apart.worth(open_captures([str(plain)])) == sys.platform.startswith("linux")
    assert not names_apart.worth(open_captures([str(long_talks)]))  # no names to read apart
    assert not names_apart.worth(open_captures([str(plain), str(packed)]))  # decompressed: one process
    assert not names_apart.worth(open_captures([str(plain)], engine="tshark"))
    monkeypatch.setattr(names_apart, "cpus", lambda: 1)
    assert not names_apart.worth(open_captures([str(plain)]))


def _share_of_whole(path: Path) -> float:
    names, records = NameEvidence(), 0
    for rec in open_captures([str(path)]):
        records += 1
        if rec.payload:
            names.observe(rec)
    s = names.stats
    return (s["dns_responses"] + s["sni"] + s["http_host"] + s["parse_errors"]) / records


def test_the_sample_reads_the_frames_of_small_files_whole(tmp_path: Path) -> None:
    """A file shorter than the sample is sampled whole: its share is that of the whole read, pcapng
    (the samples: several interfaces, options) and pcap alike; damage ends the sample, never the run."""
    hard = tmp_path / "hard.pcap"
    _hard_capture(hard)
    files = [hard, *sorted(SAMPLES.glob("*.pcapng"))]
    assert all(p.stat().st_size < names_apart.SAMPLE_BYTES for p in files)
    for path in files:
        assert names_apart.name_share(str(path)) == pytest.approx(_share_of_whole(path)), path.name
    assert names_apart.name_share(str(hard)) > 0.1
    cut = tmp_path / "cut.pcapng"
    data = (SAMPLES / "daas-cloud.pcapng").read_bytes()
    cut.write_bytes(data[: len(data) // 2] + b"\xff" * 40)
    assert 0 < names_apart.name_share(str(cut)) <= 1
    for junk in (b"", b"\x0a\x0d\x0d\x0a" + b"\xff" * 100, b"\xd4\xc3\xb2\xa1" + b"\x00" * 30, b"GIF89a"):
        odd = tmp_path / "odd.bin"
        odd.write_bytes(junk)
        assert names_apart.name_share(str(odd)) == 0.0
    assert names_apart.name_share(str(tmp_path / "missing.pcap")) == 0.0


CLI_SPY = """
import sys
from auditor import names_apart
real = names_apart.NamesApart.__init__
def spy(self, capture):
    real(self, capture)
    print("names read apart", file=sys.stderr)
names_apart.NamesApart.__init__ = spy
from auditor.cli import run
sys.argv = ["pcap-audit", *sys.argv[1:]]
run()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the second process is forked on Linux only")
def test_the_command_reads_names_apart_by_default_and_writes_what_one_process_writes(tmp_path: Path) -> None:
    """The product command on a capture above APART_MIN, with the thresholds as shipped: the default
    reads the names in a second process (where there are two cores), and its audit.json is that of
    ``-j 1`` but for the run's own members."""
    import json

    from auditor.parallel import cpus

    capture = tmp_path / "big.pcap"
    subprocess.run([sys.executable, str(REALISTIC), "--packets", "165000", "--seed", "7", "--out", str(capture)],
                   check=True, capture_output=True)
    assert capture.stat().st_size >= names_apart.APART_MIN
    roles = ROOT.parent / "shared" / "bench" / "realistic.roles.yaml"
    docs = {}
    for jobs in ("0", "1"):
        out = tmp_path / f"j{jobs}.json"
        done = subprocess.run([sys.executable, "-c", CLI_SPY, str(capture), "--roles", str(roles), "-j", jobs,
                               "--no-html", "--json", str(out), "-q"], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode in (0, 1), done.stderr
        assert ("names read apart" in done.stderr) == (jobs == "0" and cpus() > 1), done.stderr
        doc = json.loads(out.read_text())
        del doc["run"]
        docs[jobs] = doc
    assert docs["0"] == docs["1"]
    assert sum(bool(h["names"]) for h in docs["0"]["hosts"]) > 10
