"""Export of the catalog's rules as JSON and CSV (renderers return str; the CLI writes files)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from auditor.catalog.rule import Citation, FlowRule

EXPORT_FIELDS = ("id", "product", "source", "destination", "protocol", "ports", "type", "description",
                 "bidirectional", "configurable", "one_way", "loopback_only", "hostnames", "note",
                 "seed_row", "source_file", "layer", "feature", "citation", "apps", "apps_on")
_FLAGS = ("bidirectional", "configurable", "one_way", "loopback_only")


def _port_items(rule: FlowRule) -> list[int | str]:
    return [lo if lo == hi else f"{lo}-{hi}" for lo, hi in rule.ports]


def rule_record(rule: FlowRule) -> dict[str, Any]:
    """A rule as a JSON-ready dict: protocols and ports as lists (ports as ints and 'lo-hi')."""
    return {"id": rule.id, "product": rule.product, "source": rule.source, "destination": rule.destination,
            "protocols": list(rule.protocols), "ports": _port_items(rule), "type": rule.type,
            "description": rule.description, **{k: getattr(rule, k) for k in _FLAGS},
            "hostnames": list(rule.hostnames), "note": rule.note, "seed_row": rule.seed_row,
            "source_file": rule.source_file, "layer": rule.layer, "feature": rule.feature,
            "citation": citation_record(rule.citation), "uncited": rule.uncited,
            "apps": list(rule.apps), "apps_on": list(rule.apps_on)}


def citation_record(c: Citation | None) -> dict[str, str] | None:
    return None if c is None else {"title": c.title, "section": c.section, "url": c.url}


def citation_text(rule: FlowRule) -> str:
    """One line: where the rule comes from ('title, section <url>'), or why nothing is cited."""
    c = rule.citation
    if c is not None:
        return f"{c.title}{', ' + c.section if c.section else ''} <{c.url}>"
    if rule.uncited:
        return f"no public Citrix page found: {rule.uncited}"
    return ""


def export_json(rules: Iterable[FlowRule]) -> str:
    return json.dumps([rule_record(r) for r in rules], indent=2, ensure_ascii=False) + "\n"


def export_csv(rules: Iterable[FlowRule]) -> str:
    """One row per rule and protocol (the seed's promise); ports like '80,443' or '49152-65535'."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rules:
        rec = rule_record(r)
        for proto in r.protocols:
            row = {k: rec.get(k, "") for k in EXPORT_FIELDS}
            row.update(protocol=proto, ports=r.ports_text, hostnames=" ".join(r.hostnames), citation=citation_text(r),
                       apps=" ".join(r.apps), apps_on=" ".join(r.apps_on),
                       **{k: str(getattr(r, k)).lower() for k in _FLAGS})
            w.writerow(row)
    return buf.getvalue()
