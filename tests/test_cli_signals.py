"""SIGTERM and SIGHUP stop an audit the way Ctrl-C does (auditor/cli_signals.py).

`timeout`, CI runners and systemd send SIGTERM; a closed terminal sends SIGHUP. The audit must then
remove its temporary outputs, stop every process it started, say so in one line and exit with
128 + the signal's number. The end-to-end tests run a real audit of a capture large enough to still
be reading (or writing) when the signal comes, and look for leftovers: temporary files in the output
folder, and processes it started (found through /proc, before the signal) still alive after it.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor import cli_signals
from auditor.cli_signals import Stopped, deferred, stopping
from tests.test_cli_audit import _load_make_capture, env

LINUX = sys.platform.startswith("linux") and os.path.isdir("/proc")


# --- the mechanism, in this process ---------------------------------------------------------------


def default_stop_signals() -> None:
    """SIGTERM and SIGHUP as a shell leaves them: the tests start from there even when the suite
    itself runs where they are ignored (``nohup pytest``; an ignored signal stays ignored across
    fork and exec, and an audit keeps it so, test_an_ignored_signal_stays_ignored)."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) == signal.SIG_IGN:
            signal.signal(s, signal.SIG_DFL)


@pytest.fixture
def handlers() -> Iterator[None]:
    """This process's handlers for the stop signals, put back after the test whatever it did."""
    saved = {s: signal.getsignal(s) for s in cli_signals.STOP_SIGNALS}
    default_stop_signals()
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def spin(seconds: float = 2.0) -> None:
    """Run Python code (where a handler can raise) for up to ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_stop_signal_raises_stopped(handlers: None, signum: int, status: int) -> None:
    before = signal.getsignal(signum)
    with pytest.raises(Stopped) as caught, stopping():
        os.kill(os.getpid(), signum)
        spin()
    assert caught.value.signum == signum and caught.value.exit_status == status
    assert isinstance(caught.value, KeyboardInterrupt)  # every Ctrl-C cleanup path runs for it
    assert signal.getsignal(signum) == before


def test_a_signal_inside_deferred_waits_for_its_end(handlers: None) -> None:
    done = []
    with pytest.raises(Stopped), stopping():
        with deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            spin(0.2)
            done.append("the bookkeeping")
        spin()
    assert done == ["the bookkeeping"]


def test_later_signals_do_not_cut_the_cleanup_short(handlers: None) -> None:
    cleaned = []
    with pytest.raises(Stopped), stopping():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            spin()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # `timeout` signals the process, then its group
            spin(0.2)
            cleaned.append(True)
    assert cleaned == [True]


def test_a_stop_swallowed_by_a_callback_is_raised_again(handlers: None) -> None:
    # Python only prints an exception raised in a weak reference's callback ("Exception ignored");
    # a stop that lands there must not be lost.
    class Thing:
        pass

    def callback(_: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        spin(0.2)  # the handler raises here, inside the callback

    thing = Thing()
    ref = weakref.ref(thing, callback)
    with pytest.raises(Stopped), stopping():
        del thing
        gc.collect()
        spin()
    assert ref() is None


def test_debris_of_an_interrupted_finalizer_is_not_a_second_line(handlers: None) -> None:
    # A stop that cuts a finalizer in two (multiprocessing's Finalize half made) makes it fail later
    # with "Exception ignored in ...": once the stop is reported, that must not print a second line.
    seen: list[object] = []

    class Broken:
        def __del__(self) -> None:
            raise AttributeError("'Finalize' object has no attribute '_key'")

    saved = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with stopping():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                spin()
            except Stopped as e:
                assert cli_signals.report_stop(e, "no output written") == 143
        assert sys.unraisablehook is not seen.append  # replaced: the command ends because of a stop
        broken = Broken()
        del broken
        gc.collect()
        assert seen == []
    finally:
        sys.unraisablehook = saved


def test_an_ignored_signal_stays_ignored(handlers: None) -> None:
    # `nohup pcap-audit ...`: SIGHUP ignored from the start.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with stopping():
        os.kill(os.getpid(), signal.SIGHUP)
        spin(0.2)
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_has_the_default_handlers_again(handlers: None) -> None:
    # The processes the audit forks are stopped with SIGTERM by their owners (stop_child, the
    # pool): it must end them at once, not raise Stopped in them.
    rfd, wfd = os.pipe()
    with stopping():
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            ok = all(signal.getsignal(s) == signal.SIG_DFL for s in (signal.SIGTERM, signal.SIGHUP))
            os.write(wfd, b"1" if ok else b"0")
            os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as fh:
            said = fh.read()
        os.waitpid(pid, 0)
    assert said == b"1"


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_the_handler_stops_the_children_started_inside(handlers: None) -> None:
    earlier = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(Stopped), stopping():
            later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
            os.kill(os.getpid(), signal.SIGTERM)
            spin()
        assert later.wait(timeout=10) == -signal.SIGKILL
        assert earlier.poll() is None  # not the audit's: left alone
    finally:
        earlier.kill()
        earlier.wait()


# --- a real audit, stopped ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A capture that takes a few seconds to audit (300k packets, ~135 MB), and roles."""
    folder = tmp_path_factory.mktemp("large")
    cap = folder / "large.pcap"
    _load_make_capture().generate(cap, 300_000)
    roles = folder / "roles.yaml"
    roles.write_text("roles:\n  Delivery Controller: [10.0.0.1]\n", encoding="utf-8")
    return cap, roles


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def started_by(root: int) -> dict[int, str]:
    """The processes ``root`` started (and theirs), each with its start time: pid -> start."""
    parent: dict[int, int] = {}
    start: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := _proc_stat(int(name))) is not None and fields[0] != "Z":
            parent[int(name)], start[int(name)] = int(fields[1]), fields[19]
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        p = todo.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in found:
                found[child] = start[child]
                todo.append(child)
    return found


def alive(processes: dict[int, str]) -> list[int]:
    """Those of ``processes`` still running (not ended, not a zombie, not a new process on the pid)."""
    left = []
    for pid, start in processes.items():
        fields = _proc_stat(pid)
        if fields is not None and fields[0] != "Z" and fields[19] == start:
            left.append(pid)
    return left


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


OLD = {"r.html": b"old report\n", "a.json": b"old json\n", "a.csv": b"old csv\n"}


def stop_an_audit(large: tuple[Path, Path], out: Path, signum: int, phase: str, *, jobs: str = "2",
                  group: bool = False) -> tuple[int, str, dict[int, str]]:
    """Start an audit writing into ``out`` (which holds yesterday's outputs), send ``signum`` once
    it is in ``phase`` ("reading": a process it started exists; "writing": its temporary outputs
    exist), to it alone or to its whole process group. Returns (exit status, stderr, the processes
    it had started)."""
    cap, roles = large
    out.mkdir()
    for name, data in OLD.items():
        (out / name).write_bytes(data)
    proc = subprocess.Popen([sys.executable, "-m", "auditor.cli", str(cap), "--roles", str(roles), "-j", jobs,
                             "-o", str(out / "r.html"), "--json", str(out / "a.json"), "--csv", str(out / "a.csv")],
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=group,
                            preexec_fn=default_stop_signals)
    try:
        seen: dict[int, str] = {}
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            seen.update(started_by(proc.pid))
            if seen and (phase == "reading" or temporaries(out)):
                break
            time.sleep(0.002)
        assert proc.poll() is None, f"the audit ended before it was {phase}"
        seen.update(started_by(proc.pid))
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        assert proc.stderr is not None
        err = proc.stderr.read().decode("utf-8", "replace")
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return status, err, seen


def assert_stopped_cleanly(out: Path, status: int, err: str, seen: dict[int, str], signum: int) -> None:
    assert status == 128 + signum, err
    how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    assert err.splitlines() == [f"pcap-audit: {how}; no output written"], err
    assert temporaries(out) == []
    assert {name: (out / name).read_bytes() for name in OLD} == OLD
    time.sleep(0.2)  # a killed process ends at once; leave a moment to be sure
    assert alive(seen) == [], f"processes the audit started outlived it: {alive(seen)} of {sorted(seen)}"


@pytest.mark.skipif(not LINUX, reason="/proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_while_reading(large: tuple[Path, Path], tmp_path: Path, signum: int) -> None:
    # -j 2: a second process walks the later half of the capture meanwhile.
    out = tmp_path / "out"
    status, err, seen = stop_an_audit(large, out, signum, "reading")
    assert seen, "the audit started no second process"
    assert_stopped_cleanly(out, status, err, seen, signum)


@pytest.mark.skipif(not LINUX, reason="/proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_while_writing(large: tuple[Path, Path], tmp_path: Path, signum: int) -> None:
    # With two cores, forked processes write the JSON and CSV while this one writes the HTML.
    from auditor.parallel import cpus

    out = tmp_path / "out"
    status, err, seen = stop_an_audit(large, out, signum, "writing", jobs="1")
    assert seen or cpus() < 2, "no process was writing an output"
    assert_stopped_cleanly(out, status, err, seen, signum)


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_sigterm_to_the_whole_process_group(large: tuple[Path, Path], tmp_path: Path) -> None:
    # `timeout` and systemd signal every process of the group (or cgroup), children included.
    out = tmp_path / "out"
    status, err, seen = stop_an_audit(large, out, signal.SIGTERM, "reading", group=True)
    assert_stopped_cleanly(out, status, err, seen, signal.SIGTERM)


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_chunk_workers_end_when_the_audit_is_killed_outright(large: tuple[Path, Path], tmp_path: Path) -> None:
    # SIGKILL reaches no handler: the workers reading chunks notice that their parent is gone.
    cap, roles = large
    proc = subprocess.Popen([sys.executable, "-m", "auditor.cli", str(cap), "--roles", str(roles), "-j", "2",
                             "--no-html", "--json", str(tmp_path / "a.json"), "-q"], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 60
    while proc.poll() is None and not seen and time.monotonic() < deadline:
        seen.update(started_by(proc.pid))
        time.sleep(0.01)
    assert seen, "the audit started no worker"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive(seen) == []
