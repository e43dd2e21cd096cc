"""The serial tail of an audit: everything after the capture is read, phase by phase.

    python bench/bench_tail.py CAPTURE --roles ROLES [--repeat 3] [--out DIR] [--profile PHASE]

Reads the capture once (audit.collect, one process, as ``-j 1`` does), keeps the conversations and
names, then runs the tail ``--repeat`` times: ``judge`` (verdicts and rule status),
``build_document``, the HTML report and the JSON export each streamed into a file alone
(cli_outputs.write_atomic's _produce), both as the product command writes them (``outputs``:
cli_outputs.write_atomic, the JSON by a forked process beside the page when this process is under
cli_outputs.FORK_RSS_MAX), and the text summary. Prints each phase's CPU seconds of this process
(time.process_time) and wall seconds, per repeat and the best, and the product's tail (judge,
document, outputs and summary); then the resident memory after the capture was read and the
process's peak (the tail's share of it is the difference). ``--profile PHASE`` runs that phase once
more under cProfile and prints its top functions. ``--warm N``: then the two passes over the flows,
the export's (``FlowRows.json_texts``) and the page's (``flowscan.scan``, on the dicts of a page just
walked), in microseconds a flow: over every flow once, and over the first N again and again (the
same objects, in cache): what a pass costs for its instructions, and what for reading flows
scattered in memory.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import os
import pstats
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from auditor import __version__, conversations  # noqa: E402
from auditor.audit import collect, judge  # noqa: E402
from auditor.capture import open_captures  # noqa: E402
from auditor.catalog import load_catalog  # noqa: E402
from auditor.cli_audit import _summary_doc, _summary_lines  # noqa: E402
from auditor.cli_outputs import FORK_RSS_MAX, Output, _produce, _resident_bytes, write_atomic  # noqa: E402
from auditor.parallel import trim_heap, tune_gc  # noqa: E402
from auditor.report.document import build_document  # noqa: E402
from auditor.report.html import iter_html  # noqa: E402
from auditor.report.tabular import iter_json  # noqa: E402
from auditor.roles import load_roles  # noqa: E402

PHASES = ("judge", "document", "outputs", "html", "json", "summary")
PRODUCT = ("judge", "document", "outputs", "summary")
"""The phases of the product command's tail."""


def rss_mib() -> float:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _per_flow(run: Callable[[int, int], object], total: int, n: int, rounds: int = 5) -> tuple[float, float]:
    """(µs a flow over all ``total`` once, over the first ``n`` repeated), the best of ``rounds`` each."""
    once, again = [], []
    reps = max(1, total // n)
    for _ in range(rounds):
        t = time.perf_counter()
        for start in range(0, total, n):
            run(start, min(total, start + n))
        once.append((time.perf_counter() - t) / total * 1e6)
        t = time.perf_counter()
        for _ in range(reps):
            run(0, n)
        again.append((time.perf_counter() - t) / (reps * n) * 1e6)
    return min(once), min(again)


def warm(doc: Any, n: int) -> None:
    """--warm: the export's and the page's passes over the flows, cold and warm (see the module's doc)."""
    from auditor.report import verdict_walk
    from auditor.report.document import FlowRows
    from auditor.report.jsondata import FlowJson
    from auditor.report.view import build_view

    rows = doc.flows
    if not isinstance(rows, FlowRows):
        print("--warm: the document's flows are rows, not an audit's verdicts")
        return
    total, n = len(rows), max(1, min(n, len(rows)))
    text = FlowJson()
    rows.json_texts(text, 0, total)  # its look-up dicts filled, as after one export
    json_once, json_again = _per_flow(lambda a, b: rows.json_texts(text, a, b), total, n)
    walks: list[Any] = []
    take = verdict_walk._VerdictWalk.take

    def keep(self: Any, batch: Any) -> None:
        if not walks:
            walks.append(self)
        take(self, batch)

    verdict_walk._VerdictWalk.take = keep  # type: ignore[method-assign]
    try:
        build_view(doc)  # its dicts filled, as after one page
    finally:
        verdict_walk._VerdictWalk.take = take  # type: ignore[method-assign]
    w = walks[0]
    verdicts = rows.verdicts

    def scan(a: int, b: int) -> None:
        w.walk.own = w.flowscan.Own()  # the columns a pass appends to, dropped
        w.scan(verdicts[a:b])

    page_once, page_again = _per_flow(scan, total, n)
    print(f"\nper flow, µs (best of 5): every flow once / the first {n:,} repeated")
    print(f"  the export's pass (FlowRows.json_texts)  {json_once:6.2f} / {json_again:6.2f}")
    print(f"  the page's pass (flowscan.scan)          {page_once:6.2f} / {page_again:6.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--roles", required=True, type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, help="folder for report.html and audit.json (default: a temporary one)")
    ap.add_argument("--profile", choices=PHASES, help="run this phase once more under cProfile")
    ap.add_argument("--warm", type=int, default=0, metavar="N",
                    help="then time the passes over the flows over all once and over the first N repeated")
    args = ap.parse_args()

    tune_gc()
    catalog = load_catalog(None, [])
    roles = load_roles(args.roles, catalog.vocabulary)
    capture = open_captures([args.capture], engine="fast")
    t0 = time.perf_counter()
    conv, names = collect(capture, catalog.server_ports())
    conversations.share_counts(conv.flows.values())
    print(f"read {args.capture}: {len(conv.flows):,} flows in {time.perf_counter() - t0:.1f} s; "
          f"RSS {rss_mib():.0f} MiB, peak so far {peak_mib():.0f} MiB")
    base_peak = peak_mib()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-tail-"))
    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {}

    def do_judge() -> None:
        state["analysis"] = judge(conv, names, catalog, roles)

    def do_document() -> None:
        a = state["analysis"]
        started = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)  # fixed: runs of two versions compare byte for byte
        state["doc"] = build_document(
            version=__version__, started=started, finished=started, request_command="bench",
            engine="fast", catalog=catalog, roles=roles, capture=capture, conv=a.conv, names=a.names,
            verdicts=a.verdicts, rule_results=a.rules, resolver=a.resolver, vantage=a.vantage,
            vantage_source=a.vantage_source, extra_rules=[], features=a.features, warnings=a.warnings)

    def write(name: str, produce: Callable[[], Any]) -> None:
        fd = os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        _produce(fd, produce)

    def do_html() -> None:
        write("report.html", lambda: iter_html(state["doc"]))

    def do_json() -> None:
        write("audit.json", lambda: iter_json(state["doc"]))

    def do_outputs() -> None:
        doc = state["doc"]
        forked.append(_resident_bytes() < FORK_RSS_MAX)
        write_atomic([(Output("--json", "audit.json", out / "product-audit.json"), lambda: iter_json(doc)),
                      (Output("-o", "report.html", out / "product-report.html"), lambda: iter_html(doc))])

    def do_summary() -> None:
        state["lines"] = _summary_lines(_summary_doc(state["doc"]), ["report.html", "audit.json"])
        (out / "summary.txt").write_text("\n".join(state["lines"]) + "\n", encoding="utf-8")

    forked: list[bool] = []
    steps = {"judge": do_judge, "document": do_document, "html": do_html, "json": do_json, "outputs": do_outputs,
             "summary": do_summary}
    runs: list[dict[str, tuple[float, float]]] = []
    peaks: dict[str, float] = {}
    for _ in range(args.repeat):
        state.clear()
        gc.collect()
        trim_heap()  # each repeat's outputs from the resident size the product's would start from
        got: dict[str, tuple[float, float]] = {}
        for phase in PHASES:
            c0, w0 = time.process_time(), time.perf_counter()
            steps[phase]()
            got[phase] = (time.process_time() - c0, time.perf_counter() - w0)
            peaks.setdefault(phase, peak_mib())
        runs.append(got)

    print(f"\nthe tail, {args.repeat} repeat(s): CPU s / wall s (load average {os.getloadavg()[0]:.2f})")
    print(f"{'phase':<10}" + "".join(f"{'run ' + str(i + 1):>16}" for i in range(len(runs))) + f"{'best':>16}")
    for phase in (*PHASES, "tail"):
        cells = []
        for got in runs:
            cpu = sum(got[p][0] for p in PRODUCT) if phase == "tail" else got[phase][0]
            wall = sum(got[p][1] for p in PRODUCT) if phase == "tail" else got[phase][1]
            cells.append((cpu, wall))
        best = min(cells)
        print(f"{phase:<10}" + "".join(f"{c:>8.2f}/{w:<7.2f}" for c, w in cells) + f"{best[0]:>8.2f}/{best[1]:<7.2f}")
    print("tail: " + " + ".join(PRODUCT) + f", as the product command runs them (outputs: the JSON by a forked "
          f"process in {sum(forked)} of {len(forked)} runs)")
    print(f"\npeak RSS after reading {base_peak:.0f} MiB; after each phase of the first run: "
          + ", ".join(f"{p} {m:.0f}" for p, m in peaks.items()) + " MiB")
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    print("outputs: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(sizes.items())) + f" in {out}")
    print("summary:\n" + "\n".join(state["lines"][:6]))
    if args.warm:
        warm(state["doc"], args.warm)
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(steps[args.profile])
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(30)
        print(text.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
