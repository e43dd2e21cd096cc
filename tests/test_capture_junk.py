"""Junk after a valid header (decode.BAD_RUN_MAX): a run of that many malformed frames in a row ends
the walk of that input with a warning naming the byte offset, what was read is counted and hashed,
and the next input is read as usual; scattered malformed frames change nothing. (Read as chunks,
wherever the run lies against a boundary: tests/test_capture_ranges.py.)"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from auditor.capture import CaptureSet, open_captures
from auditor.capture import decode as decode_mod
from auditor.capture.info import InputInfo
from tests.capture_factory import compress, eth_ipv4_tcp, pcap_bytes, web_session, write_pcap
from tests.test_capture_pipes import fed

GOOD = [eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 40000 + i, 443, "S") for i in range(10)]
WARNING = re.compile(r"gave up after (\d+) malformed records in a row, at byte offset (\d+)( of the \w+-decompressed "
                     r"data)? \(junk such as zeros after the last good record\?\); the rest is not read: "
                     r"stopped after frame (\d+)$")


def _zeros_after(good: list[bytes], zeros: int) -> bytes:
    return pcap_bytes(good) + bytes(zeros)


def _gave_up(info: InputInfo) -> tuple[int, int, int]:
    """(run, byte offset, last frame) of the input's give-up warning."""
    [m] = [m for w in info.warnings if (m := WARNING.match(w))]
    return int(m[1]), int(m[2]), int(m[4])


def test_a_valid_header_and_50_mb_of_zeros(tmp_path: Path) -> None:
    data = _zeros_after(GOOD, 50 << 20)
    cap = tmp_path / "zeros.pcap"
    cap.write_bytes(data)
    cs = open_captures([str(cap)])
    records = sum(1 for _ in cs)
    [info] = cs.inputs
    run = decode_mod.BAD_RUN_MAX
    good_end = len(pcap_bytes(GOOD))
    # A zero record is a 16-byte header of an empty frame: the run ends at its last one.
    assert _gave_up(info) == (run, good_end + 16 * run, len(GOOD) + run)
    assert records == len(GOOD) and info.packets == len(GOOD) + run and info.truncated
    assert cs.stats.malformed == {"eth-short": run} and cs.stats.frames == len(GOOD) + run
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)


def test_the_next_input_is_read_on(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap.gz"
    junk.write_bytes(compress(_zeros_after(GOOD, 20 << 20), "gzip"))
    after = write_pcap(tmp_path / "after.pcap", web_session())
    cs = CaptureSet([str(junk), str(after)])
    frames = [(r.input_index, r.frame) for r in cs]
    first, second = cs.inputs
    run, offset, last = _gave_up(first)
    assert "of the gzip-decompressed data" in first.warnings[0]
    assert (run, last) == (decode_mod.BAD_RUN_MAX, len(GOOD) + decode_mod.BAD_RUN_MAX)
    assert offset == len(pcap_bytes(GOOD)) + 16 * run  # in the decompressed bytes
    assert second.packets == len(web_session()) and not second.truncated and second.warnings == []
    assert frames[-1] == (1, len(web_session()))
    assert first.sha256 == hashlib.sha256(junk.read_bytes()).hexdigest()


def test_junk_through_a_pipe_is_hashed_to_its_end(tmp_path: Path) -> None:
    data = _zeros_after(GOOD, 10 << 20)
    with fed(tmp_path, data) as path:
        cs = open_captures([str(path)])
        assert sum(1 for _ in cs) == len(GOOD)
    [info] = cs.inputs
    assert _gave_up(info)[0] == decode_mod.BAD_RUN_MAX
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)


def test_runs_shorter_than_the_bound_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Malformed frames in runs one shorter than the bound, between good ones: every frame is read,
    as the capture robustness and oracle tests show on the corpus with the real bound."""
    monkeypatch.setattr(decode_mod, "BAD_RUN_MAX", 20)
    short = b"\x02" * 10  # an Ethernet frame cut before its type: eth-short
    frames = [f for good in GOOD for f in (good, *[short] * 19)]
    cs = open_captures([str(write_pcap(tmp_path / "scattered.pcap", frames))])
    assert sum(1 for _ in cs) == len(GOOD)
    assert cs.inputs[0].packets == len(frames) and cs.inputs[0].warnings == []
    assert cs.stats.malformed == {"eth-short": 19 * len(GOOD)}
    # One more in a run: the walk gives up at the first run of 20.
    frames = [*GOOD[:3], *[short] * 20, *GOOD]
    cs = open_captures([str(write_pcap(tmp_path / "run.pcap", frames))])
    assert sum(1 for _ in cs) == 3
    assert _gave_up(cs.inputs[0])[::2] == (20, 23)


def test_frames_that_still_give_records_are_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orphan fragments are counted as malformed but audited: a capture of them is read to its end."""
    from tests.capture_factory import eth_ip, ipv4_fragments, tcp

    monkeypatch.setattr(decode_mod, "BAD_RUN_MAX", 5)
    frags = [eth_ip(f) for i in range(20)
             for f in ipv4_fragments("10.0.0.1", "10.0.0.2", 6, tcp("10.0.0.1", "10.0.0.2", 1, 2, "PA", b"x" * 40),
                                     ident=i)[1:]]
    cs = open_captures([str(write_pcap(tmp_path / "orphans.pcap", frags))])
    assert sum(1 for _ in cs) == len(frags)
    assert cs.inputs[0].warnings == [] and cs.stats.malformed == {"fragment-orphan": len(frags)}


@pytest.mark.tshark
def test_the_tshark_engine_gives_up_alike(tmp_path: Path) -> None:
    # Through tshark the same junk would be ~170,000 empty frames a second to the end of the file:
    # it gives up after the same run, says so, reads the next input, and the hash is the whole file's.
    data = _zeros_after(GOOD, 50 << 20)
    cap = tmp_path / "zeros.pcap"
    cap.write_bytes(data)
    after = write_pcap(tmp_path / "after.pcap", web_session())
    cs = CaptureSet([str(cap), str(after)], engine="tshark")
    frames = [(r.input_index, r.frame) for r in cs]
    first, second = cs.inputs
    run = decode_mod.BAD_RUN_MAX
    assert first.truncated and first.packets == len(GOOD) + run
    assert any(w.startswith(f"gave up after {run} records in a row") and w.endswith(f"frame {len(GOOD) + run}")
               for w in first.warnings), first.warnings
    assert sum(1 for i, _ in frames if i == 0) == len(GOOD)
    assert second.packets == len(web_session()) and frames[-1] == (1, len(web_session()))
    assert first.sha256 == hashlib.sha256(data).hexdigest()
