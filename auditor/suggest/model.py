"""What a draft is made of: the confidence levels, the role names the rules look for, the evidence,
entries and the Draft, and the protocols the draft needs of names and the vocabulary.

Every string out of the capture (names, request lines) is hostile: comments carry it as printable
ASCII only, bounded (a YAML comment ends at any line break, and YAML counts U+0085, U+2028 and U+2029
as line breaks too): comment_text does that.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Confidence(enum.IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        return self.name.lower()


CONFIDENCE_HELP = {
    Confidence.HIGH: "the payload showed the role's protocol (a banner, a request path, a protocol answer)",
    Confidence.MEDIUM: "an answer on the role's port whose payload was not recognised (port only)",
    Confidence.LOW: "a hint: a host name, a console port, or a role that hosts of this kind usually hold",
}

# Canonical role names (rules/roles.yaml). A catalog without one of them skips its rules.
VDA = "Virtual Delivery Agent"
DDC = "Delivery Controller"
STA = "Secure Ticketing Authority"
CLOUD_CONNECTOR = "Cloud Connector"
STOREFRONT = "StoreFront Server"
LICENSE = "Citrix License Server"
SQL = "Microsoft SQL Server"
DC = "Domain Controller"
LDAP = "LDAP Server"
DNS = "DNS Server"
NTP = "NTP Server"
PVS = "Provisioning Server"
TFTP = "TFTP Server"
TARGET = "Target Device"
NSIP = "NetScaler NSIP"
SNIP = "NetScaler SNIP"
CLOUD = "Citrix Cloud"
USER = "User Device"

ORDER = (DDC, STA, CLOUD_CONNECTOR, STOREFRONT, VDA, LICENSE, SQL, PVS, TFTP, NSIP, SNIP, DC, LDAP, DNS, NTP,
         CLOUD, TARGET, USER)
"""Roles in the order the draft lists them (roles from catalog host names follow CLOUD)."""

NOT_FOUND = {
    DDC: "no HTTP answer for /Citrix/CdsController/IRegistrar, /scripts/wpnbr.dll or /scripts/ctxsta.dll "
         "(over TLS the paths cannot be seen)",
    STOREFRONT: "no HTTP answer for /Citrix/Store..., /Citrix/Roaming or /Citrix/Authentication, and no "
                "name containing 'storefront'",
    VDA: "no ICA/CGP listener on tcp 1494/2598 and no VDA registration seen",
    LICENSE: "no FlexLM listener on tcp 27000 or 7279 answered",
    SQL: "no TDS listener on tcp 1433 answered",
    DC: "no host answered both Kerberos (88) and LDAP (389/636/3268)",
    DNS: "no DNS answer on port 53",
    NTP: "no NTP answer on udp 123",
    PVS: "no PVS streaming on udp 6890-6930 answered",
    NSIP: "no HA heartbeats (udp 3003 both ways) and no NITRO request (/nitro/) seen",
    CLOUD: "no DNS answer, TLS SNI or HTTP Host named a Citrix Cloud host",
    USER: "no client-only host talking to a VDA or StoreFront",
}
"""Roles the rules look for, and why one was not found (the draft's closing comment block)."""

TEXT_MAX = 160
"""Characters of one piece of evidence in a comment at most."""
NAME_MAX = 80
"""Characters of a host name in a comment at most."""
NAMES_SHOWN = 2
EVIDENCE_SHOWN = 2
GROUP_LISTED = 4
"""Member addresses named in a grouped entry's comment."""


class NameSource(Protocol):
    """What the draft needs of auditor.names.NameEvidence."""

    def names_for(self, address: str) -> Sequence[_Named]: ...


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def source(self) -> str: ...


class Vocabulary(Protocol):
    def lookup(self, name: str) -> str | None: ...

    def expand(self, roles: Iterable[str], features: Iterable[str] | None = None) -> frozenset[str]: ...


def comment_text(text: str, limit: int = TEXT_MAX) -> str:
    """Capture text made safe for a YAML comment: printable ASCII only (everything else becomes '?',
    so no line break of any kind survives), bounded."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text[:limit + 1])
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Evidence:
    """One reason a host holds a role."""

    confidence: Confidence
    text: str
    """For a person; capture text inside it already passed through comment_text."""
    frame: tuple[int, int] = (1 << 62, 0)
    """Where to look (input index, frame); the earliest evidence is shown first among equals."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the draft: an address or a CIDR under a role."""

    role: str
    text: str
    """The address or CIDR as written."""
    confidence: Confidence
    evidence: tuple[Evidence, ...]
    """Strongest first."""
    names: tuple[str, ...] = ()
    """'vda01.corp.example (dns)', already safe for a comment."""
    members: tuple[str, ...] = ()
    """For a CIDR: the hosts that gave it."""


@dataclass(frozen=True, slots=True)
class Draft:
    entries: tuple[Entry, ...]
    not_found: tuple[tuple[str, str], ...]
    """(role, why) for the roles the rules look for and found no host for."""
    min_confidence: Confidence = Confidence.LOW
    dropped: int = 0
    """Entries left out for being below min_confidence."""

    def pairs(self) -> set[tuple[str, str]]:
        return {(e.text, e.role) for e in self.entries}
