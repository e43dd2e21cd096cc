"""The HTML report's view of the audit document: every row's cells, the tables and their first
pages, the role sections and matrix, the top talkers, and the page's data block as JSON chunks
(report/html.py renders the page around it).

Every flow's interned cells are made in one walk over the flows (``_FlowPass``), which keeps per flow
only their indexes and what sorting and the role tables need (an audit's verdicts are walked by
report/verdict_walk.py); the data block's flow records are written on a second walk, a batch at a time.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

from markupsafe import Markup

from auditor.report.cells import (
    FLOW_CLASSES,
    FLOW_COLS,
    HOST_COLS,
    NO_ROLE,
    RULE_COLS,
    RULE_SEVERITY,
    SEVERITY,
    SHARED_FIRST,
    Cell,
    FlowCells,
    host_cells,
    rule_cells,
    safe_text,
)
from auditor.report.document import FlowRows, iso
from auditor.report.model import AuditDocument, FlowRow

PAGE_SIZE = 50
"""Rows per table page, both in the server-rendered first page and in the script's pages."""
TOP_TALKERS = 10
PRINT_ROWS = 10
"""Rows a table prints (the evidence pack); a line under it counts the rest, which the JSON holds."""
PRINT_ROLE_ROWS = 0
"""Rows each per-role table prints: none, the role prints its counts. Its failing and unexpected flows
and missing rules are the findings tables' rows, printed above; the rest are expected flows."""
_EVIDENCE_COLS = ["outcome", "why", "conns", "packets", "bytes", "first", "last", "frame", "dir"]


def role_slug(role: str) -> str:
    """The stable element id suffix of a role section: ``id="role-<slug>"``."""
    return re.sub(r"[^a-z0-9]+", "-", role.lower()).strip("-") or "role"


def _script_safe(text: str) -> str:
    """Escape JSON text for a script element. Per character, so chunks can be escaped one by one."""
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                     ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text


# --- the view: records, tables, first pages --------------------------------------------------


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
    hide: tuple[str, ...] = ()
    """Host columns shown without their roles line (the table lists flows of one of those roles)."""


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
    data_chunks: Callable[[], Iterator[str]] = field(default=lambda: iter(()))
    """The data block's JSON, script-safe, in chunks (a batch of flows each for the flows), encoded
    as they are read; each call starts again."""


DATA_MARK = "\x00audit-data\x00"
"""Stands for the data block in the rendered page. Nothing from the document can contain it: every
string passes safe_text, which shows a NUL as \\u0000."""
_BATCH = 2048
_DUMP = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_DUMP_RECORDS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                                 check_circular=False).encode
"""For records, lists this module builds (no cycles to look for): the same text, a little faster."""


class _Lists:
    """Interned, cleaned role lists: 50,000 flows share a few dozen (the role tables and matrix)."""

    def __init__(self) -> None:
        self.items: list[list[str]] = []
        self._index: dict[tuple[str, ...], int] = {}

    def __call__(self, raw: tuple[str, ...]) -> int:
        found = self._index.get(raw)
        if found is None:
            found = self._index[raw] = len(self.items)
            self.items.append([safe_text(x) for x in raw])
        return found


_CLASSES = list(FLOW_CLASSES.values())
_WIDTH = SHARED_FIRST + 2
"""What FlowCells.shared gives per flow: _FlowPass.chunks writes a record's indexes out for these."""
if (SHARED_FIRST, len(FLOW_COLS)) != (7, 13):  # pragma: no cover - a change of columns must change chunks
    raise ImportError("report.html's records are written for 7 shared columns, 5 own and the last")


def _table(tid: str, kind: str, cols: Iterable[str], rows: list[int], cells: Callable[[int], list[Cell]],
           hide: tuple[str, ...] = (), print_rows: int = PRINT_ROWS) -> Table:
    labels = FLOW_COLS if kind == "flow" else RULE_COLS if kind == "rule" else HOST_COLS
    order = list(labels)
    columns = [(c, labels[c]) for c in cols]
    page: list[list[Cell]] = []
    for idx in rows[:PAGE_SIZE]:
        row = cells(idx)
        page.append([row[order.index(c)].without_role_line() if c in hide else row[order.index(c)]
                     for c, _ in columns])
    return Table(tid, kind, columns, rows, page, print_rows, hide)


class _FlowPass:
    """One walk over the document's flows, keeping per flow only what the view needs afterwards.

    Each flow's interned cells are made here (so a bad flow fails here) and only their indexes are
    kept (the cells stay interned in ``cells``). What stays per flow: those indexes, its verdict, its
    roles' list ids and its byte count (for sorting and the role tables); the role matrix, the top
    talkers and the count of summarised rows are tallied on the way. A table's first page reads its
    few flows again; ``chunks`` reads them all again for their own columns (numbers and timestamps)
    a batch at a time.

    The flows of an audit just run (``FlowRows``) are read from their verdicts, without a row per
    flow: each column's cell is looked up by what it is made of (a host view, a tally, a verdict's
    rule ids...), and only a flow with something new has its row built to make the new cells."""

    def __init__(self, flows: Sequence[FlowRow], cells: FlowCells) -> None:
        self.source = flows
        self.cells = cells
        self.lists = _Lists()
        self.verdicts: list[str] = []
        self.init_roles: list[int] = []
        self.resp_roles: list[int] = []
        self.neg_bytes: list[int] = []
        self.pairs: dict[tuple[int, int], list[int]] = {}
        """(initiator roles id, responder roles id) -> [expected, failing, unexpected] flows, in order
        of first appearance."""
        self.talkers: dict[str, dict[str, Any]] = {}
        self.summarised = 0
        self.shared = array("i")
        """Per flow, _WIDTH indexes: its interned cells' and its frame input's (FlowCells.shared); a
        service cell made in the page as ``-1 -`` its template's index (_VerdictWalk)."""
        self._cache: dict[int, list[Cell]] = {}
        self.templates: list[list[Any]] = []
        """The service cells made in the page, but for their evidence (_VerdictWalk.templates)."""
        self.details: list[str] = []
        self.why_templates: list[list[Any]] = []
        """The rule / reason cells made in the page, but for their host's address (_VerdictWalk)."""
        self.evidence: list[list[Any]] = []
        """Per batch of _BATCH flows, the evidence of its service cells made in the page."""
        self.own: Any = None
        """The own columns of the flows of an audit just run (flowscan.Own, filled by _VerdictWalk)."""
        if isinstance(flows, FlowRows):
            from auditor.report.verdict_walk import _VerdictWalk  # it imports this module

            made = _VerdictWalk(self, flows)
            self.templates, self.details, self.evidence = made.templates, made.details, made.evidence
            self.why_templates = made.why_templates
        else:
            rows = iter(flows)
            while batch := list(islice(rows, _BATCH)):
                self._take(batch)

    def _take(self, batch: list[FlowRow]) -> None:
        verdict, lists = self.cells.verdict, self.lists
        verdicts = [verdict(r) for r in batch]
        init = [lists(r.initiator_roles) for r in batch]
        resp = [lists(r.responder_roles) for r in batch]
        self.neg_bytes += [-r.bytes for r in batch]
        self.summarised += sum(1 for r in batch if r.summarised)
        self.tally(verdicts, init, resp)
        for r, v in zip(batch, verdicts, strict=True):
            if v == "unmapped":
                self.talk(r.initiator, r.initiator_names, r.bytes, r.packets)
                self.talk(r.responder, r.responder_names, r.bytes, r.packets)
        indexes, shared = self.cells.shared, self.shared
        for r in batch:
            shared.extend(indexes(r))

    def tally(self, verdicts: list[str], init: list[int], resp: list[int]) -> None:
        self.verdicts += verdicts
        self.init_roles += init
        self.resp_roles += resp
        slots = {"expected": 0, "failing": 1, "unexpected": 2}
        for (v, ir, rr), n in Counter(zip(verdicts, init, resp, strict=True)).items():
            slot = slots.get(v)
            if slot is not None:
                counts = self.pairs.get((ir, rr))
                if counts is None:
                    counts = self.pairs[(ir, rr)] = [0, 0, 0]
                counts[slot] += n

    def talk(self, addr: str, names: tuple[str, ...], size: int, packets: int) -> None:
        """An unmapped flow's host among the top talkers."""
        a = safe_text(addr, 64)
        t = self.talkers.get(a)
        if t is None:
            t = self.talkers[a] = {"address": a, "names": [safe_text(n) for n in names],
                                   "bytes": 0, "packets": 0, "flows": 0}
        t["bytes"] += size
        t["packets"] += packets
        t["flows"] += 1

    def own_columns(self, start: int, end: int, rows: Iterator[FlowRow]) -> dict[str, Any]:
        """The own cells of flows start..end (of the audit's verdicts, or the next of ``rows``) as the
        data block's columns: packets, bytes, the first frame's input and number (integers); first
        and last seen (64-bit floats, seconds since the epoch: report.js rounds them to
        microseconds as Python's round does), a time that is not one (out of range, or a row's text)
        also in ``t0x`` / ``t1x`` by its place in the batch, as its text. Arrays here; ``chunks``
        packs them (``_packed``). report.js makes of them the cells FlowCells.own makes."""
        own = self.own
        if isinstance(self.source, FlowRows) and own is not None:
            t0, t1 = own.t0[start:end], own.t1[start:end]
            return {"p": own.p[start:end], "b": own.b[start:end], "t0": t0, "t1": t1,
                    "fi": own.fi[start:end], "fn": own.fn[start:end], "t0x": _odd_times(t0), "t1x": _odd_times(t1)}
        batch = list(islice(rows, end - start))
        blank = array("d", bytes(8 * len(batch)))  # a row's times are texts (document.iso): all odd
        return {"p": array("q", [r.packets for r in batch]), "b": array("q", [r.bytes for r in batch]),
                "t0": blank, "t1": blank,
                "fi": array("q", [r.first_frame.input for r in batch]),
                "fn": array("q", [r.first_frame.frame for r in batch]),
                "t0x": dict(enumerate(r.first_seen for r in batch)),
                "t1x": dict(enumerate(r.last_seen for r in batch))}

    def chunks(self) -> Iterator[str]:
        """The flows as script-safe JSON array items, a batch per chunk: ``n`` flows, ``ix``, each
        flow's _WIDTH indexes of interned cells, then its own columns (``own_columns``); each column
        of numbers packed (``_packed``)."""
        shared = self.shared
        rows: Iterator[FlowRow] = iter(()) if isinstance(self.source, FlowRows) else iter(self.source)
        multi = len(self.cells.paths) > 1
        # Every index is a cell's, or -1 - a template's (_VerdictWalk).
        lowest = -max(len(self.templates), len(self.why_templates), 1)
        for start in range(0, len(self.verdicts), _CHUNK):
            end = min(start + _CHUNK, len(self.verdicts))
            ix = shared[start * _WIDTH:end * _WIDTH]
            columns = self.own_columns(start, end, rows)
            record: dict[str, Any] = {"n": end - start, "ix": _packed(ix, lowest, len(self.cells.cells))}
            fi, fn = columns["fi"], columns["fn"]
            bounds = (min(fi), max(fi), min(fn), max(fn)) if fi else (0, 0, 0, 0)
            for name in ("p", "b", "t0", "t1"):
                record[name] = _packed(columns[name])
            record["fi"], record["fn"] = _packed(fi, *bounds[:2]), _packed(fn, *bounds[2:])
            for name in ("t0x", "t1x"):
                if columns[name]:
                    record[name] = {str(k): t for k, t in columns[name].items()}
            if bounds[1] >= _FRAME_INPUTS or bounds[3] >= 10**12 or bounds[0] < 0 or bounds[2] < 0:
                # A frame cell's key, input * 10**12 + frame, would not be exact in a JavaScript
                # number (a flow never seen has frame (1 << 62, 0)): the batch's frame cells as made.
                record["frame"] = [[f"{i}:#{n}" if multi else f"#{n}", i * 10**12 + n, ix[k * _WIDTH + _WIDTH - 1]]
                                   for k, (i, n) in enumerate(zip(fi, fn, strict=True))]
            evidence = list(chain.from_iterable(self.evidence[start // _BATCH:(end + _BATCH - 1) // _BATCH]))
            if evidence:
                record["e"] = evidence
            text = _script_safe(_DUMP_RECORDS(record))
            yield text if not start else "," + text

    def record(self, i: int) -> list[Cell]:
        """Flow ``i``'s cells (for the few rows of first pages)."""
        hit = self._cache.get(i)
        if hit is None:
            cell = self.cells.cell
            hit = self._cache[i] = [cell(c) for c in self.cells.row(self.source[i])]
        return hit


_CHUNK = 4 * _BATCH
"""Flows per chunk of the data block (whole batches: the evidence of service cells is kept a batch at
a time)."""
_TS_MAX = float(1 << 53) / 1e6 - 1
"""Timestamps below this go to the page as whole microseconds (exact in a JavaScript number)."""
_FRAME_INPUTS = (1 << 53) // 10**12
"""Frame cells of inputs below this have keys exact in a JavaScript number."""


_NARROW = (("b", 1 << 7), ("h", 1 << 15), ("i", 1 << 31))
"""The integer typecodes a column of integers is packed in when its numbers fit (else "q")."""


def _packed(values: array[Any], lo: int = 0, hi: int = -1) -> str:
    """A column of numbers as the data block carries it: its typecode, ":", and the base64 of the
    numbers' little-endian bytes in it; integers known to lie in lo..hi (hi < lo: not known) in the
    narrowest of b, h, i that holds them (their bounds are known without a pass over them: it cost
    more than the rest). report.js reads them back (``column``). Encoding the numbers as JSON text
    took a fifth of writing a large report."""
    code: str = values.typecode
    if code not in ("b", "h", "i", "q", "d"):
        raise TypeError(f"a column of typecode {code!r}: report.js reads b, h, i, q and d")
    if code != "d" and lo <= hi:
        narrowest = next((c for c, bound in _NARROW if -bound <= lo and hi < bound), "q")
        if array(narrowest).itemsize < values.itemsize:
            code = narrowest
    if sys.byteorder != "little":  # pragma: no cover - the machines we run on are little-endian
        values = array(code, values)
        values.byteswap()
        raw = values.tobytes()
    elif code != values.typecode:
        # Each number's low bytes, which are its narrower two's complement: sliced out in C, where
        # array(code, values) made an object of each number.
        wide, narrow = values.itemsize, array(code).itemsize
        whole = values.tobytes()
        cut = bytearray(len(values) * narrow)
        for j in range(narrow):
            cut[j::narrow] = whole[j::wide]
        raw = bytes(cut)
    else:
        raw = values.tobytes()
    return code + ":" + base64.b64encode(raw).decode("ascii")


def _odd_times(times: array[float]) -> dict[int, str | None]:
    """The times of a column that are not seconds report.js can make a cell of (before 1970, too
    large for whole microseconds to be exact in a JavaScript number, not a number): their texts
    (document.iso) by their place in the column. Checked whole first: one pass in C, nearly always."""
    if not times:
        return {}
    total = sum(times)
    if min(times) >= 0.0 and max(times) < _TS_MAX and total == total:
        return {}
    return {k: iso(t) for k, t in enumerate(times) if not 0.0 <= t < _TS_MAX}


def build_view(doc: AuditDocument) -> View:
    """Everything derived from the document: every row's cells, tables, the role matrix, top talkers."""
    paths = [safe_text(i.path) for i in doc.inputs]
    flow_cells = FlowCells({r.id: r for r in doc.rules}, paths)
    walk = _FlowPass(doc.flows, flow_cells)
    verdicts = walk.verdicts
    lists = walk.lists.items
    rules = [rule_cells(r) for r in doc.rules]
    hosts = doc.hosts  # their cells are made as needed: a many-host audit maps hundreds of thousands
    statuses = [r.status for r in doc.rules]

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
    rule_order = sorted(range(len(rules)), key=lambda i: (RULE_SEVERITY.get(statuses[i], 9), doc.rules[i].id))
    # Missing and failing rules, and observed ones that some listed hosts never used.
    flagged = [i for i in rule_order if statuses[i] in ("missing", "failing")
               or (statuses[i] == "observed" and doc.rules[i].hosts_lacking)]
    evidence = ["init", "resp", "svc", *_EVIDENCE_COLS]
    tables: dict[str, Table] = {}

    def add(t: Table) -> Table:
        tables[t.id] = t
        return t

    for verdict in ("failing", "unexpected", "unmapped"):
        add(_table(verdict, "flow", evidence, runs[verdict], walk.record))
    add(_table("missing", "rule", RULE_COLS, flagged, rules.__getitem__))
    add(_table("hosts", "host", HOST_COLS, list(range(len(hosts))), lambda i: host_cells(hosts[i])))

    role_names = [safe_text(entry.role) for entry in doc.roles]
    as_src, as_dst = _role_rows(set(role_names), judged, walk, lists)
    role_views: list[RoleView] = []
    used_slugs: set[str] = set()
    for role, entry in zip(role_names, doc.roles, strict=True):
        slug = base = role_slug(role)
        n = 2
        while slug in used_slugs:
            slug, n = f"{base}-{n}", n + 1
        used_slugs.add(slug)
        src_id, dst_id, miss_id = f"role-{slug}-src", f"role-{slug}-dst", f"role-{slug}-missing"
        c = entry.counts
        role_views.append(RoleView(
            role, slug, [safe_text(h) for h in entry.hosts],
            {"expected": c.expected, "failing": c.failing, "unexpected": c.unexpected, "missing": c.missing},
            add(_table(src_id, "flow", ["verdict", *evidence], as_src[role], walk.record, ("init",),
                       PRINT_ROLE_ROWS)),
            add(_table(dst_id, "flow", ["verdict", *evidence], as_dst[role], walk.record, ("resp",),
                       PRINT_ROLE_ROWS)),
            add(_table(miss_id, "rule", RULE_COLS,
                       [i for i in flagged if entry.role in (doc.rules[i].source, doc.rules[i].destination)],
                       rules.__getitem__, (), PRINT_ROLE_ROWS)),
        ))

    matrix_roles, matrix = _matrix([r.role for r in role_views], walk.pairs, lists)
    # The data block, in the key order of one dict {pageSize, cols, classes, cells, svc, why, flows, rule,
    # host,
    # tables} encoded whole: compact JSON of a dict is its members' JSON joined by ",", so it can be
    # cut there.
    before = {"pageSize": PAGE_SIZE, "multiInput": len(paths) > 1,
              "cols": {"flow": list(FLOW_COLS), "rule": list(RULE_COLS), "host": list(HOST_COLS)},
              "classes": {"flow": _CLASSES, "rule": [""] * len(RULE_COLS), "host": [""] * len(HOST_COLS)}}
    # After the flows: {"rule", "host", "tables"}, the hosts' records encoded a batch at a time.
    rule_part = "]," + _script_safe(_DUMP({"rule": [[c.encode() for c in r] for r in rules]})[1:-1]) + ',"host":['
    tables_part = "]," + _script_safe(_DUMP({"tables": {
        t.id: {"kind": t.kind, "cols": [c for c, _ in t.columns], "rows": t.rows, "hide": list(t.hide)}
        for t in tables.values()}})[1:])
    head = _script_safe(_DUMP(before)[:-1]) + ',"cells":['
    shared = flow_cells.cells  # complete: the first pages were the last to add to it

    def chunks() -> Iterator[str]:
        yield head
        # The shared cells (a host's each, for many distinct hosts) are encoded a batch at a time too.
        for i in range(0, len(shared), _BATCH):
            text = _script_safe(_DUMP_RECORDS([c.encode() for c in shared[i:i + _BATCH]])[1:-1])
            yield text if not i else "," + text
        yield '],"svc":' + _script_safe(_DUMP({"t": walk.templates, "d": walk.details})) + ',"why":' + \
            _script_safe(_DUMP(walk.why_templates)) + ',"flows":['
        yield from walk.chunks()
        yield rule_part
        for i in range(0, len(hosts), _BATCH):
            text = _script_safe(_DUMP_RECORDS([[c.encode() for c in host_cells(h)] for h in hosts[i:i + _BATCH]])[1:-1])
            yield text if not i else "," + text
        yield tables_part

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
