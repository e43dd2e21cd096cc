#!/usr/bin/env python3
"""Generate the sample captures in sample_pcaps/: five Citrix deployments as real pcapng files.

    python sample_pcaps/generate.py [OUTDIR]        # default: the folder this script is in

Deterministic: every random choice comes from a fixed seed per sample and every timestamp from a fixed
base, so re-running writes byte-identical files (tests/test_samples_wire.py checks it). Each
<name>.README.md states what the audit must find; the captures are built to match it, flow by flow.

The wire formats are real (Ethernet II, optional 802.1Q, IPv4/IPv6 with correct lengths and
checksums, full TCP handshakes with consistent seq/ack, DNS, TLS ClientHello with SNI, HTTP, NTP,
DHCP, TFTP, RADIUS, SNMP, LDAP, Kerberos, TDS, RDP, SMB2, SSH, SMTP, IPFIX, DTLS) so that tshark decodes
every frame without a malformed-packet or bad-checksum expert info.
"""

from __future__ import annotations

import hashlib
import random
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

# 2024-03-12T09:00:00Z: every sample's first packet is at BASE_TS + a few seconds.
BASE_TS = 1_710_234_000
MSS = 1460


# --------------------------------------------------------------------------------------------------
# Hosts and the capture builder
# --------------------------------------------------------------------------------------------------


@dataclass
class Host:
    """One station on the wire: its addresses, MAC and IP-stack habits."""

    name: str
    ip: str
    ip6: str | None = None
    ttl: int = 128
    mac: bytes = b""
    ip_id: int = 0

    def addr(self, v6: bool) -> bytes:
        if v6:
            assert self.ip6, self.name
            return socket.inet_pton(socket.AF_INET6, self.ip6)
        return socket.inet_pton(socket.AF_INET, self.ip)


def _mac_for(name: str) -> bytes:
    # Locally administered unicast MAC derived from the host name: consistent per host, every run.
    return b"\x02" + hashlib.sha256(name.encode()).digest()[:5]


Exchange = Sequence[tuple[str, bytes, float]]
"""A conversation script: (who sends: 'c' client or 's' server, payload, seconds after the previous)."""


@dataclass
class Capture:
    """Collects frames with their timestamps; written in time order as one pcapng interface."""

    seed: int
    vlan: int | None = None
    frames: list[tuple[int, int, bytes]] = field(default_factory=list)
    hosts: dict[str, Host] = field(default_factory=dict)
    used_ports: set[tuple[str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # ---- hosts, ports, raw bytes ----
    def host(self, name: str, ip: str, ip6: str | None = None, ttl: int = 128) -> Host:
        h = Host(name, ip, ip6, ttl, _mac_for(name), self.rng.randrange(0x1000, 0xF000))
        self.hosts[name] = h
        return h

    def eph(self, h: Host) -> int:
        while True:
            p = self.rng.randrange(49152, 65536)
            if (h.ip, p) not in self.used_ports:
                self.used_ports.add((h.ip, p))
                return p

    def rand(self, n: int) -> bytes:
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    # ---- layer 2/3 ----
    def emit(
        self,
        t: float,
        src: Host,
        dst: Host,
        l4: dpkt.Packet,
        proto: int,
        v6: bool = False,
        dst_mac: bytes | None = None,
    ) -> bytes:
        """Wrap a transport segment in IP and Ethernet; returns the IP packet's bytes."""
        if v6:
            ip6 = dpkt.ip6.IP6(
                v=6,
                fc=0,
                flow=0,
                nxt=proto,
                hlim=src.ttl,  # Windows 128, Linux/appliances 64, as for IPv4
                src=src.addr(True),
                dst=dst.addr(True),
            )
            ip6.data = l4
            ip6.plen = len(bytes(l4))
            ip6.extension_hdrs = {}
            raw = bytes(ip6)
            etype = 0x86DD
        else:
            src.ip_id = (src.ip_id + 1) & 0xFFFF
            ip = dpkt.ip.IP(
                tos=0,
                id=src.ip_id,
                df=1 if proto == 6 else 0,
                ttl=src.ttl,
                p=proto,
                src=src.addr(False),
                dst=dst.addr(False),
                data=l4,
            )
            ip.len = 20 + len(bytes(l4))
            raw = bytes(ip)
            etype = 0x0800
        self.l2(t, src.mac, dst_mac or dst.mac, etype, raw)
        return raw

    def l2(self, t: float, smac: bytes, dmac: bytes, etype: int, payload: bytes) -> None:
        if self.vlan is not None:
            hdr = dmac + smac + struct.pack(">HHH", 0x8100, self.vlan, etype)
        else:
            hdr = dmac + smac + struct.pack(">H", etype)
        self.frames.append((round(t * 1_000_000), len(self.frames), hdr + payload))

    # ---- TCP ----
    def _seg(
        self,
        t: float,
        s: Host,
        d: Host,
        sp: int,
        dp: int,
        seq: int,
        ack: int,
        flags: int,
        data: bytes = b"",
        opts: bytes = b"",
        win: int = 0,
        v6: bool = False,
    ) -> None:
        tcp = dpkt.tcp.TCP(
            sport=sp,
            dport=dp,
            seq=seq & 0xFFFFFFFF,
            ack=ack & 0xFFFFFFFF,
            flags=flags,
            win=win or 2053,
            opts=opts,
            data=data,
        )
        tcp.off = 5 + len(opts) // 4
        self.emit(t, s, d, tcp, 6, v6)

    def tcp(
        self,
        t: float,
        c: Host,
        s: Host,
        dport: int,
        exchange: Exchange = (),
        *,
        sport: int | None = None,
        close: str = "fin",
        syn: bool = True,
        v6: bool = False,
        retransmit: int | None = None,
        rtt: float = 0.0006,
    ) -> float:
        """A TCP connection: handshake (unless mid-stream), the scripted data, then FIN or RST.

        retransmit=i sends message i twice (the first copy is 'lost' beyond the vantage, so the
        receiver only ACKs the retransmission, 300 ms later). Returns the time of the last packet.
        """
        F, S, R, P, A = (dpkt.tcp.TH_FIN, dpkt.tcp.TH_SYN, dpkt.tcp.TH_RST, dpkt.tcp.TH_PUSH, dpkt.tcp.TH_ACK)
        sp = sport or self.eph(c)
        cs, ss = self.rng.getrandbits(32), self.rng.getrandbits(32)
        side = {"c": (c, s, sp, dport), "s": (s, c, dport, sp)}
        nxt = {"c": cs, "s": ss}
        win = {"c": 1026, "s": 8212}  # scaled by the handshake's window-scale option (x256 / x32)
        if syn:
            syn_opts = b"\x02\x04\x05\xb4\x01\x03\x03\x08\x01\x01\x04\x02"
            self._seg(t, c, s, sp, dport, cs, 0, S, opts=syn_opts, win=64240, v6=v6)
            t += rtt
            self._seg(
                t,
                s,
                c,
                dport,
                sp,
                ss,
                cs + 1,
                S | A,
                opts=b"\x02\x04\x05\xb4\x01\x03\x03\x05\x01\x01\x04\x02",
                win=65535,
                v6=v6,
            )
            t += 0.00015
            self._seg(t, c, s, sp, dport, cs + 1, ss + 1, A, win=win["c"], v6=v6)
            nxt = {"c": cs + 1, "s": ss + 1}
        for i, (who, data, gap) in enumerate(exchange):
            other = "s" if who == "c" else "c"
            a, b, p1, p2 = side[who]
            t += gap
            chunks = [data[k : k + MSS] for k in range(0, len(data), MSS)] or [b""]
            for j, ch in enumerate(chunks):
                fl = A | (P if j == len(chunks) - 1 else 0)
                self._seg(t, a, b, p1, p2, nxt[who], nxt[other], fl, ch, win=win[who], v6=v6)
                if retransmit == i:
                    self._seg(t + 0.3, a, b, p1, p2, nxt[who], nxt[other], fl, ch, win=win[who], v6=v6)
                nxt[who] += len(ch)
                t += 0.00002 * len(ch) / 100
            if retransmit == i:
                t += 0.3
            follows = i + 1 < len(exchange) and exchange[i + 1][0] == other
            if not follows:
                t += rtt / 2 + 0.0002
                self._seg(t, b, a, p2, p1, nxt[other], nxt[who], A, win=win[other], v6=v6)
        if close == "fin":
            t += 0.05
            self._seg(t, c, s, sp, dport, nxt["c"], nxt["s"], F | A, win=win["c"], v6=v6)
            t += rtt
            self._seg(t, s, c, dport, sp, nxt["s"], nxt["c"] + 1, F | A, win=win["s"], v6=v6)
            t += 0.0002
            self._seg(t, c, s, sp, dport, nxt["c"] + 1, nxt["s"] + 1, A, win=win["c"], v6=v6)
        elif close == "rst":
            t += 0.05
            self._seg(t, c, s, sp, dport, nxt["c"], nxt["s"], R | A, win=0, v6=v6)
        return t

    def tcp_rejected(
        self, t: float, c: Host, s: Host, dport: int, *, attempts: int = 1, v6: bool = False
    ) -> float:
        """SYN answered by RST-ACK (port closed); the client tries again from a new port."""
        for _ in range(attempts):
            sp, isn = self.eph(c), self.rng.getrandbits(32)
            self._seg(
                t,
                c,
                s,
                sp,
                dport,
                isn,
                0,
                dpkt.tcp.TH_SYN,
                opts=b"\x02\x04\x05\xb4\x01\x03\x03\x08\x01\x01\x04\x02",
                win=64240,
                v6=v6,
            )
            t += 0.0005
            self._seg(t, s, c, dport, sp, 0, isn + 1, dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK, win=0, v6=v6)
            t += 0.5
        return t

    def tcp_unanswered(
        self, t: float, c: Host, s: Host, dport: int, *, tries: int = 3, v6: bool = False
    ) -> float:
        """SYN never answered: retransmitted after 1 s, then 2 s (RFC 6298 back-off)."""
        sp, isn = self.eph(c), self.rng.getrandbits(32)
        back = 1.0
        for k in range(tries):
            self._seg(
                t,
                c,
                s,
                sp,
                dport,
                isn,
                0,
                dpkt.tcp.TH_SYN,
                opts=b"\x02\x04\x05\xb4\x01\x03\x03\x08\x01\x01\x04\x02",
                win=64240,
                v6=v6,
            )
            if k + 1 < tries:
                t += back
                back *= 2
        return t

    # ---- UDP / ICMP ----
    def udp(
        self,
        t: float,
        c: Host,
        s: Host,
        dport: int,
        exchange: Exchange,
        *,
        sport: int | None = None,
        v6: bool = False,
    ) -> tuple[float, list[bytes]]:
        """UDP datagrams between c:sport and s:dport. Returns the end time and each IP packet sent."""
        sp = sport or self.eph(c)
        sent = []
        for who, data, gap in exchange:
            t += gap
            a, b, p1, p2 = (c, s, sp, dport) if who == "c" else (s, c, dport, sp)
            u = dpkt.udp.UDP(sport=p1, dport=p2, data=data)
            u.ulen = 8 + len(data)
            sent.append(self.emit(t, a, b, u, 17, v6))
        return t, sent

    def icmp_unreachable(self, t: float, frm: Host, to: Host, quoted_ip: bytes, code: int = 3) -> None:
        """ICMP destination unreachable quoting the original IP header + 8 bytes (RFC 792)."""
        ihl = (quoted_ip[0] & 0x0F) * 4
        msg = dpkt.icmp.ICMP(type=3, code=code, data=dpkt.icmp.ICMP.Unreach(data=quoted_ip[: ihl + 8]))
        self.emit(t, frm, to, msg, 1)

    # ---- output ----
    def write(self, path: Path) -> int:
        self.frames.sort(key=lambda f: (f[0], f[1]))
        with path.open("wb") as fh:
            shb = dpkt.pcapng.SectionHeaderBlockLE(
                opts=[
                    dpkt.pcapng.PcapngOptionLE(
                        code=dpkt.pcapng.PCAPNG_OPT_SHB_USERAPPL, text="pcap-audit sample_pcaps/generate.py"
                    ),
                    dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT),
                ]
            )
            idb = dpkt.pcapng.InterfaceDescriptionBlockLE(snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
            w = dpkt.pcapng.Writer(fh, shb=shb, idb=idb)
            for us, _, frame in self.frames:
                w.writepkt_time(frame, us / 1_000_000)
        return len(self.frames)


# --------------------------------------------------------------------------------------------------
# Application payloads (each a real, decodable message)
# --------------------------------------------------------------------------------------------------


def _tls_record(ctype: int, body: bytes, ver: int = 0x0303) -> bytes:
    return struct.pack(">BHH", ctype, ver, len(body)) + body


def _ext(etype: int, body: bytes) -> bytes:
    return struct.pack(">HH", etype, len(body)) + body


def tls_client_hello(cap: Capture, sni: str) -> bytes:
    """TLS ClientHello (record 0x16 0x0301, client_version 0x0303) with server_name, TLS 1.3 offer."""
    name = sni.encode()
    exts = b"".join(
        [
            _ext(0, struct.pack(">HBH", len(name) + 3, 0, len(name)) + name),  # server_name
            _ext(23, b""),  # extended_master_secret
            _ext(65281, b"\x00"),  # renegotiation_info
            _ext(10, b"\x00\x06\x00\x1d\x00\x17\x00\x18"),  # supported_groups
            _ext(11, b"\x01\x00"),  # ec_point_formats
            _ext(35, b""),  # session_ticket
            _ext(16, b"\x00\x0c\x02h2\x08http/1.1"),  # ALPN
            _ext(13, b"\x00\x08\x04\x03\x08\x04\x04\x01\x05\x01"),  # signature_algorithms
            _ext(51, b"\x00\x24\x00\x1d\x00\x20" + cap.rand(32)),  # key_share x25519
            _ext(45, b"\x01\x01"),  # psk_key_exchange_modes
            _ext(43, b"\x04\x03\x04\x03\x03"),  # supported_versions
        ]
    )
    suites = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xC013, 0xC014, 0x009C, 0x002F]
    body = (
        b"\x03\x03"
        + cap.rand(32)
        + b"\x20"
        + cap.rand(32)
        + struct.pack(">H", 2 * len(suites))
        + b"".join(struct.pack(">H", s) for s in suites)
        + b"\x01\x00"
        + struct.pack(">H", len(exts))
        + exts
    )
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return _tls_record(22, hs, 0x0301)


def tls_server_flight(cap: Capture, n_encrypted: int = 1800) -> bytes:
    """TLS 1.3 ServerHello, ChangeCipherSpec, then the encrypted rest of the server's flight."""
    exts = _ext(43, b"\x03\x04") + _ext(51, b"\x00\x1d\x00\x20" + cap.rand(32))
    body = (
        b"\x03\x03"
        + cap.rand(32)
        + b"\x20"
        + cap.rand(32)
        + b"\x13\x02\x00"
        + struct.pack(">H", len(exts))
        + exts
    )
    hs = b"\x02" + struct.pack(">I", len(body))[1:] + body
    return _tls_record(22, hs) + _tls_record(20, b"\x01") + tls_app(cap, n_encrypted)


def tls_client_finish(cap: Capture) -> bytes:
    return _tls_record(20, b"\x01") + tls_app(cap, 74)


def tls_app(cap: Capture, n: int) -> bytes:
    """Encrypted application data records (opaque, as on the wire)."""
    out = b""
    while n > 0:
        k = min(n, 16384)
        out += _tls_record(23, cap.rand(k))
        n -= k
    return out


def tls_session(
    cap: Capture, sni: str, exchanges: Sequence[tuple[int, int]], gap: float = 0.05
) -> list[tuple[str, bytes, float]]:
    """Script of a TLS 1.3 connection: hello, server flight, then (request, response) sizes."""
    ex: list[tuple[str, bytes, float]] = [
        ("c", tls_client_hello(cap, sni), 0.0002),
        ("s", tls_server_flight(cap), 0.004),
        ("c", tls_client_finish(cap), 0.001),
    ]
    for req, resp in exchanges:
        ex.append(("c", tls_app(cap, req), gap))
        ex.append(("s", tls_app(cap, resp), 0.008))
    return ex


def http_req(method: str, path: str, host: str, body: bytes = b"", ctype: str = "", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
    if body or method == "POST":
        head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    return (head + "Connection: Keep-Alive\r\n\r\n").encode() + body


def http_resp(
    body: bytes,
    ctype: str = "application/soap+xml; charset=utf-8",
    status: str = "200 OK",
    server: str = "Microsoft-HTTPAPI/2.0",
) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nServer: {server}\r\n"
        f"Date: Tue, 12 Mar 2024 09:00:00 GMT\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def soap(action: str, inner: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        f'xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action s:mustUnderstand="1">'
        f"{action}</a:Action></s:Header><s:Body>{inner}</s:Body></s:Envelope>"
    ).encode()


def wcf_exchange(
    host: str, path: str, action: str, req_inner: str, resp_inner: str
) -> list[tuple[str, bytes, float]]:
    return [
        (
            "c",
            http_req("POST", path, host, soap(action, req_inner), "application/soap+xml; charset=utf-8"),
            0.0003,
        ),
        ("s", http_resp(soap(action + "Response", resp_inner)), 0.012),
    ]


def dns_query(qid: int, name: str, qtype: int = dpkt.dns.DNS_A) -> bytes:
    d = dpkt.dns.DNS(id=qid, op=dpkt.dns.DNS_RD, qd=[dpkt.dns.DNS.Q(name=name, type=qtype)])
    return bytes(d)


def dns_answer(
    qid: int,
    name: str,
    chain: Sequence[str],
    addrs: Sequence[str],
    qtype: int = dpkt.dns.DNS_A,
    ttl: int = 1200,
) -> bytes:
    """Response: name CNAME chain[0] CNAME ... then A/AAAA records for the last name."""
    d = dpkt.dns.DNS(
        id=qid,
        op=dpkt.dns.DNS_QR | dpkt.dns.DNS_RD | dpkt.dns.DNS_RA,
        qd=[dpkt.dns.DNS.Q(name=name, type=qtype)],
    )
    owner = name
    for cn in chain:
        d.an.append(dpkt.dns.DNS.RR(name=owner, type=dpkt.dns.DNS_CNAME, ttl=ttl, cname=cn))
        owner = cn
    for a in addrs:
        if qtype == dpkt.dns.DNS_AAAA:
            d.an.append(
                dpkt.dns.DNS.RR(name=owner, type=qtype, ttl=ttl, ip6=socket.inet_pton(socket.AF_INET6, a))
            )
        else:
            d.an.append(dpkt.dns.DNS.RR(name=owner, type=qtype, ttl=ttl, ip=socket.inet_aton(a)))
    return bytes(d)


def dns_lookup(
    cap: Capture,
    t: float,
    client: Host,
    server: Host,
    name: str,
    chain: Sequence[str],
    addrs: Sequence[str],
    qtype: int = dpkt.dns.DNS_A,
) -> float:
    qid = cap.rng.randrange(1, 0xFFFF)
    t, _ = cap.udp(
        t,
        client,
        server,
        53,
        [("c", dns_query(qid, name, qtype), 0.0), ("s", dns_answer(qid, name, chain, addrs, qtype), 0.0011)],
    )
    return t


# ---- BER (LDAP, Kerberos, SNMP) ----
def ber(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        ln = bytes([n])
    elif n < 0x100:
        ln = b"\x81" + bytes([n])
    else:
        ln = b"\x82" + struct.pack(">H", n)
    return bytes([tag]) + ln + content


def ber_int(v: int, tag: int = 0x02) -> bytes:
    n = max(1, (v.bit_length() + 8) // 8)
    return ber(tag, v.to_bytes(n, "big", signed=True))


def ber_str(s: str | bytes, tag: int = 0x04) -> bytes:
    return ber(tag, s.encode() if isinstance(s, str) else s)


def ber_seq(*items: bytes, tag: int = 0x30) -> bytes:
    return ber(tag, b"".join(items))


def ldap_search(msgid: int, base: str, attr: str, value: str) -> bytes:
    filt = ber_seq(ber_str(attr), ber_str(value), tag=0xA3)  # equalityMatch
    req = ber_seq(
        ber_str(base),
        ber_int(2, 0x0A),
        ber_int(0, 0x0A),
        ber_int(0),
        ber_int(30),
        ber(0x01, b"\x00"),
        filt,
        ber_seq(ber_str("displayName"), ber_str("mail")),
        tag=0x63,
    )
    return ber_seq(ber_int(msgid), req)


def ldap_search_result(msgid: int, dn: str, attrs: dict[str, str]) -> bytes:
    pal = ber_seq(*[ber_seq(ber_str(k), ber_seq(ber_str(v), tag=0x31)) for k, v in attrs.items()])
    entry = ber_seq(ber_int(msgid), ber_seq(ber_str(dn), pal, tag=0x64))
    done = ber_seq(ber_int(msgid), ber_seq(ber_int(0, 0x0A), ber_str(""), ber_str(""), tag=0x65))
    return entry + done


def ldap_bind(msgid: int, dn: str, pw: str) -> bytes:
    return ber_seq(ber_int(msgid), ber_seq(ber_int(3), ber_str(dn), ber_str(pw, 0x80), tag=0x60))


def ldap_bind_ok(msgid: int) -> bytes:
    return ber_seq(ber_int(msgid), ber_seq(ber_int(0, 0x0A), ber_str(""), ber_str(""), tag=0x61))


def krb_as_req(user: str, realm: str, nonce: int) -> bytes:
    """Kerberos AS-REQ over TCP (RFC 4120 section 7.2.2: 4-byte length prefix)."""

    def ctx(n: int, v: bytes) -> bytes:
        return ber(0xA0 + n, v)

    def princ(kind: int, *parts: str) -> bytes:
        return ber_seq(ctx(0, ber_int(kind)), ctx(1, ber_seq(*[ber_str(p, 0x1B) for p in parts])))

    body = ber_seq(
        ctx(0, ber(0x03, b"\x00\x40\x81\x00\x10")),
        ctx(1, princ(1, user)),
        ctx(2, ber_str(realm, 0x1B)),
        ctx(3, princ(2, "krbtgt", realm)),
        ctx(5, ber_str("20370913024805Z", 0x18)),
        ctx(7, ber_int(nonce)),
        ctx(8, ber_seq(ber_int(18), ber_int(17), ber_int(23))),
    )
    msg = ber(0x6A, ber_seq(ctx(1, ber_int(5)), ctx(2, ber_int(10)), ctx(4, body)))
    return struct.pack(">I", len(msg)) + msg


def krb_error_preauth(realm: str) -> bytes:
    def ctx(n: int, v: bytes) -> bytes:
        return ber(0xA0 + n, v)

    sname = ber_seq(ctx(0, ber_int(2)), ctx(1, ber_seq(ber_str("krbtgt", 0x1B), ber_str(realm, 0x1B))))
    msg = ber(
        0x7E,
        ber_seq(
            ctx(0, ber_int(5)),
            ctx(1, ber_int(30)),
            ctx(4, ber_str("20240312090012Z", 0x18)),
            ctx(5, ber_int(511000)),
            ctx(6, ber_int(25)),
            ctx(9, ber_str(realm, 0x1B)),
            ctx(10, sname),
        ),
    )
    return struct.pack(">I", len(msg)) + msg


def tds_prelogin(reply: bool) -> bytes:
    """MS-TDS PRELOGIN (type 0x12) or its response (type 0x04)."""
    opts = [
        (0, bytes([16, 0, 0x10, 0x3C, 0, 0]) if reply else bytes([11, 0, 0x0B, 0xB8, 0, 0])),
        (1, b"\x01" if reply else b"\x00"),
        (2, b"\x00"),
        (3, b"" if reply else struct.pack("<I", 0x1A2C)),
        (4, b"\x00"),
    ]
    off = 5 * len(opts) + 1
    hdr, data = b"", b""
    for tok, val in opts:
        hdr += struct.pack(">BHH", tok, off + len(data), len(val))
        data += val
    body = hdr + b"\xff" + data
    return struct.pack(">BBHHBB", 0x04 if reply else 0x12, 1, 8 + len(body), 0, 1, 0) + body


def rdp_cr() -> bytes:
    """TPKT + X.224 Connection Request with an RDP negotiation request (TLS|CredSSP)."""
    return bytes.fromhex("030000130ee000000000000100080003000000")


def rdp_cc() -> bytes:
    return bytes.fromhex("030000130ed000001234000201080002000000")


def smb2_negotiate() -> bytes:
    """NetBIOS session header + SMB2 NEGOTIATE request offering 2.0.2 - 3.0.2."""
    dialects = [0x0202, 0x0210, 0x0300, 0x0302]
    hdr = (
        b"\xfeSMB"
        + struct.pack("<HHIHHII", 64, 0, 0, 0, 31, 0, 0)
        + struct.pack("<Q", 0)
        + struct.pack("<II", 0, 0)
        + struct.pack("<Q", 0)
        + b"\x00" * 16
    )
    body = (
        struct.pack("<HHHHI", 36, len(dialects), 1, 0, 0x7F)
        + bytes(range(16))
        + struct.pack("<Q", 0)
        + b"".join(struct.pack("<H", d) for d in dialects)
    )
    msg = hdr + body
    return struct.pack(">I", len(msg)) + msg


def dcerpc_bind_epm() -> bytes:
    """DCE/RPC bind to the endpoint mapper (EPMv4 over NDR), as Remote Assistance starts."""
    import uuid

    ctx = (
        struct.pack("<HBB", 0, 1, 0)
        + uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa").bytes_le
        + struct.pack("<HH", 3, 0)
        + uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860").bytes_le
        + struct.pack("<I", 2)
    )
    body = struct.pack("<HHI", 5840, 5840, 0) + struct.pack("<BBH", 1, 0, 0) + ctx
    return struct.pack("<BBBB4sHHI", 5, 0, 11, 3, b"\x10\x00\x00\x00", 16 + len(body), 0, 1) + body


def ssh_banner(sw: str) -> bytes:
    return f"SSH-2.0-{sw}\r\n".encode()


def ssh_packet(cap: Capture, payload: bytes) -> bytes:
    pad = 8 - (5 + len(payload)) % 8
    pad = pad + 8 if pad < 4 else pad
    return struct.pack(">IB", 1 + len(payload) + pad, pad) + payload + cap.rand(pad)


def ssh_kexinit(cap: Capture) -> bytes:
    lists = [
        "curve25519-sha256",
        "ssh-rsa,rsa-sha2-512",
        "aes256-ctr",
        "aes256-ctr",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
        "none",
        "none",
        "",
        "",
    ]
    p = b"\x14" + cap.rand(16) + b"".join(struct.pack(">I", len(x)) + x.encode() for x in lists)
    return ssh_packet(cap, p + b"\x00" + b"\x00\x00\x00\x00")


def ssh_session(
    cap: Capture, client_sw: str, server_sw: str, rounds: int = 4
) -> list[tuple[str, bytes, float]]:
    """SSH-2 banners, KEXINIT both ways, ECDH exchange, NEWKEYS, then encrypted packets."""

    def s(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    ex = [
        ("s", ssh_banner(server_sw), 0.002),
        ("c", ssh_banner(client_sw), 0.001),
        ("c", ssh_kexinit(cap), 0.0005),
        ("s", ssh_kexinit(cap), 0.001),
        ("c", ssh_packet(cap, b"\x1e" + s(cap.rand(32))), 0.001),
        (
            "s",
            ssh_packet(
                cap,
                b"\x1f"
                + s(s(b"ssh-rsa") + s(b"\x01\x00\x01") + s(b"\x00\xc3" + cap.rand(255)))
                + s(cap.rand(32))
                + s(s(b"ssh-rsa") + s(cap.rand(256))),
            )
            + ssh_packet(cap, b"\x15"),
            0.003,
        ),
        ("c", ssh_packet(cap, b"\x15"), 0.001),
    ]

    def gcm(n: int) -> bytes:
        # aes256-ctr with an encrypt-then-MAC hmac: the length stays in clear, then ciphertext + MAC.
        return struct.pack(">I", n) + cap.rand(n + 32)

    for _ in range(rounds):
        ex.append(("c", gcm(cap.rng.choice([32, 48, 80])), 0.2))
        ex.append(("s", gcm(cap.rng.choice([32, 64, 128, 480])), 0.01))
    return ex


def ica_session(cap: Capture, cgp: bool, rounds: int) -> list[tuple[str, bytes, float]]:
    """HDX: CGP handshake (2598) or the ICA banner the VDA sends first (1494), then encrypted ICA."""
    ex: list[tuple[str, bytes, float]] = []
    if cgp:
        ex += [("c", b"\x1aCGP/01" + cap.rand(9), 0.001), ("s", b"\x1aCGP/01" + cap.rand(9), 0.002)]
    ex += [
        ("s", b"\x7f\x7fICA\x00" + cap.rand(10), 0.002),
        ("c", cap.rand(64), 0.002),
        ("s", cap.rand(212), 0.003),
    ]
    for _ in range(rounds):
        ex.append(("c", cap.rand(cap.rng.choice([40, 88, 130])), cap.rng.uniform(0.05, 0.6)))
        ex.append(("s", cap.rand(cap.rng.choice([320, 900, 1460, 2800, 5200])), 0.015))
    return ex


def edt_stream(cap: Capture, n: int) -> list[tuple[str, bytes, float]]:
    """EDT (HDX over UDP): opaque datagrams both ways, mostly VDA -> client."""
    ex: list[tuple[str, bytes, float]] = [("c", cap.rand(56), 0.0), ("s", cap.rand(56), 0.002)]
    for _ in range(n):
        ex.append(("s", cap.rand(cap.rng.choice([120, 600, 1100])), cap.rng.uniform(0.02, 0.25)))
        if cap.rng.random() < 0.5:
            ex.append(("c", cap.rand(48), 0.004))
    return ex


def opaque(
    cap: Capture, sizes: Sequence[tuple[int, int]], gap: float = 0.2
) -> list[tuple[str, bytes, float]]:
    ex: list[tuple[str, bytes, float]] = []
    for a, b in sizes:
        ex.append(("c", cap.rand(a), gap))
        ex.append(("s", cap.rand(b), 0.004))
    return ex


def ntp_msg(mode: int, t: float) -> bytes:
    n = dpkt.ntp.NTP(
        flags=(4 << 3) | mode,
        stratum=0 if mode == 3 else 2,
        interval=6,
        precision=0xE9,
        delay=0 if mode == 3 else 0x200,
        dispersion=0 if mode == 3 else 0x400,
        id=b"\x00" * 4 if mode == 3 else socket.inet_aton("192.0.2.123"),
    )
    secs = int(t) + 2_208_988_800
    frac = int((t % 1) * 2**32)
    stamp = struct.pack(">II", secs, frac)
    if mode == 3:
        n.update_time = n.originate_time = n.receive_time = b"\x00" * 8
        n.transmit_time = stamp
    else:
        n.update_time = struct.pack(">II", secs - 600, 0)
        n.originate_time = struct.pack(">II", secs, frac)
        n.receive_time = n.transmit_time = stamp
    return bytes(n)


def tds_batch(sql: str) -> bytes:
    """TDS SQL batch (type 0x01) with the ALL_HEADERS transaction descriptor (TDS 7.2+)."""
    body = struct.pack("<IIHQI", 22, 18, 2, 0, 1) + sql.encode("utf-16-le")
    return struct.pack(">BBHHBB", 0x01, 1, 8 + len(body), 0, 1, 0) + body


def tds_done(rows: int) -> bytes:
    body = b"\xfd" + struct.pack("<HHQ", 0x10, 0xC1, rows)
    return struct.pack(">BBHHBB", 0x04, 1, 8 + len(body), 0x34, 1, 0) + body


def tds_session(cap: Capture, queries: Sequence[str]) -> list[tuple[str, bytes, float]]:
    ex = [("c", tds_prelogin(False), 0.0003), ("s", tds_prelogin(True), 0.002)]
    for q in queries:
        ex += [
            ("c", tds_batch(q), cap.rng.uniform(0.05, 0.5)),
            ("s", tds_done(cap.rng.randrange(0, 9)), 0.004),
        ]
    return ex


# --------------------------------------------------------------------------------------------------
# The samples
# --------------------------------------------------------------------------------------------------

Sample = Callable[[], Capture]
SAMPLES: dict[str, Sample] = {}


def sample(fn: Sample) -> Sample:
    SAMPLES[fn.__name__.replace("_", "-")] = fn
    return fn


@sample
def cvad_onprem() -> Capture:
    cap = Capture(seed=1494)
    h = cap.host
    dc = h("dc01", "10.0.1.5")
    dns = h("dns01", "10.0.1.6")
    ddc1, ddc2 = h("ddc01", "10.0.1.10"), h("ddc02", "10.0.1.11")
    sf = h("sf01", "10.0.1.20")
    sql = h("sql01", "10.0.1.30")
    lic = h("lic01", "10.0.1.31")
    director = h("director01", "10.0.1.40")
    vc = h("vcenter01", "10.0.1.50", ttl=64)
    vdas = [h(f"vda{i:02d}", f"10.0.20.{100 + i}") for i in range(1, 11)]
    u1, u2, u3 = (
        h("laptop-anna", "10.0.30.51"),
        h("laptop-ben", "10.0.30.52"),
        h("thin-c", "10.0.30.53", ttl=64),
    )
    psrv, prn = h("printsrv", "10.0.40.15"), h("printer7", "10.0.40.16", ttl=64)
    web = h("update-cdn", "203.0.113.50", ttl=52)
    T = BASE_TS + 3.0
    fqdn = "corp.example"

    # A session already running when the capture started: no SYN (mid-stream), CGP on 2598.
    ex = [("c", cap.rand(88), 0.0), ("s", cap.rand(1460), 0.012)]
    for _ in range(36):
        ex += [
            ("c", cap.rand(cap.rng.choice([40, 88, 130])), cap.rng.uniform(2.0, 7.0)),
            ("s", cap.rand(cap.rng.choice([320, 900, 1460, 2600])), 0.015),
        ]
    cap.tcp(T, u2, vdas[1], 2598, ex, syn=False, retransmit=9, close="fin")

    # User device: name lookup with a CNAME chain, then the store over HTTPS.
    t = dns_lookup(cap, T + 1.0, u1, dns, f"storefront.{fqdn}", [f"sf-vip.{fqdn}", f"sf01.{fqdn}"], [sf.ip])
    t = cap.tcp(
        t + 0.001,
        u1,
        sf,
        443,
        tls_session(cap, f"storefront.{fqdn}", [(520, 3100), (610, 1900), (900, 2400), (450, 5200)]),
    )
    # StoreFront -> Delivery Controllers: XML service over HTTP (80) and HTTPS (443).
    t = dns_lookup(cap, T + 2.0, sf, dns, f"ddc01.{fqdn}", [], [ddc1.ip])
    t = dns_lookup(cap, t + 0.01, sf, dns, f"ddc02.{fqdn}", [], [ddc2.ip])
    nfuse = (
        b'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE NFuseProtocol SYSTEM "NFuse.dtd">'
        b'<NFuseProtocol version="6.3"><RequestAppData><Scope traverse="subtree"></Scope>'
        b"<DesiredDetails>all</DesiredDetails><ServerType>all</ServerType><ClientType>ica30</ClientType>"
        b'<Credentials><UserName>anna</UserName><Domain type="NT">CORP</Domain></Credentials>'
        b"</RequestAppData></NFuseProtocol>"
    )
    reply = (
        b'<?xml version="1.0" encoding="UTF-8"?><NFuseProtocol version="6.3"><ResponseAppData>'
        b'<AppDataSet><Scope traverse="subtree"/><AppData><InName>Win11 Desktop</InName>'
        b"</AppData></AppDataSet></ResponseAppData></NFuseProtocol>"
    )
    t = cap.tcp(
        t + 0.01,
        sf,
        ddc1,
        80,
        [
            ("c", http_req("POST", "/scripts/wpnbr.dll", f"ddc01.{fqdn}", nfuse, "text/xml"), 0.0003),
            ("s", http_resp(reply, "text/xml", server="Citrix XML Service"), 0.03),
        ],
    )
    cap.tcp(t + 0.2, sf, ddc2, 443, tls_session(cap, f"ddc02.{fqdn}", [(1200, 2900)]))
    # StoreFront -> Domain Controller: LDAP 389 and Kerberos 88 over TCP; a CLDAP ping over UDP 389
    # that the DC's firewall rejects with ICMP port unreachable (twice).
    t = cap.tcp(
        T + 3.0,
        sf,
        dc,
        389,
        [
            ("c", ldap_search(7, "DC=corp,DC=example", "sAMAccountName", "anna"), 0.0003),
            (
                "s",
                ldap_search_result(
                    7,
                    "CN=Anna Berg,OU=Staff,DC=corp,DC=example",
                    {"displayName": "Anna Berg", "mail": "anna@corp.example"},
                ),
                0.002,
            ),
        ],
    )
    t = cap.tcp(
        t + 0.05,
        sf,
        dc,
        88,
        [
            ("c", krb_as_req("anna", "CORP.EXAMPLE", 0x2A6F1B3C), 0.0003),
            ("s", krb_error_preauth("CORP.EXAMPLE"), 0.002),
        ],
    )
    for k in range(2):
        tq, sent = cap.udp(
            t + 0.1 + k * 1.0, sf, dc, 389, [("c", ldap_search(1, "", "DnsDomain", "corp.example"), 0.0)]
        )
        cap.icmp_unreachable(tq + 0.0004, dc, sf, sent[0])

    # HDX: anna -> vda01 ICA 1494 (TCP then EDT over UDP 1494); thin-c -> vda03 CGP 2598 + EDT 2598.
    t = cap.tcp(T + 6.0, u1, vdas[0], 1494, ica_session(cap, cgp=False, rounds=14))
    cap.udp(T + 6.5, u1, vdas[0], 1494, edt_stream(cap, 40))
    cap.tcp(T + 9.0, u3, vdas[2], 2598, ica_session(cap, cgp=True, rounds=14))
    cap.udp(T + 9.6, u3, vdas[2], 2598, edt_stream(cap, 40))

    # VDA registration (VDA -> DDC 80, WCF) for vda01..vda09; the DDC calls back (DDC -> VDA 80).
    for i, vda in enumerate(vdas[:9]):
        ddc = ddc1 if i % 2 == 0 else ddc2
        ddcname = f"ddc0{1 + i % 2}.{fqdn}"
        tv = T + 20.0 + i * 3.7
        tv = cap.tcp(
            tv,
            vda,
            ddc,
            80,
            wcf_exchange(
                ddcname,
                "/Citrix/CdsController/IRegistrar",
                "http://citrix.com/CdsController/IRegistrar/Register",
                f"<Register><machine>{vda.name}.{fqdn}</machine></Register>",
                "<RegisterResult>true</RegisterResult>",
            ),
        )
        cap.tcp(
            tv + 0.4,
            ddc,
            vda,
            80,
            wcf_exchange(
                f"{vda.name}.{fqdn}",
                "/Citrix/CdsController/IWorkerAgent",
                "http://citrix.com/CdsController/IWorkerAgent/GetApplications",
                "<GetApplications/>",
                "<GetApplicationsResult>12</GetApplicationsResult>",
            ),
        )
    # vda10 never registers: its SYNs to both Controllers go unanswered (1 s, 2 s back-off), twice.
    for k in range(2):
        cap.tcp_unanswered(T + 21.0 + k * 60, vdas[9], ddc1, 80)
        cap.tcp_unanswered(T + 29.0 + k * 60, vdas[9], ddc2, 80)

    # Delivery Controllers -> infrastructure.
    t = dns_lookup(cap, T + 12.0, ddc1, dns, f"sql01.{fqdn}", [], [sql.ip])
    t = dns_lookup(cap, t + 0.01, ddc1, dns, f"lic01.{fqdn}", [], [lic.ip])
    t = dns_lookup(cap, t + 0.01, ddc1, dns, f"vcenter.{fqdn}", [f"vcenter01.{fqdn}"], [vc.ip])
    for ddc in (ddc1, ddc2):
        cap.tcp(
            T + 13.0 + (ddc is ddc2) * 1.3,
            ddc,
            sql,
            1433,
            tds_session(
                cap,
                [
                    "SELECT Uid FROM chb_Config.Controllers",
                    "EXEC chb_State.GetBrokerState",
                    "SELECT COUNT(*) FROM chb_State.Sessions",
                ],
            ),
        )
    cap.tcp_rejected(T + 15.0, ddc1, lic, 27000, attempts=2)  # lmgrd not listening on ddc01's path
    cap.tcp(T + 16.0, ddc2, lic, 27000, opaque(cap, [(148, 212), (96, 64)], 0.01))
    cap.tcp(T + 16.5, ddc2, lic, 7279, opaque(cap, [(320, 188), (160, 92), (160, 92)], 0.02))
    cap.tcp_rejected(T + 17.0, ddc2, lic, 8083, attempts=2)  # Simple License Service stopped
    cap.tcp(
        T + 18.0, ddc1, vc, 443, tls_session(cap, f"vcenter.{fqdn}", [(800, 4200), (600, 2200), (650, 9800)])
    )
    cap.tcp(
        T + 40.0,
        ddc1,
        ddc2,
        80,
        wcf_exchange(
            f"ddc02.{fqdn}",
            "/Citrix/CdsController/IBrokerPeer",
            "http://citrix.com/Broker/IBrokerPeer/Ping",
            "<Ping/>",
            "<PingResult>ok</PingResult>",
        ),
    )
    cap.tcp(T + 41.0, ddc2, ddc1, 89, opaque(cap, [(240, 1460), (120, 2900), (120, 820)], 0.05))

    # Director: monitoring via the Controller, Remote Assistance to vda01 (135 then 3389).
    cap.tcp(
        T + 70.0,
        director,
        ddc1,
        80,
        [
            (
                "c",
                http_req(
                    "GET",
                    "/Citrix/Monitor/OData/v4/Data/Machines?$top=50",
                    f"ddc01.{fqdn}",
                    extra="Accept: application/json\r\n",
                ),
                0.0003,
            ),
            ("s", http_resp(b'{"value":[]}', "application/json; odata.metadata=minimal"), 0.04),
        ],
    )
    cap.tcp(T + 75.0, director, vdas[0], 135, [("c", dcerpc_bind_epm(), 0.0004)])
    cap.tcp(T + 75.4, director, vdas[0], 3389, [("c", rdp_cr(), 0.0003), ("s", rdp_cc(), 0.002)])

    # Unexpected traffic.
    cap.tcp(T + 90.0, vdas[2], sql, 1433, tds_session(cap, ["SELECT name FROM sys.databases"]))
    cap.tcp(T + 95.0, u2, ddc1, 3389, [("c", rdp_cr(), 0.0003), ("s", rdp_cc(), 0.002)])
    cap.tcp(T + 100.0, u3, vdas[4], 445, [("c", smb2_negotiate(), 0.0003)])
    cap.tcp(T + 105.0, ddc2, sf, 443, tls_session(cap, f"storefront.{fqdn}", [(300, 900)]))
    cap.tcp(T + 110.0, vdas[3], web, 443, tls_session(cap, "update.example.net", [(400, 16000)]), rtt=0.018)

    # Unmapped: two hosts not in roles.yaml (a print job and a ping).
    pjl = b'\x1b%-12345X@PJL JOB NAME="report"\r\n@PJL ENTER LANGUAGE=PCL\r\n' + cap.rand(3000)
    cap.tcp(T + 120.0, psrv, prn, 9100, [("c", pjl, 0.0003)])
    for k in range(3):
        seq_id = 0x0100
        echo = dpkt.icmp.ICMP(
            type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=seq_id, seq=k + 1, data=b"abcdefgh" * 4)
        )
        cap.emit(T + 125.0 + k, psrv, prn, echo, 1)
        rep = dpkt.icmp.ICMP(
            type=0, code=0, data=dpkt.icmp.ICMP.Echo(id=seq_id, seq=k + 1, data=b"abcdefgh" * 4)
        )
        cap.emit(T + 125.0 + k + 0.0007, prn, psrv, rep, 1)
    return cap


def dtls_records(cap: Capture, sizes: Sequence[int], epoch: int = 1) -> list[bytes]:
    """DTLS 1.2 application-data records (EDT over UDP 443 to the Gateway Service)."""
    return [
        struct.pack(">BHH", 23, 0xFEFD, epoch)
        + struct.pack(">Q", k + 1)[2:]
        + struct.pack(">H", n)
        + cap.rand(n)
        for k, n in enumerate(sizes)
    ]


@sample
def daas_cloud() -> Capture:
    cap = Capture(seed=443)
    h = cap.host
    dc = h("dc01", "10.10.0.5")
    dns = h("dns01", "10.10.0.6")
    cc1, cc2 = h("cc01", "10.10.0.21"), h("cc02", "10.10.0.22")
    vc = h("vcenter01", "10.10.0.50", ttl=64)
    vdas = [h(f"vda{i}", f"10.10.20.{i}") for i in range(31, 37)]
    user = h("laptop-dev", "10.10.30.40")
    ntpc, ntps = h("ups01", "10.10.40.10"), h("ntp-appliance", "10.10.40.11", ttl=64)
    cws = h("cws", "198.51.100.10", ttl=50)  # acme.citrixworkspacesapi.net
    trust = h("trust", "198.51.100.11", ttl=50)  # trust.citrixworkspacesapi.net
    api = h("api", "198.51.100.20", ttl=50)  # api.cloud.com
    wem = h("wem", "198.51.100.30", ttl=50)  # us-api.wem.cloud.com
    gws = h("gws", "198.51.100.40", ttl=50)  # global-s.g.nssvc.net
    crl = h("crl-cdn", "192.0.2.80", ttl=55)  # crl3.digicert.com, crl4.digicert.com
    cacerts = h("cacerts-cdn", "192.0.2.81", ttl=55)  # dl.cacerts.digicert.com
    T = BASE_TS + 7.0
    dom = "acme.example"

    # Cloud Connectors -> Citrix Cloud (443, SNI *.citrixworkspacesapi.net / *.cloud.com).
    for i, cc in enumerate((cc1, cc2)):
        t = dns_lookup(
            cap,
            T + i * 2.0,
            cc,
            dns,
            "acme.citrixworkspacesapi.net",
            ["acme-cws.trafficmanager.example"],
            [cws.ip],
        )
        cap.tcp(
            t + 0.001,
            cc,
            cws,
            443,
            tls_session(cap, "acme.citrixworkspacesapi.net", [(700, 2400), (900, 6100), (500, 1800)]),
            rtt=0.021,
        )
    t = dns_lookup(cap, T + 4.0, cc1, dns, "trust.citrixworkspacesapi.net", [], [trust.ip])
    cap.tcp(
        t + 0.001,
        cc1,
        trust,
        443,
        tls_session(cap, "trust.citrixworkspacesapi.net", [(600, 1500)]),
        rtt=0.021,
    )
    t = dns_lookup(cap, T + 5.0, cc2, dns, "api.cloud.com", ["api.cloud.com.edgekey.example"], [api.ip])
    cap.tcp(t + 0.001, cc2, api, 443, tls_session(cap, "api.cloud.com", [(800, 3000)]), rtt=0.019)

    # Certificate revocation checks to DigiCert (80 and 443); cc02's CRL fetch over 80 is dropped.
    t = dns_lookup(cap, T + 8.0, cc1, dns, "crl3.digicert.com", ["fp2e7a.wpc.phicdn.example"], [crl.ip])
    cap.tcp(
        t + 0.001,
        cc1,
        crl,
        80,
        [
            (
                "c",
                http_req(
                    "GET",
                    "/DigiCertAssuredIDRootCA.crl",
                    "crl3.digicert.com",
                    extra="User-Agent: Microsoft-CryptoAPI/10.0\r\n"
                    "If-Modified-Since: Tue, 05 Mar 2024 18:02:11 GMT\r\n",
                ),
                0.0003,
            ),
            (
                "s",
                http_resp(b"", "application/pkix-crl", "304 Not Modified", server="ECAcc (lhd/2F0E)"),
                0.012,
            ),
        ],
        rtt=0.012,
    )
    t = dns_lookup(cap, T + 9.0, cc2, dns, "crl4.digicert.com", ["fp2e7a.wpc.phicdn.example"], [crl.ip])
    cap.tcp_unanswered(t + 0.001, cc2, crl, 80)
    t = dns_lookup(
        cap, T + 14.0, cc2, dns, "dl.cacerts.digicert.com", ["cacerts.digicert.example"], [cacerts.ip]
    )
    cap.tcp(
        t + 0.001, cc2, cacerts, 443, tls_session(cap, "dl.cacerts.digicert.com", [(300, 1700)]), rtt=0.012
    )

    # Cloud Connector <-> Cloud Connector: 80 (broker), 89 (Local Host Cache), 9095 (orchestration).
    cap.tcp(
        T + 16.0,
        cc1,
        cc2,
        80,
        wcf_exchange(
            f"cc02.{dom}",
            "/Citrix/CdsController/IBrokerPeer",
            "http://citrix.com/Broker/IBrokerPeer/Ping",
            "<Ping/>",
            "<PingResult>ok</PingResult>",
        ),
    )
    cap.tcp(T + 16.5, cc2, cc1, 89, opaque(cap, [(240, 1460), (120, 2200)], 0.05))
    cap.tcp(T + 17.0, cc1, cc2, 9095, opaque(cap, [(410, 380), (220, 160)], 0.03))
    # Cloud Connector -> vCenter (hosting).
    cap.tcp(T + 18.0, cc1, vc, 443, tls_session(cap, f"vcenter01.{dom}", [(800, 4200), (650, 7300)]))

    # VDA registration with the Cloud Connectors (VDA -> CC 80) and the callback (CC -> VDA 80);
    # 10.10.20.36 is switched off: it never appears.
    for i, vda in enumerate(vdas[:5]):
        cc = cc1 if i % 2 == 0 else cc2
        tv = cap.tcp(
            T + 25.0 + i * 4.1,
            vda,
            cc,
            80,
            wcf_exchange(
                f"{cc.name}.{dom}",
                "/Citrix/CdsController/IRegistrar",
                "http://citrix.com/CdsController/IRegistrar/Register",
                f"<Register><machine>{vda.name}.{dom}</machine></Register>",
                "<RegisterResult>true</RegisterResult>",
            ),
        )
        cap.tcp(
            tv + 0.5,
            cc,
            vda,
            80,
            wcf_exchange(
                f"{vda.name}.{dom}",
                "/Citrix/CdsController/IWorkerAgent",
                "http://citrix.com/CdsController/IWorkerAgent/GetApplications",
                "<GetApplications/>",
                "<GetApplicationsResult>7</GetApplicationsResult>",
            ),
        )

    # Rendezvous: VDA -> Gateway Service 443 over TCP (TLS) and UDP (EDT in DTLS).
    t = dns_lookup(
        cap, T + 50.0, vdas[0], dns, "global-s.g.nssvc.net", ["global-s.g.nssvc.net.akadns.example"], [gws.ip]
    )
    cap.tcp(
        t + 0.001,
        vdas[0],
        gws,
        443,
        tls_session(cap, "global-s.g.nssvc.net", [(900, 1200)] * 6, gap=0.4),
        rtt=0.024,
    )
    ex = [
        ("c" if k % 3 == 0 else "s", d, 0.05 + (k % 5) * 0.03)
        for k, d in enumerate(dtls_records(cap, [cap.rng.choice([90, 400, 1100]) for _ in range(45)]))
    ]
    cap.udp(t + 1.0, vdas[0], gws, 443, ex)
    # vda34: TCP works, but EDT over UDP 443 is blocked (three datagrams, no reply).
    cap.tcp(
        T + 60.0,
        vdas[3],
        gws,
        443,
        tls_session(cap, "global-s.g.nssvc.net", [(900, 1200)] * 3, gap=0.4),
        rtt=0.024,
    )
    cap.udp(
        T + 61.0,
        vdas[3],
        gws,
        443,
        [("c", d, 0.0 if k == 0 else 1.0 * k) for k, d in enumerate(dtls_records(cap, [90, 90, 90]))],
    )

    # WEM agent (on vda32): -> Cloud Connector 8080 and -> WEM service 443; the Cloud Connector's
    # call to the agent port 49752 is refused.
    cap.tcp(
        T + 70.0,
        vdas[1],
        cc1,
        8080,
        wcf_exchange(
            f"cc01.{dom}:8080",
            "/Citrix/WEM/AgentService",
            "http://www.citrix.com/WEM/IAgentService/GetSettings",
            "<GetSettings><agent>vda32</agent></GetSettings>",
            "<GetSettingsResult>" + "x" * 1800 + "</GetSettingsResult>",
        ),
    )
    t = dns_lookup(cap, T + 71.0, vdas[1], dns, "us-api.wem.cloud.com", [], [wem.ip])
    cap.tcp(
        t + 0.001,
        vdas[1],
        wem,
        443,
        tls_session(cap, "us-api.wem.cloud.com", [(700, 5200), (400, 900)]),
        rtt=0.02,
    )
    cap.tcp_rejected(T + 72.0, cc1, vdas[1], 49752, attempts=2)

    # Direct Workload Connection: user device -> vda33 ICA 1494.
    cap.tcp(T + 80.0, user, vdas[2], 1494, ica_session(cap, cgp=False, rounds=10))

    # Unexpected traffic.
    t = dns_lookup(
        cap,
        T + 90.0,
        vdas[4],
        dns,
        "acme.citrixworkspacesapi.net",
        ["acme-cws.trafficmanager.example"],
        [cws.ip],
    )
    cap.tcp(
        t + 0.001,
        vdas[4],
        cws,
        443,
        tls_session(cap, "acme.citrixworkspacesapi.net", [(500, 900)]),
        rtt=0.021,
    )
    cap.tcp(T + 95.0, cc1, vdas[0], 3389, [("c", rdp_cr(), 0.0003), ("s", rdp_cc(), 0.002)])
    cap.tcp_rejected(T + 100.0, vc, cc1, 443)
    cap.tcp(
        T + 105.0,
        cc2,
        dc,
        389,
        [
            ("c", ldap_bind(1, "CN=svc-cc,OU=Service,DC=acme,DC=example", "x"), 0.0003),
            ("s", ldap_bind_ok(1), 0.002),
        ],
    )

    # Unmapped: NTP between two hosts not in roles.yaml.
    for k in range(3):
        tq = T + 110.0 + 16.0 * k
        cap.udp(
            tq,
            ntpc,
            ntps,
            123,
            [("c", ntp_msg(3, tq), 0.0), ("s", ntp_msg(4, tq + 0.0004), 0.0004)],
            sport=123,
        )
    return cap


def ber_oid(oid: str) -> bytes:
    parts = [int(x) for x in oid.split(".")]
    out = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        enc = [p & 0x7F]
        p >>= 7
        while p:
            enc.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(enc))
    return ber(0x06, out)


def snmp_trap(
    community: str, req_id: int, uptime: int, trap_oid: str, binds: Sequence[tuple[str, str]]
) -> bytes:
    """SNMPv2c SNMPv2-Trap-PDU (RFC 3416): sysUpTime.0, snmpTrapOID.0, then the trap's objects."""
    vbs = [
        ber_seq(ber_oid("1.3.6.1.2.1.1.3.0"), ber_int(uptime, 0x43)),
        ber_seq(ber_oid("1.3.6.1.6.3.1.1.4.1.0"), ber_oid(trap_oid)),
    ]
    vbs += [ber_seq(ber_oid(o), ber_str(v)) for o, v in binds]
    pdu = ber_seq(ber_int(req_id), ber_int(0), ber_int(0), ber_seq(*vbs), tag=0xA7)
    return ber_seq(ber_int(1), ber_str(community), pdu)


def radius(code: int, ident: int, auth: bytes, attrs: Sequence[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack(">BB", t, 2 + len(v)) + v for t, v in attrs)
    return struct.pack(">BBH", code, ident, 20 + len(body)) + auth + body


def ipfix(seq: int, export_time: int, flows: Sequence[tuple[str, str, int, int, int]]) -> bytes:
    """IPFIX message (RFC 7011) with a template set and one data set of 5-tuple-ish records."""
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (2, 8)]
    tmpl = struct.pack(">HH", 256, len(fields)) + b"".join(struct.pack(">HH", f, n) for f, n in fields)
    tset = struct.pack(">HH", 2, 4 + len(tmpl)) + tmpl
    recs = b"".join(
        socket.inet_aton(a) + socket.inet_aton(b) + struct.pack(">HHQ", sp, dp, n)
        for a, b, sp, dp, n in flows
    )
    dset = struct.pack(">HH", 256, 4 + len(recs)) + recs
    body = tset + dset
    return struct.pack(">HHIII", 10, 16 + len(body), export_time, seq, 1) + body


@sample
def netscaler_ha() -> Capture:
    cap = Capture(seed=3003, vlan=100)
    h = cap.host
    ns1, ns2 = h("ns01", "10.20.0.11", ttl=64), h("ns02", "10.20.0.12", ttl=64)
    snip = h("ns-snip", "10.20.0.20", ttl=64)
    snip.mac = ns1.mac  # the SNIP floats on the primary node
    adm = h("adm01", "10.20.0.30", ttl=64)
    ldap = h("dc01", "10.20.0.40")
    rad = h("radius01", "10.20.0.41", ttl=64)
    dns = h("dns01", "10.20.0.53")
    ntp = h("ntp01", "10.20.0.123", ttl=64)
    admin = h("admin-ws", "10.20.0.100")
    bk1, bk2 = h("backup01", "10.20.0.200", ttl=64), h("nas01", "10.20.0.201", ttl=64)
    aws = h("sigs-cdn", "203.0.113.77", ttl=48)
    T = BASE_TS + 11.0

    # HA heartbeats: both nodes send from 3003 to 3003 every 2 s (one conversation, both ways).
    ex = []
    for k in range(90):
        ex.append(
            (
                "c",
                b"\x00\x03\x00\x01" + struct.pack(">I", k) + b"\x0a\x14\x00\x0b" + bytes(52),
                0.0 if k == 0 else 1.9995,
            )
        )
        ex.append(("s", b"\x00\x03\x00\x02" + struct.pack(">I", k) + b"\x0a\x14\x00\x0c" + bytes(52), 0.0005))
    cap.udp(T, ns1, ns2, 3003, ex, sport=3003)
    # HA synchronisation: config sync 3008 (secure) and 3010, file sync with rsync over SSH 22.
    cap.tcp(T + 5.0, ns1, ns2, 3008, opaque(cap, [(640, 96), (2900, 96), (1200, 96)], 0.02))
    cap.tcp(T + 6.0, ns1, ns2, 3010, opaque(cap, [(320, 64), (220, 64)], 0.02))
    cap.tcp(T + 8.0, ns1, ns2, 22, ssh_session(cap, "OpenSSH_8.4 rsync", "OpenSSH_8.4", rounds=6))

    # Name resolution and time.
    t = dns_lookup(cap, T + 1.0, ns1, dns, "dc01.lab.example", [], [ldap.ip])
    t = dns_lookup(cap, t + 0.01, ns1, dns, "radius01.lab.example", [], [rad.ip])
    dns_lookup(cap, t + 0.01, ns1, dns, "ns.citrix.com", ["ns.citrix.com.edgekey.example"], [aws.ip])
    for k, ns in enumerate((ns1, ns2, ns1, ns2)):
        tq = T + 3.0 + 64.0 * (k // 2) + (k % 2) * 0.3
        cap.udp(
            tq, ns, ntp, 123, [("c", ntp_msg(3, tq), 0.0), ("s", ntp_msg(4, tq + 0.0003), 0.0003)], sport=123
        )

    # Authentication: LDAP 389 works, LDAPS 636 is refused; RADIUS auth + accounting from ns01;
    # ns02 is not a RADIUS client, its requests are silently dropped.
    cap.tcp(
        T + 20.0,
        ns1,
        ldap,
        389,
        [
            ("c", ldap_bind(1, "CN=svc-ns,OU=Service,DC=lab,DC=example", "x"), 0.0003),
            ("s", ldap_bind_ok(1), 0.002),
            ("c", ldap_search(2, "DC=lab,DC=example", "sAMAccountName", "jdoe"), 0.001),
            (
                "s",
                ldap_search_result(
                    2,
                    "CN=J Doe,OU=Staff,DC=lab,DC=example",
                    {"displayName": "J Doe", "mail": "jdoe@lab.example"},
                ),
                0.002,
            ),
        ],
    )
    cap.tcp_rejected(T + 21.0, ns1, ldap, 636, attempts=2)
    nas = (4, socket.inet_aton(ns1.ip))
    for k in range(2):
        auth = cap.rand(16)
        cap.udp(
            T + 30.0 + k * 20,
            ns1,
            rad,
            1812,
            [
                (
                    "c",
                    radius(
                        1,
                        10 + k,
                        auth,
                        [(1, b"jdoe"), (2, cap.rand(16)), nas, (61, b"\x00\x00\x00\x05"), (80, cap.rand(16))],
                    ),
                    0.0,
                ),
                ("s", radius(2, 10 + k, cap.rand(16), [(18, b"Welcome"), (80, cap.rand(16))]), 0.004),
            ],
        )
        cap.udp(
            T + 30.5 + k * 20,
            ns1,
            rad,
            1813,
            [
                (
                    "c",
                    radius(
                        4,
                        20 + k,
                        cap.rand(16),
                        [(40, b"\x00\x00\x00\x01"), (1, b"jdoe"), nas, (44, f"0A14000B-{k}".encode())],
                    ),
                    0.0,
                ),
                ("s", radius(5, 20 + k, cap.rand(16), []), 0.003),
            ],
        )
    sp = cap.eph(ns2)
    auth = cap.rand(16)
    req = radius(
        1, 77, auth, [(1, b"jdoe"), (2, cap.rand(16)), (4, socket.inet_aton(ns2.ip)), (80, cap.rand(16))]
    )
    cap.udp(T + 42.0, ns2, rad, 1812, [("c", req, 0.0), ("c", req, 3.0), ("c", req, 3.0)], sport=sp)

    # Monitoring to ADM: SNMP traps (162), syslog (514), AppFlow IPFIX (4739) - all one-way;
    # metrics from the SNIP on 5563.
    for k in range(4):
        cap.udp(
            T + 12.0 + k * 31,
            ns1,
            adm,
            162,
            [
                (
                    "c",
                    snmp_trap(
                        "public",
                        1000 + k,
                        1234500 + k * 3100,
                        "1.3.6.1.4.1.5951.1.1.0.95",
                        [("1.3.6.1.4.1.5951.4.1.1.26.0", f"CPU usage {71 + k}%")],
                    ),
                    0.0,
                )
            ],
        )
    for k in range(8):
        msg = (
            f"<134> 03/12/2024:09:0{k // 2}:{10 + k * 3} GMT ns01 0-PPE-0 : default SSLVPN LOGIN "
            f"{4100 + k} 0 : Context jdoe@10.20.0.100 - SessionId: {17 + k}"
        ).encode()
        cap.udp(T + 14.0 + k * 17, ns1, adm, 514, [("c", msg, 0.0)], sport=514)
    for k in range(6):
        tq = T + 15.0 + k * 25
        cap.udp(
            tq,
            ns1,
            adm,
            4739,
            [
                (
                    "c",
                    ipfix(
                        2 * k,
                        int(tq),
                        [
                            ("10.20.0.100", "10.20.0.20", 50000 + k, 443, 12 + k),
                            ("10.20.0.20", "10.20.0.40", 51000 + k, 389, 4),
                        ],
                    ),
                    0.0,
                )
            ],
            sport=4739,
        )
    cap.tcp(T + 50.0, snip, adm, 5563, opaque(cap, [(1460, 64), (900, 64), (1200, 64)], 1.5))

    # ADM -> NSIP: reachability (ICMP echo), NITRO over HTTPS, SSH.
    for k, ns in enumerate((ns1, ns2, ns1, ns2)):
        te = T + 9.0 + 60.0 * (k // 2) + (k % 2) * 0.5
        for n, (a, b, typ) in enumerate(((adm, ns, 8), (ns, adm, 0))):
            icmp = dpkt.icmp.ICMP(
                type=typ,
                code=0,
                data=dpkt.icmp.ICMP.Echo(id=0x4D2 + k % 2, seq=k // 2 + 1, data=bytes(range(48))),
            )
            cap.emit(te + n * 0.0004, a, b, icmp, 1)
    cap.tcp(T + 60.0, adm, ns1, 443, tls_session(cap, "10.20.0.11", [(420, 2800), (380, 9600), (400, 1200)]))
    cap.tcp(T + 61.0, adm, ns2, 443, tls_session(cap, "10.20.0.12", [(420, 2800)]))
    cap.tcp(T + 63.0, adm, ns1, 22, ssh_session(cap, "OpenSSH_8.8", "OpenSSH_8.4", rounds=3))
    # Admin Workstation -> NSIP GUI.
    cap.tcp(T + 80.0, admin, ns1, 443, tls_session(cap, "ns01.lab.example", [(600, 7200), (500, 3100)]))

    # Unexpected traffic.
    telnet = [
        ("s", b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27", 0.002),
        ("c", b"\xff\xfc\x18\xff\xfc\x20\xff\xfc\x23\xff\xfc\x27", 0.001),
        ("s", b"\r\nlogin: ", 0.01),
        ("c", b"nsroot\r\n", 2.1),
        ("s", b"Password: ", 0.01),
        ("c", b"nsroot\r\n", 1.8),
        ("s", b"\r\n Done\r\n> ", 0.3),
    ]
    cap.tcp(T + 90.0, admin, ns1, 23, telnet)
    cap.tcp(T + 95.0, admin, adm, 443, tls_session(cap, "adm01.lab.example", [(700, 12000)]))
    cap.tcp(T + 100.0, ns2, adm, 443, tls_session(cap, "adm01.lab.example", [(500, 800)]))
    cap.tcp(T + 105.0, ns1, aws, 443, tls_session(cap, "ns.citrix.com", [(400, 11000)]), rtt=0.03)

    # Unmapped: syslog between two hosts not in roles.yaml.
    for k in range(3):
        cap.udp(
            T + 110.0 + k * 9,
            bk1,
            bk2,
            514,
            [("c", f"<14>Mar 12 09:02:{k}0 backup01 veeam: job {k} finished".encode(), 0.0)],
            sport=514,
        )
    return cap


def dhcp_msg(
    cap: Capture,
    op: int,
    mtype: int,
    xid: int,
    mac: bytes,
    *,
    yiaddr: str = "0.0.0.0",
    ciaddr: str = "0.0.0.0",
    siaddr: str = "0.0.0.0",
    broadcast: bool = True,
    opts: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """BOOTP/DHCP message (RFC 2131) built with dpkt.dhcp."""

    def ip(a: str) -> int:
        return int.from_bytes(socket.inet_aton(a), "big")

    d = dpkt.dhcp.DHCP(
        op=op,
        xid=xid,
        secs=4 if op == 1 else 0,
        flags=0x8000 if broadcast else 0,
        ciaddr=ip(ciaddr),
        yiaddr=ip(yiaddr),
        siaddr=ip(siaddr),
        chaddr=mac + bytes(10),
        opts=[(dpkt.dhcp.DHCP_OPT_MSGTYPE, bytes([mtype])), *opts],
    )
    return bytes(d)


def tftp(opcode: int, body: bytes) -> bytes:
    return struct.pack(">H", opcode) + body


@sample
def pvs_boot() -> Capture:
    cap = Capture(seed=6910)
    h = cap.host
    dhcp = h("dhcp01", "10.30.0.5")
    dc = h("dc01", "10.30.0.10")
    pvs1 = h("pvs01", "10.30.0.21", "fd00:30::21")
    pvs2 = h("pvs02", "10.30.0.22", "fd00:30::22")
    sql = h("sql01", "10.30.0.30", "fd00:30::30")
    lic = h("lic01", "10.30.0.31")
    wsus = h("wsus01", "10.30.0.60")
    admin = h("pvs-admin", "10.30.0.100")
    tgts = [h(f"target{i:02d}", f"10.30.50.{100 + i}", ttl=128) for i in range(1, 5)]
    w1, w2 = h("mgmt01", "10.30.60.5"), h("mgmt02", "10.30.60.6")
    unassigned = Host("target01-pxe", "0.0.0.0", None, 64, tgts[0].mac)
    bcast = Host("broadcast", "255.255.255.255", None, 64, b"\xff" * 6)
    T = BASE_TS + 15.0

    # target01 PXE boot: DHCP DISCOVER / OFFER / REQUEST / ACK (broadcast), OFFER and ACK carrying
    # option 66 (TFTP server) and 67 (boot file) pointing at pvs01.
    xid = 0x5A3C91E7
    pxe = [
        (60, b"PXEClient:Arch:00000:UNDI:002001"),
        (93, b"\x00\x00"),
        (94, b"\x01\x02\x01"),
        (97, b"\x00" + cap.rand(16)),
        (55, bytes([1, 3, 6, 15, 43, 60, 66, 67, 128, 129])),
    ]
    offer_opts = [
        (54, socket.inet_aton(dhcp.ip)),
        (51, struct.pack(">I", 86400)),
        (1, socket.inet_aton("255.255.255.0")),
        (3, socket.inet_aton("10.30.50.1")),
        (6, socket.inet_aton(dc.ip)),
        (15, b"pvs.example"),
        (60, b"PXEClient"),
        (66, pvs1.ip.encode()),
        (67, b"ARDBP32.BIN"),
    ]
    mac = tgts[0].mac
    steps = [
        (unassigned, bcast, 68, 67, dhcp_msg(cap, 1, dpkt.dhcp.DHCPDISCOVER, xid, mac, opts=pxe), 0.0),
        (
            dhcp,
            bcast,
            67,
            68,
            dhcp_msg(
                cap, 2, dpkt.dhcp.DHCPOFFER, xid, mac, yiaddr=tgts[0].ip, siaddr=pvs1.ip, opts=offer_opts
            ),
            0.0021,
        ),
        (
            unassigned,
            bcast,
            68,
            67,
            dhcp_msg(
                cap,
                1,
                dpkt.dhcp.DHCPREQUEST,
                xid,
                mac,
                opts=[(50, socket.inet_aton(tgts[0].ip)), (54, socket.inet_aton(dhcp.ip)), *pxe],
            ),
            1.02,
        ),
        (
            dhcp,
            bcast,
            67,
            68,
            dhcp_msg(cap, 2, dpkt.dhcp.DHCPACK, xid, mac, yiaddr=tgts[0].ip, siaddr=pvs1.ip, opts=offer_opts),
            0.0019,
        ),
    ]
    t = T
    for a, b, sp, dp, msg, gap in steps:
        t += gap
        u = dpkt.udp.UDP(sport=sp, dport=dp, data=msg)
        u.ulen = 8 + len(msg)
        cap.emit(t, a, b, u, 17)

    # PXE: TFTP read request to pvs01:69; the transfer runs from the server's new port (RFC 1350 TID).
    t += 0.3
    cport = cap.eph(tgts[0])
    rrq = tftp(1, b"ARDBP32.BIN\x00octet\x00")
    cap.udp(t, tgts[0], pvs1, 69, [("c", rrq, 0.0)], sport=cport)
    tid = cap.eph(pvs1)
    image = cap.rand(512 * 22 + 301)
    blocks = [image[k : k + 512] for k in range(0, len(image), 512)]
    ex = []
    for n, blk in enumerate(blocks, 1):
        ex += [
            ("c", tftp(3, struct.pack(">H", n) + blk), 0.0009 if n == 1 else 0.0004),
            ("s", tftp(4, struct.pack(">H", n)), 0.0003),
        ]
    t, _ = cap.udp(t, pvs1, tgts[0], cport, ex, sport=tid)

    # Provisioning: login on 6910, then vDisk streaming on 6911 (target port 6901 both times).
    t, _ = cap.udp(
        t + 0.4,
        tgts[0],
        pvs1,
        6910,
        [
            ("c", b"\x00\x01" + cap.rand(118), 0.0),
            ("s", b"\x00\x02" + cap.rand(230), 0.0012),
            ("c", b"\x00\x03" + cap.rand(62), 0.002),
            ("s", b"\x00\x04" + cap.rand(46), 0.0009),
        ],
        sport=6901,
    )
    ex = []
    for k in range(140):
        ex += [
            ("c", b"\x00\x10" + struct.pack(">I", 2048 + k * 8) + cap.rand(34), 0.004 if k else 0.01),
            ("s", b"\x00\x11" + struct.pack(">I", 2048 + k * 8) + cap.rand(1394), 0.0009),
        ]
    t, _ = cap.udp(t + 0.05, tgts[0], pvs1, 6911, ex, sport=6901)
    cap.udp(t + 2.0, tgts[0], pvs1, 6901, [("c", cap.rand(40), 0.0), ("s", cap.rand(40), 0.001)])
    # target02 booted earlier: it renews its lease by unicast and talks to pvs02 on 6905 and 6910-6930.
    t2 = T + 30.0
    mac2 = tgts[1].mac
    cap.udp(
        t2,
        tgts[1],
        dhcp,
        67,
        [
            (
                "c",
                dhcp_msg(cap, 1, dpkt.dhcp.DHCPREQUEST, 0x11E0A2B4, mac2, ciaddr=tgts[1].ip, broadcast=False),
                0.0,
            ),
            (
                "s",
                dhcp_msg(
                    cap,
                    2,
                    dpkt.dhcp.DHCPACK,
                    0x11E0A2B4,
                    mac2,
                    ciaddr=tgts[1].ip,
                    yiaddr=tgts[1].ip,
                    broadcast=False,
                    opts=offer_opts,
                ),
                0.0015,
            ),
        ],
        sport=68,
    )
    cap.udp(t2 + 1.0, tgts[1], pvs2, 6905, [("c", cap.rand(48), 0.0), ("s", cap.rand(48), 0.0011)])
    ex = []
    for _ in range(60):
        ex += [("c", b"\x00\x10" + cap.rand(38), 0.05), ("s", b"\x00\x11" + cap.rand(1394), 0.0009)]
    cap.udp(t2 + 2.0, tgts[1], pvs2, 6912, ex, sport=6901)
    # target03 tries to log in to pvs02, which does not answer (stream service stopped).
    cap.udp(
        T + 40.0,
        tgts[2],
        pvs2,
        6910,
        [
            ("c", b"\x00\x01" + cap.rand(118), 0.0),
            ("c", b"\x00\x01" + cap.rand(118), 2.0),
            ("c", b"\x00\x01" + cap.rand(118), 4.0),
        ],
        sport=6901,
    )

    # Provisioning servers: inter-server (6890-6909), SQL over IPv6, licensing, AD.
    ex = []
    for k in range(20):
        ex += [("c", cap.rand(96), 0.0 if k == 0 else 5.0), ("s", cap.rand(96), 0.0007)]
    cap.udp(T + 5.0, pvs1, pvs2, 6890, ex, sport=6890)
    for k, pv in enumerate((pvs1, pvs2)):
        cap.tcp(
            T + 8.0 + k * 1.5,
            pv,
            sql,
            1433,
            tds_session(
                cap, ["EXEC dbo.spGetDeviceInfo @deviceName=N'target01'", "EXEC dbo.spUpdateServerStatus"]
            ),
            v6=True,
        )
        cap.tcp(T + 12.0 + k * 1.5, pv, lic, 27000, opaque(cap, [(148, 212), (96, 64)], 0.01))
        cap.tcp(
            T + 13.0 + k * 1.5,
            pv,
            dc,
            389,
            [
                ("c", ldap_search(3, "DC=pvs,DC=example", "sAMAccountName", f"target0{k + 1}$"), 0.0003),
                (
                    "s",
                    ldap_search_result(
                        3,
                        f"CN=TARGET0{k + 1},OU=PVS,DC=pvs,DC=example",
                        {"displayName": f"TARGET0{k + 1}", "mail": ""},
                    ),
                    0.002,
                ),
            ],
        )
    cap.tcp_rejected(T + 12.5, pvs1, lic, 7279, attempts=2)  # vendor daemon port firewalled
    # Console -> SOAP service.
    soap_body = soap("http://tempuri.org/IMcliService/Run", "<Run><cmd>Get Device</cmd></Run>")
    cap.tcp(
        T + 60.0,
        admin,
        pvs1,
        54321,
        [
            (
                "c",
                http_req("POST", "/pvs", "pvs01.pvs.example:54321", soap_body, "application/soap+xml"),
                0.0003,
            ),
            (
                "s",
                http_resp(
                    soap(
                        "http://tempuri.org/IMcliService/RunResponse",
                        "<RunResult>" + "d" * 900 + "</RunResult>",
                    )
                ),
                0.05,
            ),
        ],
    )

    # Unexpected traffic.
    cap.tcp(T + 70.0, tgts[3], sql, 1433, tds_session(cap, ["SELECT @@VERSION"]))
    cap.tcp(T + 75.0, admin, pvs1, 3389, [("c", rdp_cr(), 0.0003), ("s", rdp_cc(), 0.002)])
    cap.tcp_rejected(T + 80.0, dc, pvs1, 389)
    cap.tcp(
        T + 85.0,
        tgts[1],
        wsus,
        8530,
        [
            ("c", http_req("GET", "/selfupdate/wuident.cab", "wsus01.pvs.example:8530"), 0.0003),
            ("s", http_resp(cap.rand(700), "application/octet-stream", server="Microsoft-IIS/10.0"), 0.004),
        ],
    )

    # Unmapped: WinRM between two management hosts not in roles.yaml.
    cap.tcp(T + 90.0, w1, w2, 5985, opaque(cap, [(900, 1400), (700, 600)], 0.05))
    return cap


# ---- Citrix Gateway in the DMZ: DTLS, STA, SNMP polling, SMTP ----
def _u24(n: int) -> bytes:
    return struct.pack(">I", n)[1:]


def dtls_record(ctype: int, epoch: int, seq: int, body: bytes, ver: int = 0xFEFD) -> bytes:
    """One DTLS record (RFC 6347 section 4.1): type, version, epoch, 48-bit sequence, length."""
    return (
        struct.pack(">BHH", ctype, ver, epoch)
        + struct.pack(">Q", seq)[2:]
        + struct.pack(">H", len(body))
        + body
    )


def dtls_handshake(msg_type: int, msg_seq: int, body: bytes) -> bytes:
    """A DTLS handshake message, unfragmented (fragment_offset 0, fragment_length = length)."""
    return bytes([msg_type]) + _u24(len(body)) + struct.pack(">H", msg_seq) + _u24(0) + _u24(len(body)) + body


def dtls_client_hello(sni: str, session_id: bytes, cookie: bytes, rnd: bytes) -> bytes:
    """DTLS 1.2 ClientHello (RFC 6347 section 4.2.1) offering to resume session_id, with SNI."""
    name = sni.encode()
    exts = b"".join(
        [
            _ext(0, struct.pack(">HBH", len(name) + 3, 0, len(name)) + name),  # server_name
            _ext(23, b""),  # extended_master_secret
            _ext(65281, b"\x00"),  # renegotiation_info
            _ext(10, b"\x00\x04\x00\x1d\x00\x17"),  # supported_groups
            _ext(11, b"\x01\x00"),  # ec_point_formats
            _ext(13, b"\x00\x08\x04\x03\x08\x04\x04\x01\x05\x01"),  # signature_algorithms
        ]
    )
    suites = [0xC02B, 0xC02F, 0xC02C, 0xC030]
    return (
        b"\xfe\xfd"
        + rnd
        + bytes([len(session_id)])
        + session_id
        + bytes([len(cookie)])
        + cookie
        + struct.pack(">H", 2 * len(suites))
        + b"".join(struct.pack(">H", s) for s in suites)
        + b"\x01\x00"
        + struct.pack(">H", len(exts))
        + exts
    )


def dtls_session(
    cap: Capture, sni: str, rounds: int, *, answered: bool = True
) -> list[tuple[str, bytes, float]]:
    """EDT over DTLS to a Gateway virtual server: cookie exchange, abbreviated (resumed) handshake,
    then application data both ways, mostly server -> client. answered=False: the first ClientHello,
    sent again after 1 s (nobody answers it)."""
    sid, rnd = cap.rand(32), cap.rand(32)
    hello = dtls_handshake(1, 0, dtls_client_hello(sni, sid, b"", rnd))
    if not answered:
        return [
            ("c", dtls_record(22, 0, 0, hello, 0xFEFF), 0.0),
            ("c", dtls_record(22, 0, 1, hello, 0xFEFF), 1.0),
        ]
    cookie = cap.rand(32)
    hvr = dtls_handshake(3, 0, b"\xfe\xff" + bytes([len(cookie)]) + cookie)
    hello2 = dtls_handshake(1, 1, dtls_client_hello(sni, sid, cookie, rnd))
    sh_exts = _ext(65281, b"\x00") + _ext(23, b"")
    sh = dtls_handshake(
        2,
        1,
        b"\xfe\xfd"
        + cap.rand(32)
        + b"\x20"
        + sid
        + b"\xc0\x2f\x00"
        + struct.pack(">H", len(sh_exts))
        + sh_exts,
    )
    ex: list[tuple[str, bytes, float]] = [
        ("c", dtls_record(22, 0, 0, hello, 0xFEFF), 0.0),
        ("s", dtls_record(22, 0, 0, hvr, 0xFEFF), 0.002),
        ("c", dtls_record(22, 0, 1, hello2), 0.001),
        (
            "s",
            dtls_record(22, 0, 1, sh) + dtls_record(20, 0, 2, b"\x01") + dtls_record(22, 1, 0, cap.rand(40)),
            0.003,
        ),
        ("c", dtls_record(20, 0, 2, b"\x01") + dtls_record(22, 1, 0, cap.rand(40)), 0.001),
    ]
    seq = {"c": 1, "s": 1}
    for _ in range(rounds):
        for who, n, gap in (
            ("c", 48, cap.rng.uniform(0.05, 0.4)),
            ("s", cap.rng.choice([120, 600, 1100]), 0.012),
        ):
            ex.append((who, dtls_record(23, 1, seq[who], cap.rand(n)), gap))
            seq[who] += 1
    return ex


def sta_query(ticket: str) -> bytes:
    """The Gateway redeeming a ticket at the STA (CtxSTAProtocol over HTTP, /scripts/ctxsta.dll)."""
    return (
        '<?xml version="1.0"?><!DOCTYPE CtxSTAProtocol SYSTEM "CtxSTA.dtd">'
        '<CtxSTAProtocol version="4.0"><RequestData><ValueQuery>'
        f"<Ticket>{ticket}</Ticket><TicketVersion>4.0</TicketVersion>"
        "</ValueQuery></RequestData></CtxSTAProtocol>"
    ).encode()


def sta_reply(vda: str, port: int) -> bytes:
    """The STA's answer: the address the Gateway connects to for HDX (CGP on 2598, else ICA)."""
    kind = "CGPAddress" if port == 2598 else "ICAAddress"
    return (
        '<?xml version="1.0"?><!DOCTYPE CtxSTAProtocol SYSTEM "CtxSTA.dtd">'
        f'<CtxSTAProtocol version="4.0"><ResponseData><Value name="{kind}">{vda}:{port}</Value>'
        '<Value name="UserName">acme\\user</Value></ResponseData></CtxSTAProtocol>'
    ).encode()


def snmp_get(community: str, req_id: int, oids: Sequence[str], reply: Sequence[int] | None = None) -> bytes:
    """SNMPv2c GetRequest (0xA0) or, with reply values, its GetResponse (0xA2)."""
    if reply is None:
        vbs = [ber_seq(ber_oid(o), b"\x05\x00") for o in oids]
        tag = 0xA0
    else:
        vbs = [ber_seq(ber_oid(o), ber_int(v, 0x41)) for o, v in zip(oids, reply, strict=True)]
        tag = 0xA2
    pdu = ber_seq(ber_int(req_id), ber_int(0), ber_int(0), ber_seq(*vbs), tag=tag)
    return ber_seq(ber_int(1), ber_str(community), pdu)


def edt_gateway(cap: Capture, n: int) -> list[tuple[str, bytes, float]]:
    """EDT between the Gateway and a VDA: edt_stream's datagrams with the two top bits of the first byte
    clear, so that no opaque datagram reads as RTP/RTCP version 2 to a heuristic dissector."""
    return [(who, bytes([d[0] & 0x3F]) + d[1:], gap) for who, d, gap in edt_stream(cap, n)]


@sample
def gateway_dmz() -> Capture:
    cap = Capture(seed=2598)
    h = cap.host
    # The DMZ segment 172.16.10.0/24, tapped: the two firewalls' DMZ interfaces, the NetScaler (one
    # interface: NSIP, SNIP and both Gateway VIPs share its MAC) and a mail relay.
    fw_ext = h("fw-ext", "172.16.10.1", ttl=255)
    fw_int = h("fw-int", "172.16.10.2", ttl=255)
    nsip = h("ns-dmz01", "172.16.10.11", ttl=64)
    snip = h("ns-dmz01-snip", "172.16.10.20", ttl=64)
    vip = h("gateway-vip", "172.16.10.50", ttl=64)  # gateway.acme.example
    vip2 = h("partners-vip", "172.16.10.51", ttl=64)  # partners.acme.example: DTLS not enabled
    for ip in (snip, vip, vip2):
        ip.mac = nsip.mac
    relay = h("smtp-relay", "172.16.10.25", ttl=64)
    # Inside, behind the internal firewall: seen on the DMZ with its MAC and one hop less TTL.
    adm = h("adm01", "10.50.0.30", ttl=63)
    radius_srv = h("radius01", "10.50.0.41", ttl=63)
    siem = h("siem01", "10.50.0.60", ttl=63)
    admin = h("admin-ws", "10.50.0.100", ttl=127)
    dc1, dc2 = h("dc01", "10.50.1.5", ttl=127), h("dc02", "10.50.1.6", ttl=127)
    ddc1, ddc2 = h("ddc01", "10.50.1.10", ttl=127), h("ddc02", "10.50.1.11", ttl=127)
    sf = h("sf01", "10.50.1.20", ttl=127)
    vdas = [h(f"vda{i:02d}", f"10.50.20.{100 + i}", ttl=127) for i in range(1, 5)]
    for inside in (adm, radius_srv, siem, admin, dc1, dc2, ddc1, ddc2, sf, *vdas):
        inside.mac = fw_int.mac
    # The internet, behind the external firewall (which forwards to the VIPs without source NAT).
    anna = h("anna-home", "198.51.100.23", ttl=114)
    ben = h("ben-mac", "198.51.100.57", ttl=52)
    carla = h("carla-hotel", "203.0.113.14", ttl=113)
    dave = h("dave-partner", "203.0.113.88", ttl=110)
    scan = h("scanner", "203.0.113.201", ttl=47)
    ntp = h("ntp-pool", "192.0.2.123", ttl=52)  # time.example
    mx = h("mail-sender", "192.0.2.25", ttl=50)
    for outside in (anna, ben, carla, dave, scan, ntp, mx):
        outside.mac = fw_ext.mac
    T = BASE_TS + 13.0
    dom = "acme.example"
    gw, partners = f"gateway.{dom}", f"partners.{dom}"

    def http_call(path: str, host: str, body: bytes, reply: bytes) -> list[tuple[str, bytes, float]]:
        return [
            ("c", http_req("POST", path, host, body, "text/xml"), 0.0003),
            ("s", http_resp(reply, "text/xml", server="Microsoft-IIS/10.0"), 0.015),
        ]

    def ldaps(t: float, src: Host, dc: Host) -> float:
        return cap.tcp(t, src, dc, 636, tls_session(cap, f"{dc.name}.{dom}", [(180, 90), (260, 1400)], 0.002))

    def radius_otp(t: float, ident: int, user: bytes) -> None:
        req = radius(
            1,
            ident,
            cap.rand(16),
            [(1, user), (2, cap.rand(16)), (4, socket.inet_aton(snip.ip)), (80, cap.rand(16))],
        )
        ok = radius(2, ident, cap.rand(16), [(18, b"OTP accepted"), (80, cap.rand(16))])
        cap.udp(t, snip, radius_srv, 1812, [("c", req, 0.0), ("s", ok, 0.006)])

    def radius_acct(t: float, ident: int, user: bytes) -> None:
        # Accounting-Request (Acct-Status-Type Start), retransmitted after 3 s and 6 s: never answered.
        req = radius(
            4,
            ident,
            cap.rand(16),
            [
                (40, b"\x00\x00\x00\x01"),
                (1, user),
                (4, socket.inet_aton(snip.ip)),
                (44, cap.rand(8).hex().encode()),
            ],
        )
        cap.udp(t, snip, radius_srv, 1813, [("c", req, 0.0), ("c", req, 3.0), ("c", req, 3.0)])

    def ica_over_tls(sni: str, rtt: float, rounds: int) -> list[tuple[str, bytes, float]]:
        # HDX in TLS: a client to the virtual server, or the Gateway to an SSL-enabled VDA.
        ex = [
            ("c", tls_client_hello(cap, sni), 0.0002),
            ("s", tls_server_flight(cap), rtt),
            ("c", tls_client_finish(cap), 0.001),
        ]
        for _ in range(rounds):
            ex.append(("c", tls_app(cap, cap.rng.choice([60, 90, 130])), cap.rng.uniform(0.1, 0.4)))
            ex.append(("s", tls_app(cap, cap.rng.choice([900, 1400, 2900])), 0.04))
        return ex

    def storefront(t: float, rounds: Sequence[tuple[int, int]]) -> float:
        return cap.tcp(t, snip, sf, 443, tls_session(cap, f"storefront.{dom}", rounds, 0.01))

    def sta(t: float, ticket: str, vda: Host, port: int) -> float:
        return cap.tcp(
            t,
            snip,
            ddc1,
            80,
            http_call("/scripts/ctxsta.dll", f"ddc01.{dom}", sta_query(ticket), sta_reply(vda.ip, port)),
        )

    # NetScaler housekeeping from the NSIP: name resolution at the DC, time from an internet pool.
    t = dns_lookup(cap, T, nsip, dc1, "time.example", ["pool.time.example"], [ntp.ip])
    for k in range(2):
        tq = t + 0.01 + 64.0 * k
        cap.udp(
            tq, nsip, ntp, 123, [("c", ntp_msg(3, tq), 0.0), ("s", ntp_msg(4, tq + 0.02), 0.021)], sport=123
        )
    dns_lookup(cap, T + 0.3, nsip, dc1, f"adm01.{dom}", [], [adm.ip])
    # The SNIP resolves the back-end servers named in the Gateway configuration.
    t = dns_lookup(cap, T + 0.6, snip, dc1, f"dc01.{dom}", [], [dc1.ip])
    t = dns_lookup(cap, t + 0.01, snip, dc1, f"storefront.{dom}", [f"sf01.{dom}"], [sf.ip])
    t = dns_lookup(cap, t + 0.01, snip, dc1, f"ddc01.{dom}", [], [ddc1.ip])
    dns_lookup(cap, t + 0.01, snip, dc1, f"ddc02.{dom}", [], [ddc2.ip])
    # STA monitoring: ddc01 answers; ddc02 resets every SYN on 80 (its XML service is not listening).
    sta(T + 1.5, "4A1F0C9E2B7D33A8E0F15C6B9D2E7A01", vdas[0], 2598)
    cap.tcp_rejected(T + 1.8, snip, ddc2, 80, attempts=2)
    cap.tcp_rejected(T + 91.8, snip, ddc2, 80, attempts=2)

    # anna: logon at gateway.acme.example (LDAPS + RADIUS OTP), StoreFront through the Gateway,
    # StoreFront's callback, launch: STA, then HDX as EDT: DTLS to the VIP, EDT to vda01:2598.
    tl = T + 3.0
    cap.tcp(tl, anna, vip, 443, tls_session(cap, gw, [(620, 3200), (540, 4100)], 0.3), rtt=0.021)
    ldaps(tl + 0.4, snip, dc1)
    radius_otp(tl + 0.6, 31, b"anna")
    radius_acct(tl + 0.7, 41, b"anna")
    storefront(tl + 0.8, [(1100, 5200)])
    cap.tcp(tl + 0.9, sf, vip, 443, tls_session(cap, gw, [(480, 900)], 0.01))  # callback
    sta(tl + 2.0, "7C2D91E04B3A5F6E8D1C0B2A3948576F", vdas[0], 2598)
    cap.udp(tl + 2.4, anna, vip, 443, dtls_session(cap, gw, 10), sport=cap.eph(anna))
    cap.udp(tl + 2.5, snip, vdas[0], 2598, edt_gateway(cap, 10))

    # ben: types http://gateway.acme.example (redirected to https), logs on, ICA over TLS to the VIP;
    # the Gateway reaches vda02 on TCP 1494 (the VDA sends the ICA banner first).
    tb = T + 20.0
    redirect = (
        f"HTTP/1.1 302 Object Moved\r\nLocation: https://{gw}/\r\nContent-Length: 0\r\n"
        "Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
    ).encode()
    cap.tcp(tb, ben, vip, 80, [("c", http_req("GET", "/", gw), 0.0003), ("s", redirect, 0.002)], rtt=0.034)
    cap.tcp(tb + 0.2, ben, vip, 443, tls_session(cap, gw, [(600, 3100), (880, 2500)], 0.3), rtt=0.034)
    ldaps(tb + 0.6, snip, dc1)
    radius_otp(tb + 0.8, 32, b"ben")
    storefront(tb + 1.0, [(1050, 5100)])
    sta(tb + 2.0, "0B9E8D7C6A5F4E3D2C1B0A9988776655", vdas[1], 2598)
    cap.tcp(tb + 2.3, ben, vip, 443, ica_over_tls(gw, 0.035, 3), rtt=0.034)
    cap.tcp(tb + 2.4, snip, vdas[1], 1494, ica_session(cap, cgp=False, rounds=3))
    # ben's second app is published on vda04, the one VDA with SSL enabled: HDX over TLS on 443
    # (vda-ssl, a feature this deployment does not declare).
    sta(tb + 9.0, "66D1A3F09B8C7E2D4F5A6B7C8D9E0F12", vdas[3], 443)
    cap.tcp(tb + 9.3, ben, vip, 443, ica_over_tls(gw, 0.035, 2), rtt=0.034)
    cap.tcp(tb + 9.4, snip, vdas[3], 443, ica_over_tls(f"vda04.{dom}", 0.002, 2))

    # carla: DTLS to the VIP works, but the internal firewall refuses the Gateway's EDT to vda03:1494
    # (ICMP administratively prohibited, from the firewall, not the VDA); HDX falls back to TCP: ICA
    # over TLS to the VIP, TCP 1494 to the VDA.
    tc = T + 40.0
    cap.tcp(tc, carla, vip, 443, tls_session(cap, gw, [(610, 3150), (870, 2550)], 0.3), rtt=0.048)
    ldaps(tc + 0.6, snip, dc1)
    radius_otp(tc + 0.8, 33, b"carla")
    radius_acct(tc + 0.9, 43, b"carla")
    storefront(tc + 1.0, [(1080, 5150)])
    sta(tc + 2.0, "A1B2C3D4E5F60718293A4B5C6D7E8F90", vdas[2], 1494)
    cap.udp(tc + 2.4, carla, vip, 443, dtls_session(cap, gw, 4), sport=cap.eph(carla))
    sp = cap.eph(snip)
    for k in range(2):
        edt = bytes([cap.rng.randrange(0x40)]) + cap.rand(55)
        tq, sent = cap.udp(tc + 2.5 + k * 1.0, snip, vdas[2], 1494, [("c", edt, 0.0)], sport=sp)
        cap.icmp_unreachable(tq + 0.0003, fw_int, snip, sent[0], code=13)
    cap.tcp(tc + 4.5, carla, vip, 443, ica_over_tls(gw, 0.049, 3), rtt=0.048)
    cap.tcp(tc + 4.6, snip, vdas[2], 1494, ica_session(cap, cgp=False, rounds=3))

    # dave (partner) at partners.acme.example: that virtual server's LDAP policy binds in clear to
    # dc02:389, and DTLS is not enabled on it: the NetScaler answers UDP 443 with port unreachable;
    # the session runs as CGP over TLS, the Gateway to vda02:2598.
    td = T + 60.0
    cap.tcp(td, dave, vip2, 443, tls_session(cap, partners, [(590, 3000), (860, 2400)], 0.3), rtt=0.041)
    cap.tcp(
        td + 0.5,
        snip,
        dc2,
        389,
        [
            ("c", ldap_bind(1, "CN=svc-gw-partners,OU=Service,DC=acme,DC=example", "Partner2019!"), 0.0003),
            ("s", ldap_bind_ok(1), 0.002),
            ("c", ldap_search(2, "OU=Partners,DC=acme,DC=example", "sAMAccountName", "dave"), 0.001),
            (
                "s",
                ldap_search_result(
                    2,
                    "CN=Dave Ek,OU=Partners,DC=acme,DC=example",
                    {"displayName": "Dave Ek", "mail": "dave@partner.example"},
                ),
                0.002,
            ),
            ("c", ldap_bind(3, "CN=Dave Ek,OU=Partners,DC=acme,DC=example", "Summer2024"), 0.001),
            ("s", ldap_bind_ok(3), 0.002),
        ],
    )
    storefront(td + 1.0, [(1000, 3900)])
    sta(td + 2.0, "5F4E3D2C1B0A99887766554433221100", vdas[1], 2598)
    sp = cap.eph(dave)
    tq, sent = cap.udp(td + 2.4, dave, vip2, 443, dtls_session(cap, partners, 0, answered=False), sport=sp)
    cap.icmp_unreachable(td + 2.4 + 0.0004, vip2, dave, sent[0])
    cap.icmp_unreachable(tq + 0.0004, vip2, dave, sent[1])
    cap.tcp(td + 5.0, dave, vip2, 443, ica_over_tls(partners, 0.042, 3), rtt=0.041)
    cap.tcp(td + 5.1, snip, vdas[1], 2598, ica_session(cap, cgp=True, rounds=3))

    # Unexpected: an internet host probes the VIP's SSH port (the NetScaler resets it), and an RDP
    # bookmark makes the Gateway (RDP proxy) open RDP to vda04.
    cap.tcp_rejected(T + 80.0, scan, vip, 22, attempts=2)
    cap.tcp(T + 85.0, snip, vdas[3], 3389, [("c", rdp_cr(), 0.0003), ("s", rdp_cc(), 0.002)])

    # NetScaler ADM: pings, NITRO and SSH to the NSIP, SNMP polling; the NSIP sends traps, syslog,
    # AppFlow (IPFIX), metrics on 5563 and checks out pooled licences (27000, 7279).
    for k in range(2):
        te = T + 1.0 + 60.0 * k
        for n, (a, b, typ) in enumerate(((adm, nsip, 8), (nsip, adm, 0))):
            icmp = dpkt.icmp.ICMP(
                type=typ, code=0, data=dpkt.icmp.ICMP.Echo(id=0x6A1, seq=k + 1, data=bytes(range(48)))
            )
            cap.emit(te + n * 0.0009, a, b, icmp, 1)
    cap.tcp(T + 10.0, adm, nsip, 443, tls_session(cap, f"ns-dmz01.{dom}", [(420, 2800), (380, 5600)]))
    cap.tcp(T + 12.0, adm, nsip, 22, ssh_session(cap, "OpenSSH_8.8", "OpenSSH_8.4", rounds=2))
    oids = ["1.3.6.1.4.1.5951.4.1.1.41.1.0", "1.3.6.1.4.1.5951.4.1.1.41.2.0"]
    for k in range(2):
        tq = T + 15.0 + 60.0 * k
        sp = cap.eph(adm)
        cap.udp(
            tq,
            adm,
            nsip,
            161,
            [
                ("c", snmp_get("acme-ro", 700 + k, oids), 0.0),
                ("s", snmp_get("acme-ro", 700 + k, oids, [23 + k, 41]), 0.002),
            ],
            sport=sp,
        )
    for k in range(3):
        cap.udp(
            T + 18.0 + k * 40,
            nsip,
            adm,
            162,
            [
                (
                    "c",
                    snmp_trap(
                        "acme-traps",
                        2000 + k,
                        8812300 + k * 4000,
                        "1.3.6.1.4.1.5951.1.1.0.95",
                        [("1.3.6.1.4.1.5951.4.1.1.26.0", f"CPU usage {68 + k}%")],
                    ),
                    0.0,
                )
            ],
        )
    for k in range(6):
        msg = (
            f"<134> 03/12/2024:09:0{k // 2}:{12 + k * 7} GMT ns-dmz01 0-PPE-0 : default SSLVPN LOGIN "
            f"{5200 + k} 0 : Context {['anna', 'ben', 'carla', 'dave', 'anna', 'ben'][k]}@{dom} - SessionId: {40 + k}"
        ).encode()
        cap.udp(T + 5.0 + k * 19, nsip, adm, 514, [("c", msg, 0.0)], sport=514)
    for k in range(3):
        tq = T + 25.0 + k * 35
        cap.udp(
            tq,
            nsip,
            adm,
            4739,
            [
                (
                    "c",
                    ipfix(
                        2 * k,
                        int(tq),
                        [
                            (anna.ip, vip.ip, 50000 + k, 443, 40 + k),
                            (snip.ip, vdas[0].ip, 51000 + k, 2598, 90),
                        ],
                    ),
                    0.0,
                )
            ],
            sport=4739,
        )
    cap.tcp(T + 30.0, nsip, adm, 5563, opaque(cap, [(1460, 64), (900, 64), (1200, 64)], 1.5))
    cap.tcp(T + 6.0, nsip, adm, 27000, opaque(cap, [(148, 212), (96, 64)], 0.01))
    cap.tcp(T + 6.5, nsip, adm, 7279, opaque(cap, [(320, 188), (160, 92)], 0.02))

    # An administrator on the GUI (the NSIP authenticates them against dc01 over LDAPS).
    cap.tcp(T + 95.0, admin, nsip, 443, tls_session(cap, f"ns-dmz01.{dom}", [(600, 5200), (500, 3100)]))
    ldaps(T + 95.2, nsip, dc1)

    # Unexpected: syslog to the SIEM (no rule between a NetScaler and a syslog server), and the admin
    # copying a techsupport bundle from the NetScaler shell to ADM over SSH (reverse of ADM -> NSIP 22).
    for k in range(4):
        msg = (
            f"<134> 03/12/2024:09:0{k // 2}:{12 + k * 7} GMT ns-dmz01 0-PPE-0 : default SSLVPN LOGIN "
            f"{5200 + k} 0 : Context {['anna', 'ben', 'carla', 'dave'][k]}@{dom} - SessionId: {40 + k}"
        ).encode()
        cap.udp(T + 8.0 + k * 30, nsip, siem, 514, [("c", msg, 0.0)], sport=514)
    cap.tcp(T + 100.0, nsip, adm, 22, ssh_session(cap, "OpenSSH_8.4", "OpenSSH_8.8", rounds=3))

    # Unmapped: mail to the DMZ relay, neither end in roles.yaml.
    smtp = [
        ("s", b"220 relay.acme.example ESMTP\r\n", 0.002),
        ("c", b"EHLO mail.sender.example\r\n", 0.04),
        ("s", b"250-relay.acme.example\r\n250-SIZE 52428800\r\n250 STARTTLS\r\n", 0.001),
        ("c", b"QUIT\r\n", 0.04),
        ("s", b"221 2.0.0 Bye\r\n", 0.001),
    ]
    cap.tcp(T + 110.0, mx, relay, 25, smtp, rtt=0.03)
    return cap


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    for name, build in SAMPLES.items():
        path = out / f"{name}.pcapng"
        n = build().write(path)
        print(f"{path}: {n} packets, {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
