"""Captures in formats the fast reader does not read: named by Wireshark's ``captype``, converted
to pcapng by its ``editcap`` (or else read by the tshark engine).

The fast reader reads pcap and pcapng (capture/pcapfile.py, capture/pcapng.py). Users also bring what
other tools wrote: Microsoft Network Monitor captures from Windows hosts, NetScaler (Citrix ADC)
``nstrace`` files, Solaris snoop, Sniffer, Observer, CommView... Wireshark's library reads them all.
So an input whose first bytes are neither pcap nor pcapng is offered to ``captype`` (shipped with
tshark, in Debian's wireshark-common; it opens the file and names its format without reading on:
~15 ms). One it names is copied frame for frame into a temporary pcapng by ``editcap -F pcapng``
(0.5 s for a 245 MB Network Monitor file of 1M packets) and read by the fast reader, names from
payloads included, while this process hashes the stored file; the copy is deleted after. Where
editcap cannot write a format's frames as pcapng, or the temporary folder has no room, the tshark
engine reads the file itself (capture/tshark.py; some of these formats, Network Monitor and
CommView, keep a frame table that a pipe cannot seek to).

NetScaler traces need none of this: nstrace.py names them by their signature record and converts
their Ethernet frames to pcap itself (about 1M records/s) in a second process, into a pipe that the
fast reader reads as it goes, so they are read without Wireshark, without a temporary copy, and at
the fast reader's speed (``NstraceStream``).

Standard input and pipes are not probed: they cannot be read twice (capture/__init__.py reads a pcap
or pcapng stream and refuses the others in one line).

Whatever is decompressed or copied into the temporary folder (a compressed NetScaler trace, editcap's
copy) is watched as it grows (``Growth``): it stops before the folder has less than RESERVE left,
and at a decompression bomb (RATIO_CAP).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any, BinaryIO, NamedTuple

from auditor.capture import nstrace
from auditor.capture.decompress import CHUNK, DECOMPRESS_ERRORS, start_child, stop_child
from auditor.capture.source import Source, sniff
from auditor.errors import CaptureError

NAMES = {
    "netmon1": "Microsoft Network Monitor 1.x",
    "netmon2": "Microsoft Network Monitor 2.x",
    "nstrace10": "NetScaler trace 1.0",
    "nstrace20": "NetScaler trace 2.0",
    "nstrace30": "NetScaler trace 3.0",
    "nstrace35": "NetScaler trace 3.5",
    "snoop": "Sun snoop",
    "ngsniffer": "Sniffer (DOS)",
    "ngwsniffer_1_1": "NetXRay / Sniffer (Windows) 1.1",
    "ngwsniffer_2_0": "Sniffer (Windows) 2.00x",
    "observer": "Viavi Observer",
    "commview-ncf": "TamoSoft CommView",
    "commview-ncfx": "TamoSoft CommView NCFX",
    "erf": "Endace ERF",
    "5views": "InfoVista 5View",
    "nettl": "HP-UX nettl",
    "lanalyzer": "Novell LANalyzer",
    "visual": "Visual Networks",
    "k12text": "K12 text",
    "rf5": "Tektronix K12xx",
    "iptrace_1_0": "AIX iptrace 1.0",
    "iptrace_2_0": "AIX iptrace 2.0",
    "peekclassic56": "Savvius *Peek classic",
    "peekclassic7": "Savvius *Peek classic",
    "peektagged": "Savvius *Peek tagged",
    "dbs-etherwatch": "DBS Etherwatch (VMS)",
    "vms": "VMS TCPIPtrace",
    "netscreen": "NetScreen snoop",
    "cosine": "CoSine IPSX L2 debug",
    "toshiba": "Toshiba Compact ISDN Router snoop",
    "eyesdn": "EyeSDN",
    "radcom": "RADCOM WAN/LAN analyzer",
    "tpcap": "TPCAP",
}
"""captype's short names (``editcap -F`` lists them) -> what a person calls the format. Only these
(and pcap/pcapng variants) are read: Wireshark also opens files that are no packet capture at all
(images and programs as "mime", MPEG streams, Android logs...), which stay refused."""


def _arg(path: str) -> str:
    """A path as an argument no tool takes for an option ("-r.cap"; captype reads "--" as a file)."""
    return "./" + path if path.startswith("-") else path


def describe(fmt: str) -> str:
    """A short name as a person calls it (captype's own name when we have no better one)."""
    return NAMES.get(fmt, fmt)


def identify(path: str) -> str | None:
    """captype's short name of a file's format when it is a capture Wireshark reads but not pcap or
    pcapng with the magic the fast reader knows; None when captype is not installed, cannot open
    the file, or does not know its format. ``path`` is never standard input."""
    exe = shutil.which("captype")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, _arg(path)], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.decode("utf-8", "replace").strip().splitlines()
    if out.returncode != 0 or len(line) != 1:
        return None
    # "path: type"; the path may itself hold ": ", the type never does.
    fmt = line[0].rpartition(": ")[2].strip()
    if fmt in NAMES or fmt.endswith("pcap") or fmt.startswith("pcapng"):
        return fmt
    return None


def hint(path: str) -> str:
    """What the refusal of a file in no format we read says about it: how to convert a Windows event
    trace (named by its extension: ETL files have no fixed first bytes), or that other capture
    formats need Wireshark's tools."""
    if path.lower().endswith(".etl"):
        return ("; a Windows event trace (netsh trace, pktmon) holds packets in ETW events: convert it on "
                "Windows with: pktmon etl2pcap FILE.etl --out FILE.pcapng")
    if shutil.which("captype") is None or shutil.which("tshark") is None:
        return ("; a capture in another format (Network Monitor, snoop, Sniffer...) is read with "
                "Wireshark's tools (captype, editcap, tshark), which are not installed")
    return ""


ROOM = 1.5
"""Free room the temporary folder needs for a converted copy, as a multiple of the file's size, before
it is begun (how much it needs is known only as it grows: ``Growth``)."""
RESERVE = 32 << 20
"""Room a copy growing in the temporary folder leaves free for everything else: it stops before."""
RATIO_CAP = 100
RATIO_FLOOR = 1 << 30
"""A copy in the temporary folder larger than RATIO_CAP times the stored file and than RATIO_FLOOR
bytes is taken for a decompression bomb (an 18.7 MB compressed trace made 4 GB of zeros): the input is
refused. Real captures compress 2 to 20 times; a copy of a GB or less is never refused."""


def free_room(folder: str) -> int:
    """Bytes free in ``folder``'s file system."""
    return shutil.disk_usage(folder).free


class NoRoom(OSError):
    """The temporary folder has no room left for a copy (``Growth``)."""


class Growth:
    """Watches a copy growing in the temporary folder ``folder`` for the input ``path`` (``stored``
    bytes as stored): ``check`` raises NoRoom when the next ``more`` bytes would leave the folder
    less than RESERVE, and CaptureError past the bomb cap (RATIO_CAP, RATIO_FLOOR)."""

    def __init__(self, path: str, folder: str, stored: int) -> None:
        self.path = path
        self.folder = folder
        self.stored = stored
        self.cap = max(RATIO_CAP * stored, RATIO_FLOOR)

    def check(self, size: int, more: int = 0) -> None:
        """The copy holds ``size`` bytes and is about to take ``more``."""
        if size + more > self.cap:
            raise CaptureError(
                f"{self.path}: decompresses to more than {_size(self.cap)}, over {RATIO_CAP} times its "
                f"{_size(self.stored)}: taken for a decompression bomb, not read")
        free = free_room(self.folder)
        if free - more < RESERVE:
            raise NoRoom(errno.ENOSPC, self.no_room(size, free))

    def no_room(self, size: int, free: int | None = None) -> str:
        left = "" if free is None else f", {_size(free)} left"
        return (f"the temporary folder {self.folder} ran out of room for it ({_size(size)} written{left}); "
                f"point TMPDIR at a folder with more room")


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def decompress_into(src: Source, out: BinaryIO, growth: Growth, warnings: list[str]) -> None:
    """The capture bytes of ``src`` into ``out`` (a file in ``growth.folder``), watched by ``growth``
    (NoRoom: the folder is full, or would be); damaged compressed data ends it with a warning."""
    written = 0
    while True:
        try:
            data = src.read(CHUNK)
        except DECOMPRESS_ERRORS as e:
            warnings.append(f"{src.compression} data is damaged ({e}); read what came before")
            return
        if not data:
            return
        growth.check(written, len(data))
        try:
            out.write(data)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoRoom(e.errno, growth.no_room(written)) from e
            raise
        written += len(data)


class Copy(NamedTuple):
    """Where the fast reader finds the frames of an input in another format (a temporary pcapng that
    the caller deletes, or NstraceStream's pipe), and what the input's evidence says of the stored
    file."""

    copy: str
    sha256: str
    """Of the input as stored."""
    compression: str
    how: str
    """How the copy was made, for the input's first warning."""
    warnings: list[str]
    """What the copying met (a damaged record, compressed data that ends early)."""


def convert(path: str) -> Copy | None:
    """A temporary pcapng holding the frames of ``path`` (``Copy``), or None when editcap is not
    installed, there is no room (before it begins, or as the copy grows: ``Growth``), or editcap
    fails (it cannot write every encapsulation as pcapng, or the file is damaged: the tshark engine
    then reads it, and says how far it got). CaptureError for a copy past the bomb cap."""
    exe = shutil.which("editcap")
    if exe is None:
        return None
    try:
        size = os.path.getsize(path)
        folder = tempfile.gettempdir()
        if free_room(folder) < ROOM * size:
            return None
        fd, copy = tempfile.mkstemp(prefix="pcap-audit-", suffix=".pcapng")
        os.close(fd)
    except OSError:
        return None
    growth = Growth(path, folder, size)
    proc = src = None
    try:
        proc = subprocess.Popen([exe, "-F", "pcapng", _arg(path), copy], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        src = Source(path, stored=True)  # hashed while editcap copies (hashing frees the GIL)
        while src.read(CHUNK):  # a read error is raised here, not swallowed
            growth.check(os.path.getsize(copy))
        digest, compression = src.finish(), src.compression
        while True:  # editcap (which decompresses what it reads) may still be writing: watch the copy
            try:
                _, err = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                growth.check(os.path.getsize(copy))
        growth.check(os.path.getsize(copy))  # what it wrote last (or all of it, quickly)
        if proc.returncode != 0 or err.strip():
            raise OSError(err.decode("utf-8", "replace").strip() or f"editcap ended with {proc.returncode}")
        return Copy(copy, digest, compression, "read from a pcapng copy that Wireshark's editcap made of it", [])
    except BaseException as e:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if src is not None:
            src.close_quietly()
        with contextlib.suppress(OSError):
            os.unlink(copy)
        if isinstance(e, OSError):
            return None
        raise


def stream_nstrace(path: str) -> NstraceStream | None:
    """``NstraceStream(path)``, or None when the temporary folder has no room to decompress a
    compressed trace and tshark can read it instead. Raises CaptureError without room and without
    tshark."""
    try:
        return NstraceStream(path)
    except OSError as e:
        if shutil.which("tshark") is not None:
            return None
        raise CaptureError(f"{path}: cannot convert this NetScaler trace to read it: {e.strerror or e}") from e


class NstraceStream:
    """A NetScaler trace converted to pcap (nstrace.to_pcap) by a second process into a pipe, which
    this process reads as the conversion goes (``path``: the pipe, for the fast reader): no temporary
    copy of the packets, and the conversion (~1 µs a record) runs beside the reading instead of
    before it. A thread of that process hashes the stored file meanwhile; it says what it found
    once its pcap has ended (``result``). A compressed trace is first decompressed into a temporary
    file there, hashing the stored bytes on the way, because the walk seeks: OSError here when the
    temporary folder has not even ROOM times the stored size free; ``result`` raises CaptureError
    when it ran out of room as the file grew, or the file grew past the bomb cap (``Growth``)."""

    def __init__(self, path: str) -> None:
        self.trace = path
        if sniff(path, 4)[1] != "none":
            need = ROOM * os.path.getsize(path)
            if free_room(tempfile.gettempdir()) < need:
                raise OSError(f"less than {need / 1e6:.0f} MB free in the temporary folder to decompress it")
        rmsg, wmsg = os.pipe()
        try:
            self._proc, self._data = start_child(_convert_nstrace, "pcap-audit-nstrace", path, wmsg)
        finally:
            os.close(wmsg)
        self._msg = rmsg
        self.path = f"/dev/fd/{self._data}"
        self._said: dict[str, Any] | None = None

    def result(self) -> Copy:
        """What the converting process said once its pcap ended: the stored file's SHA-256, its
        compression and the warnings. Raises its CaptureError (a trace damaged before its first time
        record, a file that cannot be read)."""
        if self._said is None:
            with os.fdopen(os.dup(self._msg), "rb") as f:
                text = f.read()
            stop_child(self._proc)
            try:
                self._said = json.loads(text)
            except ValueError:
                self._said = {"error": f"{self.trace}: the NetScaler trace's converting process failed"}
        said = self._said
        assert said is not None
        if said["error"]:
            raise CaptureError(said["error"])
        return Copy(self.path, said["sha256"], said["compression"], "read as pcap-audit converted it",
                    said["warnings"])

    def close(self) -> None:
        stop_child(self._proc)
        for fd in (self._data, self._msg):
            with contextlib.suppress(OSError):
                os.close(fd)


def _convert_nstrace(path: str, wmsg: int, wfd: int, rfd: int) -> None:
    """NstraceStream's process: the trace as pcap into ``wfd``, then a JSON line into ``wmsg``."""
    import signal

    os.close(rfd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reading process's to handle
    # Until the end is reached, what it says is that it failed (an error no handler below names).
    said: dict[str, Any] = {"error": f"{path}: the NetScaler trace's converting process failed",
                            "sha256": "", "compression": "none", "warnings": []}
    made = ""
    try:
        src = Source(path)  # decompresses by magic; hashes the stored bytes
        said["compression"] = src.compression
        trace = path
        if src.compression != "none":
            fd, made = tempfile.mkstemp(prefix="pcap-audit-", suffix=".nstrace")
            growth = Growth(path, tempfile.gettempdir(), src.size)
            try:
                with os.fdopen(fd, "wb") as out:
                    decompress_into(src, out, growth, said["warnings"])
            except NoRoom as e:
                raise CaptureError(f"{path}: cannot decompress this NetScaler trace to read it: {e.strerror}") from e
            except OSError as e:  # the last of it written as the file closes
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                size = os.path.getsize(made)
                raise CaptureError(f"{path}: cannot decompress this NetScaler trace to read it: "
                                   f"{growth.no_room(size)}") from e
            trace = made
            said["sha256"] = src.finish()
        else:
            src.hash_rest()  # on a thread (memory maps), beside the conversion: a 20 GB trace hashes for ~12 s
        with os.fdopen(wfd, "wb", buffering=CHUNK) as out:
            info = nstrace.to_pcap(trace, out)
        said["warnings"] += info.warnings
        if not made:
            said["sha256"] = src.finish()
        said["error"] = ""
    except CaptureError as e:
        said["error"] = str(e)
    except BrokenPipeError:
        said["error"] = f"{path}: the reading process stopped"
    except OSError as e:
        said["error"] = f"{path}: cannot read: {e.strerror or e}"
    finally:
        if made:
            with contextlib.suppress(OSError):
                os.unlink(made)
        with contextlib.suppress(OSError):
            os.write(wmsg, json.dumps(said).encode())
