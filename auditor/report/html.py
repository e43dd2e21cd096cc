"""The audit document (docs/json-schema.md) -> one self-contained HTML report, as a string or in chunks.

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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from auditor import resources
from auditor.refusal import summary_text
from auditor.report.model import AuditDocument, DocumentError

PAGE_SIZE = 50
"""Rows per table page, both in the server-rendered first page and in the script's pages."""
DISPLAY_CHARS = 120
"""Longer strings are cut for display; the cell's title attribute holds the bounded full text."""
MAX_CHARS = 1024
"""Every string from the document is bounded to this many characters before it reaches the page."""
TOP_TALKERS = 10
PRINT_ROWS = 10
"""Rows a table prints (the evidence pack); a line under it counts the rest, which the JSON holds."""
PRINT_ROLE_ROWS = 0
"""Rows each per-role table prints: none, the role prints its counts. Its failing and unexpected flows
and missing rules are the findings tables' rows, printed above; the rest are expected flows."""

SEVERITY = {"failing": 0, "unexpected": 1, "expected": 2, "unmapped": 3}
RULE_SEVERITY = {"failing": 0, "missing": 1, "observed": 2, "covered": 3, "not-observable": 4, "not-applicable": 5}
NO_ROLE = "(not in roles.yaml)"

# Compact row layouts shared with report.js (field positions; keep both in step).
F_V, F_I, F_IN, F_IR, F_R, F_RN, F_RR, F_PROTO, F_PORT, F_OUT = range(10)
F_RULES, F_REASON, F_RTEXT, F_CONN, F_EST, F_REJ, F_UNANS, F_STATES, F_PK, F_B = range(10, 20)
F_FS, F_LS, F_FIN, F_FFR, F_DIR, F_INF, F_SUM, F_REV = range(20, 28)
F_REF = 28  # who refused it (flows[].refused_by as one line), "" when nobody did
R_STATUS, R_ID, R_PRODUCT, R_SRC, R_DST, R_PROTOS, R_PORTS, R_DESC, R_NOTE, R_FLOWS, R_LACK = range(11)
R_LAYER, R_COVERED, R_CITE = range(11, 14)
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


ReportDataError = DocumentError
"""An audit document that does not have the schema's shape (raised while loading one)."""


def render_html(doc: AuditDocument, *, templates_dir: Path | None = None) -> str:
    """Render the audit document as one self-contained HTML page (``iter_html``, joined).

    Raises ``ReportDataError`` when a required field of the document is missing or of the wrong type.
    """
    return "".join(iter_html(doc, templates_dir=templates_dir))


def iter_html(document: AuditDocument, *, templates_dir: Path | None = None) -> Iterator[str]:
    """The same page in chunks, for writing a large report without holding it whole.

    The page around the data block (first pages of the tables, CSS, JS: under a megabyte) is rendered
    as one string with a placeholder where the data goes; the data block, nearly all of a large report,
    was encoded a batch of flows at a time while the view was built and is yielded in those batches.
    Everything that can fail runs before this returns: ``ReportDataError`` is raised here, never while
    the chunks are being written.
    """
    doc = document.to_json_dict()
    folder = resources.templates_dir() if templates_dir is None else templates_dir
    env = _environment(folder)
    try:
        view = build_view(doc)
        # Flows, rules and hosts reach the page only through the view's records (already cleaned).
        head = _clean({k: v for k, v in doc.items() if k not in ("flows", "rules", "hosts")})
        page = env.get_template("report.html.j2").render(doc=head, view=view)
    except (KeyError, TypeError, IndexError, jinja2.UndefinedError) as e:
        raise ReportDataError(f"audit document is incomplete for the HTML report: {e!r}") from e
    return _stitch(page.split(DATA_MARK), view.data_chunks)


def _stitch(parts: list[str], data: list[str]) -> Iterator[str]:
    yield parts[0]
    for part in parts[1:]:
        yield from data
        yield part


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
    return Markup(_script_safe(_DUMP(data)))


def _script_safe(text: str) -> str:
    """Escape JSON text for a script element. Per character, so chunks can be escaped one by one."""
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                     ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text


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
    print_rows: int = PRINT_ROWS
    """Rows printed (``data-print-rows``); report.js prints the same number of the rows in view."""


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
    """What the template writes where the data block goes: DATA_MARK, replaced by data_chunks."""
    page_size: int
    summarised_flows: int
    data_chunks: list[str] = field(default_factory=list)
    """The data block's JSON, script-safe, in chunks (a batch of flows each for the flows)."""


DATA_MARK = "\x00audit-data\x00"
"""Stands for the data block in the rendered page. Nothing from the document can contain it: every
string passes safe_text, which shows a NUL as \\u0000."""
_BATCH = 2000
_DUMP = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_DUMP_RECORDS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                                 check_circular=False).encode
"""For flow records, lists this module builds (no cycles to look for): the same text, a little faster."""
_MEMO_LIMIT = 1 << 16


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


class _SafeTexts(dict[Any, str]):
    """``safe_text(value, limit)`` of each distinct string, computed once per report: every flow
    repeats its addresses, protocol, outcome and reason. Only exact ``str`` keys are kept (as dict keys
    1, 1.0 and True are one key, and their texts differ); at most _MEMO_LIMIT of them."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, key: Any) -> str:
        text = safe_text(key, self.limit)
        if type(key) is str and len(self) < _MEMO_LIMIT:
            self[key] = text
        return text

    def __call__(self, value: Any) -> str:
        try:
            return self[value]
        except TypeError:  # unhashable, so not a string: shown as its str()
            return safe_text(value, self.limit)


class _Records:
    """Builds the compact flow records, with the memos the flows of one report share."""

    def __init__(self) -> None:
        self.lists = _Lists()
        self.t8, self.t16, self.t32 = _SafeTexts(8), _SafeTexts(16), _SafeTexts(32)
        self.t64, self.text = _SafeTexts(64), _SafeTexts(MAX_CHARS)

    def states(self, conn_states: dict[str, int]) -> str:
        if len(conn_states) == 1:  # most flows
            ((k, v),) = conn_states.items()
            return f"{self.t8(k)}:{v}"
        return " ".join(f"{self.t8(k)}:{v}" for k, v in sorted(conn_states.items()))

    def flow(self, values: tuple[Any, ...]) -> list[Any]:
        """One flow's record (field positions F_*; report.js reads the same layout) from its values
        in FLOW_KEYS order."""
        (initiator, responder, protocol, port, init_roles, resp_roles, init_names, resp_names, cls, failing,
         outcome, refused, rule_ids, reverse_ids, _, reason, reason_text, connections, established, rejected,
         unanswered, packets, nbytes, _, _, _, _, first_seen, last_seen, frame, evidence, inferred, states, _,
         summarised) = values
        if cls == "expected" and failing:
            if failing is _ABSENT:
                raise KeyError("failing")
            cls = "failing"
        frame = frame or {}
        lists, t64, t32 = self.lists, self.t64, self.t32
        try:  # the memos looked up directly (a call each costs more than the lookup)
            texts = (t64[initiator], t64[responder], self.t16[protocol], t32[outcome],
                     [t64[r] for r in rule_ids], t64[reason or ""], self.text[reason_text or ""],
                     t32[evidence or ""])
        except TypeError:  # an unhashable value, in a malformed document: shown as its str()
            texts = (t64(initiator), t64(responder), self.t16(protocol), t32(outcome),
                     [t64(r) for r in rule_ids], t64(reason or ""), self.text(reason_text or ""),
                     t32(evidence or ""))
        return [
            cls, texts[0], lists(init_names), lists(init_roles), texts[1], lists(resp_names), lists(resp_roles),
            texts[2], port, texts[3], texts[4], texts[5], texts[6],
            connections, established, rejected, unanswered, self.states(states),
            packets, nbytes, first_seen, last_seen, frame.get("input"), frame.get("frame"),
            texts[7], 1 if inferred else 0, 1 if summarised else 0, [t64(r) for r in reverse_ids],
            self.text(summary_text(refused)) if refused else "",
        ]


_ABSENT: Any = object()
"""Stands for a missing "failing", which only an expected flow needs."""


def _doc_values(f: dict[str, Any]) -> tuple[Any, ...]:
    """A flows[] dict's values in FLOW_KEYS order. Members the report needs raise KeyError when
    missing; the counts, states, frame and flags it can do without default as they always have."""
    get = f.get
    return (
        f["initiator"], f["responder"], f["protocol"], f["port"], f["initiator_roles"], f["responder_roles"],
        f["initiator_names"], f["responder_names"], f["classification"], get("failing", _ABSENT),
        f["outcome"], get("refused_by") or [], f["rule_ids"], get("reverse_rule_ids", []), get("layers", []),
        f["reason"], f["reason_text"], f["connections"], get("established", 0),
        get("rejected", 0), get("unanswered", 0), f["packets"], f["bytes"], None, None, None, None,
        f["first_seen"], f["last_seen"], get("first_frame"), f["direction_evidence"],
        get("direction_inferred"), get("conn_states", {}), None, get("summarised"),
    )


def _rule_record(r: dict[str, Any]) -> list[Any]:
    return [
        safe_text(r["status"], 32), safe_text(r["id"], 64), safe_text(r.get("product", "")),
        safe_text(r["source"]), safe_text(r["destination"]), [safe_text(p, 16) for p in r["protocols"]],
        safe_text(r.get("ports") or ""), safe_text(r.get("description") or ""),
        safe_text(r.get("note") or ""), r.get("flows", 0), [safe_text(h) for h in r.get("hosts_lacking", [])],
        safe_text(r.get("layer") or "document", 16), [safe_text(c, 64) for c in r.get("covered_by", [])],
        safe_text(_citation_line(r)),
    ]


def _citation_line(r: dict[str, Any]) -> str:
    c = r.get("citation")
    if isinstance(c, dict):
        return f"{c.get('title', '')}{', ' + c['section'] if c.get('section') else ''} <{c.get('url', '')}>"
    return f"no public Citrix page found: {r['uncited']}" if r.get("uncited") else ""


def rule_caption(rule_id: str, rules: dict[str, list[str]], reverse: bool) -> str:
    """How a flow's matching rule is captioned: by its description where the flow goes the rule's own
    way; as the same service opened from the other side where it matched only as a bidirectional
    rule (a VDA's registration is not captioned "Delivery Controller initiates...")."""
    text = rules.get(rule_id, ["", "", "document"])
    layer = f" [{text[2]}]" if len(text) > 2 and text[2] != "document" else ""
    if reverse:
        return f"{rule_id}{layer} \u2014 the same service, opened from the other side (bidirectional rule)"
    return f"{rule_id}{layer} \u2014 {text[0]}"


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
        return Cell(rec[F_OUT], rec[F_REF], (short(rec[F_REF]),) if rec[F_REF] else (), "o-" + rec[F_OUT])
    if key == "why":
        if rec[F_RULES]:
            lines = [rule_caption(rid, ctx["rules"], rid in rec[F_REV]) for rid in rec[F_RULES]]
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
        sub = ((short(rec[R_PRODUCT]),) if rec[R_PRODUCT] else ()) + \
            ((rec[R_LAYER],) if rec[R_LAYER] != "document" else ())
        return Cell(rec[R_ID], rec[R_CITE], sub)
    if key == "pair":
        return Cell(short(f"{rec[R_SRC]} \u2192 {rec[R_DST]}"), f"{rec[R_SRC]} \u2192 {rec[R_DST]}")
    if key == "rsvc":
        return Cell(short(" ".join([", ".join(rec[R_PROTOS]), rec[R_PORTS]]).strip()))
    if key == "desc":
        note = (short("Note: " + rec[R_NOTE]),) if rec[R_NOTE] else ()
        return Cell(short(rec[R_DESC]), "\n".join(x for x in (rec[R_DESC], rec[R_NOTE]) if x), note)
    if key == "lacking":
        if rec[R_STATUS] == "covered" and rec[R_COVERED]:
            full = "covered by " + ", ".join(rec[R_COVERED])
            return Cell(short(full), full)
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


def _table(tid: str, kind: str, cols: Iterable[str], rows: list[int], record: Callable[[int], list[Any]],
           ctx: dict[str, Any], print_rows: int = PRINT_ROWS) -> Table:
    labels = FLOW_COLS if kind == "flow" else RULE_COLS if kind == "rule" else HOST_COLS
    columns = [(c, labels[c]) for c in cols]
    page: list[list[Cell]] = []
    for idx in rows[:PAGE_SIZE]:
        rec = record(idx)
        if kind == "flow":
            fctx = ctx | {"hide_roles": ctx["hide"].get(tid, ())}
            page.append([_flow_cell(c, rec, fctx) for c, _ in columns])
        elif kind == "rule":
            page.append([_rule_cell(c, rec) for c, _ in columns])
        else:
            page.append([_host_table_cell(c, rec) for c, _ in columns])
    return Table(tid, kind, columns, rows, page, print_rows)


class _FlowPass:
    """One walk over the document's flows, keeping per flow only what the view needs afterwards.

    The records themselves are encoded for the data block a batch at a time and dropped: as lists
    they cost several times the memory of their JSON. What stays per flow: its verdict, its roles'
    list ids and its byte count (for sorting and the role tables); the role matrix, the top talkers
    and the count of summarised rows are tallied on the way. A table's first page re-reads its few
    flows from the document (``record``)."""

    def __init__(self, flows: Sequence[dict[str, Any]]) -> None:
        self.source = flows
        self.records = _Records()
        self.verdicts: list[str] = []
        self.init_roles: list[int] = []
        self.resp_roles: list[int] = []
        self.neg_bytes: list[Any] = []
        self.pairs: dict[tuple[int, int], list[int]] = {}
        """(initiator roles id, responder roles id) -> [expected, failing, unexpected] flows, in order
        of first appearance."""
        self.talkers: dict[str, dict[str, Any]] = {}
        self.summarised = 0
        self.chunks: list[str] = []
        """The records as script-safe JSON array items, a batch per chunk."""
        self._cache: dict[int, list[Any]] = {}

        values = map(_doc_values, flows)
        make = self.records.flow
        while batch := [make(x) for x in islice(values, _BATCH)]:
            self._take(batch)

    def _take(self, batch: list[list[Any]]) -> None:
        self.verdicts += [r[F_V] for r in batch]
        self.init_roles += [r[F_IR] for r in batch]
        self.resp_roles += [r[F_RR] for r in batch]
        self.neg_bytes += [-(r[F_B] or 0) for r in batch]
        self.summarised += sum(1 for r in batch if r[F_SUM])
        slots = {"expected": 0, "failing": 1, "unexpected": 2}
        for (verdict, ir, rr), n in Counter((r[F_V], r[F_IR], r[F_RR]) for r in batch).items():
            slot = slots.get(verdict)
            if slot is not None:
                counts = self.pairs.get((ir, rr))
                if counts is None:
                    counts = self.pairs[(ir, rr)] = [0, 0, 0]
                counts[slot] += n
        lists = self.records.lists.items
        for r in batch:
            if r[F_V] != "unmapped":
                continue
            for addr, names in ((r[F_I], lists[r[F_IN]]), (r[F_R], lists[r[F_RN]])):
                t = self.talkers.setdefault(addr, {"address": addr, "names": names, "bytes": 0, "packets": 0,
                                                   "flows": 0})
                t["bytes"] += r[F_B] or 0
                t["packets"] += r[F_PK] or 0
                t["flows"] += 1
        self._encode(batch)

    def _encode(self, batch: list[list[Any]]) -> None:
        text = _script_safe(_DUMP_RECORDS(batch)[1:-1])
        self.chunks.append(text if not self.chunks else "," + text)

    def record(self, i: int) -> list[Any]:
        """Flow ``i``'s record, built again from the document (for the few rows of first pages)."""
        rec = self._cache.get(i)
        if rec is None:
            rec = self._cache[i] = self.records.flow(_doc_values(self.source[i]))
        return rec


def build_view(doc: dict[str, Any]) -> View:
    """Everything derived from the document: compact records, tables, the role matrix, top talkers."""
    walk = _FlowPass(doc["flows"])
    verdicts = walk.verdicts
    lists = walk.records.lists.items
    rules = [_rule_record(r) for r in doc["rules"]]
    hosts = [_host_record(h) for h in doc["hosts"]]
    paths = [safe_text(i["path"]) for i in doc["inputs"]]
    rule_text = {r[R_ID]: [r[R_DESC], r[R_NOTE], r[R_LAYER]] for r in rules}
    hide: dict[str, tuple[str, ...]] = {}
    ctx: dict[str, Any] = {"rules": rule_text, "inputs": len(paths), "paths": paths, "hide": hide,
                           "lists": lists}

    # By severity, then by bytes, largest first; ties keep document order. Two stable sorts with
    # list lookups as keys give the order one sort on (severity, -bytes) gives, without a key per flow.
    by_severity = sorted(range(len(verdicts)), key=walk.neg_bytes.__getitem__)
    by_severity.sort(key=[SEVERITY.get(v, 9) for v in verdicts].__getitem__)
    # So each verdict's flows are one run of by_severity, in SEVERITY order (unknown verdicts last).
    runs: dict[str, list[int]] = {}
    start, counts = 0, Counter(verdicts)
    for verdict in sorted(SEVERITY, key=SEVERITY.__getitem__):
        runs[verdict] = by_severity[start:start + counts[verdict]]
        start += counts[verdict]
    judged = [i for v, run in runs.items() if v != "unmapped" for i in run] + by_severity[start:]
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
        add(_table(verdict, "flow", evidence, runs[verdict], walk.record, ctx))
    add(_table("missing", "rule", RULE_COLS, flagged, rules.__getitem__, ctx))
    add(_table("hosts", "host", HOST_COLS, list(range(len(hosts))), hosts.__getitem__, ctx))

    role_names = [safe_text(entry["role"]) for entry in doc["roles"]]
    as_src, as_dst = _role_rows(set(role_names), judged, walk, lists)
    role_views: list[RoleView] = []
    used_slugs: set[str] = set()
    for role, entry in zip(role_names, doc["roles"], strict=True):
        slug = base = role_slug(role)
        n = 2
        while slug in used_slugs:
            slug, n = f"{base}-{n}", n + 1
        used_slugs.add(slug)
        src_id, dst_id, miss_id = f"role-{slug}-src", f"role-{slug}-dst", f"role-{slug}-missing"
        hide[src_id], hide[dst_id] = ("init",), ("resp",)
        role_views.append(RoleView(
            role, slug, [safe_text(h) for h in entry["hosts"]],
            {k: int(v) for k, v in entry["counts"].items()},
            add(_table(src_id, "flow", ["verdict", *evidence], as_src[role], walk.record, ctx, PRINT_ROLE_ROWS)),
            add(_table(dst_id, "flow", ["verdict", *evidence], as_dst[role], walk.record, ctx, PRINT_ROLE_ROWS)),
            add(_table(miss_id, "rule", RULE_COLS,
                       [i for i in flagged if role in (rules[i][R_SRC], rules[i][R_DST])],
                       rules.__getitem__, ctx, PRINT_ROLE_ROWS)),
        ))

    matrix_roles, matrix = _matrix([r.role for r in role_views], walk.pairs, lists)
    # The data block, in the key order of one dict {pageSize, ..., lists, flows, rule, host, tables}
    # encoded whole: compact JSON of a dict is its members' JSON joined by ",", so it can be cut there.
    before = {"pageSize": PAGE_SIZE, "displayChars": DISPLAY_CHARS, "inputs": paths, "rules": rule_text,
              "noRole": NO_ROLE, "lists": lists}
    after = {"rule": rules, "host": hosts,
             "tables": {t.id: {"kind": t.kind, "cols": [c for c, _ in t.columns], "rows": t.rows,
                               "hide": list(hide.get(t.id, ()))} for t in tables.values()}}
    chunks = [_script_safe(_DUMP(before)[:-1]) + ',"flows":[', *walk.chunks,
              "]," + _script_safe(_DUMP(after)[1:])]
    return View(
        tables=tables, roles=role_views, matrix_roles=matrix_roles, matrix=matrix,
        talkers=sorted(walk.talkers.values(), key=lambda t: (-t["bytes"], t["address"]))[:TOP_TALKERS],
        data=Markup(DATA_MARK), page_size=PAGE_SIZE, summarised_flows=walk.summarised, data_chunks=chunks,
    )


def _role_rows(roles: set[str], judged: list[int], walk: _FlowPass, lists: list[list[str]]
               ) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Per role, the flows of ``judged`` (in its order) whose initiator, or responder, holds it.
    One walk for all roles: a flow is appended to the tables of the roles its hosts hold."""
    src: dict[str, list[int]] = {r: [] for r in roles}
    dst: dict[str, list[int]] = {r: [] for r in roles}
    held = [[r for r in set(items) if r in roles] for items in lists]
    init, resp = walk.init_roles, walk.resp_roles
    for i in judged:
        for r in held[init[i]]:
            src[r].append(i)
        for r in held[resp[i]]:
            dst[r].append(i)
    return src, dst


def _matrix(
    roles: list[str], pairs: dict[tuple[int, int], list[int]], lists: list[list[str]]
) -> tuple[list[str], dict[tuple[str, str], MatrixCell]]:
    # pairs are in order of first appearance, so role pairs are first counted in the order a walk
    # over the flows themselves would count them (the axis order of roles outside roles.yaml).
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for (ir, rr), tally in pairs.items():
        for a in lists[ir] or [NO_ROLE]:
            for b in lists[rr] or [NO_ROLE]:
                cell = counts[(a, b)]
                for slot in range(3):
                    cell[slot] += tally[slot]
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
