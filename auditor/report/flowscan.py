"""The HTML view's one pass over a batch of an audit's flows (``scan``).

Everything the page's walk (report/verdict_walk.py) reads of a verdict and its flow is read here in
one loop, flow by flow: the keys its cells are found by (verdict, hosts, service, outcome /
connections, rule / reason, direction, first frame's input), and the cells found; its service
evidence; its byte count; and its own columns (packets, bytes, first and last seen, first frame),
kept in arrays for the data block, so that writing the data block reads no flow again. A flow's
fields (its key, tallies, numbers) sit wherever the capture left them in memory: reading them is
most of the walk's cost, and one pass reads them once rather than once per column. The cells not met
before are made by the ``Misses`` given (the walk).

Compiled where a compiler exists (auditor/capture/native.py's COMPILED), with auditor/flow.py: the
flows of the build that runs are then read as C structs. The walk takes the build's module
(``native.KERNEL.of``).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any, Final, Protocol, TypeAlias, cast

from auditor.flow import Flow
from auditor.model import DISPLAY_CHARS, HEAD_CHARS, HEAD_KEY

Cell: TypeAlias = Any
"""A cell's index (an int) where this module reads it from the walk's dicts and hands it on as it is:
typed int, the compiled build would take each out of its object and make a new object of it again."""


class Verdict(Protocol):
    """What the passes over the flows (``scan`` here, report/jsonscan.py's ``texts``) read of a verdict
    (classify.FlowVerdict, not imported: these modules are compiled, and the type checker that
    compiles them would follow classify's imports to the catalog's YAML)."""

    @property
    def flow(self) -> Flow: ...
    @property
    def initiator(self) -> Any: ...
    @property
    def responder(self) -> Any: ...
    @property
    def classification(self) -> str: ...
    @property
    def failing(self) -> bool: ...
    @property
    def rule_ids(self) -> tuple[str, ...]: ...
    @property
    def reverse_rule_ids(self) -> tuple[str, ...]: ...
    @property
    def layers(self) -> tuple[str, ...]: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def reason_text(self) -> str | None: ...


class Misses(Protocol):
    """What ``scan`` asks of the walk for what it has not met: each call also records its answer
    in the dict ``scan`` looks in next."""

    # Given the verdicts ``scan`` was given (Any here, the walk's own type there).
    def service(self, v: Any, key: Any) -> tuple[Cell, list[str]]: ...
    def outcome(self, v: Any, key: Any) -> tuple[Cell, Cell]: ...
    def dir_input(self, v: Any) -> tuple[Cell, Cell]: ...
    def host(self, h: Any) -> tuple[Any, Cell, Cell, tuple[str, ...], Any]:
        """A host view's (the view, its cell, its roles' list id, its names, its cell's key), by its id."""
    def why(self, v: Any, key: Any) -> Cell:
        """A verdict's rule / reason cell whose text names none of its hosts (``_template``), by ``key``."""
    def template(self, t: tuple[int, str, str, str]) -> Cell:
        """A new template of a rule / reason cell whose text names one of its flow's hosts (``-1 -`` its
        index): (the side, 1 initiator or 2 responder; the text before the address; after it; the
        reason's code)."""


class Own:
    """Every flow's own columns, in the walk's order: packets, bytes, first and last seen, the
    first frame's input and number (the data block's p, b, t0, t1, fi, fn)."""

    def __init__(self) -> None:
        self.p: Final = array("q")
        self.b: Final = array("q")
        self.t0: Final = array("d")
        self.t1: Final = array("d")
        self.fi: Final = array("q")
        self.fn: Final = array("q")


class Scanned:
    """One batch's columns as ``scan`` found them."""

    def __init__(self) -> None:
        self.ix: list[Cell] = []
        """Per flow, the _WIDTH indexes of its cells (report/view.py's _FlowPass.shared)."""
        self.kinds: list[str] = []
        """Per flow, its verdict as the page shows it ("failing" for a failing expected flow)."""
        self.init_roles: list[Cell] = []
        self.resp_roles: list[Cell] = []
        self.unmapped: list[int] = []
        """The places in the batch of the unmapped flows (the top talkers')."""
        self.neg_bytes: list[int] = []
        self.evidence: list[Any] = []
        self.summarised = 0


def _template(rule_ids: tuple[str, ...], reason: str | None, text: str | None, k: Any,
              x: tuple[Any, Cell, Cell, tuple[str, ...], Any], y: tuple[Any, Cell, Cell, tuple[str, ...], Any],
              templates: dict[tuple[int, str, str, str], Cell], codes: dict[str, str], misses: Misses) -> Cell:
    """The template of a rule / reason cell whose text names the flow's initiator (x) or responder (y),
    shown as it is (printable ASCII, not cut: so its row's text); None for any other, whose cell the
    walk makes (``misses.why``)."""
    if rule_ids or not text or len(text) > DISPLAY_CHARS or not (text.isascii() and text.isprintable()):
        return None
    code = codes[reason or ""]
    if not code:
        return None
    side = 1
    for addr, host_key in ((k.initiator, x[4]), (k.responder, y[4])):
        at = text.find(addr) if addr else -1
        if at >= 0 and host_key == addr:
            t = (side, text[:at], text[at + len(addr):], code)
            found = templates.get(t)
            if found is None:
                found = misses.template(t)
            return found
        side = 2
    return None


def scan(batch: Sequence[Verdict], mismatch: str, svc: dict[Any, tuple[Cell, list[str]]],
         oc: dict[Any, tuple[Cell, Cell]], dirs: dict[int, Cell], inputs: dict[int, Cell],
         heads: dict[str, str], details: dict[str, Cell], misses: Misses, own: Own,
         hosts: dict[int, tuple[Any, Cell, Cell, tuple[str, ...], Any]], kinds: dict[tuple[str, bool], str],
         verdict_cells: dict[str, Cell], whys: dict[Any, Cell], templates: dict[tuple[int, str, str, str], Cell],
         codes: dict[str, str]) -> Scanned:
    """The batch's cells (looked up by what they are made of), its evidence and byte counts, and its
    own columns appended to ``own``. ``heads``, ``details``, ``kinds``, ``verdict_cells`` and ``codes``
    (a reason's code as the page shows it) make what they lack (their __missing__). A reason whose text
    names one of the flow's hosts is looked up as its template (``templates``; see _VerdictWalk)."""
    out = Scanned()
    ix, kind_list, ia, ib, unmapped = out.ix, out.kinds, out.init_roles, out.resp_roles, out.unmapped
    neg, ev = out.neg_bytes, out.evidence
    p, b, t0, t1, fi, fn = own.p, own.b, own.t0, own.t1, own.fi, own.fn
    summarised = 0
    for i, v in enumerate(batch):
        # The build's Flow (checked where this module is compiled, its fields then read in C).
        f: Flow = cast(Any, v.flow)
        kind = kinds[(v.classification, v.failing)]
        kind_list.append(kind)
        if kind == "unmapped":
            unmapped.append(i)
        h = v.initiator
        x = hosts.get(id(h))
        if x is None:
            x = misses.host(h)
        h = v.responder
        y = hosts.get(id(h))
        if y is None:
            y = misses.host(h)
        ia.append(x[2])
        ib.append(y[2])
        k = f.key
        protocol = k.protocol
        apps = f.apps
        app_evidence = f.app_evidence
        connections = f.connections
        resp_pkts = f.resp_pkts
        # The service's template, by what it is made of but its evidence's frames and first bytes.
        if apps:
            apps_key: Any = tuple(apps.items())
            unverified = connections - sum(apps.values())
        else:
            apps_key = None
            unverified = connections
        if app_evidence:
            ev_key: Any = tuple([(n, e.direction) for n, e in app_evidence.items()])
        else:
            ev_key = None
        reason = v.reason
        key = (protocol, k.port, apps_key, unverified, ev_key, reason == mismatch)
        cell = svc.get(key)
        if cell is None:
            cell = misses.service(v, key)
        names = cell[1]
        if names:
            got = app_evidence or {}
            for n in names:
                e = got[n]
                frame = e.frame
                hk = e.head[:HEAD_KEY]
                head = heads.get(hk)
                if head is None:  # a text shown as it is (the hex of most heads) needs no cleaning
                    head = hk if len(hk) <= HEAD_CHARS and hk.isascii() and hk.isprintable() else heads[hk]
                ev += (frame[0], frame[1], head, details[e.detail])
        # The outcome and connections cells, by one key: the counts and tallies they are made of
        # (Flow.outcome's inputs among them) and the refusals.
        refusals = f.refusals
        oc_key = (connections, f.established, f.rejected, f.unanswered, id(f.conn_states),
                  resp_pkts == 0 and protocol == "udp", tuple(refusals.items()) if refusals else None)
        found = oc.get(oc_key)
        if found is None:
            found = misses.outcome(v, oc_key)
        rule_ids, text = v.rule_ids, v.reason_text
        wkey = (rule_ids, v.reverse_rule_ids, reason, text)
        w = whys.get(wkey)
        if w is None:
            w = _template(rule_ids, reason, text, k, x, y, templates, codes, misses)
            if w is None:
                w = misses.why(v, wkey)
            else:
                whys[wkey] = w
        first = f.first_frame
        d = dirs.get(id(f.direction_evidence))
        s = inputs.get(first[0])
        if d is None or s is None:
            d, s = misses.dir_input(v)
        ix += (verdict_cells[kind], x[1], y[1], cell[0], found[0], w, found[1], d, s)
        size = f.orig_bytes + f.resp_bytes
        neg.append(-size)
        if f.summarised:
            summarised += 1
        p.append(f.orig_pkts + resp_pkts)
        b.append(size)
        t0.append(f.first_seen)
        t1.append(f.last_seen)
        fi.append(first[0])
        fn.append(first[1])
    out.summarised = summarised
    return out
