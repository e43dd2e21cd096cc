"""roles.yaml -> which host plays which Citrix role (SPEC §2).

An entry is an address, a CIDR, an inclusive range, or a host name / wildcard pattern. Names are
tied to addresses by the capture's own name evidence (DNS answers, SNI, Host), which the caller
passes in; this module does no I/O beyond reading the roles file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from auditor.errors import RolesError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAME_RE = re.compile(r"^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,62})?)(\.[a-z0-9_]([a-z0-9_-]{0,62})?)*\.?$")


class RoleVocabulary(Protocol):
    """What this module needs from the catalog's vocabulary."""

    def lookup(self, name: str) -> str | None: ...

    def suggest(self, name: str, n: int = 3) -> list[str]: ...


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
    """The entry as written."""
    line: int
    """1-based line in the roles file."""
    kind: str
    """'address', 'network', 'range' or 'name'."""
    lo: int = 0
    """First address of the entry as an int (address, network and range kinds)."""
    hi: int = 0
    """Last address, inclusive."""
    version: int = 0
    """4 or 6 for address kinds."""

    @property
    def single_host(self) -> bool:
        return self.kind == "address" or (self.kind == "name" and "*" not in self.text)


@dataclass
class RoleMap:
    """The parsed roles file: resolve addresses (and their names) to canonical roles."""

    path: str
    digest: str
    entries: list[RoleEntry]
    _cache: dict[tuple[str, tuple[str, ...]], frozenset[str]] = field(default_factory=dict, repr=False)

    @property
    def roles(self) -> list[str]:
        """Mapped roles in file order, without repeats."""
        return list(dict.fromkeys(e.role for e in self.entries))

    def roles_of(self, address: str, names: Iterable[str] = ()) -> frozenset[str]:
        """The roles an address holds through roles.yaml (by address, or by a name it was seen under)."""
        name_key = tuple(sorted(set(names)))
        key = (address, name_key)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        found: set[str] = set()
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
        for e in self.entries:
            if e.kind == "name":
                if any(name_matches(e.text, n) for n in name_key):
                    found.add(e.role)
            elif ip is not None and ip.version == e.version and e.lo <= int(ip) <= e.hi:
                found.add(e.role)
        result = frozenset(found)
        self._cache[key] = result
        return result

    def single_hosts(self, role: str) -> list[RoleEntry]:
        """Entries of a role that name one host (an address, or a host name without wildcard)."""
        return [e for e in self.entries if e.role == role and e.single_host]


def _looks_like_ip(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+", text)) or ":" in text


def _parse_entry(role: str, text: str, line: int, where: str) -> RoleEntry:
    text = text.strip()
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as e:
            raise RolesError(f"{where}: invalid network {text!r} for role {role!r}: {e}") from None
        return RoleEntry(role, text, line, "network", int(net.network_address), int(net.broadcast_address),
                         net.version)
    a, dash, b = text.partition("-")
    if dash and (_looks_like_ip(a.strip()) or _looks_like_ip(b.strip())):
        try:
            lo, hi = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
        except ValueError:
            raise RolesError(f"{where}: invalid address range {text!r} for role {role!r}") from None
        if lo.version != hi.version:
            raise RolesError(f"{where}: range {text!r} mixes IPv4 and IPv6")
        if int(lo) > int(hi):
            raise RolesError(f"{where}: range {text!r} is reversed (first address after last)")
        return RoleEntry(role, text, line, "range", int(lo), int(hi), lo.version)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return RoleEntry(role, text, line, "address", int(ip), int(ip), ip.version)
    if _looks_like_ip(text):
        raise RolesError(f"{where}: invalid address {text!r} for role {role!r}")
    if not _NAME_RE.match(text.lower()) or len(text) > 253:
        raise RolesError(f"{where}: {text!r} for role {role!r} is not an address, network, range or host name")
    return RoleEntry(role, text.lower().rstrip("."), line, "name")


def parse_roles(text: str, path: str, vocabulary: RoleVocabulary) -> RoleMap:
    """Parse roles.yaml text. Errors name the file and line (RolesError)."""
    digest = "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RolesError(f"{path}{where}: unreadable YAML: {problem}") from None
    if root is None:
        raise RolesError(f"{path}: empty roles file (expected a 'roles:' mapping)")
    if not isinstance(root, yaml.MappingNode):
        raise RolesError(f"{path}:{root.start_mark.line + 1}: expected a mapping with a 'roles:' key")
    roles_node = None
    for k, v in root.value:
        if not isinstance(k, yaml.ScalarNode):
            raise RolesError(f"{path}:{k.start_mark.line + 1}: unexpected key")
        if k.value == "roles":
            if roles_node is not None:
                raise RolesError(f"{path}:{k.start_mark.line + 1}: duplicate key 'roles'")
            roles_node = v
        else:
            raise RolesError(f"{path}:{k.start_mark.line + 1}: unknown key {k.value!r} (expected 'roles')")
    if roles_node is None or not isinstance(roles_node, yaml.MappingNode):
        line = (roles_node.start_mark.line + 1) if roles_node is not None else 1
        raise RolesError(f"{path}:{line}: 'roles' must be a mapping of role name to a list of hosts")
    entries: list[RoleEntry] = []
    seen_roles: dict[str, tuple[str, int]] = {}
    for k, v in roles_node.value:
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
        items = v.value if isinstance(v, yaml.SequenceNode) else [v]
        if isinstance(v, yaml.MappingNode):
            raise RolesError(f"{where}: hosts of role {written!r} must be a list, not a mapping")
        if isinstance(v, yaml.ScalarNode) and v.value in ("", "~", "null"):
            raise RolesError(f"{where}: role {written!r} lists no hosts")
        seen_text: set[str] = set()
        for item in items:
            iline = item.start_mark.line + 1
            if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
                raise RolesError(f"{path}:{iline}: each host of role {written!r} must be a non-empty string")
            entry = _parse_entry(canonical, str(item.value), iline, f"{path}:{iline}")
            if entry.text in seen_text:
                raise RolesError(f"{path}:{iline}: {entry.text!r} is listed twice under role {written!r}")
            seen_text.add(entry.text)
            entries.append(entry)
    return RoleMap(path=path, digest=digest, entries=entries)


def load_roles(path: Path, vocabulary: RoleVocabulary) -> RoleMap:
    """Read and parse a roles file (read-only)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RolesError(f"{path}: cannot read roles file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RolesError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parse_roles(text, str(path), vocabulary)
