"""The HTML report, without a browser: structure, counts, escaping, self-containment."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from audit_doc_factory import (
    HOSTILE_DNS,
    HOSTILE_LONG,
    HOSTILE_PWN,
    HOSTILE_SCRIPT_CLOSE,
    HOSTILE_SNI,
    make_audit_doc,
)
from report_data import flow_records

from auditor.report.html import (
    DISPLAY_CHARS,
    MAX_CHARS,
    PAGE_SIZE,
    ReportDataError,
    render_html,
    role_slug,
    safe_text,
    script_json,
)
from auditor.report.load import load_document


class Page(HTMLParser):
    """Every element with its attributes, every text node, and the content of each script element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self._in_script: dict[str, str] | None = None
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "script":
            self._in_script = a
            self.scripts.append((a, ""))
        self._in_style = self._in_style or tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            a, text = self.scripts[-1]
            self.scripts[-1] = (a, text + data)
        elif not self._in_style:
            self.texts.append(data)

    def by_id(self, ident: str) -> dict[str, str]:
        found = [a for _, a in self.elements if a.get("id") == ident]
        assert len(found) == 1, f"expected one element with id={ident!r}, found {len(found)}"
        return found[0]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def count_text(html: str, name: str) -> int:
    m = re.search(rf'data-count="{re.escape(name)}">([\d,]+)<', html)
    assert m, f"no data-count={name!r}"
    return int(m.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def hostile_doc() -> dict[str, Any]:
    return make_audit_doc(flows=80, hostile=True, inputs=2)


@pytest.fixture(scope="module")
def hostile_html(hostile_doc: dict[str, Any]) -> str:
    return render_html(load_document(copy.deepcopy(hostile_doc)))


def test_sections_have_stable_ids(hostile_doc: dict[str, Any], hostile_html: str) -> None:
    page = parse(hostile_html)
    for ident in ("evidence-first", "result", "summary", "failing", "unexpected", "missing", "matrix", "unmapped",
                  "hosts", "not-audited", "products-without-port-data", "evidence"):
        page.by_id(ident)
    for role in hostile_doc["roles"]:
        page.by_id(f"role-{role_slug(role['role'])}")
    # The evidence and result come first, then the summary, failing, unexpected, missing, matrix (what
    # matters most, first).
    ids = ("evidence-first", "result", "summary", "failing", "unexpected", "missing", "matrix")
    order = [hostile_html.index(f'id="{i}"') for i in ids]
    assert order == sorted(order)


def test_headline_counts_match_the_document(hostile_doc: dict[str, Any], hostile_html: str) -> None:
    s = hostile_doc["summary"]
    assert count_text(hostile_html, "expected") == s["expected"]
    assert count_text(hostile_html, "expected-failing") == s["expected_failing"]
    assert count_text(hostile_html, "unexpected") == s["unexpected"]
    assert count_text(hostile_html, "unmapped") == s["unmapped"]
    assert count_text(hostile_html, "rules-missing") == s["rules"]["missing"]
    assert count_text(hostile_html, "rules-failing") == s["rules"]["failing"]


def test_tables_hold_the_right_rows(hostile_doc: dict[str, Any], hostile_html: str) -> None:
    flows = hostile_doc["flows"]
    failing = sum(1 for f in flows if f["classification"] == "expected" and f["failing"])
    unexpected = sum(1 for f in flows if f["classification"] == "unexpected")
    missing = [r for r in hostile_doc["rules"] if r["status"] in ("missing", "failing")
               or (r["status"] == "observed" and r["hosts_lacking"])]
    page = parse(hostile_html)
    assert page.by_id("t-failing")["data-rows"] == str(failing)
    assert page.by_id("t-unexpected")["data-rows"] == str(unexpected)
    assert page.by_id("t-missing")["data-rows"] == str(len(missing))
    assert count_text(hostile_html, "failing-rows") == failing
    for role in hostile_doc["roles"]:
        slug, name = role_slug(role["role"]), role["role"]
        src = sum(1 for f in flows if f["classification"] != "unmapped" and name in f["initiator_roles"])
        dst = sum(1 for f in flows if f["classification"] != "unmapped" and name in f["responder_roles"])
        assert page.by_id(f"t-role-{slug}-src")["data-rows"] == str(src)
        assert page.by_id(f"t-role-{slug}-dst")["data-rows"] == str(dst)
    # The data block lists the same rows for the script.
    data = json.loads(dict((a.get("id"), t) for a, t in page.scripts)["audit-data"])
    assert len(data["tables"]["failing"]["rows"]) == failing
    assert len(flow_records(data)) == len(flows)


def test_matrix_colours_carry_text_labels(hostile_html: str) -> None:
    matrix = hostile_html[hostile_html.index('id="matrix"'):hostile_html.index('id="roles"')]
    assert 'class="m-fail"' in matrix and "✗" in matrix and "failing" in matrix
    assert 'class="m-unexp"' in matrix and 'class="m-ok"' in matrix
    assert "Virtual Delivery Agent" in matrix


def test_hostile_strings_are_never_markup(hostile_html: str) -> None:
    page = parse(hostile_html)
    tags = {t for t, _ in page.elements}
    assert "img" not in tags
    assert [t for t, _ in page.elements].count("script") == 2
    for tag, attrs in page.elements:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
    for raw in (HOSTILE_DNS, HOSTILE_SNI, HOSTILE_PWN, HOSTILE_SCRIPT_CLOSE):
        assert raw not in hostile_html
    assert "<script>alert" not in hostile_html.lower()
    assert "<img" not in hostile_html.lower()
    assert hostile_html.lower().count("</script") == 2
    # ...but they are shown, as text.
    text = "".join(page.texts)
    assert "<script>alert(1)</script>" in text
    assert '"><img src=x onerror=alert(1)>' in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_html


def test_json_block_cannot_close_the_script(hostile_html: str) -> None:
    page = parse(hostile_html)
    blocks = {a.get("id"): (a, t) for a, t in page.scripts}
    attrs, body = blocks["audit-data"]
    assert attrs["type"] == "application/json"
    for ch in ("<", ">", "&", "\u2028", "\u2029"):
        assert ch not in body
    data = json.loads(body)
    # The host cells' titles list the names (the flow records' cells 1 and 2: initiator, responder).
    names = {n for rec in flow_records(data) for k in (1, 2) for n in data["cells"][rec[k]][2].split("\n")}
    assert HOSTILE_SCRIPT_CLOSE in names and HOSTILE_SNI in names
    # U+2028 is shown as an escape, not as an invisible line break.
    assert "line\\u2028sep\\u2029para.example" in names


def test_script_json_escapes() -> None:
    out = str(script_json({"a": "</script><!-- & \u2028 \u2029"}))
    assert out == '{"a":"\\u003c/script\\u003e\\u003c!-- \\u0026 \\u2028 \\u2029"}'
    assert json.loads(out) == {"a": "</script><!-- & \u2028 \u2029"}


def test_safe_text_shows_hidden_characters() -> None:
    assert safe_text("evil\u202egnp.exe") == "evil\\u202egnp.exe"  # right-to-left override
    assert safe_text("a\x00b\x1bc") == "a\\u0000b\\u001bc"
    assert safe_text("ddc01.corp.example") == "ddc01.corp.example"
    assert safe_text("é名前") == "é名前"
    assert len(safe_text("x" * 10_000)) == MAX_CHARS


def test_long_names_are_bounded(hostile_html: str) -> None:
    page = parse(hostile_html)
    assert HOSTILE_LONG not in hostile_html
    for text in page.texts:
        assert not re.search(f"a{{{DISPLAY_CHARS}}}", text), text[:80]
    titles = [a["title"] for _, a in page.elements if "title" in a]
    assert any("a" * (MAX_CHARS // 2) in t for t in titles)  # the hover text holds the bounded full name
    for title in titles:
        assert not re.search(f"a{{{MAX_CHARS}}}", title)
    long_cells = [t for t in page.texts if t.startswith("aaaa")]
    assert long_cells and all(t.endswith("…") or "(+" in t for t in long_cells)


def test_self_contained(hostile_html: str) -> None:
    page = parse(hostile_html)
    assert "http://" not in hostile_html and "https://" not in hostile_html
    assert "//" not in "".join(a.get("href", "") + a.get("src", "") for _, a in page.elements)
    for tag, attrs in page.elements:
        assert "src" not in attrs, tag
        if "href" in attrs:
            assert attrs["href"].startswith("#"), attrs
        assert tag not in ("link", "iframe", "object", "embed", "img", "base", "form")
    csp = [a for t, a in page.elements if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]
    assert "@import" not in hostile_html and "url(" not in hostile_html


def test_print_stylesheet(hostile_html: str) -> None:
    css = hostile_html[hostile_html.index("<style>"):hostile_html.index("</style>")]
    printing = css[css.index("@media print"):]
    assert ".controls" in printing and "display: none" in printing
    assert "@page" in printing and "A4" in printing
    assert "beforeprint" in hostile_html  # the script prints the first rows of each table


def test_evidence_block(hostile_doc: dict[str, Any], hostile_html: str) -> None:
    ev = hostile_html[hostile_html.index('id="evidence"'):]
    for i in hostile_doc["inputs"]:
        assert i["sha256"] in ev
        assert f"{i['size']:,} bytes" in ev
        assert i["first_ts"] in ev
    assert hostile_doc["catalog"]["digest"] in ev
    assert hostile_doc["roles_file"]["digest"] in ev
    assert hostile_doc["run"]["command_line"] in ev
    assert hostile_doc["run"]["started"] in ev
    assert "&lt;b&gt;odd&lt;/b&gt;" in ev  # the input path is escaped too
    na = hostile_html[hostile_html.index('id="not-audited"'):hostile_html.index('id="evidence"')]
    assert "tcp-short: 2" in na and "linktype:IEEE802_11: 3" in na and "ipproto:50: 1" in na
    assert "(truncated)" in na and "file ends inside a packet record" in na
    assert "Citrix App Layering" in na


def test_direction_inferred_and_rule_notes_shown(hostile_html: str) -> None:
    assert '<span class="sub">inferred</span>' in hostile_html
    assert "Note: The seed lists EDT as 1494 and 2598" in hostile_html


@pytest.mark.parametrize(
    "path",
    [("summary",), ("run", "engine"), ("flows", 0, "bytes"), ("roles", 0, "counts"), ("inputs", 0, "sha256")],
)
def test_missing_keys_raise(path: tuple[Any, ...]) -> None:
    doc = make_audit_doc(flows=10)
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    with pytest.raises(ReportDataError):
        render_html(load_document(doc))


def test_large_audit_keeps_the_dom_small() -> None:
    doc = make_audit_doc(flows=5000, unmapped=2000)
    html = render_html(load_document(doc))
    rows = html.count("<tr")
    tables = html.count('class="tbl"')
    assert rows < tables * (PAGE_SIZE + 1) + 200
    assert rows < 2500
    page = parse(html)
    data = json.loads(dict((a.get("id"), t) for a, t in page.scripts)["audit-data"])
    assert len(flow_records(data)) == 7000


def test_empty_audit_renders() -> None:
    doc = make_audit_doc(flows=0, unmapped=0)
    html = render_html(load_document(doc))
    assert count_text(html, "expected") == 0
    assert "None." in html


def test_other_templates_dir(tmp_path: Path) -> None:
    template = "<p>{{ doc.tool.name }} {{ view.tables.failing.rows|length }}</p>"
    (tmp_path / "report.html.j2").write_text(template)
    out = render_html(load_document(make_audit_doc(flows=5)), templates_dir=tmp_path)
    assert out.startswith("<p>pcap-audit ")


def test_autoescape_applies_to_custom_templates(tmp_path: Path) -> None:
    (tmp_path / "report.html.j2").write_text("{{ doc.run.command_line }}")
    doc = make_audit_doc(flows=1)
    doc["run"]["command_line"] = "pcap-audit '<b>x</b>'"
    assert render_html(load_document(doc), templates_dir=tmp_path) == "pcap-audit &#39;&lt;b&gt;x&lt;/b&gt;&#39;"


def test_features_warnings_and_covered_rules_shown() -> None:
    doc = make_audit_doc(flows=5)
    doc["features"] = [{"id": "netscaler-ha", "title": "NetScaler high availability pair",
                        "how": "detected: 10.0.2.10 -> 10.0.2.11 udp/3003 (netscaler-002)"}]
    doc["warnings"] = [{"code": "overlap", "line": 4, "entry": "10.0.0.0/8",
                        "message": "10.0.0.0/8 (User Device) also covers <b>10.0.1.10</b> (Delivery Controller)"}]
    doc["catalog"]["layers"] = ["document", "supplement", "site"]
    doc["catalog"]["rules_by_layer"] = {"document": 250, "supplement": 27}
    rule = doc["rules"][0]
    rule.update(status="covered", covered_by=["netscaler-003"], layer="supplement",
                citation={"title": "A page", "section": "", "url": "https://docs.citrix.com/x"})
    doc["summary"]["rules"]["covered"] = 1
    html = render_html(load_document(doc))
    page = parse(html)
    page.by_id("features")
    page.by_id("roles-warnings")
    assert "netscaler-ha" in html and "detected: 10.0.2.10" in html
    assert "&lt;b&gt;10.0.1.10&lt;/b&gt;" in html and "<b>10.0.1.10</b>" not in html  # escaped
    assert "1 covered by an alternative" in " ".join(html.split())
    assert "document, supplement, site" in html and "supplement 27" in html
