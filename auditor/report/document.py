"""Build the audit document (docs/json-schema.md): plain dicts and lists, JSON-ready.

The JSON, CSV and HTML renderers all start from this one document, so they cannot disagree.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

from auditor.capture.decode import CHECKSUM_POLICY
from auditor.catalog import citation_record
from auditor.criteria import criteria_record
from auditor.model import Classification, Flow, RuleState
from auditor.refusal import refused_by

if TYPE_CHECKING:
    from auditor.capture import CaptureSet
    from auditor.catalog import Catalog, SourceDocument
    from auditor.classify import FlowVerdict, HostView, RuleResult
    from auditor.conversations import ConversationResult
    from auditor.names import NameEvidence
    from auditor.roles import RoleMap

SCHEMA_VERSION = "2.1"
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
        head = _SECOND_TEXT.get(sec)
        if head is None:
            if len(_SECOND_TEXT) > 100_000:
                _SECOND_TEXT.clear()
            head = _SECOND_TEXT[sec] = _dt.datetime.fromtimestamp(sec, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{head}.{frac:06d}Z"
    except (OverflowError, OSError, ValueError):
        return None


def _iso_dt(d: _dt.datetime) -> str:
    return d.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


HostParts = dict[str, tuple[list[str], list[str]]]
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
"""The JSON export's encoder (report/tabular.py uses the same settings); used here for row text."""
_MEMO_LIMIT = 1 << 16


def _host_parts(h: HostView, cache: HostParts) -> tuple[list[str], list[str]]:
    """(sorted roles, bounded names) of a host: computed once per address, shared by its flows."""
    hit = cache.get(h.address)
    if hit is None:
        hit = cache[h.address] = (sorted(h.roles), [bounded(n) for n in h.names[:5]])
    return hit


class _Memo(dict[Any, str]):
    """value -> make(value), computed once: a large audit repeats a few hundred reasons, rule lists
    and connection-state tallies in every flow. Bounded: past _MEMO_LIMIT values it starts over.
    Keys are strings, None, enum members and tuples of strings and ints, never bare numbers (as dict
    keys 1, 1.0 and True are the same key)."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[Any], str]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: Any) -> str:
        if len(self) >= _MEMO_LIMIT:
            self.clear()
        text = self[key] = self._make(key)
        return text


def _reason_text(text: str) -> str:
    return bounded(text, 400)


def _tunnels(tunnels: frozenset[str]) -> list[str]:
    return sorted(bounded(t) for t in tunnels)[:10]


def _json_list(items: tuple[str, ...]) -> str:
    return _JSON(list(items))


def _json_object(items: tuple[tuple[str, int], ...]) -> str:
    return _JSON(dict(items))


def _json_tunnels(tunnels: frozenset[str]) -> str:
    return _JSON(_tunnels(tunnels))


class _Shared:
    """What the rows of one audit share (rows are read-only): each address's role and name lists,
    and the bounded or JSON text of values that many flows repeat."""

    def __init__(self) -> None:
        self.hosts: HostParts = {}
        self.host_json: dict[str, tuple[str, str]] = {}
        """address -> JSON text of (roles, names)."""
        self.reason_text = _Memo(_reason_text)
        self.json = _Memo(_JSON)
        """str, None or str-enum value -> its JSON text."""
        self.json_list = _Memo(_json_list)
        self.states = _Memo(_json_object)
        """sorted (conn_state, count) pairs -> JSON object text."""
        self.tunnels = _Memo(_json_tunnels)
        self.host_ttls: dict[str, int] = {}
        """The run's responder TTLs (ConversationResult.host_ttls), which refused_by judges RSTs by."""

    def host_text(self, h: HostView) -> tuple[str, str]:
        hit = self.host_json.get(h.address)
        if hit is None:
            roles, names = _host_parts(h, self.hosts)
            hit = self.host_json[h.address] = (_JSON(roles), _JSON(names))
        return hit


FLOW_KEYS = (
    "initiator", "responder", "protocol", "port", "initiator_roles", "responder_roles",
    "initiator_names", "responder_names", "classification", "failing", "outcome", "refused_by", "rule_ids",
    "reverse_rule_ids", "layers", "reason",
    "reason_text", "connections", "established", "rejected", "unanswered", "packets", "bytes",
    "orig_packets", "resp_packets", "orig_bytes", "resp_bytes", "first_seen", "last_seen", "first_frame",
    "direction_evidence", "direction_inferred", "conn_states", "tunnels", "summarised",
)
"""The members of a flows[] entry, in document order (docs/json-schema.md)."""


def _refused_by(f: Flow, shared: _Shared) -> list[dict[str, Any]]:
    """flows[].refused_by: who refused the flow's rejected connections (auditor/refusal.py)."""
    return [{"kind": e.kind, "address": e.address, "party": e.party, "icmp_type": e.icmp_type,
             "icmp_code": e.icmp_code, "ttl": e.ttl, "ttl_check": e.ttl_check, "text": e.text,
             "connections": e.connections} for e in refused_by(f, shared.host_ttls)]


def _flow_values(v: FlowVerdict, shared: _Shared) -> tuple[Any, ...]:
    """A flows[] entry's values in FLOW_KEYS order: the dict is these zipped with the keys, and the
    HTML report reads the tuple as it is (a tuple is cheaper to build than a dict)."""
    f = v.flow
    k = f.key
    hosts = shared.hosts
    a_roles, a_names = hosts.get(v.initiator.address) or _host_parts(v.initiator, hosts)
    b_roles, b_names = hosts.get(v.responder.address) or _host_parts(v.responder, hosts)
    evidence = f.strongest_evidence
    states = f.conn_states
    return (
        k.initiator, k.responder, k.protocol, k.port, a_roles, b_roles, a_names, b_names,
        str(v.classification), v.failing, str(f.outcome), _refused_by(f, shared) if f.refusals else [],
        list(v.rule_ids), list(v.reverse_rule_ids), list(v.layers), v.reason,
        shared.reason_text[v.reason_text] if v.reason_text else None,
        f.connections, f.established, f.rejected, f.unanswered, f.packets, f.bytes,
        f.orig_pkts, f.resp_pkts, f.orig_bytes, f.resp_bytes, iso(f.first_seen), iso(f.last_seen),
        {"input": f.first_frame[0], "frame": f.first_frame[1]},
        evidence, evidence not in ("syn", "synack"),
        dict(sorted(states.items())) if len(states) > 1 else dict(states),
        _tunnels(f.tunnels) if f.tunnels else [],
        f.summarised,
    )


def _flow_dict(v: FlowVerdict, shared: _Shared) -> dict[str, Any]:
    return dict(zip(FLOW_KEYS, _flow_values(v, shared), strict=True))


def _ts_json(text: str | None) -> str:
    # iso() text is digits, '-', ':', '.', 'T' and 'Z': nothing to escape.
    return "null" if text is None else f'"{text}"'


def _flow_json(v: FlowVerdict, shared: _Shared) -> str:
    """``_flow_dict(v)`` as JSON text, byte for byte what the JSON export's encoder makes of the dict
    (tests/test_report_stream.py compares them on every sample). Written directly because building a
    dict per flow only to encode it was most of the export's time; keep the two in step."""
    f = v.flow
    k = f.key
    a_roles, a_names = shared.host_text(v.initiator)
    b_roles, b_names = shared.host_text(v.responder)
    js = shared.json
    evidence = f.strongest_evidence
    states = f.conn_states
    return (
        f'{{"initiator":{js[k.initiator]},"responder":{js[k.responder]},"protocol":{js[k.protocol]},"port":{k.port:d},'
        f'"initiator_roles":{a_roles},"responder_roles":{b_roles},'
        f'"initiator_names":{a_names},"responder_names":{b_names},'
        f'"classification":{js[v.classification]},"failing":{"true" if v.failing else "false"},'
        f'"outcome":{js[f.outcome]},"refused_by":{_JSON(_refused_by(f, shared)) if f.refusals else "[]"},'
        f'"rule_ids":{shared.json_list[v.rule_ids]},'
        f'"reverse_rule_ids":{shared.json_list[v.reverse_rule_ids]},"layers":{shared.json_list[v.layers]},'
        f'"reason":{js[v.reason]},'
        f'"reason_text":{js[shared.reason_text[v.reason_text]] if v.reason_text else "null"},'
        f'"connections":{f.connections:d},"established":{f.established:d},"rejected":{f.rejected:d},'
        f'"unanswered":{f.unanswered:d},"packets":{f.packets:d},"bytes":{f.bytes:d},'
        f'"orig_packets":{f.orig_pkts:d},"resp_packets":{f.resp_pkts:d},'
        f'"orig_bytes":{f.orig_bytes:d},"resp_bytes":{f.resp_bytes:d},'
        f'"first_seen":{_ts_json(iso(f.first_seen))},"last_seen":{_ts_json(iso(f.last_seen))},'
        f'"first_frame":{{"input":{f.first_frame[0]:d},"frame":{f.first_frame[1]:d}}},'
        f'"direction_evidence":{js[evidence]},'
        f'"direction_inferred":{"false" if evidence in ("syn", "synack") else "true"},'
        f'"conn_states":{shared.states[tuple(sorted(states.items()))]},'
        f'"tunnels":{shared.tunnels[f.tunnels] if f.tunnels else "[]"},'
        f'"summarised":{"true" if f.summarised else "false"}}}'
    )


class FlowRows(Sequence[dict[str, Any]]):
    """The document's flows[], built one dict at a time when a renderer walks them.

    An audit can hold hundreds of thousands of flows; as dicts they would cost several times the
    memory of the verdicts they are made from, and renderers only ever read them in order."""

    def __init__(self, verdicts: Sequence[FlowVerdict], host_ttls: dict[str, int] | None = None) -> None:
        self._verdicts = verdicts
        self._shared = _Shared()
        if host_ttls is not None:
            self._shared.host_ttls = host_ttls

    def __len__(self) -> int:
        return len(self._verdicts)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [_flow_dict(v, self._shared) for v in self._verdicts[i]]
        return _flow_dict(self._verdicts[i], self._shared)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        shared = self._shared
        return (_flow_dict(v, shared) for v in self._verdicts)

    def values(self) -> Iterator[tuple[Any, ...]]:
        """The rows as tuples of their values in FLOW_KEYS order (what the dicts are made from)."""
        shared = self._shared
        return (_flow_values(v, shared) for v in self._verdicts)

    def iter_json(self, batch: int) -> Iterator[str]:
        """The rows as the items of a JSON array, ``batch`` rows a chunk: chunks joined by ","
        equal ``json.dumps(list(self), ensure_ascii=False, separators=(",", ":"))[1:-1]``."""
        shared = self._shared
        verdicts = self._verdicts
        for start in range(0, len(verdicts), batch):
            yield ",".join([_flow_json(v, shared) for v in verdicts[start:start + batch]])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


def _rule_dict(r: RuleResult) -> dict[str, Any]:
    rule = r.rule
    return {
        "id": rule.id,
        "product": rule.product,
        "source": rule.source,
        "destination": rule.destination,
        "protocols": list(rule.protocols),
        "ports": rule.ports_text,
        "description": rule.description,
        "note": rule.note,
        "one_way": rule.one_way,
        "bidirectional": rule.bidirectional,
        "layer": rule.layer,
        "feature": rule.feature or None,
        "citation": citation_record(rule.citation),
        "uncited": rule.uncited or None,
        "group": r.group,
        "status": str(r.state),
        "covered_by": list(r.covered_by),
        "flows": r.flows,
        "hosts_lacking": list(r.hosts_lacking),
    }


def source_record(s: SourceDocument | None) -> dict[str, Any] | None:
    """``catalog.source``: the document the catalog transcribes; ``revision`` null when the copy
    carries none."""
    if s is None:
        return None
    return {"title": s.title, "publisher": s.publisher, "url": s.url or None, "revision": s.revision,
            "reviewed": s.reviewed}


def build_document(*, version: str, started: _dt.datetime, finished: _dt.datetime, request_command: str,
                   engine: str, catalog: Catalog, roles: RoleMap, capture: CaptureSet,
                   conv: ConversationResult, names: NameEvidence, verdicts: Sequence[FlowVerdict],
                   rule_results: Sequence[RuleResult], resolver: Callable[[str], HostView],
                   vantage: Iterable[str], vantage_source: str, extra_rules: Sequence[str],
                   features: Mapping[str, str] | None = None,
                   warnings: Sequence[Mapping[str, Any]] = (), fail_on: Iterable[str] = ()) -> dict[str, Any]:
    """The audit document. ``fail_on``: the --fail-on kinds, judged into ``criteria``."""
    flows = FlowRows(verdicts, conv.host_ttls)
    rules = [_rule_dict(r) for r in rule_results]

    hosts: dict[str, dict[str, Any]] = {}
    for v in verdicts:
        for hv in (v.initiator, v.responder):
            if hv.address in hosts or hv.address == "*" or not (hv.roles or hv.names):
                continue
            obs = names.names_for(hv.address)[:10]
            hosts[hv.address] = {
                "address": hv.address,
                "roles": sorted(hv.roles),
                "names": [{"name": bounded(o.name), "source": o.source, "input": o.input_index,
                           "frame": o.frame} for o in obs],
            }

    counts_by_role: dict[str, Counter[str]] = {role: Counter() for role in roles.roles}
    # Flows tallied by (initiator roles, responder roles, kind) first: a few hundred distinct keys.
    by_roles: Counter[tuple[frozenset[str], frozenset[str], str]] = Counter(
        (v.initiator.roles, v.responder.roles,
         "unexpected" if v.classification == Classification.UNEXPECTED else
         "failing" if v.failing else "expected")
        for v in verdicts if v.classification != Classification.UNMAPPED)
    for (a_roles, b_roles, kind), n in by_roles.items():
        for role in a_roles | b_roles:
            c = counts_by_role.get(role)
            if c is not None:
                c[kind] += n
    for rd in rules:
        if rd["status"] == RuleState.MISSING:
            for role in {rd["source"], rd["destination"]}:
                if role in counts_by_role:
                    counts_by_role[role]["missing"] += 1
    role_rows = []
    for role in roles.roles:
        members = sorted({h for h, d in hosts.items() if role in d["roles"]})
        counts = counts_by_role[role]
        role_rows.append({"role": role, "hosts": members,
                          "entries": [e.text for e in roles.entries if e.role == role],
                          "counts": {k: counts.get(k, 0) for k in ("expected", "failing", "unexpected", "missing")}})

    rstats = capture.stats
    cstats = conv.stats
    classes = Counter(str(v.classification) for v in verdicts)
    rule_counts = Counter(rd["status"] for rd in rules)
    inputs = []
    for info in capture.inputs:
        inputs.append({
            "path": info.path, "sha256": info.sha256, "size": info.size, "packets": info.packets,
            "first_ts": iso(info.first_ts), "last_ts": iso(info.last_ts),
            "link_types": dict(info.link_types), "format": info.format, "compression": info.compression,
            "truncated": info.truncated, "warnings": [bounded(w, 400) for w in info.warnings],
        })
    summary = {
        "packets": cstats.packets,
        "connections": sum(v.flow.connections for v in verdicts),
        "flows": len(flows),
        "expected": classes.get("expected", 0),
        "expected_failing": sum(1 for v in verdicts if v.failing),
        "unexpected": classes.get("unexpected", 0),
        "unmapped": classes.get("unmapped", 0),
        "rules": {s.value: rule_counts.get(s.value, 0) for s in RuleState},
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "pcap-audit", "version": version},
        "run": {"started": _iso_dt(started), "finished": _iso_dt(finished),
                "command_line": request_command, "engine": engine},
        "criteria": criteria_record(summary, fail_on),
        "catalog": {
            "source": source_record(catalog.source),
            "digest": catalog.digest,
            "rules": len(catalog.rules),
            "site_rule_files": list(extra_rules),
            "layers": list(catalog.layers),
            "rules_by_layer": dict(Counter(r.layer for r in catalog.rules)),
            "alternatives": [{"id": g.id, "title": g.title, "members": list(g.members)} for g in catalog.alternatives],
            "products_without_port_data": [
                {"product": s.product, "link": s.link} for s in catalog.products_without_port_data()
            ],
        },
        "roles_file": {"path": roles.path, "digest": roles.digest},
        "vantage": {"hosts": sorted(vantage), "source": vantage_source},
        "features": [{"id": fid, "title": catalog.features[fid].title if fid in catalog.features else fid,
                      "how": bounded(how, 200)} for fid, how in sorted((features or {}).items())],
        "warnings": [dict(w) for w in warnings],
        "inputs": inputs,
        "not_audited": {
            "frames": rstats.frames,
            "records": rstats.records,
            "non_ip": rstats.non_ip,
            "malformed": dict(sorted(rstats.malformed.items())),
            "unsupported": dict(sorted(rstats.unsupported.items())),
            "other_protocols": dict(sorted(cstats.other_protocols.items())),
            "bad_checksums": cstats.bad_checksums,
            "checksums_verified": CHECKSUM_POLICY if capture.verify_checksums else "none",
            "summarised_flows": cstats.summarised_flows,
            "summarised_connections": cstats.summarised_connections,
            "summarised_packets": cstats.summarised_packets,
            "tunnels": dict(sorted(rstats.tunnels.items())),
            "evicted_live": cstats.evicted_live,
            "names": {k: names.stats[k] for k in ("names_kept", "names_dropped", "names_refused", "parse_errors")},
            "examples": {k: {"input": v[0], "frame": v[1]} for k, v in sorted(rstats.examples.items())},
        },
        "hosts": sorted(hosts.values(), key=lambda h: h["address"]),
        "flows": flows,
        "rules": rules,
        "roles": role_rows,
        "summary": summary,
    }
