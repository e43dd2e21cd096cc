"""Lint of roles.yaml against what a capture showed (SPEC §2).

Mistakes in roles.yaml are the commonest cause of a wrong report, so the audit warns about them:
entries that matched nothing, names the capture never tied to an address, CIDRs with host bits,
overlapping entries of different roles (the more specific one decides, which silently takes roles
away from the wider one) and vantage entries that matched nothing.

A pure function of the parsed map and of the capture's addresses and names: the CLI decides
whether the warnings are errors (`--strict-roles`). Messages quote only the roles file (already
validated), canonical role names, addresses as normalised text, and capture names escaped and
bounded.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from auditor.roles import RoleEntry, RoleMap, VantageEntry, address_key, name_matches, name_specificity

LintCode = Literal["unmatched-entry", "name-not-resolved", "host-bits", "overlap", "vantage-unmatched"]
LINT_CODES: tuple[LintCode, ...] = ("host-bits", "unmatched-entry", "name-not-resolved", "overlap",
                                    "vantage-unmatched")
"""Every code, in the order warnings of one line are listed."""

_MAX_TEXT = 100
"""Longest text quoted from the roles file or the capture."""
_MAX_LISTED = 5
"""Overlapping entries named in one warning; the rest are counted."""
_MAX_MESSAGE = 1500


@dataclass(frozen=True, slots=True)
class RoleWarning:
    """One problem found in roles.yaml; `--strict-roles` makes it an error."""

    code: LintCode
    """Stable id of the check."""
    line: int
    """1-based line of the entry in the roles file (0 for a command-line vantage)."""
    entry: str
    """The entry as written."""
    message: str
    """One sentence for a person."""


def _clip(text: str, limit: int = _MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _capture_text(name: str) -> str:
    """A name out of the capture, shown safely: non-printable or non-ASCII characters escaped, bounded."""
    head = name[:_MAX_TEXT + 1]  # one more than shown, so that a cut is marked
    shown = "".join(c if "!" <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in head)
    return _clip(shown)


def _show(e: RoleEntry) -> str:
    return f"{_clip(e.text)} ({e.role})"


class _Seen:
    """Seen addresses per IP version, sorted, to ask whether a span holds one in O(log n)."""

    def __init__(self, addresses: Iterable[str]) -> None:
        by_version: dict[int, set[int]] = defaultdict(set)
        for a in addresses:
            key = address_key(a)
            if key is not None:
                by_version[key[0]].add(key[1])
        self.values = {v: sorted(s) for v, s in by_version.items()}

    def any_in(self, version: int, lo: int, hi: int) -> bool:
        values = self.values.get(version, [])
        i = bisect.bisect_left(values, lo)
        return i < len(values) and values[i] <= hi


@dataclass
class _Overlap:
    """What one wider entry overlaps: narrower entries (they decide there) and equal ones (union)."""

    narrower: list[str] = field(default_factory=list)
    narrower_count: int = 0
    partial: bool = False
    equal: list[str] = field(default_factory=list)
    equal_count: int = 0
    equal_partial: bool = False

    def add(self, item: str, *, equal: bool = False, partial: bool = False) -> None:
        if equal:
            self.equal_count += 1
            self.equal_partial |= partial
            if len(self.equal) < _MAX_LISTED:
                self.equal.append(item)
        else:
            self.narrower_count += 1
            self.partial |= partial
            if len(self.narrower) < _MAX_LISTED:
                self.narrower.append(item)

    def message(self, wider: RoleEntry) -> str:
        parts: list[str] = []
        if self.narrower_count:
            listed = _listing(self.narrower, self.narrower_count)
            if self.partial:
                parts.append(f"{_show(wider)} overlaps {listed}: where they overlap, the more specific entry "
                             "decides and those hosts hold only its roles")
            else:
                parts.append(f"{_show(wider)} also covers {listed}: those hosts hold only the roles of their "
                             "more specific entry")
        if self.equal_count:
            listed = _listing(self.equal, self.equal_count)
            head = "it" if parts else _show(wider)
            if self.equal_partial:
                parts.append(f"{head} overlaps {listed} at the same specificity: the hosts in both hold the "
                             "roles of both")
            else:
                parts.append(f"{head} is also listed as {listed}: at the same specificity, its hosts hold all "
                             "these roles")
        return _clip("; ".join(parts), _MAX_MESSAGE)


def _listing(items: list[str], count: int) -> str:
    return ", ".join(items) + (f" and {count - len(items)} more" if count > len(items) else "")


def _item(e: RoleEntry, extra: str = "", partial: bool = False) -> str:
    return f"{_clip(e.text)} ({e.role}{extra}{', partly' if partial else ''})"


def _address_pairs(entries: Sequence[RoleEntry]) -> Iterator[tuple[RoleEntry, RoleEntry]]:
    """Every pair of overlapping address entries, by a sweep over their sorted starts."""
    by_version: dict[int, list[RoleEntry]] = defaultdict(list)
    for e in entries:
        if e.kind != "name":
            by_version[e.version].append(e)
    for group in by_version.values():
        group.sort(key=lambda e: (e.lo, -e.hi))
        active: list[RoleEntry] = []
        for e in group:
            active = [a for a in active if a.hi >= e.lo]
            for a in active:
                yield a, e
            active.append(e)


def _containing(entries: Sequence[RoleEntry], points: Sequence[int]) -> Iterator[tuple[int, list[RoleEntry]]]:
    """For sorted points, the entries (sorted by start) containing each, by a sweep with a heap of ends."""
    ends: list[tuple[int, int]] = []
    j = 0
    for p in points:
        while j < len(entries) and entries[j].lo <= p:
            heapq.heappush(ends, (entries[j].hi, j))
            j += 1
        while ends and ends[0][0] < p:
            heapq.heappop(ends)
        yield p, [entries[i] for _, i in ends]


def _overlaps(role_map: RoleMap, names: Mapping[str, Iterable[str]]) -> list[RoleWarning]:
    order = {id(e): i for i, e in enumerate(role_map.entries)}
    found: dict[int, _Overlap] = defaultdict(_Overlap)
    for a, b in _address_pairs(role_map.entries):
        if a.role == b.role:
            continue
        if a.size == b.size:
            partial = (a.lo, a.hi) != (b.lo, b.hi)
            if not partial and a.size == 1:
                continue  # one host listed under several roles: a deliberate union (SPEC §2's DDC + License Server)
            first, other = (a, b) if order[id(a)] < order[id(b)] else (b, a)
            found[id(first)].add(_item(other, partial=partial), equal=True, partial=partial)
        else:
            wide, narrow = (a, b) if a.size > b.size else (b, a)
            partial = not wide.lo <= narrow.lo <= narrow.hi <= wide.hi
            found[id(wide)].add(_item(narrow, partial=partial), partial=partial)
    # Name patterns nested in each other (`*.cloud.com` and `wem.cloud.com`) or given twice.
    for n in role_map.entries:
        if n.kind != "name":
            continue
        for h in role_map.name_hits(n.text):
            if h is n or h.role == n.role:
                continue
            if name_specificity(h) == name_specificity(n):
                if order[id(n)] < order[id(h)]:
                    found[id(n)].add(_item(h), equal=True)
            elif name_specificity(h) < name_specificity(n):
                found[id(h)].add(_item(n))
    # A name the capture tied to an address beats the address entries containing it.
    by_version: dict[int, dict[int, tuple[str, tuple[RoleEntry, ...], list[str]]]] = defaultdict(dict)
    for address, tied in names.items():
        key = address_key(address)
        if key is None:
            continue
        tied = list(tied)
        deciders = role_map.entries_of(address, tied)
        if deciders and deciders[0].kind == "name":
            shown = str(ipaddress.IPv4Address(key[1]) if key[0] == 4 else ipaddress.IPv6Address(key[1]))
            by_version[key[0]][key[1]] = (shown, deciders, tied)
    # One item per (address entry, name entry): the first address, and how many more.
    tied_items: dict[tuple[int, int], tuple[RoleEntry, RoleEntry, str, int]] = {}
    for version, points in by_version.items():
        spans = sorted((e for e in role_map.entries if e.kind != "name" and e.version == version),
                       key=lambda e: e.lo)
        for p, containing in _containing(spans, sorted(points)):
            shown, deciders, tied = points[p]
            for a in containing:
                for n in deciders:
                    if n.role == a.role:
                        continue
                    hit = tied_items.get((id(a), id(n)))
                    if hit is not None:
                        tied_items[id(a), id(n)] = (*hit[:3], hit[3] + 1)
                        continue
                    via = next((t for t in tied if name_matches(n.text, t)), "")
                    what = _capture_text(via) if n.text.startswith("*.") and via else "it"
                    tied_items[id(a), id(n)] = (a, n, f"; the capture tied {what} to {shown}", 0)
    for a, n, extra, more in sorted(tied_items.values(), key=lambda t: (order[id(t[0])], order[id(t[1])])):
        found[id(a)].add(_item(n, extra + (f" and {more} more address{'es' if more > 1 else ''}" if more else "")))
    by_id = {id(e): e for e in role_map.entries}
    return [RoleWarning("overlap", by_id[k].line, by_id[k].text, o.message(by_id[k])) for k, o in found.items()]


def _entry_warnings(role_map: RoleMap, seen: _Seen, names: Mapping[str, Iterable[str]]) -> list[RoleWarning]:
    matched_names: set[int] = set()
    if any(e.kind == "name" for e in role_map.entries):
        for tied in names.values():
            for n in tied:
                matched_names.update(id(e) for e in role_map.name_hits(n))
    out: list[RoleWarning] = []
    for e in role_map.entries:
        if e.read_as:
            out.append(_host_bits(e.text, e.line, e.read_as, e.size, _show(e)))
        if e.kind == "name":
            if id(e) not in matched_names:
                what = "a name under " + _clip(e.text[2:]) if e.text.startswith("*.") else "this name"
                out.append(RoleWarning(
                    "name-not-resolved", e.line, e.text,
                    f"{_show(e)}: no DNS answer, TLS SNI or HTTP Host in the capture tied {what} to an "
                    "address; the DNS lookup was probably cached before the capture started, so give the "
                    "host's address instead (or as well)"))
        elif not seen.any_in(e.version, e.lo, e.hi):
            what = "was not seen in the capture" if e.size == 1 else "contains no address seen in the capture"
            out.append(RoleWarning(
                "unmatched-entry", e.line, e.text,
                f"{_show(e)} {what}: check the entry, and that the capture was taken where this host talks"))
    return out


def _host_bits(text: str, line: int, read_as: str, size: int, shown: str) -> RoleWarning:
    host = _clip(text.partition("/")[0])
    return RoleWarning("host-bits", line, text,
                       f"{shown} has host bits set: it was read as the network {read_as} ({size} addresses); "
                       f"write {host} for the single host, or {read_as} for the network")


def _vantage_warnings(vantage: Sequence[VantageEntry], seen: _Seen,
                      role_hosts: Mapping[str, Collection[str]]) -> list[RoleWarning]:
    out: list[RoleWarning] = []
    for v in vantage:
        shown = f"vantage {_clip(v.text)}"
        if v.read_as:
            out.append(_host_bits(v.text, v.line, v.read_as, v.hi - v.lo + 1, shown))
        if v.kind == "role":
            if not role_hosts.get(v.role):
                role = f" ({v.role})" if v.role.casefold() != v.text.casefold() else ""
                out.append(RoleWarning("vantage-unmatched", v.line, v.text,
                                       f"{shown}{role}: no host seen in the capture holds this role, so the "
                                       "vantage does not include it"))
        elif not seen.any_in(v.version, v.lo, v.hi):
            out.append(RoleWarning("vantage-unmatched", v.line, v.text,
                                   f"{shown} matched no address seen in the capture: check where the capture "
                                   "was taken"))
    return out


def lint_roles(role_map: RoleMap, seen: Iterable[str], names: Mapping[str, Iterable[str]],
               role_hosts: Mapping[str, Collection[str]]) -> list[RoleWarning]:
    """Warnings about a roles file, by line.

    `seen`: every address an audited packet touched; `names`: address -> the names the capture
    tied to it (DNS answers, SNI, Host); `role_hosts`: canonical role -> seen addresses holding it
    (for vantage role entries)."""
    names = {a: tuple(n) for a, n in names.items()}
    seen_index = _Seen(seen)
    out = _entry_warnings(role_map, seen_index, names)
    out += _overlaps(role_map, names)
    out += _vantage_warnings(role_map.vantage, seen_index, role_hosts)
    rank = {c: i for i, c in enumerate(LINT_CODES)}
    out.sort(key=lambda w: (w.line, rank[w.code], w.entry))
    return out
