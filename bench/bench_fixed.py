"""What every run costs whatever its capture: whole audits of the small sample captures, against tshark.

    python bench/bench_fixed.py [--runs 10] [--before TREE]

Each sample of sample_pcaps/ (a few hundred KB) is audited by ``python -m auditor.cli CAPTURE --roles
ROLES -o OUT`` in a child process, and read by ``tshark -n -q -z conv,tcp -z conv,udp``, ``--runs``
times each, alternating; prints the best and the median wall seconds. Ours runs three ways: with the
cache of what runs prepare for later ones warm (auditor/cache.py: what a user's second and later runs
see), with it turned off (``PCAP_AUDIT_CACHE=0``: every run does that work, as a first run does), and,
with ``--before TREE``, a checkout of another commit (its own cache, warm), to compare two versions
in one run. Bytecode is written and used (PYTHONDONTWRITEBYTECODE is taken out of the children's
environment), as in an installed package; one run of each before the timed ones warms it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_audit import CHILD_ENV  # beside this script: bytecode written and used, as installed

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLES = ROOT / "sample_pcaps"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--before", type=Path, help="another checkout (built in place) to run beside this one")
    args = ap.parse_args()
    if shutil.which("tshark") is None:
        print("tshark is not installed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-fixed-"))
    base = CHILD_ENV
    ours = [sys.executable, "-m", "auditor.cli"]
    ways: dict[str, tuple[Path, dict[str, str]]] = {
        "pcap-audit, cache warm": (ROOT, {**base, "PCAP_AUDIT_CACHE": str(work / "cache")}),
        "pcap-audit, no cache": (ROOT, {**base, "PCAP_AUDIT_CACHE": "0"}),
    }
    if args.before is not None:
        ways["pcap-audit, --before tree"] = (args.before.resolve(), {**base, "PCAP_AUDIT_CACHE": str(work / "before")})
    print(f"{'capture':<22}{'way':<28}{'best s':>8}{'median s':>10}")
    try:
        for cap in sorted(SAMPLES.glob("*.pcapng")):
            roles = cap.with_name(cap.name.replace(".pcapng", ".roles.yaml"))
            commands = {name: ([*ours, str(cap), "--roles", str(roles), "-o", str(work / "report.html")], cwd, env)
                        for name, (cwd, env) in ways.items()}
            tshark = ["tshark", "-n", "-q", "-r", str(cap), "-z", "conv,tcp", "-z", "conv,udp"]
            commands["tshark"] = (tshark, ROOT, base)
            times: dict[str, list[float]] = {name: [] for name in commands}
            for i in range(args.runs + 1):
                for name, (cmd, cwd, env) in commands.items():
                    t = time.perf_counter()
                    subprocess.run(cmd, cwd=cwd, env=env, check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    if i:
                        times[name].append(time.perf_counter() - t)
            for name, ts in times.items():
                print(f"{cap.name:<22}{name:<28}{min(ts):>8.3f}{statistics.median(ts):>10.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.runs} runs each, alternating; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
