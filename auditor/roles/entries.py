"""What roles.yaml is made of: its entries (address, CIDR, range, host name or wildcard), the features
and vantage points it declares, name matching, and what the roles file needs of the catalog's vocabulary."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

EntryKind = Literal["address", "network", "range", "name"]
VantageKind = Literal["address", "network", "range", "role"]
SpanKind = Literal["address", "network", "range"]


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
