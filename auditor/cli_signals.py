"""SIGTERM and SIGHUP stop a command the way Ctrl-C always did.

`timeout`, CI runners and systemd stop a process with SIGTERM, a closed terminal with SIGHUP. Their
default action ends the process at once: no `finally` runs, the temporary outputs stay, and the
processes it forked (writers, readers, decompressors, tshark) run on without it. Inside
``stopping()`` these signals, and SIGINT, raise ``Stopped`` in the main process instead. It
subclasses KeyboardInterrupt, so every cleanup path written for Ctrl-C runs for them too, and
the CLI exits with 128 + the signal's number, as a shell reports a process a signal ended.

Before raising, the handler kills every process this one started, so that no cleanup path waits
on a worker that still has minutes of reading to do (a process pool's shutdown, a writer's exit
status). SIGKILL, because a SIGTERM that reaches a child in the instant after its fork, before
Python resets the signals it inherited, is lost; none of them has anything of its own to clean up
(the temporary outputs are this process's to remove).

The exception can be raised anywhere in the main thread, also inside a weak reference's callback
or a ``__del__``, where Python prints it and carries on ("Exception ignored in..."). Such a stop is
signalled again a moment later (``_unraisable``), until the command has reported it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn

STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None
)
KILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived: raised in the main process, where every KeyboardInterrupt path cleans up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """128 + the signal's number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP."""
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


@dataclass
class _State:
    owner: int
    """The process that installed the handlers; a forked child is not it."""
    previous: dict[int, Any] = field(default_factory=dict)
    spared: frozenset[int] = frozenset()
    """Processes that were already children when the handlers were installed: not ours to stop."""
    fired: int = 0
    reported: bool = False
    """The command said it stopped: later signals change nothing."""
    depth: int = 0
    """Nesting of ``deferred()``."""
    pending: int = 0
    hook: Any = None
    """sys.unraisablehook before ``stopping()``."""


_state: _State | None = None


def _restore(st: _State) -> None:
    for signum, handler in st.previous.items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _after_fork_in_child() -> None:
    # A forked child keeps its parent's handlers. Its owner stops it with SIGTERM (a process pool's
    # terminate, capture.decompress.stop_child): that must end it at once, as it did before.
    global _state
    st = _state
    if st is not None and st.owner != os.getpid():
        _state = None
        _restore(st)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    st = _state
    if st is None or st.owner != os.getpid():  # a child that missed the fork hook: as before
        handler = st.previous.get(signum, signal.SIG_DFL) if st is not None else signal.SIG_DFL
        if callable(handler):
            handler(signum, frame)
            return
        signal.signal(signum, handler)
        if handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)
        return
    if st.fired:
        return  # cleanup of the first stop is under way: let it finish
    if st.depth:
        st.pending = st.pending or signum
        return
    _fire(st, signum)


def _fire(st: _State, signum: int) -> NoReturn:
    st.fired = signum
    stop_children(KILL, spared=st.spared)
    raise Stopped(signum)


def _silent(unraisable: Any) -> None:
    """sys.unraisablehook once a stop is reported: what it interrupted is of no further interest."""


def _unraisable(unraisable: Any) -> None:
    """sys.unraisablehook inside ``stopping()``: a Stopped that a callback swallowed is raised again."""
    st = _state
    if st is not None and st.owner == os.getpid() and st.fired and not isinstance(unraisable.exc_value, Stopped):
        return  # the debris of what the stop interrupted (a finalizer cut in two): not a second line
    if (st is not None and st.owner == os.getpid() and isinstance(unraisable.exc_value, Stopped)
            and not st.reported):
        st.fired = 0
        # Sent again once this hook has returned: a signal sent now would be handled at the hook's
        # next instruction, and swallowed with it. A real signal, to end a blocking call.
        signum = unraisable.exc_value.signum
        main = threading.main_thread().ident

        def again() -> None:
            if _state is st and main is not None and hasattr(signal, "pthread_kill"):
                signal.pthread_kill(main, signum)

        timer = threading.Timer(0.005, again)
        timer.daemon = True
        timer.start()
        return
    (st.hook if st is not None and st.hook is not None else sys.__unraisablehook__)(unraisable)


@contextlib.contextmanager
def stopping() -> Iterator[None]:
    """Inside: SIGINT, SIGTERM and SIGHUP raise ``Stopped`` in this process. A signal that was
    ignored when this began (``nohup``, a background job's SIGINT) stays ignored. Only the main
    thread can install handlers; elsewhere this does nothing."""
    global _state
    if _state is not None or threading.current_thread() is not threading.main_thread():
        yield
        return
    st = _State(owner=os.getpid(), spared=frozenset(descendants()))
    for sig in STOP_SIGNALS:
        handler = signal.getsignal(sig)
        if handler != signal.SIG_IGN:
            st.previous[sig] = handler
    st.hook = sys.unraisablehook
    _state = st
    try:
        sys.unraisablehook = _unraisable
        for signum in st.previous:
            signal.signal(signum, _on_signal)
        yield
    finally:
        _state = None
        sys.unraisablehook = st.hook
        if st.reported:  # the command ends because of a stop: another signal changes nothing
            for signum in st.previous:
                signal.signal(signum, signal.SIG_IGN)
            # Nor does the debris of what the stop interrupted: a finalizer cut in two (a
            # multiprocessing Finalize half made) fails later as "Exception ignored in ...", which
            # would be a second line after the one that says the command stopped.
            sys.unraisablehook = _silent
        else:
            _restore(st)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stop signal arriving inside waits for its end (bookkeeping that must not be cut in two:
    a temporary file created but not yet listed for removal). Once one stop is under way, later
    signals are ignored, so that its cleanup runs to the end."""
    st = _state
    if st is None or st.owner != os.getpid():
        yield
        return
    st.depth += 1
    try:
        yield
    finally:
        st.depth -= 1
        if not st.depth and st.pending and not st.fired:
            _fire(st, st.pending)


def descendants(pid: int | None = None) -> list[int]:
    """Every living process started by ``pid`` (default: this one), and those they started.
    Linux: from /proc; elsewhere this process's multiprocessing children."""
    root = os.getpid() if pid is None else pid
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return [p.pid for p in multiprocessing.active_children() if p.pid is not None] if pid is None else []
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # it ended meanwhile
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # the name, in parentheses, may hold anything
        if len(fields) > 1 and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def stop_children(signum: int = signal.SIGTERM, spared: frozenset[int] = frozenset()) -> list[int]:
    """Send ``signum`` to every process this one started, and those they started, but ``spared``.
    Returns the processes signalled."""
    sent = []
    for pid in descendants():
        if pid in spared:
            continue
        with contextlib.suppress(OSError):
            os.kill(pid, signum)
            sent.append(pid)
    return sent


def report_stop(e: KeyboardInterrupt, outcome: str) -> int:
    """Say on standard error, in one line, that the command stopped (and ``outcome``); return the
    exit status: 130 for Ctrl-C, 128 + the signal's number for the others."""
    st = _state
    if st is not None and st.owner == os.getpid():
        st.fired = st.fired or signal.SIGINT
        st.reported = True
    stopped = e if isinstance(e, Stopped) else None
    how = "interrupted" if stopped is None or stopped.signum == signal.SIGINT else f"stopped by {stopped.name}"
    with contextlib.suppress(OSError, ValueError):  # SIGHUP: the terminal may be gone
        print(f"pcap-audit: {how}; {outcome}", file=sys.stderr, flush=True)
    return 128 + signal.SIGINT if stopped is None else stopped.exit_status
