"""Full-audit benchmark against tshark: `python bench/bench_audit.py [--packets 1000000 5000000]`.

For each size it writes (once, cached in bench/out/) a realistic capture with bench/make_capture.py,
holding the number of conversations fixed (--conversations), then measures in fresh processes:
  - pcap-audit: the full audit, capture -> verdicts -> report.html + audit.json (the product command),
    once per --jobs value, the values alternating within each repeat (these VMs drift)
  - tshark -n -q -z conv,tcp -z conv,udp on the same file
and prints packets/s, MB/s, wall seconds and peak RSS (from wait4's rusage of that process alone).
--form gives pcap-audit the same packets as pcapng, gzip, or a ring of four pcap files (cached too;
tshark always reads the pcap). --one-core adds `-j 1` pinned to one core (sched_setaffinity: the
hashing thread then shares it), alternating with the others, and prints how much faster each run is
than that: the speed-up from one core to all of them. The commands run as on a user's machine after
their first run: bytecode written and used (CHILD_ENV), the cache of what runs prepare for later ones
(auditor/cache.py) in its default place, warmed by the first repeat.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cpu_trace  # noqa: E402 (beside this script)

OUT = HERE / "out"
ROLES = """roles:
  Delivery Controller: [10.0.0.1, 10.0.0.2]
  Microsoft SQL Server: [10.0.0.3]
  StoreFront Server: [10.0.0.4]
  Citrix License Server: [10.0.0.5]
  Virtual Delivery Agent: [10.0.0.64/26, "2001:db8:0:1::/64"]
  User Device: [10.1.0.0/16, "2001:db8::/64"]
"""


CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
"""The commands' environment: bytecode written and used, as in an installed package (a machine whose
environment sets PYTHONDONTWRITEBYTECODE compiled every module from source in every run, ~0.1 s)."""


def measure(cmd: list[str], *, cores: set[int] | None = None) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS MiB, exit status, CPU seconds) of one command in a fresh process,
    on ``cores`` only if given. The command's processes (the -j workers, which a fork server starts:
    not its children) are sampled in /proc every 50 ms (bench/cpu_trace.py): CPU is wait4's user +
    system time of the command and the children it reaped, plus the last sample of each process
    further down; peak RSS is the largest of any one of them."""
    pin = None if cores is None else (lambda: os.sched_setaffinity(0, cores))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pin, env=CHILD_ENV)
    cpu: dict[int, float] = {}
    rss: dict[int, int] = {}
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        for p in cpu_trace.family(proc.pid)[1:]:
            got = cpu_trace.cpu_of(p)
            rss[p] = max(rss.get(p, 0), cpu_trace.peak_rss(p))
            if got is not None and _parent(p) != proc.pid:  # a direct child is in wait4's figures
                cpu[p] = got[1]
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 1):
        print(f"  {' '.join(cmd[:2])} failed ({proc.returncode}): {err.strip()[-300:]}", file=sys.stderr)
    own = usage.ru_utime + usage.ru_stime
    return wall, max(usage.ru_maxrss, *rss.values(), 0) / 1024, proc.returncode, own + sum(cpu.values())


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return 0
    return int(text[text.rindex(")") + 2:].split()[1])


def best_of(cmd: list[str], repeat: int) -> tuple[float, float, int, float, list[float]]:
    """Run ``repeat`` times: the fastest run's numbers, and every run's wall time (shared VMs vary)."""
    return best([measure(cmd) for _ in range(repeat)])


def best(runs: list[tuple[float, float, int, float]]) -> tuple[float, float, int, float, list[float]]:
    fastest = min(runs, key=lambda r: r[0])
    return (*fastest, [r[0] for r in runs])


def _records(cap: Path) -> tuple[bytes, object]:
    """The pcap file header of ``cap`` (little-endian microsecond, as make_capture writes) and an
    iterator of its records (ts seconds, ts microseconds, frame)."""
    fh = cap.open("rb")
    header = fh.read(24)

    def it() -> object:
        with fh:
            while len(head := fh.read(16)) == 16:
                sec, usec, caplen, _ = struct.unpack("<IIII", head)
                yield sec, usec, fh.read(caplen)
    return header, it()


def derive(cap: Path, form: str) -> list[Path]:
    """The inputs for --form, written from the pcap once and cached in bench/out/."""
    if form == "pcap":
        return [cap]
    if form == "ring":
        parts = [OUT / f"{cap.stem}-ring{i}.pcap" for i in range(4)]
        if not all(p.exists() for p in parts):
            header, records = _records(cap)
            per = (cap.stat().st_size + 3) // 4
            outs = [p.open("wb") for p in parts]
            for o in outs:
                o.write(header)
            i = written = 0
            for sec, usec, frame in records:  # type: ignore[attr-defined]
                if written >= per * (i + 1) and i < 3:
                    i += 1
                outs[i].write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
                written += 16 + len(frame)
            for o in outs:
                o.close()
        return parts
    out = OUT / (cap.stem + {"pcapng": ".pcapng", "gzip": ".pcap.gz"}[form])
    if not out.exists():
        tmp = out.with_name(out.name + ".part")
        if form == "gzip":
            with cap.open("rb") as src, gzip.open(tmp, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        else:  # one Ethernet interface in microseconds, Enhanced Packet Blocks
            _, records = _records(cap)
            with tmp.open("wb") as dst:
                dst.write(struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28))
                dst.write(struct.pack("<IIHHII", 1, 20, 1, 0, 0, 20))
                for sec, usec, frame in records:  # type: ignore[attr-defined]
                    ticks = sec * 1_000_000 + usec
                    pad = b"\0" * (-len(frame) % 4)
                    blk = 32 + len(frame) + len(pad)
                    dst.write(struct.pack("<IIIIIII", 6, blk, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame),
                                          len(frame)) + frame + pad + struct.pack("<I", blk))
        tmp.rename(out)
    return [out]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--conversations", type=int, default=140_000)
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--capture", type=Path,
                    help="an existing pcap (little-endian, microseconds) in place of bench/make_capture.py's, "
                         "e.g. the shared realistic one; --packets then only labels it")
    ap.add_argument("--roles", type=Path, help="its roles file (default: the bench capture's)")
    ap.add_argument("--unique-flows", action="store_true", help="worst case: nearly one flow per conversation")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1],
                    help="pcap-audit --jobs values (1: one process), measured alternately")
    ap.add_argument("--form", choices=("pcap", "pcapng", "gzip", "ring"), default="pcap",
                    help="the packets as one pcap, one pcapng, one gzip-compressed pcap, or four pcap files")
    ap.add_argument("--engine", default="fast")
    ap.add_argument("--one-core", action="store_true",
                    help="also -j 1 pinned to one core, for the speed-up from one core to all")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per measurement; the fastest is shown, with the spread of all")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    roles = OUT / "roles.yaml"
    roles.write_text(ROLES)
    rows = []
    for n in args.packets:
        cap = args.capture or OUT / f"bench-{n}-{args.conversations}{'-unique' if args.unique_flows else ''}.pcap"
        if not cap.exists():
            subprocess.run([sys.executable, str(HERE / "make_capture.py"), str(cap), "--packets", str(n),
                            "--conversations", str(args.conversations),
                            *(["--unique-flows"] if args.unique_flows else [])], check=True)
        inputs = derive(cap, args.form)
        size = sum(p.stat().st_size for p in inputs) / 1e6
        # -1 stands for -j 1 on one core (--one-core)
        variants = [*args.jobs, *([-1] if args.one_core else [])]
        runs: dict[int, list[tuple[float, float, int, float]]] = {j: [] for j in variants}
        one = {min(os.sched_getaffinity(0))}
        for _ in range(args.repeat):
            for j in variants:
                runs[j].append(measure([sys.executable, "-m", "auditor.cli", *map(str, inputs), "--roles",
                                        str(args.roles or roles), "-o", str(OUT / "report.html"), "--json",
                                        str(OUT / "audit.json"), "-q", "--engine", args.engine,
                                        "--jobs", str(1 if j < 0 else j)], cores=one if j < 0 else None))
        form = "" if args.form == "pcap" else f", {args.form}"
        for j in variants:
            wall, rss, _, cpu, walls = best(runs[j])
            how = "-j 1, one core" if j < 0 else f"-j {j}"
            rows.append((n, size, f"pcap-audit (full audit, {how}{form})", wall, rss, cpu, walls))
        if args.one_core:
            base = best(runs[-1])[0]
            for j in args.jobs:
                print(f"{n:>11,} packets{form}: -j {j} on {len(os.sched_getaffinity(0))} cores is "
                      f"{base / best(runs[j])[0]:.2f}x -j 1 on one core")
        if not args.no_tshark:
            tshark = ["tshark", "-n", "-q", "-r", str(cap), "-z", "conv,tcp", "-z", "conv,udp"]
            wall, rss, _, cpu, walls = best_of(tshark, args.repeat)
            rows.append((n, cap.stat().st_size / 1e6, "tshark -z conv,tcp -z conv,udp", wall, rss, cpu, walls))
    print(f"{'packets':>11} {'MB':>7}  {'tool':<40} {'seconds':>8} {'packets/s':>11} {'MB/s':>7} {'peak RSS':>9} "
          f"{'CPU s':>7}  all runs (s)")
    for n, size, tool, wall, rss, cpu, walls in rows:
        print(f"{n:>11,} {size:>7,.0f}  {tool:<40} {wall:>8.1f} {n / wall:>11,.0f} {size / wall:>7.1f} "
              f"{rss:>6,.0f} MiB {cpu:>7.1f}  {' '.join(f'{w:.1f}' for w in walls)}")
    for n in args.packets:
        t = next((r for r in rows if r[0] == n and r[2].startswith("tshark")), None)
        for a in (r for r in rows if r[0] == n and r[2].startswith("pcap-audit")):
            if t:
                print(f"{n:>11,} packets, {a[2]}: {t[3] / a[3]:.2f}x tshark's speed, {a[4] / t[4]:.2f}x its memory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
