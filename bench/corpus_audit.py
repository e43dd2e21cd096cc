"""Every corpus capture through the whole product: audit, then HTML, JSON and CSV rendering.

    python bench/corpus_audit.py [CORPUS_DIR]

Prints each crash (anything but a clean AuditorError refusal) and the totals; the never-crash test of
the reader alone is tests/test_capture_robust.py, which CI runs. Each audit is rendered as the
product command renders it (HTML, CSV, JSON), and its JSON read back and rendered as HTML again.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.audit import AuditRequest, run_audit
from auditor.errors import AuditorError
from auditor.report.html import render_html
from auditor.report.load import load_document
from auditor.report.tabular import render_csv, render_json


def main() -> int:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "corpus"
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.name not in ("MANIFEST.tsv", "README.md"))
    with tempfile.TemporaryDirectory() as tmp:
        roles = Path(tmp) / "roles.yaml"
        roles.write_text("roles:\n  StoreFront Server: [192.168.69.2, 10.0.0.1]\n  User Device: [192.168.0.0/16]\n")
        t0 = time.perf_counter()
        crashes = refused = 0
        for path in files:
            try:
                doc = run_audit(AuditRequest([str(path)], roles, jobs=1)).document
                render_html(doc)
                render_csv(doc)
                # The saved audit read back (as `pcap-audit diff` reads one) renders too.
                render_html(load_document(json.loads(render_json(doc))))
            except AuditorError:
                refused += 1
            except Exception:  # the point of this script: report any crash and go on
                crashes += 1
                print(f"CRASH {path.relative_to(corpus)}")
                traceback.print_exc(limit=4)
    print(f"{len(files)} captures, {crashes} crashes, {refused} refused with one line; "
          f"{time.perf_counter() - t0:.0f} s")
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
