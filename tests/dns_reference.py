"""The name evidence of DNS responses as names.py made it before the lean reader (auditor/dnswire.py):
dpkt's object model over the whole message, copied from names.py as it was. The reference of
tests/test_names_lean.py and the "before" of bench/bench_names.py: one copy for both.
"""

from __future__ import annotations

from typing import Any

import dpkt

from auditor.model import PacketRecord, addr_str
from auditor.names import NameEvidence
from auditor.nametable import MAX_CNAME_DEPTH, NameTable


def tie_like_today(ev: NameTable, answers: list[tuple[int, str, Any]], short: bool, rec: PacketRecord) -> None:
    """What names.py did with dpkt's answers (copied from it), after a successful parse."""
    aliases: dict[str, list[str]] = {}
    for rtype, owner, rr in answers:
        if rtype == dpkt.dns.DNS_CNAME:
            aliases.setdefault(str(rr.cname).lower().rstrip("."), []).append(owner)
    tied: list[tuple[str, str]] = []
    for rtype, owner, rr in answers:
        if rtype == dpkt.dns.DNS_A or rtype == dpkt.dns.DNS_AAAA:
            raw = rr.ip if rtype == dpkt.dns.DNS_A else rr.ip6
            if len(raw) == (4 if rtype == dpkt.dns.DNS_A else 16):
                tied.append((owner, addr_str(raw)))
            else:
                short = True
    ev.stats["dns_responses"] += 1
    if short:
        ev.stats["parse_errors"] += 1
    for owner, address in tied:
        ev.tie(owner, address, "dns", rec)
        todo, seen = [owner.lower().rstrip(".")], set[str]()
        while todo and len(seen) < MAX_CNAME_DEPTH:
            target = todo.pop()
            if target in seen:
                continue
            seen.add(target)
            for alias in aliases.get(target, ()):
                ev.tie(alias, address, "dns-cname", rec)
                todo.append(alias.lower().rstrip("."))


class TodayTable(NameTable):
    """Name evidence as it was: dpkt parses the whole message; any exception is a parse error."""

    def dns(self, message: bytes, rec: PacketRecord) -> None:
        try:
            dns = dpkt.dns.DNS(message)
            if dns.qr != dpkt.dns.DNS_R:
                return
            answers = [(rr.type, str(rr.name), rr) for rr in dns.an]
        except Exception:
            self.stats["parse_errors"] += 1
            return
        tie_like_today(self, answers, False, rec)


class Today(NameEvidence):
    """NameEvidence over TodayTable (the Python table, whichever build runs)."""

    def __init__(self) -> None:
        super().__init__()
        self._t = TodayTable(self._t.max_names, self._t.max_len)
