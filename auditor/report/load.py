"""An audit document (report/model.py) from its JSON data: a saved ``--json`` file, parsed, or a
dict built in memory by tests."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from auditor.report.model import AuditDocument, DocumentError

_HINTS: dict[type, dict[str, Any]] = {}


def load_document(data: Mapping[str, Any]) -> AuditDocument:
    """An audit document from its JSON data (a saved ``--json`` file, parsed). Members missing from
    an older document load as None (optional values) or empty (lists and maps); a missing or
    mistyped scalar raises DocumentError naming it."""
    doc: AuditDocument = _load(AuditDocument, data, "")
    return doc


def _hints(cls: type) -> dict[str, Any]:
    hit = _HINTS.get(cls)
    if hit is None:
        hit = _HINTS[cls] = typing.get_type_hints(cls)
    return hit


def _load(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _load(args[0], value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise DocumentError(f"{where or 'document'}: not an object")
        hints = _hints(make_type := typing.cast(type, tp))
        kwargs = {}
        for f in dataclasses.fields(make_type):
            at = f"{where}.{f.name}" if where else f.name
            ftype = hints[f.name]
            if f.name in value:
                kwargs[f.name] = _load(ftype, value[f.name], at)
            elif f.default is not dataclasses.MISSING:
                kwargs[f.name] = f.default  # a member added in a minor version, absent from older documents
            elif f.default_factory is not dataclasses.MISSING:
                kwargs[f.name] = f.default_factory()
            else:
                kwargs[f.name] = _absent(ftype, at)
        make: Any = tp
        return make(**kwargs)
    if origin is tuple or origin in (Sequence, typing.Sequence):
        if not isinstance(value, list | tuple):
            raise DocumentError(f"{where}: not a list")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_load(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, typing.Mapping, dict):
        if not isinstance(value, Mapping):
            raise DocumentError(f"{where}: not an object")
        _, item = typing.get_args(tp)
        return {str(k): _load(item, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise DocumentError(f"{where}: not true or false")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise DocumentError(f"{where}: not an integer")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise DocumentError(f"{where}: not a string")
        return value
    raise TypeError(f"{where}: no loader for {tp!r}")


def _absent(tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
        return None
    if origin is tuple or origin in (Sequence, typing.Sequence):
        return ()
    if origin in (Mapping, typing.Mapping, dict):
        return {}
    raise DocumentError(f"{where}: missing")
