"""Name evidence from DNS responses: µs per response, dpkt's object model (as names.py used it) against
the lean reader, on the DNS responses of a capture and of the public corpus.

    python bench/bench_names.py /tmp/dnslean.pcap [--corpus ../shared/corpus] [--repeat 7]
        [--before /path/to/old/checkout --roles roles.yaml --runs 3]

``--before``: also time the whole audit (`python -m auditor.cli CAPTURE --roles ROLES -j 1 -o x.html`)
in that checkout and in this one, alternately, each in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dpkt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditor.capture import open_captures
from auditor.errors import CaptureError
from auditor.model import IPPROTO_UDP, PacketRecord
from auditor.names import NameEvidence
from tests.dns_reference import Today as DpktNames  # names.py's DNS path before the lean reader


def capture_responses(path: str) -> list[PacketRecord]:
    """UDP port-53 payloads of an Ethernet pcap, read with dpkt.pcap.Reader (802.1Q included)."""
    records = []
    with open(path, "rb") as f:
        for frame, (ts, buf) in enumerate(dpkt.pcap.Reader(f), 1):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                continue
            udp = ip.data
            if isinstance(udp, dpkt.udp.UDP) and udp.sport == 53 and udp.data:
                src, dst = (ip.src, ip.dst)
                records.append(PacketRecord(0, frame, ts, src, dst, IPPROTO_UDP, len(ip), 53, udp.dport,
                                            payload_len=len(udp.data), payload=bytes(udp.data)[:2048]))
    return records


def corpus_responses(corpus: Path) -> list[PacketRecord]:
    records: list[PacketRecord] = []
    for p in sorted(corpus.rglob("*")):
        if not p.is_file() or p.name in ("MANIFEST.tsv", "README.md"):
            continue
        try:
            for r in open_captures([str(p)]):
                if r.sport == 53 and r.payload:
                    records.append(r)
        except CaptureError:
            pass
    return records


def per_response(kind: type[NameEvidence], records: list[PacketRecord], repeat: int) -> tuple[float, Any]:
    """Best of ``repeat`` passes (a fresh NameEvidence each), in µs per record; and the last stats."""
    best = float("inf")
    ev = kind()
    for _ in range(repeat):
        ev = kind()
        observe = ev.observe
        t = time.perf_counter()
        for rec in records:
            observe(rec)
        best = min(best, time.perf_counter() - t)
    return best / len(records) * 1e6, ev.stats


def report(label: str, records: list[PacketRecord], repeat: int) -> None:
    old, old_stats = per_response(DpktNames, records, repeat)
    new, new_stats = per_response(NameEvidence, records, repeat)
    print(f"{label}: {len(records):,} DNS responses; dpkt {old:.1f} µs, lean {new:.1f} µs per response "
          f"({old / new:.1f}x)")
    for key in ("dns_responses", "parse_errors", "names_kept", "names_refused"):
        print(f"    {key:14} dpkt {old_stats[key]:>7,}  lean {new_stats[key]:>7,}")


def end_to_end(before: Path, capture: str, roles: str, runs: int) -> None:
    here = Path(__file__).resolve().parent.parent
    times: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            for label, tree in (("before", before), ("after", here)):
                cmd = [sys.executable, "-m", "auditor.cli", capture, "--roles", roles, "-j", "1", "-o",
                       os.path.join(tmp, f"{label}.html"), "-q"]
                t = time.perf_counter()
                subprocess.run(cmd, cwd=tree, check=True, env={**os.environ, "PYTHONPATH": str(tree)},
                               stdout=subprocess.DEVNULL)
                times[label].append(time.perf_counter() - t)
    for label, values in times.items():
        print(f"audit {label}: " + " ".join(f"{v:.2f}" for v in values) + f" s (best {min(values):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture")
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--before", help="a checkout of the commit to compare the whole audit with")
    ap.add_argument("--roles", default="/work/shared/bench/realistic.roles.yaml")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    report(args.capture, capture_responses(args.capture), args.repeat)
    if Path(args.corpus).is_dir():
        report("corpus", corpus_responses(Path(args.corpus)), args.repeat)
    if args.before:
        end_to_end(Path(args.before), args.capture, args.roles, args.runs)


if __name__ == "__main__":
    main()
