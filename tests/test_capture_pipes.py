"""Inputs that can be read only once: a named pipe, ``<(zcat x.pcap.gz)`` (/dev/fd/N), /dev/stdin from
a pipe. Each is opened when its turn comes, looked at through a buffer the reader continues from (never
reopened), read by one process and hashed as it is read: the same audit and SHA-256 as the file it was
fed from, compressed or not. A NetScaler trace or another format through a pipe is one line and exit
status 2 (capture/__init__.py, ``CaptureSet._read_once``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.capture import CaptureSet, open_captures
from auditor.cli import main
from auditor.errors import CaptureError
from tests.capture_factory import compress, web_session, write_pcap
from tests.nstrace_factory import write_nstrace
from tests.test_cli_audit import CVAD, CVAD_ROLES, ERROR_PREFIX, run_cli, strip_run


class Feeder:
    """A thread that writes ``data`` into the named pipe ``path`` once a reader opens it."""

    def __init__(self, path: Path, *chunks: bytes) -> None:
        self.path = path
        self.thread = threading.Thread(target=self._run, args=(chunks,), daemon=True)
        self.error: BaseException | None = None

    def _run(self, chunks: tuple[bytes, ...]) -> None:
        try:
            with open(self.path, "wb") as out:
                for data in chunks:
                    out.write(data)
        except BrokenPipeError:  # the reader refused the input and closed its end
            pass
        except BaseException as e:  # reported by join()
            self.error = e

    def start(self) -> Feeder:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the writer is still blocked: the pipe was not read to its end"
        assert self.error is None, self.error


def fifo(folder: Path, name: str = "capture.fifo") -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


@contextlib.contextmanager
def fed(folder: Path, data: bytes, name: str = "capture.fifo") -> Iterator[Path]:
    path = fifo(folder, name)
    feeder = Feeder(path, data).start()
    yield path
    feeder.join()


def audit(tmp: Path, *captures: Path | str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    out = tmp / "audit.json"
    result = CliRunner().invoke(main, [*map(str, captures), "--roles", str(CVAD_ROLES), "--json", str(out),
                                       "--no-html", "-q", *extra])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def same_audit(piped: dict[str, Any], filed: dict[str, Any]) -> None:
    """The same document but for the inputs' paths (and what the run was called with)."""
    a, b = strip_run(piped), strip_run(filed)
    for doc in (a, b):
        doc["inputs"] = [{k: v for k, v in i.items() if k != "path"} for i in doc["inputs"]]
    assert a == b


@pytest.mark.parametrize("compression", ["none", "gzip", "bz2", "xz", "zstd"])
def test_a_named_pipe_is_audited_like_the_file(tmp_path: Path, compression: str) -> None:
    data = compress(CVAD.read_bytes(), compression)
    stored = tmp_path / "capture.stored"
    stored.write_bytes(data)
    filed = audit(tmp_path, stored)
    with fed(tmp_path, data) as path:
        piped = audit(tmp_path, path)
    same_audit(piped, filed)
    [inp] = piped["inputs"]
    assert inp["path"] == str(path) and inp["compression"] == compression
    assert inp["sha256"] == hashlib.sha256(data).hexdigest() and inp["size"] == len(data)


def test_a_pcap_through_a_pipe_gives_the_records_of_the_file(tmp_path: Path) -> None:
    cap = write_pcap(tmp_path / "web.pcap", web_session())
    data = compress(cap.read_bytes(), "gzip")
    (tmp_path / "web.pcap.gz").write_bytes(data)

    def read(path: Path) -> tuple[list[tuple[Any, ...]], Any]:
        cs = open_captures([str(path)])
        recs = [(r.frame, r.ts, r.src, r.dst, r.sport, r.dport, r.tcp_flags, r.payload) for r in cs]
        return recs, cs

    recs, cs = read(tmp_path / "web.pcap.gz")
    with fed(tmp_path, data) as path:
        precs, pcs = read(path)
    assert precs == recs and pcs.stats == cs.stats
    assert pcs.streams == {str(path)} and pcs.total_bytes == 0
    info, pinfo = cs.inputs[0], pcs.inputs[0]
    assert (pinfo.sha256, pinfo.size, pinfo.packets, pinfo.format, pinfo.compression) == (
        info.sha256, info.size, info.packets, "pcap", "gzip")


def test_dev_stdin_from_a_pipe(tmp_path: Path) -> None:
    data = compress(CVAD.read_bytes(), "gzip")
    stored = tmp_path / "capture.pcapng.gz"
    stored.write_bytes(data)
    filed = audit(tmp_path, stored)
    out = tmp_path / "piped.json"
    done = run_cli(["/dev/stdin", "--roles", CVAD_ROLES, "--json", out, "--no-html", "-q"], tmp_path, input=data)
    assert done.returncode == 0, done.stderr.decode()
    piped = json.loads(out.read_text())
    same_audit(piped, filed)
    assert piped["inputs"][0]["path"] == "/dev/stdin"


def test_process_substitution(tmp_path: Path) -> None:
    """What the shell hands over for <(zstd -c capture.pcapng): /dev/fd/N, a pipe's end, here written by
    a thread of the test while the command reads; given with --jobs 2, read by one process."""
    data = compress(CVAD.read_bytes(), "zstd")
    stored = tmp_path / "capture.pcapng.zst"
    stored.write_bytes(data)
    filed = audit(tmp_path, stored)
    rfd, wfd = os.pipe()
    out = tmp_path / "piped.json"

    def write() -> None:
        with os.fdopen(wfd, "wb") as w:
            w.write(data)

    proc = subprocess.Popen([sys.executable, "-m", "auditor.cli", f"/dev/fd/{rfd}", "--roles", str(CVAD_ROLES),
                             "--json", str(out), "--no-html", "-q", "-j", "2"],
                            cwd=Path(__file__).parent.parent, pass_fds=(rfd,), stderr=subprocess.PIPE)
    os.close(rfd)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    _, err = proc.communicate(timeout=120)
    writer.join(timeout=10)
    assert proc.returncode == 0, err.decode()
    same_audit(json.loads(out.read_text()), filed)


def test_pipes_fed_one_after_the_other(tmp_path: Path) -> None:
    """One writer that feeds its second pipe only once the first was read: a pipe is opened when its
    turn comes, not when the run starts (which would wait for that writer for ever)."""
    first, second = fifo(tmp_path, "a.fifo"), fifo(tmp_path, "b.fifo")
    one = write_pcap(tmp_path / "one.pcap", web_session()).read_bytes()
    two = CVAD.read_bytes()

    def feed() -> None:
        for path, data in ((first, one), (second, two)):
            with open(path, "wb") as out:
                out.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    cs = CaptureSet([str(first), str(tmp_path / "one.pcap"), str(second)])
    frames = [(r.input_index, r.frame) for r in cs]
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert [i.sha256 for i in cs.inputs] == [hashlib.sha256(d).hexdigest() for d in (one, one, two)]
    assert [i.packets for i in cs.inputs[:2]] == [len(web_session())] * 2
    assert frames[0] == (0, 1) and frames[-1][0] == 2


def test_a_netscaler_trace_through_a_pipe_is_one_line(tmp_path: Path) -> None:
    """nstrace.to_pcap seeks in the trace: through a pipe it is refused in one line, exit status 2,
    saying what it is and what to do; compressed, it is named after decompression."""
    from tests.capture_factory import eth_ipv4_tcp

    frames = [(1_700_000_000.0 + i, eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000 + i, 443, "S")) for i in range(50)]
    trace = write_nstrace(tmp_path / "trace.cap", frames, "nstrace35").read_bytes()
    for compression in ("none", "gzip"):
        with fed(tmp_path, compress(trace, compression), f"trace-{compression}.fifo") as path:
            result = CliRunner().invoke(main, [str(path), "--roles", str(CVAD_ROLES), "--no-html", "-q"])
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1
        assert result.output.startswith(f"{ERROR_PREFIX} {path}: cannot read a NetScaler trace 3.5 from a pipe")
        assert "give the trace as a file" in result.output


def test_other_bytes_through_a_pipe_are_one_line(tmp_path: Path) -> None:
    for data, says in ((b"GIF89a" + bytes(5000), "not a pcap or pcapng file (magic 0x47494638)"),
                       (compress(b"hello" * 100, "xz"), "not a pcap or pcapng file (xz-compressed, magic 0x68656c6c)"),
                       (b"", "empty file, not a pcap or pcapng file"),
                       (b"\x1f\x8b\x08\x00garbage", "gzip data cannot be decompressed")):
        with fed(tmp_path, data, f"{len(data)}.fifo") as path, pytest.raises(CaptureError) as err:
            list(open_captures([str(path)]))
        assert str(err.value).startswith(f"{path}: {says}"), err.value
        assert ("from a pipe only pcap and pcapng are read" in str(err.value)) == says.startswith("not a pcap")


def test_a_cut_compressed_stream_is_read_up_to_the_damage(tmp_path: Path) -> None:
    data = compress(CVAD.read_bytes(), "gzip")
    with fed(tmp_path, data[: len(data) // 2]) as path:
        cs = open_captures([str(path)])
        n = sum(1 for _ in cs)
    [info] = cs.inputs
    assert n > 0 and info.truncated and any("gzip data is damaged" in w for w in info.warnings)
    assert info.sha256 == hashlib.sha256(data[: len(data) // 2]).hexdigest()


def test_a_pipe_given_twice_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    path = fifo(tmp_path)  # no writer: opening it would wait for ever
    with pytest.raises(CaptureError, match=r"a pipe can be read only once, and it is given twice"):
        CaptureSet([str(path), str(path)])
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(CaptureError, match=rf"given twice \(as {path}\)"):
        CaptureSet([str(path), str(link)])


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_the_tshark_engine_reads_a_pipe(tmp_path: Path) -> None:
    data = compress(CVAD.read_bytes(), "bz2")
    stored = tmp_path / "capture.pcapng.bz2"
    stored.write_bytes(data)
    filed = audit(tmp_path, stored, extra=("--engine", "tshark"))
    with fed(tmp_path, data) as path:
        piped = audit(tmp_path, path, extra=("--engine", "tshark"))
    same_audit(piped, filed)
