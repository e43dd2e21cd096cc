"""roles.yaml -> which host plays which Citrix role (SPEC §2).

An entry is an address, a CIDR, an inclusive range, or a host name / wildcard pattern. Names are
tied to addresses by the capture's own name evidence (DNS answers, SNI, Host), which the caller
passes in; this module does no I/O beyond reading the roles file.

The most specific entry decides, as in routing: a name tied to the address beats every address
entry (an exact name beats a wildcard, a longer wildcard suffix a shorter one); among address
entries the one covering fewer addresses wins. Entries of equal specificity give the union of
their roles. `auditor.roles_lint` checks a parsed file against what a capture showed.

Where things live (every public name is importable from ``auditor.roles``):
  entries.py  RoleEntry, FeatureDecl, VantageEntry, name_matches, address_key, RoleVocabulary
  lookup.py   RoleMap and its index: the most specific entry decides, O(log n)
  parse.py    parse_roles, load_roles, parse_vantage
"""

from __future__ import annotations

from auditor.roles.entries import (
    EntryKind,
    FeatureDecl,
    IPAddress,
    IPNetwork,
    RoleEntry,
    RoleVocabulary,
    SpanKind,
    VantageEntry,
    VantageKind,
    address_key,
    name_matches,
)
from auditor.roles.lookup import RoleMap, name_specificity
from auditor.roles.parse import load_roles, parse_roles, parse_vantage

__all__ = [
    "EntryKind", "FeatureDecl", "IPAddress", "IPNetwork", "RoleEntry", "RoleMap", "RoleVocabulary", "SpanKind",
    "VantageEntry", "VantageKind", "address_key", "load_roles", "name_matches", "name_specificity", "parse_roles",
    "parse_vantage",
]
