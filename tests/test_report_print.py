"""Evidence first, on screen and on paper, for every bundled sample (SPEC §5), in headless Chromium.

- The first 1280x800 viewport shows each input's SHA-256, the catalog's source document and the result.
- Laid out for print (A4), the first page holds the evidence header and the counts.
- Printed to PDF (``--print-to-pdf``, as a person would archive it) a sample's report is a few pages:
  the upper bounds below are the measured counts plus two, since fonts move page breaks.

Pages are counted in the PDF itself (Chromium writes one ``/Type /Page`` object per page), so no PDF
library or poppler is needed; where poppler's pdfinfo is installed it confirms the count.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_doc_factory import make_audit_doc
from click.testing import CliRunner
from test_report_browser import DevTools, navigate, run_chromium

from auditor.cli import main
from auditor.report.html import render_html
from auditor.report.load import load_document

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
MAX_PAGES = {"cvad-onprem": 5, "daas-cloud": 5, "gateway-dmz": 5, "netscaler-ha": 5, "pvs-boot": 6}
"""Measured with Chromium 156 and DejaVu fonts: 3, 3, 3, 3 and 4 pages."""
MAX_PAGES_LARGE = 7
"""A hostile document of 7,000 flows in 29 tables: measured 5 pages (each table prints its first rows)."""
A4_PRINTABLE = (718, 1031)
"""CSS pixels inside report.css's @page margins: (210 - 20) mm by (297 - 24) mm at 96 px per inch."""


def pdf_pages(pdf: bytes) -> int:
    """Page objects in a PDF (``/Type /Page``, not the ``/Type /Pages`` tree nodes)."""
    return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", pdf))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The HTML report of every sample, as the command line writes it (no --fail-on: no criteria)."""
    out: dict[str, Path] = {}
    for name in MAX_PAGES:
        html = tmp_path_factory.mktemp(name) / f"{name}.html"
        result = CliRunner().invoke(main, [str(SAMPLES / f"{name}.pcapng"), "--roles",
                                           str(SAMPLES / f"{name}.roles.yaml"), "-o", str(html), "-q"])
        assert result.exit_code == 0, result.output
        out[name] = html
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    cdp = DevTools(tmp_path_factory.mktemp("cdp"))
    try:
        cdp.open_page(("Runtime", "Page"))
        yield cdp
    finally:
        cdp.close()


def open_report(cdp: DevTools, path: Path, width: int, height: int) -> None:
    cdp.send("Emulation.setDeviceMetricsOverride",
             {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    cdp.events.clear()
    navigate(cdp, path)


# Where each piece of evidence is, its text, and whether it lies wholly inside (0, 0, W, H).
PLACES = """((W, H) => {
  const place = el => {
    if (!el) { return null; }
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return {text: el.textContent.trim(), title: el.getAttribute("title") || "",
            inside: r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= H && r.right <= W
                    && s.visibility === "visible" && s.display !== "none"};
  };
  const first = document.getElementById("evidence-first");
  return {
    hashes: Array.from(first.querySelectorAll(".input code.hash")).map(place),
    title: place(document.getElementById("catalog-source")),
    result: place(document.querySelector("#result .badge")),
    cards: place(document.querySelector("#summary .cards")),
  };
})"""


@pytest.mark.parametrize("name", list(MAX_PAGES))
def test_first_viewport_shows_hash_title_and_result(browser: DevTools, reports: dict[str, Path],
                                                    name: str) -> None:
    open_report(browser, reports[name], 1280, 800)
    seen = browser.eval(f"{PLACES}(innerWidth, innerHeight)")
    sha = re.findall(r"[0-9a-f]{64}", seen["hashes"][0]["text"])
    assert len(seen["hashes"]) == 1 and len(sha) == 1
    assert seen["hashes"][0]["inside"] and sha[0] in seen["hashes"][0]["title"]
    assert seen["title"] == {"text": "Communication Ports Used by Citrix Technologies", "title": "", "inside": True}
    assert seen["result"]["text"] == "No criteria" and seen["result"]["inside"]
    assert seen["cards"]["inside"]


@pytest.mark.parametrize("name", list(MAX_PAGES))
def test_first_printed_page_holds_the_evidence_and_counts(browser: DevTools, reports: dict[str, Path],
                                                          name: str) -> None:
    width, height = A4_PRINTABLE
    open_report(browser, reports[name], width, height)
    browser.send("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        seen = browser.eval(f"{PLACES}({width}, {height})")
    finally:
        browser.send("Emulation.setEmulatedMedia", {"media": ""})
    for key in ("title", "result", "cards"):
        assert seen[key]["inside"], key
    assert seen["hashes"][0]["inside"]


def print_pages(html: Path, tmp_path: Path) -> int:
    """Pages of the report printed to PDF by headless Chromium's command line."""
    pdf = tmp_path / f"{html.stem}.pdf"
    proc = run_chromium([f"--print-to-pdf={pdf}", "--no-pdf-header-footer", html.as_uri()], tmp_path)
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-", proc.stderr[-2000:]
    pages = pdf_pages(pdf.read_bytes())
    pdfinfo = shutil.which("pdfinfo")
    if pdfinfo:
        info = subprocess.run([pdfinfo, str(pdf)], capture_output=True, text=True, check=True).stdout
        assert f"Pages: {pages}" in " ".join(info.split())
    return pages


@pytest.mark.parametrize("name", list(MAX_PAGES))
def test_a_sample_prints_in_a_few_pages(reports: dict[str, Path], name: str, tmp_path: Path) -> None:
    pages = print_pages(reports[name], tmp_path)
    assert 1 <= pages <= MAX_PAGES[name], f"{name}: {pages} pages"


def test_a_large_audit_prints_its_first_rows_only(tmp_path: Path) -> None:
    html = tmp_path / "large.html"
    doc = load_document(make_audit_doc(flows=5000, unmapped=2000, hostile=True, inputs=3))
    html.write_text(render_html(doc), encoding="utf-8")
    pages = print_pages(html, tmp_path)
    assert 1 <= pages <= MAX_PAGES_LARGE, f"{pages} pages"


def test_pdf_page_count() -> None:
    pdf = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
           b"2 0 obj << /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 >> endobj\n"
           b"3 0 obj << /Type /Page /Parent 2 0 R >> endobj\n4 0 obj <</Type/Page/Parent 2 0 R>> endobj\n")
    assert pdf_pages(pdf) == 2
