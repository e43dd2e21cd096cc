"""Loading: rules/ (roles.yaml, the rule files, supplement/) and site files -> Catalog.

Loading collects every problem of every file (pySigma's collect-errors mode) and raises one
CatalogError at the end, each problem formatted ``rules/storefront.yaml:41 rules[3].ports: ...``.
Site files given with ``--rules`` use the same schema and may add roles of their own.
"""

from __future__ import annotations

import difflib
import hashlib
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from auditor import cache
from auditor.apps import PROTOCOLS as APP_PROTOCOLS
from auditor.catalog.fields import (
    _ALTERNATIVE_FIELDS,
    _ALTERNATIVES_FILE_FIELDS,
    _CITATION_FIELDS,
    _FEATURE_FIELDS,
    _FILE_FIELDS,
    _ROLE_FIELDS,
    _ROLES_FILE_FIELDS,
    _RULE_FIELDS,
    _check_fields,
    _display_name,
    _natural_key,
    _parse_ports,
    _Problems,
    _read,
    _Source,
    _source_document,
    _unknown_feature,
)
from auditor.catalog.model import AlternativeGroup, Catalog, ProductSection, SourceDocument
from auditor.catalog.rule import LAYER_DOCUMENT, LAYER_SITE, LAYER_SUPPLEMENT, LAYERS, Citation, FlowRule
from auditor.catalog.vocabulary import Feature, Role, UnknownRoleError, Vocabulary, did_you_mean, normalise
from auditor.errors import CatalogError
from auditor.yamlsafe import YamlError, join_path, load_yaml_text

PROTOCOLS = ("tcp", "udp", "icmp")
FAMILIES = ("citrix",)
ROLES_FILE = "roles.yaml"
ALTERNATIVES_FILE = "alternatives.yaml"
SUPPLEMENT_DIR = "supplement"


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
    roles.yaml that names them still reads). A catalog built before from the same files by the same
    code is taken from the cache (auditor/cache.py); only a catalog without problems is kept there."""
    raw_problems: list[str] = []
    sources: list[_Source] = []
    for path, is_extra in [*((p, False) for p in core), *((p, True) for p in extra)]:
        src = _read(path, _display_name(path, base_dir), raw_problems)
        if src is None:
            continue
        src.is_extra = is_extra
        src.layer = _layer(path, is_extra)
        sources.append(src)
    name = None
    if not raw_problems:
        # The same files, bytes and code as a run before: its catalog (auditor/cache.py).
        name = cache.key("catalog", yaml.__version__, str(document_only), str(base_dir),
                         *(x for s in sources for x in (str(s.path), s.name, str(s.is_extra), s.raw)))
        kept = _cached(name)
        if kept is not None:
            return kept
    catalog = _parse(sources, raw_problems, document_only)
    if name is not None:
        cache.store(name, pickle.dumps(catalog, protocol=pickle.HIGHEST_PROTOCOL))
    return catalog


def _cached(name: str) -> Catalog | None:
    data = cache.load(name)
    if data is None:
        return None
    try:
        catalog = pickle.loads(data)
    except Exception:  # damaged: built again (and stored again) instead
        return None
    return catalog if isinstance(catalog, Catalog) else None


def _parse(sources: list[_Source], raw_problems: list[str], document_only: bool) -> Catalog:
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
