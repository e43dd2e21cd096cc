"""The audit document (docs/json-schema.md) -> one self-contained HTML report, as a string.

The page must open offline and stay usable for 50,000 flows, so rows travel as JSON in one
``<script type="application/json">`` block and a small inline script pages, sorts and filters them.
The first page of every table is also rendered here, so the report still reads (and its tests can
check it) without JavaScript. ``reports/templates/report.js`` builds cells exactly as ``_cell`` does.

Everything taken from the document is treated as hostile (names, SNI and Host come from captures):
control, format and separator characters are shown as ``\\uXXXX``, strings are bounded, the template
is autoescaped, and the JSON block escapes ``<``, ``>``, ``&``, U+2028 and U+2029 so no string can close
the script element.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from auditor import resources

PAGE_SIZE = 50
"""Rows per table page, both in the server-rendered first page and in the script's pages."""
DISPLAY_CHARS = 120
"""Longer strings are cut for display; the cell's title attribute holds the bounded full text."""
MAX_CHARS = 1024
"""Every string from the document is bounded to this many characters before it reaches the page."""
TOP_TALKERS = 10

SEVERITY = {"failing": 0, "unexpected": 1, "expected": 2, "unmapped": 3}
RULE_SEVERITY = {"failing": 0, "missing": 1, "observed": 2, "not-observable": 3, "not-applicable": 4}
NO_ROLE = "(not in roles.yaml)"

# Compact row layouts shared with report.js (field positions; keep both in step).
F_V, F_I, F_IN, F_IR, F_R, F_RN, F_RR, F_PROTO, F_PORT, F_OUT = range(10)
F_RULES, F_REASON, F_RTEXT, F_CONN, F_EST, F_REJ, F_UNANS, F_STATES, F_PK, F_B = range(10, 20)
F_FS, F_LS, F_FIN, F_FFR, F_DIR, F_INF, F_SUM = range(20, 27)
R_STATUS, R_ID, R_PRODUCT, R_SRC, R_DST, R_PROTOS, R_PORTS, R_DESC, R_NOTE, R_FLOWS, R_LACK = range(11)
H_ADDR, H_ROLES, H_NAMES = range(3)

FLOW_COLS = {
    "verdict": "Verdict", "init": "Initiator", "resp": "Responder", "svc": "Service",
    "outcome": "Outcome", "why": "Rule / reason", "conns": "Conns", "packets": "Packets",
    "bytes": "Bytes", "first": "First seen", "last": "Last seen", "frame": "First frame",
    "dir": "Direction",
}
RULE_COLS = {
    "status": "Status", "rule": "Rule", "pair": "Source \u2192 destination", "rsvc": "Protocol / ports",
    "desc": "Description", "lacking": "Hosts lacking it", "rflows": "Flows",
}
HOST_COLS = {"addr": "Address", "roles": "Roles", "names": "Names (evidence)"}
_EVIDENCE_COLS = ["outcome", "why", "conns", "packets", "bytes", "first", "last", "frame", "dir"]

# C0/C1 controls, bidi and other format characters, line/paragraph separators, surrogates,
# private use and unassigned code points are shown escaped: they can hide or reorder text.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_MAYBE_UNSAFE = re.compile(r"[^\x20-\x7e]")


class ReportDataError(ValueError):
    """The audit document lacks a field the report needs (a bug in the producer, not user input)."""


def render_html(doc: dict[str, Any], *, templates_dir: Path | None = None) -> str:
    """Render the audit document as one self-contained HTML page.

    Raises ``ReportDataError`` when a required field of the document is missing or of the wrong type.
    """
    folder = resources.templates_dir() if templates_dir is None else templates_dir
    env = _environment(folder)
    try:
        view = build_view(doc)
        # Flows, rules and hosts reach the page only through the view's records (already cleaned).
        head = _clean({k: v for k, v in doc.items() if k not in ("flows", "rules", "hosts")})
        return env.get_template("report.html.j2").render(doc=head, view=view)
    except (KeyError, TypeError, IndexError, jinja2.UndefinedError) as e:
        raise ReportDataError(f"audit document is incomplete for the HTML report: {e!r}") from e


def _environment(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )

    def inline(name: str, closing: str) -> Markup:
        # Our own CSS/JS partials, inlined verbatim (not parsed as templates: JS is full of braces).
        text = (folder / name).read_text(encoding="utf-8")
        if closing in text.lower():
            raise ValueError(f"{name} must not contain {closing!r}")
        return Markup(text)

    env.globals["inline_css"] = lambda name: inline(name, "</style")
    env.globals["inline_js"] = lambda name: inline(name, "</script")
    env.filters["num"] = fmt_num
    env.filters["bytes"] = fmt_bytes
    env.filters["ts"] = fmt_ts
    env.filters["short"] = short
    return env


# --- text hygiene and formatting (report.js mirrors these) -----------------------------------


def safe_text(value: object, limit: int = MAX_CHARS) -> str:
    """Any value -> printable text without hidden characters, at most ``limit`` characters."""
    text = "" if value is None else str(value)
    if _MAYBE_UNSAFE.search(text):
        text = "".join(
            f"\\u{ord(ch):04x}" if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text
        )
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def short(text: str) -> str:
    """Display form: at most DISPLAY_CHARS characters."""
    return text if len(text) <= DISPLAY_CHARS else text[: DISPLAY_CHARS - 1] + "\u2026"


def fmt_num(n: int | float | None) -> str:
    return "" if n is None else f"{int(n):,}"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return ""
    value, unit = float(n), "B"
    for nxt in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, nxt
    if unit == "B":
        return f"{int(n)} B"
    return f"{math.floor(value * 10 + 0.5) / 10:.1f} {unit}"


def fmt_ts(ts: str | None) -> str:
    """'2026-11-26T13:05:00.123456Z' -> '2026-11-26 13:05:00' (the title keeps the full value)."""
    return "" if not ts else ts[:19].replace("T", " ")


def role_slug(role: str) -> str:
    """The stable element id suffix of a role section: ``id="role-<slug>"``."""
    return re.sub(r"[^a-z0-9]+", "-", role.lower()).strip("-") or "role"


def _clean(value: Any) -> Any:
    """A deep copy of the document with every string passed through ``safe_text``."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def script_json(data: Any) -> Markup:
    """JSON that is safe inside <script type="application/json">: no '<', '>', '&', U+2028/U+2029."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                     ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return Markup(text)


# --- the view: records, tables, first pages --------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One rendered table cell (report.js builds the same shape)."""

    text: str
    """What the cell shows (already cut to DISPLAY_CHARS)."""
    title: str = ""
    """Full (bounded) text for the hover tooltip, when the display is shortened or abbreviated."""
    sub: tuple[str, ...] = ()
    """Secondary lines shown smaller under the main text."""
    cls: str = ""
    """CSS class (verdict or status colour)."""


@dataclass(frozen=True)
class Table:
    """A sortable, filterable table: its columns, row count and server-rendered first page."""

    id: str
    """Stable key (``data-table``) and JSON key of its rows."""
    kind: str
    """Record kind of its rows: flow | rule | host."""
    columns: list[tuple[str, str]]
    """(column key, header label)."""
    rows: list[int]
    """Record indexes, in default order."""
    first_page: list[list[Cell]] = field(default_factory=list)
    """Cells of the first PAGE_SIZE rows."""


@dataclass(frozen=True)
class RoleView:
    """One role section."""

    role: str
    slug: str
    hosts: list[str]
    counts: dict[str, int]
    as_source: Table
    as_destination: Table
    missing: Table


@dataclass(frozen=True)
class MatrixCell:
    expected: int
    failing: int
    unexpected: int
    cls: str
    title: str


@dataclass
class View:
    """Everything the template needs besides the cleaned document itself."""

    tables: dict[str, Table]
    roles: list[RoleView]
    matrix_roles: list[str]
    matrix: dict[tuple[str, str], MatrixCell]
    talkers: list[dict[str, Any]]
    data: Markup
    page_size: int
    summarised_flows: int


class _Lists:
    """Interned, cleaned string lists: 50,000 flows share a few hundred name and role lists."""

    def __init__(self) -> None:
        self.items: list[list[str]] = []
        self._index: dict[tuple[str, ...], int] = {}

    def __call__(self, raw: list[str]) -> int:
        key = tuple(raw)
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.items)
            self.items.append([safe_text(x) for x in raw])
        return found


def _flow_record(f: dict[str, Any], lists: _Lists) -> list[Any]:
    verdict = "failing" if f["classification"] == "expected" and f["failing"] else f["classification"]
    states = " ".join(f"{safe_text(k, 8)}:{v}" for k, v in sorted(f.get("conn_states", {}).items()))
    frame = f.get("first_frame") or {}
    return [
        verdict, safe_text(f["initiator"], 64), lists(f["initiator_names"]), lists(f["initiator_roles"]),
        safe_text(f["responder"], 64), lists(f["responder_names"]), lists(f["responder_roles"]),
        safe_text(f["protocol"], 16), f["port"], safe_text(f["outcome"], 32),
        [safe_text(r, 64) for r in f["rule_ids"]], safe_text(f["reason"] or "", 64),
        safe_text(f["reason_text"] or ""),
        f["connections"], f.get("established", 0), f.get("rejected", 0), f.get("unanswered", 0), states,
        f["packets"], f["bytes"], f["first_seen"], f["last_seen"],
        frame.get("input"), frame.get("frame"),
        safe_text(f["direction_evidence"] or "", 32), 1 if f.get("direction_inferred") else 0,
        1 if f.get("summarised") else 0,
    ]


def _rule_record(r: dict[str, Any]) -> list[Any]:
    return [
        safe_text(r["status"], 32), safe_text(r["id"], 64), safe_text(r.get("product", "")),
        safe_text(r["source"]), safe_text(r["destination"]), [safe_text(p, 16) for p in r["protocols"]],
        safe_text(r.get("ports") or ""), safe_text(r.get("description") or ""),
        safe_text(r.get("note") or ""), r.get("flows", 0), [safe_text(h) for h in r.get("hosts_lacking", [])],
    ]


def _host_record(h: dict[str, Any]) -> list[Any]:
    names = [
        safe_text(f"{n['name']} ({n.get('source', '?')}, input {n.get('input', '?')} "
                  f"frame {n.get('frame', '?')})")
        for n in h.get("names", [])
    ]
    return [safe_text(h["address"], 64), [safe_text(r) for r in h.get("roles", [])], names]


def _host_cell(addr: str, names: list[str], roles: list[str], show_roles: bool) -> Cell:
    sub: list[str] = []
    if show_roles:
        sub.append(short(", ".join(roles)) if roles else NO_ROLE)
    if names:
        sub.append(short(names[0]) + (f" (+{len(names) - 1} more)" if len(names) > 1 else ""))
    return Cell(short(addr), "\n".join(names), tuple(sub), "host")


def _flow_cell(key: str, rec: list[Any], ctx: dict[str, Any]) -> Cell:
    if key == "verdict":
        return Cell(rec[F_V], cls="v-" + rec[F_V])
    if key in ("init", "resp"):
        a, n, r = (F_I, F_IN, F_IR) if key == "init" else (F_R, F_RN, F_RR)
        lists = ctx["lists"]
        return _host_cell(rec[a], lists[rec[n]], lists[rec[r]], show_roles=key not in ctx["hide_roles"])
    if key == "svc":
        return Cell(rec[F_PROTO] + ("" if rec[F_PORT] is None else f"/{rec[F_PORT]}"), cls="svc")
    if key == "outcome":
        return Cell(rec[F_OUT], cls="o-" + rec[F_OUT])
    if key == "why":
        if rec[F_RULES]:
            lines = [f"{rid} \u2014 {ctx['rules'].get(rid, ['', ''])[0]}" for rid in rec[F_RULES]]
            # Several matching rules often share one note: show it once.
            notes = list(dict.fromkeys(ctx["rules"][rid][1] for rid in rec[F_RULES]
                                       if ctx["rules"].get(rid, ["", ""])[1]))
            full = "; ".join(lines)
            return Cell(short(full), "\n".join([full, *notes]), tuple(short("Note: " + n) for n in notes))
        text = rec[F_RTEXT] or rec[F_REASON]
        return Cell(short(text), text, (rec[F_REASON],) if rec[F_RTEXT] and rec[F_REASON] else ())
    if key == "conns":
        title = (f"established {rec[F_EST]}, rejected {rec[F_REJ]}, unanswered {rec[F_UNANS]}"
                 + (f"; states {rec[F_STATES]}" if rec[F_STATES] else ""))
        return Cell(fmt_num(rec[F_CONN]), title, cls="n")
    if key == "packets":
        return Cell(fmt_num(rec[F_PK]), cls="n")
    if key == "bytes":
        return Cell(fmt_bytes(rec[F_B]), f"{fmt_num(rec[F_B])} bytes", cls="n")
    if key in ("first", "last"):
        ts = rec[F_FS] if key == "first" else rec[F_LS]
        return Cell(fmt_ts(ts), ts or "")
    if key == "frame":
        if rec[F_FFR] is None:
            return Cell("")
        prefix = f"{rec[F_FIN]}:" if ctx["inputs"] > 1 else ""
        paths = ctx["paths"]
        path = paths[rec[F_FIN]] if isinstance(rec[F_FIN], int) and 0 <= rec[F_FIN] < len(paths) else "?"
        return Cell(f"{prefix}#{rec[F_FFR]}", f"input {rec[F_FIN]} ({path}), frame {rec[F_FFR]}", cls="n")
    if key == "dir":
        if rec[F_INF]:
            return Cell(rec[F_DIR], sub=("inferred",), cls="dir inferred")
        return Cell(rec[F_DIR], cls="dir")
    raise KeyError(key)


def _rule_cell(key: str, rec: list[Any]) -> Cell:
    if key == "status":
        return Cell(rec[R_STATUS], cls="s-" + rec[R_STATUS])
    if key == "rule":
        return Cell(rec[R_ID], sub=(short(rec[R_PRODUCT]),) if rec[R_PRODUCT] else ())
    if key == "pair":
        return Cell(short(f"{rec[R_SRC]} \u2192 {rec[R_DST]}"), f"{rec[R_SRC]} \u2192 {rec[R_DST]}")
    if key == "rsvc":
        return Cell(short(" ".join([", ".join(rec[R_PROTOS]), rec[R_PORTS]]).strip()))
    if key == "desc":
        note = (short("Note: " + rec[R_NOTE]),) if rec[R_NOTE] else ()
        return Cell(short(rec[R_DESC]), "\n".join(x for x in (rec[R_DESC], rec[R_NOTE]) if x), note)
    if key == "lacking":
        full = ", ".join(rec[R_LACK])
        return Cell(short(full), full)
    if key == "rflows":
        return Cell(fmt_num(rec[R_FLOWS]), cls="n")
    raise KeyError(key)


def _host_table_cell(key: str, rec: list[Any]) -> Cell:
    if key == "addr":
        return Cell(rec[H_ADDR])
    full = ", ".join(rec[H_ROLES] if key == "roles" else rec[H_NAMES])
    return Cell(short(full), full)


def _table(tid: str, kind: str, cols: Iterable[str], rows: list[int], records: list[list[Any]],
           ctx: dict[str, Any]) -> Table:
    labels = FLOW_COLS if kind == "flow" else RULE_COLS if kind == "rule" else HOST_COLS
    columns = [(c, labels[c]) for c in cols]
    page: list[list[Cell]] = []
    for idx in rows[:PAGE_SIZE]:
        rec = records[idx]
        if kind == "flow":
            fctx = ctx | {"hide_roles": ctx["hide"].get(tid, ())}
            page.append([_flow_cell(c, rec, fctx) for c, _ in columns])
        elif kind == "rule":
            page.append([_rule_cell(c, rec) for c, _ in columns])
        else:
            page.append([_host_table_cell(c, rec) for c, _ in columns])
    return Table(tid, kind, columns, rows, page)


def build_view(doc: dict[str, Any]) -> View:
    """Everything derived from the document: compact records, tables, the role matrix, top talkers."""
    interned = _Lists()
    flows = [_flow_record(f, interned) for f in doc["flows"]]
    lists = interned.items
    role_sets = [set(x) for x in lists]
    rules = [_rule_record(r) for r in doc["rules"]]
    hosts = [_host_record(h) for h in doc["hosts"]]
    paths = [safe_text(i["path"]) for i in doc["inputs"]]
    rule_text = {r[R_ID]: [r[R_DESC], r[R_NOTE]] for r in rules}
    hide: dict[str, tuple[str, ...]] = {}
    ctx: dict[str, Any] = {"rules": rule_text, "inputs": len(paths), "paths": paths, "hide": hide,
                           "lists": lists}

    by_severity = sorted(range(len(flows)),
                         key=lambda i: (SEVERITY.get(flows[i][F_V], 9), -(flows[i][F_B] or 0)))
    rule_order = sorted(range(len(rules)),
                        key=lambda i: (RULE_SEVERITY.get(rules[i][R_STATUS], 9), rules[i][R_ID]))
    # Missing and failing rules, and observed ones that some listed hosts never used.
    flagged = [i for i in rule_order if rules[i][R_STATUS] in ("missing", "failing")
               or (rules[i][R_STATUS] == "observed" and rules[i][R_LACK])]
    evidence = ["init", "resp", "svc", *_EVIDENCE_COLS]
    tables: dict[str, Table] = {}

    def add(t: Table) -> Table:
        tables[t.id] = t
        return t

    for verdict in ("failing", "unexpected", "unmapped"):
        rows = [i for i in by_severity if flows[i][F_V] == verdict]
        add(_table(verdict, "flow", evidence, rows, flows, ctx))
    add(_table("missing", "rule", RULE_COLS, flagged, rules, ctx))
    add(_table("hosts", "host", HOST_COLS, list(range(len(hosts))), hosts, ctx))

    judged = [i for i in by_severity if flows[i][F_V] != "unmapped"]
    role_views: list[RoleView] = []
    used_slugs: set[str] = set()
    for entry in doc["roles"]:
        role = safe_text(entry["role"])
        slug = base = role_slug(role)
        n = 2
        while slug in used_slugs:
            slug, n = f"{base}-{n}", n + 1
        used_slugs.add(slug)
        src_id, dst_id, miss_id = f"role-{slug}-src", f"role-{slug}-dst", f"role-{slug}-missing"
        hide[src_id], hide[dst_id] = ("init",), ("resp",)
        as_src = [i for i in judged if role in role_sets[flows[i][F_IR]]]
        as_dst = [i for i in judged if role in role_sets[flows[i][F_RR]]]
        role_views.append(RoleView(
            role, slug, [safe_text(h) for h in entry["hosts"]],
            {k: int(v) for k, v in entry["counts"].items()},
            add(_table(src_id, "flow", ["verdict", *evidence], as_src, flows, ctx)),
            add(_table(dst_id, "flow", ["verdict", *evidence], as_dst, flows, ctx)),
            add(_table(miss_id, "rule", RULE_COLS,
                       [i for i in flagged if role in (rules[i][R_SRC], rules[i][R_DST])], rules, ctx)),
        ))

    matrix_roles, matrix = _matrix([r.role for r in role_views], flows, lists)
    data = {
        "pageSize": PAGE_SIZE, "displayChars": DISPLAY_CHARS, "inputs": paths, "rules": rule_text,
        "noRole": NO_ROLE, "lists": lists, "flows": flows, "rule": rules, "host": hosts,
        "tables": {t.id: {"kind": t.kind, "cols": [c for c, _ in t.columns], "rows": t.rows,
                          "hide": list(hide.get(t.id, ()))} for t in tables.values()},
    }
    return View(
        tables=tables, roles=role_views, matrix_roles=matrix_roles, matrix=matrix,
        talkers=_top_talkers(flows, lists), data=script_json(data), page_size=PAGE_SIZE,
        summarised_flows=sum(1 for f in flows if f[F_SUM]),
    )


def _matrix(
    roles: list[str], flows: list[list[Any]], lists: list[list[str]]
) -> tuple[list[str], dict[tuple[str, str], MatrixCell]]:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    order = {"expected": 0, "failing": 1, "unexpected": 2}
    for rec in flows:
        slot = order.get(rec[F_V])
        if slot is None:
            continue
        for a in lists[rec[F_IR]] or [NO_ROLE]:
            for b in lists[rec[F_RR]] or [NO_ROLE]:
                counts[(a, b)][slot] += 1
    axis = list(roles)
    for a, b in counts:
        for r in (a, b):
            if r not in axis and r != NO_ROLE:
                axis.append(r)
    if any(NO_ROLE in k for k in counts):
        axis.append(NO_ROLE)
    cells: dict[tuple[str, str], MatrixCell] = {}
    for (a, b), (e, f, u) in counts.items():
        cls = "m-fail" if f else "m-unexp" if u else "m-ok"
        title = f"{a} \u2192 {b}: {e} expected, {f} expected but failing, {u} unexpected flows"
        cells[(a, b)] = MatrixCell(e, f, u, cls, title)
    return axis, cells


def _top_talkers(flows: list[list[Any]], lists: list[list[str]]) -> list[dict[str, Any]]:
    agg: dict[str, dict[str, Any]] = {}
    for rec in flows:
        if rec[F_V] != "unmapped":
            continue
        for addr, names in ((rec[F_I], lists[rec[F_IN]]), (rec[F_R], lists[rec[F_RN]])):
            t = agg.setdefault(addr, {"address": addr, "names": names, "bytes": 0, "packets": 0, "flows": 0})
            t["bytes"] += rec[F_B] or 0
            t["packets"] += rec[F_PK] or 0
            t["flows"] += 1
    return sorted(agg.values(), key=lambda t: (-t["bytes"], t["address"]))[:TOP_TALKERS]
