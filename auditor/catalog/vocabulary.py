"""The role vocabulary: roles (names, aliases, what satisfies them, feature-implied roles) and the
deployment features, as rules/roles.yaml and a site file's ``roles:`` declare them."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def normalise(name: str) -> str:
    """Role names compare case-insensitively with runs of whitespace collapsed."""
    return " ".join(name.split()).casefold()


class UnknownRoleError(ValueError):
    """A role name that is neither a canonical role nor an alias; the message suggests close ones."""

    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        self.name = name
        self.suggestions = list(suggestions)
        super().__init__(f"unknown role {name!r}{did_you_mean(suggestions)}")


def did_you_mean(suggestions: Sequence[str]) -> str:
    if not suggestions:
        return ""
    return " (did you mean " + " or ".join(repr(s) for s in suggestions) + "?)"


@dataclass(frozen=True, slots=True)
class Role:
    """One role of the vocabulary (rules/roles.yaml or a site file's ``roles:``)."""

    name: str
    """Canonical name, as rules and reports spell it."""
    aliases: tuple[str, ...] = ()
    """Other names the seed (or a site) uses for the same role."""
    citrix: bool = False
    """A Citrix product: satisfies the ``citrix`` family ('Any Citrix Component')."""
    satisfied_by: tuple[str, ...] = ()
    """Canonical roles whose hosts also play this role."""
    family: str | None = None
    """For a stand-in role such as 'Any Citrix Component': the family whose members satisfy it."""
    hostnames: tuple[str, ...] = ()
    """Host-name patterns that identify this role."""
    description: str = ""
    feature: str | None = None
    """A feature-implied role (SPEC §4): the hosts of ``satisfied_by`` play it only while this
    deployment feature is in use (an NSIP is an HA peer only in an HA pair). None = always implied."""


@dataclass(frozen=True, slots=True)
class Feature:
    """A deployment feature (rules/roles.yaml ``features:``): some roles and rules exist only with it."""

    id: str
    title: str
    description: str = ""
    detected_by: tuple[str, ...] = ()
    """Rules whose flow between two hosts of one product is itself the feature's proof (HA heartbeats
    between two NSIPs): such a flow is expected and the feature is reported as detected."""


class Vocabulary:
    """Role names, aliases, features and the 'satisfies' relation between roles."""

    def __init__(self, roles: Iterable[Role], features: Iterable[Feature] = ()) -> None:
        self.roles: dict[str, Role] = {r.name: r for r in roles}
        self.features: dict[str, Feature] = {f.id: f for f in features}
        self._index: dict[str, str] = {}
        for r in self.roles.values():
            for n in (r.name, *r.aliases):
                self._index.setdefault(normalise(n), r.name)
        # Who satisfies whom: role -> (role it satisfies directly, the feature that edge needs or None).
        self._satisfies: dict[str, set[tuple[str, str | None]]] = {n: set() for n in self.roles}
        for r in self.roles.values():
            for other in r.satisfied_by:
                if other in self._satisfies:
                    self._satisfies[other].add((r.name, r.feature))
        self._citrix_families = frozenset(r.name for r in self.roles.values() if r.family == "citrix")

    @property
    def names(self) -> tuple[str, ...]:
        """Every canonical role name, in vocabulary order."""
        return tuple(self.roles)

    @property
    def role_hostnames(self) -> dict[str, tuple[str, ...]]:
        """Canonical role -> its host-name patterns (only roles that have some)."""
        return {r.name: r.hostnames for r in self.roles.values() if r.hostnames}

    def lookup(self, name: str) -> str | None:
        """Canonical name for a name or alias (case-insensitive), or None."""
        return self._index.get(normalise(name))

    def lookup_feature(self, name: str) -> str | None:
        """The feature id for a name (case-insensitive), or None."""
        key = normalise(name)
        return next((f for f in self.features if f.casefold() == key), None)

    def feature_names(self) -> Sequence[str]:
        """Every feature id, in vocabulary order."""
        return tuple(self.features)

    def role_feature(self, role: str) -> str | None:
        """The feature that mapping this role explicitly declares, if it is a feature role."""
        r = self.roles.get(role)
        return r.feature if r is not None else None

    def resolve(self, name: str) -> str:
        """Canonical name for a name or alias; UnknownRoleError (a ValueError) with suggestions."""
        found = self.lookup(name)
        if found is None:
            raise UnknownRoleError(name, self.suggest(name))
        return found

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """The canonical names closest to ``name`` (matching names and aliases alike)."""
        close = difflib.get_close_matches(normalise(name), list(self._index), n=n * 3, cutoff=0.6)
        out: list[str] = []
        for c in close:
            canon = self._index[c]
            if canon not in out:
                out.append(canon)
        return out[:n]

    def expand(self, roles: Iterable[str], features: Iterable[str] | None = None) -> frozenset[str]:
        """The roles given plus every role they satisfy, transitively (families included).

        ``features``: the deployment features in use; a feature-implied role is reached only through
        them. None means every feature (what a role *can* play, as ``catalog roles`` lists it).
        Names are resolved through aliases; a name that is not in the vocabulary is kept as given.
        """
        allowed = None if features is None else frozenset(features)
        todo = [self.lookup(r) or r for r in roles]
        out: set[str] = set()
        while todo:
            r = todo.pop()
            if r in out:
                continue
            out.add(r)
            todo.extend(name for name, feature in self._satisfies.get(r, ())
                        if feature is None or allowed is None or feature in allowed)
            role = self.roles.get(r)
            if role is not None and role.citrix:
                todo.extend(self._citrix_families)
        return frozenset(out)
