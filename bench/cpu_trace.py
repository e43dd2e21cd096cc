"""Where the cores go during a run: CPU seconds per process, sampled over time.

    python bench/cpu_trace.py [--every 1.0] -- pcap-audit CAPTURE --roles roles.yaml -j 2 -q

Runs the command and reads /proc (Linux) every ``--every`` seconds: the CPU each process of the run
(the command and its children: the split's worker, the decompressor, the output writers) used in
that interval, so that idle cores (reading from disk, a serial tail after the worker has finished)
show up. Prints one row per sample, then the wall time, the CPU time and peak RSS of each process
(VmHWM as last sampled: a peak in a process's last interval may be missed), and how many of the
machine's cores were busy on average. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """The process and its descendants, parents first."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(x) for x in fh.read().split())
        except OSError:
            continue
    return out


def cpu_of(pid: int) -> tuple[str, float] | None:
    """(name, CPU seconds so far: user + system, all threads) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return name, (int(fields[11]) + int(fields[12])) / HZ


def peak_rss(pid: int) -> int:
    """Peak resident memory of a live process so far, KiB (0: gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command given")
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    seen: dict[int, tuple[str, float]] = {}
    peak: dict[int, int] = {}
    order: list[int] = []
    while proc.poll() is None:
        time.sleep(args.every)
        row = []
        for pid in family(proc.pid):
            got = cpu_of(pid)
            if got is None:
                continue
            name, cpu = got
            if pid not in seen:
                order.append(pid)
            before = seen.get(pid, (name, 0.0))[1]
            seen[pid] = (name, cpu)
            peak[pid] = max(peak.get(pid, 0), peak_rss(pid))
            row.append(f"{pid}:{cpu - before:4.2f}")
        print(f"{time.perf_counter() - start:6.1f} s  " + "  ".join(row), flush=True)
    wall = time.perf_counter() - start
    total = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Workers forked by a fork server are not this process's descendants once reaped: their CPU
    # is the sum of the samples (at least), when that is more.
    cpu = max(total.ru_utime + total.ru_stime, sum(c for _, c in seen.values()))
    print(f"wall {wall:.2f} s, CPU {cpu:.2f} s (reaped: user {total.ru_utime:.2f}, system {total.ru_stime:.2f}), "
          f"{cpu / wall:.2f} of {os.cpu_count()} cores busy on average, exit status {proc.returncode}")
    for pid in order:
        name, last = seen[pid]
        print(f"  {pid} {name}: at least {last:.2f} CPU s, peak RSS at least {peak.get(pid, 0) / 1024:.0f} MiB "
              "(its last sample)")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
