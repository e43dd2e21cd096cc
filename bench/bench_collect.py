"""The capture phase alone: CPU seconds of ``audit.collect`` (conversations and name evidence), in a
fresh process per run, with the compiled build and the pure-Python one.

    python bench/bench_collect.py CAPTURE [--runs 3] [--before /path/to/old/checkout] [--apart] [--sample PARTS]

Each run reads CAPTURE once (``open_captures`` with the fast engine, the bundled catalog's server
ports, as the audit command's ``-j 1`` does) and prints collect's CPU seconds (time.process_time,
which includes the first garbage collection after the reading when collect leaves it to its
caller). ``--before``: the same in an older checkout (built in place: ``python setup.py build_ext
--inplace``), alternating with this one, run by run. Each process says which build it ran
(``PCAP_AUDIT_PURE=1`` for the second of each pair); the best of the runs is the figure to quote.

``--apart``: instead, the two halves of a read whose name evidence is read by a second process
(auditor/names_apart.py), compiled, each in a fresh process and alternating with ``collect``: the
reading process's (conversations alone, the input hashed on its thread as always) and the names
process's (names alone, no checksums, no hashing). The reader's saving is collect's CPU less its own.

``--sample PARTS``: instead, the checksum sample (capture/kernel.py's CHECKSUM_POLICY): how many
packets the kernel verifies the transport checksum of, in one read of CAPTURE and in PARTS byte
ranges of it each read by itself (capture/ranges.py), with the pure-Python kernel (its checksum
function can be counted; the compiled build applies the same rule). The general decoder, which
verifies every packet it decodes, is not counted. The byte ranges' verifications add up to one
read's when the sample does not depend on where a range starts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

ONE_RUN = """
import sys, time
from auditor.audit import collect
from auditor.capture import native, open_captures
from auditor.catalog import load_catalog
ports = load_catalog(None, []).server_ports()
capture = open_captures([sys.argv[1]], engine="fast")
t = time.process_time()
conv, names = collect(capture, ports)
print(f"{time.process_time() - t:.2f}", len(conv.flows), names.stats["names_kept"], native.KERNEL.compiled)
"""

APART_RUN = """
import sys, time
from auditor import names_apart
from auditor.audit import _conversations
from auditor.capture import native, open_captures
from auditor.catalog import load_catalog
from auditor.parallel import tune_gc
tune_gc()
ports = load_catalog(None, []).server_ports()
capture = open_captures([sys.argv[1]], engine="fast")
t = time.process_time()
if sys.argv[2] == "reader":  # the reading process's half, as audit._collect_apart reads it
    got = len(_conversations(capture, ports, None, None).flows)
else:
    got = names_apart.read_names([sys.argv[1]])[0].stats["names_kept"]
print(f"{time.process_time() - t:.2f}", got, native.KERNEL.compiled)
"""

SAMPLE = """
import sys
from auditor.capture import CaptureSet, kernel, ranges
counted = [0]
verify = kernel.checksum_bad
def checksum_bad(*args):
    counted[0] += 1
    return verify(*args)
kernel.checksum_bad = checksum_bad
path, parts = sys.argv[1], int(sys.argv[2])
chunks = ranges.plan([path], parts, min_bytes=1)
sets = [CaptureSet([path])] if parts == 1 else [CaptureSet.from_chunks([c]) for c in chunks]
frames = bad = 0
for cs in sets:
    for rec in cs:
        bad += rec.checksum_bad
    frames += cs.stats.frames
print(frames, counted[0], bad, len(sets))
"""


def one_run(tree: Path, capture: str, pure: bool) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PCAP_AUDIT_PURE": "1" if pure else "0"}
    out = subprocess.run([sys.executable, "-c", ONE_RUN, capture], cwd=tree, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    cpu, flows, names, compiled = out
    if compiled != str(not pure):
        raise SystemExit(f"bench_collect: {tree} ran the {'compiled' if compiled == 'True' else 'pure'} build: "
                         "build it in place (python setup.py build_ext --inplace)")
    return float(cpu), f"{int(flows):,} flows, {int(names):,} names"


def apart_run(capture: str, half: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(HERE), "PCAP_AUDIT_PURE": "0"}
    cpu, _, compiled = subprocess.run([sys.executable, "-c", APART_RUN, capture, half], cwd=HERE, env=env,
                                      check=True, capture_output=True, text=True).stdout.split()
    if compiled != "True":
        raise SystemExit("bench_collect: the pure build ran: build in place (python setup.py build_ext --inplace)")
    return float(cpu)


def sampled(tree: Path, capture: str, parts: int) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "PCAP_AUDIT_PURE": "1"}
    out = subprocess.run([sys.executable, "-c", SAMPLE, capture, str(parts)], cwd=tree, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    frames, verified, bad, sets = map(int, out)
    how = "one read" if parts == 1 else f"{sets} byte ranges"
    return (f"{how:<14} {frames:,} frames, the kernel verified {verified:,} ({100 * verified / max(frames, 1):.2f} %), "
            f"{bad:,} bad")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", type=Path, help="an older checkout to alternate with")
    ap.add_argument("--apart", action="store_true", help="the reader's and the names process's halves instead")
    ap.add_argument("--sample", type=int, metavar="PARTS", help="count the checksum sample instead")
    args = ap.parse_args()
    if not os.path.isfile(args.capture):
        print(f"bench_collect: no such capture: {args.capture}", file=sys.stderr)
        return 2
    trees = [("before", args.before.resolve()), ("now", HERE)] if args.before else [("now", HERE)]
    if args.sample:
        for label, tree in trees:
            for parts in sorted({1, args.sample}):
                print(f"{label:<6} {sampled(tree, args.capture, parts)}", flush=True)
        return 0
    times: dict[tuple[str, str], list[float]] = {}
    if args.apart:
        for run in range(args.runs):
            whole, _ = one_run(HERE, args.capture, False)
            reader, names = apart_run(args.capture, "reader"), apart_run(args.capture, "names")
            for label, cpu in (("collect", whole), ("reader", reader), ("names", names)):
                times.setdefault((label, "compiled"), []).append(cpu)
            print(f"run {run + 1} collect {whole:.2f}, the reader's half {reader:.2f}, the names process's {names:.2f} "
                  f"CPU s (load average {os.getloadavg()[0]:.2f})", flush=True)
    for run in range(0 if args.apart else args.runs):
        for label, tree in trees:
            for build, pure in (("compiled", False), ("pure", True)):
                cpu, what = one_run(tree, args.capture, pure)
                times.setdefault((label, build), []).append(cpu)
                print(f"run {run + 1} {label:<6} {build:<8} collect {cpu:.2f} CPU s ({what}; load average "
                      f"{os.getloadavg()[0]:.2f})", flush=True)
    print("\nbest of the runs (all of them):")
    for (label, build), got in times.items():
        print(f"  {label:<6} {build:<8} {min(got):.2f} CPU s ({' '.join(f'{t:.2f}' for t in got)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
