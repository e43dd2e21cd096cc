"""JSON and CSV renderers of the audit document. They return str; only the CLI writes files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from auditor.refusal import summary_text
from auditor.report.document import FlowRows

if TYPE_CHECKING:
    import pandas as pd


# CSV columns, in order: one row per flow (SPEC §5).
FLOW_COLUMNS = [
    "classification", "failing", "outcome", "refused_by", "initiator", "responder", "protocol", "port",
    "initiator_roles", "responder_roles", "initiator_names", "responder_names", "rule_ids", "layers", "reason",
    "reason_text", "connections", "established", "rejected", "unanswered", "packets", "bytes",
    "orig_packets", "resp_packets", "orig_bytes", "resp_bytes", "first_seen", "last_seen",
    "first_input", "first_frame", "direction_evidence", "direction_inferred", "tunnels", "summarised",
]


_BATCH = 2000
_DUMP = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
# Compact: only the compact form uses the C encoder (pretty-printing is ~5x slower and far larger).


def iter_json(doc: dict[str, Any]) -> Iterator[str]:
    """The document as JSON text, in chunks: flows[] is encoded a batch at a time, so a large audit
    never holds its whole JSON (nor every flow as a dict) in memory. An audit's own rows (FlowRows)
    write their JSON text directly, without a dict per flow; any other sequence of dicts is encoded."""
    sep = "{"
    for key, value in doc.items():
        if key != "flows":
            yield f"{sep}{_DUMP(key)}:{_DUMP(value)}"
        else:
            yield f'{sep}"flows":['
            if isinstance(value, FlowRows):
                batches: Iterable[str] = value.iter_json(_BATCH)
            else:
                batches = (_DUMP(list(value[i:i + _BATCH]))[1:-1] for i in range(0, len(value), _BATCH))
            for i, batch in enumerate(batches):
                yield batch if i == 0 else "," + batch
            yield "]"
        sep = ","
    yield "}\n"


def render_json(doc: dict[str, Any]) -> str:
    return "".join(iter_json(doc))


_CAPTURE_TEXT = frozenset(("initiator_names", "responder_names", "reason_text", "tunnels"))


def _csv_safe(value: str) -> str:
    # A capture string starting with = + - @ would be evaluated as a formula by spreadsheet programs.
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def flows_frame(doc: dict[str, Any]) -> pd.DataFrame:
    """The flows as a pandas table (for analysis in Python; the CSV export streams without pandas,
    whose import alone costs ~50 MB of memory a command-line run does not need)."""
    return _frame(doc["flows"])


def _frame(flows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([_csv_row(f) for f in flows], columns=FLOW_COLUMNS)


def _csv_row(f: dict[str, Any]) -> list[Any]:
    row = []
    for col in FLOW_COLUMNS:
        if col == "first_input":
            value: Any = f["first_frame"]["input"]
        elif col == "first_frame":
            value = f["first_frame"]["frame"]
        elif col == "refused_by":
            value = summary_text(f.get("refused_by") or [])
        else:
            value = f[col]
        if isinstance(value, list):
            value = ";".join(value)
        if isinstance(value, str) and col in _CAPTURE_TEXT:
            value = _csv_safe(value)
        row.append("" if value is None else value)
    return row


def iter_csv(doc: dict[str, Any]) -> Iterator[str]:
    """One row per flow, written a batch at a time (the csv module: building a DataFrame per batch
    measured ten times slower); both are built from the same rows, _csv_row."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(FLOW_COLUMNS)
    for i, f in enumerate(doc["flows"], 1):
        out.writerow(_csv_row(f))
        if not i % _BATCH:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def render_csv(doc: dict[str, Any]) -> str:
    return "".join(iter_csv(doc))
