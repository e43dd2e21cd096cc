"""The draft: evidence per host and role ranked, client hosts grouped, entries in the order a person
reads them, and the roles the rules look for that were not found."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence

from auditor.flow import Flow
from auditor.suggest.evidence import collect_evidence
from auditor.suggest.grouping import group_hosts
from auditor.suggest.model import (
    CLOUD,
    NAME_MAX,
    NOT_FOUND,
    ORDER,
    TARGET,
    USER,
    Confidence,
    Draft,
    Entry,
    Evidence,
    NameSource,
    Vocabulary,
    comment_text,
)


def suggest(flows: Iterable[Flow], names: NameSource, vocabulary: Vocabulary,
            name_roles: Sequence[tuple[str, str]] = (), *,
            min_confidence: Confidence = Confidence.LOW) -> Draft:
    """The draft for a capture's flows and name evidence. ``name_roles``: (host-name pattern, role)
    from the catalog (role host names and rule destinations), as the audit itself ties names to roles."""
    known = {r for r in (vocabulary.lookup(n) for n in (*ORDER, *(role for _, role in name_roles))) if r}
    c, _, listeners = collect_evidence(flows, names, name_roles, known)
    grouped = (USER, TARGET)
    entries: list[Entry] = []
    dropped = 0
    singles: dict[str, list[Entry]] = defaultdict(list)
    for address, roles in c.found.items():
        for role, items in roles.items():
            if not items or role in grouped:
                continue
            ranked = tuple(sorted(items, key=lambda e: (-e.confidence, e.frame, e.text)))
            e = Entry(role, address, ranked[0].confidence, ranked, _names(names, address))
            if e.confidence < min_confidence:
                dropped += 1
                continue
            singles[role].append(e)
    # Blockers are points: two aligned networks nest or are disjoint, so a group that holds no address
    # of another role's evidence never overlaps another group either.
    held = {a for a, roles in c.found.items() if any(roles.values())}
    for role in grouped:
        members: dict[str, list[Evidence]] = {}
        for a, roles in c.found.items():
            if roles.get(role):
                members[a] = roles[role]
        keep = {a: items for a, items in members.items() if max(ev.confidence for ev in items) >= min_confidence}
        dropped += len(members) - len(keep)
        blockers = (listeners | held) - set(keep)
        for text, hosts in group_hosts(keep, blockers):
            evs = tuple(sorted((ev for h in hosts for ev in keep[h]), key=lambda e: (-e.confidence, e.frame, e.text)))
            conf = min(max(ev.confidence for ev in keep[h]) for h in hosts)
            singles[role].append(Entry(role, text, conf, evs, _names(names, text) if len(hosts) == 1 else (),
                                       hosts if len(hosts) > 1 else ()))
    rank = {r: i for i, r in enumerate(ORDER)}
    for role in sorted(singles, key=lambda r: (rank.get(r, rank[CLOUD] + 0.5), r)):
        entries.extend(sorted(singles[role], key=lambda e: _sort_key(e.text)))
    found = {e.role for e in entries}
    missing = tuple((role, why) for role, why in NOT_FOUND.items() if role in known and role not in found)
    return Draft(tuple(entries), missing, min_confidence, dropped)


def _sort_key(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text, strict=False)
    return net.version, int(net.network_address)


def _names(names: NameSource, address: str) -> tuple[str, ...]:
    """'sf01.corp.example (dns, sni)' per name tied to the address, first seen first."""
    sources: dict[str, list[str]] = defaultdict(list)
    for obs in names.names_for(address):
        sources[obs.name].append(obs.source)
    return tuple(f"{comment_text(n, NAME_MAX)} ({', '.join(how)})" for n, how in sources.items())
