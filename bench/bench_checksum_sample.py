"""The checksum sample (capture/kernel.py's CHECKSUM_POLICY): how many packets the kernel verifies the
transport checksum of, read as one input and as byte ranges of it, in a fresh process each.

    python bench/bench_checksum_sample.py CAPTURE [--parts 4] [--before /path/to/old/checkout]

Each read runs the pure-Python kernel (``PCAP_AUDIT_PURE=1``: its checksum function can be counted;
the compiled build applies the same rule) and prints the frames, the kernel's checksum verifications
(the general decoder's, which verifies every packet it decodes, are not counted) and their share.
``--parts N``: the capture is also cut into N byte ranges (capture/ranges.py), each read by itself;
their verifications add up to those of one read when the sample does not depend on where a range
starts. ``--before``: the same in an older checkout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

ONE_READ = """
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


def one_read(tree: Path, capture: str, parts: int) -> tuple[int, int, int, int]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PCAP_AUDIT_PURE": "1"}
    out = subprocess.run([sys.executable, "-c", ONE_READ, capture, str(parts)], cwd=tree, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    frames, verified, bad, sets = map(int, out)
    return frames, verified, bad, sets


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--before", type=Path, help="an older checkout to compare with")
    args = ap.parse_args()
    if not os.path.isfile(args.capture):
        print(f"bench_checksum_sample: no such capture: {args.capture}", file=sys.stderr)
        return 2
    trees = [("before", args.before.resolve()), ("now", HERE)] if args.before else [("now", HERE)]
    for label, tree in trees:
        for parts in sorted({1, args.parts}):
            frames, verified, bad, sets = one_read(tree, args.capture, parts)
            how = "one read" if parts == 1 else f"{sets} byte ranges"
            print(f"{label:<6} {how:<14} {frames:,} frames, the kernel verified {verified:,} "
                  f"({100 * verified / max(frames, 1):.2f} %), {bad:,} bad", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
