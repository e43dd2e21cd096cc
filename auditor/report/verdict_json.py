"""The JSON export's flows written from an audit's verdicts (``FlowRows.json_texts``): each flow's
text, exactly what FlowJson gives of its row, made a member at a time without building the rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from auditor.apps import UNKNOWN
from auditor.flow import Flow
from auditor.model import HEAD_CHARS, HEAD_KEY, Refusal
from auditor.report.document import (
    _NO_STATES,
    _SECOND_TEXT,
    _host_parts,
    _second_text,
    _Shared,
    bounded,
    flow_refusals,
    iso,
    reason_text,
)
from auditor.report.jsondata import _JSON, FlowJson, _Memo, _ts_json

if TYPE_CHECKING:
    from auditor.classify import FlowVerdict, HostView

_TS_FAST = 2.5e11
"""Timestamps from 0 up to this (the year 9892) have iso's text without a failure to catch."""


class _JsonParts:
    """FlowRows.json_texts's parts, each looked up by what it is made of (for one FlowJson)."""

    def __init__(self, shared: _Shared, text: FlowJson) -> None:
        self.shared, self.text = shared, text
        self.hosts: dict[int, tuple[HostView, str, str]] = {}
        """id(host view) -> (the view, kept so the id stays its own; its roles' JSON; its names')."""
        self.kinds: dict[tuple[str, bool], str] = {}
        self.outcomes: dict[tuple[str, tuple[tuple[Refusal, int], ...] | None], str] = {}
        self.why: dict[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None, str | None], str] = {}
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

    def reason(self, v: FlowVerdict, key: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None,
                                                 str | None]) -> str:
        js, lists = self.text.text, self.text.lists
        found = self.why[key] = (
            f'"rule_ids":{lists[tuple(v.rule_ids)]},"reverse_rule_ids":{lists[tuple(v.reverse_rule_ids)]},'
            f'"layers":{lists[tuple(v.layers)]},"reason":{js[v.reason]},'
            f'"reason_text":{js[reason_text(v, self.shared)]},')
        return found

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

    def evidence(self, flows: list[Flow]) -> list[str]:
        """Each flow's app_evidence member's JSON, its comma before it and the flow's closing brace
        after it: what text.evidence gives of service_fields's rows, from the flows' own evidence."""
        ev_head, heads, details, out = self.evidence_head, self.heads, self.details, []
        for evidence in [f.app_evidence for f in flows]:
            if not evidence:
                out.append(_NO_APP_EVIDENCE)
            elif len(evidence) == 1:
                for name, e in evidence.items():
                    out.append(_ONE_APP_EVIDENCE % (ev_head[(name, e.direction)], e.frame[0], e.frame[1],
                                                    heads[e.head[:HEAD_KEY]], details[e.detail]))
            else:
                out.append(',"app_evidence":{' + ",".join([
                    f'{ev_head[(name, e.direction)]}{e.frame[0]:d},"frame":{e.frame[1]:d}}},'
                    f'"head":{heads[e.head[:HEAD_KEY]]},"detail":{details[e.detail]}}}'
                    for name, e in sorted(evidence.items())]) + "}}")
        return out

    def texts(self, verdicts: Sequence[FlowVerdict]) -> list[str]:
        """Each verdict's flow as JSON text: a column of each member's text (or number) at a time,
        each part that many flows repeat looked up by what it is made of, the rows formatted of the
        columns last (_FLOW_TEXT)."""
        js = self.text.text
        hosts, host, kinds, outcomes, whys, tallies, tunnels = (
            self.hosts, self.host, self.kinds, self.outcomes, self.why, self.tallies, self.tunnels)
        fl = [v.flow for v in verdicts]
        ks = [f.key for f in fl]
        a = [hosts.get(id(v.initiator)) or host(v.initiator) for v in verdicts]
        b = [hosts.get(id(v.responder)) or host(v.responder) for v in verdicts]
        k_out = [(f.outcome, tuple(f.refusals.items()) if f.refusals else None) for f in fl]
        k_why = [(v.rule_ids, v.reverse_rule_ids, v.layers, v.reason, v.reason_text) for v in verdicts]
        tally = [tallies.get((id(f.direction_evidence), id(f.conn_states))) for f in fl]
        apps = self.apps
        return list(map(_FLOW_TEXT.__mod__, zip(
            [js[k.initiator] for k in ks], [js[k.responder] for k in ks], [js[k.protocol] for k in ks],
            [k.port for k in ks], [x[1] for x in a], [y[1] for y in b], [x[2] for x in a], [y[2] for y in b],
            [kinds.get((v.classification, v.failing)) or self.kind(v) for v in verdicts],
            [outcomes.get(k) or self.outcome(f, k) for f, k in zip(fl, k_out, strict=True)],
            [whys.get(k) or self.reason(v, k) for v, k in zip(verdicts, k_why, strict=True)],
            [f.connections for f in fl], [f.established for f in fl], [f.rejected for f in fl],
            [f.unanswered for f in fl], [f.orig_pkts + f.resp_pkts for f in fl],
            [f.orig_bytes + f.resp_bytes for f in fl], [f.orig_pkts for f in fl], [f.resp_pkts for f in fl],
            [f.orig_bytes for f in fl], [f.resp_bytes for f in fl],
            _ts_texts([f.first_seen for f in fl]), _ts_texts([f.last_seen for f in fl]),
            [f.first_frame[0] for f in fl], [f.first_frame[1] for f in fl],
            [t[1] if t is not None else self.tally(f) for f, t in zip(fl, tally, strict=True)],
            [(tunnels.get(f.tunnels) or self.tunnel(f.tunnels)) if f.tunnels else "[]" for f in fl],
            ["true" if f.summarised else "false" for f in fl],
            [apps[tuple(f.apps.items())] if f.apps else apps[()] if f.app_evidence else _NO_APPS for f in fl],
            [f.connections - sum(f.apps.values()) if f.apps else f.connections for f in fl],  # Flow.unverified
            self.evidence(fl), strict=True)))


_NO_APPS = f'"app_protocol":{_JSON(UNKNOWN)},"apps":{{}},"unverified":'
_NO_APP_EVIDENCE = ',"app_evidence":{}}'
_ONE_APP_EVIDENCE = ',"app_evidence":{%s%d,"frame":%d},"head":%s,"detail":%s}}}'
_FLOW_TEXT = (
    '{"initiator":%s,"responder":%s,"protocol":%s,"port":%d,"initiator_roles":%s,"responder_roles":%s,'
    '"initiator_names":%s,"responder_names":%s,%s%s%s'
    '"connections":%d,"established":%d,"rejected":%d,"unanswered":%d,"packets":%d,"bytes":%d,'
    '"orig_packets":%d,"resp_packets":%d,"orig_bytes":%d,"resp_bytes":%d,'
    '"first_seen":%s,"last_seen":%s,"first_frame":{"input":%d,"frame":%d},%s'
    '"tunnels":%s,"summarised":%s,%s%d%s')
"""A flow's JSON text of its members' texts and numbers, in FlowJson's order (_JsonParts.texts)."""


def _ts_texts(times: list[float]) -> list[str]:
    """The JSON text of timestamps, as FlowJson writes a row's (iso's text needs no escaping: digits,
    "-", ":", "T", ".", "Z"; the text of each whole second is iso's)."""
    seconds, out = _SECOND_TEXT, []
    for t in times:
        if 0.0 <= t < _TS_FAST:
            sec, frac = divmod(round(t * 1_000_000), 1_000_000)
            out.append(f'"{seconds.get(sec) or _second_text(sec)}.{frac:06d}Z"')
        else:
            out.append(_ts_json(iso(t)))
    return out
