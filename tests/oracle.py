"""tshark as the oracle: what `tshark -z conv,tcp -z conv,udp` sees as conversations, we must see too.

Shared by tests/test_oracle.py (a deterministic sample of the corpus in CI) and bench/oracle_corpus.py
(the whole corpus, printing every difference).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from auditor.capture import open_captures
from auditor.conversations import ConversationBuilder
from auditor.errors import CaptureError

TSHARK = shutil.which("tshark")
_ROW = re.compile(r"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s+")
# Tunnel transports whose inner packets we audit instead of the outer conversation (SPEC §3).
TUNNEL_PORTS = {("udp", 4789), ("udp", 6081), ("udp", 8472), ("udp", 4790)}

Conv = tuple[str, str, int, str, int]  # proto, addr A, port A, addr B, port B (A < B canonical)


def _split(endpoint: str) -> tuple[str, int]:
    addr, _, port = endpoint.rpartition(":")
    return str(ipaddress.ip_address(addr)), int(port)


def _canon(proto: str, a: tuple[str, int], b: tuple[str, int], n_ab: int, n_ba: int) -> tuple[Conv, tuple[int, int]]:
    ka = (ipaddress.ip_address(a[0]).packed, a[1])
    kb = (ipaddress.ip_address(b[0]).packed, b[1])
    if ka == kb:  # a host talking to itself on one port: no direction to tell apart
        return (proto, a[0], a[1], b[0], b[1]), (n_ab + n_ba, 0)
    if (len(ka[0]), ka) <= (len(kb[0]), kb):
        return (proto, a[0], a[1], b[0], b[1]), (n_ab, n_ba)
    return (proto, b[0], b[1], a[0], a[1]), (n_ba, n_ab)


def tshark_conversations(path: Path, timeout: float = 120) -> Counter[tuple[Conv, tuple[int, int]]] | None:
    """tshark's TCP/UDP conversations with per-direction frame counts; None if tshark cannot read the file."""
    assert TSHARK
    proc = subprocess.run([TSHARK, "-n", "-q", "-r", str(path), "-z", "conv,tcp", "-z", "conv,udp"],
                          capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    per: dict[Conv, list[int]] = {}
    proto = ""
    for line in proc.stdout.splitlines():
        if line.startswith("TCP Conversations"):
            proto = "tcp"
        elif line.startswith("UDP Conversations"):
            proto = "udp"
        m = _ROW.match(line)
        if m and proto:
            try:
                a, b = _split(m.group(1)), _split(m.group(2))
            except ValueError:
                continue
            # "<-" frames went from B to A, "->" frames from A to B. tshark may list one 5-tuple in
            # several rows (it splits by its own conversation rules): sum them, as we do ours.
            conv, (n_ab, n_ba) = _canon(proto, a, b, int(m.group(4)), int(m.group(3)))
            acc = per.setdefault(conv, [0, 0])
            acc[0] += n_ab
            acc[1] += n_ba
    if proc.returncode != 0 and not per:
        return None
    return Counter({(k, (v[0], v[1])): 1 for k, v in per.items()})


@dataclass
class OracleDiff:
    ours: Counter[tuple[Conv, tuple[int, int]]]
    theirs: Counter[tuple[Conv, tuple[int, int]]]

    @property
    def missing(self) -> list[tuple[Conv, tuple[int, int]]]:
        """tshark conversations we do not have with the same per-direction counts."""
        return sorted((self.theirs - self.ours).elements())


def our_conversations(path: Path) -> Counter[tuple[Conv, tuple[int, int]]] | None:
    try:
        cs = open_captures([str(path)])
        b = ConversationBuilder(keep_connections=True, tcp_idle_timeout=1e12, udp_idle_timeout=1e12,
                                join_related=False)
        for rec in cs:
            b.feed(rec)
        res = b.finish()
    except CaptureError:
        return None
    # tshark's conversation table is per 5-tuple for the whole file (no timeouts, no port reuse split):
    # sum our connections by 5-tuple before comparing.
    per: dict[Conv, list[int]] = {}
    for c in res.connections:
        if c.protocol not in ("tcp", "udp"):
            continue
        conv, (n_ab, n_ba) = _canon(c.protocol, (c.orig_h, c.orig_p), (c.resp_h, c.resp_p), c.orig_pkts,
                                     c.resp_pkts)
        acc = per.setdefault(conv, [0, 0])
        acc[0] += n_ab
        acc[1] += n_ba
    return Counter({(k, (v[0], v[1])): 1 for k, v in per.items()})


def compare(path: Path) -> OracleDiff | None:
    theirs = tshark_conversations(path)
    ours = our_conversations(path)
    if theirs is None or ours is None:
        return None
    theirs = Counter({k: v for k, v in theirs.items() if (k[0][0], k[0][2]) not in TUNNEL_PORTS
                      and (k[0][0], k[0][4]) not in TUNNEL_PORTS})
    return OracleDiff(ours, theirs)
