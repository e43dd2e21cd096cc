"""Build the audit document (docs/json-schema.md): plain dicts and lists, JSON-ready.

The JSON, CSV and HTML renderers all start from this one document, so they cannot disagree.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

from auditor.capture.decode import CHECKSUM_POLICY
from auditor.model import Classification, RuleState

if TYPE_CHECKING:
    from auditor.capture import CaptureSet
    from auditor.catalog import Catalog
    from auditor.classify import FlowVerdict, HostView, RuleResult
    from auditor.conversations import ConversationResult
    from auditor.names import NameEvidence
    from auditor.roles import RoleMap

SCHEMA_VERSION = "1.0"
MAX_TEXT = 253
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def bounded(text: str, limit: int = MAX_TEXT) -> str:
    """Capture-derived text: no control characters, at most `limit` characters."""
    text = _CONTROL.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


_SECOND_TEXT: dict[int, str] = {}


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC with microseconds. The text of each whole second is cached: a report formats
    hundreds of thousands of timestamps, most within a few minutes of each other."""
    if ts is None or ts != ts or ts in (float("inf"), float("-inf")):
        return None
    try:
        us = round(ts * 1_000_000)
        sec, frac = divmod(us, 1_000_000)
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


def _host_parts(h: HostView, cache: HostParts) -> tuple[list[str], list[str]]:
    """(sorted roles, bounded names) of a host: computed once per address, shared by its flows."""
    hit = cache.get(h.address)
    if hit is None:
        hit = cache[h.address] = (sorted(h.roles), [bounded(n) for n in h.names[:5]])
    return hit


def _flow_dict(v: FlowVerdict, hosts: HostParts | None = None) -> dict[str, Any]:
    f = v.flow
    k = f.key
    cache: HostParts = {} if hosts is None else hosts
    a_roles, a_names = _host_parts(v.initiator, cache)
    b_roles, b_names = _host_parts(v.responder, cache)
    evidence = f.strongest_evidence
    return {
        "initiator": k.initiator,
        "responder": k.responder,
        "protocol": k.protocol,
        "port": k.port,
        "initiator_roles": a_roles,
        "responder_roles": b_roles,
        "initiator_names": a_names,
        "responder_names": b_names,
        "classification": str(v.classification),
        "failing": v.failing,
        "outcome": str(f.outcome),
        "rule_ids": list(v.rule_ids),
        "reason": v.reason,
        "reason_text": bounded(v.reason_text, 400) if v.reason_text else None,
        "connections": f.connections,
        "established": f.established,
        "rejected": f.rejected,
        "unanswered": f.unanswered,
        "packets": f.packets,
        "bytes": f.bytes,
        "orig_packets": f.orig_pkts,
        "resp_packets": f.resp_pkts,
        "orig_bytes": f.orig_bytes,
        "resp_bytes": f.resp_bytes,
        "first_seen": iso(f.first_seen),
        "last_seen": iso(f.last_seen),
        "first_frame": {"input": f.first_frame[0], "frame": f.first_frame[1]},
        "direction_evidence": evidence,
        "direction_inferred": evidence not in ("syn", "synack"),
        "conn_states": dict(sorted(f.conn_states.items())),
        "tunnels": sorted(bounded(t) for t in f.tunnels)[:10],
        "summarised": f.summarised,
    }


class FlowRows(Sequence[dict[str, Any]]):
    """The document's flows[], built one dict at a time when a renderer walks them.

    An audit can hold hundreds of thousands of flows; as dicts they would cost several times the
    memory of the verdicts they are made from, and renderers only ever read them in order."""

    def __init__(self, verdicts: Sequence[FlowVerdict]) -> None:
        self._verdicts = verdicts
        self._hosts: HostParts = {}
        """Per-address role and name lists, shared by the rows (rows are read-only)."""

    def __len__(self) -> int:
        return len(self._verdicts)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [_flow_dict(v, self._hosts) for v in self._verdicts[i]]
        return _flow_dict(self._verdicts[i], self._hosts)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        hosts = self._hosts
        return (_flow_dict(v, hosts) for v in self._verdicts)

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
        "status": str(r.state),
        "flows": r.flows,
        "hosts_lacking": list(r.hosts_lacking),
    }


def build_document(*, version: str, started: _dt.datetime, finished: _dt.datetime, request_command: str,
                   engine: str, catalog: Catalog, roles: RoleMap, capture: CaptureSet,
                   conv: ConversationResult, names: NameEvidence, verdicts: Sequence[FlowVerdict],
                   rule_results: Sequence[RuleResult], resolver: Callable[[str], HostView],
                   vantage: Iterable[str], vantage_source: str, extra_rules: Sequence[str]) -> dict[str, Any]:
    flows = FlowRows(verdicts)
    rules = [_rule_dict(r) for r in rule_results]

    hosts: dict[str, dict[str, Any]] = {}
    for v in verdicts:
        for hv in (v.initiator, v.responder):
            if hv.address == "*" or hv.address in hosts or not (hv.roles or hv.names):
                continue
            obs = names.names_for(hv.address)[:10]
            hosts[hv.address] = {
                "address": hv.address,
                "roles": sorted(hv.roles),
                "names": [{"name": bounded(o.name), "source": o.source, "input": o.input_index,
                           "frame": o.frame} for o in obs],
            }

    counts_by_role: dict[str, Counter[str]] = {role: Counter() for role in roles.roles}
    for v in verdicts:
        if v.classification == Classification.UNMAPPED:
            continue
        kind = "unexpected" if v.classification == Classification.UNEXPECTED else (
            "failing" if v.failing else "expected")
        for role in v.initiator.roles | v.responder.roles:
            c = counts_by_role.get(role)
            if c is not None:
                c[kind] += 1
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
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "pcap-audit", "version": version},
        "run": {"started": _iso_dt(started), "finished": _iso_dt(finished),
                "command_line": request_command, "engine": engine},
        "catalog": {
            "digest": catalog.digest,
            "rules": len(catalog.rules),
            "site_rule_files": list(extra_rules),
            "products_without_port_data": [
                {"product": s.product, "link": s.link} for s in catalog.products_without_port_data()
            ],
        },
        "roles_file": {"path": roles.path, "digest": roles.digest},
        "vantage": {"hosts": sorted(vantage), "source": vantage_source},
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
        "summary": {
            "packets": cstats.packets,
            "connections": sum(v.flow.connections for v in verdicts),
            "flows": len(flows),
            "expected": classes.get("expected", 0),
            "expected_failing": sum(1 for v in verdicts if v.failing),
            "unexpected": classes.get("unexpected", 0),
            "unmapped": classes.get("unmapped", 0),
            "rules": {s.value: rule_counts.get(s.value, 0) for s in RuleState},
        },
    }
