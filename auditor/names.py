"""Address-to-name evidence from the capture itself: DNS answers, TLS SNI, HTTP Host (SPEC §2).

Sans-IO: fed PacketRecords, never opens or prints anything. Every name is hostile input: names with
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

import re
import socket
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from auditor.capture import native
from auditor.dnswire import CNAME
from auditor.model import IPPROTO_TCP, IPPROTO_UDP, PacketRecord, addr_str

SOURCES = ("dns", "dns-cname", "sni", "http-host")
_HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ")
_HTTP_FIRST = frozenset(m[0] for m in _HTTP_METHODS)
_HOST_HEADER = re.compile(rb"\r\nhost:", re.IGNORECASE)
_MAX_CNAME_DEPTH = 16
MAX_NAMES = 100_000
"""Names kept at most (more are counted in stats['names_dropped'])."""


class NameObservation(NamedTuple):
    """A name tied to an address. A NamedTuple, not a frozen dataclass: a capture ties tens of
    thousands, and a tuple is made in a third of the time."""

    name: str
    """Lowercased, no trailing dot, at most max_name_len characters; still hostile: escape it."""
    address: str
    """The address the name was tied to (text)."""
    source: str
    """'dns' (A/AAAA owner), 'dns-cname' (a name whose CNAME chain led there), 'sni', 'http-host'."""
    input_index: int
    frame: int
    """Evidence: where in which input the name was seen."""


def _ip_literal(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except (OSError, ValueError):
            continue
        return True
    return False


class NameEvidence:
    """Collects names per address, bounded in memory. ``stats`` says what was refused or dropped."""

    def __init__(self, *, max_names: int = MAX_NAMES, max_name_len: int = 253) -> None:
        self._max_names = max_names
        self._max_len = max_name_len
        self._by_addr: dict[str, list[NameObservation]] = {}
        self._by_name: dict[str, set[str]] = {}
        self._seen: set[tuple[str, str, str]] = set()
        self.stats: dict[str, int] = {
            "names_kept": 0, "names_dropped": 0, "names_refused": 0, "parse_errors": 0,
            "dns_responses": 0, "sni": 0, "http_host": 0,
        }

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
        return self._max_names, self._max_len, self.stats, names, addresses, sources, inputs, frames

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._max_names, self._max_len, self.stats, names, addresses, sources, inputs, frames = state
        self._by_addr, self._by_name, self._seen = {}, {}, set()
        store, seen = self._store, self._seen
        for name, address, source, index, frame in zip(names, addresses, sources, inputs, frames, strict=True):
            store(NameObservation(name, address, source, index, frame))
            seen.add((address, name, source))

    # ---- input --------------------------------------------------------------------------------

    def observe(self, rec: PacketRecord) -> None:
        """Cheap rejects first: most packets are neither DNS responses nor first request bytes."""
        proto = rec.proto
        payload = rec.payload
        if not payload:
            return
        if proto == IPPROTO_UDP:
            if rec.sport == 53:
                self._dns(payload, rec)
            return
        if proto != IPPROTO_TCP:
            return
        if rec.sport == 53:
            # DNS over TCP (RFC 1035 §4.2.2): a two-byte length, then the message.
            if len(payload) < 2 or len(payload) < 2 + int.from_bytes(payload[:2], "big"):
                self.stats["parse_errors"] += 1
                return
            self._dns(payload[2:2 + int.from_bytes(payload[:2], "big")], rec)
            return
        first = payload[0]
        if first == 0x16:
            if len(payload) > 5 and payload[1] == 3 and payload[5] == 1:
                self._sni(payload, rec)
        elif first in _HTTP_FIRST and payload.startswith(_HTTP_METHODS):
            self._http_host(payload, rec)

    def merge(self, other: NameEvidence) -> None:
        touched = set()
        for address, observations in other._by_addr.items():
            touched.add(address)
            mine = self._by_addr.get(address, [])
            for obs in observations:
                if (obs.address, obs.name, obs.source) in self._seen:
                    # Seen by both parts: keep the earlier frame, as one pass would.
                    for i, old in enumerate(mine):
                        if (old.name, old.source) == (obs.name, obs.source) and \
                                (obs.input_index, obs.frame) < (old.input_index, old.frame):
                            mine[i] = obs
                elif self._admit((obs.address, obs.name, obs.source)):
                    self._store(obs)
                    mine = self._by_addr.get(address, [])
        # First-seen order across the merged parts, as one pass over the capture would have it.
        for address in touched:
            if address in self._by_addr:
                self._by_addr[address].sort(key=lambda o: (o.input_index, o.frame))
        for key in ("names_dropped", "names_refused", "parse_errors", "dns_responses", "sni", "http_host"):
            self.stats[key] += other.stats[key]

    def split(self, size: int) -> Iterator[NameEvidence]:
        """Move the observations out of this evidence, ``size`` addresses at a time, each lot as an
        evidence of its own without counters (a chunk's names travel from a worker process in
        pieces: auditor/engine.py). Merging this (its counters only, now) and then the pieces in
        order gives what merging it whole gave: ``merge`` takes one address after the other."""
        items = list(self._by_addr.items())
        self._by_addr, self._by_name, self._seen = {}, {}, set()
        return self._pieces(items, size)

    def _pieces(self, items: list[tuple[str, list[NameObservation]]], size: int) -> Iterator[NameEvidence]:
        items.reverse()  # taken from the end: each lot is freed once it has gone
        while items:
            piece = NameEvidence(max_names=self._max_names, max_name_len=self._max_len)
            for _ in range(min(size, len(items))):
                address, observations = items.pop()
                piece._by_addr[address] = observations
            yield piece

    def renumber(self, frame: Callable[[tuple[int, int]], tuple[int, int]]) -> None:
        """Map every observation's (input_index, frame) (a chunk's frames, auditor/engine.py)."""
        for address, observations in self._by_addr.items():
            self._by_addr[address] = [
                NameObservation(o.name, o.address, o.source, i, f)
                for o in observations for i, f in (frame((o.input_index, o.frame)),)]

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

    # ---- parsers ------------------------------------------------------------------------------

    def _admit(self, key: tuple[str, str, str]) -> bool:
        """Whether the (address, name, source) not seen yet is kept (counted, and remembered as seen)
        or dropped (counted): the table holds at most max_names."""
        stats = self.stats
        if stats["names_kept"] >= self._max_names:
            stats["names_dropped"] += 1
            return False
        self._seen.add(key)
        stats["names_kept"] += 1
        return True

    def _store(self, obs: NameObservation) -> None:
        """An observation _admit kept."""
        by_addr = self._by_addr.get(obs.address)
        if by_addr is None:
            self._by_addr[obs.address] = [obs]
        else:
            by_addr.append(obs)
        by_name = self._by_name.get(obs.name)
        if by_name is None:
            self._by_name[obs.name] = {obs.address}
        else:
            by_name.add(obs.address)

    def _tie(self, raw: str, address: str, source: str, rec: PacketRecord) -> None:
        """Tie the name ``raw`` to ``address``: lowercased without the trailing dot; refused (counted)
        when empty or too long, or with control characters or lone surrogates (octets of a DNS label
        that are not UTF-8). Once per (address, name, source), the first frame kept."""
        name = raw.rstrip(".").lower()
        if not name or len(name) > self._max_len or (
                not (name.isascii() and name.isprintable())  # the common case needs no loop
                and any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or 0xD800 <= ord(ch) < 0xE000 for ch in name)):
            self.stats["names_refused"] += 1
            return
        key = (address, name, source)
        if key not in self._seen and self._admit(key):  # most are seen: no object then
            self._store(NameObservation(name, address, source, rec.input_index, rec.frame))

    def _dns(self, message: bytes, rec: PacketRecord) -> None:
        """A and AAAA answers, and the CNAME chains that lead to them, from one DNS response.

        The same names and counters as when dpkt parsed the whole message, on every well-formed one
        (tests/test_names_lean.py). Where they differ, on purpose: a record type dpkt did not know
        (RRSIG, HTTPS, SVCB...), damaged RDATA of other types, and damage after the answer section no
        longer void the answers; a query is not read (dpkt counted a malformed one as a parse error);
        an A or AAAA record whose RDLENGTH is not 4 or 16 is not tied (dpkt tied its first octets
        when the message ended there); a name with octets that are not UTF-8 is refused alone (dpkt
        refused the message); a dot inside a label is escaped; a name needing more than 127
        compression pointers is a parse error (auditor/dnswire.py)."""
        if len(message) < 12:
            self.stats["parse_errors"] += 1
            return
        if not message[2] & 0x80:
            return  # QR = 0: a query names nothing (and is not read, RFC 1035 §4.1.1)
        wire = native.KERNEL.dnswire  # auditor/dnswire.py or its compiled build
        try:
            answers, short = wire.read_answers(message)
        except wire.MalformedDNS:
            self.stats["parse_errors"] += 1
            return
        self.stats["dns_responses"] += 1
        if short:
            self.stats["parse_errors"] += 1
        tie = self._tie
        aliases: dict[str, list[str]] = {}  # CNAME target -> names that point at it
        for rtype, owner, value in answers:
            if rtype == CNAME:
                aliases.setdefault(value.lower().rstrip("."), []).append(owner)
        if not aliases:  # the common answer: A or AAAA records only
            for _rtype, owner, value in answers:
                tie(owner, value, "dns", rec)
            return
        for rtype, owner, value in answers:
            if rtype == CNAME:
                continue
            tie(owner, value, "dns", rec)
            # Walk the CNAME chain backwards so that the query name gets the address too.
            todo, seen = [owner.lower().rstrip(".")], set[str]()
            while todo and len(seen) < _MAX_CNAME_DEPTH:
                target = todo.pop()
                if target in seen:
                    continue
                seen.add(target)
                for alias in aliases.get(target, ()):
                    tie(alias, value, "dns-cname", rec)
                    todo.append(alias.lower().rstrip("."))

    def _sni(self, p: bytes, rec: PacketRecord) -> None:
        """server_name (RFC 6066 §3) from a ClientHello (RFC 8446 §4.1.2) in this one segment."""
        try:
            off = 9 + 2 + 32  # record header 5, handshake header 4, legacy_version, random
            off += 1 + p[off]  # session id
            off += 2 + int.from_bytes(p[off:off + 2], "big")  # cipher suites
            off += 1 + p[off]  # compression methods
            end = min(len(p), off + 2 + int.from_bytes(p[off:off + 2], "big"))
            off += 2
            while off + 4 <= end:
                etype = int.from_bytes(p[off:off + 2], "big")
                elen = int.from_bytes(p[off + 2:off + 4], "big")
                off += 4
                if etype == 0:
                    if off + 5 > len(p) or p[off + 2] != 0:
                        break
                    nlen = int.from_bytes(p[off + 3:off + 5], "big")
                    raw = p[off + 5:off + 5 + nlen]
                    if len(raw) != nlen:
                        break
                    self.stats["sni"] += 1
                    self._tie(raw.decode("ascii", "replace"), addr_str(rec.dst), "sni", rec)
                    return
                off += elen
        except IndexError:
            pass
        self.stats["parse_errors"] += 1

    def _http_host(self, p: bytes, rec: PacketRecord) -> None:
        """Host (RFC 9112 §3.2) of an origin-form request, from its header block in this segment.

        The header is looked for case-insensitively in place (no lowercased copy of the payload),
        and only before the blank line that ends the header block: a "Host:" line in a body is not
        one (it was taken before)."""
        line_end = p.find(b"\r\n")
        if line_end < 0:
            line_end = len(p)
        # The method and its space are known (observe): the target follows the first space.
        target = p.find(b" ") + 1
        if target >= line_end or p[target] != 0x2F:  # "/"
            return  # proxy-form request: its Host is not the packet's destination
        found = _HOST_HEADER.search(p, line_end)
        if found is None:
            return
        at = found.start()
        if p.find(b"\r\n\r\n", line_end, at + 2) >= 0:
            return  # past the header block
        value_end = p.find(b"\r\n", at + 7)
        raw = p[at + 7:value_end if value_end >= 0 else len(p)].strip()
        if raw.startswith(b"["):
            return  # an IPv6 literal is no name
        host = raw.rsplit(b":", 1)[0] if raw.count(b":") == 1 else raw
        text = host.decode("ascii", "replace")
        if not text or _ip_literal(text):
            return
        self.stats["http_host"] += 1
        self._tie(text, addr_str(rec.dst), "http-host", rec)
