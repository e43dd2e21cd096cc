"""Lookup: the most specific entry decides, as in routing. A name tied to the address beats every
address entry (an exact name beats a wildcard, a longer wildcard suffix a shorter one); among address
entries the one covering fewer addresses wins. Entries of equal specificity give the union of their
roles. RoleMap answers in O(log n) from an index of elementary address intervals."""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from auditor.roles.entries import FeatureDecl, RoleEntry, VantageEntry, address_key

_CACHE_MAX = 1 << 16
"""Addresses RoleMap remembers the decision of (a lookup is a bisection: the cache only saves repeats)."""


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
