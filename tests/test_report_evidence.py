"""Evidence first (SPEC §5): before any table, the report names each input with its SHA-256 and time
span, the tool, the catalog's source document, review date and digest, the roles file's digest, the
criteria and the result; printed, each table shows its first rows and counts the rest."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from audit_doc_factory import make_audit_doc
from test_report_html import parse

from auditor.criteria import criteria_record
from auditor.report.html import PAGE_SIZE, PRINT_ROLE_ROWS, PRINT_ROWS, render_html
from auditor.report.load import load_document


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return make_audit_doc(flows=300, unmapped=40, hostile=True, inputs=2)


@pytest.fixture(scope="module")
def html(doc: dict[str, Any]) -> str:
    return render_html(load_document(copy.deepcopy(doc)))


def first_block(html: str) -> str:
    start = html.index('<section id="evidence-first"')
    return html[start:html.index("</section>", start)]


def text_of(fragment: str) -> str:
    text = " ".join(" ".join(parse(fragment).texts).split())
    return re.sub(r" ([):,.])", r"\1", text)


def test_evidence_comes_before_the_summary_and_every_table(html: str) -> None:
    start = html.index('id="evidence-first"')
    assert start < html.index('id="summary"') < html.index("<table")
    assert html.index('id="result"') < html.index('id="summary"')


def test_evidence_first_names_inputs_tool_catalog_roles(doc: dict[str, Any], html: str) -> None:
    block = first_block(html)
    text = text_of(block)
    page = parse(block)
    for i in doc["inputs"]:
        # The full hash is the element's text (shortened on screen by CSS only) and its hover title.
        assert i["sha256"] in text
        assert any(a.get("title") == f"SHA-256 {i['sha256']}" for t, a in page.elements if t == "code")
        assert f"{i['first_ts'][:19].replace('T', ' ')} → {i['last_ts'][:19].replace('T', ' ')} UTC" in text
    assert "&lt;b&gt;odd&lt;/b&gt;" in block  # the input's name, escaped
    assert f"{doc['tool']['name']} {doc['tool']['version']}" in text
    src = doc["catalog"]["source"]
    assert f"{src['title']} (Citrix; the copy carries no revision date), last reviewed against it 2026-12-06" in text
    assert doc["catalog"]["digest"] in text and doc["roles_file"]["digest"] in text
    assert "https://" not in html  # the document's address stays in the JSON: the page links nowhere


@pytest.mark.parametrize(("kinds", "result", "badge", "why"), [
    ((), "no criteria given", "No criteria", "no criteria given (no --fail-on)"),
    (("missing",), "FAIL", "FAIL", "--fail-on missing: missing found"),
    (("unexpected", "failing", "missing"), "FAIL", "FAIL",
     "--fail-on unexpected, failing, missing: unexpected, failing, missing found"),
])
def test_result_badge(doc: dict[str, Any], kinds: tuple[str, ...], result: str, badge: str, why: str) -> None:
    d = copy.deepcopy(doc)
    d["criteria"] = criteria_record(d["summary"], kinds)
    html = render_html(load_document(d))
    page = parse(html)
    assert page.by_id("result")["data-result"] == result
    start = html.index('<div id="result"')
    block = html[start:html.index("</div>", start)]
    assert text_of(block).startswith(f"{badge} {why}")


def test_pass_badge() -> None:
    d = make_audit_doc(flows=40)
    d["summary"]["unexpected"] = 0
    d["criteria"] = criteria_record(d["summary"], ["unexpected"])
    html = render_html(load_document(d))
    assert parse(html).by_id("result")["data-result"] == "PASS"
    assert 'class="result r-pass"' in html
    assert "--fail-on unexpected: none of them found" in text_of(first_block(html))


def test_a_document_without_criteria_or_source_still_renders(doc: dict[str, Any]) -> None:
    """A 2.0 document (before criteria and catalog.source), or a catalog folder that names no document."""
    d = copy.deepcopy(doc)
    del d["criteria"]
    del d["catalog"]["source"]
    html = render_html(load_document(d))
    assert parse(html).by_id("result")["data-result"] == "not recorded"
    text = text_of(first_block(html))
    assert "Not recorded" in text and "source document not named by this catalog" in text
    d["catalog"]["source"] = None
    assert "source document not named" in render_html(load_document(d))


def test_many_inputs_are_counted_not_listed(doc: dict[str, Any]) -> None:
    d = copy.deepcopy(doc)
    d["inputs"] = [dict(d["inputs"][0], sha256=f"{k:064x}") for k in range(9)]
    text = text_of(first_block(render_html(load_document(d))))
    assert f"{3:064x}" in text and f"{4:064x}" not in text
    assert "… and 5 more (see Evidence, below)" in text


def test_full_evidence_block_keeps_criteria_and_source(doc: dict[str, Any], html: str) -> None:
    ev = text_of(html[html.index('<section id="evidence"'):])
    assert "Criteria --fail-on unexpected,failing: FAIL (unexpected, failing found)" in ev
    assert ("Catalog source Communication Ports Used by Citrix Technologies, Citrix; revision: none stated on "
            "the copy; catalog last reviewed against it 2026-12-06") in ev


def test_tables_print_their_first_rows_and_count_the_rest(doc: dict[str, Any], html: str) -> None:
    tables = re.findall(r'data-table="([^"]+)" data-print-rows="(\d+)"', html)
    assert len(tables) == html.count('class="tbl"') > 5
    for tid, printed in tables:
        assert int(printed) == (PRINT_ROLE_ROWS if tid.startswith("role-") else PRINT_ROWS), tid
    unmapped = html[html.index('data-table="unmapped"'):]
    unmapped = unmapped[:unmapped.index("</p>", unmapped.index('<p class="print-more">'))]
    rows = re.findall(r"<tr( class=\"np\")?>", unmapped[unmapped.index("<tbody>"):])
    assert len(rows) == min(PAGE_SIZE, 40)
    assert [bool(c) for c in rows] == [k >= PRINT_ROWS for k in range(len(rows))]  # np: not printed
    assert f"… and {40 - PRINT_ROWS} more rows (see the JSON, or this report on screen)" in unmapped
    failing = sum(1 for f in doc["flows"] if f["failing"])
    block = html[html.index('data-table="failing"'):]
    more = re.search(r'<p class="print-more">(.*?)</p>', block)
    assert more is not None
    assert more.group(1) == ("" if failing <= PRINT_ROWS else
                             f"… and {failing - PRINT_ROWS} more rows (see the JSON, or this report on screen)")
