"""The sample captures in sample_pcaps/ are reproducible and well-formed on the wire.

- generate.py is deterministic: regenerating gives byte-identical files to the committed ones;
- each capture stays small (< 1 MB);
- tshark decodes every frame without a malformed packet, a bad checksum, or a warning other than the
  TCP resets the samples contain on purpose;
- tshark's conversation tables list the flows each <name>.README.md names.

The tshark tests are skipped (with a visible reason) when tshark is absent, except under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts import load_script

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "sample_pcaps"
NAMES = ["cvad-onprem", "daas-cloud", "gateway-dmz", "netscaler-ha", "pvs-boot"]
TSHARK = shutil.which("tshark") or ("/usr/bin/tshark" if Path("/usr/bin/tshark").exists() else None)
CHECKSUM_PREFS = [
    "-o",
    "ip.check_checksum:TRUE",
    "-o",
    "tcp.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
]
# Warnings a sample is built to contain: RST answers (failing flows, rejected unexpected flows).
ALLOWED_WARNINGS = {"Connection reset (RST)"}


def _load_generator() -> ModuleType:
    return load_script(SAMPLES_DIR / "generate.py")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    assert _load_generator().main(["generate.py", str(out)]) == 0
    return out


def _tshark() -> str:
    if TSHARK is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("tshark is required in CI (apt-get install tshark)")
        pytest.skip("tshark not installed: wire-format checks of sample_pcaps/ not run")
    return TSHARK


def _run(args: list[str]) -> str:
    res = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_generator_knows_every_sample() -> None:
    assert sorted(_load_generator().SAMPLES) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_regenerated_byte_identical(name: str, regenerated: Path) -> None:
    committed = (SAMPLES_DIR / f"{name}.pcapng").read_bytes()
    assert (regenerated / f"{name}.pcapng").read_bytes() == committed, (
        f"{name}.pcapng differs from generate.py's output: run `python sample_pcaps/generate.py`"
    )


@pytest.mark.parametrize("name", NAMES)
def test_sample_files_present_and_small(name: str) -> None:
    pcap = SAMPLES_DIR / f"{name}.pcapng"
    assert pcap.stat().st_size < 1_000_000
    assert pcap.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"  # pcapng section header block
    for extra in (f"{name}.roles.yaml", f"{name}.README.md"):
        assert (SAMPLES_DIR / extra).is_file(), extra


def _expert_sections(text: str) -> dict[str, list[str]]:
    """Parse `tshark -q -z expert` into {'Errors': [summaries], 'Warns': [...], ...}."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"^(Errors|Warns|Notes|Chats|Comments) \(\d+\)", line)
        if head:
            current = head.group(1)
            sections[current] = []
            continue
        row = re.match(r"^\s+\d+\s+\S+\s+\S+\s+(.*\S)\s*$", line)
        if current and row and not line.strip().startswith("Frequency"):
            sections[current].append(row.group(1))
    return sections


@pytest.mark.tshark
@pytest.mark.parametrize("name", NAMES)
def test_tshark_no_malformed_or_unexpected_warnings(name: str) -> None:
    tshark = _tshark()
    pcap = str(SAMPLES_DIR / f"{name}.pcapng")
    sections = _expert_sections(_run([tshark, "-r", pcap, "-n", *CHECKSUM_PREFS, "-q", "-z", "expert"]))
    assert sections.get("Errors", []) == [], sections["Errors"]
    unexpected = [w for w in sections.get("Warns", []) if w not in ALLOWED_WARNINGS]
    assert unexpected == [], unexpected


@pytest.mark.tshark
@pytest.mark.parametrize("name", NAMES)
def test_tshark_checksums_good(name: str) -> None:
    tshark = _tshark()
    pcap = str(SAMPLES_DIR / f"{name}.pcapng")
    bad = (
        "ip.checksum.status == 0 || tcp.checksum.status == 0 || udp.checksum.status == 0"
        " || icmp.checksum.status == 0 || icmpv6.checksum.status == 0 || _ws.malformed"
    )
    out = _run([tshark, "-r", pcap, "-n", *CHECKSUM_PREFS, "-Y", bad, "-T", "fields", "-e", "frame.number"])
    assert out.split() == []
    good = _run(
        [
            tshark,
            "-r",
            pcap,
            "-n",
            *CHECKSUM_PREFS,
            "-Y",
            "tcp.checksum.status == 1",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ]
    )
    assert len(good.split()) > 50  # the checks really ran


# (initiator, responder, responder port) per sample: the README's key flows, as tshark lists them.
KEY_FLOWS = {
    "cvad-onprem": {
        "tcp": [
            ("10.0.30.51", "10.0.1.20", 443),
            ("10.0.1.20", "10.0.1.10", 80),
            ("10.0.30.51", "10.0.20.101", 1494),
            ("10.0.30.52", "10.0.20.102", 2598),
            ("10.0.20.101", "10.0.1.10", 80),
            ("10.0.1.10", "10.0.1.31", 27000),
            ("10.0.20.110", "10.0.1.10", 80),
            ("10.0.20.103", "10.0.1.30", 1433),
            ("10.0.30.53", "10.0.20.105", 445),
            ("10.0.1.11", "10.0.1.20", 443),
        ],
        "udp": [
            ("10.0.30.51", "10.0.20.101", 1494),
            ("10.0.30.53", "10.0.20.103", 2598),
            ("10.0.1.20", "10.0.1.5", 389),
            ("10.0.30.51", "10.0.1.6", 53),
        ],
    },
    "daas-cloud": {
        "tcp": [
            ("10.10.0.21", "198.51.100.10", 443),
            ("10.10.0.21", "192.0.2.80", 80),
            ("10.10.20.31", "10.10.0.21", 80),
            ("10.10.20.32", "10.10.0.21", 8080),
            ("10.10.0.21", "10.10.0.22", 9095),
            ("10.10.0.21", "10.10.20.32", 49752),
        ],
        "udp": [("10.10.20.31", "198.51.100.40", 443), ("10.10.20.34", "198.51.100.40", 443)],
    },
    "gateway-dmz": {
        "tcp": [
            ("198.51.100.23", "172.16.10.50", 443),
            ("198.51.100.57", "172.16.10.50", 80),
            ("203.0.113.88", "172.16.10.51", 443),
            ("10.50.1.20", "172.16.10.50", 443),
            ("172.16.10.20", "10.50.1.10", 80),
            ("172.16.10.20", "10.50.1.11", 80),
            ("172.16.10.20", "10.50.20.102", 1494),
            ("172.16.10.20", "10.50.20.102", 2598),
            ("172.16.10.20", "10.50.20.104", 3389),
            ("172.16.10.11", "10.50.0.30", 5563),
            ("203.0.113.201", "172.16.10.50", 22),
        ],
        "udp": [
            ("198.51.100.23", "172.16.10.50", 443),
            ("203.0.113.88", "172.16.10.51", 443),
            ("172.16.10.20", "10.50.20.101", 2598),
            ("172.16.10.20", "10.50.20.103", 1494),
            ("172.16.10.20", "10.50.0.41", 1813),
        ],
    },
    "netscaler-ha": {
        "tcp": [
            ("10.20.0.11", "10.20.0.12", 3008),
            ("10.20.0.11", "10.20.0.12", 22),
            ("10.20.0.30", "10.20.0.11", 443),
            ("10.20.0.100", "10.20.0.11", 23),
        ],
        "udp": [
            ("10.20.0.11", "10.20.0.12", 3003),
            ("10.20.0.11", "10.20.0.30", 162),
            ("10.20.0.12", "10.20.0.41", 1812),
            ("10.20.0.11", "10.20.0.30", 4739),
        ],
    },
    "pvs-boot": {
        "tcp": [
            ("fd00:30::21", "fd00:30::30", 1433),
            ("10.30.0.100", "10.30.0.21", 54321),
            ("10.30.0.21", "10.30.0.31", 7279),
        ],
        "udp": [
            ("0.0.0.0", "255.255.255.255", 67),
            ("10.30.50.101", "10.30.0.21", 69),
            ("10.30.50.101", "10.30.0.21", 6911),
            ("10.30.50.103", "10.30.0.22", 6910),
        ],
    },
}


def _conversations(text: str) -> set[tuple[str, str, int]]:
    convs = set()
    for line in text.splitlines():
        m = re.match(r"^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s", line)
        if m:
            a, _, b, pb = m.groups()
            convs.add((a, b, int(pb)))
    return convs


@pytest.mark.tshark
@pytest.mark.parametrize("name", NAMES)
def test_tshark_lists_key_flows(name: str) -> None:
    tshark = _tshark()
    pcap = str(SAMPLES_DIR / f"{name}.pcapng")
    for proto, flows in KEY_FLOWS[name].items():
        convs = _conversations(_run([tshark, "-r", pcap, "-n", "-q", "-z", f"conv,{proto}"]))
        for flow in flows:
            assert flow in convs, f"{name}: {proto} {flow} not among tshark's conversations"


@pytest.mark.tshark
def test_netscaler_sample_is_vlan_100() -> None:
    tshark = _tshark()
    pcap = str(SAMPLES_DIR / "netscaler-ha.pcapng")
    ids = _run([tshark, "-r", pcap, "-n", "-T", "fields", "-e", "vlan.id"]).split()
    assert ids and set(ids) == {"100"}
