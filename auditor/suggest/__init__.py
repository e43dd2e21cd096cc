"""A roles.yaml draft from what a capture shows (SPEC §7): `pcap-audit roles suggest`.

Pure: flows and name evidence in (auditor/audit.py ``collect``), a Draft out, rendered as text. Nothing
here opens a file or prints.

Evidence comes from listeners: a host is given a role for what it *answered* as the responder of a
flow (the ICA banner on 1494, HTTP for /Citrix/CdsController/IRegistrar, FlexLM on 27000...), and for
a few requests only a role's clients send (a VDA registering). A port is a claim and the payload is
the evidence (SPEC §6): an answer whose payload the core recognised as the role's protocol is
``high`` confidence, an answer on the role's port whose payload was not recognised is ``medium``
(and says so), a hint (a name containing "storefront", a licence console port) is ``low``. A payload
recognised as another protocol is no evidence at all. A host with no evidence is not listed.

Hosts that only initiate, and talk to VDAs or StoreFront, become User Device; PVS streaming clients
become Target Device; each group is written as the narrowest CIDRs that swallow no listener and no
other entry (roles_lint would call that an overlap), never wider than /16 (IPv6: /64).

Every string out of the capture (names, request lines) is hostile: comments carry it as printable
ASCII only, bounded (a YAML comment ends at any line break, and YAML counts U+0085, U+2028 and U+2029
as line breaks too).

Where things live (every public name is importable from ``auditor.suggest``):
  model.py     confidence, the role names, Evidence, Entry, Draft, comment_text
  evidence.py  evidence gathering from flows and names (collect_evidence)
  grouping.py  client hosts as CIDRs (group_hosts)
  draft.py     suggest: evidence -> ranked, grouped entries -> Draft
  render.py    the Draft as roles.yaml text with its evidence as comments
  scoring.py   precision and recall against a roles file (bench/bench_suggest.py)
"""

from __future__ import annotations

from auditor.suggest.draft import suggest
from auditor.suggest.evidence import collect_evidence
from auditor.suggest.grouping import IPAddress, group_hosts
from auditor.suggest.model import (
    CLOUD,
    CLOUD_CONNECTOR,
    CONFIDENCE_HELP,
    DC,
    DDC,
    DNS,
    EVIDENCE_SHOWN,
    GROUP_LISTED,
    LDAP,
    LICENSE,
    NAME_MAX,
    NAMES_SHOWN,
    NOT_FOUND,
    NSIP,
    NTP,
    ORDER,
    PVS,
    SNIP,
    SQL,
    STA,
    STOREFRONT,
    TARGET,
    TEXT_MAX,
    TFTP,
    USER,
    VDA,
    Confidence,
    Draft,
    Entry,
    Evidence,
    NameSource,
    Vocabulary,
    comment_text,
)
from auditor.suggest.render import render
from auditor.suggest.scoring import Score, held_roles, reduce_implied, score, seen_addresses

__all__ = [
    "CLOUD",
    "CLOUD_CONNECTOR",
    "CONFIDENCE_HELP",
    "DC",
    "DDC",
    "DNS",
    "EVIDENCE_SHOWN",
    "GROUP_LISTED",
    "LDAP",
    "LICENSE",
    "NAMES_SHOWN",
    "NAME_MAX",
    "NOT_FOUND",
    "NSIP",
    "NTP",
    "ORDER",
    "PVS",
    "SNIP",
    "SQL",
    "STA",
    "STOREFRONT",
    "TARGET",
    "TEXT_MAX",
    "TFTP",
    "USER",
    "VDA",
    "Confidence",
    "Draft",
    "Entry",
    "Evidence",
    "IPAddress",
    "NameSource",
    "Score",
    "Vocabulary",
    "collect_evidence",
    "comment_text",
    "group_hosts",
    "held_roles",
    "reduce_implied",
    "render",
    "score",
    "seen_addresses",
    "suggest",
]
