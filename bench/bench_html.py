"""Benchmark the HTML report: render time and size for a large audit, and Chromium's load time.

    python bench/bench_html.py [--flows 50000] [--unmapped 5000] [--no-browser] [--keep report.html]

Chromium's load time is measured twice: the wall time of ``--dump-dom`` (process start to DOM
dump, scripts run) and, over the DevTools pipe, navigation start to the report's ``data-ready``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from audit_doc_factory import make_audit_doc  # noqa: E402

from auditor.report.html import iter_html  # noqa: E402
from auditor.report.load import load_document  # noqa: E402


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=50_000, help="role flows (expected/unexpected)")
    ap.add_argument("--unmapped", type=int, default=5_000, help="unmapped flows")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium measurements")
    ap.add_argument("--keep", type=Path, help="also write the report here")
    args = ap.parse_args()

    t0 = time.perf_counter()
    doc = load_document(make_audit_doc(flows=args.flows, unmapped=args.unmapped, hostile=True))
    t1 = time.perf_counter()
    print(f"flows: {len(doc.flows):,} ({args.flows:,} role flows + {args.unmapped:,} unmapped)")
    print(f"build doc (as JSON data, then loaded): {t1 - t0:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        before = peak_mib()
        t1 = time.perf_counter()
        with path.open("w", encoding="utf-8", newline="") as fh:  # as the CLI writes it: in chunks
            for chunk in iter_html(doc):
                fh.write(chunk)
        t2 = time.perf_counter()
        print(f"iter_html, streamed to a file: {t2 - t1:.2f} s, peak RSS +{peak_mib() - before:.0f} MiB")
        html = path.read_text(encoding="utf-8")
        size = len(html.encode("utf-8"))
        print(f"HTML size: {size / 1e6:.2f} MB; server-rendered <tr>: {html.count('<tr'):,}")
        if args.keep:
            shutil.copyfile(path, args.keep)
        if args.no_browser:
            return 0
        import subprocess

        from test_report_browser import FLAGS, DevTools

        exe = shutil.which("chromium") or "/usr/bin/chromium"
        t3 = time.perf_counter()
        proc = subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={tmp}/dump", "--virtual-time-budget=5000", "--dump-dom",
             path.as_uri()], capture_output=True, text=True, timeout=300, check=False,
        )
        t4 = time.perf_counter()
        ready = 'data-ready="1"' in proc.stdout
        print(f"chromium --dump-dom (process start to DOM, incl. startup): {t4 - t3:.2f} s, ready={ready}")

        cdp = DevTools(Path(tmp))
        try:
            target = cdp.send("Target.createTarget", {"url": "about:blank"}, browser=True)
            cdp.session = cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                                   browser=True)["sessionId"]
            cdp.send("Page.enable")
            t5 = time.perf_counter()
            cdp.send("Page.navigate", {"url": path.as_uri()})
            cdp.wait_event("Page.loadEventFired", timeout=300)
            t6 = time.perf_counter()
            while cdp.eval("document.body.getAttribute('data-ready')") != "1":
                time.sleep(0.02)
            t7 = time.perf_counter()
            nodes = cdp.eval("document.getElementsByTagName('*').length")
            t8 = time.perf_counter()
            cdp.eval("""(() => { const b = document.querySelector('[data-table="unexpected"] .filter');
                b.value = 'tcp/22'; b.dispatchEvent(new Event('input')); })()""")
            while cdp.eval("document.getElementById('t-unexpected').dataset.visible") == str(
                    doc.summary.unexpected):
                time.sleep(0.01)
            t9 = time.perf_counter()
            cdp.eval("document.querySelector("
                     "'#t-role-virtual-delivery-agent-dst th[data-key=\"bytes\"]').click()")
            t10 = time.perf_counter()
        finally:
            cdp.close()
        print(f"CDP navigate -> load event: {t6 - t5:.2f} s; -> data-ready: {t7 - t5:.2f} s; "
              f"DOM elements: {nodes:,}")
        print(f"filter 'tcp/22' on unexpected: {t9 - t8:.2f} s; sort a role table by bytes: {t10 - t9:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
