"""`pcap-audit diff OLD.json NEW.json` (SPEC §5, Diff): two real audits of a sample, and changed copies.

The baseline is the audit of sample_pcaps/cvad-onprem.pcapng, written by the CLI itself. Each changed
copy makes one change an auditor cares about (a flow removed, a flow added as unexpected, an outcome
changed to rejected, a rule status changed to missing); each must show in the text summary, the JSON
and the HTML, and --fail-on must count exactly what is new or worse in NEW.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from auditor.cli import main
from auditor.cli_audit import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK
from auditor.criteria import FAIL_ON_KINDS
from auditor.report.diff import (
    FINDING_KINDS,
    AuditDocumentError,
    Change,
    RuleChangeKind,
    compare,
    diff_audits,
    index_audit,
    load_audit,
)
from auditor.report.diff_render import HTML_ROWS, iter_json, render_html, render_json, render_text

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
ERROR = "pcap-audit: error:"
HOSTILE_SCRIPT = "<script>alert(1)</script>"
RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: reorders what follows it on screen
ZWSP = "\u200b"


# --- fixtures: a real audit and its changed copies ---------------------------------------------------


@pytest.fixture(scope="module")
def baseline_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit") / "old.json"
    proc = subprocess.run(
        [sys.executable, "-m", "auditor.cli", str(SAMPLES / "cvad-onprem.pcapng"), "--roles",
         str(SAMPLES / "cvad-onprem.roles.yaml"), "--json", str(out), "--no-html", "-q"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def baseline(baseline_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(baseline_path.read_text(encoding="utf-8"))
    return doc


def flow_key(f: dict[str, Any]) -> tuple[str, str, str, int]:
    return f["initiator"], f["responder"], f["protocol"], f["port"]


def remove_flow(doc: dict[str, Any]) -> dict[str, Any]:
    """Drops the first expected, established flow; returns it."""
    f = next(f for f in doc["flows"] if f["classification"] == "expected" and not f["failing"])
    doc["flows"].remove(f)
    return f


def add_unexpected(doc: dict[str, Any]) -> dict[str, Any]:
    f = copy.deepcopy(doc["flows"][0])
    f.update(initiator="10.0.99.9", responder="10.0.1.10", protocol="tcp", port=2222, classification="unexpected",
             failing=False, outcome="established", rule_ids=[], reverse_rule_ids=[],
             reason="no-rule-between-roles", reason_text="No catalog rule between these roles.")
    doc["flows"].append(f)
    return f


def reject_flow(doc: dict[str, Any]) -> dict[str, Any]:
    """The last expected, established flow becomes rejected (so failing); returns it."""
    f = [f for f in doc["flows"] if f["classification"] == "expected" and not f["failing"]][-1]
    f.update(outcome="rejected", failing=True, established=0, rejected=f["connections"])
    return f


def rule_missing(doc: dict[str, Any]) -> dict[str, Any]:
    r = next(r for r in doc["rules"] if r["status"] == "observed")
    r["status"] = "missing"
    return r


CHANGES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "removed": remove_flow, "unexpected": add_unexpected, "failing": reject_flow, "missing": rule_missing,
}


def changed(baseline: dict[str, Any], *names: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    doc = copy.deepcopy(baseline)
    return doc, {n: CHANGES[n](doc) for n in names}


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def invoke(args: Sequence[str | Path]) -> Result:
    return CliRunner().invoke(main, ["diff", *(str(a) for a in args)])


def one_error_line(result: Result, *needles: str) -> str:
    assert result.exit_code == EXIT_BAD_INPUT, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), result.stderr
    assert "Traceback" not in result.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


class Page(HTMLParser):
    """Elements by id, the text inside each element with an id, and every tag seen."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.ids: dict[str, dict[str, str | None]] = {}
        self.text_in: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        d = dict(attrs)
        ident = d.get("id")
        if ident:
            self.ids[ident] = d
            self.text_in[ident] = []
        if tag not in ("meta", "br", "link", "input", "img"):
            self._open.append((tag, ident))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            t, _ = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, ident in self._open:
            if ident:
                self.text_in[ident].append(data)

    def text(self, ident: str) -> str:
        return " ".join(" ".join(self.text_in[ident]).split())


def data_count(html: str, name: str) -> int:
    m = re.search(rf'data-count="{re.escape(name)}">([\d,]+)<', html)
    assert m, name
    return int(m.group(1).replace(",", ""))


# --- each change, in text, JSON and HTML ------------------------------------------------------------


def test_fail_on_kinds_are_the_audits() -> None:
    assert tuple(FINDING_KINDS) == tuple(FAIL_ON_KINDS)


def test_every_change_in_text_json_and_html(baseline: dict[str, Any], baseline_path: Path, tmp_path: Path) -> None:
    doc, made = changed(baseline, "removed", "unexpected", "failing", "missing")
    new = write(tmp_path / "new.json", doc)
    html, js = tmp_path / "diff.html", tmp_path / "diff.json"
    result = invoke([baseline_path, new, "-o", html, "--json", js])
    assert result.exit_code == EXIT_OK, result.stderr  # no --fail-on: a report, not a judgement
    out = result.stdout
    removed, added, rejected, rule = made["removed"], made["unexpected"], made["failing"], made["missing"]

    # Text: one line per change, saying what changed.
    def line_of(f: dict[str, Any]) -> str:
        prefix = f"{f['initiator']} -> {f['responder']} {f['protocol']}/{f['port']} "
        found = [ln for ln in out.splitlines() if ln.strip().startswith(prefix)]
        assert len(found) == 1, (prefix, out)
        return found[0]

    # The audit records each flow's application protocol (schema 2.2): the line names it.
    assert re.search(r"disappeared \(was expected, established(, [a-z]+)?\)", line_of(removed))
    assert "appeared: unexpected, established, tds (no-rule-between-roles)" in line_of(added)
    assert "[new or worse: unexpected]" in line_of(added)
    assert "expected -> failing; outcome established -> rejected" in line_of(rejected)
    assert "[new or worse: failing]" in line_of(rejected)
    assert re.search(rf"^\s+{re.escape(rule['id'])} .*: observed -> missing\s+\[new or worse: missing\]$", out, re.M)
    assert "flows: 1 appeared, 1 disappeared, 1 changed" in out
    assert "rules: 1 changed status, 0 only in NEW, 0 only in OLD" in out
    assert "new or worse in NEW: 1 unexpected, 1 failing, 1 missing" in out
    assert f"wrote {html}" in out and f"wrote {js}" in out

    # JSON: the diff's own schema, every change with both sides' states.
    d = json.loads(js.read_text(encoding="utf-8"))
    assert d["schema_version"] == "1.0" and d["kind"] == "pcap-audit diff"
    assert d["old"]["file"] == str(baseline_path) and d["new"]["file"] == str(new)
    assert d["old"]["inputs"][0]["sha256"] == baseline["inputs"][0]["sha256"]
    assert d["old"]["catalog"]["digest"] == baseline["catalog"]["digest"]
    assert d["summary"]["new_or_worse"] == {"unexpected": 1, "failing": 1, "missing": 1, "mismatch": 0}
    assert d["criteria"] == {"fail_on": [], "result": None, "found": []}
    by_key = {(f["initiator"], f["responder"], f["protocol"], f["port"]): f for f in d["flows"]}
    assert len(by_key) == len(d["flows"]) == 3
    gone = by_key[flow_key(removed)]
    assert gone["change"] == "disappeared" and gone["new"] is None and gone["old"]["verdict"] == "expected"
    came = by_key[flow_key(added)]
    assert came["change"] == "appeared" and came["old"] is None and came["new_or_worse"] == ["unexpected"]
    assert came["new"]["reason"] == "no-rule-between-roles"
    moved = by_key[flow_key(rejected)]
    assert moved["change"] == "changed" and set(moved["fields"]) == {"failing", "outcome"}
    assert (moved["old"]["outcome"], moved["new"]["outcome"]) == ("established", "rejected")
    assert moved["new_or_worse"] == ["failing"]
    (r,) = d["rules"]
    assert (r["id"], r["change"], r["old_status"], r["new_status"], r["new_or_worse"]) == \
        (rule["id"], "status", "observed", "missing", ["missing"])

    # HTML: each change in its section, the counts on the first screen.
    text = html.read_text(encoding="utf-8")
    page = Page(text)
    assert removed["initiator"] in page.text("flows-disappeared")
    assert f"{removed['protocol']}/{removed['port']}" in page.text("flows-disappeared")
    assert "10.0.99.9" in page.text("flows-appeared") and "no-rule-between-roles" in page.text("flows-appeared")
    changed_text = page.text("flows-changed")
    assert f"{rejected['initiator']} → {rejected['responder']}" in changed_text
    assert "outcome established -> rejected" in changed_text
    assert rule["id"] in page.text("rules-status") and "missing" in page.text("rules-status")
    for name, n in (("flows-appeared", 1), ("flows-changed", 1), ("flows-disappeared", 1), ("rules-status", 1),
                    ("rules-only-new", 0), ("rules-only-old", 0), ("worse-unexpected", 1),
                    ("worse-failing", 1), ("worse-missing", 1)):
        assert data_count(text, name) == n, name
    assert baseline["inputs"][0]["sha256"] in page.text("inputs")
    assert "no-change" not in page.ids
    # Evidence before everything else (SPEC §5: evidence first), criteria next.
    assert text.index('id="evidence"') < text.index('id="criteria"') < text.index('id="summary"') \
        < text.index('id="flows-appeared"')


@pytest.mark.parametrize("kind", ["unexpected", "failing", "missing"])
def test_fail_on_counts_what_is_new_or_worse(kind: str, baseline: dict[str, Any], baseline_path: Path,
                                             tmp_path: Path) -> None:
    new = write(tmp_path / "new.json", changed(baseline, "removed", kind)[0])
    assert invoke([baseline_path, new, "--fail-on", kind]).exit_code == EXIT_FINDINGS
    assert invoke([baseline_path, new, "--fail-on", ",".join(FINDING_KINDS)]).exit_code == EXIT_FINDINGS
    others = [k for k in FINDING_KINDS if k != kind]
    result = invoke([baseline_path, new, "--fail-on", ",".join(others)])
    assert result.exit_code == EXIT_OK, result.stdout
    assert f"--fail-on {','.join(others)}: PASS" in result.stdout
    assert invoke([baseline_path, new]).exit_code == EXIT_OK
    # The same change read the other way round is not new in NEW: an improvement passes.
    back = invoke([new, baseline_path, "--fail-on", kind])
    assert back.exit_code == EXIT_OK, back.stdout
    html = tmp_path / "d.html"
    assert invoke([baseline_path, new, "--fail-on", kind, "-o", html]).exit_code == EXIT_FINDINGS
    assert 'data-result="FAIL"' in html.read_text(encoding="utf-8")


def test_a_removed_flow_alone_is_not_new_or_worse(baseline: dict[str, Any], baseline_path: Path,
                                                   tmp_path: Path) -> None:
    new = write(tmp_path / "new.json", changed(baseline, "removed")[0])
    result = invoke([baseline_path, new, "--fail-on", "unexpected,failing,missing"])
    assert result.exit_code == EXIT_OK
    assert "flows: 0 appeared, 1 disappeared, 0 changed" in result.stdout


def test_identical_audits_are_no_change_even_with_fail_on(baseline: dict[str, Any], baseline_path: Path,
                                                          tmp_path: Path) -> None:
    # The baseline itself has unexpected and failing flows and missing rules: none is new.
    assert baseline["summary"]["unexpected"] and baseline["summary"]["expected_failing"]
    assert baseline["summary"]["rules"]["missing"]
    again = tmp_path / "again.json"
    shutil.copyfile(baseline_path, again)
    html, js = tmp_path / "d.html", tmp_path / "d.json"
    result = invoke([baseline_path, again, "--fail-on", "unexpected,failing,missing", "-o", html, "--json", js])
    assert result.exit_code == EXIT_OK, result.stdout + result.stderr
    assert f"no change: the same {len(baseline['flows'])} flows and {len(baseline['rules'])} rules" in result.stdout
    assert "--fail-on unexpected,failing,missing: PASS" in result.stdout
    d = json.loads(js.read_text(encoding="utf-8"))
    assert d["summary"]["identical"] is True and d["flows"] == [] and d["rules"] == []
    assert d["criteria"]["result"] == "PASS"
    assert "No change" in Page(html.read_text(encoding="utf-8")).text("no-change")


def test_a_second_run_of_the_same_audit_is_no_change(baseline_path: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.json"
    proc = subprocess.run(
        [sys.executable, "-m", "auditor.cli", str(SAMPLES / "cvad-onprem.pcapng"), "--roles",
         str(SAMPLES / "cvad-onprem.roles.yaml"), "--json", str(again), "--no-html", "-q"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    result = invoke([baseline_path, again, "--fail-on", "unexpected,failing,missing"])
    assert result.exit_code == EXIT_OK and "no change" in result.stdout


# --- bad input: one line, exit 2 ---------------------------------------------------------------------


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"hello": "world"}', "not an audit document"),
    (b"[1, 2, 3]", "not an audit document"),
    (b'{"schema_version": "2.0", "flows": []}', "not an audit document"),
    (b'{"schema_version": "3.0", "flows": [], "rules": []}', "unsupported audit schema version 3.0"),
    (b'{"schema_version": 2, "flows": [], "rules": []}', "not MAJOR.MINOR"),
    (b'{"schema_version": "2.0", "flows": [{"initiator": "a"}], "rules": []}', "flows[0] has no 'responder'"),
    (b'{"schema_version": "2.0", "flows": [], "rules": [{"id": 1}]}', "rules[0] has no id or status"),
    (b'{"schema_version": "1.0", "kind": "pcap-audit diff", "flows": [], "rules": []}', "a diff of two audits"),
    (b"this is not json", "not JSON"),
    (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(100), "not JSON"),  # a pcap header
    (b'{"schema_version": "2.0", "flows": [' * 3000, "not JSON"),
    (b"", "not JSON"),
])
def test_not_an_audit_is_one_line(content: bytes, needle: str, baseline_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    one_error_line(invoke([baseline_path, bad, "--fail-on", "unexpected"]), str(bad), needle)
    one_error_line(invoke([bad, baseline_path]), str(bad), needle)


def test_unreadable_inputs_are_one_line(baseline_path: Path, tmp_path: Path) -> None:
    one_error_line(invoke([baseline_path, tmp_path / "nope.json"]), "nope.json", "cannot read")
    one_error_line(invoke([tmp_path, baseline_path]), str(tmp_path), "is a directory")
    one_error_line(invoke(["/dev/zero", baseline_path]), "/dev/zero", "not a regular file")
    if os.geteuid() != 0:  # root reads any file
        locked = tmp_path / "locked.json"
        shutil.copyfile(baseline_path, locked)
        locked.chmod(0)
        one_error_line(invoke([baseline_path, locked]), "locked.json", "cannot read")


def test_an_input_may_be_a_pipe(baseline_path: Path, tmp_path: Path) -> None:
    """`pcap-audit diff <(zcat old.json.gz) new.json`: the shell passes a FIFO."""
    fifo = tmp_path / "old.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as fh:
            fh.write(baseline_path.read_bytes())

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = invoke([fifo, baseline_path, "--fail-on", "missing"])
    writer.join(10)
    assert result.exit_code == EXIT_OK and "no change" in result.stdout, result.stderr


def test_bad_usage_is_exit_2(baseline_path: Path) -> None:
    result = invoke([baseline_path, baseline_path, "--fail-on", "sometimes"])
    assert result.exit_code == EXIT_BAD_INPUT and "unknown kind(s) sometimes" in result.stderr
    assert invoke([baseline_path]).exit_code == EXIT_BAD_INPUT


def test_real_exit_statuses(baseline: dict[str, Any], baseline_path: Path, tmp_path: Path) -> None:
    """Through `python -m auditor.cli`, as a pipeline runs it."""
    new = write(tmp_path / "new.json", changed(baseline, "missing")[0])
    bad = tmp_path / "bad.json"
    bad.write_text("{}", encoding="utf-8")

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "auditor.cli", "diff", *map(str, args)], cwd=ROOT,
                              capture_output=True, text=True, check=False,
                              env=os.environ | {"PYTHONPATH": str(ROOT)})

    assert run(baseline_path, new).returncode == EXIT_OK
    assert run(baseline_path, new, "--fail-on", "missing").returncode == EXIT_FINDINGS
    proc = run(baseline_path, bad)
    assert proc.returncode == EXIT_BAD_INPUT and proc.stdout == ""
    assert proc.stderr.strip() == f"{ERROR} {bad}: not an audit document (no schema_version, flows or rules)"


# --- outputs: whole or not at all, never an input, never a device ---------------------------------------


def test_outputs_never_overwrite_an_input(baseline: dict[str, Any], baseline_path: Path, tmp_path: Path) -> None:
    new = write(tmp_path / "new.json", changed(baseline, "missing")[0])
    before = new.read_bytes()
    one_error_line(invoke([baseline_path, new, "--json", new]), "inputs are never overwritten")
    link = tmp_path / "link.json"
    link.symlink_to(new)
    one_error_line(invoke([baseline_path, new, "-o", link]), "inputs are never overwritten")
    hard = tmp_path / "hard.json"
    os.link(new, hard)
    one_error_line(invoke([baseline_path, new, "-o", hard]), "inputs are never overwritten")
    assert new.read_bytes() == before


def test_outputs_refuse_devices_and_fifos(baseline_path: Path, tmp_path: Path) -> None:
    one_error_line(invoke([baseline_path, baseline_path, "--json", "/dev/null"]), "/dev/null",
                   "only to a regular file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    one_error_line(invoke([baseline_path, baseline_path, "-o", fifo]), "only to a regular file")
    one_error_line(invoke([baseline_path, baseline_path, "-o", tmp_path]), "is a directory")
    one_error_line(invoke([baseline_path, baseline_path, "-o", tmp_path / "x", "--json", tmp_path / "x"]),
                   "each output needs a file of its own")


def test_outputs_whole_or_not_at_all(baseline: dict[str, Any], baseline_path: Path, tmp_path: Path) -> None:
    new = write(tmp_path / "new.json", changed(baseline, "unexpected")[0])
    js = tmp_path / "d.json"
    js.write_text("previous", encoding="utf-8")
    # The HTML cannot be put in place (its folder is a file): the JSON keeps its previous content.
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    result = invoke([baseline_path, new, "--json", js, "-o", blocker / "d.html"])
    assert result.exit_code == EXIT_BAD_INPUT and result.stderr.startswith(ERROR)
    assert js.read_text(encoding="utf-8") == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "file", "new.json"]
    # And when both can be written, both are, replacing what was there.
    assert invoke([baseline_path, new, "--json", js, "-o", tmp_path / "d.html"]).exit_code == EXIT_OK
    assert json.loads(js.read_text(encoding="utf-8"))["kind"] == "pcap-audit diff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.html", "d.json", "file", "new.json"]


# --- hostile strings ----------------------------------------------------------------------------------


def hostile(baseline: dict[str, Any]) -> dict[str, Any]:
    doc, made = changed(baseline, "unexpected")
    f = made["unexpected"]
    f["initiator"] = HOSTILE_SCRIPT
    f["responder"] = f"10.0.1.10{RLO}gpj.exe"
    f["initiator_roles"] = [f"Role{ZWSP}<b>x</b>"]
    f["reason"] = '"><img src=x onerror=alert(1)>'
    f["app_protocol"] = f"ica{RLO}</td>"
    r = next(r for r in doc["rules"] if r["status"] == "observed")
    r.update(status="missing", description=f"</style><script>alert(2)</script>{RLO}", product="a" * 5000)
    doc["inputs"][0]["path"] = f"<iframe src=//evil>{RLO}.pcap"
    doc["features"] = [{"id": f"</title><script>alert(3)</script>{RLO}", "how": "declared"}]
    return doc


def test_hostile_strings_stay_text(baseline: dict[str, Any], baseline_path: Path, tmp_path: Path) -> None:
    new = write(tmp_path / "new.json", hostile(baseline))
    html, js = tmp_path / "d.html", tmp_path / "d.json"
    result = invoke([baseline_path, new, "-o", html, "--json", js])
    assert result.exit_code == EXIT_OK, result.stderr
    text = html.read_text(encoding="utf-8")
    page = Page(text)
    # No element came from the audits: the page has no script, image, frame or bold at all.
    assert not {"script", "img", "iframe", "b"} & set(page.tags)
    assert "<script" not in text and "<img" not in text and "<iframe" not in text
    # Bidi and zero-width characters are shown, never obeyed.
    assert RLO not in text and ZWSP not in text
    assert "\\u202e" in text and "\\u200b" in text
    assert HOSTILE_SCRIPT in page.text("flows-appeared")  # shown as text
    assert "\\u202e" in page.text("inputs") and "\\u202e" in page.text("rules-status")
    # Long strings are bounded (the title keeps 1,024 characters) and cut shorter for display.
    assert "a" * 1024 not in text
    assert re.search(r">a{100,119}\u2026<", text)
    # The text summary is as careful (a terminal obeys control and bidi characters too).
    assert RLO not in result.stdout and "\\u202e" in result.stdout
    # The JSON keeps the audits' strings, bounded; JSON escaping is its consumers' to undo.
    d = json.loads(js.read_text(encoding="utf-8"))
    assert any(f["initiator"] == HOSTILE_SCRIPT for f in d["flows"])
    assert len(d["rules"][0]["product"]) <= 1024


def test_hostile_html_in_a_browser(baseline: dict[str, Any], tmp_path: Path) -> None:
    """Headless Chromium: the page runs no script and builds no element from the audits."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium not found (apt-get install chromium)")
        pytest.skip("chromium not found (apt-get install chromium)")
    doc = hostile(baseline)
    doc["flows"][-1]["initiator"] = "<img src=x onerror=document.title='pwned'>"
    page = tmp_path / "d.html"
    page.write_text(render_html(diff_audits(baseline, doc)), encoding="utf-8")
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=2000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=90, check=False)
    dom = proc.stdout
    assert "<body" in dom, proc.stderr[-2000:]
    parsed = Page(dom)
    assert not {"script", "img", "iframe"} & set(parsed.tags)
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)  # type: ignore[union-attr]
    assert "onerror=document.title" in parsed.text("flows-appeared")


# --- comparing: identity, protocols, aggregates, catalogs and schemas -------------------------------------


def test_app_protocol_compared_when_both_record_it(baseline: dict[str, Any]) -> None:
    old, new = copy.deepcopy(baseline), copy.deepcopy(baseline)
    for doc in (old, new):
        for f in doc["flows"]:
            f["app_protocol"] = "http" if f["port"] == 80 else None
    target = next(f for f in new["flows"] if f["port"] == 80)
    target["app_protocol"] = "tls"
    d = diff_audits(old, new)
    (c,) = d.flows
    assert c.change is Change.CHANGED and c.fields == ("app_protocol",) and c.worse == ()
    assert (c.old and c.old.app_protocol, c.new and c.new.app_protocol) == ("http", "tls")
    assert "protocol http -> tls" in render_text(d)
    # Only one side records it (an older audit): not compared, and said so.
    del_old = copy.deepcopy(baseline)
    for f in del_old["flows"]:
        f.pop("app_protocol", None)
    d = diff_audits(del_old, new)
    assert d.identical
    assert any("only NEW records application protocols" in n for n in d.notes)


def test_summarised_flows_compare_as_aggregates(baseline: dict[str, Any]) -> None:
    old, new = copy.deepcopy(baseline), copy.deepcopy(baseline)
    template = next(f for f in baseline["flows"] if f["classification"] == "unexpected")
    agg = copy.deepcopy(template) | {"initiator": "*", "responder": "10.0.1.10", "protocol": "tcp", "port": 3389,
                                     "summarised": True, "outcome": "unanswered", "connections": 5000}
    old["flows"].append(copy.deepcopy(agg))
    new["flows"].append(agg | {"connections": 9000, "outcome": "rejected"})
    lone = next(f for f in old["flows"] if f["responder"] == "10.0.1.10" and f["port"] == 3389
                and f["initiator"] != "*")
    new["flows"].remove(lone)
    d = diff_audits(old, new)
    by_kind = {c.change: c for c in d.flows}
    agg_change = by_kind[Change.CHANGED]
    assert (agg_change.initiator, agg_change.summarised, agg_change.fields) == ("*", True, ("outcome",))
    assert agg_change.new is not None and agg_change.new.connections == 9000
    gone = by_kind[Change.DISAPPEARED]
    assert gone.initiator == lone["initiator"] and gone.aggregate == "* -> 10.0.1.10 tcp/3389"
    assert any("NEW summarises flows" in n for n in d.notes)
    assert "may be in the aggregate * -> 10.0.1.10 tcp/3389" in render_text(d)


def test_catalog_change_is_stated(baseline: dict[str, Any]) -> None:
    old, new = copy.deepcopy(baseline), copy.deepcopy(baseline)
    new["catalog"]["digest"] = "sha256:" + "f" * 64
    extra = [copy.deepcopy(baseline["rules"][0]) | {"id": f"site-00{i}", "status": s, "layer": "site"}
             for i, s in enumerate(("missing", "observed", "not-applicable"), 1)]
    new["rules"] += extra
    dropped = new["rules"].pop(0)
    d = diff_audits(old, new)
    note = next(n for n in d.notes if n.startswith("catalog changed"))
    assert "3 rules only in NEW, 1 rules only in OLD" in note
    kinds = {(r.change, r.rule.id): r for r in d.rules}
    assert kinds[(RuleChangeKind.ONLY_NEW, "site-001")].worse == ("missing",)  # a finding NEW has, OLD had not
    assert kinds[(RuleChangeKind.ONLY_NEW, "site-002")].worse == ()
    assert kinds[(RuleChangeKind.ONLY_OLD, dropped["id"])].worse == ()
    assert d.new_or_worse()["missing"] == 1
    # The same digest: no note.
    assert not any(n.startswith("catalog changed") for n in diff_audits(old, old).notes)


def test_schema_versions_across_majors(baseline: dict[str, Any]) -> None:
    old, new = copy.deepcopy(baseline), copy.deepcopy(baseline)
    new["schema_version"] = "2.0"
    old["schema_version"] = "1.2"
    # 1.x called "not applicable" what 2.0 calls "not observable": a move between them is not a change.
    r = next(r for r in new["rules"] if r["status"] == "not-observable")
    next(x for x in old["rules"] if x["id"] == r["id"])["status"] = "not-applicable"
    d = diff_audits(old, new)
    assert d.identical
    assert any("schema versions differ (OLD 1.2, NEW 2.0)" in n and "1 rules that only moved" in n
               for n in d.notes)
    # Within one major, the same move is a change.
    old["schema_version"] = "2.0"
    assert [c.rule.id for c in diff_audits(old, new).rules] == [r["id"]]
    old["schema_version"] = "2.1"
    assert any("schema versions differ (OLD 2.1, NEW 2.0)" in n for n in diff_audits(old, new).notes)


def test_notes_on_roles_features_and_inputs(baseline: dict[str, Any]) -> None:
    new = copy.deepcopy(baseline)
    assert any("the same captures" in n for n in diff_audits(baseline, new).notes)
    new["roles_file"]["digest"] = "sha256:0"
    new["features"] = [{"id": "netscaler-ha", "title": "", "how": "declared in roles.yaml"}]
    new["inputs"][0]["sha256"] = "0" * 64
    notes = diff_audits(baseline, new).notes
    assert any(n.startswith("roles file changed") for n in notes)
    assert "deployment features differ: +netscaler-ha" in notes
    assert not any("the same captures" in n for n in notes)


def test_duplicate_keys_merge(baseline: dict[str, Any]) -> None:
    new = copy.deepcopy(baseline)
    f = next(f for f in new["flows"] if not f["failing"] and f["classification"] == "expected")
    new["flows"].append(copy.deepcopy(f) | {"outcome": "rejected", "failing": True, "connections": 2})
    d = diff_audits(baseline, new)
    (c,) = d.flows
    assert c.change is Change.CHANGED and c.worse == ("failing",)
    assert c.new is not None and c.new.connections == f["connections"] + 2
    assert any("NEW lists 1 flows under a key listed before" in n for n in d.notes)


def test_index_then_compare_equals_diff_audits(baseline: dict[str, Any]) -> None:
    doc, _ = changed(baseline, "removed", "unexpected", "failing", "missing")
    assert compare(index_audit(baseline, "OLD"), index_audit(doc, "NEW")) == diff_audits(baseline, doc)


def test_load_audit_names_the_file() -> None:
    with pytest.raises(AuditDocumentError, match=r"^x\.json: not JSON \(Expecting value at line 1 column 1\)$"):
        load_audit(b"nope", "x.json")
    with pytest.raises(AuditDocumentError, match="not JSON"):
        load_audit(b'{"n": ' + b"9" * 5000 + b"}", "x.json")


# --- large audits ---------------------------------------------------------------------------------


def many(baseline: dict[str, Any], n: int) -> dict[str, Any]:
    doc = copy.deepcopy(baseline)
    base = doc["flows"]
    doc["flows"] = [f | {"initiator": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}
                    for i, f in zip(range(n), (base[i % len(base)] for i in range(n)), strict=True)]
    return doc


def test_large_diff_streams_json_and_bounds_the_html(baseline: dict[str, Any]) -> None:
    n = HTML_ROWS + 500
    old = many(baseline, n)
    new = copy.deepcopy(old)
    for f in new["flows"]:
        f["outcome"] = "one-way" if f["outcome"] != "one-way" else "established"
    d = diff_audits(old, new)
    assert len(d.flows) == n and d.unchanged_flows == 0
    chunks = list(iter_json(d))
    assert len(chunks) > 3  # flows are encoded a batch at a time
    assert "".join(chunks) == render_json(d)
    assert len(json.loads("".join(chunks))["flows"]) == n
    html = render_html(d)
    assert data_count(html, "flows-changed") == n
    assert Page(html).ids["t-flows-changed"]["data-rows"] == str(n)
    assert html.count("<tr") < HTML_ROWS + 100
    assert f"First {HTML_ROWS:,} of {n:,} shown" in html


def test_order_new_or_worse_first(baseline: dict[str, Any]) -> None:
    doc, _ = changed(baseline, "removed", "unexpected", "failing")
    d = diff_audits(baseline, doc)
    assert [c.worse != () for c in d.flows] == [True, True, False]
    assert d.flows[-1].change is Change.DISAPPEARED
