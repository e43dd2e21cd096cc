"""Grouping into CIDRs: client hosts (User Device, Target Device) written as the narrowest networks that
swallow no listener and no other entry (roles_lint would call that an overlap), never wider than /16
(IPv6: /64)."""

from __future__ import annotations

import bisect
import ipaddress
from collections import defaultdict
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def group_hosts(hosts: Iterable[str], blockers: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Hosts as the narrowest networks that hold them and no blocker, never wider than /16 (IPv6:
    /64); a host alone stays an address. (entry text, member hosts)."""
    out: list[tuple[str, tuple[str, ...]]] = []
    by_version: dict[int, set[int]] = defaultdict(set)
    blocked: dict[int, set[int]] = defaultdict(set)
    for h in hosts:
        ip = _ip(h)
        by_version[ip.version].add(int(ip))
    for b in blockers:
        ip = _ip(b)
        blocked[ip.version].add(int(ip))
    for version, values in sorted(by_version.items()):
        _split(sorted(values), sorted(blocked[version]), version, out)
    return out


def _split(values: list[int], stops: list[int], version: int, out: list[tuple[str, tuple[str, ...]]]) -> None:
    """The narrowest network around ``values`` if it holds no stop and is not too wide, else each
    half (by the first bit they differ in) on its own."""
    bits, widest = (32, 16) if version == 4 else (128, 64)
    lo, hi = values[0], values[-1]
    if lo == hi:
        out.append((_text(lo, version), (_text(lo, version),)))
        return
    prefix = bits - (lo ^ hi).bit_length()
    base = lo >> (bits - prefix) << (bits - prefix)
    top = base + (1 << (bits - prefix)) - 1
    j = bisect.bisect_left(stops, base)
    if prefix >= widest and not (j < len(stops) and stops[j] <= top):
        net = ipaddress.ip_network((base, prefix)) if version == 4 else ipaddress.IPv6Network((base, prefix))
        out.append((str(net), tuple(_text(v, version) for v in values)))
        return
    k = bisect.bisect_left(values, base + (1 << (bits - prefix - 1)))  # both halves are non-empty
    _split(values[:k], stops, version, out)
    _split(values[k:], stops, version, out)


def _text(value: int, version: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))
