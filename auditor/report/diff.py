"""Two audit documents (docs/json-schema.md) -> what changed between them (diff_render.py shows it).

A baseline audit (OLD) and today's (NEW) are compared by identity, not by position: a flow is its
(initiator, responder, protocol, port), a rule its id. A flow appeared, disappeared, or changed its
classification, outcome or application protocol; a rule changed its status, or is on one side only
(the catalog changed). Packet and byte counts differ between any two captures, so they are shown as
evidence, never reported as changes. Summarised flows (initiator "*") are aggregates and compare as
such. "New or worse" uses the audit's --fail-on words: an unexpected flow that was not unexpected, a
failing flow or rule that was not failing, a missing rule that was not missing.

Each side is first reduced to an ``AuditIndex`` (``index_audit``), so a caller can drop a large
document before reading the next. Strings come from captures and stay hostile: the result keeps them
bounded, and the renderers show them safely.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from auditor import __version__
from auditor.classify import REASON_MISMATCH
from auditor.criteria import FAIL_ON_KINDS
from auditor.errors import AuditorError

DIFF_SCHEMA_VERSION = "1.0"
"""Of the diff's own JSON (docs/diff.md); major changes when a field is removed or changes meaning."""
READ_MAJORS = (1, 2)
"""Major versions of the audit JSON a diff reads."""
FINDING_KINDS = FAIL_ON_KINDS
"""What --fail-on can name: the audit's own words."""
MAX_TEXT = 1024
"""Strings taken from an audit are cut to this many characters (an audit bounds them to 253)."""
_AMBIGUOUS_STATUSES = frozenset({"not-applicable", "not-observable"})
"""Schema 2.0 renamed 1.x's not-applicable (no side at the vantage) to not-observable and gave
not-applicable a new meaning (roles or features not in use): moves between them across majors say
nothing about the network."""
_SEVERITY = {"unexpected": 0, "expected": 1, "unmapped": 2}
_OUTCOME_SEVERITY = {"rejected": 0, "unanswered": 1, "one-way": 2, "established": 3}
_ABSENT: Any = object()
"""A flow of an audit that does not record app_protocol."""


class AuditDocumentError(AuditorError):
    """An input that is not an audit document this version can compare (one line, naming the file)."""


class Change(StrEnum):
    APPEARED = "appeared"
    DISAPPEARED = "disappeared"
    CHANGED = "changed"


class RuleChangeKind(StrEnum):
    STATUS = "status"
    ONLY_OLD = "only-old"
    ONLY_NEW = "only-new"


FlowKey = tuple[str, str, str, int | None]
Entry = tuple[tuple[Any, ...], Any, bool]
"""An indexed flow: (classification, failing, outcome, app_protocol), what ``flow_state`` makes a
FlowState of, summarised."""


@dataclass(frozen=True)
class FlowState:
    """A flow as one side's audit judged it."""

    classification: str
    """expected | unexpected | unmapped."""
    failing: bool
    """Expected, but rejected or unanswered."""
    outcome: str
    """established | rejected | unanswered | one-way."""
    app_protocol: str | None
    """The application protocol the audit identified; None when unknown or not recorded."""
    rule_ids: tuple[str, ...]
    reason: str | None
    """Why an unexpected flow is unexpected (the audit's reason code)."""
    initiator_roles: tuple[str, ...]
    responder_roles: tuple[str, ...]
    connections: int
    packets: int
    bytes: int
    first_seen: str | None
    last_seen: str | None

    @property
    def verdict(self) -> str:
        """failing | expected | unexpected | unmapped: the word the report shows."""
        return "failing" if self.failing and self.classification == "expected" else self.classification


@dataclass(frozen=True)
class FlowChange:
    """One flow that appeared, disappeared or changed."""

    change: Change
    initiator: str
    responder: str
    protocol: str
    port: int | None
    summarised: bool
    """An aggregate (initiator "*") of flows beyond the audit's flow bound."""
    old: FlowState | None
    new: FlowState | None
    fields: tuple[str, ...]
    """What changed: classification, failing, outcome, app_protocol (empty unless CHANGED)."""
    worse: tuple[str, ...]
    """The finding kinds this change makes new or worse in NEW (FINDING_KINDS)."""
    aggregate: str = ""
    """The other side's aggregate this flow may be counted in ("" when none), e.g. "* -> 10.0.1.10 tcp/80"."""


@dataclass(frozen=True)
class RuleInfo:
    id: str
    product: str
    source: str
    destination: str
    protocols: tuple[str, ...]
    ports: str
    description: str
    layer: str
    status: str


@dataclass(frozen=True)
class RuleChange:
    change: RuleChangeKind
    rule: RuleInfo
    """As NEW has it when NEW has the rule, else as OLD had it."""
    old_status: str | None
    new_status: str | None
    worse: tuple[str, ...]


@dataclass(frozen=True)
class InputInfo:
    path: str
    sha256: str
    size: int | None
    packets: int | None
    first_ts: str | None
    last_ts: str | None


@dataclass(frozen=True)
class Side:
    """What identifies one audit: its file, versions, catalog, roles file and inputs."""

    name: str
    """The audit JSON's file name, as given."""
    schema_version: str
    tool_version: str
    run_started: str | None
    catalog_digest: str
    catalog_rules: int | None
    roles_path: str
    roles_digest: str
    features: tuple[str, ...]
    inputs: tuple[InputInfo, ...]
    counts: dict[str, int]
    """flows, expected (failing included), failing, unexpected, unmapped: counted from the document's
    flows as its summary counts them."""
    rule_counts: dict[str, int]
    """Rules per status, counted from the document's rules."""
    records_app_protocol: bool
    """Some flow carries app_protocol (newer audits)."""

    @property
    def major(self) -> int:
        return int(self.schema_version.split(".")[0])


@dataclass(frozen=True)
class AuditIndex:
    """One side reduced to what a diff needs, indexed by identity."""

    side: Side
    flows: dict[FlowKey, Entry]
    """key -> (signature compared, its values for display (``flow_state``), summarised)."""
    rules: dict[str, RuleInfo]
    duplicate_flows: int
    """Flow keys listed more than once (merged into one aggregate)."""


@dataclass(frozen=True)
class Diff:
    """What changed from OLD to NEW."""

    old: Side
    new: Side
    notes: tuple[str, ...]
    """Stated differences in what was compared (schema, catalog, roles file, inputs...)."""
    flows: tuple[FlowChange, ...]
    """New or worse first, then appeared, changed, disappeared; each by key."""
    rules: tuple[RuleChange, ...]
    unchanged_flows: int
    unchanged_rules: int

    @property
    def identical(self) -> bool:
        return not self.flows and not self.rules

    def counts(self) -> dict[str, int]:
        flows = Counter(c.change.value for c in self.flows)
        rules = Counter(c.change.value for c in self.rules)
        return {"flows_appeared": flows["appeared"], "flows_disappeared": flows["disappeared"],
                "flows_changed": flows["changed"], "flows_unchanged": self.unchanged_flows,
                "rules_changed": rules["status"], "rules_only_old": rules["only-old"],
                "rules_only_new": rules["only-new"], "rules_unchanged": self.unchanged_rules}

    def new_or_worse(self) -> dict[str, int]:
        """Per finding kind, the flows and rules that are new or worse in NEW."""
        tally = Counter(k for c in self.flows for k in c.worse)
        tally.update(k for r in self.rules for k in r.worse)
        return {k: tally[k] for k in FINDING_KINDS}

    def hit(self, kinds: Collection[str]) -> list[str]:
        """The kinds of ``kinds`` with something new or worse (--fail-on's result)."""
        found = self.new_or_worse()
        return [k for k in FINDING_KINDS if k in kinds and found[k]]


# --- reading ----------------------------------------------------------------------------------


def load_audit(data: bytes, name: str) -> dict[str, Any]:
    """The bytes of an audit JSON -> its document. ``AuditDocumentError`` (naming ``name``) unless it
    is JSON, an audit document (schema_version, flows, rules) and of a major version this reads."""
    try:
        doc = json.loads(data)
    except UnicodeDecodeError as e:
        raise AuditDocumentError(f"{name}: not JSON (not UTF-8 text at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise AuditDocumentError(f"{name}: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    except RecursionError as e:
        raise AuditDocumentError(f"{name}: not JSON this reads (nested too deeply)") from e
    except ValueError as e:  # a number of more digits than Python converts, for one
        raise AuditDocumentError(f"{name}: not JSON this reads ({str(e)[:200]})") from e
    check_audit(doc, name)
    return doc  # type: ignore[no-any-return]


def check_audit(doc: Any, name: str) -> None:
    """Raise ``AuditDocumentError`` unless ``doc`` is an audit document of a major version this reads."""
    if isinstance(doc, dict) and doc.get("kind") == "pcap-audit diff":
        raise AuditDocumentError(f"{name}: not an audit document (it is a diff of two audits)")
    if not (isinstance(doc, dict) and "schema_version" in doc and isinstance(doc.get("flows"), list)
            and isinstance(doc.get("rules"), list)):
        raise AuditDocumentError(f"{name}: not an audit document (no schema_version, flows or rules)")
    version = doc["schema_version"]
    match = re.fullmatch(r"(\d{1,4})\.(\d{1,4})", version) if isinstance(version, str) else None
    if match is None:
        raise AuditDocumentError(f"{name}: not an audit document (schema_version {_short(version)} is not "
                                 "MAJOR.MINOR)")
    if int(match[1]) not in READ_MAJORS:
        raise AuditDocumentError(
            f"{name}: unsupported audit schema version {version} (this pcap-audit {__version__} reads "
            f"{' and '.join(f'{m}.x' for m in READ_MAJORS)})")


def _short(value: Any) -> str:
    return repr(value)[:40]


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(_text(v) for v in value) if isinstance(value, list) else ()


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def index_audit(doc: dict[str, Any], name: str) -> AuditIndex:
    """A checked audit document (``load_audit``) -> its index. ``AuditDocumentError`` names the first
    flow or rule that lacks its identity.

    Per flow, only the compared signature is made here; the few values shown for a change are kept raw
    and become a FlowState (bounded) only for the flows that changed (``flow_state``)."""
    check_audit(doc, name)
    flows: dict[FlowKey, Entry] = {}
    duplicates = 0
    counts: Counter[tuple[str, bool]] = Counter()
    app_seen = False
    for i, f in enumerate(doc["flows"]):
        if not isinstance(f, dict):
            raise AuditDocumentError(f"{name}: flows[{i}] is not an object")
        try:
            key = (f["initiator"], f["responder"], f["protocol"], f["port"])
            sig = (f["classification"], f.get("failing") is True, f["outcome"], f.get("app_protocol", _ABSENT))
        except KeyError as e:
            raise AuditDocumentError(f"{name}: flows[{i}] has no {e.args[0]!r}") from e
        if not (type(key[0]) is str and type(key[1]) is str and type(key[2]) is str and type(sig[0]) is str
                and type(sig[2]) is str and (key[3] is None or type(key[3]) is int)
                and (sig[3] is _ABSENT or sig[3] is None or type(sig[3]) is str)):
            raise AuditDocumentError(f"{name}: flows[{i}]: initiator, responder, protocol, classification, "
                                     "outcome (and app_protocol) must be strings and port a number")
        app_seen = app_seen or sig[3] is not _ABSENT
        counts[(sig[0], sig[1])] += 1
        raw = (f.get("rule_ids"), f.get("reason"), f.get("initiator_roles"), f.get("responder_roles"),
               f.get("connections"), f.get("packets"), f.get("bytes"), f.get("first_seen"), f.get("last_seen"))
        summarised = f.get("summarised") is True
        if key in flows:
            duplicates += 1
            before = flows[key]
            merged = _merge(flow_state(before), flow_state((sig, raw, summarised)))
            sig = (merged.classification, merged.failing, merged.outcome,
                   _ABSENT if sig[3] is _ABSENT else merged.app_protocol)
            flows[key] = (sig, merged, summarised or before[2])
        else:
            flows[key] = (sig, raw, summarised)
    rules: dict[str, RuleInfo] = {}
    rule_counts: Counter[str] = Counter()
    for i, r in enumerate(doc["rules"]):
        if not (isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("status"), str)):
            raise AuditDocumentError(f"{name}: rules[{i}] has no id or status")
        rule_counts[_text(r["status"])] += 1
        rules.setdefault(r["id"], RuleInfo(
            _text(r["id"]), _text(r.get("product")), _text(r.get("source")), _text(r.get("destination")),
            _texts(r.get("protocols")), _text(r.get("ports")), _text(r.get("description")),
            _text(r.get("layer") or "document"), _text(r["status"])))
    flow_counts = {"flows": len(doc["flows"]),
                   "expected": counts[("expected", False)] + counts[("expected", True)],
                   "failing": counts[("expected", True)],
                   "unexpected": counts[("unexpected", False)] + counts[("unexpected", True)],
                   "unmapped": counts[("unmapped", False)] + counts[("unmapped", True)]}
    statuses = ("observed", "failing", "missing", "covered", "not-observable", "not-applicable")
    ordered = {k: rule_counts[k] for k in statuses} | dict(sorted(rule_counts.items()))
    return AuditIndex(_side(doc, name, flow_counts, ordered, app_seen), flows, rules, duplicates)


def flow_state(entry: Entry) -> FlowState:
    """An index entry's FlowState, its strings bounded."""
    sig, detail, _ = entry
    if isinstance(detail, FlowState):
        return detail
    rule_ids, reason, init_roles, resp_roles, connections, packets, nbytes, first_seen, last_seen = detail
    return FlowState(
        _text(sig[0]), sig[1], _text(sig[2]), None if sig[3] is _ABSENT or sig[3] == "unknown" else _opt_text(sig[3]),
        _texts(rule_ids),
        _opt_text(reason), _texts(init_roles), _texts(resp_roles), _int(connections), _int(packets),
        _int(nbytes), _opt_text(first_seen), _opt_text(last_seen))


def _merge(a: FlowState, b: FlowState) -> FlowState:
    """Two rows of one key as one aggregate: counts added, the more severe verdict and outcome kept."""
    worst = min((a, b), key=lambda s: (_SEVERITY.get(s.classification, 9), not s.failing))
    outcome = min((a.outcome, b.outcome), key=lambda o: _OUTCOME_SEVERITY.get(o, 9))
    return FlowState(
        worst.classification, worst.failing, outcome, worst.app_protocol,
        tuple(dict.fromkeys(a.rule_ids + b.rule_ids)), worst.reason, worst.initiator_roles,
        worst.responder_roles, a.connections + b.connections, a.packets + b.packets, a.bytes + b.bytes,
        min(filter(None, (a.first_seen, b.first_seen)), default=None),
        max(filter(None, (a.last_seen, b.last_seen)), default=None))


def _side(doc: dict[str, Any], name: str, counts: dict[str, int], rule_counts: dict[str, int],
          app_seen: bool) -> Side:
    catalog, roles, run = _dict(doc.get("catalog")), _dict(doc.get("roles_file")), _dict(doc.get("run"))
    inputs = tuple(
        InputInfo(_text(i.get("path")), _text(i.get("sha256")), _int(i.get("size")) if "size" in i else None,
                  _int(i.get("packets")) if "packets" in i else None, _opt_text(i.get("first_ts")),
                  _opt_text(i.get("last_ts")))
        for i in _list(doc.get("inputs")) if isinstance(i, dict))
    features = tuple(sorted(_text(f.get("id")) for f in _list(doc.get("features")) if isinstance(f, dict)))
    return Side(
        name, doc["schema_version"], _text(_dict(doc.get("tool")).get("version")),
        _opt_text(run.get("started")), _text(catalog.get("digest")),
        _int(catalog["rules"]) if "rules" in catalog else None, _text(roles.get("path")),
        _text(roles.get("digest")), features, inputs, counts, rule_counts, app_seen)


# --- comparing --------------------------------------------------------------------------------


def diff_audits(old: dict[str, Any], new: dict[str, Any], old_name: str = "OLD", new_name: str = "NEW") -> Diff:
    """Two audit documents -> their diff (``compare`` of their indexes)."""
    return compare(index_audit(old, old_name), index_audit(new, new_name))


def compare(old: AuditIndex, new: AuditIndex) -> Diff:
    """What changed from ``old`` to ``new``: a lookup by key per flow and rule, so linear in their number."""
    apps = old.side.records_app_protocol and new.side.records_app_protocol
    changes: list[FlowChange] = []
    unchanged = 0
    new_flows = new.flows
    for key, entry in old.flows.items():
        other = new_flows.get(key)
        if other is None:
            changes.append(FlowChange(Change.DISAPPEARED, *_bounded(key), entry[2], flow_state(entry), None, (),
                                      (), _aggregate_of(key, entry[2], new.flows)))
            continue
        if other[0] == entry[0]:
            unchanged += 1
            continue
        fields = _changed_fields(entry[0], other[0], apps)
        if not fields:
            unchanged += 1
            continue
        was, now = flow_state(entry), flow_state(other)
        worse = tuple(k for k, hit in (("unexpected", now.classification == "unexpected" != was.classification),
                                       ("failing", now.verdict == "failing" != was.verdict),
                                       ("mismatch", now.reason == REASON_MISMATCH != was.reason)) if hit)
        changes.append(FlowChange(Change.CHANGED, *_bounded(key), entry[2] or other[2], was, now, fields, worse))
    old_flows = old.flows
    for key, entry in new_flows.items():
        if key not in old_flows:
            now = flow_state(entry)
            worse = tuple(k for k, hit in (("unexpected", now.classification == "unexpected"),
                                           ("failing", now.verdict == "failing"),
                                           ("mismatch", now.reason == REASON_MISMATCH)) if hit)
            changes.append(FlowChange(Change.APPEARED, *_bounded(key), entry[2], None, now, (), worse,
                                      _aggregate_of(key, entry[2], old.flows)))
    order = {Change.APPEARED: 0, Change.CHANGED: 1, Change.DISAPPEARED: 2}
    changes.sort(key=lambda c: (not c.worse, order[c.change], c.initiator, c.responder, c.protocol,
                                -1 if c.port is None else c.port))
    rules, same_rules, moved = _compare_rules(old, new)
    return Diff(old.side, new.side, _notes(old, new, rules, moved), tuple(changes), tuple(rules),
                unchanged, same_rules)


def _bounded(key: FlowKey) -> FlowKey:
    return (_text(key[0]), _text(key[1]), _text(key[2]), key[3])


def _changed_fields(a: tuple[Any, ...], b: tuple[Any, ...], apps: bool) -> tuple[str, ...]:
    names = ("classification", "failing", "outcome", "app_protocol")
    return tuple(n for n, x, y in zip(names, a, b, strict=True)
                 if x != y and (n != "app_protocol" or (apps and _ABSENT not in (x, y))))


def _aggregate_of(key: FlowKey, summarised: bool, other: dict[FlowKey, Any]) -> str:
    """The other side's aggregate that may hold this individual flow, as text ("" when none)."""
    if summarised:
        return ""
    _, responder, protocol, port = key
    for agg in (("*", responder, protocol, port), ("*", "*", protocol, 0)):
        if agg in other and other[agg][2]:
            return _text(f"* -> {agg[1]} {protocol}/{agg[3]}")
    return ""


def _compare_rules(old: AuditIndex, new: AuditIndex) -> tuple[list[RuleChange], int, int]:
    """(rule changes, rules unchanged, status moves left out across majors)."""
    across_majors = old.side.major != new.side.major
    changes: list[RuleChange] = []
    same = moved = 0
    for rid, before in old.rules.items():
        after = new.rules.get(rid)
        if after is None:
            changes.append(RuleChange(RuleChangeKind.ONLY_OLD, before, before.status, None, ()))
        elif after.status == before.status:
            same += 1
        elif across_majors and {before.status, after.status} <= _AMBIGUOUS_STATUSES:
            moved += 1
        else:
            changes.append(RuleChange(RuleChangeKind.STATUS, after, before.status, after.status,
                                      _rule_worse(after.status)))
    for rid, after in new.rules.items():
        if rid not in old.rules:
            changes.append(RuleChange(RuleChangeKind.ONLY_NEW, after, None, after.status,
                                      _rule_worse(after.status)))
    order = {RuleChangeKind.STATUS: 0, RuleChangeKind.ONLY_NEW: 1, RuleChangeKind.ONLY_OLD: 2}
    changes.sort(key=lambda c: (not c.worse, order[c.change], c.rule.id))
    return changes, same, moved


def _rule_worse(status: str) -> tuple[str, ...]:
    return (status,) if status in ("missing", "failing") else ()


def _notes(old: AuditIndex, new: AuditIndex, rules: list[RuleChange], moved: int) -> tuple[str, ...]:
    a, b = old.side, new.side
    notes: list[str] = []
    if a.major != b.major:
        notes.append(
            f"schema versions differ (OLD {a.schema_version}, NEW {b.schema_version}): 2.0 changed which "
            "roles a host holds, made rules of unused features not applicable (1.x's not-applicable is "
            "2.0's not-observable) and added covered rules, so some changes may come from the tool, not the "
            "network" + (f"; {moved} rules that only moved between not-applicable and not-observable are "
                         "not listed" if moved else ""))
    elif a.schema_version != b.schema_version:
        notes.append(f"schema versions differ (OLD {a.schema_version}, NEW {b.schema_version}): fields one "
                     "of them lacks are not compared")
    if a.tool_version != b.tool_version:
        notes.append(f"tool versions differ (OLD {a.tool_version or '?'}, NEW {b.tool_version or '?'})")
    if a.catalog_digest != b.catalog_digest:
        kinds = Counter(c.change for c in rules)
        only_new, only_old = kinds[RuleChangeKind.ONLY_NEW], kinds[RuleChangeKind.ONLY_OLD]
        which = ", ".join(x for x in (f"{only_new} rules only in NEW" if only_new else "",
                                      f"{only_old} rules only in OLD" if only_old else "") if x)
        notes.append(f"catalog changed: {which or 'the same rule ids on both sides'} (digest "
                     f"{a.catalog_digest[:19] or '?'}… -> {b.catalog_digest[:19] or '?'}…)")
    if a.roles_digest != b.roles_digest:
        notes.append("roles file changed (its digest differs): changes of classification may come from it")
    if a.features != b.features:
        added = [f for f in b.features if f not in a.features]
        gone = [f for f in a.features if f not in b.features]
        notes.append("deployment features differ: " + ", ".join([*(f"+{f}" for f in added),
                                                                 *(f"-{f}" for f in gone)]))
    if a.inputs and sorted(i.sha256 for i in a.inputs) == sorted(i.sha256 for i in b.inputs):
        notes.append("both audits read the same captures (the same SHA-256), so any change comes from the "
                     "catalog, the roles file or the tool")
    if a.records_app_protocol != b.records_app_protocol:
        notes.append(f"only {'NEW' if b.records_app_protocol else 'OLD'} records application protocols "
                     "(app_protocol): they are not compared")
    for label, index in (("OLD", old), ("NEW", new)):
        if index.duplicate_flows:
            notes.append(f"{label} lists {index.duplicate_flows} flows under a key listed before: each key "
                         "is compared as one aggregate")
        if any(s for _, _, s in index.flows.values()):
            notes.append(f"{label} summarises flows beyond its flow bound (initiator *): they compare as "
                         "aggregates, and an individual flow on the other side may be counted in one")
    return tuple(notes)
