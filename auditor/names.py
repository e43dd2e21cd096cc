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

import socket
from dataclasses import dataclass

import dpkt

from auditor.model import IPPROTO_TCP, IPPROTO_UDP, PacketRecord, addr_str

SOURCES = ("dns", "dns-cname", "sni", "http-host")
_HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ")
_HTTP_FIRST = frozenset(m[0] for m in _HTTP_METHODS)
_MAX_CNAME_DEPTH = 16
MAX_NAMES = 100_000
"""Names kept at most (more are counted in stats['names_dropped'])."""


@dataclass(frozen=True, slots=True)
class NameObservation:
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
                else:
                    self._add(obs)
                    mine = self._by_addr.get(address, [])
        # First-seen order across the merged parts, as one pass over the capture would have it.
        for address in touched:
            if address in self._by_addr:
                self._by_addr[address].sort(key=lambda o: (o.input_index, o.frame))
        for key in ("names_dropped", "names_refused", "parse_errors", "dns_responses", "sni", "http_host"):
            self.stats[key] += other.stats[key]

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

    def _clean(self, raw: str) -> str | None:
        name = raw.rstrip(".").lower()
        if not name or len(name) > self._max_len or any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0
                                                         for ch in name):
            self.stats["names_refused"] += 1
            return None
        return name

    def _add(self, obs: NameObservation) -> None:
        key = (obs.address, obs.name, obs.source)
        if key in self._seen:
            return
        if self.stats["names_kept"] >= self._max_names:
            self.stats["names_dropped"] += 1
            return
        self._seen.add(key)
        self.stats["names_kept"] += 1
        self._by_addr.setdefault(obs.address, []).append(obs)
        self._by_name.setdefault(obs.name, set()).add(obs.address)

    def _tie(self, raw: str, address: str, source: str, rec: PacketRecord) -> None:
        name = self._clean(raw)
        if name is not None:
            self._add(NameObservation(name, address, source, rec.input_index, rec.frame))

    def _dns(self, message: bytes, rec: PacketRecord) -> None:
        try:
            dns = dpkt.dns.DNS(message)
            if dns.qr != dpkt.dns.DNS_R:
                return
            answers = [(rr.type, str(rr.name), rr) for rr in dns.an]
            aliases: dict[str, list[str]] = {}  # CNAME target -> names that point at it
            for rtype, owner, rr in answers:
                if rtype == dpkt.dns.DNS_CNAME:
                    aliases.setdefault(str(rr.cname).lower().rstrip("."), []).append(owner)
            tied: list[tuple[str, str]] = []
            short = False
            for rtype, owner, rr in answers:
                if rtype == dpkt.dns.DNS_A or rtype == dpkt.dns.DNS_AAAA:
                    raw = rr.ip if rtype == dpkt.dns.DNS_A else rr.ip6
                    if len(raw) == (4 if rtype == dpkt.dns.DNS_A else 16):
                        tied.append((owner, addr_str(raw)))
                    else:
                        short = True  # dpkt hands a cut record over silently as a short buffer
        except Exception:  # dpkt raises many kinds on hostile input: count, never raise
            self.stats["parse_errors"] += 1
            return
        self.stats["dns_responses"] += 1
        if short:
            self.stats["parse_errors"] += 1
        for owner, address in tied:
            self._tie(owner, address, "dns", rec)
            # Walk the CNAME chain backwards so that the query name gets the address too.
            todo, seen = [owner.lower().rstrip(".")], set[str]()
            while todo and len(seen) < _MAX_CNAME_DEPTH:
                target = todo.pop()
                if target in seen:
                    continue
                seen.add(target)
                for alias in aliases.get(target, ()):
                    self._tie(alias, address, "dns-cname", rec)
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
        line_end = p.find(b"\r\n")
        request_line = p[:line_end if line_end >= 0 else len(p)]
        parts = request_line.split(b" ")
        if len(parts) < 2 or not parts[1].startswith(b"/"):
            return  # proxy-form request: its Host is not the packet's destination
        lower = p.lower()
        at = lower.find(b"\r\nhost:")
        if at < 0:
            return
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
