"""Memory on many distinct hosts: `python bench/bench_hosts.py [--hosts 500000 2000000]`.

For each N it writes (once, cached in a temporary folder) a pcap where N distinct client addresses
each hold one short exchange with one of a few servers: half a UDP request and its reply, a quarter a
whole TCP connection (handshake, FIN both ways), a quarter a SYN refused by RST; ~3 packets a host.
Then it runs the product command in a fresh process,

    python -m auditor.cli CAP --roles ROLES --json OUT.json -o OUT.html -q

and prints the wall time, the peak RSS wait4 reports for it (the largest of the process and the
children it reaped), the peak RSS of the main process alone and the peak PSS summed over the process
and its children (forked readers and output writers), both sampled from /proc/<pid>/smaps_rollup
every --every seconds. PSS counts a page shared by k processes as 1/k in each, so the sum is what the
process tree really holds; copy-on-write pages a forked writer touched count twice.

Frames are built from templates whose checksums are patched by the client's address words
(ones'-complement sums add), so writing 6M packets takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(tempfile.gettempdir()) / "pcap-audit-bench-hosts"
ROLES = """roles:
  Delivery Controller: [10.0.0.1, 10.0.0.2]
  Microsoft SQL Server: [10.0.0.3]
  StoreFront Server: [10.0.0.4]
  Citrix License Server: [10.0.0.5]
  Virtual Delivery Agent: [10.0.0.64/26]
  User Device: [10.64.0.0/10]
"""
# (server, protocol, port): what the clients talk to (StoreFront, VDAs over HDX, a DNS-free mix).
SERVICES = [
    (bytes([10, 0, 0, 4]), "tcp", 443),
    (bytes([10, 0, 0, 65]), "tcp", 2598),
    (bytes([10, 0, 0, 66]), "udp", 2598),
    (bytes([10, 0, 0, 67]), "udp", 1494),
    (bytes([10, 0, 0, 1]), "tcp", 80),
    (bytes([10, 0, 0, 5]), "tcp", 27000),
]
ETH = b"\x00\x16\x3e\x00\x00\x02\x00\x16\x3e\x00\x00\x01\x08\x00"


def _sum(data: bytes) -> int:
    """Ones'-complement sum of 16-bit words, not folded."""
    if len(data) % 2:
        data += b"\x00"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Template:
    """One frame with the client's address and port zeroed, and the partial checksums without them."""

    def __init__(self, from_client: bool, server: bytes, proto: int, sport: int, dport: int, flags: int,
                 payload: bytes, seq: int = 0, ack: int = 0) -> None:
        zero = bytes(4)
        src, dst = (zero, server) if from_client else (server, zero)
        if proto == 6:
            l4 = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 64240, 0, 0) + payload
            self.l4_csum = 16
        else:
            l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
            self.l4_csum = 6
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst)
        self.frame = bytearray(ETH + ip + l4)
        self.udp = proto == 17
        self.ip_sum = _sum(ip)
        self.l4_sum = _sum(src + dst + struct.pack("!BBH", 0, proto, len(l4)) + l4)
        self.addr_at = 14 + (12 if from_client else 16)
        self.port_at = 34 + (0 if from_client else 2)
        self.head = struct.pack("<II", len(self.frame), len(self.frame))

    def fill(self, addr_words: int, addr: bytes, port: int) -> bytes:
        f = self.frame
        f[self.addr_at:self.addr_at + 4] = addr
        f[self.port_at:self.port_at + 2] = port.to_bytes(2, "big")
        f[24:26] = _fold(self.ip_sum + addr_words).to_bytes(2, "big")
        c = _fold(self.l4_sum + addr_words + port)
        f[34 + self.l4_csum:36 + self.l4_csum] = (c or 0xFFFF if self.udp else c).to_bytes(2, "big")
        return bytes(f)


def _exchanges() -> list[list[tuple[float, Template]]]:
    """The exchanges a client may hold (by client number modulo 4), as (offset, template) lists."""
    out = []
    for i in range(4):
        if i < 2:  # a UDP request and its reply
            server, _, port = SERVICES[2 + i]
            out.append([(0.0, Template(True, server, 17, 0, port, 0, bytes(48))),
                        (0.0001, Template(False, server, 17, port, 0, 0, bytes(120)))])
        elif i == 2:  # a whole TCP connection
            server, _, port = SERVICES[0]
            cs, ss = 1000, 5000
            out.append([(0.0, Template(True, server, 6, 0, port, 0x02, b"", cs, 0)),
                        (0.00005, Template(False, server, 6, port, 0, 0x12, b"", ss, cs + 1)),
                        (0.0001, Template(True, server, 6, 0, port, 0x10, b"", cs + 1, ss + 1)),
                        (0.0002, Template(True, server, 6, 0, port, 0x11, b"", cs + 1, ss + 1)),
                        (0.0003, Template(False, server, 6, port, 0, 0x11, b"", ss + 1, cs + 2)),
                        (0.0004, Template(True, server, 6, 0, port, 0x10, b"", cs + 2, ss + 2))])
        else:  # a SYN refused by RST
            server, _, port = SERVICES[5]
            out.append([(0.0, Template(True, server, 6, 0, port, 0x02, b"", 7000, 0)),
                        (0.0001, Template(False, server, 6, port, 0, 0x14, b"", 0, 7001))])
    return out


def generate(path: Path, hosts: int) -> int:
    """Write the capture of ``hosts`` distinct clients (10.64.0.0/10 upwards); the packet count."""
    exchanges = _exchanges()
    tmp = path.with_name(path.name + ".part")
    count = 0
    t0 = 1_764_000_000.0
    with tmp.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        buf: list[bytes] = []
        for i in range(hosts):
            n = (10 << 24) + (64 << 16) + (i // 254 << 8) + i % 254 + 1  # never .0 or .255
            addr = n.to_bytes(4, "big")
            words = (n >> 16) + (n & 0xFFFF)
            port = 49152 + i % 16000
            start = t0 + i * 0.0005
            for offset, tpl in exchanges[i % 4]:
                ts = start + offset
                sec = int(ts)
                buf.append(struct.pack("<II", sec, int((ts - sec) * 1e6)) + tpl.head + tpl.fill(words, addr, port))
                count += 1
            if len(buf) >= 8192:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))
    tmp.rename(path)
    return count


def _children(pid: int) -> list[int]:
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def _rollup(pid: int) -> tuple[int, int]:
    """(Rss, Pss) in KiB of one process; (0, 0) once it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class Sampler(threading.Thread):
    """Peak RSS of the process and peak PSS summed over it and its descendants, every ``every`` s."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.main_rss = self.tree_pss = self.tree_rss = 0
        self.most_processes = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            tree, todo = [], [self.pid]
            while todo:
                p = todo.pop()
                tree.append(p)
                todo.extend(_children(p))
            rss = pss = 0
            for p in tree:
                r, s = _rollup(p)
                rss += r
                pss += s
                if p == self.pid:
                    self.main_rss = max(self.main_rss, r)
            self.tree_pss = max(self.tree_pss, pss)
            self.tree_rss = max(self.tree_rss, rss)
            self.most_processes = max(self.most_processes, len(tree))
            self.done.wait(self.every)


def run(cap: Path, roles: Path, out: Path, every: float, extra: list[str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "auditor.cli", str(cap), "--roles", str(roles), "--json", str(out / "audit.json"),
           "-o", str(out / "report.html"), "-q", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=HERE.parent)
    sampler = Sampler(proc.pid, every)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    sampler.done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        print(f"  failed ({code}): {err.strip()[-500:]}", file=sys.stderr)
    return {"wall": wall, "wait4_rss": usage.ru_maxrss / 1024, "main_rss": sampler.main_rss / 1024,
            "tree_rss": sampler.tree_rss / 1024, "tree_pss": sampler.tree_pss / 1024,
            "processes": sampler.most_processes, "cpu": usage.ru_utime + usage.ru_stime,
            "json_mb": (out / "audit.json").stat().st_size / 1e6 if code in (0, 1) else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, nargs="+", default=[500_000, 2_000_000])
    ap.add_argument("--every", type=float, default=0.2, help="seconds between /proc samples")
    ap.add_argument("--cache", type=Path, default=CACHE, help="folder of the generated captures")
    ap.add_argument("args", nargs="*", help="more options for pcap-audit (after --)")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    roles = args.cache / "roles.yaml"
    roles.write_text(ROLES)
    print(f"{'hosts':>10} {'packets':>10} {'MB':>6} {'seconds':>8} {'CPU s':>7} {'wait4 RSS':>10} "
          f"{'main RSS':>9} {'tree RSS':>9} {'tree PSS':>9} {'procs':>5} {'JSON MB':>8}")
    for hosts in args.hosts:
        cap = args.cache / f"hosts-{hosts}.pcap"
        if not cap.exists():
            t0 = time.perf_counter()
            n = generate(cap, hosts)
            print(f"wrote {cap}: {n:,} packets in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        packets = sum(len(e) for e in _exchanges()) * hosts // 4
        with tempfile.TemporaryDirectory(prefix="bench-hosts-") as tmp:
            r = run(cap, roles, Path(tmp), args.every, args.args)
        print(f"{hosts:>10,} {packets:>10,} {cap.stat().st_size / 1e6:>6,.0f} {r['wall']:>8.1f} {r['cpu']:>7.1f} "
              f"{r['wait4_rss']:>6,.0f} MiB {r['main_rss']:>5,.0f} MiB {r['tree_rss']:>5,.0f} MiB "
              f"{r['tree_pss']:>5,.0f} MiB {r['processes']:>5} {r['json_mb']:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
