"""JSON and CSV renderers of the audit document. They return str; only the CLI writes files."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

# CSV columns, in order: one row per flow (SPEC §5).
FLOW_COLUMNS = [
    "classification", "failing", "outcome", "initiator", "responder", "protocol", "port",
    "initiator_roles", "responder_roles", "initiator_names", "responder_names", "rule_ids", "reason",
    "reason_text", "connections", "established", "rejected", "unanswered", "packets", "bytes",
    "orig_packets", "resp_packets", "orig_bytes", "resp_bytes", "first_seen", "last_seen",
    "first_input", "first_frame", "direction_evidence", "direction_inferred", "tunnels", "summarised",
]


def render_json(doc: dict[str, Any]) -> str:
    # No indent: only the compact form uses the C encoder (pretty-printing is ~5x slower and far larger).
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"


def _csv_safe(value: str) -> str:
    # A capture string starting with = + - @ would be evaluated as a formula by spreadsheet programs.
    if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def flows_frame(doc: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for f in doc["flows"]:
        row = dict(f)
        row["first_input"] = f["first_frame"]["input"]
        row["first_frame"] = f["first_frame"]["frame"]
        for key in ("initiator_roles", "responder_roles", "initiator_names", "responder_names", "rule_ids",
                    "tunnels"):
            row[key] = ";".join(f[key])
        for key in ("initiator_names", "responder_names", "reason_text", "tunnels"):
            if isinstance(row[key], str):
                row[key] = _csv_safe(row[key])
        rows.append(row)
    return pd.DataFrame(rows, columns=FLOW_COLUMNS)


def render_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    flows_frame(doc).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()
