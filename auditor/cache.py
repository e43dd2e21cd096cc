"""What one run prepares for the next: the bundled catalog as built and the report's compiled template.

Every audit loads the catalog (30 YAML files read and checked: ~0.05 s) and compiles the report's
template (~0.07 s), the same work each time; on a small capture they were a third of the run. The
results are kept in a folder of the user's own, and a later run whose inputs and code are the same
takes them from there (bench/README.md, "Fixed costs").

- **Where**: ``$PCAP_AUDIT_CACHE`` when it names a folder, else ``$XDG_CACHE_HOME/pcap-audit``, else
  ``~/.cache/pcap-audit``. ``PCAP_AUDIT_CACHE=0`` (or ``off``) turns it off. The folder is made
  private (0700); one that is not the user's own, or that others may write to, is not used:
  what it holds is run (a template's code) or unpickled (a catalog).
- **When an entry is used**: its name is the SHA-256 of everything the result depends on: this
  install's code (every module's size and modification time, ``fingerprint``), Python's version,
  and what the caller adds (the catalog's files and their bytes; the template's name, path and
  source). A change to any of them names another entry; nothing is ever used that was made from
  other inputs or by other code.
- **Never a failure**: a folder that cannot be made or written, an entry that cannot be read or is
  damaged: the run does the work itself, as without a cache. Entries are written whole (a
  temporary file renamed into place) and the oldest are removed past ``KEEP`` of a kind.

Only what a run computes from bundled inputs is kept; nothing from a capture or a roles file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

ENV = "PCAP_AUDIT_CACHE"
KEEP = 8
"""Entries kept per kind (catalog, template): an install's own, and a few others' (other rules
folders, other installs or versions side by side)."""
_OFF = ("0", "off", "no", "false")


def folder() -> Path | None:
    """The cache folder, made if missing; None when turned off or not safe to use."""
    given = os.environ.get(ENV, "").strip()
    if given.lower() in _OFF:
        return None
    if given:
        where = Path(given).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME", "").strip()
        where = (Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache") / "pcap-audit"
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(where)
    except (OSError, RuntimeError):  # RuntimeError: no home folder to expand
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022:
        return None
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return None
    return where


@functools.cache
def fingerprint() -> bytes:
    """This install's code: every module's path, size and modification time (the compiled ones
    too), and Python's version. An edit, a reinstall or an upgrade changes it."""
    return code_fingerprint(Path(__file__).resolve().parent)


def code_fingerprint(root: Path) -> bytes:
    """``fingerprint`` of the package folder ``root``."""
    seen = []
    for where, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith((".py", ".so", ".pyd")):
                path = os.path.join(where, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                seen.append(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\n")
    return hashlib.sha256("".join([sys.version, "\n", *sorted(seen)]).encode("utf-8", "surrogateescape")).digest()


def key(kind: str, *parts: bytes | str) -> str:
    """The entry's name for ``kind`` made of ``parts`` (each given whole, in order) by this code."""
    h = hashlib.sha256(fingerprint())
    for part in (kind, *parts):
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return f"{kind}-{h.hexdigest()}"


def load(name: str) -> bytes | None:
    """The entry ``name`` (from ``key``), or None: no cache, no such entry, or it cannot be read."""
    where = folder()
    if where is None:
        return None
    try:
        return (where / name).read_bytes()
    except OSError:
        return None


def store(name: str, data: bytes) -> None:
    """Keep ``data`` as the entry ``name``, whole or not at all; quietly nothing when it cannot."""
    where = folder()
    if where is None:
        return
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=where)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, where / name)
        tmp = None
        _prune(where, name.split("-", 1)[0])
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _prune(where: Path, kind: str) -> None:
    """Remove the oldest entries of ``kind`` past KEEP, and temporary files a run that was killed
    while storing left behind (an hour old)."""
    entries = []
    for path in where.glob(f"{kind}-*"):
        with contextlib.suppress(OSError):
            entries.append((path.stat().st_mtime_ns, path))
    entries.sort(reverse=True)
    gone = [path for _, path in entries[KEEP:]]
    stale = time.time_ns() - 3600 * 10**9
    for path in where.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime_ns < stale:
                gone.append(path)
    for path in gone:
        with contextlib.suppress(OSError):
            path.unlink()
