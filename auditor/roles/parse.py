"""Parsing roles.yaml (``roles:``, ``features:``, ``vantage:``) and ``--vantage`` options into a RoleMap;
every error is a RolesError naming the file and line."""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import re
from pathlib import Path

import yaml

from auditor.errors import RolesError
from auditor.roles.entries import FeatureDecl, RoleEntry, RoleVocabulary, SpanKind, VantageEntry
from auditor.roles.lookup import RoleMap
from auditor.yamlsafe import YamlError, compose_yaml, read_config

_NAME_RE = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,62})?)(\.[a-z0-9_]([a-z0-9_-]{0,62})?)*\.?$")
_TOP_KEYS = ("roles", "features", "vantage")


def _looks_like_ip(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", text)) or ":" in text


def _parse_span(text: str, subject: str) -> tuple[SpanKind, int, int, int, str] | None:
    """(kind, lo, hi, version, read_as) for an address, CIDR or range; None when the text is none
    of these. Raises ValueError (message without location) when it looks like one but is invalid."""
    prefix, slash, _ = text.partition("/")
    if slash and _looks_like_ip(prefix.strip()):  # not a role such as 'SD-WAN SE/EE'
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError as e:
            raise ValueError(f"invalid network {text!r}{subject}: {e}") from None
        net = iface.network
        read_as = str(net) if iface.ip != net.network_address else ""
        return "network", int(net.network_address), int(net.broadcast_address), net.version, read_as
    a, dash, b = text.partition("-")
    if dash and (_looks_like_ip(a.strip()) or _looks_like_ip(b.strip())):
        try:
            lo, hi = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
        except ValueError:
            raise ValueError(f"invalid address range {text!r}{subject}") from None
        if lo.version != hi.version:
            raise ValueError(f"range {text!r} mixes IPv4 and IPv6")
        if int(lo) > int(hi):
            raise ValueError(f"range {text!r} is reversed (first address after last)")
        return "range", int(lo), int(hi), lo.version, ""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        if _looks_like_ip(text):
            raise ValueError(f"invalid address {text!r}{subject}") from None
        return None
    return "address", int(ip), int(ip), ip.version, ""


def _parse_entry(role: str, text: str, line: int, where: str) -> RoleEntry:
    text = text.strip()
    try:
        span = _parse_span(text, f" for role {role!r}")
    except ValueError as e:
        raise RolesError(f"{where}: {e}") from None
    if span is not None:
        kind, lo, hi, version, read_as = span
        return RoleEntry(role, text, line, kind, lo, hi, version, read_as)
    if not _NAME_RE.match(text.lower()) or len(text) > 253:
        raise RolesError(f"{where}: {text!r} for role {role!r} is not an address, network, range or host name")
    return RoleEntry(role, text.lower().rstrip("."), line, "name")


def parse_vantage(text: str, where: str, vocabulary: RoleVocabulary, line: int = 0) -> VantageEntry:
    """One vantage entry (an address, CIDR, range or role name), from roles.yaml or `--vantage`.
    Errors are RolesError naming `where` (file:line, or the option)."""
    text = text.strip()
    if not text:
        raise RolesError(f"{where}: empty vantage entry")
    try:
        span = _parse_span(text, " in vantage")
    except ValueError as e:
        raise RolesError(f"{where}: {e}") from None
    if span is not None:
        kind, lo, hi, version, read_as = span
        return VantageEntry(kind, text, line, lo, hi, version, read_as=read_as)
    role = vocabulary.lookup(text)
    if role is None:
        close = vocabulary.suggest(text, 3)
        hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""
        raise RolesError(f"{where}: vantage {text[:100]!r} is neither an address, network or range nor a known "
                         f"role{hint} (see `pcap-audit catalog roles`)")
    return VantageEntry("role", text, line, role=role)


def _items(node: yaml.Node) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else [node]


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _scalar(item: yaml.Node, path: str, what: str) -> tuple[str, int]:
    line = item.start_mark.line + 1
    if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
        raise RolesError(f"{path}:{line}: {what}")
    return str(item.value).strip(), line


def _parse_features(node: yaml.Node, path: str, vocabulary: RoleVocabulary) -> tuple[FeatureDecl, ...]:
    if _is_null(node):
        return ()
    if isinstance(node, yaml.MappingNode):
        raise RolesError(f"{path}:{node.start_mark.line + 1}: 'features' must be a list of feature ids")
    out: dict[str, FeatureDecl] = {}
    for item in _items(node):
        text, line = _scalar(item, path, "each feature must be a feature id (a string)")
        fid = vocabulary.lookup_feature(text)
        if fid is None:
            known = {f.lower(): f for f in vocabulary.feature_names()}
            close = [known[c] for c in difflib.get_close_matches(text.lower(), list(known), n=3, cutoff=0.5)]
            hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""
            raise RolesError(f"{path}:{line}: unknown feature {text[:100]!r}{hint} "
                             "(see `pcap-audit catalog features`)")
        if fid in out:
            raise RolesError(f"{path}:{line}: feature {fid!r} is listed twice (first at line {out[fid].line})")
        out[fid] = FeatureDecl(fid, text, line)
    return tuple(out.values())


def _parse_vantage_list(node: yaml.Node, path: str, vocabulary: RoleVocabulary) -> tuple[VantageEntry, ...]:
    if _is_null(node):
        return ()
    if isinstance(node, yaml.MappingNode):
        raise RolesError(f"{path}:{node.start_mark.line + 1}: 'vantage' must be a list of addresses, "
                         "networks, ranges or roles")
    out: dict[tuple[str, int, int, int, str], VantageEntry] = {}
    for item in _items(node):
        text, line = _scalar(item, path, "each vantage entry must be an address, network, range or role")
        v = parse_vantage(text, f"{path}:{line}", vocabulary, line)
        key = (v.kind, v.lo, v.hi, v.version, v.role)
        if key in out:
            raise RolesError(f"{path}:{line}: vantage {text!r} is listed twice (first at line {out[key].line})")
        out[key] = v
    return tuple(out.values())


def _parse_role_entries(node: yaml.Node, path: str, vocabulary: RoleVocabulary) -> list[RoleEntry]:
    if not isinstance(node, yaml.MappingNode):
        raise RolesError(f"{path}:{node.start_mark.line + 1}: 'roles' must be a mapping of role name to a "
                         "list of hosts")
    entries: list[RoleEntry] = []
    seen_roles: dict[str, tuple[str, int]] = {}
    for k, v in node.value:
        line = k.start_mark.line + 1
        where = f"{path}:{line}"
        if not isinstance(k, yaml.ScalarNode) or not k.value.strip():
            raise RolesError(f"{where}: a role name must be a string")
        written = k.value
        canonical = vocabulary.lookup(written)
        if canonical is None:
            close = vocabulary.suggest(written, 3)
            hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""
            raise RolesError(f"unknown role {written!r} at {where}{hint} (see `pcap-audit catalog roles`)")
        if canonical in seen_roles:
            w0, l0 = seen_roles[canonical]
            raise RolesError(f"{where}: role {canonical!r} is given twice ({w0!r} at line {l0} and "
                             f"{written!r} at line {line}); list its hosts once")
        seen_roles[canonical] = (written, line)
        if isinstance(v, yaml.MappingNode):
            raise RolesError(f"{where}: hosts of role {written!r} must be a list, not a mapping")
        if isinstance(v, yaml.ScalarNode) and v.value in ("", "~", "null"):
            raise RolesError(f"{where}: role {written!r} lists no hosts")
        seen_text: set[str] = set()
        for item in _items(v):
            text, iline = _scalar(item, path, f"each host of role {written!r} must be a non-empty string")
            entry = _parse_entry(canonical, text, iline, f"{path}:{iline}")
            if entry.text in seen_text:
                raise RolesError(f"{path}:{iline}: {entry.text!r} is listed twice under role {written!r}")
            seen_text.add(entry.text)
            entries.append(entry)
    return entries


def parse_roles(text: str, path: str, vocabulary: RoleVocabulary) -> RoleMap:
    """Parse roles.yaml text (schema 1: `roles:` only; schema 2 adds `features:` and `vantage:`).
    Errors name the file and line (RolesError)."""
    digest = "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    try:
        root = compose_yaml(text, path)  # no aliases, bounded nesting (auditor/yamlsafe.py)
    except YamlError as e:
        raise RolesError(e.problems[0]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RolesError(f"{path}{where}: unreadable YAML: {problem}") from None
    if root is None:
        raise RolesError(f"{path}: empty roles file (expected a 'roles:' mapping)")
    if not isinstance(root, yaml.MappingNode):
        raise RolesError(f"{path}:{root.start_mark.line + 1}: expected a mapping with a 'roles:' key")
    sections: dict[str, yaml.Node] = {}
    for k, v in root.value:
        line = k.start_mark.line + 1
        if not isinstance(k, yaml.ScalarNode):
            raise RolesError(f"{path}:{line}: unexpected key")
        if k.value not in _TOP_KEYS:
            raise RolesError(f"{path}:{line}: unknown key {k.value!r} (expected 'roles', 'features' or 'vantage')")
        if k.value in sections:
            raise RolesError(f"{path}:{line}: duplicate key {k.value!r}")
        sections[k.value] = v
    if "roles" not in sections:
        raise RolesError(f"{path}:1: 'roles' must be a mapping of role name to a list of hosts")
    entries = _parse_role_entries(sections["roles"], path, vocabulary)
    features = _parse_features(sections["features"], path, vocabulary) if "features" in sections else ()
    vantage = _parse_vantage_list(sections["vantage"], path, vocabulary) if "vantage" in sections else ()
    del root, sections  # the nodes go before the index is built: the peak of a file of millions of entries
    return RoleMap(path=path, digest=digest, entries=tuple(entries), features=features, vantage=vantage)


def load_roles(path: Path, vocabulary: RoleVocabulary) -> RoleMap:
    """Read and parse a roles file (read-only), at most ``max_config_bytes()`` of it."""
    try:
        raw = read_config(path, str(path))
    except YamlError as e:
        cause = e.__cause__
        if isinstance(cause, OSError):
            raise RolesError(f"{path}: cannot read roles file: {cause.strerror or cause}") from None
        raise RolesError(e.problems[0]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RolesError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parse_roles(text, str(path), vocabulary)
