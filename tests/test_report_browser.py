"""The HTML report in headless Chromium: the script runs, pages/sorts/filters, fetches nothing, and
hostile capture strings stay text.

No extra Python dependency: ``--dump-dom`` and ``--screenshot`` through the command line, and the
DevTools protocol over ``--remote-debugging-pipe`` (NUL-separated JSON on fds 3 and 4, so no
websocket is needed). Chromium is installed by CI; without it these tests fail when CI=true and
skip (with the reason shown) otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_doc_factory import HOSTILE_DNS, HOSTILE_SNI, make_audit_doc
from report_data import flow_records
from test_report_html import Page, count_text, parse
from test_report_stream import EDGE_VERDICTS

from auditor.report.document import FlowRows
from auditor.report.html import PAGE_SIZE, PRINT_ROWS, render_html
from auditor.report.load import load_document

pytestmark = pytest.mark.browser

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        msg = "chromium not found (apt-get install chromium): the browser tests of the HTML report cannot run"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return found


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return make_audit_doc(flows=400, unmapped=120, hostile=True, inputs=2)


@pytest.fixture(scope="module")
def report(doc: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(load_document(doc)), encoding="utf-8")
    return path


def run_chromium(args: list[str], tmp: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    profile = tmp / f"profile-{time.monotonic_ns()}"
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


# --- command line: DOM after scripts, and a screenshot --------------------------------------


def test_dump_dom_after_scripts(doc: dict[str, Any], report: Path, tmp_path: Path) -> None:
    proc = run_chromium(["--virtual-time-budget=5000", "--dump-dom", report.as_uri()], tmp_path)
    dom = proc.stdout
    assert "<body" in dom, proc.stderr[-2000:]
    assert re.search(r'<body[^>]*data-ready="1"', dom), "the report's script did not finish"
    page = parse(dom)
    s = doc["summary"]
    assert count_text(dom, "expected") == s["expected"]
    assert count_text(dom, "unexpected") == s["unexpected"]
    assert count_text(dom, "expected-failing") == s["expected_failing"]
    # The script rendered the first page of rows from the JSON block and set up the pager.
    unexpected = s["unexpected"]
    assert page.by_id("t-unexpected")["data-visible"] == str(unexpected)
    body = dom[dom.index('id="t-unexpected"'):]
    body = body[:body.index("</table>")]
    assert body.count("<tr") == 1 + min(PAGE_SIZE, unexpected)
    assert f"Rows 1–{min(PAGE_SIZE, unexpected)} of {unexpected}" in dom
    # Hostile strings: shown as text, never as elements.
    assert "img" not in {t for t, _ in page.elements}
    assert "<script>alert" not in dom and "<img" not in dom
    text = "".join(page.texts)
    assert HOSTILE_DNS in text and HOSTILE_SNI in text


def test_screenshot(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    proc = run_chromium(
        ["--virtual-time-budget=5000", f"--screenshot={shot}", "--window-size=1400,2000", report.as_uri()],
        tmp_path,
    )
    assert shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("PCAP_AUDIT_ARTIFACTS"):
        out = Path(__file__).resolve().parent.parent / "test-artifacts"
        out.mkdir(exist_ok=True)
        shutil.copyfile(shot, out / "report.png")


# --- DevTools protocol over a pipe ------------------------------------------------------------


class DevTools:
    """A minimal CDP client: Chromium reads commands on fd 3 and writes replies/events on fd 4,
    each message JSON followed by a NUL byte."""

    def __init__(self, tmp: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def on_fds_3_and_4() -> None:  # runs in the child, before exec
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)  # dup2'd descriptors are inheritable; our others are close-on-exec
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [chromium(), *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={tmp / 'cdp-profile'}",
             "--window-size=1400,1000", "about:blank"],
            preexec_fn=on_fds_3_and_4, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self._inbox.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._inbox.put(json.loads(msg))

    def _pump(self, deadline: float) -> None:
        msg = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        if msg is None:
            raise RuntimeError("chromium closed the DevTools pipe")
        if "id" in msg:
            self._replies[msg["id"]] = msg
        else:
            self.events.append(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False,
             timeout: float = 30) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while ident not in self._replies:
            self._pump(deadline)
        reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev["method"] == method:
                    return ev
            self._pump(deadline)

    def open_page(self, domains: tuple[str, ...]) -> None:
        """Attach to a new blank page and enable the given CDP domains on it."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                             browser=True)
        self.session = attached["sessionId"]
        for domain in domains:
            self.send(f"{domain}.enable")

    def eval(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise AssertionError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, queue.Empty, OSError):
            self.send("Browser.close", browser=True, timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)


@pytest.fixture(scope="module")
def loaded(report: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    cdp = DevTools(tmp_path_factory.mktemp("cdp"))
    try:
        cdp.open_page(("Runtime", "Log", "Network", "Page"))
        navigate(cdp, report)
        yield cdp
    finally:
        cdp.close()


def navigate(cdp: DevTools, path: Path) -> None:
    """Open the report and wait until its script has run (data-ready)."""
    cdp.send("Page.navigate", {"url": path.as_uri()})
    cdp.wait_event("Page.loadEventFired", timeout=60)
    deadline = time.monotonic() + 30
    while cdp.eval("document.body && document.body.getAttribute('data-ready')") != "1":
        assert time.monotonic() < deadline, "the report's script never set data-ready"
        time.sleep(0.1)


def test_no_console_errors_no_dialogs(loaded: DevTools) -> None:
    bad = [e for e in loaded.events if e["method"] == "Runtime.exceptionThrown"
           or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
           or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
           or e["method"] == "Page.javascriptDialogOpening"]
    assert bad == []
    assert loaded.eval("typeof window.__pwned") == "undefined"
    assert loaded.eval("document.querySelectorAll('img, iframe, object, embed, link').length") == 0


def test_no_network_request_but_the_file(loaded: DevTools, report: Path) -> None:
    urls = [e["params"]["request"]["url"] for e in loaded.events
            if e["method"] == "Network.requestWillBeSent"]
    assert urls == [report.as_uri()]


def test_script_cells_match_server_cells(loaded: DevTools, report: Path) -> None:
    """report.js rebuilds the first page; it must show exactly what html.py rendered."""
    server = report.read_text(encoding="utf-8")
    js = """JSON.stringify(Array.from(document.querySelectorAll('table[id^="t-"]')).map(t =>
        [t.id, Array.from(t.tBodies[0].rows).map(r => r.innerHTML)]))"""
    for table_id, rows in json.loads(loaded.eval(js)):
        chunk = server[server.index(f'id="{table_id}"'):]
        chunk = chunk[chunk.index("<tbody>") + 7:chunk.index("</tbody>")]
        server_rows = [m.group(1) for m in re.finditer(r"<tr[^>]*>(.*?)</tr>", chunk, re.S)]
        assert [normal(r) for r in rows] == [normal(r) for r in server_rows], table_id


def normal(html: str) -> str:
    """Serialisation differences only: quotes in text, attribute entity style."""
    p = Page()
    p.feed(html)
    return json.dumps([p.elements, [t for t in p.texts if t.strip()]])


def test_sort_by_clicking_a_header(loaded: DevTools, doc: dict[str, Any]) -> None:
    col = ("Array.from(document.querySelectorAll('#t-unexpected thead th'))"
           ".findIndex(th => th.dataset.key === 'packets')")
    read = f"""Array.from(document.querySelectorAll('#t-unexpected tbody tr')).map(
        tr => Number(tr.cells[{col}].textContent.replace(/,/g, '')))"""
    header = "document.querySelector('#t-unexpected th[data-key=\"packets\"]')"
    loaded.eval(header + ".click()")
    asc = loaded.eval(read)
    expected = sorted(f["packets"] for f in doc["flows"] if f["classification"] == "unexpected")
    assert asc == expected[:PAGE_SIZE]
    assert loaded.eval(header + ".getAttribute('aria-sort')") == "ascending"
    loaded.eval(header + ".click()")
    assert loaded.eval(read) == sorted(expected, reverse=True)[:PAGE_SIZE]


def test_filter_box(loaded: DevTools, doc: dict[str, Any]) -> None:
    def set_filter(text: str) -> None:
        loaded.eval(f"""(() => {{ const box = document.querySelector('[data-table="unexpected"] .filter');
            box.value = {json.dumps(text)}; box.dispatchEvent(new Event('input')); }})()""")
        time.sleep(0.2)

    want = [f for f in doc["flows"]
            if f["classification"] == "unexpected" and f["reason"] == "peer-not-in-roles"]
    set_filter("peer-not-in-roles")
    assert loaded.eval("document.getElementById('t-unexpected').dataset.visible") == str(len(want))
    shown = loaded.eval("document.querySelectorAll('#t-unexpected tbody tr').length")
    assert shown == min(PAGE_SIZE, len(want))
    set_filter("peer-not-in-roles tcp/22")
    both = [f for f in want if f["protocol"] == "tcp" and f["port"] == 22]
    assert loaded.eval("document.getElementById('t-unexpected').dataset.visible") == str(len(both))
    set_filter("no such thing anywhere")
    empty = loaded.eval("document.querySelector('#t-unexpected tbody').textContent")
    assert empty == "No row matches the filter."
    set_filter("")
    total = sum(1 for f in doc["flows"] if f["classification"] == "unexpected")
    assert loaded.eval("document.getElementById('t-unexpected').dataset.visible") == str(total)


def test_pages(loaded: DevTools) -> None:
    rows = "document.querySelectorAll('#t-unmapped tbody tr').length"
    assert loaded.eval(rows) == PAGE_SIZE
    loaded.eval("document.querySelector('[data-table=\"unmapped\"] .next').click()")
    assert loaded.eval(rows) == PAGE_SIZE
    assert loaded.eval("document.querySelector('[data-table=\"unmapped\"] .pager-info').textContent") \
        .startswith(f"Rows {PAGE_SIZE + 1}–{2 * PAGE_SIZE} of 120")
    loaded.eval("document.querySelector('[data-table=\"unmapped\"] .next').click()")
    assert loaded.eval(rows) == 120 - 2 * PAGE_SIZE
    assert loaded.eval("document.querySelector('[data-table=\"unmapped\"] .next').disabled") is True


def test_print_shows_first_rows_and_counts_the_rest(loaded: DevTools) -> None:
    rows = "document.querySelectorAll('#t-unmapped tbody tr').length"
    more = "document.querySelector('[data-table=\"unmapped\"] .print-more').textContent"
    display = "getComputedStyle(document.querySelector({})).display"
    before = loaded.eval(rows)
    loaded.eval("window.dispatchEvent(new Event('beforeprint'))")
    assert loaded.eval("document.querySelectorAll('details:not([open])').length") == 0
    assert loaded.eval(rows) == PRINT_ROWS
    assert loaded.eval(more) == f"… and {120 - PRINT_ROWS} more rows (see the JSON, or this report on screen)"
    loaded.send("Emulation.setEmulatedMedia", {"media": "print"})
    assert loaded.eval(display.format("'.controls'")) == "none"
    assert loaded.eval(display.format("'[data-table=\"unmapped\"] .print-more'")) == "block"
    assert loaded.eval(display.format("'[data-table^=\"role-\"]'")) == "none"  # roles print their counts
    assert loaded.eval(display.format("'#evidence-first'")) != "none"
    loaded.send("Emulation.setEmulatedMedia", {"media": ""})
    assert loaded.eval(display.format("'[data-table=\"unmapped\"] .print-more'")) == "none"
    loaded.eval("window.dispatchEvent(new Event('afterprint'))")
    assert loaded.eval(rows) == before
    assert loaded.eval("document.querySelectorAll('details[open]').length") == 0


def test_print_of_a_filtered_table_says_so(loaded: DevTools) -> None:
    box = "document.querySelector('[data-table=\"unmapped\"] .filter')"
    more = "document.querySelector('[data-table=\"unmapped\"] .print-more').textContent"
    loaded.eval(f"{box}.value = 'udp/123'; {box}.dispatchEvent(new Event('input'))")
    time.sleep(0.2)
    shown = int(loaded.eval("document.getElementById('t-unmapped').dataset.visible"))
    assert 0 < shown < 120
    loaded.eval("window.dispatchEvent(new Event('beforeprint'))")
    try:
        assert loaded.eval("document.querySelectorAll('#t-unmapped tbody tr').length") == min(shown, PRINT_ROWS)
        rest = f", {shown - PRINT_ROWS} of them not printed" if shown > PRINT_ROWS else ""
        assert loaded.eval(more) == (f"Filter \u201cudp/123\u201d: {shown} of 120 rows match{rest} "
                                     "(see the JSON, or this report on screen)")
    finally:
        loaded.eval("window.dispatchEvent(new Event('afterprint'))")
        loaded.eval(f"{box}.value = ''; {box}.dispatchEvent(new Event('input'))")
        time.sleep(0.2)


def _records_in_chromium(html: str, tmp: Path) -> tuple[list[Any], list[Any]]:
    """(the flows' records report.js made, those report_data.flow_records makes of the same block)."""
    path = tmp / "report.html"
    path.write_text(html, encoding="utf-8")
    cdp = DevTools(tmp)
    try:
        cdp.open_page(("Runtime", "Page"))
        navigate(cdp, path)
        got = json.loads(cdp.eval("JSON.stringify(window.pcapAuditTables.failing.recs)"))
    finally:
        cdp.close()
    (block,) = re.findall(r'<script type="application/json" id="audit-data">(.*?)</script>', html, re.S)
    return got, flow_records(json.loads(block))


@pytest.mark.parametrize("inputs", [1, 2])
def test_script_makes_the_own_cells_of_a_run(inputs: int, tmp_path: Path) -> None:
    """A run's flows reach the page as columns (microsecond timestamps, numbers): report.js makes
    every record's own cells as FlowCells.own does (test_report_stream checks the Python reading)."""
    base = load_document(make_audit_doc(flows=5, inputs=inputs))
    doc = dataclasses.replace(base, flows=FlowRows(EDGE_VERDICTS))
    got, want = _records_in_chromium(render_html(doc), tmp_path)
    assert got == want and len(got) == len(EDGE_VERDICTS)


def test_script_makes_the_own_cells_of_a_saved_audit(doc: dict[str, Any], tmp_path: Path) -> None:
    odd = copy.deepcopy(doc)
    for i, f in enumerate(odd["flows"][:6]):
        f["first_seen"] = ["", "2026-12-06", "T1T2", "2026-12-06T10:00:00Z", None, "x" * 30][i]
        f["bytes"] = [0, 1023, 1024, 1048575, 10**15, 5 * 2**40][i]
    got, want = _records_in_chromium(render_html(load_document(odd)), tmp_path)
    assert got == want and len(got) == len(odd["flows"])
