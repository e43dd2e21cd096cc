"""What is decompressed or copied into the temporary folder is watched as it grows (foreign.Growth): a
compressed NetScaler trace stops in one line naming the input when the folder would have less than
foreign.RESERVE left, or when it decompresses past the bomb cap (foreign.RATIO_CAP times its stored
size and foreign.RATIO_FLOOR); editcap's copy of another format then falls back to tshark, or stops
at the cap. Nothing is left in the folder."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.capture import foreign
from auditor.cli import main
from tests.capture_factory import WEB_CLIENT, WEB_SERVER, eth_ipv4_udp, web_session, write_pcap
from tests.nstrace_factory import write_nstrace

ROLES = f"roles:\n  User Device: [{WEB_CLIENT}]\n  StoreFront Server: [{WEB_SERVER}]\n"
PAGE = 16384  # nstrace 3.x


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


def _trace(tmp: Path, zero_pages: int) -> tuple[Path, bytes]:
    """A NetScaler 3.5 trace of a web session followed by empty pages (as a trace the appliance
    preallocated): gzip-compressed, and its decompressed bytes."""
    trace = write_nstrace(tmp / "t.cap", web_session(), "nstrace35").read_bytes() + bytes(PAGE * zero_pages)
    packed = tmp / "t.cap.gz"
    packed.write_bytes(_gzip(trace))
    return packed, trace


def _run(tmp: Path, *captures: Path) -> Any:
    roles = tmp / "roles.yaml"
    roles.write_text(ROLES)
    return CliRunner().invoke(main, [*map(str, captures), "--roles", str(roles), "--json", str(tmp / "a.json"),
                                     "--no-html", "-q"])


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The temporary folder, checked empty afterwards; no tshark to fall back to."""
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name in ("captype", "editcap", "tshark")
                        else real(name, *a, **k))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    assert list(tmp.iterdir()) == []


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_a_small_temporary_folder_runs_out_of_room(tmp_path: Path, folder: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A real file system of 48 MB: a trace of 2.5 MB fits; one of 64 MB stops when the next block
    would leave less than RESERVE (32 MB) free, at 16 MB written, in one line, the copy deleted."""
    with _tmpfs(tmp_path / "small", "48m") as small:
        monkeypatch.setattr(tempfile, "tempdir", str(small))
        fits, _ = _trace(tmp_path, 150)
        result = _run(tmp_path, fits)
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "a.json").read_text())["inputs"][0]["packets"] == len(web_session())
        big, _ = _trace(tmp_path, 64 << 20 >> 14)
        result = _run(tmp_path, big)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1
        assert (f"{big}: cannot decompress this NetScaler trace to read it: the temporary folder {small} ran out of "
                f"room for it (16.8 MB written, ") in result.output
        assert "point TMPDIR at a folder with more room" in result.output
        assert list(small.iterdir()) == []


def test_room_is_checked_as_the_copy_grows(tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The room before it begins (ROOM times the compressed size) says little: the free room is asked
    again before every block written (in the converting process: here, as the folder fills up)."""

    def free(where: str) -> int:
        return foreign.RESERVE + 12_000_000 - sum(p.stat().st_size for p in Path(where).iterdir())

    monkeypatch.setattr(foreign, "free_room", free)
    packed, trace = _trace(tmp_path, 1800)
    assert len(trace) > 29_000_000 and packed.stat().st_size < 200_000
    result = _run(tmp_path, packed)
    assert result.exit_code == 2, result.output
    left = foreign.RESERVE + 12_000_000 - (8 << 20)
    assert f"ran out of room for it (8.4 MB written, {left / 1e6:.1f} MB left)" in result.output  # the second block


def test_a_decompression_bomb_is_refused(tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(foreign, "RATIO_FLOOR", 4_000_000)
    packed, trace = _trace(tmp_path, 1800)
    stored = packed.stat().st_size
    assert len(trace) > 2 * foreign.RATIO_CAP * stored
    result = _run(tmp_path, packed)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert (f"{packed}: decompresses to more than {100 * stored / 1e6:.1f} MB, over 100 times its "
            f"{stored / 1e6:.1f} MB: taken for a decompression bomb, not read") in result.output
    # Under the floor, the same ratio is a capture like any other.
    monkeypatch.setattr(foreign, "RATIO_FLOOR", 64_000_000)
    assert _run(tmp_path, packed).exit_code == 0


def test_the_cap_is_documented_and_generous() -> None:
    assert foreign.RATIO_CAP == 100 and foreign.RATIO_FLOOR == 1 << 30
    growth = foreign.Growth("x", "/", 18_700_000)  # the reviewed case: 18.7 MB that made 4 GB
    with pytest.raises(foreign.CaptureError, match="decompression bomb"):
        growth.check(4 << 30)
    growth.check(1 << 30)  # a GB is never refused for its ratio


# -- editcap's copy (Wireshark) -------------------------------------------------------------------------

wireshark = pytest.mark.skipif(None in (shutil.which("tshark"), shutil.which("editcap"), shutil.which("captype")),
                               reason="tshark, editcap and captype (Wireshark) are not installed")


def _netmon_gz(tmp: Path) -> Path:
    """A gzip-compressed Network Monitor capture of a web session and many empty-payload datagrams
    (editcap decompresses it as it copies)."""
    frames = [*web_session(), *[(1_700_000_100.0 + i, eth_ipv4_udp(WEB_CLIENT, "10.0.1.99", 5000, 514, bytes(1400)))
                                for i in range(3000)]]
    pcap = write_pcap(tmp / "orig.pcap", frames)
    netmon = tmp / "capture.cap"
    subprocess.run(["editcap", "-F", "netmon2", str(pcap), str(netmon)], check=True, capture_output=True)
    packed = tmp / "capture.cap.gz"
    packed.write_bytes(_gzip(netmon.read_bytes()))
    netmon.unlink()
    return packed


@pytest.mark.tshark
@wireshark
def test_editcap_copy_without_room_falls_back_to_tshark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packed = _netmon_gz(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    assert _run(tmp_path, packed).exit_code == 0
    expected = json.loads((tmp_path / "a.json").read_text())
    assert "pcapng copy" in expected["inputs"][0]["warnings"][0]

    def free(where: str) -> int:  # room to begin, none once the copy has a byte
        return 10**9 if sum(p.stat().st_size for p in Path(where).iterdir()) == 0 else 0

    monkeypatch.setattr(foreign, "free_room", free)
    assert _run(tmp_path, packed).exit_code == 0
    doc = json.loads((tmp_path / "a.json").read_text())
    assert "read through tshark" in doc["inputs"][0]["warnings"][0]
    assert doc["flows"] == expected["flows"] and doc["inputs"][0]["sha256"] == expected["inputs"][0]["sha256"]
    assert list(tmp.iterdir()) == []


@pytest.mark.tshark
@wireshark
def test_editcap_copy_past_the_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packed = _netmon_gz(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(foreign, "RATIO_FLOOR", 1_000_000)
    monkeypatch.setattr(foreign, "RATIO_CAP", 10)
    assert os.path.getsize(packed) * 10 < 4_000_000  # and the copy is more than 4.2 MB of frames
    result = _run(tmp_path, packed)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and f"{packed}: decompresses to more than" in result.output
    assert list(tmp.iterdir()) == []
