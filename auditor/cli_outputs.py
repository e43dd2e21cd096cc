"""Where the commands write: outputs checked before any work, then written whole or not at all.

The tool is often run as root, where a careless output name can destroy what it names. So an
output is written only to a regular file, new or existing, or to standard output (``-``); never over
a device, a directory, a FIFO, a socket, or a symbolic link to one (``-o /dev/null`` once replaced the
device node with a file). A symbolic link to a regular file is followed: the target gets the new
content, the link stays. No output may be an input (the captures, the roles file, the rule files,
every file of the catalog and template folders), compared by file identity as well as by path, so a
hard link or another spelling is caught; and no two outputs may be the same file.
"""

from __future__ import annotations

import contextlib
import gc
import os
import secrets
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from auditor import cli_signals
from auditor.errors import AuditorError

STDOUT = "-"
TEMP_PREFIX = ".pa-"
"""Temporary files beside an output: ``.pa-XXXXXXXX.tmp`` (new content) and ``.pa-XXXXXXXX.old``
(the previous content, until every output is in place). Short, so that they fit wherever an output
name of 255 bytes does."""
FOLDER_FILES_MAX = 10_000
"""Files of an input folder protected at most (a catalog has a few dozen; this bounds a mistaken
``--rules-dir /``)."""

Producer = Callable[[], str | bytes | Iterable[str]]
"""An output's content: text (one string or chunks, written as UTF-8) or bytes (Parquet)."""
Identity = tuple[int, int]


class OutputError(AuditorError):
    """An output that cannot or must not be written: one line naming it and why."""


@dataclass(frozen=True)
class Output:
    """One output of a command, checked."""

    option: str
    """The option that named it (``-o``, ``--json``...), for messages."""
    given: str
    """As the user spelled it."""
    path: Path | None
    """The regular file to write, every symbolic link resolved; None: standard output."""

    @property
    def shown(self) -> str:
        return "standard output" if self.path is None else self.given


@dataclass
class Protected:
    """Files no output may replace, by identity and by resolved path, each with what it is."""

    files: dict[Identity, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    catalog_folders: dict[Identity, str] = field(default_factory=dict)
    """Folders whose *.yaml files the next run reads as its catalog: no new YAML output there."""

    def add(self, what: str, path: str | Path, *, named: bool = False) -> None:
        """``what`` is the input (``the capture``), followed by its path unless ``named``."""
        text = what if named else f"{what} {path}"
        with contextlib.suppress(OSError, ValueError):
            st = os.stat(path)
            self.files.setdefault((st.st_dev, st.st_ino), text)
        with contextlib.suppress(OSError, ValueError):
            self.paths.setdefault(os.path.realpath(path), text)

    def add_folder(self, what: str, folder: Path, *, catalog: bool = False, subfolders: Sequence[str] = ()) -> None:
        """Every file under ``folder`` (``what``: "the catalog folder"); with ``catalog``, it and
        its ``subfolders`` also refuse new YAML outputs."""
        if catalog:
            for f in (folder, *(folder / s for s in subfolders)):
                with contextlib.suppress(OSError):
                    st = os.stat(f)
                    if stat.S_ISDIR(st.st_mode):
                        self.catalog_folders[(st.st_dev, st.st_ino)] = f"{what} {folder}"
        count = 0
        for top, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if count >= FOLDER_FILES_MAX:
                    return
                count += 1
                path = Path(top) / name
                self.add(f"{path}, a file of {what} {folder}", path, named=True)

    def add_catalog(self, rules_dir: Path | None) -> None:
        """The catalog folder in use (``--rules-dir``, else the bundled one) and its supplement."""
        from auditor import resources
        from auditor.catalog import SUPPLEMENT_DIR

        with contextlib.suppress(FileNotFoundError):
            folder = rules_dir if rules_dir is not None else resources.rules_dir()
            if folder.is_dir():
                self.add_folder("the catalog folder", folder, catalog=True, subfolders=[SUPPLEMENT_DIR])


def cannot_write(shown: str, e: OSError) -> str:
    """The one line for an output that could not be written."""
    return f"{shown}: cannot write: {e.strerror or e}"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "something other than a regular file"


_ONLY_REGULAR = "an output is written only to a regular file (or - for standard output)"


def _not_a_directory(given: str, path: Path) -> OutputError:
    for parent in [*reversed(path.parents), path]:
        if os.path.lexists(parent) and not os.path.isdir(parent):
            return OutputError(f"{given}: {parent} is not a directory")
    return OutputError(f"{given}: a folder of this path is not a directory")


def _existing_parent(path: Path) -> Path:
    for parent in path.parents:
        if os.path.lexists(parent):
            return parent
    return Path(".")


def check_output(option: str, given: str, *, make_folders: bool = True) -> Output:
    """What ``given`` may be written as; OutputError (one line) when it must not be. Missing folders
    of its path are made when it is written, with ``make_folders``."""
    if given == STDOUT:
        return Output(option, given, None)
    if not given:
        raise OutputError(f"{option}: an empty file name")
    path = Path(given)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError as e:
        raise _not_a_directory(given, path) from e
    except OSError as e:
        raise OutputError(cannot_write(given, e)) from e
    if st is None:
        if given.endswith(("/", os.sep)):
            raise OutputError(f"{given}: ends with a slash; an output names a file")
        parent = _existing_parent(path)
        if not make_folders and parent != path.parent:
            raise OutputError(f"{given}: cannot write: No such file or directory ({path.parent})")
        try:
            if not stat.S_ISDIR(os.stat(parent).st_mode):
                raise OutputError(f"{given}: {parent} is not a directory")
        except OSError as e:
            raise OutputError(cannot_write(given, e)) from e
    elif stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(path)
        try:
            st = os.stat(path)
        except FileNotFoundError as e:
            raise OutputError(f"{given}: is a symbolic link to a missing file ({target}); it is not followed "
                              "(remove the link, or create the file)") from e
        except OSError as e:
            raise OutputError(cannot_write(given, e)) from e
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{given}: is a symbolic link to {_kind(st.st_mode)} ({target}); {_ONLY_REGULAR}")
    elif not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{given}: is {_kind(st.st_mode)}; {_ONLY_REGULAR}")
    real = Path(os.path.realpath(path))
    folder = _existing_parent(real)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{given}: cannot write: Permission denied (in {folder})")
    return Output(option, given, real)


def _key(out: Output) -> tuple[object, ...]:
    """The file an output names: its identity if it exists, else its folder's and its name."""
    assert out.path is not None
    with contextlib.suppress(OSError):
        st = os.stat(out.path)
        return ("file", st.st_dev, st.st_ino)
    with contextlib.suppress(OSError):
        st = os.stat(out.path.parent)
        return ("new", st.st_dev, st.st_ino, out.path.name)
    return ("path", str(out.path))


def _stdout_identity() -> Identity | None:
    """The regular file standard output goes to (``> file``), if any."""
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test's capture)
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def check_outputs(named: Sequence[tuple[str, str]], protected: Protected, *,
                  make_folders: bool = True) -> list[Output]:
    """Check every (option, name) before any work: regular files only, no input, no file twice.
    Raises OutputError with one line."""
    outputs = [check_output(option, given, make_folders=make_folders) for option, given in named]
    seen: dict[tuple[object, ...], Output] = {}
    for out in outputs:
        if out.path is None:
            if ("stdout",) in seen:
                first = seen[("stdout",)]
                raise OutputError(f"-: standard output is named by both {first.option} and {out.option}; "
                                  "it can hold one of them")
            seen[("stdout",)] = out
            ident = _stdout_identity()
            if ident is None:
                continue
            keys: list[tuple[object, ...]] = [("file", *ident)]
        else:
            keys = _check_input(out, protected)
        for k in keys:
            earlier = seen.get(k)
            if earlier is not None:
                raise OutputError(f"{out.shown}: is the same file as {earlier.shown} ({earlier.option} and "
                                  f"{out.option}); each output needs a file of its own")
            seen[k] = out
    return outputs


def _check_input(out: Output, protected: Protected) -> list[tuple[object, ...]]:
    """Refuse an output that is an input, or a new YAML file in the catalog folder. Returns the
    keys that name the output's file, for the check that no two outputs share one."""
    assert out.path is not None
    st: os.stat_result | None = None
    with contextlib.suppress(OSError):
        st = os.stat(out.path)
    what = protected.paths.get(str(out.path))
    if st is not None:
        what = protected.files.get((st.st_dev, st.st_ino), what)
    if what is not None:
        raise OutputError(f"{out.given}: is {what}; inputs are never overwritten (choose another output name)")
    if st is None and out.path.suffix.lower() in (".yaml", ".yml"):
        folder = None
        with contextlib.suppress(OSError):
            pst = os.stat(out.path.parent)
            folder = protected.catalog_folders.get((pst.st_dev, pst.st_ino))
        if folder is not None:
            raise OutputError(f"{out.given}: would be read as part of {folder} by the next run "
                              "(choose another output name or folder)")
    return list(dict.fromkeys((_key(out), ("path", str(out.path)))))


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _keep_previous(out: Output) -> Path | None:
    """A hard link to what the output replaces (None: nothing there yet), to put back if a later
    output fails. Refuses what is no longer a regular file: the check was before the audit."""
    assert out.path is not None
    try:
        st = os.lstat(out.path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{out.given}: is now {_kind(st.st_mode)}; it was left as it is")
    while True:
        backup = out.path.parent / f"{TEMP_PREFIX}{secrets.token_hex(4)}.old"
        try:
            os.link(out.path, backup)
            return backup
        except FileExistsError:
            continue


def write_atomic(jobs: Sequence[tuple[Output, Producer]]) -> None:
    """Write every output to a temporary file beside it, then put them all in place: whole or not at
    all. Each output is produced only when its turn comes, as one string or in chunks. If one cannot be
    put in place, those already replaced get their previous content back. Standard output, a
    stream, is written last of all and before any file is put in place: if it fails, no file changes."""
    files = [(out, produce) for out, produce in jobs if out.path is not None]
    streams = [(out, produce) for out, produce in jobs if out.path is None]
    staged: list[tuple[str, Output]] = []
    fds: list[int] = []
    moved: list[tuple[Path, Path | None]] = []  # (output, backup of what it replaced)
    try:
        for out, _ in files:
            assert out.path is not None
            try:
                out.path.parent.mkdir(parents=True, exist_ok=True)
                with cli_signals.deferred():
                    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=out.path.parent)
                    staged.append((tmp, out))
                    fds.append(fd)
            except OSError as e:
                raise OutputError(cannot_write(out.given, e)) from e
        work: list[tuple[int | None, Producer, Output]] = [
            *((fd, produce, out) for fd, (out, produce) in zip(fds, files, strict=True)),
            *((None, produce, out) for out, produce in streams)]
        fds = []  # _produce_all closes them
        _produce_all(work)
        mode = _file_mode()
        for tmp, out in staged:
            assert out.path is not None
            try:
                os.chmod(tmp, mode)  # mkstemp makes 0600; an output gets the permissions any new file would
                with cli_signals.deferred():
                    backup = _keep_previous(out)
                    moved.append((out.path, backup))
                    os.replace(tmp, out.path)
            except OSError as e:
                raise OutputError(cannot_write(out.given, e)) from e
    except BaseException:
        with cli_signals.deferred():
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            for path, backup in reversed(moved):
                with contextlib.suppress(OSError):
                    if backup is not None:
                        os.replace(backup, path)
                    else:
                        path.unlink(missing_ok=True)
        raise
    finally:
        with cli_signals.deferred():
            for tmp, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            for _, backup in moved:
                if backup is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(backup)


def _produce(fd: int | None, produce: Producer) -> None:
    if fd is None:
        _to_stdout(produce)
        return
    with os.fdopen(fd, "wb") as fh:
        content = produce()
        if isinstance(content, bytes):
            fh.write(content)
        elif isinstance(content, str):
            fh.write(content.encode("utf-8"))
        else:
            for chunk in content:
                fh.write(chunk.encode("utf-8"))


def _to_stdout(produce: Producer) -> None:
    sys.stdout.flush()
    stream = getattr(sys.stdout, "buffer", None)
    content = produce()
    if isinstance(content, bytes):
        if stream is None:
            raise OutputError("-: binary output needs a byte stream on standard output")
        stream.write(content)
        stream.flush()
        return
    chunks = [content] if isinstance(content, str) else content
    for chunk in chunks:
        if stream is not None:
            stream.write(chunk.encode("utf-8"))
        else:
            sys.stdout.write(chunk)
    (stream or sys.stdout).flush()


FORK_RSS_MAX = 256 << 20
"""Outputs are written by forked processes only while this process holds less than this. A writer
reads every flow, and every object it reads has its reference count changed: the pages they sit on
are copied into the writer, so a large audit would be held once more by each writer
(bench/bench_hosts.py). Past it, the outputs are written one after the other."""


def _resident_bytes() -> int:
    """This process's resident memory (0 where /proc does not say)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _produce_all(jobs: list[tuple[int | None, Producer, Output]]) -> None:
    """Write each output into its staged file. With two cores and more than one output, all but the
    last are written by forked processes meanwhile (the HTML and the JSON of a large audit take a
    second or more each), unless this process is large (FORK_RSS_MAX); a child's failure comes back
    as one line. Standard output, if named, is the last and written by this process."""
    from auditor.parallel import cpus

    forking = len(jobs) > 1 and hasattr(os, "fork") and sys.platform.startswith("linux") and cpus() > 1 \
        and _resident_bytes() < FORK_RSS_MAX
    children: list[tuple[int, int, Output]] = []
    errors: list[str] = []
    if forking:
        # The collector of a writer would walk every object this process holds, writing to each one's
        # header and so copying every page of them: frozen, they are left alone (the writer's own
        # garbage is still collected). Unfrozen here once the writers are started.
        gc.freeze()
    try:
        for fd, produce, out in jobs[:-1] if forking else []:
            assert fd is not None
            sys.stdout.flush()
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child; its result is checked by the parent
                code = 0
                try:
                    os.close(rfd)
                    _produce(fd, produce)
                except BaseException as e:
                    code = 1
                    why = cannot_write(out.given, e) if isinstance(e, OSError) else \
                        f"{out.given}: internal error: {type(e).__name__}: {e}"
                    os.write(wfd, why.encode("utf-8", "replace")[:4000])
                os._exit(code)
            os.close(wfd)
            os.close(fd)
            children.append((pid, rfd, out))
        if forking:
            gc.unfreeze()
        for fd, produce, out in jobs[len(children):]:
            try:
                _produce(fd, produce)
            except OSError as e:
                raise OutputError(cannot_write(out.shown, e)) from e
    except BaseException:
        if forking:
            gc.unfreeze()  # a failed fork: never unfrozen above (twice does no harm)
        for pid, _, _ in children:  # their outputs are dropped: stop them now rather than wait
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        raise
    finally:
        for pid, rfd, out in children:
            with os.fdopen(rfd, "rb") as fh:
                why = fh.read().decode("utf-8", "replace")
            _, status = os.waitpid(pid, 0)
            if status:
                errors.append(why or f"{out.given}: the process writing it ended with status {status}")
    if errors:
        raise OutputError(errors[0])
