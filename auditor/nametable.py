"""The per-record half of name evidence (auditor/names.py): a record's DNS answers, TLS SNI or HTTP
Host tied to an address, into a bounded table (``NameTable``).

Every record with a payload passes through ``NameTable.observe`` (a third of a capture's records),
so this module is compiled with the per-packet kernel where the install can (setup.py;
auditor/capture/native.py chooses which build runs, all or none); it is the reference, always
installed. ``NameEvidence`` (auditor/names.py) holds one table and answers the queries and merges.

Every name is hostile input: names with control characters or longer than a DNS name can be are
refused (and counted), the rest are kept lowercased and bounded for the renderers to escape.
"""

from __future__ import annotations

import re
import socket
from typing import Any, Final

from auditor.addrtext import addr_str
from auditor.dnswire import CNAME, MalformedDNS, read_answers
from auditor.model import IPPROTO_TCP, IPPROTO_UDP, NameObservation
from auditor.record import PacketRecord, as_record

_HTTP_METHODS: Final = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ")
_HTTP_FIRST: Final = frozenset(m[0] for m in _HTTP_METHODS)
_HOST_HEADER: Final = re.compile(rb"\r\nhost:", re.IGNORECASE)
MAX_CNAME_DEPTH: Final = 16
"""CNAME links followed back from an address's owner."""


def _ip_literal(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except (OSError, ValueError):
            continue
        return True
    return False


def _unprintable(name: str) -> bool:
    """Control characters or lone surrogates (octets of a DNS label that are not UTF-8)."""
    for ch in name:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o < 0xA0 or 0xD800 <= o < 0xE000:
            return True
    return False


class NameTable:
    """Names tied to addresses, at most ``max_names`` of them, each once per (address, name, source)
    with the first frame that showed it; ``stats`` counts what was kept, dropped, refused and read."""

    def __init__(self, max_names: int, max_len: int) -> None:
        self.max_names = max_names
        self.max_len = max_len
        self.by_addr: dict[str, list[NameObservation]] = {}
        """address -> its names, in first-seen order."""
        self.by_name: dict[str, set[str]] = {}
        """name -> the addresses it was tied to."""
        self.seen: set[tuple[str, str, str]] = set()
        """(address, name, source) of every observation kept."""
        self.stats: dict[str, int] = {
            "names_kept": 0, "names_dropped": 0, "names_refused": 0, "parse_errors": 0,
            "dns_responses": 0, "sni": 0, "http_host": 0,
        }

    def observe(self, record: Any) -> None:
        """One record. Cheap rejects first: most packets are neither DNS responses nor first request
        bytes."""
        rec = record if type(record) is PacketRecord else as_record(record)
        payload = rec.payload
        if not payload:
            return
        proto = rec.proto
        if proto == IPPROTO_UDP:
            if rec.sport == 53:
                self.dns(payload, rec)
            return
        if proto != IPPROTO_TCP:
            return
        if rec.sport == 53:
            # DNS over TCP (RFC 1035 §4.2.2): a two-byte length, then the message.
            size = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
            if len(payload) < 2 or len(payload) < 2 + size:
                self.stats["parse_errors"] += 1
                return
            self.dns(payload[2:2 + size], rec)
            return
        first = payload[0]
        if first == 0x16:
            if len(payload) > 5 and payload[1] == 3 and payload[5] == 1:
                self.sni(payload, rec)
        elif first in _HTTP_FIRST and payload.startswith(_HTTP_METHODS):
            self.http_host(payload, rec)

    def admit(self, key: tuple[str, str, str]) -> bool:
        """Whether the (address, name, source) not seen yet is kept (counted, and remembered as seen)
        or dropped (counted): the table holds at most max_names."""
        stats = self.stats
        if stats["names_kept"] >= self.max_names:
            stats["names_dropped"] += 1
            return False
        self.seen.add(key)
        stats["names_kept"] += 1
        return True

    def store(self, obs: NameObservation) -> None:
        """An observation ``admit`` kept."""
        by_addr = self.by_addr.get(obs.address)
        if by_addr is None:
            self.by_addr[obs.address] = [obs]
        else:
            by_addr.append(obs)
        by_name = self.by_name.get(obs.name)
        if by_name is None:
            self.by_name[obs.name] = {obs.address}
        else:
            by_name.add(obs.address)

    def tie(self, raw: str, address: str, source: str, rec: PacketRecord) -> None:
        """Tie the name ``raw`` to ``address``: lowercased without the trailing dot; refused (counted)
        when empty or too long, or with control characters or lone surrogates. Once per (address,
        name, source), the first frame kept."""
        name = raw.rstrip(".").lower()
        if not name or len(name) > self.max_len or (
                not (name.isascii() and name.isprintable()) and _unprintable(name)):
            self.stats["names_refused"] += 1
            return
        key = (address, name, source)
        if key not in self.seen and self.admit(key):  # most are seen: no object then
            self.store(NameObservation(name, address, source, rec.input_index, rec.frame))

    def dns(self, message: bytes, rec: PacketRecord) -> None:
        """A and AAAA answers, and the CNAME chains that lead to them, from one DNS response.

        The same names and counters as when dpkt parsed the whole message, on every well-formed one
        (tests/test_names_lean.py). Where they differ, on purpose: a record type dpkt did not know
        (RRSIG, HTTPS, SVCB...), damaged RDATA of other types, and damage after the answer section no
        longer void the answers; a query is not read (dpkt counted a malformed one as a parse error);
        an A or AAAA record whose RDLENGTH is not 4 or 16 is not tied (dpkt tied its first octets
        when the message ended there); a name with octets that are not UTF-8 is refused alone (dpkt
        refused the message); a dot inside a label is escaped; a name needing more than 127
        compression pointers is a parse error (auditor/dnswire.py)."""
        stats = self.stats
        if len(message) < 12:
            stats["parse_errors"] += 1
            return
        if not message[2] & 0x80:
            return  # QR = 0: a query names nothing (and is not read, RFC 1035 §4.1.1)
        try:
            answers, short = read_answers(message)
        except MalformedDNS:
            stats["parse_errors"] += 1
            return
        stats["dns_responses"] += 1
        if short:
            stats["parse_errors"] += 1
        aliases: dict[str, list[str]] = {}  # CNAME target -> names that point at it
        for rtype, owner, value in answers:
            if rtype == CNAME:
                aliases.setdefault(value.lower().rstrip("."), []).append(owner)
        if not aliases:  # the common answer: A or AAAA records only
            for _rtype, owner, value in answers:
                self.tie(owner, value, "dns", rec)
            return
        for rtype, owner, value in answers:
            if rtype == CNAME:
                continue
            self.tie(owner, value, "dns", rec)
            # Walk the CNAME chain backwards so that the query name gets the address too.
            todo = [owner.lower().rstrip(".")]
            met: set[str] = set()
            while todo and len(met) < MAX_CNAME_DEPTH:
                target = todo.pop()
                if target in met:
                    continue
                met.add(target)
                for alias in aliases.get(target, []):
                    self.tie(alias, value, "dns-cname", rec)
                    todo.append(alias.lower().rstrip("."))

    def sni(self, p: bytes, rec: PacketRecord) -> None:
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
                    self.tie(raw.decode("ascii", "replace"), addr_str(rec.dst), "sni", rec)
                    return
                off += elen
        except IndexError:
            pass
        self.stats["parse_errors"] += 1

    def http_host(self, p: bytes, rec: PacketRecord) -> None:
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
        self.tie(text, addr_str(rec.dst), "http-host", rec)
