"""In-memory PacketRecord factories: tests build conversations without any capture file.

Addresses are given as text and packed here; TCP flags as Zeek-ish letters ("S", "SA", "A", "PA",
"FA", "R", "RA") or as an int. ``ip_len`` defaults to a plausible on-the-wire size.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from auditor.model import (
    ACK,
    FIN,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    PSH,
    RST,
    SYN,
    URG,
    PacketRecord,
    QuotedPacket,
    TunnelInfo,
    make_record,
)

_FLAG_LETTERS = {"S": SYN, "A": ACK, "F": FIN, "R": RST, "P": PSH, "U": URG}


def pack(addr: str) -> bytes:
    """Text address -> packed 4 or 16 bytes."""
    if ":" in addr:
        return socket.inet_pton(socket.AF_INET6, addr)
    return socket.inet_pton(socket.AF_INET, addr)


def flags_of(flags: str | int) -> int:
    if isinstance(flags, int):
        return flags
    value = 0
    for ch in flags:
        value |= _FLAG_LETTERS[ch]
    return value


def _ip_header(addr: str) -> int:
    return 40 if ":" in addr else 20


def tcp(src: str, dst: str, sport: int, dport: int, flags: str | int, ts: float, frame: int = 1,
        payload: bytes = b"", *, seq: int = 0, ack: int = 0, payload_len: int | None = None,
        input_index: int = 0, ip_len: int | None = None, checksum_bad: bool = False,
        tunnel: TunnelInfo | None = None, ttl: int = -1) -> PacketRecord:
    plen = len(payload) if payload_len is None else payload_len
    return make_record(
        input_index=input_index, frame=frame, ts=ts, src=pack(src), dst=pack(dst), proto=IPPROTO_TCP,
        ip_len=ip_len if ip_len is not None else _ip_header(src) + 20 + plen, sport=sport, dport=dport,
        tcp_flags=flags_of(flags), seq=seq, ack=ack, payload_len=plen, payload=payload[:2048],
        checksum_bad=checksum_bad, tunnel=tunnel, ttl=ttl)


def udp(src: str, dst: str, sport: int, dport: int, ts: float, frame: int = 1, payload: bytes = b"", *,
        payload_len: int | None = None, input_index: int = 0, ip_len: int | None = None,
        checksum_bad: bool = False, tunnel: TunnelInfo | None = None) -> PacketRecord:
    plen = len(payload) if payload_len is None else payload_len
    return make_record(
        input_index=input_index, frame=frame, ts=ts, src=pack(src), dst=pack(dst), proto=IPPROTO_UDP,
        ip_len=ip_len if ip_len is not None else _ip_header(src) + 8 + plen, sport=sport, dport=dport,
        payload_len=plen, payload=payload[:2048], checksum_bad=checksum_bad, tunnel=tunnel)


def icmp_echo(src: str, dst: str, ts: float, frame: int = 1, *, reply: bool = False, ident: int = 1,
              input_index: int = 0) -> PacketRecord:
    v6 = ":" in src
    itype = (129 if reply else 128) if v6 else (0 if reply else 8)
    return make_record(
        input_index=input_index, frame=frame, ts=ts, src=pack(src), dst=pack(dst),
        proto=IPPROTO_ICMPV6 if v6 else IPPROTO_ICMP, ip_len=_ip_header(src) + 8 + 56,
        icmp_type=itype, icmp_code=0, icmp_id=ident, payload_len=56)


def icmp(src: str, dst: str, itype: int, ts: float, frame: int = 1, *, code: int = 0,
         input_index: int = 0, quoted: QuotedPacket | None = None) -> PacketRecord:
    v6 = ":" in src
    return make_record(
        input_index=input_index, frame=frame, ts=ts, src=pack(src), dst=pack(dst),
        proto=IPPROTO_ICMPV6 if v6 else IPPROTO_ICMP, ip_len=_ip_header(src) + 8 + 28,
        icmp_type=itype, icmp_code=code, quoted=quoted)


def icmp_unreach(src: str, dst: str, ts: float, frame: int = 1, *, quoting: PacketRecord, code: int = 3,
                 input_index: int = 0) -> PacketRecord:
    """A destination unreachable (default: port unreachable) from ``src`` quoting ``quoting``."""
    v6 = ":" in src
    q = QuotedPacket(src=quoting.src, dst=quoting.dst, proto=quoting.proto, sport=quoting.sport,
                     dport=quoting.dport)
    return icmp(src, dst, 1 if v6 else 3, ts, frame, code=(4 if v6 and code == 3 else code),
                input_index=input_index, quoted=q)


def other(src: str, dst: str, proto: int, ts: float, frame: int = 1) -> PacketRecord:
    return make_record(input_index=0, frame=frame, ts=ts, src=pack(src), dst=pack(dst), proto=proto,
                        ip_len=_ip_header(src) + 40)


def numbered(recs: Iterable[PacketRecord], input_index: int = 0, start: int = 1) -> list[PacketRecord]:
    """Give records consecutive frame numbers (as a reader would), in the order given."""
    out = []
    for i, rec in enumerate(recs, start):
        rec.frame = i
        rec.input_index = input_index
        out.append(rec)
    return out


def handshake(client: str, server: str, cport: int, sport: int, ts: float, *, data: bool = True,
              close: bool = True, isn: int = 1000) -> list[PacketRecord]:
    """A complete TCP conversation: SYN, SYN-ACK, ACK, request, reply, FIN both ways."""
    recs = [
        tcp(client, server, cport, sport, "S", ts, seq=isn),
        tcp(server, client, sport, cport, "SA", ts + 0.001, seq=5000, ack=isn + 1),
        tcp(client, server, cport, sport, "A", ts + 0.002, seq=isn + 1, ack=5001),
    ]
    if data:
        recs += [
            tcp(client, server, cport, sport, "PA", ts + 0.003, payload=b"hello", seq=isn + 1, ack=5001),
            tcp(server, client, sport, cport, "PA", ts + 0.004, payload=b"world!", seq=5001, ack=isn + 6),
        ]
    if close:
        recs += [
            tcp(client, server, cport, sport, "FA", ts + 0.005, seq=isn + 6, ack=5007),
            tcp(server, client, sport, cport, "FA", ts + 0.006, seq=5007, ack=isn + 7),
            tcp(client, server, cport, sport, "A", ts + 0.007, seq=isn + 7, ack=5008),
        ]
    return recs
