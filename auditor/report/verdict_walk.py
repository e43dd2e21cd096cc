"""The HTML view's walk over an audit's verdicts (``_VerdictWalk``): each flow's interned cells found
from the verdicts (report/flowscan.py's pass) and made when new, without a row per flow, for
view.py's ``_FlowPass``."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from auditor.capture import native
from auditor.classify import REASON_MISMATCH
from auditor.model import HEAD_CHARS
from auditor.report.document import FlowRows, bounded
from auditor.report.view import _BATCH

if TYPE_CHECKING:
    from auditor.classify import FlowVerdict, HostView
    from auditor.report import flowscan
    from auditor.report.view import _FlowPass

_V = TypeVar("_V")


class _Found(dict[Any, _V]):
    """A column's cells by what they are made of: ``make(key)`` the first time a key is met."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[Any], _V]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: Any) -> _V:
        found = self[key] = self.make(key)
        return found


class _VerdictWalk:
    """_FlowPass's walk over an audit's verdicts (FlowRows): what _FlowPass._take gives from rows,
    made from the verdicts a batch at a time (flowscan.scan, one loop over the batch), each cell found
    by what it is made of; a flow's row is built only when one of its cells is new (this class's
    methods, which scan calls: its ``Misses``).

    A service cell whose title names its evidence's frames and first bytes (one per flow, nearly) is
    not made here: its column holds ``-1 - t`` for the template ``t`` (``templates``: the cell but for
    those, FlowCells.svc_template) and the flow's evidence goes to ``evidence``: per framed protocol,
    the frame's input and number, the first bytes' text and the detail's index in ``details``.
    report.js makes the cell of them as FlowCells.svc_title does.

    Likewise a rule / reason cell whose text names one of the flow's hosts (one per address, nearly:
    "initiator 10.1.2.3 holds no role...") is made in the page when its text is what the cell shows
    as it is (printable ASCII, not cut): its column holds ``-1 - t`` for the template ``t`` of
    ``why_templates`` ([the side whose host cell's key is the address: 1 initiator, 2 responder, the
    text before the address, after it, the reason's code]); report.js makes the cell as
    FlowCells.why does."""

    def __init__(self, walk: _FlowPass, rows: FlowRows) -> None:
        self.walk, self.rows, self.cells = walk, rows, walk.cells
        cells = self.cells
        self.hosts: dict[int, tuple[HostView, int, int, tuple[str, ...], Any]] = {}
        """id(host view) -> (the view, kept so the id stays its own; its cell; its roles' list id;
        its names as its rows hold them; its cell's key)."""
        self.kinds: _Found[str] = _Found(
            lambda k: "failing" if k[0] == "expected" and k[1] else cells.t32[str(k[0])])
        self.verdict_cells: _Found[int] = _Found(cells.verdict_cell)
        self.whys: dict[Any, int] = {}
        self.outcome_conns: dict[Any, tuple[int, int]] = {}
        self.dir: dict[int, int] = {}
        self.inputs: dict[int, int] = {}
        self.svc: dict[Any, tuple[int, list[str]]] = {}
        """A service's template key -> (its interned cell, or -1 - its template's index; the
        protocols whose evidence its title names, in order)."""
        self.templates: list[list[Any]] = []
        """[text, key, class, title parts] of the service cells made in the page."""
        self.heads: _Found[str] = _Found(lambda key: cells.t32[bounded(key, HEAD_CHARS)])  # by HEAD_KEY characters
        self.details: list[str] = []
        self.detail_ix: _Found[int] = _Found(self._detail)
        self.evidence: list[list[Any]] = []
        """Per batch of _BATCH flows, its framed flows' evidence, flat (4 per framed protocol)."""
        self.why_templates: list[list[Any]] = []
        self.why_ix: dict[tuple[int, str, str, str], int] = {}
        self.flowscan = native.KERNEL.of("auditor.report.flowscan")  # of the build that runs
        walk.own = self.flowscan.Own()
        verdicts = rows.verdicts
        for start in range(0, len(verdicts), _BATCH):
            self.take(verdicts[start:start + _BATCH])

    def _detail(self, raw: str) -> int:
        self.details.append(self.cells.t80[bounded(raw, 80)])
        return len(self.details) - 1

    def host(self, h: HostView) -> tuple[HostView, int, int, tuple[str, ...], Any]:
        hit = self.hosts.get(id(h))
        if hit is None:
            roles, names = self.rows.host_parts(h)
            cell = self.cells.host(h.address, names, roles)
            hit = self.hosts[id(h)] = (h, cell, self.walk.lists(roles), names, self.cells.cells[cell].key)
        return hit

    def service(self, v: FlowVerdict, key: Any) -> tuple[int, list[str]]:
        text, parts, names, cls, skey = self.cells.svc_template(*self.rows.service(v))
        if not names:
            found = self.svc[key] = (self.cells.service((text, parts, names, cls, skey)), names)
        else:
            self.templates.append([text, skey, cls, parts])
            found = self.svc[key] = (-len(self.templates), names)
        return found

    def outcome(self, v: FlowVerdict, key: Any) -> tuple[int, int]:
        """A new outcome / connections cell pair (for flowscan.scan), by its key."""
        found = self.outcome_conns[key] = self.cells.outcome_conns(self.rows.outcome_parts(v))
        return found

    def dir_input(self, v: FlowVerdict) -> tuple[int, int]:
        """The direction and first frame's input cells of a flow one of which is new (for
        flowscan.scan)."""
        ix = self.cells.shared(self.rows.row(v), svc=False)
        f = v.flow
        d = self.dir[id(f.direction_evidence)] = ix[7]
        s = self.inputs[f.first_frame[0]] = ix[8]
        return d, s

    def template(self, t: tuple[int, str, str, str]) -> int:
        """The index of a rule / reason cell's template, ``-1 -`` its place in ``why_templates``."""
        found = self.why_ix.get(t)
        if found is None:
            self.why_templates.append(list(t))
            found = self.why_ix[t] = -len(self.why_templates)
        return found

    def why(self, v: FlowVerdict, key: Any) -> int:
        """A new rule / reason cell (for flowscan.scan, which finds the templates of the reasons that
        name a host itself), by its key."""
        found = self.whys[key] = self.cells.why(*self.rows.why(v))
        return found

    def scan(self, batch: Sequence[FlowVerdict]) -> flowscan.Scanned:
        """The batch's cells as flowscan.scan finds them (of the build that runs), its own columns
        appended to the walk's."""
        misses: flowscan.Misses = self  # what the type checker holds this class to
        found: flowscan.Scanned = self.flowscan.scan(
            batch, REASON_MISMATCH, self.svc, self.outcome_conns, self.dir, self.inputs, self.heads, self.detail_ix,
            misses, self.walk.own, self.hosts, self.kinds, self.verdict_cells, self.whys, self.why_ix, self.cells.t64)
        return found

    def take(self, batch: Sequence[FlowVerdict]) -> None:
        walk = self.walk
        got = self.scan(batch)
        hosts = self.hosts
        for i in got.unmapped:
            v = batch[i]
            f = v.flow
            walk.talk(f.key.initiator, hosts[id(v.initiator)][3], f.bytes, f.packets)
            walk.talk(f.key.responder, hosts[id(v.responder)][3], f.bytes, f.packets)
        self.evidence.append(got.evidence)
        ix = got.ix  # packed in one step: array.extend converts a list's numbers one call at a time
        walk.shared.frombytes(struct.pack(f"{len(ix)}i", *ix))
        walk.neg_bytes += got.neg_bytes
        walk.summarised += got.summarised
        walk.tally(got.kinds, got.init_roles, got.resp_roles)
