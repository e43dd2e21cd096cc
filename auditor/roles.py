"""roles.yaml -> which host plays which Citrix role (SPEC §2).

An entry is an address, a CIDR, an inclusive range, or a host name / wildcard pattern. Names are
tied to addresses by the capture's own name evidence (DNS answers, SNI, Host), which the caller
passes in; this module does no I/O beyond reading the roles file.

The most specific entry decides, as in routing: a name tied to the address beats every address
entry (an exact name beats a wildcard, a longer wildcard suffix a shorter one); among address
entries the one covering fewer addresses wins. Entries of equal specificity give the union of
their roles. `auditor.roles_lint` checks a parsed file against what a capture showed.
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import heapq
import ipaddress
import re
import socket
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import yaml

from auditor.errors import RolesError
from auditor.yamlsafe import YamlError, compose_yaml, read_config

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

EntryKind = Literal["address", "network", "range", "name"]
VantageKind = Literal["address", "network", "range", "role"]
SpanKind = Literal["address", "network", "range"]

_NAME_RE = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,62})?)(\.[a-z0-9_]([a-z0-9_-]{0,62})?)*\.?$")
_TOP_KEYS = ("roles", "features", "vantage")
_CACHE_MAX = 1 << 16
"""Addresses RoleMap remembers the decision of (a lookup is a bisection: the cache only saves repeats)."""


class RoleVocabulary(Protocol):
    """What this module needs from the catalog's vocabulary."""

    def lookup(self, name: str) -> str | None:
        """Canonical role for a role name or alias (case-insensitive), or None."""
        ...

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Up to n canonical roles close to an unknown name."""
        ...

    def lookup_feature(self, name: str) -> str | None:
        """Canonical feature id for a feature name (case-insensitive), or None."""
        ...

    def feature_names(self) -> Sequence[str]:
        """Every feature id, for suggestions."""
        ...


def name_matches(pattern: str, name: str) -> bool:
    """`*.nssvc.net` matches every name under nssvc.net at any depth (as Citrix's lists mean it);
    a plain name matches itself. Case-insensitive; a trailing dot is ignored."""
    pattern = pattern.lower().rstrip(".")
    name = name.lower().rstrip(".")
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


@dataclass(frozen=True, slots=True)
class RoleEntry:
    """One line of roles.yaml under one role."""

    role: str
    """Canonical role name."""
    text: str
    """The entry as written (names: lower case, without a trailing dot)."""
    line: int
    """1-based line in the roles file."""
    kind: EntryKind
    """'address', 'network', 'range' or 'name'."""
    lo: int = 0
    """First address of the entry as an int (address, network and range kinds)."""
    hi: int = 0
    """Last address, inclusive."""
    version: int = 0
    """4 or 6 for address kinds."""
    read_as: str = ""
    """For a CIDR written with host bits set (10.0.1.5/24): the network it was read as (10.0.1.0/24)."""

    @property
    def single_host(self) -> bool:
        return self.kind == "address" or (self.kind == "name" and "*" not in self.text)

    @property
    def size(self) -> int:
        """Number of addresses covered (address kinds); what decides between overlapping entries."""
        return self.hi - self.lo + 1


@dataclass(frozen=True, slots=True)
class FeatureDecl:
    """One feature listed under `features:` (the deployment uses it)."""

    id: str
    """Canonical feature id."""
    text: str
    """As written."""
    line: int
    """1-based line in the roles file."""


@dataclass(frozen=True, slots=True)
class VantageEntry:
    """One place the capture was taken: from `vantage:` or a `--vantage` option."""

    kind: VantageKind
    """'address', 'network', 'range' or 'role'."""
    text: str
    """As written."""
    line: int
    """1-based line in the roles file; 0 for a command-line option."""
    lo: int = 0
    """First address as an int (address kinds)."""
    hi: int = 0
    """Last address, inclusive (address kinds)."""
    version: int = 0
    """4 or 6 (address kinds)."""
    role: str = ""
    """Canonical role (role kind): every host holding it is in the vantage."""
    read_as: str = ""
    """For a CIDR written with host bits set: the network it was read as."""

    def contains(self, address: str) -> bool:
        """Whether an address is inside this entry. Always False for a role entry: its hosts are
        the ones the audit finds holding the role."""
        if self.kind == "role":
            return False
        key = address_key(address)
        return key is not None and key[0] == self.version and self.lo <= key[1] <= self.hi


def address_key(address: str) -> tuple[int, int] | None:
    """(IP version, address as int), or None when the text is not an address."""
    try:  # the common case, several times faster than ipaddress
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except (OSError, ValueError):
        pass
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return ip.version, int(ip)


# ------------------------------------------------------------------------------------------ lookup


def name_specificity(entry: RoleEntry) -> tuple[int, int]:
    """Specificity of a name entry (higher wins): an exact name beats every wildcard; a wildcard
    with more labels in its suffix beats one with fewer (`*.eu.cloud.com` over `*.cloud.com`)."""
    if entry.text.startswith("*."):
        return 0, entry.text.count(".")
    return 1, 0


class _Index:
    """Per IP version, the address space cut into elementary intervals at every entry's bounds,
    each with the entries that decide it; name entries by exact name and by wildcard suffix."""

    def __init__(self, entries: Sequence[RoleEntry]) -> None:
        self.starts: dict[int, list[int]] = {}
        self.deciders: dict[int, list[tuple[RoleEntry, ...]]] = {}
        by_version: dict[int, list[int]] = defaultdict(list)
        self.exact: dict[str, list[RoleEntry]] = defaultdict(list)
        self.wild: dict[str, list[RoleEntry]] = defaultdict(list)
        for i, e in enumerate(entries):
            if e.kind == "name":
                if e.text.startswith("*."):
                    self.wild[e.text[2:]].append(e)
                else:
                    self.exact[e.text].append(e)
            else:
                by_version[e.version].append(i)
        for version, idxs in by_version.items():
            self.starts[version], self.deciders[version] = _partition(entries, idxs)

    def by_address(self, version: int, value: int) -> tuple[RoleEntry, ...]:
        starts = self.starts.get(version)
        if not starts:
            return ()
        i = bisect.bisect_right(starts, value) - 1
        return self.deciders[version][i] if i >= 0 else ()

    def name_hits(self, name: str) -> Iterator[RoleEntry]:
        """Every name entry a name matches."""
        name = name.lower().rstrip(".")
        yield from self.exact.get(name, ())
        if not self.wild:
            return
        dot = name.find(".")
        while dot >= 0:
            yield from self.wild.get(name[dot + 1:], ())
            dot = name.find(".", dot + 1)

    def by_names(self, names: Iterable[str]) -> tuple[RoleEntry, ...]:
        best: tuple[int, int] = (-1, -1)
        found: dict[int, RoleEntry] = {}
        for n in names:
            for e in self.name_hits(n):
                k = name_specificity(e)
                if k > best:
                    best, found = k, {}
                if k == best:
                    found[id(e)] = e
        return tuple(sorted(found.values(), key=lambda e: e.line))


def _partition(entries: Sequence[RoleEntry], idxs: list[int]) -> tuple[list[int], list[tuple[RoleEntry, ...]]]:
    """Sweep the sorted bounds of the entries once, keeping the active entries grouped by size with
    a heap of sizes: each interval is decided by the group of the smallest size. Adjacent
    intervals with the same deciders are merged. O(n log n) plus the size of the tied groups."""
    opening: dict[int, list[int]] = defaultdict(list)
    closing: dict[int, list[int]] = defaultdict(list)
    for i in idxs:
        opening[entries[i].lo].append(i)
        closing[entries[i].hi + 1].append(i)
    active: dict[int, dict[int, None]] = {}  # size -> active entry indexes (ordered)
    sizes: list[int] = []  # heap; may hold sizes whose group has gone (skipped lazily)
    starts: list[int] = []
    deciders: list[tuple[RoleEntry, ...]] = []
    interned: dict[tuple[int, ...], tuple[RoleEntry, ...]] = {(): ()}
    previous: tuple[int, ...] | None = None
    for bound in sorted(opening.keys() | closing.keys()):
        for i in closing.get(bound, ()):
            size = entries[i].size
            group = active[size]
            del group[i]
            if not group:
                del active[size]
        for i in opening.get(bound, ()):
            size = entries[i].size
            if size not in active:
                active[size] = {}
                heapq.heappush(sizes, size)
            active[size][i] = None
        while sizes and sizes[0] not in active:
            heapq.heappop(sizes)
        key = tuple(sorted(active[sizes[0]])) if sizes else ()
        if key == previous:
            continue
        previous = key
        starts.append(bound)
        hit = interned.get(key)
        if hit is None:
            hit = interned[key] = tuple(entries[i] for i in key)
        deciders.append(hit)
    return starts, deciders


@dataclass(frozen=True, eq=False)
class RoleMap:
    """The parsed roles file: resolve addresses (and their names) to canonical roles."""

    path: str
    """Where it was read from (as given)."""
    digest: str
    """sha256: of the file's text."""
    entries: tuple[RoleEntry, ...]
    """Every entry, in file order."""
    features: tuple[FeatureDecl, ...] = ()
    """Deployment features in use (`features:`)."""
    vantage: tuple[VantageEntry, ...] = ()
    """Where the capture was taken (`vantage:`)."""
    _index: _Index = field(init=False, repr=False)
    _cache: dict[tuple[str, tuple[str, ...]], tuple[tuple[RoleEntry, ...], frozenset[str]]] = field(
        init=False, repr=False, default_factory=dict)
    """(address, names) -> its deciding entries and roles; bounded (_CACHE_MAX), as an audit may look
    up millions of distinct addresses once each."""
    _decisions: dict[tuple[RoleEntry, ...], tuple[tuple[RoleEntry, ...], frozenset[str]]] = field(
        init=False, repr=False, default_factory=dict)
    """Deciding entries -> the one copy of their result that every address they decide shares."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "_index", _Index(self.entries))

    @property
    def roles(self) -> list[str]:
        """Mapped roles in file order, without repeats."""
        return list(dict.fromkeys(e.role for e in self.entries))

    @property
    def feature_ids(self) -> frozenset[str]:
        """Canonical ids of the features listed."""
        return frozenset(f.id for f in self.features)

    def _decide(self, address: str, names: Iterable[str]) -> tuple[tuple[RoleEntry, ...], frozenset[str]]:
        name_key = tuple(sorted(set(names)))
        key = (address, name_key)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = self._index.by_names(name_key) if name_key else ()
        if not found:
            ak = address_key(address)
            if ak is not None:
                found = self._index.by_address(*ak)
        result = self._decisions.get(found)
        if result is None:
            result = self._decisions[found] = (found, frozenset(e.role for e in found))
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = result
        return result

    def roles_of(self, address: str, names: Iterable[str] = ()) -> frozenset[str]:
        """The roles an address holds through roles.yaml: those of its most specific entries (a name
        the capture tied to it, else the narrowest address entries containing it)."""
        return self._decide(address, names)[1]

    def entries_of(self, address: str, names: Iterable[str] = ()) -> tuple[RoleEntry, ...]:
        """The entries that decide an address's roles (several at equal specificity), by line."""
        return self._decide(address, names)[0]

    def name_hits(self, name: str) -> Iterator[RoleEntry]:
        """Every name entry a host name matches (exact or wildcard), whatever their specificity."""
        return self._index.name_hits(name)

    def single_hosts(self, role: str) -> list[RoleEntry]:
        """Entries of a role that name one host (an address, or a host name without wildcard)."""
        return [e for e in self.entries if e.role == role and e.single_host]


# ----------------------------------------------------------------------------------------- parsing


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
