"""The draft's quality against a hand-written roles file: precision and recall of (address, role)
pairs without implied roles (bench/bench_suggest.py uses these; the command does not)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from auditor.flow import Flow
from auditor.roles import name_matches
from auditor.suggest.evidence import _usable
from auditor.suggest.model import NameSource, Vocabulary


def reduce_implied(roles: Iterable[str], vocabulary: Vocabulary) -> frozenset[str]:
    """Roles without those another of them implies (SPEC §7: implied roles are not counted)."""
    held = frozenset(roles)
    implied: set[str] = set()
    for r in held:
        implied |= vocabulary.expand([r]) - {r}
    return held - implied


@dataclass(frozen=True, slots=True)
class Score:
    true_positives: int
    suggested: int
    expected: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.suggested if self.suggested else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.expected if self.expected else 1.0


def score(suggested: Mapping[str, Iterable[str]], expected: Mapping[str, Iterable[str]],
          vocabulary: Vocabulary) -> Score:
    """Precision and recall of (address, role) pairs: address -> roles as the draft gives them and
    as the hand-written roles file gives them, over the addresses the capture shows (the caller's
    keys), each side without the roles its other roles imply."""
    got = {(a, r) for a, roles in suggested.items() for r in reduce_implied(roles, vocabulary)}
    want = {(a, r) for a, roles in expected.items() for r in reduce_implied(roles, vocabulary)}
    return Score(len(got & want), len(got), len(want))


class _RoleLookup(Protocol):
    def roles_of(self, address: str, names: Iterable[str] = ()) -> frozenset[str]: ...


def held_roles(role_map: _RoleLookup, addresses: Iterable[str], names: NameSource,
               name_roles: Sequence[tuple[str, str]] = ()) -> dict[str, frozenset[str]]:
    """Address -> the roles a roles file maps it to, as the audit ties them: the file's entries
    (names through the capture's name evidence) and the catalog's host-name patterns."""
    out: dict[str, frozenset[str]] = {}
    for a in addresses:
        tied = tuple(dict.fromkeys(o.name for o in names.names_for(a)))
        roles = set(role_map.roles_of(a, tied))
        for pattern, role in name_roles:
            if any(name_matches(pattern, n) for n in tied):
                roles.add(role)
        if roles:
            out[a] = frozenset(roles)
    return out


def seen_addresses(flows: Iterable[Flow]) -> set[str]:
    """The hosts a capture shows: both ends of every flow (broadcast, multicast and '*' left out)."""
    return {a for f in flows for a in (f.key.initiator, f.key.responder) if _usable(a)}
