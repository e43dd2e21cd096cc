"""The JSON export's flows written from an audit's verdicts (``FlowRows.json_texts``): each flow's
text, exactly what FlowJson gives of its row, made without building the rows: the parts many flows
repeat here, the pass over the flows in report/jsonscan.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from auditor.apps import UNKNOWN
from auditor.capture import native
from auditor.flow import Flow
from auditor.model import HEAD_CHARS, Refusal
from auditor.report import jsonscan
from auditor.report.document import (
    _NO_STATES,
    _SECOND_TEXT,
    _host_parts,
    _second_text,
    _Shared,
    bounded,
    flow_refusals,
    iso,
)
from auditor.report.jsondata import FlowJson, _Memo, _ts_json

if TYPE_CHECKING:
    from auditor.classify import FlowVerdict, HostView


class _JsonParts:
    """FlowRows.json_texts's parts, each looked up by what it is made of (for one FlowJson): what
    jsonscan.texts reads (its Parts)."""

    def __init__(self, shared: _Shared, text: FlowJson) -> None:
        self.shared, self.text = shared, text
        self.hosts: dict[int, tuple[HostView, str, str]] = {}
        """id(host view) -> (the view, kept so the id stays its own; its roles' JSON; its names')."""
        self.kinds: dict[tuple[str, bool], str] = {}
        self.outcomes: dict[tuple[str, tuple[tuple[Refusal, int], ...] | None], str] = {}
        self.why: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None], str] = {}
        self.tallies: dict[tuple[int, int], tuple[Flow, str]] = {}
        """(id(direction evidence), id(conn_states)) -> (a flow holding them, so the ids stay theirs; JSON)."""
        self.tunnels: dict[frozenset[str], str] = {}
        js = text.text
        self.apps = _Memo(lambda raw: (lambda apps: f'"app_protocol":{js[next(iter(apps)) if apps else UNKNOWN]},'
                                       f'"apps":{text.states[tuple(apps.items())]},"unverified":')(
                                           shared.apps(dict(raw)) if raw else _NO_STATES))
        """A flow's raw protocol counts -> its app_protocol's and apps' JSON (as service_fields gives them)."""
        self.evidence_head = _Memo(lambda k: f'{js[k[0]]}:{{"direction":{js[k[1]]},"frame":{{"input":')
        """(protocol, direction) -> the JSON of an evidence member up to its frame's input."""
        self.heads = _Memo(lambda key: js[bounded(key, HEAD_CHARS)])  # by HEAD_KEY characters
        self.details = _Memo(lambda raw: js[bounded(raw, 80)])
        self.js, self.seconds = js, _SECOND_TEXT
        self.no_apps = f'"app_protocol":{js[UNKNOWN]},"apps":{{}},"unverified":'
        self.scan = native.KERNEL.of("auditor.report.jsonscan")  # of the build that runs

    def host(self, h: HostView) -> tuple[HostView, str, str]:
        hit = self.hosts.get(id(h))
        if hit is None:
            roles, names = _host_parts(h, self.shared.hosts)
            lists = self.text.lists
            hit = self.hosts[id(h)] = (h, lists[roles], lists[names])
        return hit

    def kind(self, v: FlowVerdict) -> str:
        found = self.kinds[(v.classification, v.failing)] = (
            f'"classification":{self.text.text[str(v.classification)]},'
            f'"failing":{"true" if v.failing else "false"},')
        return found

    def outcome(self, f: Flow, key: tuple[str, tuple[tuple[Refusal, int], ...] | None]) -> str:
        refused = flow_refusals(f, self.shared)
        found = self.outcomes[key] = (f'"outcome":{self.text.text[str(f.outcome)]},'
                                      f'"refused_by":{self.text.refused[refused] if refused else "[]"},')
        return found

    def reason(self, v: FlowVerdict, key: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None]) -> str:
        """The rule and reason members, up to the reason's text (jsonscan writes it)."""
        js, lists = self.text.text, self.text.lists
        found = self.why[key] = (
            f'"rule_ids":{lists[tuple(v.rule_ids)]},"reverse_rule_ids":{lists[tuple(v.reverse_rule_ids)]},'
            f'"layers":{lists[tuple(v.layers)]},"reason":{js[v.reason]},"reason_text":')
        return found

    def reason_text(self, text: str) -> str:
        """The JSON of a reason's text (bounded and cleaned as the row's)."""
        return self.text.text[self.shared.reason(text)]

    def tally(self, f: Flow) -> str:
        js, states = self.text.text, f.conn_states
        strongest = f.strongest_evidence
        counts = self.text.states[tuple(self.shared.conn_states(states).items())] if states else "{}"
        text = (f'"direction_evidence":{js[strongest]},'
                f'"direction_inferred":{"false" if strongest in ("syn", "synack") else "true"},'
                f'"conn_states":{counts},')
        self.tallies[(id(f.direction_evidence), id(states))] = (f, text)
        return text

    def tunnel(self, tunnels: frozenset[str]) -> str:
        found = self.tunnels[tunnels] = self.text.lists[self.shared.tunnel_list(tunnels)]
        return found

    def second(self, sec: int) -> str:
        return _SECOND_TEXT.get(sec) or _second_text(sec)

    def ts(self, t: float) -> str:
        return _ts_json(iso(t))

    def texts(self, verdicts: Sequence[FlowVerdict]) -> list[str]:
        """Each verdict's flow as JSON text (jsonscan.texts: of the build that runs for the build's
        flows, else as Python)."""
        parts: jsonscan.Parts = self  # what the type checker holds this class to
        scan = self.scan if verdicts and type(verdicts[0].flow) is self.scan.Flow else jsonscan
        texts: list[str] = scan.texts(verdicts, parts)
        return texts
