"""Build the typed audit document (report/model.py, docs/json-schema.md) from an audit's results, its
flows[] as ``FlowRows`` made from the verdicts as read (their JSON text: report/verdict_json.py).

The JSON, CSV, Parquet and HTML renderers all take this one document, so they cannot disagree.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, overload

from auditor.apps import UNKNOWN, AppEvidence
from auditor.capture.decode import CHECKSUM_POLICY
from auditor.classify import REASON_MISMATCH
from auditor.criteria import criteria_record
from auditor.flow import Flow
from auditor.model import HEAD_CHARS, HEAD_KEY, REASON_CHARS, Classification, RuleState
from auditor.refusal import RefusedBy, refused_by
from auditor.report.jsondata import FlowJson, plain
from auditor.report.model import (
    SCHEMA_VERSION,
    Alternative,
    AppEvidenceRow,
    AuditDocument,
    CatalogInfo,
    Citation,
    Criteria,
    Feature,
    FlowRow,
    FrameRef,
    HostName,
    HostRow,
    InputInfo,
    NotAudited,
    ProductLink,
    RoleCounts,
    RoleRow,
    RolesFile,
    RolesWarning,
    RuleRow,
    Run,
    SourceInfo,
    Summary,
    Tool,
    Vantage,
)

if TYPE_CHECKING:
    from auditor.capture import CaptureSet
    from auditor.catalog import Catalog, SourceDocument
    from auditor.classify import FlowVerdict, HostView, RuleResult
    from auditor.conversations import ConversationResult
    from auditor.names import NameEvidence
    from auditor.report.verdict_json import _JsonParts
    from auditor.roles import RoleMap
    from auditor.roles_lint import RoleWarning

__all__ = ["SCHEMA_VERSION", "FlowRows", "bounded", "build_document", "iso", "top_findings"]

MAX_TEXT = 253
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HIDDEN = frozenset({"Cf", "Cs", "Co", "Cn"})
"""Unicode categories shown as ``\\uXXXX`` text, as the HTML report's safe_text shows them: format
characters (bidi overrides and isolates such as U+202E, zero-width spaces and joiners, U+FEFF) hide
or reorder text in a spreadsheet or a JSON viewer; surrogates, private-use and unassigned code points
show as nothing dependable."""


def _show_hidden(ch: str) -> str:
    return f"\\u{ord(ch):04x}" if unicodedata.category(ch) in _HIDDEN else ch


def bounded(text: str, limit: int = MAX_TEXT) -> str:
    """Capture-derived text: control characters as U+FFFD, characters that hide or reorder text as
    ``\\u202e``-style escapes (what the HTML report shows too), at most `limit` characters."""
    if not (text.isascii() and text.isprintable()):  # most texts: nothing to clean (two checks in C)
        text = _CONTROL.sub("\ufffd", text)
        if not text.isascii():
            text = "".join(ch if ch < "\xa0" else _show_hidden(ch) for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


_SECOND_TEXT: dict[int, str] = {}
_INF = float("inf")


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC with microseconds. The text of each whole second is cached: a report formats
    hundreds of thousands of timestamps, most within a few minutes of each other."""
    if ts is None or not -_INF < ts < _INF:  # None, NaN (every comparison is false) or infinite
        return None
    try:
        sec, frac = divmod(round(ts * 1_000_000), 1_000_000)
        return f"{_SECOND_TEXT.get(sec) or _second_text(sec)}.{frac:06d}Z"
    except (OverflowError, OSError, ValueError):
        return None


def _second_text(sec: int) -> str:
    """iso's text of a whole second, kept."""
    if len(_SECOND_TEXT) > 100_000:
        _SECOND_TEXT.clear()
    text = _SECOND_TEXT[sec] = _dt.datetime.fromtimestamp(sec, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text


def _iso_dt(d: _dt.datetime) -> str:
    return d.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


HostParts = dict[tuple[frozenset[str], tuple[str, ...]], tuple[tuple[str, ...], tuple[str, ...]]]


def _host_parts(h: HostView, cache: HostParts) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sorted roles, bounded names) of a host: computed once per distinct (roles, names), shared by
    every flow of every host that has them (most hosts of a many-host audit have no name and one
    of a few role sets: one pair for all of them, not one per address)."""
    key = (h.roles, h.names)
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = (tuple(sorted(h.roles)), tuple(bounded(n) for n in h.names[:5]))
    return hit


class _Shared:
    """What the rows of one audit share (rows are read-only): the hosts' role and name tuples,
    and the bounded text of values that many flows repeat."""

    def __init__(self, host_ttls: dict[str, int] | None) -> None:
        self.hosts: HostParts = {}
        self.reason_text: dict[str, str] = {}
        self.states: dict[tuple[tuple[str, int], ...], Mapping[str, int]] = {}
        self.tunnels: dict[frozenset[str], tuple[str, ...]] = {}
        self.heads: dict[str, str] = {}
        self.raw_states: dict[tuple[tuple[str, int], ...], Mapping[str, int]] = {}
        self.raw_apps: dict[tuple[tuple[str, int], ...], Mapping[str, int]] = {}
        self.details: dict[str, str] = {}
        self.host_ttls: dict[str, int] = host_ttls or {}
        """The run's responder TTLs (ConversationResult.host_ttls), which refused_by judges RSTs by."""

    def reason(self, text: str) -> str:
        hit = self.reason_text.get(text)
        if hit is None:
            if len(self.reason_text) > _MEMO_LIMIT:
                self.reason_text.clear()
            hit = self.reason_text[text] = bounded(text, REASON_CHARS)
        return hit

    def conn_states(self, states: Mapping[str, int]) -> Mapping[str, int]:
        """A flow's conn_state tally, sorted by state: shared by equal tallies (looked up by the
        tally as it is, sorted only when new)."""
        raw = tuple(states.items())
        hit = self.raw_states.get(raw)
        if hit is None:
            key = tuple(sorted(raw))
            hit = self.states.get(key)
            if hit is None:
                if len(self.states) > _MEMO_LIMIT:
                    self.states.clear()
                hit = self.states[key] = dict(key)
            if len(self.raw_states) > _MEMO_LIMIT:
                self.raw_states.clear()
            self.raw_states[raw] = hit
        return hit

    def apps(self, apps: Mapping[str, int]) -> Mapping[str, int]:
        """A flow's protocol counts, most connections first (ties by name): shared by equal tallies.
        Its first name is the flow's app_protocol."""
        raw = tuple(apps.items())
        hit = self.raw_apps.get(raw)
        if hit is None:
            key = tuple(sorted(raw, key=lambda kv: (-kv[1], kv[0])))
            hit = self.states.get(key)
            if hit is None:
                if len(self.states) > _MEMO_LIMIT:
                    self.states.clear()
                hit = self.states[key] = dict(key)
            if len(self.raw_apps) > _MEMO_LIMIT:
                self.raw_apps.clear()
            self.raw_apps[raw] = hit
        return hit

    def evidence(self, evidence: Mapping[str, AppEvidence]) -> Mapping[str, AppEvidenceRow]:
        """A flow's application-protocol evidence as the document's rows, by protocol name (the
        bytes' summary bounded: it came from the capture). The bounded texts are made once each:
        flows repeat a few first bytes and banners."""
        heads, details = self.heads, self.details
        out = {}
        for name, e in sorted(evidence.items()):
            key = e.head[:HEAD_KEY]
            head = heads.get(key)
            if head is None:
                if len(heads) > _MEMO_LIMIT:
                    heads.clear()
                head = heads[key] = bounded(key, HEAD_CHARS)
            detail = details.get(e.detail)
            if detail is None:
                if len(details) > _MEMO_LIMIT:
                    details.clear()
                detail = details[e.detail] = bounded(e.detail, 80)
            out[name] = AppEvidenceRow(e.direction, FrameRef(e.frame[0], e.frame[1]), head, detail)
        return out

    def tunnel_list(self, tunnels: frozenset[str]) -> tuple[str, ...]:
        hit = self.tunnels.get(tunnels)
        if hit is None:
            hit = self.tunnels[tunnels] = tuple(sorted(bounded(t) for t in tunnels)[:10])
        return hit


_MEMO_LIMIT = 1 << 16
_NO_STATES: Mapping[str, int] = {}


def reason_text(v: FlowVerdict, shared: _Shared) -> str | None:
    """A verdict's row's reason_text."""
    return shared.reason(v.reason_text) if v.reason_text else None


def flow_row(v: FlowVerdict, shared: _Shared) -> FlowRow:
    """A verdict as its flows[] entry."""
    f = v.flow
    k = f.key
    hosts = shared.hosts
    a, b = v.initiator, v.responder
    a_roles, a_names = hosts.get((a.roles, a.names)) or _host_parts(a, hosts)
    b_roles, b_names = hosts.get((b.roles, b.names)) or _host_parts(b, hosts)
    evidence = f.strongest_evidence
    apps, app_protocol, app_evidence = service_fields(f, shared)
    return FlowRow(
        k.initiator, k.responder, k.protocol, k.port, a_roles, b_roles, a_names, b_names,
        str(v.classification), v.failing, str(f.outcome), flow_refusals(f, shared),
        tuple(v.rule_ids), tuple(v.reverse_rule_ids), tuple(v.layers), v.reason,
        reason_text(v, shared),
        f.connections, f.established, f.rejected, f.unanswered, f.packets, f.bytes,
        f.orig_pkts, f.resp_pkts, f.orig_bytes, f.resp_bytes, iso(f.first_seen), iso(f.last_seen),
        FrameRef(f.first_frame[0], f.first_frame[1]),
        evidence, evidence not in ("syn", "synack"),
        flow_states(f, shared),
        shared.tunnel_list(f.tunnels) if f.tunnels else (),
        f.summarised,
        app_protocol, apps, f.unverified, app_evidence,
    )


def flow_refusals(f: Flow, shared: _Shared) -> tuple[RefusedBy, ...]:
    """A flow's row's refused_by."""
    return tuple(refused_by(f, shared.host_ttls)) if f.refusals else ()


def flow_states(f: Flow, shared: _Shared) -> Mapping[str, int]:
    """A flow's row's conn_states."""
    return shared.conn_states(f.conn_states) if f.conn_states else _NO_STATES


class OutcomeParts(NamedTuple):
    """What a flow's outcome and connections cells are made of, as its row holds them."""

    outcome: str
    refused_by: tuple[RefusedBy, ...]
    connections: int
    established: int
    rejected: int
    unanswered: int
    conn_states: Mapping[str, int]


def service_fields(f: Flow, shared: _Shared) -> tuple[Mapping[str, int], str, Mapping[str, AppEvidenceRow]]:
    """A flow's row's (apps, app_protocol, app_evidence)."""
    apps = shared.apps(f.apps) if f.apps else _NO_STATES
    return (apps, next(iter(apps)) if apps else UNKNOWN,
            shared.evidence(f.app_evidence) if f.app_evidence else _NO_EVIDENCE)


_NO_EVIDENCE: Mapping[str, AppEvidenceRow] = {}


class FlowRows(Sequence[FlowRow]):
    """The document's flows[], each FlowRow built from its verdict when a renderer reads it.

    An audit can hold hundreds of thousands of flows; as rows they would cost several times the
    memory of the verdicts they are made from, and renderers only ever read them in order."""

    def __init__(self, verdicts: Sequence[FlowVerdict], host_ttls: dict[str, int] | None = None,
                 findings: tuple[list[tuple[int, int]], list[tuple[int, int]]] | None = None) -> None:
        """``findings``: what ``findings`` gives, when the caller has counted the verdicts (_Tally)."""
        self._verdicts = verdicts
        self._shared = _Shared(host_ttls)
        self._json: _JsonParts | None = None
        self._findings = findings

    def __len__(self) -> int:
        return len(self._verdicts)

    @property
    def verdicts(self) -> Sequence[FlowVerdict]:
        """What the rows are made from, in order (the HTML report reads its columns from them)."""
        return self._verdicts

    def row(self, v: FlowVerdict) -> FlowRow:
        """One verdict's row, as reading the sequence gives it."""
        return flow_row(v, self._shared)

    def why(self, v: FlowVerdict) -> tuple[tuple[str, ...], tuple[str, ...], str | None, str | None]:
        """(rule_ids, reverse_rule_ids, reason, reason_text) of a verdict's row."""
        return tuple(v.rule_ids), tuple(v.reverse_rule_ids), v.reason, reason_text(v, self._shared)

    def service(self, v: FlowVerdict) -> tuple[str, int, Mapping[str, int], str, Mapping[str, AppEvidenceRow],
                                               int, str | None]:
        """(protocol, port, apps, app_protocol, app_evidence, unverified, reason) of a verdict's row."""
        f = v.flow
        apps, app_protocol, evidence = service_fields(f, self._shared)
        return f.key.protocol, f.key.port, apps, app_protocol, evidence, f.unverified, v.reason

    def outcome_parts(self, v: FlowVerdict) -> OutcomeParts:
        """What a verdict's row's outcome and connections cells are made of, without the row."""
        f = v.flow
        return OutcomeParts(str(f.outcome), flow_refusals(f, self._shared), f.connections, f.established,
                            f.rejected, f.unanswered, flow_states(f, self._shared))

    def host_parts(self, h: HostView) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(roles, names) of a host as its flows' rows hold them."""
        return _host_parts(h, self._shared.hosts)

    @overload
    def __getitem__(self, i: int) -> FlowRow: ...

    @overload
    def __getitem__(self, i: slice) -> list[FlowRow]: ...

    def __getitem__(self, i: int | slice) -> FlowRow | list[FlowRow]:
        if isinstance(i, slice):
            return [flow_row(v, self._shared) for v in self._verdicts[i]]
        return flow_row(self._verdicts[i], self._shared)

    def __iter__(self) -> Iterator[FlowRow]:
        shared = self._shared
        return (flow_row(v, shared) for v in self._verdicts)

    def json_texts(self, text: FlowJson, start: int, end: int) -> list[str]:
        """Rows start..end as JSON text, exactly what ``text(row)`` gives of each (FlowJson), written
        from the verdicts without building the rows: each part that many flows repeat (a host's roles
        and names, the verdict's rules and reason, the tallies) is written once and looked up by what
        it is made of."""
        parts = self._json
        if parts is None:
            from auditor.report.verdict_json import _JsonParts  # it imports this module

            parts = self._json = _JsonParts(self._shared, text)
        return parts.texts(self._verdicts[start:end])

    def findings(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The failing rows and the unexpected rows, each as (-its packets, its index), as the rows
        would give them, without the rows."""
        if self._findings is None:
            tally = _Tally(self._verdicts)
            self._findings = tally.failing_at, tally.unexpected_at
        return self._findings


def top_findings(flows: Sequence[FlowRow], n: int) -> dict[str, tuple[int, list[FlowRow]]]:
    """``failing`` and ``unexpected``: how many flows are so, and the ``n`` of them with the most
    packets (ties in document order), built as rows; no other flow's row is built."""
    if isinstance(flows, FlowRows):
        failing, unexpected = flows.findings()
    else:
        failing = [(-r.packets, i) for i, r in enumerate(flows) if r.failing]
        unexpected = [(-r.packets, i) for i, r in enumerate(flows) if r.classification == "unexpected"]
    return {kind: (len(found), [flows[i] for _, i in heapq.nsmallest(n, found)])
            for kind, found in (("failing", failing), ("unexpected", unexpected))}


def _rule_row(r: RuleResult) -> RuleRow:
    rule = r.rule
    c = rule.citation
    return RuleRow(
        id=rule.id, product=rule.product, source=rule.source, destination=rule.destination,
        protocols=tuple(rule.protocols), ports=rule.ports_text, description=rule.description, note=rule.note,
        one_way=rule.one_way, bidirectional=rule.bidirectional, layer=rule.layer, feature=rule.feature or None,
        citation=None if c is None else Citation(c.title, c.section, c.url),
        uncited=rule.uncited or None, group=r.group, status=str(r.state), covered_by=tuple(r.covered_by),
        flows=r.flows, hosts_lacking=tuple(r.hosts_lacking), apps=tuple(rule.apps), mismatched_flows=r.mismatched,
    )


def source_info(s: SourceDocument | None) -> SourceInfo | None:
    """``catalog.source``: the document the catalog transcribes; ``revision`` None when the copy
    carries none."""
    if s is None:
        return None
    return SourceInfo(s.title, s.publisher, s.url or None, s.revision, s.reviewed)


class _Tally:
    """What the document counts of the verdicts, in one pass over them (each flow is read once: an
    audit's flows lie scattered in memory, and a pass over them costs more than its arithmetic)."""

    def __init__(self, verdicts: Sequence[FlowVerdict]) -> None:
        expected, unexpected = Classification.EXPECTED, Classification.UNEXPECTED
        views: dict[int, HostView] = {}
        """Each host view once (flows share them), in the order the verdicts first show them."""
        by_roles: dict[tuple[frozenset[str], frozenset[str], str], int] = {}
        """Flows by (initiator roles, responder roles, kind) of the judged ones: a few hundred keys."""
        failing_at: list[tuple[int, int]] = []
        unexpected_at: list[tuple[int, int]] = []
        """FlowRows.findings: (-its packets, its index)."""
        connections = n_expected = verified = mismatched = 0
        for i, v in enumerate(verdicts):
            f = v.flow
            a, b = v.initiator, v.responder
            views.setdefault(id(a), a)
            views.setdefault(id(b), b)
            connections += f.connections
            if v.failing:
                failing_at.append((-f.orig_pkts - f.resp_pkts, i))
            if v.reason == REASON_MISMATCH:
                mismatched += 1
            c = v.classification
            if c == expected:
                n_expected += 1
                if f.apps:
                    verified += 1
                kind = "failing" if v.failing else "expected"
            elif c == unexpected:
                unexpected_at.append((-f.orig_pkts - f.resp_pkts, i))
                kind = "unexpected"
            else:
                continue
            key = (a.roles, b.roles, kind)
            by_roles[key] = by_roles.get(key, 0) + 1
        self.views = list(views.values())
        self.by_roles = by_roles
        self.failing_at, self.unexpected_at = failing_at, unexpected_at
        self.connections, self.expected, self.verified, self.mismatched = connections, n_expected, verified, mismatched


def build_document(*, version: str, started: _dt.datetime, finished: _dt.datetime, request_command: str,
                   engine: str, catalog: Catalog, roles: RoleMap, capture: CaptureSet,
                   conv: ConversationResult, names: NameEvidence, verdicts: Sequence[FlowVerdict],
                   rule_results: Sequence[RuleResult], resolver: Callable[[str], HostView],
                   vantage: Iterable[str], vantage_source: str, extra_rules: Sequence[str],
                   features: Mapping[str, str] | None = None,
                   warnings: Sequence[RoleWarning] = (), fail_on: Iterable[str] = ()) -> AuditDocument:
    """The audit document. ``fail_on``: the --fail-on kinds, judged into ``criteria``."""
    tally = _Tally(verdicts)
    flows = FlowRows(verdicts, conv.host_ttls, (tally.failing_at, tally.unexpected_at))
    rules = tuple(_rule_row(r) for r in rule_results)

    hosts: dict[str, HostRow] = {}
    sorted_roles: dict[frozenset[str], tuple[str, ...]] = {}  # one tuple per role set, not per host
    for hv in tally.views:
        if hv.address in hosts or hv.address == "*" or not (hv.roles or hv.names):
            continue
        obs = names.names_for(hv.address)[:10]
        role_list = sorted_roles.get(hv.roles)
        if role_list is None:
            role_list = sorted_roles[hv.roles] = tuple(sorted(hv.roles))
        hosts[hv.address] = HostRow(
            hv.address, role_list,
            tuple(HostName(bounded(o.name), o.source, o.input_index, o.frame) for o in obs),
        )

    counts_by_role: dict[str, Counter[str]] = {role: Counter() for role in roles.roles}
    for (a_roles, b_roles, kind), n in tally.by_roles.items():
        for role in a_roles | b_roles:
            c = counts_by_role.get(role)
            if c is not None:
                c[kind] += n
    for rr in rules:
        if rr.status == RuleState.MISSING:
            for role in {rr.source, rr.destination}:
                if role in counts_by_role:
                    counts_by_role[role]["missing"] += 1
    role_rows = []
    for role in roles.roles:
        members = tuple(sorted({h for h, d in hosts.items() if role in d.roles}))
        counts = counts_by_role[role]
        role_rows.append(RoleRow(role, members, tuple(e.text for e in roles.entries if e.role == role),
                                 RoleCounts(counts.get("expected", 0), counts.get("failing", 0),
                                            counts.get("unexpected", 0), counts.get("missing", 0))))

    rstats = capture.stats
    cstats = conv.stats
    rule_counts = Counter(rr.status for rr in rules)
    inputs = tuple(InputInfo(
        info.path, info.sha256, info.size, info.packets, iso(info.first_ts), iso(info.last_ts),
        dict(info.link_types), info.format, info.compression, info.truncated,
        tuple(bounded(w, 400) for w in info.warnings),
    ) for info in capture.inputs)
    summary = Summary(
        packets=cstats.packets,
        connections=tally.connections,
        flows=len(flows),
        expected=tally.expected,
        expected_failing=len(tally.failing_at),
        unexpected=len(tally.unexpected_at),
        unmapped=len(verdicts) - tally.expected - len(tally.unexpected_at),
        rules={s.value: rule_counts.get(s.value, 0) for s in RuleState},
        verified=tally.verified,
        unverified=tally.expected - tally.verified,
        mismatched=tally.mismatched,
    )
    crit = criteria_record(plain(summary), fail_on)
    return AuditDocument(
        schema_version=SCHEMA_VERSION,
        tool=Tool("pcap-audit", version),
        run=Run(_iso_dt(started), _iso_dt(finished), request_command, engine),
        criteria=Criteria(tuple(crit["fail_on"]), crit["result"], tuple(crit["hits"])),
        catalog=CatalogInfo(
            source=source_info(catalog.source),
            digest=catalog.digest,
            rules=len(catalog.rules),
            site_rule_files=tuple(extra_rules),
            layers=tuple(catalog.layers),
            rules_by_layer=dict(Counter(r.layer for r in catalog.rules)),
            alternatives=tuple(Alternative(g.id, g.title, tuple(g.members)) for g in catalog.alternatives),
            products_without_port_data=tuple(ProductLink(s.product, s.link)
                                             for s in catalog.products_without_port_data()),
        ),
        roles_file=RolesFile(roles.path, roles.digest),
        vantage=Vantage(tuple(sorted(vantage)), vantage_source),
        features=tuple(Feature(fid, catalog.features[fid].title if fid in catalog.features else fid,
                               bounded(how, 200)) for fid, how in sorted((features or {}).items())),
        warnings=tuple(RolesWarning(str(w.code), w.line, w.entry, w.message) for w in warnings),
        inputs=inputs,
        not_audited=NotAudited(
            frames=rstats.frames,
            records=rstats.records,
            non_ip=rstats.non_ip,
            malformed=dict(sorted(rstats.malformed.items())),
            unsupported=dict(sorted(rstats.unsupported.items())),
            other_protocols=dict(sorted(cstats.other_protocols.items())),
            bad_checksums=cstats.bad_checksums,
            checksums_verified=CHECKSUM_POLICY if capture.verify_checksums else "none",
            summarised_flows=cstats.summarised_flows,
            summarised_connections=cstats.summarised_connections,
            summarised_packets=cstats.summarised_packets,
            tunnels=dict(sorted(rstats.tunnels.items())),
            evicted_live=cstats.evicted_live,
            names={k: names.stats[k] for k in ("names_kept", "names_dropped", "names_refused", "parse_errors")},
            examples={k: FrameRef(v[0], v[1]) for k, v in sorted(rstats.examples.items())},
        ),
        hosts=tuple(hosts[a] for a in sorted(hosts)),
        flows=flows,
        rules=rules,
        roles=tuple(role_rows),
        summary=summary,
    )
