"""The HTML report's table cells: every cell's text, tooltip, sub-lines, class and sort key, made
once here for every row. The page embeds them; reports/templates/report.js only pages, sorts (by
the keys made here) and filters them, and html.py renders the first page from the same cells.

Everything shown passes ``safe_text``: control, format and separator characters are shown as
``\\uXXXX`` and strings are bounded.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from auditor.model import DISPLAY_CHARS, frozen_rows
from auditor.report.model import FlowRow, HostRow, RuleRow

MAX_CHARS = 1024
"""Every string from the document is bounded to this many characters before it reaches the page."""
NO_ROLE = "(not in roles.yaml)"
_MISMATCH = "protocol-mismatch"
"""classify.REASON_MISMATCH: the service cell of such a flow is marked."""
SEVERITY = {"failing": 0, "unexpected": 1, "expected": 2, "unmapped": 3}
RULE_SEVERITY = {"failing": 0, "missing": 1, "observed": 2, "covered": 3, "not-observable": 4, "not-applicable": 5}
_PROTO_ORDER = {"tcp": 0, "udp": 1, "icmp": 2}
_DUMP = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False).encode

FLOW_COLS = {
    "verdict": "Verdict", "init": "Initiator", "resp": "Responder", "svc": "Service",
    "outcome": "Outcome", "why": "Rule / reason", "conns": "Conns", "packets": "Packets",
    "bytes": "Bytes", "first": "First seen", "last": "Last seen", "frame": "First frame",
    "dir": "Direction",
}
"""A flow record's cells, in this order (the page's ``cols.flow``)."""
SHARED_FIRST = list(FLOW_COLS).index("packets")
"""A flow's cells before this column are interned (FlowCells.shared), as is its last; those between
are its own (FlowCells.own)."""
FLOW_CLASSES = {c: "n" if c in ("conns", "packets", "bytes", "frame") else "" for c in FLOW_COLS}
"""Each flow column's class (the page's ``classes.flow``): a record's own cell of its column's class
leaves the class out (numbers, right-aligned, are most of a large page's cells)."""
RULE_COLS = {
    "status": "Status", "rule": "Rule", "pair": "Source \u2192 destination", "rsvc": "Protocol / ports",
    "desc": "Description", "lacking": "Hosts lacking it", "rflows": "Flows",
}
HOST_COLS = {"addr": "Address", "roles": "Roles", "names": "Names (evidence)"}

# C0/C1 controls, bidi and other format characters, line/paragraph separators, surrogates,
# private use and unassigned code points are shown escaped: they can hide or reorder text.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def safe_text(value: object, limit: int = MAX_CHARS) -> str:
    """Any value -> printable text without hidden characters, at most ``limit`` characters."""
    text = "" if value is None else str(value)
    if not (text.isascii() and text.isprintable()):  # printable ASCII, U+0020-U+007E, is shown as it is
        text = "".join(
            f"\\u{ord(ch):04x}" if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text
        )
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def short(text: str) -> str:
    """Display form: at most DISPLAY_CHARS characters."""
    return text if len(text) <= DISPLAY_CHARS else text[: DISPLAY_CHARS - 1] + "\u2026"


def _beyond(text: str, title: str) -> str:
    """A tooltip only where it shows more than the text."""
    return "" if title == text else title


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


@frozen_rows
class Cell:
    """One table cell, as the first page renders it and the page's script shows it."""

    text: str
    """What the cell shows (already cut to DISPLAY_CHARS)."""
    title: str = ""
    """Full (bounded) text for the hover tooltip, when the display is shortened or abbreviated."""
    sub: tuple[str, ...] = ()
    """Secondary lines shown smaller under the main text."""
    cls: str = ""
    """CSS class (verdict or status colour)."""
    key: str | int | None = None
    """What the column sorts by; None: the text."""
    title_cell: int | None = None
    """Where the page holds the title once: the index of a shared cell whose text it is (a title
    that many rows repeat, such as an input's path)."""

    def encode(self, column_class: str = "") -> list[Any]:
        """The page's form: [text, key, title, cls, sub], trailing empty members left out; without
        cls, a record's own cell has ``column_class``. A key equal to the text is left out (null); a
        title is written ``true`` where it is the key, and as a number where it is that shared cell's
        text."""
        text, key, title = self.text, self.key, self.title
        if key == text:
            key = None
        encoded_title: str | int | bool = title
        if self.title_cell is not None:
            encoded_title = self.title_cell
        elif title and title == key:
            encoded_title = True
        # Written out rather than trimmed in a loop: this runs for every cell of every flow.
        if self.sub:
            return [text, key, encoded_title, self.cls, list(self.sub)]
        if self.cls != column_class:
            return [text, key, encoded_title, self.cls]
        if encoded_title != "":
            return [text, key, encoded_title]
        return [text] if key is None else [text, key]

    def without_role_line(self) -> Cell:
        return Cell(self.text, self.title, self.sub[1:], self.cls, self.key, self.title_cell)


class _Texts(dict[str, str]):
    """``safe_text(value, limit)`` of each distinct string, once per report (flows repeat their
    addresses, outcomes and reasons). At most 1 << 16 of them."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, key: str) -> str:
        text = safe_text(key, self.limit)
        if len(self) < 1 << 16:
            self[key] = text
        return text


def citation_line(r: RuleRow) -> str:
    c = r.citation
    if c is not None:
        return f"{c.title}{', ' + c.section if c.section else ''} <{c.url}>"
    return f"no public Citrix page found: {r.uncited}" if r.uncited else ""


def rule_caption(rule_id: str, rules: Mapping[str, RuleRow], reverse: bool) -> str:
    """How a flow's matching rule is captioned: by its description where the flow goes the rule's own
    way; as the same service opened from the other side where it matched only as a bidirectional
    rule (a VDA's registration is not captioned "Delivery Controller initiates...")."""
    rule = rules.get(rule_id)
    layer = f" [{rule.layer}]" if rule is not None and rule.layer != "document" else ""
    if reverse:
        return f"{rule_id}{layer} \u2014 the same service, opened from the other side (bidirectional rule)"
    return f"{rule_id}{layer} \u2014 {rule.description if rule is not None else ''}"


def _outcome_key(r: Any) -> tuple[Any, ...]:
    """The interning key of an outcome cell: what it is made of (a row, or document.OutcomeParts)."""
    return ("o", r.outcome, r.refused_by)


def _conns_key(r: Any) -> tuple[Any, ...]:
    """The interning key of a connections cell, alike."""
    return ("c", r.connections, r.established, r.rejected, r.unanswered, tuple(r.conn_states.items()))


class FlowCells:
    """Builds flows' cells for one report. Cells that many flows share (verdict, hosts, service,
    outcome, rule or reason, direction) are made once and interned: the page holds them once, in
    ``cells``, and a record refers to them by index."""

    def __init__(self, rules: Mapping[str, RuleRow], paths: list[str]) -> None:
        self.rules = rules
        self.paths = paths
        self.cells: list[Cell] = []
        """The interned cells, by index."""
        self._index: dict[Any, int] = {}
        self.t16, self.t32, self.t64, self.t80 = _Texts(16), _Texts(32), _Texts(64), _Texts(80)
        self.text = _Texts(MAX_CHARS)

    def cell(self, i: int | Cell) -> Cell:
        return self.cells[i] if isinstance(i, int) else i

    def _intern(self, key: Any, make: Any, *args: Any) -> int:
        found = self._index.get(key)
        if found is None:
            if len(self._index) >= 1 << 16:
                self._index.clear()  # a new copy of a cell is only a larger page
            found = self._index[key] = len(self.cells)
            self.cells.append(make(*args))
        return found

    def add(self, cell: Cell) -> int:
        """A cell of one flow (a service cell whose title names its own frames): not interned."""
        self.cells.append(cell)
        return len(self.cells) - 1

    def host(self, addr: str, names: tuple[str, ...], roles: tuple[str, ...]) -> int:
        """The interned index of a host cell (as ``shared`` makes it)."""
        key = ("h", addr, names, roles)
        return self._index.get(key) or self._intern(key, self._host, addr, names, roles)

    def service(self, template: tuple[str, list[str], list[str], str, int]) -> int:
        """The interned index of a service cell without frames in its title (``svc_template``)."""
        text, parts, _, cls, key = template
        k = ("S", text, parts[0], cls, key)
        return self._index.get(k) or self._intern(k, Cell, text, parts[0], (), cls, key)

    def outcome_conns(self, r: Any) -> tuple[int, int]:
        """The interned indexes of a flow's outcome and connections cells (as ``shared`` makes them) of
        what they are made of: a row, or its parts (document.OutcomeParts)."""
        k_out, k_conns = _outcome_key(r), _conns_key(r)
        return (self._index.get(k_out) or self._intern(k_out, self._outcome, r),
                self._index.get(k_conns) or self._intern(k_conns, self._conns, r))

    def verdict_cell(self, verdict: str) -> int:
        """The interned index of a verdict cell (as ``shared`` makes it)."""
        key = ("v", verdict)
        return self._index.get(key) or self._intern(key, _verdict_cell, verdict)

    def verdict(self, r: FlowRow) -> str:
        return "failing" if r.classification == "expected" and r.failing else self.t32[r.classification]

    def row(self, r: FlowRow) -> list[int | Cell]:
        """A flow's cells in FLOW_COLS order: interned ones as their index."""
        ix = self.shared(r)
        return [*ix[:SHARED_FIRST], *self.own(r, ix[-1]), ix[SHARED_FIRST]]

    def shared(self, r: FlowRow, svc: bool = True) -> list[int]:
        """The indexes of a flow's interned cells: those of its first SHARED_FIRST columns, of its last
        column, then of its frame's input (the title of its frame cell, for ``own``). Interns what is
        new, so a flow's cells are made here but for its own ones (which cannot fail: they only format
        the row's numbers and strings)."""
        v = self.verdict(r)
        # A found cell is looked up here, not in _intern (a call per cell of every flow); index 0
        # reads as not found and is looked up again there.
        get, intern = self._index.get, self._intern
        frame = r.first_frame
        k_in = ("i", frame.input)
        source = get(k_in) or intern(k_in, self._input, frame.input)
        k_v = ("v", v)
        k_init = ("h", r.initiator, r.initiator_names, r.initiator_roles)
        k_resp = ("h", r.responder, r.responder_names, r.responder_roles)
        k_svc = ("s", r.protocol, r.port, r.app_protocol, tuple(r.apps.items()), r.unverified,
                 tuple(r.app_evidence.items()) if r.app_evidence else (), r.reason == _MISMATCH)
        k_out = _outcome_key(r)
        k_why = ("w", r.rule_ids, r.reverse_rule_ids, r.reason, r.reason_text)
        k_conns = _conns_key(r)
        k_dir = ("d", r.direction_evidence, r.direction_inferred)
        return [
            get(k_v) or intern(k_v, _verdict_cell, v),
            get(k_init) or intern(k_init, self._host, r.initiator, r.initiator_names, r.initiator_roles),
            get(k_resp) or intern(k_resp, self._host, r.responder, r.responder_names, r.responder_roles),
            (get(k_svc) or intern(k_svc, self._svc, r)) if svc else -1,
            get(k_out) or intern(k_out, self._outcome, r),
            get(k_why) or intern(k_why, self._why, r.rule_ids, r.reverse_rule_ids, r.reason, r.reason_text),
            get(k_conns) or intern(k_conns, self._conns, r),
            get(k_dir) or intern(k_dir, _dir_cell, self.t32[r.direction_evidence], r.direction_inferred),
            source,
        ]

    def own(self, r: FlowRow, source: int) -> list[Cell]:
        """The flow's own cells (packets, bytes, first, last, frame), made the same way every time:
        ``source`` is the interned index of its frame's input (the frame cell's title). The page's
        script makes the same cells of the data block's columns (view._FlowPass.own_columns)."""
        frame = r.first_frame
        return [
            Cell(fmt_num(r.packets), "", (), "n", r.packets),
            # Under 1 KiB the text is the exact count already.
            Cell(fmt_bytes(r.bytes), f"{fmt_num(r.bytes)} bytes" if r.bytes >= 1024 else "", (), "n", r.bytes),
            Cell(fmt_ts(r.first_seen), r.first_seen or "", (), "", r.first_seen or ""),
            Cell(fmt_ts(r.last_seen), r.last_seen or "", (), "", r.last_seen or ""),
            # The frame's input (its path) is the title many rows share: the page holds it once.
            Cell(f"{frame.input}:#{frame.frame}" if len(self.paths) > 1 else f"#{frame.frame}",
                 self.cells[source].text, (), "n", frame.input * 10**12 + frame.frame, source),
        ]

    def _conns(self, r: FlowRow) -> Cell:
        states = " ".join(f"{safe_text(k, 8)}:{v}" for k, v in sorted(r.conn_states.items()))
        return Cell(fmt_num(r.connections),
                    f"established {r.established}, rejected {r.rejected}, unanswered {r.unanswered}"
                    + (f"; states {states}" if states else ""), cls="n", key=r.connections)

    def _input(self, index: int) -> Cell:
        """Not a column's cell: the title of the frame cells of one input."""
        path = self.paths[index] if 0 <= index < len(self.paths) else "?"
        return Cell(f"input {index} ({path})")

    def _host(self, addr: str, names: tuple[str, ...], roles: tuple[str, ...]) -> Cell:
        names_t = [self.text[n] for n in names]
        roles_t = [self.text[x] for x in roles]
        sub = [short(", ".join(roles_t)) if roles_t else NO_ROLE]
        if names_t:
            sub.append(short(names_t[0]) + (f" (+{len(names_t) - 1} more)" if len(names_t) > 1 else ""))
        a = self.t64[addr]
        return Cell(short(a), "\n".join(names_t), tuple(sub), "host", a)

    def _svc(self, r: FlowRow) -> Cell:
        """'tcp/1494 · ica' (the protocol beside the port, SPEC §6), 'tcp/443 · unverified' when no
        payload was recognised; the title holds the evidence: who sent which first bytes, in which frame."""
        text, parts, names, cls, key = self.svc_template(
            r.protocol, r.port, r.apps, r.app_protocol, r.app_evidence, r.unverified, r.reason)
        if not names:
            return Cell(text, parts[0], cls=cls, key=key)
        evidence = [r.app_evidence[n] for n in names]
        return Cell(text, self.svc_title(parts, [(e.frame.input, e.frame.frame) for e in evidence],
                                         [(self.t32[e.head], self.t80[e.detail]) for e in evidence]),
                    cls=cls, key=key)

    def svc_title(self, parts: list[str], frames: list[tuple[int, int]], evidence: list[tuple[str, str]]) -> str:
        """A service cell's title from its template (``svc_template``), its evidence's frames and their
        (head, detail) texts (report.js makes the same of the data block's ``svc`` and ``e`` columns)."""
        multi = len(self.paths) > 1
        out = [parts[0]]
        for (i, n), (head, detail), part in zip(frames, evidence, parts[1:], strict=True):
            out.append(f"input {i} frame {n}: {head}" if multi else f"frame {n}: {head}")
            if detail:
                out.append(f" ({detail})")
            out.append(part)
        return "".join(out)

    def svc_template(self, protocol: str, port: int, apps: Mapping[str, int], app_protocol: str,
                     app_evidence: Mapping[str, Any], unverified: int, reason: str | None
                     ) -> tuple[str, list[str], list[str], str, int]:
        """A service cell, from its row's fields, but for its evidence's frames and first bytes: (text,
        the title's parts around each evidence's frame and bytes, the protocols whose evidence goes
        between them in order, class, key). Flows that differ only in those share it; only the keys of
        ``app_evidence`` and each one's ``direction`` are read."""
        p = self.t16[protocol]
        key = port * 4 + _PROTO_ORDER.get(protocol, 3)
        if protocol not in ("tcp", "udp"):
            return f"{p}/{port}", [""], [], "svc", key
        names = [self.t16[n] for n in apps] if apps else []
        app = self.t16[app_protocol] if names else "unverified"
        others = [n for n in names if n != app]
        text = f"{p}/{port} \u00b7 {app}" + (f" +{'+'.join(others[:2])}" if others else "") + \
            (" +\u2026" if len(others) > 2 else "")
        parts, framed, line = [], [], []
        for name, n in apps.items():
            ev = app_evidence.get(name)
            line.append(f"{self.t16[name]}: {n} connection{'s' if n != 1 else ''}")
            if ev is not None:
                who = "responder" if ev.direction == "resp" else "initiator"
                line.append(f"; first bytes from the {who}, ")
                parts.append("".join(line))
                framed.append(name)
                line = []
            line.append("\n")
        if unverified:
            line.append(f"unverified: {unverified} connection{'s' if unverified != 1 else ''} "
                        "(no payload, or none recognised)")
        elif line and line[-1] == "\n":
            line.pop()
        parts.append("".join(line))
        cls = "svc mismatch" if reason == _MISMATCH else "svc" if names else "svc unverified"
        return short(text), parts, framed, cls, key

    def _outcome(self, r: FlowRow) -> Cell:
        o = self.t32[r.outcome]
        refused = self.text["; ".join(e.text + (f", {e.connections} connections" if e.connections != 1 else "")
                                      for e in r.refused_by)]
        return Cell(o, refused, (short(refused),) if refused else (), "o-" + o, o)

    def why(self, rule_ids: tuple[str, ...], reverse_rule_ids: tuple[str, ...], reason: str | None,
            reason_text: str | None) -> int:
        """The interned index of a rule / reason cell, from its row's fields."""
        key = ("w", rule_ids, reverse_rule_ids, reason, reason_text)
        return self._index.get(key) or self._intern(key, self._why, rule_ids, reverse_rule_ids, reason, reason_text)

    def _why(self, rule_ids: tuple[str, ...], reverse_rule_ids: tuple[str, ...], reason: str | None,
             reason_text: str | None) -> Cell:
        if rule_ids:
            ids = [self.t64[i] for i in rule_ids]
            lines = [rule_caption(i, self.rules, i in reverse_rule_ids) for i in rule_ids]
            # Several matching rules often share one note: show it once.
            notes = list(dict.fromkeys(self.rules[i].note for i in rule_ids
                                       if i in self.rules and self.rules[i].note))
            full = safe_text("; ".join(lines))
            notes = [safe_text(n) for n in notes]
            return Cell(short(full), _beyond(short(full), "\n".join([full, *notes])),
                        tuple(short("Note: " + n) for n in notes), key=" ".join(ids))
        code = self.t64[reason or ""]
        text = self.text[reason_text or ""] or code
        return Cell(short(text), _beyond(short(text), text), (code,) if reason_text and code else (), key=text)


def _verdict_cell(v: str) -> Cell:
    return Cell(v, cls="v-" + v, key=SEVERITY.get(v, 9))


def _dir_cell(evidence: str, inferred: bool) -> Cell:
    if inferred:
        return Cell(evidence, sub=("inferred",), cls="dir inferred", key=evidence + " inferred")
    return Cell(evidence, cls="dir", key=evidence)


def rule_cells(r: RuleRow) -> list[Cell]:
    """A rule's cells in RULE_COLS order."""
    status, rid = safe_text(r.status, 32), safe_text(r.id, 64)
    product, layer = safe_text(r.product), safe_text(r.layer, 16)
    src, dst = safe_text(r.source), safe_text(r.destination)
    protos = [safe_text(p, 16) for p in r.protocols]
    ports, desc, note = safe_text(r.ports), safe_text(r.description), safe_text(r.note)
    pair = f"{src} \u2192 {dst}"
    if r.status == "covered" and r.covered_by:
        lacking = "covered by " + ", ".join(safe_text(c, 64) for c in r.covered_by)
    else:
        lacking = ", ".join(safe_text(h) for h in r.hosts_lacking)
    return [
        Cell(status, cls="s-" + status, key=RULE_SEVERITY.get(r.status, 9)),
        Cell(rid, safe_text(citation_line(r)),
             ((short(product),) if product else ()) + ((layer,) if layer != "document" else ())),
        Cell(short(pair), _beyond(short(pair), pair), key=f"{src} {dst}"),
        Cell(short(" ".join([", ".join(protos), ports]).strip()), key=",".join(protos) + " " + ports),
        Cell(short(desc), _beyond(short(desc), "\n".join(x for x in (desc, note) if x)),
             (short("Note: " + note),) if note else (), key=desc),
        Cell(short(lacking), _beyond(short(lacking), lacking), key=len(r.hosts_lacking)),
        Cell(fmt_num(r.flows), cls="n", key=r.flows),
    ]


def host_cells(h: HostRow) -> list[Cell]:
    """A host's cells in HOST_COLS order."""
    roles = ", ".join(safe_text(r) for r in h.roles)
    names = ", ".join(safe_text(f"{n.name} ({n.source}, input {n.input} frame {n.frame})") for n in h.names)
    return [Cell(safe_text(h.address, 64)), Cell(short(roles), _beyond(short(roles), roles), key=roles),
            Cell(short(names), _beyond(short(names), names), key=names)]
