"""JSON and CSV renderers of the audit document. They return str; only the CLI writes files."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from auditor.refusal import summary_text
from auditor.report.document import FlowRows
from auditor.report.jsondata import FlowJson, plain
from auditor.report.model import AuditDocument, FlowRow

if TYPE_CHECKING:
    import pandas as pd


# CSV columns, in order: one row per flow (SPEC §5).
FLOW_COLUMNS = [
    "classification", "failing", "outcome", "refused_by", "initiator", "responder", "protocol", "port",
    "app_protocol", "initiator_roles", "responder_roles", "initiator_names", "responder_names", "rule_ids", "layers",
    "reason",
    "reason_text", "connections", "established", "rejected", "unanswered", "packets", "bytes",
    "orig_packets", "resp_packets", "orig_bytes", "resp_bytes", "first_seen", "last_seen",
    "first_input", "first_frame", "direction_evidence", "direction_inferred", "tunnels", "summarised",
    "apps", "unverified",
]


_BATCH = 2000
_DUMP = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
# Compact: only the compact form uses the C encoder (pretty-printing is ~5x slower and far larger).


def iter_json(doc: AuditDocument) -> Iterator[str]:
    """The document as JSON text, in chunks: flows[] is written a batch at a time (jsondata.FlowJson),
    so a large audit never holds its whole JSON (nor every flow) in memory."""
    sep = "{"
    for f in dataclasses.fields(doc):
        if f.name != "flows":
            yield f"{sep}{_DUMP(f.name)}:{_DUMP(plain(getattr(doc, f.name)))}"
        else:
            yield f'{sep}"flows":['
            rows, text = doc.flows, FlowJson()
            for start in range(0, len(rows), _BATCH):
                if isinstance(rows, FlowRows):
                    batch = ",".join(rows.json_texts(text, start, start + _BATCH))
                else:
                    batch = ",".join([text(r) for r in rows[start:start + _BATCH]])
                yield batch if start == 0 else "," + batch
            yield "]"
        sep = ","
    yield "}\n"


def render_json(doc: AuditDocument) -> str:
    return "".join(iter_json(doc))


def _csv_safe(value: str) -> str:
    # A capture string starting with = + - @ would be evaluated as a formula by spreadsheet programs.
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def flows_frame(doc: AuditDocument) -> pd.DataFrame:
    """The flows as a pandas table (for analysis in Python; the CSV export streams without pandas,
    whose import alone costs ~50 MB of memory a command-line run does not need)."""
    import pandas as pd

    return pd.DataFrame([csv_row(f) for f in doc.flows], columns=FLOW_COLUMNS)


def _join(items: tuple[str, ...]) -> str:
    return ";".join(items)


def csv_row(f: FlowRow) -> list[Any]:
    """A flow as the CSV's cells (FLOW_COLUMNS); text from a capture cannot start a formula."""
    return [
        f.classification, f.failing, f.outcome, summary_text(plain(e) for e in f.refused_by),
        f.initiator, f.responder, f.protocol, f.port, f.app_protocol,
        _join(f.initiator_roles), _join(f.responder_roles),
        _csv_safe(_join(f.initiator_names)), _csv_safe(_join(f.responder_names)), _join(f.rule_ids),
        _join(f.layers), "" if f.reason is None else f.reason,
        "" if f.reason_text is None else _csv_safe(f.reason_text),
        f.connections, f.established, f.rejected, f.unanswered, f.packets, f.bytes,
        f.orig_packets, f.resp_packets, f.orig_bytes, f.resp_bytes,
        "" if f.first_seen is None else f.first_seen, "" if f.last_seen is None else f.last_seen,
        f.first_frame.input, f.first_frame.frame, f.direction_evidence, f.direction_inferred,
        _csv_safe(_join(f.tunnels)), f.summarised,
        ";".join(f"{k}:{n}" for k, n in f.apps.items()), f.unverified,
    ]


def iter_csv(doc: AuditDocument) -> Iterator[str]:
    """One row per flow, written a batch at a time (the csv module: building a DataFrame per batch
    measured ten times slower); both are built from the same rows, csv_row."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(FLOW_COLUMNS)
    for i, f in enumerate(doc.flows, 1):
        out.writerow(csv_row(f))
        if not i % _BATCH:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def render_csv(doc: AuditDocument) -> str:
    return "".join(iter_csv(doc))
