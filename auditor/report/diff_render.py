"""Renderers of a diff (auditor/report/diff.py): the text summary, the JSON and the HTML page.

Each returns ``str`` (or chunks of it); only the CLI writes files. Every string in a diff came from an
audit, and before that from a capture: the text and HTML show control, bidi and zero-width characters
as ``\\uXXXX`` (html.safe_text) and bound them, the HTML is autoescaped, and the JSON keeps the audits'
strings as they were (bounded) for machines, which must escape them in turn.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from auditor import __version__, resources
from auditor.report.diff import (
    DIFF_SCHEMA_VERSION,
    FINDING_KINDS,
    Change,
    Diff,
    FlowChange,
    FlowState,
    RuleChange,
    RuleChangeKind,
    Side,
)
from auditor.report.html import DISPLAY_CHARS, fmt_bytes, fmt_num, fmt_ts, safe_text, short

HTML_ROWS = 2000
"""Rows per table of the HTML page; the JSON has every change."""


def service(c: FlowChange) -> str:
    return c.protocol if c.port is None else f"{c.protocol}/{c.port}"


def flow_state_text(s: FlowState) -> str:
    return f"{s.verdict}, {s.outcome}" + (f", {s.app_protocol}" if s.app_protocol else "")


def flow_change_text(c: FlowChange) -> str:
    """What happened to the flow, in a few words (the text summary and the HTML say the same)."""
    if c.change is Change.APPEARED:
        assert c.new is not None
        why = c.new.reason if c.new.classification == "unexpected" and c.new.reason else ""
        return "appeared: " + flow_state_text(c.new) + (f" ({why})" if why else "")
    if c.change is Change.DISAPPEARED:
        assert c.old is not None
        return "disappeared (was " + flow_state_text(c.old) + ")"
    assert c.old is not None and c.new is not None
    parts = []
    if c.old.verdict != c.new.verdict:
        parts.append(f"{c.old.verdict} -> {c.new.verdict}")
    if "outcome" in c.fields:
        parts.append(f"outcome {c.old.outcome} -> {c.new.outcome}")
    if "app_protocol" in c.fields:
        parts.append(f"protocol {c.old.app_protocol or 'unknown'} -> {c.new.app_protocol or 'unknown'}")
    return "; ".join(parts) or "changed"


def rule_change_text(c: RuleChange) -> str:
    if c.change is RuleChangeKind.ONLY_NEW:
        return f"only in NEW's catalog: {c.new_status}"
    if c.change is RuleChangeKind.ONLY_OLD:
        return f"only in OLD's catalog (was {c.old_status})"
    return f"{c.old_status} -> {c.new_status}"


def criteria(diff: Diff, fail_on: Collection[str]) -> dict[str, Any]:
    """--fail-on and the result against it: PASS / FAIL, or None without criteria."""
    kinds = [k for k in FINDING_KINDS if k in fail_on]
    hit = diff.hit(kinds)
    return {"fail_on": kinds, "result": ("FAIL" if hit else "PASS") if kinds else None, "found": hit}


def render_text(diff: Diff, fail_on: Collection[str] = (), *, limit: int = 10) -> str:
    """The summary for standard output: each side, the notes, the counts and the first changes."""
    def t(value: object) -> str:
        return safe_text(value, 120)

    def side(label: str, s: Side) -> list[str]:
        span = [i.first_ts for i in s.inputs if i.first_ts], [i.last_ts for i in s.inputs if i.last_ts]
        when = f", {t(min(span[0])[:19])} -> {t(max(span[1])[:19])}" if span[0] and span[1] else ""
        out = [f"  {label} {t(s.name)}: schema {t(s.schema_version)}, {len(s.inputs)} input(s){when}, "
               f"{s.counts['flows']:,} flows, {sum(s.rule_counts.values()):,} rules"]
        for i in s.inputs[:3]:
            packets = "?" if i.packets is None else f"{i.packets:,}"
            out.append(f"    input {t(i.path)} sha256 {t(i.sha256[:16])}... {packets} packets")
        if len(s.inputs) > 3:
            out.append(f"    ... and {len(s.inputs) - 3} more inputs in the HTML and JSON")
        return out

    n, worse = diff.counts(), diff.new_or_worse()
    lines = [f"pcap-audit diff: {t(diff.old.name)} -> {t(diff.new.name)}", *side("OLD", diff.old),
             *side("NEW", diff.new)]
    lines += [f"  note: {safe_text(x, 400)}" for x in diff.notes]
    if diff.identical:
        lines.append(f"  no change: the same {n['flows_unchanged']:,} flows and {n['rules_unchanged']:,} rules, "
                     "with the same verdicts")
    else:
        lines.append(f"  flows: {n['flows_appeared']:,} appeared, {n['flows_disappeared']:,} disappeared, "
                     f"{n['flows_changed']:,} changed, {n['flows_unchanged']:,} unchanged")
        for c in diff.flows[:limit]:
            mark = f"  [new or worse: {', '.join(c.worse)}]" if c.worse else ""
            agg = f" (may be in the aggregate {t(c.aggregate)})" if c.aggregate else ""
            lines.append(f"    {t(c.initiator)} -> {t(c.responder)} {t(service(c))} {t(flow_change_text(c))}"
                         f"{agg}{mark}")
        if len(diff.flows) > limit:
            lines.append(f"    ... and {len(diff.flows) - limit:,} more flows in the HTML and JSON")
        lines.append(f"  rules: {n['rules_changed']:,} changed status, {n['rules_only_new']:,} only in NEW, "
                     f"{n['rules_only_old']:,} only in OLD, {n['rules_unchanged']:,} unchanged")
        for r in diff.rules[:limit]:
            mark = f"  [new or worse: {', '.join(r.worse)}]" if r.worse else ""
            lines.append(f"    {t(r.rule.id)} {t(r.rule.source)} -> {t(r.rule.destination)}: "
                         f"{t(rule_change_text(r))}{mark}")
        if len(diff.rules) > limit:
            lines.append(f"    ... and {len(diff.rules) - limit:,} more rules in the HTML and JSON")
    lines.append("  new or worse in NEW: " + ", ".join(f"{worse[k]:,} {k}" for k in FINDING_KINDS))
    crit = criteria(diff, fail_on)
    if crit["result"]:
        lines.append(f"  --fail-on {','.join(crit['fail_on'])}: {crit['result']}"
                     + (f" ({', '.join(crit['found'])} new or worse)" if crit["found"] else ""))
    return "\n".join(lines) + "\n"


_BATCH = 2000
_DUMP = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _state_json(s: FlowState | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"classification": s.classification, "failing": s.failing, "verdict": s.verdict, "outcome": s.outcome,
            "app_protocol": s.app_protocol, "rule_ids": list(s.rule_ids), "reason": s.reason,
            "initiator_roles": list(s.initiator_roles), "responder_roles": list(s.responder_roles),
            "connections": s.connections, "packets": s.packets, "bytes": s.bytes,
            "first_seen": s.first_seen, "last_seen": s.last_seen}


def flow_json(c: FlowChange) -> dict[str, Any]:
    return {"change": c.change.value, "initiator": c.initiator, "responder": c.responder,
            "protocol": c.protocol, "port": c.port, "summarised": c.summarised, "fields": list(c.fields),
            "new_or_worse": list(c.worse), "aggregate": c.aggregate or None,
            "old": _state_json(c.old), "new": _state_json(c.new)}


def rule_json(c: RuleChange) -> dict[str, Any]:
    r = c.rule
    return {"change": c.change.value, "id": r.id, "product": r.product, "source": r.source,
            "destination": r.destination, "protocols": list(r.protocols), "ports": r.ports,
            "description": r.description, "layer": r.layer, "old_status": c.old_status,
            "new_status": c.new_status, "new_or_worse": list(c.worse)}


def side_json(s: Side) -> dict[str, Any]:
    return {"file": s.name, "schema_version": s.schema_version, "tool_version": s.tool_version,
            "run_started": s.run_started, "catalog": {"digest": s.catalog_digest, "rules": s.catalog_rules},
            "roles_file": {"path": s.roles_path, "digest": s.roles_digest}, "features": list(s.features),
            "inputs": [vars(i) for i in s.inputs], "counts": s.counts | {"rules": s.rule_counts},
            "records_app_protocol": s.records_app_protocol}


def iter_json(diff: Diff, fail_on: Collection[str] = ()) -> Iterator[str]:
    """The diff as JSON (docs/diff.md), in chunks: flow changes are encoded a batch at a time."""
    head = {"schema_version": DIFF_SCHEMA_VERSION, "kind": "pcap-audit diff",
            "tool": {"name": "pcap-audit", "version": __version__},
            "old": side_json(diff.old), "new": side_json(diff.new), "notes": list(diff.notes),
            "criteria": criteria(diff, fail_on),
            "summary": {"identical": diff.identical, **diff.counts(), "new_or_worse": diff.new_or_worse()},
            "rules": [rule_json(c) for c in diff.rules]}
    yield _DUMP(head)[:-1] + ',"flows":['
    changes = iter(diff.flows)
    sep = ""
    while batch := [flow_json(c) for c in islice(changes, _BATCH)]:
        yield sep + _DUMP(batch)[1:-1]
        sep = ","
    yield "]}\n"


def render_json(diff: Diff, fail_on: Collection[str] = ()) -> str:
    return "".join(iter_json(diff, fail_on))




def _clean(value: Any) -> Any:
    """A copy with every string shown safely (html.safe_text): what the page may show of the audits."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _evidence(a: Side, b: Side) -> list[dict[str, Any]]:
    """Rows of the evidence table: what identifies each side, with the differing rows marked."""
    def catalog(s: Side) -> str:
        return s.catalog_digest + (f" ({s.catalog_rules:,} rules)" if s.catalog_rules is not None else "")

    rows = [("File", a.name, b.name), ("Audit JSON schema", a.schema_version, b.schema_version),
            ("Tool version", a.tool_version, b.tool_version),
            ("Run started", a.run_started or "?", b.run_started or "?"),
            ("Catalog", catalog(a), catalog(b)),
            ("Roles file", f"{a.roles_path} {a.roles_digest}", f"{b.roles_path} {b.roles_digest}"),
            ("Deployment features", ", ".join(a.features) or "none", ", ".join(b.features) or "none")]
    return [{"label": label, "old": safe_text(x), "new": safe_text(y), "differs": x != y and label != "File"}
            for label, x, y in rows]


def render_html(diff: Diff, fail_on: Collection[str] = (), *, templates_dir: Path | None = None) -> str:
    """One self-contained page (reports/templates/diff.html.j2): the evidence of each side first, the
    criteria and the counts, then a table per kind of change (at most HTML_ROWS rows each)."""
    folder = resources.templates_dir() if templates_dir is None else templates_dir
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)

    def inline_css(name: str) -> Markup:
        # The report's stylesheet, inlined verbatim as the report does (not parsed as a template).
        text = (folder / name).read_text(encoding="utf-8")
        if "</style" in text.lower():
            raise ValueError(f"{name} must not contain '</style'")
        return Markup(text)

    env.globals["inline_css"] = inline_css
    env.filters.update(num=fmt_num, bytes=fmt_bytes, ts=fmt_ts, short=short)
    flows: dict[str, list[dict[str, Any]]] = {k.value: [] for k in Change}
    totals = {k.value: 0 for k in Change}
    for c in diff.flows:
        totals[c.change.value] += 1
        rows = flows[c.change.value]
        if len(rows) < HTML_ROWS:
            rows.append(_clean(flow_json(c) | {"text": flow_change_text(c), "service": service(c)}))
    rules: dict[str, list[dict[str, Any]]] = {k.value: [] for k in RuleChangeKind}
    for r in diff.rules:
        rules[r.change.value].append(_clean(rule_json(r) | {"text": rule_change_text(r)}))
    view = {"old": _clean(side_json(diff.old)), "new": _clean(side_json(diff.new)),
            "evidence": _evidence(diff.old, diff.new), "notes": _clean(list(diff.notes)),
            "counts": diff.counts(), "worse": diff.new_or_worse(), "criteria": criteria(diff, fail_on),
            "identical": diff.identical, "flows": flows, "flow_totals": totals, "rules": rules,
            "max_rows": HTML_ROWS, "display_chars": DISPLAY_CHARS, "kinds": FINDING_KINDS,
            "tool": {"name": "pcap-audit", "version": __version__}, "schema_version": DIFF_SCHEMA_VERSION,
            "count_rows": _count_rows(diff.old, diff.new)}
    return env.get_template("diff.html.j2").render(view=view)


_FLOW_COUNTS = {"flows": "Flows", "expected": "Expected (failing included)", "failing": "Expected, failing",
                "unexpected": "Unexpected", "unmapped": "Unmapped"}


def _count_rows(a: Side, b: Side) -> list[dict[str, Any]]:
    """Each side's headline counts, counted from its flows and rules, with the difference."""
    keys = [(k, label, a.counts, b.counts) for k, label in _FLOW_COUNTS.items()]
    statuses = list(dict.fromkeys([*a.rule_counts, *b.rule_counts]))
    keys += [(k, f"Rules {k.replace('-', ' ')}", a.rule_counts, b.rule_counts) for k in statuses]
    rows = []
    for key, label, x_counts, y_counts in keys:
        x, y = x_counts.get(key, 0), y_counts.get(key, 0)
        rows.append({"key": key if x_counts is a.counts else "rules-" + key, "label": safe_text(label, 80),
                     "old": x, "new": y, "delta": f"{y - x:+,}" if y != x else ""})
    return rows
