"""The JSON export's pass over a batch of an audit's flows (``texts``): each flow's JSON text.

What report/verdict_json.py's ``_JsonParts`` writes of a verdict, made here in one loop, flow by
flow: a flow's fields are read once, each part that many flows repeat (a host's roles and names, the
verdict's rules and reason, the outcome and refusals, the tallies, the tunnels) looked up by what it
is made of in the dicts given, and made by the ``Misses`` given (the parts) when not met before.

Compiled where a compiler exists (auditor/capture/native.py's COMPILED), with auditor/flow.py: the
flows of the build that runs are then read as C structs. ``_JsonParts`` takes the build's module
(``native.KERNEL.of``) for flows of the build, this module as Python for any others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol, cast

from auditor.flow import Flow
from auditor.model import HEAD_KEY

TS_FAST: Final = 2.5e11
"""Timestamps from 0 up to this (the year 9892) are written here; the others by ``Misses.ts``."""

NO_APP_EVIDENCE: Final = ',"app_evidence":{}}'


class Verdict(Protocol):
    """What ``texts`` reads of a verdict (classify.FlowVerdict, not imported: see flowscan.py)."""

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
    """What ``texts`` asks of the parts for what it has not met: each call also records its answer
    in the dict ``texts`` looks in next."""

    def host(self, h: Any) -> tuple[Any, str, str]: ...
    def kind(self, v: Verdict) -> str: ...
    def outcome(self, f: Flow, key: Any) -> str: ...
    def reason(self, v: Verdict, key: Any) -> str: ...
    def tally(self, f: Flow) -> str: ...
    def tunnel(self, tunnels: frozenset[str]) -> str: ...
    def second(self, sec: int) -> str: ...
    def ts(self, t: float) -> str: ...


class Parts:
    """The dicts ``texts`` looks parts up in (each filled by ``Misses``, or by its own __missing__)."""

    def __init__(self, js: dict[Any, str], hosts: dict[int, tuple[Any, str, str]], kinds: dict[Any, str],
                 outcomes: dict[Any, str], whys: dict[Any, str], tallies: dict[tuple[int, int], tuple[Any, str]],
                 tunnels: dict[frozenset[str], str], apps: dict[Any, str], ev_head: dict[Any, str],
                 heads: dict[str, str], details: dict[str, str], seconds: dict[int, str], no_apps: str) -> None:
        self.js: Final = js
        """Any text -> its JSON (its __missing__ encodes)."""
        self.hosts: Final = hosts
        self.kinds: Final = kinds
        self.outcomes: Final = outcomes
        self.whys: Final = whys
        self.tallies: Final = tallies
        self.tunnels: Final = tunnels
        self.apps: Final = apps
        """A flow's protocol counts as items -> its app_protocol's and apps' JSON up to "unverified":."""
        self.ev_head: Final = ev_head
        """(protocol, direction) -> the JSON of an evidence member up to its frame's input."""
        self.heads: Final = heads
        self.details: Final = details
        self.seconds: Final = seconds
        """A whole second -> iso's text of it (what is kept of them; ``Misses.second`` adds)."""
        self.no_apps: Final = no_apps
        """The app members of a flow without application evidence."""


def _ts(t: float, seconds: dict[int, str], misses: Misses) -> str:
    if 0.0 <= t < TS_FAST:
        us = round(t * 1_000_000)
        sec = us // 1_000_000
        text = seconds.get(sec)
        if text is None:
            text = misses.second(sec)
        digits = str(us - sec * 1_000_000 + 1_000_000)  # "1" and the microseconds' six digits
        return f'"{text}.{digits[1:]}Z"'
    return misses.ts(t)


def _evidence(evidence: dict[str, Any] | None, parts: Parts) -> str:
    """A flow's app_evidence member's JSON, its comma before it and the flow's closing brace after it."""
    if not evidence:
        return NO_APP_EVIDENCE
    ev_head, heads, details = parts.ev_head, parts.heads, parts.details
    if len(evidence) == 1:
        for name, e in evidence.items():
            frame = e.frame
            return (f',"app_evidence":{{{ev_head[(name, e.direction)]}{frame[0]},"frame":{frame[1]}}},'
                    f'"head":{heads[e.head[:HEAD_KEY]]},"detail":{details[e.detail]}}}}}}}')
    members = []
    for name, e in sorted(evidence.items()):
        frame = e.frame
        members.append(f'{ev_head[(name, e.direction)]}{frame[0]},"frame":{frame[1]}}},'
                       f'"head":{heads[e.head[:HEAD_KEY]]},"detail":{details[e.detail]}}}')
    return ',"app_evidence":{' + ",".join(members) + "}}"


def texts(verdicts: Sequence[Verdict], parts: Parts, misses: Misses) -> list[str]:
    """Each verdict's flow as JSON text, in order."""
    js, hosts, kinds, outcomes, whys = parts.js, parts.hosts, parts.kinds, parts.outcomes, parts.whys
    tallies, tunnel_texts, apps_texts, seconds = parts.tallies, parts.tunnels, parts.apps, parts.seconds
    out: list[str] = []
    for v in verdicts:
        # The build's Flow where this module is compiled (its fields then read in C).
        f: Flow = cast(Any, v.flow)
        k = f.key  # its items by index: as a tuple's, in C (by name, through the NamedTuple's class)
        h = v.initiator
        a = hosts.get(id(h))
        if a is None:
            a = misses.host(h)
        h = v.responder
        b = hosts.get(id(h))
        if b is None:
            b = misses.host(h)
        kind = kinds.get((v.classification, v.failing))
        if kind is None:
            kind = misses.kind(v)
        refusals = f.refusals
        okey = (f.outcome, tuple(refusals.items()) if refusals else None)
        outcome = outcomes.get(okey)
        if outcome is None:
            outcome = misses.outcome(f, okey)
        wkey = (v.rule_ids, v.reverse_rule_ids, v.layers, v.reason, v.reason_text)
        why = whys.get(wkey)
        if why is None:
            why = misses.reason(v, wkey)
        states = f.conn_states
        tally = tallies.get((id(f.direction_evidence), id(states)))
        tally_text = tally[1] if tally is not None else misses.tally(f)
        tunnels = f.tunnels
        if tunnels:
            tunnel_text = tunnel_texts.get(tunnels)
            if tunnel_text is None:
                tunnel_text = misses.tunnel(tunnels)
        else:
            tunnel_text = "[]"
        connections = f.connections
        apps = f.apps
        evidence = f.app_evidence
        if apps:
            apps_text = apps_texts[tuple(apps.items())]
            unverified = connections - sum(apps.values())
        else:
            apps_text = apps_texts[()] if evidence else parts.no_apps
            unverified = connections
        orig_pkts, resp_pkts, orig_bytes, resp_bytes = f.orig_pkts, f.resp_pkts, f.orig_bytes, f.resp_bytes
        first = f.first_frame
        packets, size = orig_pkts + resp_pkts, orig_bytes + resp_bytes
        first_seen, last_seen = _ts(f.first_seen, seconds, misses), _ts(f.last_seen, seconds, misses)
        summarised = "true" if f.summarised else "false"
        # FlowJson's members in its order (an f-string: its parts joined in one step, where a format
        # string would be parsed again for every flow).
        out.append(
            f'{{"initiator":{js[k[0]]},"responder":{js[k[1]]},"protocol":{js[k[2]]},"port":{k[3]},'
            f'"initiator_roles":{a[1]},"responder_roles":{b[1]},"initiator_names":{a[2]},"responder_names":{b[2]},'
            f'{kind}{outcome}{why}"connections":{connections},"established":{f.established},'
            f'"rejected":{f.rejected},"unanswered":{f.unanswered},"packets":{packets},"bytes":{size},'
            f'"orig_packets":{orig_pkts},"resp_packets":{resp_pkts},"orig_bytes":{orig_bytes},'
            f'"resp_bytes":{resp_bytes},"first_seen":{first_seen},"last_seen":{last_seen},'
            f'"first_frame":{{"input":{first[0]},"frame":{first[1]}}},{tally_text}"tunnels":{tunnel_text},'
            f'"summarised":{summarised},{apps_text}{unverified}{_evidence(evidence, parts)}')
    return out
