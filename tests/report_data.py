"""The HTML report's data block read as report.js reads it (tests only): its flows' records as the
script makes them from the block's columns (report.js flowRecords, svcCell, whyCell), cells resolved."""

from __future__ import annotations

import base64
import datetime as dt
import math
import sys
from array import array
from typing import Any


def _num(n: int) -> str:
    return f"{n:,}"


def _bytes(n: int) -> str:
    value, unit = float(n), "B"
    for nxt in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, nxt
    return f"{n} B" if unit == "B" else f"{math.floor(value * 10 + 0.5) / 10:.1f} {unit}"


def _ts(t: int | str | None) -> list[Any]:
    if isinstance(t, int):
        sec, frac = divmod(t, 1_000_000)
        t = dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:06d}Z"
    if not t:
        return [""]
    text = t[:19].replace("T", " ")
    return [text, None, t] if text == t else [text, t, True]


def _svc_cell(data: dict[str, Any], t: list[Any], e: list[Any], at: int) -> list[Any]:
    parts = t[3]
    title = parts[0]
    for part in parts[1:]:
        fi, fn, head, detail = e[at:at + 4]
        detail = data["svc"]["d"][detail]
        title += (f"input {fi} frame " if data["multiInput"] else "frame ") + f"{fn}: {head}" + \
            (f" ({detail})" if detail else "") + part
        at += 4
    return [t[0], t[1], title, t[2]]


def _why_cell(data: dict[str, Any], t: list[Any], host: int) -> list[Any]:
    h = data["cells"][host]
    return [t[1] + (h[1] if len(h) > 1 and h[1] is not None else h[0]) + t[2], None, "", "", [t[3]]]


def column(text: str, kind: str) -> list[Any]:
    """A column of numbers as the data block packs it (its typecode, ":", the base64 of its numbers'
    little-endian bytes); ``kind``: "int" or "float", what the column must hold."""
    typecode, _, packed = text.partition(":")
    assert typecode in ("bhiq" if kind == "int" else "d"), text[:20]
    values = array(typecode, base64.b64decode(packed, validate=True))
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def micros(seconds: list[float], odd: dict[str, Any] | None) -> list[int | str | None]:
    """A time column as report.js reads it: whole microseconds (Python's round), or a time's text."""
    odd = odd or {}
    return [odd[str(k)] if str(k) in odd else round(t * 1e6) for k, t in enumerate(seconds)]


def flow_records(data: dict[str, Any]) -> list[list[Any]]:
    """The flows' records, as report.js makes them: shared cells as their index, own cells, service
    cells with their evidence and reason cells with their host's address made."""
    out = []
    for b in data["flows"]:
        ix = column(b["ix"], "int")
        e, at = b.get("e", []), 0
        columns = [column(b[name], "int") for name in ("p", "b")] + \
            [micros(column(b[name], "float"), b.get(name + "x")) for name in ("t0", "t1")] + \
            [column(b[name], "int") for name in ("fi", "fn")]
        assert all(len(c) == b["n"] for c in columns) and len(ix) == 9 * b["n"]
        for k, (p, n, t0, t1, fi, fn) in enumerate(zip(*columns, strict=True)):
            o = k * 9
            size = [_bytes(n), n, _num(n) + " bytes"] if n >= 1024 else [f"{n} B", n]
            frame = b["frame"][k] if "frame" in b else \
                [(f"{fi}:#" if data["multiInput"] else "#") + str(fn), fi * 10**12 + fn, ix[o + 8]]
            svc = ix[o + 3]
            if svc < 0:
                t = data["svc"]["t"][-1 - svc]
                svc = _svc_cell(data, t, e, at)
                at += 4 * (len(t[3]) - 1)
            why = ix[o + 5]
            if why < 0:
                w = data["why"][-1 - why]
                why = _why_cell(data, w, ix[o + w[0]])
            out.append([*ix[o:o + 3], svc, ix[o + 4], why, ix[o + 6], [_num(p), p], size, _ts(t0), _ts(t1), frame,
                        ix[o + 7]])
        assert at == len(e), "every evidence member is read"
    return out


def resolved(data: dict[str, Any]) -> list[list[Any]]:
    """The flows' records with every shared cell, and every title a shared cell holds, written out:
    what the page shows, whatever the cells' indexes."""
    shared = data["cells"]

    def cell(c: Any) -> Any:
        c = shared[c] if isinstance(c, int) else list(c)
        if len(c) > 2 and isinstance(c[2], int) and not isinstance(c[2], bool):
            c = [*c[:2], shared[c[2]][0], *c[3:]]
        return c

    return [[cell(c) for c in rec] for rec in flow_records(data)]
