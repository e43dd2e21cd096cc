"""Captures in formats the fast reader does not read: named by Wireshark's ``captype``, read by tshark.

The fast reader reads pcap and pcapng (capture/pcapfile.py, capture/pcapng.py). Users also bring what
other tools wrote: Microsoft Network Monitor captures from Windows hosts, NetScaler (Citrix ADC)
``nstrace`` files, Solaris snoop, Sniffer, Observer, CommView... Wireshark's library reads them all.
So an input whose first bytes are neither pcap nor pcapng is offered to ``captype`` (shipped with
tshark, in Debian's wireshark-common; it opens the file and names its format without reading on:
~15 ms), and one it names is read by the tshark engine from the file itself (capture/tshark.py): some
of these formats (Network Monitor, CommView) keep a frame table that a pipe cannot seek to.

Standard input is not probed: it cannot be read twice.
"""

from __future__ import annotations

import shutil
import subprocess

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
        out = subprocess.run([exe, path], capture_output=True, timeout=60, check=False)
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


def hint() -> str:
    """What the refusal of an unknown file says about other formats."""
    if shutil.which("captype") is None or shutil.which("tshark") is None:
        return ("; a capture in another format (Network Monitor, NetScaler trace, snoop...) is read "
                "through tshark, which is not installed")
    return ""

