"""Two audit documents (docs/json-schema.md) -> what changed between them (diff_render.py shows it).

A baseline audit (OLD) and today's (NEW) are compared by identity, not by position: a flow is its
(initiator, responder, protocol, port), a rule its id. A flow appeared, disappeared, or changed its
classification, outcome or application protocol; a rule changed its status, or is on one side only
(the catalog changed). Packet and byte counts differ between any two captures, so they are shown as
evidence, never reported as changes. Summarised flows (initiator "*") are aggregates and compare as
such. "New or worse" uses the audit's --fail-on words: an unexpected flow that was not unexpected, a
failing flow or rule that was not failing, a missing rule that was not missing.

Each side is first reduced to an ``AuditIndex`` (``index_audit``, report/diff_read.py), so a caller can drop a large
document before reading the next. Strings come from captures and stay hostile: the result keeps them
bounded, and the renderers show them safely.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from auditor.classify import REASON_MISMATCH
from auditor.criteria import FAIL_ON_KINDS
from auditor.report.diff_read import (
    _ABSENT,
    READ_MAJORS,
    AuditDocumentError,
    AuditIndex,
    Entry,
    FlowKey,
    FlowState,
    InputInfo,
    RuleInfo,
    Side,
    _text,
    check_audit,
    flow_state,
    index_audit,
    load_audit,
)

__all__ = [
    "DIFF_SCHEMA_VERSION", "FINDING_KINDS", "READ_MAJORS", "AuditDocumentError", "AuditIndex", "Change", "Diff",
    "Entry", "FlowChange", "FlowKey", "FlowState", "InputInfo", "RuleChange", "RuleChangeKind", "RuleInfo", "Side",
    "check_audit", "compare", "diff_audits", "flow_state", "index_audit", "load_audit",
]

DIFF_SCHEMA_VERSION = "1.0"
"""Of the diff's own JSON (docs/diff.md); major changes when a field is removed or changes meaning."""
FINDING_KINDS = FAIL_ON_KINDS
"""What --fail-on can name: the audit's own words."""
_AMBIGUOUS_STATUSES = frozenset({"not-applicable", "not-observable"})
"""Schema 2.0 renamed 1.x's not-applicable (no side at the vantage) to not-observable and gave
not-applicable a new meaning (roles or features not in use): moves between them across majors say
nothing about the network."""


class Change(StrEnum):
    APPEARED = "appeared"
    DISAPPEARED = "disappeared"
    CHANGED = "changed"


class RuleChangeKind(StrEnum):
    STATUS = "status"
    ONLY_OLD = "only-old"
    ONLY_NEW = "only-new"


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
class RuleChange:
    change: RuleChangeKind
    rule: RuleInfo
    """As NEW has it when NEW has the rule, else as OLD had it."""
    old_status: str | None
    new_status: str | None
    worse: tuple[str, ...]


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
