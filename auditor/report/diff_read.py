"""An audit JSON -> what a diff of two audits needs of it (``AuditIndex``), indexed by identity.

``load_audit`` checks that the bytes are an audit document of a major version a diff reads;
``index_audit`` reduces it to its flows by key and its rules by id, every string taken from it
bounded (they come from captures and stay hostile). report/diff.py compares two indexes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from auditor import __version__
from auditor.errors import AuditorError

READ_MAJORS = (1, 2)
"""Major versions of the audit JSON a diff reads."""
MAX_TEXT = 1024
"""Strings taken from an audit are cut to this many characters (an audit bounds them to 253)."""
_SEVERITY = {"unexpected": 0, "expected": 1, "unmapped": 2}
_OUTCOME_SEVERITY = {"rejected": 0, "unanswered": 1, "one-way": 2, "established": 3}
_ABSENT: Any = object()
"""A flow of an audit that does not record app_protocol."""

class AuditDocumentError(AuditorError):
    """An input that is not an audit document this version can compare (one line, naming the file)."""


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
