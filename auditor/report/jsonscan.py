"""The JSON export's pass over a batch of an audit's flows (``texts``): each flow's JSON text.

What report/verdict_json.py's ``_JsonParts`` writes of a verdict, made here in one loop, flow by
flow: a flow's fields are read once, each part that many flows repeat (a host's roles and names, the
verdict's rules and reason, the outcome and refusals, the tallies, the tunnels) looked up by what it
is made of in the parts' dicts, and made by the parts when not met before.

Compiled where a compiler exists (auditor/capture/native.py's COMPILED), with auditor/flow.py: the
flows of the build that runs are then read as C structs. ``_JsonParts`` takes the build's module
(``native.KERNEL.of``) for flows of the build, this module as Python for any others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol, cast

from auditor.flow import Flow
from auditor.model import HEAD_CHARS, HEAD_KEY, REASON_CHARS, AppEvidence
from auditor.report.flowscan import Verdict

TS_FAST: Final = 2.5e11
"""Timestamps from 0 up to this (the year 9892) are written here; the others by the parts' ``ts``."""

NO_APP_EVIDENCE: Final = ',"app_evidence":{}}'


class Parts(Protocol):
    """What ``texts`` asks of the parts (report/verdict_json.py's ``_JsonParts``): the dicts it looks
    them up in (read once per batch), and the makers of those it has not met, each of which also
    records its answer in the dict looked in next."""

    @property
    def js(self) -> dict[Any, str]:
        """Any text -> its JSON (its __missing__ encodes)."""
    @property
    def hosts(self) -> dict[int, tuple[Any, str, str]]: ...
    @property
    def kinds(self) -> dict[Any, str]: ...
    @property
    def outcomes(self) -> dict[Any, str]: ...
    @property
    def why(self) -> dict[Any, str]: ...
    @property
    def tallies(self) -> dict[tuple[int, int], tuple[Any, str]]: ...
    @property
    def tunnels(self) -> dict[frozenset[str], str]: ...
    @property
    def apps(self) -> dict[Any, str]:
        """A flow's protocol counts as items -> its app_protocol's and apps' JSON up to "unverified":."""
    @property
    def evidence_head(self) -> dict[Any, str]:
        """(protocol, direction) -> the JSON of an evidence member up to its frame's input."""
    @property
    def heads(self) -> dict[str, str]: ...
    @property
    def details(self) -> dict[str, str]: ...
    @property
    def seconds(self) -> dict[int, str]:
        """A whole second -> iso's text of it (what is kept of them; ``second`` adds)."""
    @property
    def no_apps(self) -> str:
        """The app members of a flow without application evidence."""

    # Given what ``texts`` was given: the verdicts (Any here, the parts' own type there) and flows.
    def host(self, h: Any) -> tuple[Any, str, str]: ...
    def kind(self, v: Any) -> str: ...
    def outcome(self, f: Flow, key: Any) -> str: ...
    def reason(self, v: Any, key: Any) -> str: ...
    def reason_text(self, text: str) -> str: ...
    def tally(self, f: Flow) -> str: ...
    def tunnel(self, tunnels: frozenset[str]) -> str: ...
    def second(self, sec: int) -> str: ...
    def ts(self, t: float) -> str: ...


_DIGITS: Final[list[str]] = [f"{i:03d}" for i in range(1000)]
"""0..999 as three digits: a timestamp's microseconds are two of them. Every operand below stays a
machine integer where compiled (``sec * 1_000_000`` would not: from 2**30 on, a product is computed as a
Python int), and no digit string is made per timestamp."""


def _ts(t: float, seconds: dict[int, str], parts: Parts) -> str:
    if 0.0 <= t < TS_FAST:
        us = round(t * 1_000_000)
        sec = us // 1_000_000
        text = seconds.get(sec)
        if text is None:
            text = parts.second(sec)
        frac = us % 1_000_000
        return f'"{text}.{_DIGITS[frac // 1000]}{_DIGITS[frac % 1000]}Z"'
    return parts.ts(t)


def plain(text: str, limit: int) -> bool:
    """Whether ``text`` is its own bounded, cleaned text and JSON string body: printable ASCII (shown as
    it is), at most ``limit`` characters, without quotes or backslashes (escaped in JSON)."""
    return len(text) <= limit and text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _head(head: str, heads: dict[str, str]) -> str:
    """The JSON of a first bytes' text (most are hex: written as they are, not looked up)."""
    key = head[:HEAD_KEY]
    if plain(key, HEAD_CHARS):
        return f'"{key}"'
    return heads[key]


def _evidence(evidence: dict[str, AppEvidence] | None, ev_head: dict[Any, str], heads: dict[str, str],
              details: dict[str, str]) -> str:
    """A flow's app_evidence member's JSON, its comma before it and the flow's closing brace after it.
    (The evidence typed: a named tuple's fields are then read by index where compiled, not looked up
    through its class.)"""
    if not evidence:
        return NO_APP_EVIDENCE
    if len(evidence) == 1:
        for name, e in evidence.items():
            frame = e.frame
            return (f',"app_evidence":{{{ev_head[(name, e.direction)]}{frame[0]},"frame":{frame[1]}}},'
                    f'"head":{_head(e.head, heads)},"detail":{details[e.detail]}}}}}}}')
    members = []
    for name, e in sorted(evidence.items()):
        frame = e.frame
        members.append(f'{ev_head[(name, e.direction)]}{frame[0]},"frame":{frame[1]}}},'
                       f'"head":{_head(e.head, heads)},"detail":{details[e.detail]}}}')
    return ',"app_evidence":{' + ",".join(members) + "}}"


def texts(verdicts: Sequence[Verdict], parts: Parts) -> list[str]:
    """Each verdict's flow as JSON text, in order."""
    js, hosts, kinds, outcomes, whys = parts.js, parts.hosts, parts.kinds, parts.outcomes, parts.why
    tallies, tunnel_texts, apps_texts, seconds = parts.tallies, parts.tunnels, parts.apps, parts.seconds
    ev_head, heads, details, no_apps = parts.evidence_head, parts.heads, parts.details, parts.no_apps
    out: list[str] = []
    for v in verdicts:
        # The build's Flow where this module is compiled (its fields then read in C).
        f: Flow = cast(Any, v.flow)
        k = f.key  # its items by index: as a tuple's, in C (by name, through the NamedTuple's class)
        h = v.initiator
        a = hosts.get(id(h))
        if a is None:
            a = parts.host(h)
        h = v.responder
        b = hosts.get(id(h))
        if b is None:
            b = parts.host(h)
        kind = kinds.get((v.classification, v.failing))
        if kind is None:
            kind = parts.kind(v)
        refusals = f.refusals
        okey = (f.outcome, tuple(refusals.items()) if refusals else None)
        outcome = outcomes.get(okey)
        if outcome is None:
            outcome = parts.outcome(f, okey)
        wkey = (v.rule_ids, v.reverse_rule_ids, v.layers, v.reason)
        why = whys.get(wkey)
        if why is None:
            why = parts.reason(v, wkey)
        # The reason's text apart: many name a host ("initiator 10.1.2.3 holds no role ...").
        text = v.reason_text
        if not text:
            why_text = "null"
        elif plain(text, REASON_CHARS):
            why_text = f'"{text}"'
        else:
            why_text = parts.reason_text(text)
        states = f.conn_states
        tally = tallies.get((id(f.direction_evidence), id(states)))
        tally_text = tally[1] if tally is not None else parts.tally(f)
        tunnels = f.tunnels
        if tunnels:
            tunnel_text = tunnel_texts.get(tunnels)
            if tunnel_text is None:
                tunnel_text = parts.tunnel(tunnels)
        else:
            tunnel_text = "[]"
        connections = f.connections
        apps = f.apps
        evidence = f.app_evidence
        if apps:
            apps_text = apps_texts[tuple(apps.items())]
            unverified = connections - sum(apps.values())
        else:
            apps_text = apps_texts[()] if evidence else no_apps
            unverified = connections
        orig_pkts, resp_pkts, orig_bytes, resp_bytes = f.orig_pkts, f.resp_pkts, f.orig_bytes, f.resp_bytes
        first = f.first_frame
        packets, size = orig_pkts + resp_pkts, orig_bytes + resp_bytes
        first_seen, last_seen = _ts(f.first_seen, seconds, parts), _ts(f.last_seen, seconds, parts)
        summarised = "true" if f.summarised else "false"
        # FlowJson's members in its order (an f-string: its parts joined in one step, where a format
        # string would be parsed again for every flow).
        out.append(
            f'{{"initiator":{js[k[0]]},"responder":{js[k[1]]},"protocol":{js[k[2]]},"port":{k[3]},'
            f'"initiator_roles":{a[1]},"responder_roles":{b[1]},"initiator_names":{a[2]},"responder_names":{b[2]},'
            f'{kind}{outcome}{why}{why_text},"connections":{connections},"established":{f.established},'
            f'"rejected":{f.rejected},"unanswered":{f.unanswered},"packets":{packets},"bytes":{size},'
            f'"orig_packets":{orig_pkts},"resp_packets":{resp_pkts},"orig_bytes":{orig_bytes},'
            f'"resp_bytes":{resp_bytes},"first_seen":{first_seen},"last_seen":{last_seen},'
            f'"first_frame":{{"input":{first[0]},"frame":{first[1]}}},{tally_text}"tunnels":{tunnel_text},'
            f'"summarised":{summarised},{apps_text}{unverified}{_evidence(evidence, ev_head, heads, details)}')
    return out
