"""Benchmark `pcap-audit diff` on two large audits: wall time and peak memory of the command.

    python bench/bench_diff.py [--flows 80000] [--changed 0.001] [--repeat 3] [--keep DIR]

Both audits are the real audit of sample_pcaps/cvad-onprem.pcapng with its flows repeated under
distinct initiators up to --flows; NEW has --changed of them with another outcome (and as many
removed and added). Each round runs ``python -m auditor.cli diff OLD NEW -o diff.html --json diff.json``
in a fresh process, as a pipeline would.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def sample_audit(folder: Path) -> dict[str, Any]:
    out = folder / "sample.json"
    subprocess.run([sys.executable, "-m", "auditor.cli", str(ROOT / "sample_pcaps" / "cvad-onprem.pcapng"),
                    "--roles", str(ROOT / "sample_pcaps" / "cvad-onprem.roles.yaml"), "--json", str(out),
                    "--no-html", "-q"], cwd=ROOT, check=True)
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return doc


def grown(doc: dict[str, Any], n: int) -> dict[str, Any]:
    base = doc["flows"]
    flows = [base[i % len(base)] | {"initiator": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"} for i in range(n)]
    return doc | {"flows": flows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=80_000, help="flows per audit")
    ap.add_argument("--changed", type=float, default=0.001, help="share of flows changed in NEW (1 = all)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write the audits and outputs here instead of a temporary folder")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        old = grown(sample_audit(folder), args.flows)
        step = max(1, round(1 / args.changed)) if args.changed > 0 else len(old["flows"]) + 1
        new_flows = []
        for i, f in enumerate(old["flows"]):
            if i % step == 0:
                f = f | {"outcome": "rejected" if f["outcome"] != "rejected" else "established"}
            elif i % step == 1:
                continue  # removed
            new_flows.append(f)
        added = [old["flows"][0] | {"initiator": f"172.16.{i >> 8 & 255}.{i & 255}",
                                    "classification": "unexpected", "failing": False}
                 for i in range(len(old["flows"]) - len(new_flows))]
        new = old | {"flows": new_flows + added}
        paths = {}
        for name, doc in (("old", old), ("new", new)):
            paths[name] = folder / f"{name}.json"
            paths[name].write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.0f} MB" for p in paths.values())
        print(f"{args.flows:,} flows per audit ({sizes}); {len(added):,} removed, {len(added):,} added, "
              f"1 in {step:,} changed")
        walls, peaks = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "auditor.cli", "diff", str(paths["old"]),
                 str(paths["new"]), "-o", str(folder / "diff.html"), "--json", str(folder / "diff.json"), "-q"],
                cwd=ROOT, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)}, check=False)
            walls.append(time.perf_counter() - t0)
            if proc.returncode not in (0, 1):
                print(proc.stderr, file=sys.stderr)
                return 1
            # The largest child so far: the diff rounds, and the audit of the sample before them (smaller).
            peaks.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
        print(f"diff: {statistics.median(walls):.2f} s median wall ({', '.join(f'{w:.2f}' for w in walls)}), "
              f"{max(peaks):.0f} MiB peak; diff.json {(folder / 'diff.json').stat().st_size / 1e6:.1f} MB, "
              f"diff.html {(folder / 'diff.html').stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
