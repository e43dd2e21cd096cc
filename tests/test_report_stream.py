"""The streamed renderers write exactly what the plain paths give.

The JSON export writes each flow's text by hand (jsondata.FlowJson) and reads the flows from verdicts as
it goes (document.FlowRows); the HTML report writes its data block a batch at a time (iter_html).
Each is checked here against the plain path: the typed document as JSON data (jsondata.plain), encoded
whole; and a saved JSON loaded back (load.load_document) renders the same.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import re
import unicodedata
from array import array
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from audit_doc_factory import HOSTILE_NAMES, make_audit_doc
from report_data import column, flow_records, resolved

from auditor import conversations
from auditor.apps import AppEvidence
from auditor.audit import AuditRequest, run_audit
from auditor.capture import native
from auditor.classify import FlowVerdict, HostView
from auditor.flow import Flow as PythonFlow
from auditor.model import HEAD_CHARS, HEAD_KEY, Classification, FlowKey
from auditor.report import document
from auditor.report.cells import FLOW_CLASSES, SHARED_FIRST, Cell, FlowCells, host_cells, safe_text
from auditor.report.document import (
    _CONTROL,
    FlowRows,
    _show_hidden,
    _Tally,
    bounded,
    iso,
    top_findings,
)
from auditor.report.html import (
    DATA_MARK,
    ReportDataError,
    iter_html,
    render_html,
    script_json,
)
from auditor.report.jsondata import FlowJson, _ts_json, plain
from auditor.report.load import load_document
from auditor.report.model import AuditDocument, FlowRow, FrameRef
from auditor.report.tabular import iter_json, render_csv, render_json
from auditor.report.view import _packed

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ["cvad-onprem", "daas-cloud", "gateway-dmz", "netscaler-ha", "pvs-boot"]
_DUMP = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_DATA = re.compile(r'<script type="application/json" id="audit-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module", params=SAMPLES)
def sample_doc(request: pytest.FixtureRequest) -> AuditDocument:
    name = request.param
    out = run_audit(AuditRequest(inputs=[str(ROOT / "sample_pcaps" / f"{name}.pcapng")],
                                 roles_path=ROOT / "sample_pcaps" / f"{name}.roles.yaml", jobs=1))
    assert isinstance(out.document.flows, FlowRows)
    return out.document


def _whole(doc: AuditDocument) -> str:
    """The document's JSON the plain way: every member as data, encoded at once."""
    return _DUMP({k: list(v) if k == "flows" else v for k, v in doc.to_json_dict().items()}) + "\n"


def test_flow_text_is_the_rows_fields_encoded(sample_doc: AuditDocument) -> None:
    text = FlowJson()
    names = [f.name for f in dataclasses.fields(FlowRow)]
    for row in sample_doc.flows:
        assert text(row) == _DUMP(plain(row))
        assert list(json.loads(text(row))) == names


def test_json_export_is_the_whole_encoding(sample_doc: AuditDocument) -> None:
    assert render_json(sample_doc) == _whole(sample_doc)


def test_a_saved_audit_loads_into_the_same_document(sample_doc: AuditDocument) -> None:
    loaded = load_document(json.loads(render_json(sample_doc)))
    assert list(loaded.flows) == list(sample_doc.flows)
    assert dataclasses.replace(loaded, flows=()) == dataclasses.replace(sample_doc, flows=())
    assert render_json(loaded) == render_json(sample_doc)
    assert render_csv(loaded) == render_csv(sample_doc)
    _same_page("".join(iter_html(sample_doc)), render_html(loaded))


def _same_page(a: str, b: str) -> None:
    """Two reports show the same: the same page around the data block, the same data but for the
    order of the shared cells and the service cells made by the page, the same flows' cells once
    those are written out."""
    (block_a,), (block_b,) = _DATA.findall(a), _DATA.findall(b)
    assert a.replace(block_a, "") == b.replace(block_b, "")
    data_a, data_b = json.loads(block_a), json.loads(block_b)
    assert resolved(data_a) == resolved(data_b)
    assert {k: v for k, v in data_a.items() if k not in ("flows", "cells", "svc", "why")} == \
        {k: v for k, v in data_b.items() if k not in ("flows", "cells", "svc", "why")}


def _verdict(i: int, **flow: Any) -> FlowVerdict:
    names = (HOSTILE_NAMES[i % len(HOSTILE_NAMES)], "\x00audit-data\x00", "ok.example")
    a = HostView(f"10.0.0.{i}", frozenset({"Role \u2028 A", "Role B"}), frozenset(), names)
    b = HostView("*" if flow.get("summarised") else "10.9.9.9", frozenset(), frozenset())
    # The build's Flow, as the core makes them (the page's pass reads them in C where it is compiled).
    f = conversations.Flow(FlowKey(a.address, b.address, "udp" if i % 2 else "tcp", 443 + i), **flow)
    cls = [Classification.EXPECTED, Classification.UNEXPECTED, Classification.UNMAPPED][i % 3]
    return FlowVerdict(f, a, b, cls, failing=i % 4 == 0, rule_ids=("r-1", "r<2>")[: i % 3],
                       reason=None if i % 3 == 0 else "no_rule",
                       reason_text=["", "why \u2029 <b>&", "x" * 600, None][i % 4])


EDGE_VERDICTS = [
    _verdict(0),  # never-seen times: first_seen inf, last_seen -inf
    _verdict(1, connections=3, established=1, rejected=1, unanswered=1, orig_pkts=5, resp_pkts=2,
             orig_bytes=10**12, resp_bytes=7, first_seen=1.5e9, last_seen=1.5e9 + 0.0000005,
             first_frame=(2, 99), direction_evidence={"synack": 1, "first_packet": 2},
             conn_states={"S0": 1, "REJ": 1, "SF": 1}),
    _verdict(2, first_seen=float("nan"), last_seen=1e300, direction_evidence={"syn": 4},
             conn_states={"SF": 4}, tunnels=frozenset({"vxlan 1.1.1.1->2.2.2.2 vni 7", "gre \x01<x>"})),
    _verdict(3, summarised=True, connections=10**6, conn_states={"S0": 10**6}, first_seen=0.0),
    _verdict(4, connections=5, orig_bytes=1023, first_seen=9.1e9, last_seen=-1.0,
             apps={"tls": 2, "http": 2, "ica": 1},
             app_evidence={"tls": AppEvidence("tls", "resp", (0, 7), "16 03 01", "TLS <1.2>\u202e"),
                           "ica": AppEvidence("ica", "orig", (1, 3), "7f 7f", "")}),
    # Times whose microseconds are a tie: rounded half to even, up from an odd one, down from an even.
    _verdict(5, first_seen=1.5e9 + 0.0000015, last_seen=1.5e9 + 0.0000025),
    _verdict(6, connections=5, orig_bytes=1024, apps={"tls": 2, "http": 2, "ica": 1},
             app_evidence={"tls": AppEvidence("tls", "resp", (0, 9), "16 \u2028<03>\x00", "TLS <1.2>\u202e"),
                           "ica": AppEvidence("ica", "orig", (1, 4), "7f 7f", "")}),
    # Texts written as they are where they are printable ASCII (JSON escapes quotes and backslashes;
    # first bytes are cut to HEAD_CHARS).
    dataclasses.replace(_verdict(8, apps={"tls": 1, "http": 1}, app_evidence={
        "tls": AppEvidence("tls", "orig", (0, 5), "16030100" * 9, "TLS"),
        "http": AppEvidence("http", "orig", (0, 6), "GET \\x", "HTTP")}), reason_text='a "quoted" reason'),
    dataclasses.replace(_verdict(9, apps={"http": 1}, app_evidence={
        "http": AppEvidence("http", "orig", (0, 7), 'GET "/x" HTTP/1.1', "HTTP")}), reason_text="a \\ backslash"),
    dataclasses.replace(_verdict(11), reason_text="x" * 400),
    # Reasons naming a host's address: report.js makes their cells of a template and the host cell.
    dataclasses.replace(_verdict(7), rule_ids=(), reason="peer-not-in-roles",
                        reason_text="responder 10.9.9.9 holds no role in roles.yaml (udp/450)"),
    dataclasses.replace(_verdict(10), rule_ids=(), reason="peer-not-in-roles",
                        reason_text="initiator broadcast/multicast 10.0.0.10 holds no role (tcp/453)"),
    dataclasses.replace(_verdict(13), rule_ids=(), reason="peer-not-in-roles",
                        reason_text="responder 10.9.9.9 holds no role in roles.yaml (udp/456)"),
]


def test_json_rows_on_edge_values() -> None:
    rows = FlowRows(EDGE_VERDICTS)
    text = FlowJson()
    assert [text(r) for r in rows] == [_DUMP(plain(r)) for r in rows]
    # The export writes a run's flows from their verdicts (FlowRows.json_texts): the same text.
    doc = dataclasses.replace(load_document(make_audit_doc(flows=5)), flows=rows)
    assert render_json(doc) == _whole(doc)
    first = json.loads(text(rows[0]))
    assert first["first_seen"] is None and first["last_seen"] is None and first["reason_text"] is None


def test_json_rows_of_flows_of_either_build_are_the_same() -> None:
    # The export's pass over the flows is compiled for the build's flows (jsonscan); flows of the
    # Python class (made by hand: auditor.flow.Flow) are written by its Python module, alike.
    python_flows = [dataclasses.replace(v, flow=PythonFlow(*v.flow.__reduce__()[1])) for v in EDGE_VERDICTS]
    assert type(python_flows[0].flow) is PythonFlow
    base = load_document(make_audit_doc(flows=5))
    assert render_json(dataclasses.replace(base, flows=FlowRows(python_flows))) == \
        render_json(dataclasses.replace(base, flows=FlowRows(EDGE_VERDICTS)))


def test_html_rows_on_edge_values() -> None:
    doc = dataclasses.replace(load_document(make_audit_doc(flows=5)), flows=FlowRows(EDGE_VERDICTS))
    page = render_html(doc)
    _same_page(page, render_html(load_document(json.loads(render_json(doc)))))
    # The reasons naming a host are made by the page, of a template each; the others are cells.
    (block,) = _DATA.findall(page)
    assert [t[:2] for t in json.loads(block)["why"]] == [[2, "responder "], [1, "initiator broadcast/multicast "],
                                                         [2, "responder "]]


def test_the_data_placeholder_cannot_be_planted() -> None:
    doc = make_audit_doc(flows=20, unmapped=5)
    doc["run"]["command_line"] = DATA_MARK
    for f in doc["flows"]:
        f["initiator_names"] = [DATA_MARK, *f["initiator_names"]]
    html = render_html(load_document(doc))
    assert "\\u0000audit-data\\u0000" in html  # shown as text
    assert len(_DATA.findall(html)) == 1 and DATA_MARK not in html


@pytest.mark.parametrize("flows, unmapped, inputs", [(0, 0, 1), (60, 10, 2), (4100, 900, 3)])
def test_data_block_is_the_whole_encoding(flows: int, unmapped: int, inputs: int) -> None:
    """The data block, written in chunks, is what encoding its parsed value whole gives."""
    doc = make_audit_doc(flows=flows, unmapped=unmapped, hostile=True, inputs=inputs)
    chunks = list(iter_html(load_document(doc)))
    html = "".join(chunks)
    assert len(chunks) > 2
    (block,) = _DATA.findall(html)
    assert str(script_json(json.loads(block))) == block


def test_many_hosts_records_are_encoded_in_batches() -> None:
    """The hosts' records, encoded a batch at a time as the block is written, are every host's cells."""
    doc = make_audit_doc(flows=10, hostile=True)
    doc["hosts"] = [{"address": f"10.64.{i // 250}.{i % 250 + 1}", "roles": ["User Device"],
                     "names": [{"name": f"pc{i}\u202e<x>", "source": "dns", "input": 0, "frame": i + 1}]
                     if i % 7 == 0 else []} for i in range(4100)]
    loaded = load_document(doc)
    (block,) = _DATA.findall("".join(iter_html(loaded)))
    assert str(script_json(json.loads(block))) == block
    data = json.loads(block)
    assert data["host"] == [[c.encode() for c in host_cells(h)] for h in loaded.hosts]
    assert len(data["tables"]["hosts"]["rows"]) == 4100


class _CountedReads(list[FlowRow]):
    """Flows that count how often they are read through."""

    reads = 0

    def __iter__(self) -> Any:
        self.reads += 1
        return super().__iter__()


def test_data_block_is_encoded_while_it_is_written() -> None:
    """The view reads the flows once; the data block reads them again as it is written, a batch at a
    time, and gives the same page as rendering at once."""
    doc = load_document(make_audit_doc(flows=4100, unmapped=900, hostile=True))
    flows = _CountedReads(doc.flows)
    chunks = iter_html(dataclasses.replace(doc, flows=flows))
    assert flows.reads == 1
    first = next(chunks)
    assert flows.reads == 1 and DATA_MARK not in first
    rest = list(chunks)
    assert flows.reads == 2
    assert first + "".join(rest) == render_html(doc)
    assert max(len(c) for c in rest) < 2_000_000


def test_a_malformed_document_is_refused_where_it_is_wrong() -> None:
    doc = make_audit_doc(flows=10)
    del doc["flows"][3]["bytes"]
    with pytest.raises(ReportDataError, match=r"flows\[3\]\.bytes: missing"):
        load_document(doc)
    doc = make_audit_doc(flows=10)
    doc["flows"][2]["port"] = "80"
    with pytest.raises(ReportDataError, match=r"flows\[2\]\.port: not an integer"):
        load_document(doc)


def test_json_export_streams_a_batch_at_a_time(sample_doc: AuditDocument) -> None:
    chunks = list(iter_json(sample_doc))
    assert "".join(chunks) == _whole(sample_doc)
    assert max(len(c) for c in chunks) < 2_000_000


def test_table_rows_are_the_plain_filters() -> None:
    """Tables' rows (computed with two stable sorts, runs of one verdict and one walk for all roles)
    are what sorting by (severity, -bytes) and filtering each table gives."""
    from auditor.report.cells import SEVERITY

    doc = make_audit_doc(flows=400, unmapped=80, hostile=True, seed=11)
    doc["flows"][5]["classification"] = "odd"  # an unknown verdict sorts last and counts as judged
    doc["flows"][9]["bytes"] = 0
    data = json.loads(_DATA.findall(render_html(load_document(copy.deepcopy(doc))))[0])

    def verdict(f: dict[str, Any]) -> str:
        return "failing" if f["classification"] == "expected" and f["failing"] else str(f["classification"])

    flows = doc["flows"]
    order = sorted(range(len(flows)), key=lambda i: (SEVERITY.get(verdict(flows[i]), 9),
                                                     -(flows[i]["bytes"] or 0)))
    tables = data["tables"]
    for v in ("failing", "unexpected", "unmapped"):
        assert tables[v]["rows"] == [i for i in order if verdict(flows[i]) == v]
    judged = [i for i in order if verdict(flows[i]) != "unmapped"]
    assert 5 in judged
    for entry, role_id in zip(doc["roles"], [k for k in tables if k.endswith("-src")], strict=True):
        role = entry["role"]
        assert tables[role_id]["rows"] == [i for i in judged if role in flows[i]["initiator_roles"]]
        dst = role_id[:-4] + "-dst"
        assert tables[dst]["rows"] == [i for i in judged if role in flows[i]["responder_roles"]]


def test_a_loaded_audit_renders_the_same_page(sample_doc: AuditDocument) -> None:
    # The page of a saved audit reads its rows; the page of a run reads the verdicts.
    loaded = load_document(json.loads(render_json(sample_doc)))
    assert not isinstance(loaded.flows, FlowRows)
    _same_page("".join(iter_html(loaded)), "".join(iter_html(sample_doc)))


def _own_cells_are_flowcells_own(doc: AuditDocument) -> None:
    """The records' own cells, as report.js makes them from the data block's columns, are the cells
    FlowCells.own makes of each row (the server's first pages), encoded with their columns' classes."""
    (block,) = _DATA.findall(render_html(doc))
    data = json.loads(block)
    classes = list(FLOW_CLASSES.values())[SHARED_FIRST:SHARED_FIRST + 5]
    cells = FlowCells({}, [i.path for i in doc.inputs])
    cells.cells += [Cell(c[0]) if isinstance(c, list) else Cell("") for c in data["cells"]]  # titles by index
    records = flow_records(data)
    assert len(records) == len(doc.flows)
    for rec, row in zip(records, doc.flows, strict=True):
        source = rec[SHARED_FIRST + 4][2]  # the frame cell's title: the shared cell of its input
        want = [c.encode(k) for c, k in zip(cells.own(row, source), classes, strict=True)]
        assert rec[SHARED_FIRST:SHARED_FIRST + 5] == want, row


@pytest.mark.parametrize("inputs", [1, 2])
def test_own_cells_from_columns_are_the_rows_cells(inputs: int) -> None:
    base = load_document(make_audit_doc(flows=5, inputs=inputs))
    _own_cells_are_flowcells_own(dataclasses.replace(base, flows=FlowRows(EDGE_VERDICTS)))
    rows = list(FlowRows(EDGE_VERDICTS))
    odd = ["", "2026-12-06", "2026-12-06T10:00:00.000001Z\u2028", "<\"2026-12-06T10:00:00.123456Z\">",
           "2026-12-06T10:00:00Z", "T1T2"]
    row = rows[1]
    rows += [dataclasses.replace(row, first_seen=t) for t in odd]
    rows += [dataclasses.replace(row, last_seen=t) for t in odd]
    rows += [dataclasses.replace(row, bytes=b, packets=b) for b in (0, 1023, 1024, 1048575, 10**15)]
    rows += [dataclasses.replace(row, first_frame=FrameRef(1, 7))]
    _own_cells_are_flowcells_own(dataclasses.replace(base, flows=rows))


def test_own_cells_of_a_run_are_the_rows_cells(sample_doc: AuditDocument) -> None:
    _own_cells_are_flowcells_own(sample_doc)


def test_the_summarys_flows_are_the_most_packets_of_each_kind() -> None:
    verdicts = [_verdict(i, orig_pkts=[5, 9, 9, 1, 9, 0, 7, 9][i % 8]) for i in range(40)]
    rows = FlowRows(verdicts)
    for flows in (rows, list(rows)):
        got = top_findings(flows, 5)
        for kind, keep in (("failing", lambda r: r.failing),
                           ("unexpected", lambda r: r.classification == "unexpected")):
            listed = [r for r in rows if keep(r)]
            count, top = got[kind]
            assert count == len(listed) > 5
            assert top == sorted(listed, key=lambda r: -r.packets)[:5]  # ties in document order


@pytest.mark.parametrize(("lo", "hi", "code"), [(0, 0, "b"), (-128, 127, "b"), (-129, 5, "h"), (0, 128, "h"),
                                                (-32768, 32767, "h"), (0, 32768, "i"), (-2**31, 2**31 - 1, "i"),
                                                (0, 2**31, "q"), (-2**63, 2**63 - 1, "q"), (5, 4, "q")])
def test_a_packed_column_is_its_numbers_in_the_narrowest_type(lo: int, hi: int, code: str) -> None:
    """The data block's integer columns: the narrowest typecode that holds the bounds given (none when
    they are not known), and the same numbers read back, from an int32 or an int64 array."""
    rng = random.Random(lo ^ hi)
    values = [lo, hi, *(rng.randint(min(lo, hi), max(lo, hi)) for _ in range(50))]
    for typecode in ("i", "q"):
        if typecode == "i" and not -2**31 <= min(values) <= max(values) < 2**31:
            continue
        text = _packed(array(typecode, values), lo, hi)
        want = code if lo <= hi else typecode
        assert text.partition(":")[0] == want
        assert column(text, "int") == values
    floats = [0.0, -1.5, 1.5e9 + 0.0000015, float("inf")]
    assert _packed(array("d", floats)).startswith("d:") and column(_packed(array("d", floats)), "float") == floats


def test_a_head_is_bounded_alike_by_its_first_head_key_characters() -> None:
    """The first bytes' texts are made and looked up by their first HEAD_KEY characters: the same
    text as the whole head's, whatever it holds (controls, hidden and wide characters, any length)."""
    rng = random.Random(7)
    alphabet = "0123456789abcdef \x00\x1f\x7f\x85\u2028\u202e\ufeff\u00e9\U0001f600<&"
    heads = ["", "16 03 01", "x" * HEAD_CHARS, "x" * HEAD_KEY, "x" * (HEAD_KEY + 1), "\u202e" * 40]
    heads += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    for head in heads:
        assert bounded(head[:HEAD_KEY], HEAD_CHARS) == bounded(head, HEAD_CHARS), head


def _bounded_by_pattern(text: str, limit: int) -> str:
    """bounded without its shortcut for printable ASCII."""
    text = _CONTROL.sub("\ufffd", text)
    if not text.isascii():
        text = "".join(ch if ch < "\xa0" else _show_hidden(ch) for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _safe_text_by_pattern(text: str, limit: int) -> str:
    """safe_text without its shortcut for printable ASCII."""
    if re.search(r"[^\x20-\x7e]", text):
        text = "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
                       else ch for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def test_texts_are_cleaned_alike_with_or_without_the_ascii_shortcut() -> None:
    # bounded and safe_text pass printable ASCII through without their patterns: never otherwise.
    rng = random.Random(11)
    alphabet = "az09 ~!\x00\x09\x1f\x7f\x80\x85\x9f\xa0\u00e9\u2028\u2029\u202e\u200b\ufeff\ud800\ue000\U0001f600<&"
    texts = ["", " ", "~", "\x7f", "\x1f", "a" * 300, "é", "abc\n"] + [chr(c) for c in range(0x200)]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(5000)]
    for text in texts:
        for limit in (1, 5, 32, 253):
            assert bounded(text, limit) == _bounded_by_pattern(text, limit), (text, limit)
            assert safe_text(text, limit) == _safe_text_by_pattern(text, limit), (text, limit)


def test_the_documents_counts_are_those_of_each_verdict_counted_alone() -> None:
    # build_document counts the verdicts in one pass (_Tally): what counting each number alone gives.
    verdicts = [_verdict(i, connections=i % 5, orig_pkts=i % 7, resp_pkts=i % 3,
                         apps={"tls": 1} if i % 6 == 0 else None) for i in range(60)]
    verdicts += [dataclasses.replace(v, reason="protocol-mismatch") for v in verdicts[:7]]
    tally = _Tally(verdicts)
    assert tally.connections == sum(v.flow.connections for v in verdicts)
    assert tally.expected == sum(1 for v in verdicts if v.classification == "expected") > 0
    assert tally.verified == sum(1 for v in verdicts if v.classification == "expected" and v.flow.apps) > 0
    assert tally.mismatched == 7
    assert tally.failing_at == [(-v.flow.packets, i) for i, v in enumerate(verdicts) if v.failing]
    assert tally.unexpected_at == [(-v.flow.packets, i) for i, v in enumerate(verdicts)
                                   if v.classification == "unexpected"]
    kinds = Counter((v.initiator.roles, v.responder.roles,
                     "unexpected" if v.classification == "unexpected" else "failing" if v.failing else "expected")
                    for v in verdicts if v.classification != "unmapped")
    assert tally.by_roles == dict(kinds)
    firsts: dict[str, HostView] = {}
    for v in verdicts:
        for h in (v.initiator, v.responder):
            firsts.setdefault(h.address, h)
    by_views: dict[str, HostView] = {}
    for h in tally.views:
        by_views.setdefault(h.address, h)
    assert list(by_views) == list(firsts) and all(by_views[a] is firsts[a] for a in firsts)


def test_the_pages_pass_cuts_reasons_where_the_cells_do() -> None:
    from auditor.report import cells, flowscan

    assert flowscan.DISPLAY_CHARS == cells.DISPLAY_CHARS


class _Seconds:
    """What jsonscan._ts asks of the export's parts: a whole second's text, a timestamp it does not
    write itself."""

    second = staticmethod(document._second_text)

    @staticmethod
    def ts(t: float) -> str:
        return _ts_json(iso(t))


_EDGE_TIMES = [0.0, 4e-7, 5e-7, 0.9999994, 0.9999995, 1.000001, 59.01, 1710234205.103408, 1710234205.0000004,
               1710234205.9999996, 1710234205.0999995, 1_073_741_823.9999996, 1_073_741_824.000001,
               2_147_483_647.999999, 4_294_967_296.5, 2.5e11 - 1,
               2.5e11, 1e13, -0.5, -1e-7, float("inf"), float("-inf"), float("nan")]


def test_flow_timestamps_are_iso_of_them(each_kernel: ModuleType) -> None:
    # The export writes a flow's timestamps itself (its microseconds as machine integers where compiled):
    # exactly the JSON of iso's text, on both builds, at the edges of a second and of a machine word.
    scan = native.KERNEL.of("auditor.report.jsonscan")
    rng = random.Random(7)
    times = _EDGE_TIMES + [rng.uniform(0, 2.5e11) for _ in range(20_000)] + \
        [1.7e9 + rng.randrange(10**6) / 1e6 for _ in range(20_000)]
    seconds: dict[int, str] = {}
    assert [scan._ts(t, seconds, _Seconds()) for t in times] == [_ts_json(iso(t)) for t in times]
