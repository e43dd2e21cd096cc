"""Reader benchmark: packets/s, MB/s and peak RSS of the capture engine on a generated pcap.

    python bench/bench_reader.py [--packets 1000000] [--file /tmp/bench.pcap] [--no-tshark]

Generates (once, cached by size) an Ethernet pcap of mixed TCP/UDP traffic, ~10% IPv6, some
802.1Q-tagged, payloads of 0..1400 bytes; then times, each in a fresh subprocess so peak RSS is
per-mode: the bare record walk, full decode to PacketRecord (capture/kernel.py) with and without
checksum verification, and `tshark -n -q -z conv,tcp -z conv,udp` for the ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def generate(path: Path, n: int) -> None:
    from capture_factory import eth_ipv4_tcp, eth_ipv4_udp, eth_ipv6_tcp, eth_ipv6_udp

    rnd = random.Random(1)
    sizes = [0, 0, 0, 40, 100, 300, 1400, 1400]
    templates = []
    for i in range(400):
        a, b = f"10.{i % 7}.{i % 200}.{i % 250 + 1}", f"192.168.{i % 3}.{i % 100 + 1}"
        sport, dport = 40000 + i, rnd.choice([443, 1494, 2598, 80, 389, 53, 123])
        pl = bytes(rnd.getrandbits(8) for _ in range(rnd.choice(sizes)))
        vlan = 100 + i % 4 if i % 5 == 0 else None
        r = rnd.random()
        if r < 0.1:
            f = (eth_ipv6_tcp(f"fd00::{i + 1:x}", "fd00::beef", sport, dport, "PA", pl) if i % 2 else
                 eth_ipv6_udp(f"fd00::{i + 1:x}", "fd00::beef", sport, dport, pl))
        elif r < 0.75:
            f = eth_ipv4_tcp(a, b, sport, dport, rnd.choice(["S", "SA", "A", "PA", "FA"]), pl, vlan=vlan)
        else:
            f = eth_ipv4_udp(a, b, sport, dport, pl, vlan=vlan)
        templates.append(f + b"\x00" * (60 - len(f)))  # Ethernet pads short frames to 60 bytes
    hdr = struct.Struct("<IIII")
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        parts = []
        t0 = 1_700_000_000
        for k in range(n):
            f = templates[rnd.randrange(400)]
            parts.append(hdr.pack(t0 + k // 10000, (k * 97) % 1_000_000, len(f), len(f)))
            parts.append(f)
            if len(parts) > 20000:
                fh.write(b"".join(parts))
                parts.clear()
        fh.write(b"".join(parts))


def run_mode(mode: str, path: str) -> None:
    """Child process: time one mode, print 'packets seconds maxrss_kib'."""
    t = time.process_time()
    n = 0
    if mode == "walk":
        from auditor.capture import kernel, pcapfile
        from auditor.capture.decode import Decoder
        from auditor.capture.decompress import CHUNK
        from auditor.capture.info import InputInfo, ReadStats
        from auditor.capture.source import Source

        class Count:
            """A kernel that decodes nothing: the walk alone (kernel.py's, in Python)."""

            laned = 0
            walk = kernel.Kernel.walk

            def decode(self, buf: bytes, off: int, caplen: int, ts: float, frame: int, lt: int) -> None:
                return None

        src = Source(path)
        dec = Decoder(ReadStats(), 0)
        dec.kernel = Count()  # type: ignore[assignment]
        walk = pcapfile.walk_pcap(src, src.read(CHUNK), InputInfo(path), dec, lambda: None)
        for _rec in walk:
            pass
        n = dec.stats.frames
    elif mode == "lane+core":
        # What an audit runs: the reader with the conversation core's fast lane, and the core itself.
        from auditor.audit import collect
        from auditor.capture import open_captures

        conv, _ = collect(open_captures([path]), frozenset())
        n = conv.stats.packets
    else:
        from auditor.capture import open_captures

        cs = open_captures([path], verify_checksums=(mode == "decode+checksum"))
        for _ in cs:
            n += 1
    dt = time.process_time() - t
    print(n, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--file", default="/tmp/pcap_audit_bench.pcap")
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_mode(args.child, args.file)
        return
    path = Path(args.file)
    marker = path.with_suffix(".n")
    if not (path.exists() and marker.exists() and marker.read_text() == str(args.packets)):
        t = time.perf_counter()
        generate(path, args.packets)
        marker.write_text(str(args.packets))
        print(f"generated {path} ({args.packets} packets) in {time.perf_counter() - t:.1f}s")
    mb = os.path.getsize(path) / 1e6
    print(f"file {path}: {mb:.1f} MB, {args.packets} packets")
    print("times are CPU seconds of the reading process, its read-ahead thread included (this VM's wall "
          "clock is noisy)")
    print(f"{'mode':<18} {'packets/s':>12} {'MB/s':>8} {'seconds':>8} {'peak RSS MiB':>13}")
    for mode in ("walk", "decode", "decode+checksum", "lane+core"):
        out = subprocess.run([sys.executable, __file__, "--file", str(path), "--child", mode],
                             capture_output=True, text=True, check=True).stdout.split()
        n, dt, rss = int(out[0]), float(out[1]), int(out[2])
        print(f"{mode:<18} {n / dt:>12,.0f} {mb / dt:>8.1f} {dt:>8.2f} {rss / 1024:>13.1f}")
    if not args.no_tshark:
        t = time.perf_counter()
        subprocess.run(["tshark", "-n", "-q", "-r", str(path), "-z", "conv,tcp", "-z", "conv,udp"],
                       capture_output=True, check=True)
        dt = time.perf_counter() - t
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"{'tshark conv':<18} {args.packets / dt:>12,.0f} {mb / dt:>8.1f} {dt:>8.2f} "
              f"{kids / 1024:>13.1f}"
              "  (peak RSS: largest child so far)")


if __name__ == "__main__":
    main()
