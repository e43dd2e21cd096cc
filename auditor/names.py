"""Address-to-name evidence from the capture itself: DNS answers, TLS SNI, HTTP Host (SPEC §2).

Sans-IO: fed PacketRecords, never opens or prints anything. Reading a record is the table's
(auditor/nametable.py, compiled with the kernel where the install can); this module holds it, merges
partial evidence, splits it for travel and answers queries. Every name is hostile input: names with
control characters or longer than a DNS name can be are refused (and counted), the rest are kept
lowercased and bounded for the renderers to escape; nothing is ever evaluated.

Limits, by design:
  * Only what one segment shows: a DNS-over-TCP message or ClientHello split across segments is
    counted as a parse error, not reassembled.
  * HTTP requests in proxy form (absolute URI, CONNECT) are skipped: their Host names the origin,
    not the address the packet goes to. A TLS ClientHello sent through an HTTP CONNECT tunnel still
    ties its SNI to the proxy's address (telling that apart needs the CONNECT's state).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Any

from auditor.capture import native
from auditor.model import NameObservation, PacketRecord
from auditor.nametable import NameTable

SOURCES = ("dns", "dns-cname", "sni", "http-host")
MAX_NAMES = 100_000
"""Names kept at most (more are counted in stats['names_dropped'])."""

__all__ = ["MAX_NAMES", "SOURCES", "NameEvidence", "NameObservation"]


def _first_seen(o: NameObservation) -> tuple[int, int]:
    return o.input_index, o.frame


def _table(max_names: int, max_len: int) -> NameTable:
    """An empty table of the build that runs (auditor/capture/native.py)."""
    table: NameTable = native.KERNEL.of("auditor.nametable").NameTable(max_names, max_len)
    return table


class NameEvidence:
    """Collects names per address, bounded in memory. ``stats`` says what was refused or dropped.

    The per-record work (``observe``: DNS answers, SNI, HTTP Host) is its table's
    (auditor/nametable.py, compiled where the install can); this class merges, splits and answers."""

    def __init__(self, *, max_names: int = MAX_NAMES, max_name_len: int = 253) -> None:
        self._t = _table(max_names, max_name_len)

    # The table's parts, as this class and the tests reach them.
    @property
    def _by_addr(self) -> dict[str, list[NameObservation]]:
        return self._t.by_addr

    @property
    def _by_name(self) -> dict[str, set[str]]:
        return self._t.by_name

    @property
    def _seen(self) -> set[tuple[str, str, str]]:
        return self._t.seen

    @property
    def stats(self) -> dict[str, int]:
        return self._t.stats

    def __getstate__(self) -> tuple[Any, ...]:
        # A chunk's names travel from a worker process: the observations as columns, each name once
        # (a few names resolve to many addresses), without the two indexes made from them.
        canon: dict[str, str] = {}
        names, addresses, sources, inputs, frames = [], [], [], [], []
        for address, observations in self._by_addr.items():
            for o in observations:
                names.append(canon.setdefault(o.name, o.name))
                addresses.append(address)
                sources.append(o.source)
                inputs.append(o.input_index)
                frames.append(o.frame)
        t = self._t
        return t.max_names, t.max_len, t.stats, names, addresses, sources, inputs, frames

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        max_names, max_len, stats, names, addresses, sources, inputs, frames = state
        t = self._t = _table(max_names, max_len)
        t.stats = stats
        store, seen = t.store, t.seen
        for name, address, source, index, frame in zip(names, addresses, sources, inputs, frames, strict=True):
            store(NameObservation(name, address, source, index, frame))
            seen.add((address, name, source))

    # ---- input --------------------------------------------------------------------------------

    def observe(self, rec: PacketRecord) -> None:
        """One record (cheap rejects first: most are neither DNS responses nor first request bytes)."""
        self._t.observe(rec)

    def observer(self) -> Callable[[PacketRecord], None]:
        """``observe`` for a reading loop: the table's own, without this class's call around it."""
        return self._t.observe

    def lane_table(self) -> Any:
        """The name table itself, for the core's fast lane, which hands it the records it takes
        (FastLane.put, whose compiled build takes the compiled table only): None where it is not of
        the build that runs (a table a caller made of its own)."""
        t = self._t
        return t if type(t) is native.KERNEL.of("auditor.nametable").NameTable else None

    def merge(self, other: NameEvidence) -> None:
        t = self._t
        by_addr, seen = t.by_addr, t.seen
        touched = set()  # the addresses both parts tied names to (the others' are in first-seen order)
        for address, observations in other._by_addr.items():
            mine = by_addr.get(address, [])
            if mine:
                touched.add(address)
            for obs in observations:
                if (obs.address, obs.name, obs.source) in seen:
                    # Seen by both parts: keep the earlier frame, as one pass would.
                    for i, old in enumerate(mine):
                        if (old.name, old.source) == (obs.name, obs.source) and \
                                (obs.input_index, obs.frame) < (old.input_index, old.frame):
                            mine[i] = obs
                elif t.admit((obs.address, obs.name, obs.source)):
                    t.store(obs)
                    mine = by_addr.get(address, [])
        # First-seen order across the merged parts, as one pass over the capture would have it.
        for address in touched:
            by_addr[address].sort(key=_first_seen)
        for key in ("names_dropped", "names_refused", "parse_errors", "dns_responses", "sni", "http_host"):
            t.stats[key] += other.stats[key]

    def split(self, size: int) -> Iterator[NameEvidence]:
        """Move the observations out of this evidence, ``size`` addresses at a time, each lot as an
        evidence of its own without counters (a chunk's names travel from a worker process in
        pieces: auditor/engine.py). Merging this (its counters only, now) and then the pieces in
        order gives what merging it whole gave: ``merge`` takes one address after the other."""
        t = self._t
        items = list(t.by_addr.items())
        t.by_addr, t.by_name, t.seen = {}, {}, set()
        return self._pieces(items, size)

    def _pieces(self, items: list[tuple[str, list[NameObservation]]], size: int) -> Iterator[NameEvidence]:
        items.reverse()  # taken from the end: each lot is freed once it has gone
        while items:
            piece = NameEvidence(max_names=self._t.max_names, max_name_len=self._t.max_len)
            for _ in range(min(size, len(items))):
                address, observations = items.pop()
                piece._by_addr[address] = observations
            yield piece

    def only(self, addresses: Collection[str]) -> NameEvidence:
        """The evidence about these addresses alone, in the same order, with every counter: what a
        reader that holds the whole evidence in another process sends the one that asks only about
        the addresses its conversations name (auditor/names_apart.py). A final answer, not a part
        to merge: the counters are the whole evidence's."""
        t = self._t
        out = NameEvidence(max_names=t.max_names, max_name_len=t.max_len)
        mine = out._t
        mine.stats = dict(t.stats)
        store, seen = mine.store, mine.seen
        for address, observations in t.by_addr.items():
            if address in addresses:
                for o in observations:
                    store(o)
                    seen.add((address, o.name, o.source))
        return out

    def renumber(self, frame: Callable[[tuple[int, int]], tuple[int, int]], same: Collection[int] = ()) -> None:
        """Map every observation's (input_index, frame) (a chunk's frames, auditor/engine.py), but those
        of the input indexes in ``same``, which ``frame`` would leave as they are."""
        by_addr = self._t.by_addr
        for address, observations in by_addr.items():
            if all(o.input_index in same for o in observations):
                continue
            mapped = []
            for o in observations:
                if o.input_index not in same:
                    i, f = frame((o.input_index, o.frame))
                    o = NameObservation(o.name, o.address, o.source, i, f)
                mapped.append(o)
            by_addr[address] = mapped

    # ---- queries ------------------------------------------------------------------------------

    def names_for(self, address: str) -> list[NameObservation]:
        """Names tied to ``address``, in first-seen order, one per (name, source)."""
        return list(self._by_addr.get(address, ()))

    def addresses_matching(self, pattern: str) -> set[str]:
        """'*.nssvc.net' matches any name under nssvc.net (any depth, not nssvc.net itself);
        other patterns match exactly. Case-insensitive; a trailing dot is ignored."""
        pat = pattern.strip().lower().rstrip(".")
        if pat.startswith("*."):
            suffix = pat[1:]
            out: set[str] = set()
            for name, addrs in self._by_name.items():
                if name.endswith(suffix):
                    out |= addrs
            return out
        return set(self._by_name.get(pat, ()))
