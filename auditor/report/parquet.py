"""The flows as Parquet (``--parquet FILE``): the CSV's table, with typed columns, through pandas and
pyarrow (an optional extra: ``pip install 'pcap-audit[parquet]'``). Renderers return data; the CLI
writes it."""

from __future__ import annotations

import io
from typing import Any

from auditor.errors import AuditorError
from auditor.report.model import AuditDocument

_INTS = ("port", "connections", "established", "rejected", "unanswered", "packets", "bytes", "orig_packets",
         "resp_packets", "orig_bytes", "resp_bytes", "first_input", "first_frame", "unverified")


def available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def render_parquet(doc: AuditDocument) -> bytes:
    """The flows table (one row per flow, the CSV's columns) as Parquet bytes. List columns (roles,
    names, rule ids) stay lists; counts are integers; times are UTC timestamps."""
    if not available():
        raise AuditorError("--parquet needs pyarrow: pip install 'pcap-audit[parquet]' (or pip install pyarrow)")
    import pandas as pd

    from auditor.report.tabular import FLOW_COLUMNS

    rows = []
    for f in doc.flows:
        row: dict[str, Any] = {}
        for col in FLOW_COLUMNS:
            if col == "first_input":
                row[col] = f.first_frame.input
            elif col == "first_frame":
                row[col] = f.first_frame.frame
            elif col == "refused_by":
                row[col] = [r.text for r in f.refused_by]
            elif col == "apps":
                row[col] = ";".join(f"{k}:{n}" for k, n in f.apps.items())  # the CSV's text
            else:
                value = getattr(f, col)
                row[col] = list(value) if isinstance(value, tuple) else value
        rows.append(row)
    frame = pd.DataFrame(rows, columns=FLOW_COLUMNS)
    for col in _INTS:
        frame[col] = frame[col].astype("Int64")
    for col in ("first_seen", "last_seen"):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    buf = io.BytesIO()
    frame.to_parquet(buf, engine="pyarrow", index=False)
    return buf.getvalue()
