"""Field validation for the catalog's YAML files: the schema of each mapping, types and ports checked
with every problem located (``rules/storefront.yaml:41 rules[3].ports: ...``), and the source document."""

from __future__ import annotations

import datetime as _dt
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.catalog.model import SourceDocument
from auditor.catalog.rule import LAYER_DOCUMENT
from auditor.catalog.vocabulary import Vocabulary, did_you_mean
from auditor.yamlsafe import LineMap, YamlError, join_path, read_config


@dataclass
class _Source:
    path: Path
    name: str
    raw: bytes
    data: Any = None
    lines: LineMap = field(default_factory=LineMap)
    is_roles: bool = False
    is_extra: bool = False
    is_alternatives: bool = False
    layer: str = LAYER_DOCUMENT


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, src: _Source, path: str, msg: str) -> None:
        where = f" {path}" if path else ""
        self.items.append(f"{src.name}:{src.lines.line(path)}{where}: {msg}")


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "a mapping"}


def _type_name(value: object) -> str:
    return {type(None): "nothing", bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


# Field specs: name -> (expected type, required). "strlist" is a list of strings.
_FILE_FIELDS: dict[str, tuple[Any, bool]] = {
    "product": (str, True), "order": (int, False), "port_data": (bool, False), "link": (str, False),
    "rules": (list, True), "roles": (list, False), "description": (str, False),
}
_ROLES_FILE_FIELDS: dict[str, tuple[Any, bool]] = {
    "roles": (list, True), "features": (list, False), "source": (dict, False),
}
_SOURCE_FIELDS: dict[str, tuple[Any, bool]] = {
    "title": (str, True), "publisher": (str, True), "url": (str, False), "revision": (str, False),
    "reviewed": (str, True),
}
_ROLE_FIELDS: dict[str, tuple[Any, bool]] = {
    "name": (str, True), "aliases": ("strlist", False), "citrix": (bool, False),
    "satisfied_by": ("strlist", False), "family": (str, False), "hostnames": ("strlist", False),
    "description": (str, False), "feature": (str, False),
}
_FEATURE_FIELDS: dict[str, tuple[Any, bool]] = {
    "id": (str, True), "title": (str, True), "description": (str, False), "detected_by": ("strlist", False),
}
_ALTERNATIVES_FILE_FIELDS: dict[str, tuple[Any, bool]] = {"alternatives": (list, True)}
_ALTERNATIVE_FIELDS: dict[str, tuple[Any, bool]] = {
    "id": (str, True), "title": (str, True), "members": ("strlist", True), "note": (str, False),
}
_CITATION_FIELDS: dict[str, tuple[Any, bool]] = {"title": (str, True), "url": (str, True), "section": (str, False)}
_RULE_FIELDS: dict[str, tuple[Any, bool]] = {
    "id": (str, True), "source": (str, True), "destination": (str, True), "protocols": ("strlist", True),
    "ports": (list, True), "type": (str, True), "description": (str, True), "seed_row": (str, False),
    "bidirectional": (bool, False), "configurable": (bool, False), "one_way": (bool, False),
    "loopback_only": (bool, False), "hostnames": ("strlist", False), "note": (str, False),
    "feature": (str, False), "citation": (dict, False), "uncited": (str, False),
    "apps": ("strlist", False), "apps_on": ("strlist", False),
}


def _check_fields(obj: object, path: str, spec: Mapping[str, tuple[Any, bool]], src: _Source,
                  problems: _Problems, what: str) -> dict[str, Any] | None:
    """Unknown keys, missing required fields and wrong types; returns the fields that are usable."""
    if not isinstance(obj, dict):
        problems.add(src, path, f"expected {what} (a mapping), got {_type_name(obj)}")
        return None
    out: dict[str, Any] = {}
    for key, value in obj.items():
        kpath = join_path(path, str(key))
        if key not in spec:
            close = difflib.get_close_matches(str(key), list(spec), n=1)
            problems.add(src, kpath, f"unknown key{did_you_mean(close)}")
            continue
        expected, required = spec[key]
        if value is None and not required:
            continue
        if expected == "strlist":
            if not isinstance(value, list):
                problems.add(src, kpath, f"expected a list of strings, got {_type_name(value)}")
                continue
            bad = [i for i, v in enumerate(value) if not isinstance(v, str)]
            for i in bad:
                problems.add(src, join_path(kpath, i), f"expected a string, got {_type_name(value[i])}")
            if bad:
                continue
        elif expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            problems.add(src, kpath, f"expected an integer, got {_type_name(value)}")
            continue
        elif expected is not int and not isinstance(value, expected):
            problems.add(src, kpath, f"expected {_TYPE_NAMES[expected]}, got {_type_name(value)}")
            continue
        if expected is str and not value.strip() and required:
            problems.add(src, kpath, "must not be empty")
            continue
        out[key] = value
    for key, (_, required) in spec.items():
        if required and key not in obj:
            problems.add(src, path, f"missing required field {key!r}")
    return out


_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def _parse_ports(value: list[Any], path: str, src: _Source,
                 problems: _Problems) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, item in enumerate(value):
        ipath = join_path(path, i)
        if isinstance(item, bool) or not isinstance(item, int | str):
            problems.add(src, ipath, f"expected a port or 'lo-hi' range, got {_type_name(item)}")
            continue
        if isinstance(item, int):
            lo = hi = item
        elif item.strip().isdigit():
            lo = hi = int(item)
        elif m := _RANGE.match(item):
            lo, hi = int(m.group(1)), int(m.group(2))
        else:
            problems.add(src, ipath, f"bad port {item!r}: expected a number or 'lo-hi'")
            continue
        bad = [p for p in (lo, hi) if not 0 <= p <= 65535]
        if bad:
            problems.add(src, ipath, f"port {bad[0]} out of range (0-65535)")
        elif lo > hi:
            problems.add(src, ipath, f"reversed range {item!r}: {lo} > {hi}")
        else:
            out.append((lo, hi))
    return tuple(out)


def _natural_key(text: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _read(path: Path, name: str, problems: list[str]) -> _Source | None:
    try:
        raw = read_config(path, name)  # bounded: /dev/zero or a FIFO stops at the size limit
    except YamlError as e:
        problems.extend(e.problems)
        return None
    return _Source(path=path, name=name, raw=raw)


def _display_name(path: Path, base_dir: Path | None) -> str:
    if base_dir is not None:
        resolved, base = path.resolve(), base_dir.resolve()
        if resolved.is_relative_to(base):
            return resolved.relative_to(base.parent).as_posix()
    return str(path)


def _source_document(src: _Source, value: dict[str, Any], problems: _Problems) -> SourceDocument | None:
    """roles.yaml ``source:``. ``revision`` must be stated, null when the copy carries none: a
    forgotten revision must not read as a document without one."""
    if src.is_extra:
        problems.add(src, "source", "only the catalog's own roles.yaml names the catalog's source document")
        return None
    reviewed = value.get("reviewed")
    if isinstance(reviewed, _dt.date):  # an unquoted YAML date
        value = {**value, "reviewed": reviewed.isoformat()}
    f = _check_fields(value, "source", _SOURCE_FIELDS, src, problems, "a source document")
    if f is None or not all(k in f for k in ("title", "publisher", "reviewed")):
        return None
    ok = True
    if "revision" not in value:
        problems.add(src, "source", "state the document's 'revision' (null when the copy carries none)")
        ok = False
    try:
        _dt.date.fromisoformat(f["reviewed"])
        dated = re.fullmatch(r"\d{4}-\d{2}-\d{2}", f["reviewed"]) is not None
    except ValueError:
        dated = False
    if not dated:
        problems.add(src, "source.reviewed", f"expected a date YYYY-MM-DD, got {f['reviewed']!r}")
        ok = False
    url = f.get("url", "").strip()
    if url and not url.startswith("https://"):
        problems.add(src, "source.url", f"expected an https:// address, got {url!r}")
        ok = False
    if not ok:
        return None
    return SourceDocument(" ".join(f["title"].split()), " ".join(f["publisher"].split()), f["reviewed"],
                          f["revision"].strip() if f.get("revision") else None, url)


def _unknown_feature(name: str, vocab: Vocabulary) -> str:
    close = difflib.get_close_matches(name, list(vocab.features), n=2)
    return f"unknown feature {name!r}{did_you_mean(close)} (see `pcap-audit catalog features`)"
