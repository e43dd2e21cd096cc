"""The catalog: rules/*.yaml and rules/roles.yaml -> Catalog of FlowRule and a role Vocabulary.

Loading collects every problem of every file (pySigma's collect-errors mode) and raises one
CatalogError at the end, each problem formatted ``rules/storefront.yaml:41 rules[3].ports: ...``.
Site files given with ``--rules`` use the same schema and may add roles of their own.
"""

from __future__ import annotations

import csv
import datetime as _dt
import difflib
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.apps import PROTOCOLS as APP_PROTOCOLS
from auditor.errors import CatalogError
from auditor.model import LAYER_DOCUMENT, LAYER_SITE, LAYER_SUPPLEMENT, LAYERS, Citation, FlowRule
from auditor.yamlsafe import LineMap, YamlError, join_path, load_yaml_text, read_config

PROTOCOLS = ("tcp", "udp", "icmp")
FAMILIES = ("citrix",)
ROLES_FILE = "roles.yaml"
ALTERNATIVES_FILE = "alternatives.yaml"
SUPPLEMENT_DIR = "supplement"
# Ranges wider than this are client (ephemeral) ranges, not a server's listening port: no evidence
# of direction (SPEC §3: the dynamic range 49152-65535 is no evidence).
SERVER_RANGE_MAX = 64
DYNAMIC_RANGE = (49152, 65535)
EXPORT_FIELDS = ("id", "product", "source", "destination", "protocol", "ports", "type", "description",
                 "bidirectional", "configurable", "one_way", "loopback_only", "hostnames", "note",
                 "seed_row", "source_file", "layer", "feature", "citation", "apps", "apps_on")
_FLAGS = ("bidirectional", "configurable", "one_way", "loopback_only")


def normalise(name: str) -> str:
    """Role names compare case-insensitively with runs of whitespace collapsed."""
    return " ".join(name.split()).casefold()


class UnknownRoleError(ValueError):
    """A role name that is neither a canonical role nor an alias; the message suggests close ones."""

    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        self.name = name
        self.suggestions = list(suggestions)
        super().__init__(f"unknown role {name!r}{did_you_mean(suggestions)}")


def did_you_mean(suggestions: Sequence[str]) -> str:
    if not suggestions:
        return ""
    return " (did you mean " + " or ".join(repr(s) for s in suggestions) + "?)"


@dataclass(frozen=True, slots=True)
class Role:
    """One role of the vocabulary (rules/roles.yaml or a site file's ``roles:``)."""

    name: str
    """Canonical name, as rules and reports spell it."""
    aliases: tuple[str, ...] = ()
    """Other names the seed (or a site) uses for the same role."""
    citrix: bool = False
    """A Citrix product: satisfies the ``citrix`` family ('Any Citrix Component')."""
    satisfied_by: tuple[str, ...] = ()
    """Canonical roles whose hosts also play this role."""
    family: str | None = None
    """For a stand-in role such as 'Any Citrix Component': the family whose members satisfy it."""
    hostnames: tuple[str, ...] = ()
    """Host-name patterns that identify this role."""
    description: str = ""
    feature: str | None = None
    """A feature-implied role (SPEC §4): the hosts of ``satisfied_by`` play it only while this
    deployment feature is in use (an NSIP is an HA peer only in an HA pair). None = always implied."""


@dataclass(frozen=True, slots=True)
class Feature:
    """A deployment feature (rules/roles.yaml ``features:``): some roles and rules exist only with it."""

    id: str
    title: str
    description: str = ""
    detected_by: tuple[str, ...] = ()
    """Rules whose flow between two hosts of one product is itself the feature's proof (HA heartbeats
    between two NSIPs): such a flow is expected and the feature is reported as detected."""


@dataclass(frozen=True, slots=True)
class AlternativeGroup:
    """Rules that are alternatives of one another (rules/alternatives.yaml): one of them is enough."""

    id: str
    title: str
    members: tuple[str, ...]
    """Rule ids, the most secure (or preferred) first: an unobserved group is reported by it."""
    note: str = ""


class Vocabulary:
    """Role names, aliases, features and the 'satisfies' relation between roles."""

    def __init__(self, roles: Iterable[Role], features: Iterable[Feature] = ()) -> None:
        self.roles: dict[str, Role] = {r.name: r for r in roles}
        self.features: dict[str, Feature] = {f.id: f for f in features}
        self._index: dict[str, str] = {}
        for r in self.roles.values():
            for n in (r.name, *r.aliases):
                self._index.setdefault(normalise(n), r.name)
        # Who satisfies whom: role -> (role it satisfies directly, the feature that edge needs or None).
        self._satisfies: dict[str, set[tuple[str, str | None]]] = {n: set() for n in self.roles}
        for r in self.roles.values():
            for other in r.satisfied_by:
                if other in self._satisfies:
                    self._satisfies[other].add((r.name, r.feature))
        self._citrix_families = frozenset(r.name for r in self.roles.values() if r.family == "citrix")

    @property
    def names(self) -> tuple[str, ...]:
        """Every canonical role name, in vocabulary order."""
        return tuple(self.roles)

    @property
    def role_hostnames(self) -> dict[str, tuple[str, ...]]:
        """Canonical role -> its host-name patterns (only roles that have some)."""
        return {r.name: r.hostnames for r in self.roles.values() if r.hostnames}

    def lookup(self, name: str) -> str | None:
        """Canonical name for a name or alias (case-insensitive), or None."""
        return self._index.get(normalise(name))

    def lookup_feature(self, name: str) -> str | None:
        """The feature id for a name (case-insensitive), or None."""
        key = normalise(name)
        return next((f for f in self.features if f.casefold() == key), None)

    def feature_names(self) -> Sequence[str]:
        """Every feature id, in vocabulary order."""
        return tuple(self.features)

    def role_feature(self, role: str) -> str | None:
        """The feature that mapping this role explicitly declares, if it is a feature role."""
        r = self.roles.get(role)
        return r.feature if r is not None else None

    def resolve(self, name: str) -> str:
        """Canonical name for a name or alias; UnknownRoleError (a ValueError) with suggestions."""
        found = self.lookup(name)
        if found is None:
            raise UnknownRoleError(name, self.suggest(name))
        return found

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """The canonical names closest to ``name`` (matching names and aliases alike)."""
        close = difflib.get_close_matches(normalise(name), list(self._index), n=n * 3, cutoff=0.6)
        out: list[str] = []
        for c in close:
            canon = self._index[c]
            if canon not in out:
                out.append(canon)
        return out[:n]

    def expand(self, roles: Iterable[str], features: Iterable[str] | None = None) -> frozenset[str]:
        """The roles given plus every role they satisfy, transitively (families included).

        ``features``: the deployment features in use; a feature-implied role is reached only through
        them. None means every feature (what a role *can* play, as ``catalog roles`` lists it).
        Names are resolved through aliases; a name that is not in the vocabulary is kept as given.
        """
        allowed = None if features is None else frozenset(features)
        todo = [self.lookup(r) or r for r in roles]
        out: set[str] = set()
        while todo:
            r = todo.pop()
            if r in out:
                continue
            out.add(r)
            todo.extend(name for name, feature in self._satisfies.get(r, ())
                        if feature is None or allowed is None or feature in allowed)
            role = self.roles.get(r)
            if role is not None and role.citrix:
                todo.extend(self._citrix_families)
        return frozenset(out)


@dataclass(frozen=True, slots=True)
class ProductSection:
    """One rule file: a section of the seed document (or a site's own file)."""

    product: str
    file: str
    """The file as errors name it ('rules/storefront.yaml')."""
    order: int
    port_data: bool
    """False for sections that only link elsewhere (the report says so)."""
    link: str = ""
    rules: tuple[FlowRule, ...] = ()
    layer: str = LAYER_DOCUMENT


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """The document the catalog transcribes (rules/roles.yaml ``source:``): every report names it."""

    title: str
    publisher: str
    reviewed: str
    """ISO date (YYYY-MM-DD) the catalog was last reviewed against the document."""
    revision: str | None = None
    """The document's own revision or date; None when the copy carries none."""
    url: str = ""


@dataclass(frozen=True)
class Catalog:
    """Every rule of the catalog and its site files, with the role vocabulary they use."""

    rules: tuple[FlowRule, ...]
    """In stable order: section order, then id (natural order)."""
    sections: tuple[ProductSection, ...]
    vocabulary: Vocabulary
    digest: str
    """'sha256:' + hex digest of the bytes of every file read, in load order."""
    files: tuple[Path, ...]
    """Every file read, in load order (roles file, rule files by name, then site files)."""
    extra: tuple[Path, ...] = ()
    """The site files among ``files`` (given with --rules)."""
    alternatives: tuple[AlternativeGroup, ...] = ()
    """Groups of rules that stand for one another (members present in ``rules`` only)."""
    layers: tuple[str, ...] = LAYERS
    """The layers whose rules are in ``rules`` (``--catalog document`` leaves the supplement out)."""
    source: SourceDocument | None = None
    """The document of the document layer, when the catalog's roles.yaml names it (``source:``)."""
    _by_id: dict[str, FlowRule] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({r.id: r for r in self.rules})

    @property
    def features(self) -> dict[str, Feature]:
        """The deployment features of the vocabulary, by id."""
        return self.vocabulary.features

    def by_id(self, rule_id: str) -> FlowRule | None:
        return self._by_id.get(rule_id)

    def rules_for(self, source_roles: Iterable[str], dest_roles: Iterable[str]) -> list[FlowRule]:
        """Rules whose source is played by one of source_roles and destination by one of dest_roles."""
        src = self.vocabulary.expand(source_roles)
        dst = self.vocabulary.expand(dest_roles)
        return [r for r in self.rules if r.source in src and r.destination in dst]

    def server_ports(self) -> frozenset[tuple[str, int]]:
        """(protocol, port) pairs that are a specific destination port of some rule.

        Small ranges count port by port; the dynamic range and ranges wider than
        SERVER_RANGE_MAX ports are a client's ports, no evidence of who serves (SPEC §3).
        """
        out: set[tuple[str, int]] = set()
        for r in self.rules:
            for lo, hi in r.ports:
                if (lo, hi) == DYNAMIC_RANGE or hi - lo + 1 > SERVER_RANGE_MAX:
                    continue
                for proto in r.protocols:
                    if proto != "icmp":
                        out.update((proto, p) for p in range(lo, hi + 1))
        return frozenset(out)

    def products_without_port_data(self) -> tuple[ProductSection, ...]:
        """Sections that only link elsewhere (the report names them and their link)."""
        return tuple(s for s in self.sections if not s.port_data)

    def products(self) -> tuple[str, ...]:
        return tuple(s.product for s in self.sections)


# --------------------------------------------------------------------------------------------
# Loading


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


class _Builder:
    """Collects roles, then sections and rules, from parsed sources; records every problem."""

    def __init__(self) -> None:
        self.problems = _Problems()
        self.roles: list[tuple[Role, _Source, str]] = []
        self.features: list[tuple[Feature, _Source, str]] = []

    def collect_features(self, src: _Source, entries: list[Any], path: str) -> None:
        seen = {f.id for f, _, _ in self.features}
        for i, entry in enumerate(entries):
            fpath = join_path(path, i)
            f = _check_fields(entry, fpath, _FEATURE_FIELDS, src, self.problems, "a feature")
            if f is None or "id" not in f or "title" not in f:
                continue
            fid = f["id"].strip()
            if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", fid):
                self.problems.add(src, join_path(fpath, "id"), f"feature id {fid!r}: use lower-case words and '-'")
                continue
            if fid in seen:
                self.problems.add(src, join_path(fpath, "id"), f"duplicate feature {fid!r}")
                continue
            seen.add(fid)
            self.features.append((Feature(fid, " ".join(f["title"].split()), f.get("description", "").strip(),
                                          tuple(f.get("detected_by", ()))), src, fpath))

    def check_detections(self, rule_ids: Iterable[str]) -> None:
        known = set(rule_ids)
        for feature, src, fpath in self.features:
            for j, rid in enumerate(feature.detected_by):
                if rid not in known:
                    self.problems.add(src, join_path(join_path(fpath, "detected_by"), j), f"no rule {rid!r}")

    def alternatives(self, src: _Source, entries: list[Any], rules: Mapping[str, FlowRule],
                     taken: dict[str, str]) -> list[AlternativeGroup]:
        out: list[AlternativeGroup] = []
        for i, entry in enumerate(entries):
            gpath = join_path("alternatives", i)
            f = _check_fields(entry, gpath, _ALTERNATIVE_FIELDS, src, self.problems, "an alternative group")
            if f is None or not all(k in f for k in ("id", "title", "members")):
                continue
            ok = True
            for j, rid in enumerate(f["members"]):
                mpath = join_path(join_path(gpath, "members"), j)
                if rid not in rules:
                    self.problems.add(src, mpath, f"no rule {rid!r}")
                    ok = False
                elif rid in taken:
                    self.problems.add(src, mpath, f"rule {rid!r} is already in group {taken[rid]!r}")
                    ok = False
            if len(set(f["members"])) < 2:
                self.problems.add(src, join_path(gpath, "members"), "a group needs two rules or more")
                ok = False
            if ok:
                taken.update((rid, f["id"]) for rid in f["members"])
                out.append(AlternativeGroup(f["id"].strip(), " ".join(f["title"].split()),
                                            tuple(f["members"]), f.get("note", "").strip()))
        return out

    def collect_roles(self, src: _Source, entries: list[Any], path: str) -> None:
        for i, entry in enumerate(entries):
            rpath = join_path(path, i)
            f = _check_fields(entry, rpath, _ROLE_FIELDS, src, self.problems, "a role")
            if f is None or "name" not in f:
                continue
            family = f.get("family")
            if family is not None and family not in FAMILIES:
                self.problems.add(src, join_path(rpath, "family"),
                                  f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
                family = None
            role = Role(name=" ".join(f["name"].split()), aliases=tuple(f.get("aliases", ())),
                        citrix=f.get("citrix", False), satisfied_by=tuple(f.get("satisfied_by", ())),
                        family=family, hostnames=tuple(f.get("hostnames", ())),
                        description=f.get("description", ""), feature=f.get("feature"))
            self.roles.append((role, src, rpath))

    def vocabulary(self) -> Vocabulary:
        # Roles register in file order (roles.yaml first): a later name or alias that clashes is the
        # later file's problem, never the bundled vocabulary's.
        owner: dict[str, tuple[str, str]] = {}  # normalised name -> (canonical, where)
        kept: list[tuple[Role, _Source, str]] = []
        for role, src, rpath in self.roles:
            where = f"{src.name}:{src.lines.line(rpath)}"
            key = normalise(role.name)
            if key in owner:
                self.problems.add(src, join_path(rpath, "name"),
                                  f"role {role.name!r} already defined as {owner[key][0]!r} "
                                  f"at {owner[key][1]}")
                continue
            owner[key] = (role.name, where)
            kept.append((role, src, rpath))
            for j, alias in enumerate(role.aliases):
                key = normalise(alias)
                if key in owner and owner[key][0] != role.name:
                    self.problems.add(src, join_path(join_path(rpath, "aliases"), j),
                                      f"alias {alias!r} already names role {owner[key][0]!r} "
                                      f"(at {owner[key][1]})")
                elif key not in owner:
                    owner[key] = (role.name, where)
        features = [f for f, _, _ in self.features]
        vocab = Vocabulary((r for r, _, _ in kept), features)
        fixed: list[Role] = []
        for role, src, rpath in kept:
            canon: list[str] = []
            for j, other in enumerate(role.satisfied_by):
                try:
                    canon.append(vocab.resolve(other))
                except UnknownRoleError as e:
                    self.problems.add(src, join_path(join_path(rpath, "satisfied_by"), j), str(e))
            feature = role.feature
            if feature is not None and feature not in vocab.features:
                self.problems.add(src, join_path(rpath, "feature"), _unknown_feature(feature, vocab))
                feature = None
            fixed.append(Role(role.name, role.aliases, role.citrix, tuple(canon), role.family,
                              role.hostnames, role.description, feature))
        return Vocabulary(fixed, features)

    def section(self, src: _Source, f: dict[str, Any], vocab: Vocabulary, default_order: int,
                seen_ids: dict[str, str]) -> ProductSection | None:
        port_data = f.get("port_data", True)
        rules: list[FlowRule] = []
        entries = f.get("rules", [])
        if not port_data and entries:
            self.problems.add(src, "rules", "a section without port data (port_data: false) has no rules")
        if not port_data and not f.get("link"):
            self.problems.add(src, "port_data", "a section without port data needs a 'link'")
        product = " ".join(str(f.get("product", "")).split())
        for i, entry in enumerate(entries):
            rule = self.rule(src, entry, join_path("rules", i), product, vocab, seen_ids)
            if rule is not None:
                rules.append(rule)
        if "product" not in f:
            return None
        rules.sort(key=lambda r: _natural_key(r.id))
        return ProductSection(product=product, file=src.name, order=f.get("order", default_order),
                              port_data=port_data, link=f.get("link", ""), rules=tuple(rules), layer=src.layer)

    def rule(self, src: _Source, entry: object, path: str, product: str, vocab: Vocabulary,
             seen_ids: dict[str, str]) -> FlowRule | None:
        f = _check_fields(entry, path, _RULE_FIELDS, src, self.problems, "a rule")
        if f is None:
            return None
        ok = all(k in f for k, (_, req) in _RULE_FIELDS.items() if req)
        rule_id = f.get("id", "").strip()
        where = f"{src.name}:{src.lines.line(path)}"
        if rule_id:
            if rule_id in seen_ids:
                self.problems.add(src, join_path(path, "id"),
                                  f"duplicate id {rule_id!r} (first at {seen_ids[rule_id]})")
                ok = False
            else:
                seen_ids[rule_id] = where
        ends: dict[str, str] = {}
        for end in ("source", "destination"):
            if end in f:
                try:
                    ends[end] = vocab.resolve(f[end])
                except UnknownRoleError as e:
                    self.problems.add(src, join_path(path, end), str(e))
                    ok = False
        protocols: list[str] = []
        for j, p in enumerate(f.get("protocols", ())):
            proto = p.strip().lower()
            if proto not in PROTOCOLS:
                self.problems.add(src, join_path(join_path(path, "protocols"), j),
                                  f"unknown protocol {p!r} (known: {', '.join(PROTOCOLS)})")
                ok = False
            elif proto not in protocols:
                protocols.append(proto)
        if "protocols" in f and not f["protocols"]:
            self.problems.add(src, join_path(path, "protocols"), "at least one protocol is needed")
            ok = False
        ports = _parse_ports(f.get("ports", []), join_path(path, "ports"), src, self.problems)
        if len(ports) != len(f.get("ports", [])):
            ok = False
        if protocols == ["icmp"] and f.get("ports"):
            self.problems.add(src, join_path(path, "ports"), "ports given for an icmp-only rule")
            ok = False
        feature = f.get("feature", "").strip()
        if feature and feature not in vocab.features:
            self.problems.add(src, join_path(path, "feature"), _unknown_feature(feature, vocab))
            ok = False
        apps, apps_on, apps_ok = self.apps(src, f, path, protocols)
        ok = ok and apps_ok
        citation = self.citation(src, f, path)
        if src.layer == LAYER_SUPPLEMENT and citation is None and not f.get("uncited", "").strip():
            self.problems.add(src, path, "a supplement rule needs a 'citation' (title, url) or 'uncited' (why none)")
            ok = False
        if citation is not None and f.get("uncited"):
            self.problems.add(src, join_path(path, "uncited"), "a rule has a citation or says why it has none, "
                                                               "not both")
            ok = False
        if not ok:
            return None
        return FlowRule(
            id=rule_id, product=product, source=ends["source"], destination=ends["destination"],
            protocols=tuple(protocols), ports=ports, type=f["type"].strip(),
            description=f["description"].strip(),
            bidirectional=f.get("bidirectional", False), configurable=f.get("configurable", False),
            one_way=f.get("one_way", False), loopback_only=f.get("loopback_only", False),
            hostnames=tuple(f.get("hostnames", ())), note=f.get("note", "").strip(),
            seed_row=f.get("seed_row", "").strip(), source_file=where, layer=src.layer, feature=feature,
            citation=citation, uncited=f.get("uncited", "").strip(), apps=apps, apps_on=apps_on,
        )

    def apps(self, src: _Source, f: Mapping[str, Any], path: str,
             protocols: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
        """``apps`` (apps.PROTOCOLS names) and ``apps_on`` (some of the rule's transports), SPEC §6."""
        ok = True
        names: list[str] = []
        for j, name in enumerate(f.get("apps", ())):
            app = name.strip().lower()
            if app not in APP_PROTOCOLS:
                close = difflib.get_close_matches(app, APP_PROTOCOLS, n=1)
                self.problems.add(src, join_path(join_path(path, "apps"), j),
                                  f"unknown application protocol {name!r}{did_you_mean(close)} "
                                  f"(known: {', '.join(APP_PROTOCOLS)})")
                ok = False
            elif app not in names:
                names.append(app)
        if "apps" in f and not f["apps"]:
            self.problems.add(src, join_path(path, "apps"), "an empty apps list: leave 'apps' out to refuse nothing")
            ok = False
        on: list[str] = []
        for j, name in enumerate(f.get("apps_on", ())):
            proto = name.strip().lower()
            if proto not in protocols or proto == "icmp":
                self.problems.add(src, join_path(join_path(path, "apps_on"), j),
                                  f"apps_on {name!r} is not one of the rule's transports "
                                  f"({', '.join(p for p in protocols if p != 'icmp') or 'none'})")
                ok = False
            elif proto not in on:
                on.append(proto)
        if f.get("apps_on") and not f.get("apps"):
            self.problems.add(src, join_path(path, "apps_on"), "apps_on without apps")
            ok = False
        if names and protocols == ["icmp"]:
            self.problems.add(src, join_path(path, "apps"), "apps given for an icmp-only rule")
            ok = False
        return tuple(names), tuple(on), ok

    def citation(self, src: _Source, f: Mapping[str, Any], path: str) -> Citation | None:
        if "citation" not in f:
            return None
        cpath = join_path(path, "citation")
        c = _check_fields(f["citation"], cpath, _CITATION_FIELDS, src, self.problems, "a citation")
        if c is None or "title" not in c or "url" not in c:
            return None
        url = c["url"].strip()
        if not url.startswith("https://"):
            self.problems.add(src, join_path(cpath, "url"), f"expected an https:// address, got {url!r}")
            return None
        return Citation(" ".join(c["title"].split()), url, " ".join(c.get("section", "").split()))


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


def _is_roles_file(data: object, path: Path) -> bool:
    return path.name == ROLES_FILE or (isinstance(data, dict) and "roles" in data
                                       and "product" not in data and "rules" not in data)


def _is_alternatives_file(data: object, path: Path) -> bool:
    return path.name == ALTERNATIVES_FILE or (isinstance(data, dict) and "alternatives" in data
                                              and "product" not in data and "rules" not in data)


def _layer(path: Path, is_extra: bool) -> str:
    if is_extra:
        return LAYER_SITE
    return LAYER_SUPPLEMENT if path.parent.name == SUPPLEMENT_DIR else LAYER_DOCUMENT


def _build(core: Sequence[Path], extra: Sequence[Path], base_dir: Path | None,
           document_only: bool = False) -> Catalog:
    """Load core files (a rules dir's) then site files; raise one CatalogError listing everything.

    ``document_only``: leave the supplement's rules out (its roles stay in the vocabulary, so a
    roles.yaml that names them still reads)."""
    raw_problems: list[str] = []
    sources: list[_Source] = []
    for path, is_extra in [*((p, False) for p in core), *((p, True) for p in extra)]:
        src = _read(path, _display_name(path, base_dir), raw_problems)
        if src is None:
            continue
        src.is_extra = is_extra
        src.layer = _layer(path, is_extra)
        sources.append(src)
    b = _Builder()
    b.problems.items.extend(raw_problems)
    parsed: list[_Source] = []
    for src in sources:
        try:
            src.data, src.lines = load_yaml_text(src.raw, src.name)
        except YamlError as e:
            b.problems.items.extend(e.problems)
            continue
        src.is_roles = _is_roles_file(src.data, src.path)
        src.is_alternatives = not src.is_roles and _is_alternatives_file(src.data, src.path)
        parsed.append(src)
    fields: dict[int, dict[str, Any]] = {}
    source: SourceDocument | None = None
    for k, src in enumerate(parsed):
        spec, what = ((_ROLES_FILE_FIELDS, "a roles file") if src.is_roles else
                      (_ALTERNATIVES_FILE_FIELDS, "an alternatives file") if src.is_alternatives else
                      (_FILE_FIELDS, "a rule file"))
        f = _check_fields(src.data, "", spec, src, b.problems, what)
        if f is None:
            continue
        fields[k] = f
        if "features" in f:
            b.collect_features(src, f["features"], "features")
        if "source" in f:
            source = _source_document(src, f["source"], b.problems) or source
    for k, src in enumerate(parsed):
        if k in fields and "roles" in fields[k]:
            b.collect_roles(src, fields[k]["roles"], "roles")
    vocab = b.vocabulary()
    sections: list[ProductSection] = []
    seen_ids: dict[str, str] = {}
    products: dict[str, str] = {}
    for k, src in enumerate(parsed):
        if src.is_roles or src.is_alternatives or k not in fields:
            continue
        default_order = (10_000 if src.is_extra else 5_000 if src.layer == LAYER_SUPPLEMENT else 1_000) + k
        section = b.section(src, fields[k], vocab, default_order, seen_ids)
        if section is None:
            continue
        key = normalise(section.product)
        if key in products:
            b.problems.add(src, "product", f"product {section.product!r} also in {products[key]}")
        products[key] = src.name
        sections.append(section)
    by_id = {r.id: r for s in sections for r in s.rules}
    b.check_detections(by_id)
    groups: list[AlternativeGroup] = []
    taken: dict[str, str] = {}
    for k, src in enumerate(parsed):
        if src.is_alternatives and k in fields:
            groups.extend(b.alternatives(src, fields[k]["alternatives"], by_id, taken))
    if b.problems.items:
        raise CatalogError(b.problems.items)
    layers = tuple(layer for layer in LAYERS if not (document_only and layer == LAYER_SUPPLEMENT))
    if document_only:
        sections = [s for s in sections if s.layer != LAYER_SUPPLEMENT]
        kept_ids = {r.id for s in sections for r in s.rules}
        groups = [AlternativeGroup(g.id, g.title, kept, g.note) for g in groups
                  if len(kept := tuple(m for m in g.members if m in kept_ids)) >= 2]
    sections.sort(key=lambda s: (s.order, s.product))
    digest = hashlib.sha256(b"".join(s.raw for s in sources)).hexdigest()
    return Catalog(rules=tuple(r for s in sections for r in s.rules), sections=tuple(sections),
                   vocabulary=vocab, digest=f"sha256:{digest}", files=tuple(s.path for s in sources),
                   extra=tuple(s.path for s in sources if s.is_extra), alternatives=tuple(groups),
                   layers=layers, source=source)


def catalog_files(rules_dir: Path) -> list[Path]:
    """The files of a catalog folder: roles.yaml first, then every other *.yaml / *.yml by name."""
    if not rules_dir.is_dir():
        raise CatalogError([f"{rules_dir}: not a catalog folder"])
    files = sorted(p for p in rules_dir.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    roles = [p for p in files if p.name == ROLES_FILE]
    if not roles:
        raise CatalogError([f"{rules_dir}: no {ROLES_FILE} (the role vocabulary) in the catalog folder"])
    supplement = rules_dir / SUPPLEMENT_DIR
    extra = sorted(p for p in supplement.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml")) \
        if supplement.is_dir() else []
    return roles + [p for p in files if p.name != ROLES_FILE] + extra


def load_catalog(rules_dir: Path | None = None, extra: Sequence[Path] = (), *,
                 document_only: bool = False) -> Catalog:
    """Load a catalog folder (default: the bundled rules/, with its supplement/) plus site rule files.

    ``document_only`` (``--catalog document``): the seed document's rules and the site's, without
    the supplement. Raises CatalogError listing every problem of every file.
    """
    if rules_dir is None:
        from auditor.resources import rules_dir as bundled

        rules_dir = bundled()
    return _build(catalog_files(rules_dir), extra, rules_dir, document_only)


def validate_files(paths: Sequence[Path], base: Catalog | None) -> list[str]:
    """Every problem in ``paths`` (as ``file:line field: message``); [] when they are fine.

    With a base catalog the files are checked as site files on top of it (roles and ids of the
    base count; a file that is part of the base is checked as part of it). Without one they are
    checked as a catalog of their own, with the roles.yaml among them or beside the first.
    """
    try:
        if base is not None:
            base_files = [p for p in base.files if p not in base.extra]
            known = {p.resolve() for p in base_files}
            extra = [*base.extra, *(p for p in paths if p.resolve() not in known)]
            base_dir = base_files[0].parent if base_files else None
            _build(base_files, extra, base_dir)
        else:
            core = list(paths)
            if not any(p.name == ROLES_FILE for p in core) and core:
                beside = core[0].parent / ROLES_FILE
                if beside.is_file():
                    core.insert(0, beside)
            roles = [p for p in core if p.name == ROLES_FILE]
            _build(core, (), roles[0].parent if roles else None)
    except CatalogError as e:
        return e.problems
    return []


# --------------------------------------------------------------------------------------------
# Export (renderers return str; the CLI writes files)


def _port_items(rule: FlowRule) -> list[int | str]:
    return [lo if lo == hi else f"{lo}-{hi}" for lo, hi in rule.ports]


def rule_record(rule: FlowRule) -> dict[str, Any]:
    """A rule as a JSON-ready dict: protocols and ports as lists (ports as ints and 'lo-hi')."""
    return {"id": rule.id, "product": rule.product, "source": rule.source, "destination": rule.destination,
            "protocols": list(rule.protocols), "ports": _port_items(rule), "type": rule.type,
            "description": rule.description, **{k: getattr(rule, k) for k in _FLAGS},
            "hostnames": list(rule.hostnames), "note": rule.note, "seed_row": rule.seed_row,
            "source_file": rule.source_file, "layer": rule.layer, "feature": rule.feature,
            "citation": citation_record(rule.citation), "uncited": rule.uncited,
            "apps": list(rule.apps), "apps_on": list(rule.apps_on)}


def citation_record(c: Citation | None) -> dict[str, str] | None:
    return None if c is None else {"title": c.title, "section": c.section, "url": c.url}


def citation_text(rule: FlowRule) -> str:
    """One line: where the rule comes from ('title, section <url>'), or why nothing is cited."""
    c = rule.citation
    if c is not None:
        return f"{c.title}{', ' + c.section if c.section else ''} <{c.url}>"
    if rule.uncited:
        return f"no public Citrix page found: {rule.uncited}"
    return ""


def export_json(rules: Iterable[FlowRule]) -> str:
    return json.dumps([rule_record(r) for r in rules], indent=2, ensure_ascii=False) + "\n"


def export_csv(rules: Iterable[FlowRule]) -> str:
    """One row per rule and protocol (the seed's promise); ports like '80,443' or '49152-65535'."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rules:
        rec = rule_record(r)
        for proto in r.protocols:
            row = {k: rec.get(k, "") for k in EXPORT_FIELDS}
            row.update(protocol=proto, ports=r.ports_text, hostnames=" ".join(r.hostnames), citation=citation_text(r),
                       apps=" ".join(r.apps), apps_on=" ".join(r.apps_on),
                       **{k: str(getattr(r, k)).lower() for k in _FLAGS})
            w.writerow(row)
    return buf.getvalue()
