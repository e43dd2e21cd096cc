"""Compare pcap-audit's conversations with tshark's on every corpus capture and print each difference.

    python bench/oracle_corpus.py [CORPUS_DIR] > docs/oracle-differences.txt

tests/test_oracle.py runs the same comparison on a deterministic eighth of the corpus in CI.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.oracle import compare


def main() -> int:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "corpus"
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.name not in ("MANIFEST.tsv", "README.md"))
    t0 = time.perf_counter()
    compared = differ = unreadable = 0
    for path in files:
        diff = compare(path)
        if diff is None:
            unreadable += 1
            continue
        compared += 1
        if diff.missing:
            differ += 1
            print(f"{path.relative_to(corpus)}: {len(diff.missing)} tshark conversation(s) not matched, e.g. "
                  f"{diff.missing[0]}")
    print(f"# {len(files)} files, {compared} compared, {differ} differ, {unreadable} unreadable by one side; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
