"""The audit document (report/model.py) as JSON data: ``plain`` (any document value as dicts and
lists), ``JsonFlows`` (flows[] as dicts, made as read) and ``FlowJson`` (a flow as JSON text: the
export writes hundreds of thousands of them, each exactly what encoding ``plain(row)`` with the
export's encoder gives)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

from auditor.refusal import RefusedBy
from auditor.report.model import AppEvidenceRow, FlowRow

_FIELDS: dict[type, tuple[str, ...]] = {}
"""A document class -> its field names, in order (dataclasses.fields once per class, not per value)."""


def plain(value: Any) -> Any:
    """A document value as JSON-ready data: dataclasses as dicts (members in field order), tuples as
    lists."""
    if isinstance(value, str | int | float) or value is None:
        return value
    names = _FIELDS.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: plain(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [plain(v) for v in value]
    raise TypeError(f"not a document value: {value!r}")


class JsonFlows(Sequence[dict[str, Any]]):
    """flows[] as dicts, made as they are read (an audit holds hundreds of thousands)."""

    def __init__(self, rows: Sequence[FlowRow]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [plain(r) for r in self.rows[i]]
        result: dict[str, Any] = plain(self.rows[i])
        return result

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (plain(r) for r in self.rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


# --- the JSON text of a flow ---------------------------------------------------------------

_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
"""The export's encoder settings (compact; only the compact form uses the C encoder)."""
_MEMO_LIMIT = 1 << 16


class _Memo(dict[Any, str]):
    """value -> its JSON text, computed once: a large audit repeats a few hundred addresses, role and
    name lists, reasons and state tallies in every flow. Bounded: past _MEMO_LIMIT it starts over.
    Keys are strings, None and tuples (never bare numbers: as dict keys 1, 1.0 and True are one)."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[Any], str]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: Any) -> str:
        if len(self) >= _MEMO_LIMIT:
            self.clear()
        text = self[key] = self._make(key)
        return text


def _json_list(items: tuple[str, ...]) -> str:
    return _JSON(list(items))


def _json_states(items: tuple[tuple[str, int], ...]) -> str:
    return _JSON(dict(items))


def _ts_json(text: str | None) -> str:
    return "null" if text is None else _JSON(text)


class FlowJson:
    """``flow_json(row)``: a FlowRow as JSON text, exactly what encoding ``plain(row)`` with the
    export's encoder gives (tests/test_report_stream.py checks it on every sample). Written out
    because encoding a dict per flow was most of the export's time; the memos are per document."""

    def __init__(self) -> None:
        self.text = _Memo(_JSON)
        self.lists = _Memo(_json_list)
        self.states = _Memo(_json_states)
        self.refused = _Memo(_json_refused)

    def __call__(self, r: FlowRow) -> str:
        js, lists = self.text, self.lists
        refused = self.refused[r.refused_by] if r.refused_by else "[]"
        return (
            f'{{"initiator":{js[r.initiator]},"responder":{js[r.responder]},"protocol":{js[r.protocol]},'
            f'"port":{r.port:d},'
            f'"initiator_roles":{lists[r.initiator_roles]},"responder_roles":{lists[r.responder_roles]},'
            f'"initiator_names":{lists[r.initiator_names]},"responder_names":{lists[r.responder_names]},'
            f'"classification":{js[r.classification]},"failing":{"true" if r.failing else "false"},'
            f'"outcome":{js[r.outcome]},"refused_by":{refused},'
            f'"rule_ids":{lists[r.rule_ids]},"reverse_rule_ids":{lists[r.reverse_rule_ids]},'
            f'"layers":{lists[r.layers]},"reason":{js[r.reason]},"reason_text":{js[r.reason_text]},'
            f'"connections":{r.connections:d},"established":{r.established:d},"rejected":{r.rejected:d},'
            f'"unanswered":{r.unanswered:d},"packets":{r.packets:d},"bytes":{r.bytes:d},'
            f'"orig_packets":{r.orig_packets:d},"resp_packets":{r.resp_packets:d},'
            f'"orig_bytes":{r.orig_bytes:d},"resp_bytes":{r.resp_bytes:d},'
            f'"first_seen":{_ts_json(r.first_seen)},"last_seen":{_ts_json(r.last_seen)},'
            f'"first_frame":{{"input":{r.first_frame.input:d},"frame":{r.first_frame.frame:d}}},'
            f'"direction_evidence":{js[r.direction_evidence]},'
            f'"direction_inferred":{"true" if r.direction_inferred else "false"},'
            f'"conn_states":{self.states[tuple(r.conn_states.items())]},'
            f'"tunnels":{lists[r.tunnels]},'
            f'"summarised":{"true" if r.summarised else "false"},'
            f'"app_protocol":{js[r.app_protocol]},"apps":{self.states[tuple(r.apps.items())]},'
            f'"unverified":{r.unverified:d},'
            f'"app_evidence":{self.evidence(r.app_evidence) if r.app_evidence else "{}"}}}'
        )

    def evidence(self, evidence: Mapping[str, AppEvidenceRow]) -> str:
        # What _JSON({k: plain(v)}) gives, written out (the generic walk was a third of the export).
        js = self.text
        return "{" + ",".join(
            f'{js[k]}:{{"direction":{js[e.direction]},'
            f'"frame":{{"input":{e.frame.input:d},"frame":{e.frame.frame:d}}},'
            f'"head":{js[e.head]},"detail":{js[e.detail]}}}'
            for k, e in evidence.items()) + "}"


def _json_refused(refused: tuple[RefusedBy, ...]) -> str:
    return _JSON([plain(e) for e in refused])
