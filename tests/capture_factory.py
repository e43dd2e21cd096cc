"""Build packets and write small captures for tests (and the reader benchmark).

Packets are plain bytes built with struct (checksums computed the slow, obvious way, so they are an
independent check of the reader's fast checksum). Addresses are text ('10.0.0.1', 'fd00::1').

    write_pcap(path, [eth_ipv4_tcp("10.0.0.1", "10.0.0.2", 50000, 443, "S")])
    write_pcapng(path, [1, 113], [(0, 1.5, frame_a), (1, 2.0, frame_b)])
"""

from __future__ import annotations

import bz2
import gzip
import ipaddress
import lzma
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import zstandard

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")

Packet = bytes | tuple[float, bytes]

_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20}


def packed(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_flags(flags: str | int) -> int:
    if isinstance(flags, int):
        return flags
    return sum(_FLAG_BITS[c] for c in flags)


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = packed(src), packed(dst)
    if len(s) == 4:
        return s + d + struct.pack("!BBH", 0, proto, length)
    return s + d + struct.pack("!IxxxB", length, proto)


def tcp(src: str, dst: str, sport: int, dport: int, flags: str | int = "S", payload: bytes = b"",
        seq: int = 1000, ack: int = 0, options: bytes = b"", bad_checksum: bool = False) -> bytes:
    """A TCP segment (header + payload) with a correct checksum for src/dst (or a wrong one)."""
    doff = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, tcp_flags(flags), 65535, 0, 0)
    hdr += options
    seg = hdr + payload
    cs = inet_checksum(_pseudo(src, dst, 6, len(seg)) + seg) ^ (0x5555 if bad_checksum else 0)
    return seg[:16] + struct.pack("!H", cs) + seg[18:]


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", checksum: bool = True,
        bad_checksum: bool = False) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if not checksum:
        return seg
    cs = inet_checksum(_pseudo(src, dst, 17, len(seg)) + seg) ^ (0x5555 if bad_checksum else 0)
    return seg[:6] + struct.pack("!H", cs or 0xFFFF) + seg[8:]


def icmp(type_: int, code: int = 0, rest: bytes = b"\x00\x00\x00\x00", data: bytes = b"") -> bytes:
    body = struct.pack("!BBH", type_, code, 0) + rest + data
    return body[:2] + struct.pack("!H", inet_checksum(body)) + body[4:]


def icmp_echo(ident: int, seq: int = 1, reply: bool = False, v6: bool = False) -> bytes:
    t = (129 if reply else 128) if v6 else (0 if reply else 8)
    return icmp(t, 0, struct.pack("!HH", ident, seq), b"ping")


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 1, flags: int = 0x4000,
         frag_offset: int = 0, ttl: int = 64, options: bytes = b"", total_length: int | None = None) -> bytes:
    """An IPv4 packet; ``flags`` 0x4000 DF, 0x2000 MF; ``frag_offset`` in 8-byte units."""
    ihl = (20 + len(options)) // 4
    tot = total_length if total_length is not None else ihl * 4 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, ident, flags | frag_offset, ttl, proto, 0,
                      packed(src), packed(dst)) + options
    hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, ext: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """An IPv6 packet; ``ext`` is a chain of (header type, header bytes without next-header byte)
    e.g. [(0, hop_by_hop_body)] ; use ``ext_header`` to build the bodies."""
    chain = b""
    types = [t for t, _ in ext] + [nh]
    for i, (_, body) in enumerate(ext):
        chain += bytes([types[i + 1]]) + body
    first = types[0]
    return struct.pack("!IHBB16s16s", 0x60000000, len(chain) + len(payload), first, 64, packed(src),
                       packed(dst)) + chain + payload


def ext_header(kind: int, frag_offset: int = 0, more: bool = False, ident: int = 7) -> tuple[int, bytes]:
    """An IPv6 extension header (without its next-header byte): 0 hop-by-hop, 43 routing, 60 dest
    options (8 bytes each, padded), 44 fragment."""
    if kind == 44:
        return 44, struct.pack("!xHI", (frag_offset << 3) | int(more), ident)
    if kind == 43:
        return 43, bytes([0, 0, 0]) + b"\x00" * 4  # hdr ext len 0, routing type 0, segments left 0
    return kind, bytes([0]) + b"\x01\x04\x00\x00\x00\x00"  # length 0, PadN option


def routing_header(addresses: Sequence[str], rtype: int = 0, segments_left: int | None = None) -> tuple[int, bytes]:
    """An IPv6 routing header (without its next-header byte): type 0 or 2 (addresses in order) or
    4, segment routing (Segment List[0] is the final segment, so ``addresses`` are listed last first)."""
    left = len(addresses) if segments_left is None else segments_left
    fixed = bytes([len(addresses) * 2, rtype, left])
    rest = (struct.pack("!BBH", len(addresses) - 1, 0, 0) if rtype == 4 else b"\x00" * 4)
    return 43, fixed + rest + b"".join(packed(a) for a in addresses)


def home_address_option(home: str) -> tuple[int, bytes]:
    """A destination options header holding a Mobile IPv6 Home Address option (RFC 6275 §6.3)."""
    return 60, bytes([2]) + b"\x01\x02\x00\x00" + b"\xc9\x10" + packed(home)


def ipv6_jumbo(src: str, dst: str, nh: int, payload: bytes) -> bytes:
    """An IPv6 jumbogram (RFC 2675): payload length 0, hop-by-hop Jumbo Payload option."""
    hbh = bytes([nh, 0]) + b"\xc2\x04" + struct.pack("!I", 8 + len(payload))
    return struct.pack("!IHBB16s16s", 0x60000000, 0, 0, 64, packed(src), packed(dst)) + hbh + payload


def eth(payload: bytes, ethertype: int = 0x0800, vlan: int | Sequence[int] | None = None,
        outer_tpid: int = 0x8100, src: bytes = MAC_A, dst: bytes = MAC_B) -> bytes:
    """Ethernet II frame; ``vlan`` one VLAN id or several (QinQ: outer first, tagged ``outer_tpid``)."""
    tags = b""
    if vlan is not None:
        vids = [vlan] if isinstance(vlan, int) else list(vlan)
        for i, vid in enumerate(vids):
            tpid = outer_tpid if i == 0 and len(vids) > 1 else 0x8100
            tags += struct.pack("!HH", tpid, vid)
    return dst + src + tags + struct.pack("!H", ethertype) + payload


def _ethertype_of(ip: bytes) -> int:
    return 0x86DD if ip[0] >> 4 == 6 else 0x0800


def eth_ip(ip: bytes, vlan: int | Sequence[int] | None = None, outer_tpid: int = 0x8100) -> bytes:
    return eth(ip, _ethertype_of(ip), vlan, outer_tpid)


def ipv4_tcp(src: str, dst: str, sport: int, dport: int, flags: str | int = "S", payload: bytes = b"",
             seq: int = 1000, ack: int = 0, bad_checksum: bool = False, ident: int = 1) -> bytes:
    return ipv4(src, dst, 6, tcp(src, dst, sport, dport, flags, payload, seq, ack, bad_checksum=bad_checksum),
                ident=ident)


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", bad_checksum: bool = False,
             checksum: bool = True) -> bytes:
    return ipv4(src, dst, 17, udp(src, dst, sport, dport, payload, checksum, bad_checksum))


def ipv6_tcp(src: str, dst: str, sport: int, dport: int, flags: str | int = "S", payload: bytes = b"",
             seq: int = 1000, ack: int = 0, ext: Sequence[tuple[int, bytes]] = ()) -> bytes:
    return ipv6(src, dst, 6, tcp(src, dst, sport, dport, flags, payload, seq, ack), ext)


def ipv6_udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"",
             ext: Sequence[tuple[int, bytes]] = ()) -> bytes:
    return ipv6(src, dst, 17, udp(src, dst, sport, dport, payload), ext)


def eth_ipv4_tcp(src: str, dst: str, sport: int, dport: int, flags: str | int = "S", payload: bytes = b"",
                 vlan: int | Sequence[int] | None = None, seq: int = 1000, ack: int = 0,
                 bad_checksum: bool = False) -> bytes:
    return eth_ip(ipv4_tcp(src, dst, sport, dport, flags, payload, seq, ack, bad_checksum), vlan)


def eth_ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"",
                 vlan: int | Sequence[int] | None = None, bad_checksum: bool = False) -> bytes:
    return eth_ip(ipv4_udp(src, dst, sport, dport, payload, bad_checksum), vlan)


def eth_ipv6_tcp(src: str, dst: str, sport: int, dport: int, flags: str | int = "S", payload: bytes = b"",
                 vlan: int | None = None, ext: Sequence[tuple[int, bytes]] = ()) -> bytes:
    return eth_ip(ipv6_tcp(src, dst, sport, dport, flags, payload, ext=ext), vlan)


def eth_ipv6_udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"",
                 ext: Sequence[tuple[int, bytes]] = ()) -> bytes:
    return eth_ip(ipv6_udp(src, dst, sport, dport, payload, ext))


def ipv4_fragments(src: str, dst: str, proto: int, l4: bytes, size: int = 16, ident: int = 99) -> list[bytes]:
    """Split a transport segment into IPv4 fragments of ``size`` bytes (a multiple of 8)."""
    out = []
    for off in range(0, len(l4), size):
        more = 0x2000 if off + size < len(l4) else 0
        out.append(ipv4(src, dst, proto, l4[off:off + size], ident=ident, flags=more, frag_offset=off // 8))
    return out


def ipv6_fragments(src: str, dst: str, nh: int, l4: bytes, size: int = 16, ident: int = 77) -> list[bytes]:
    """Split a transport segment into IPv6 fragments (a fragment header each) of ``size`` bytes (a
    multiple of 8)."""
    return [ipv6(src, dst, nh, l4[off:off + size], ext=[ext_header(44, off // 8, off + size < len(l4), ident)])
            for off in range(0, len(l4), size)]


# -- tunnels ----------------------------------------------------------------------------------------

def vxlan(outer_src: str, outer_dst: str, inner_frame: bytes, vni: int = 42, sport: int = 49152) -> bytes:
    """Outer Ethernet/IPv4/UDP 4789 carrying a VXLAN header and the inner Ethernet frame."""
    hdr = struct.pack("!BxxxI", 0x08, vni << 8)
    return eth_ip(ipv4(outer_src, outer_dst, 17, udp(outer_src, outer_dst, sport, 4789, hdr + inner_frame)))


def geneve(outer_src: str, outer_dst: str, inner: bytes, vni: int = 7, protocol: int = 0x6558,
           options: bytes = b"") -> bytes:
    """Outer Ethernet/IPv4/UDP 6081, Geneve header (+options, multiple of 4 bytes), inner frame/packet."""
    hdr = struct.pack("!BBHI", len(options) // 4, 0, protocol, vni << 8) + options
    return eth_ip(ipv4(outer_src, outer_dst, 17, udp(outer_src, outer_dst, 6081, 6081, hdr + inner)))


def gre(outer_src: str, outer_dst: str, inner: bytes, protocol: int = 0x0800, key: int | None = None,
        seq: int | None = None, checksum: bool = False) -> bytes:
    """Outer Ethernet/IPv4 proto 47 with a GRE header (optional checksum, key, sequence)."""
    flags = ((0x8000 if checksum else 0) | (0x2000 if key is not None else 0)
             | (0x1000 if seq is not None else 0))
    hdr = struct.pack("!HH", flags, protocol)
    if checksum:
        hdr += b"\x00\x00\x00\x00"
    if key is not None:
        hdr += struct.pack("!I", key)
    if seq is not None:
        hdr += struct.pack("!I", seq)
    return eth_ip(ipv4(outer_src, outer_dst, 47, hdr + inner))


def erspan2(outer_src: str, outer_dst: str, inner_frame: bytes, session: int = 5) -> bytes:
    hdr = struct.pack("!HHI", 0x1000, session & 0x3FF, 0)  # version 1 (type II), vlan 0
    return gre(outer_src, outer_dst, hdr + inner_frame, protocol=0x88BE, seq=1)


def erspan3(outer_src: str, outer_dst: str, inner_frame: bytes, session: int = 6,
            subheader: bool = False) -> bytes:
    hdr = struct.pack("!HHIHH", 0x2000, session & 0x3FF, 0, 0, 1 if subheader else 0)
    if subheader:
        hdr += b"\x00" * 8
    return gre(outer_src, outer_dst, hdr + inner_frame, protocol=0x22EB, seq=1)


def ipv4_tunnel(outer_src: str, outer_dst: str, proto: int, body: bytes, **kw: int) -> bytes:
    """Outer Ethernet/IPv4 carrying ``body`` as IP protocol ``proto`` (PIM 103, AH 51, IPComp 108...)."""
    return eth_ip(ipv4(outer_src, outer_dst, proto, body, **kw))


def pim_register(outer_src: str, outer_dst: str, inner_ip: bytes, null: bool = False) -> bytes:
    """A PIMv2 Register (RFC 7761 §4.9.3) from a designated router to the RP, carrying ``inner_ip``."""
    hdr = struct.pack("!BBHI", 0x21, 0, 0, 0x40000000 if null else 0)
    body = hdr + inner_ip
    return ipv4_tunnel(outer_src, outer_dst, 103, body[:2] + struct.pack("!H", inet_checksum(hdr)) + body[4:])


def ah(next_header: int, payload: bytes, spi: int = 0x1000, icv: bytes = b"\x00" * 12) -> bytes:
    """An IPsec AH header (RFC 4302) with a 12-byte ICV, followed by ``payload``."""
    return struct.pack("!BBHII", next_header, (12 + len(icv)) // 4 - 2, 0, spi, 1) + icv + payload


def ipcomp(next_header: int, payload: bytes, cpi: int = 2) -> bytes:
    """IPComp (RFC 3173) with a raw DEFLATE payload (RFC 2394)."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    return struct.pack("!BBH", next_header, 0, cpi) + co.compress(payload) + co.flush()


def wccp_gre(outer_src: str, outer_dst: str, inner_ip: bytes) -> bytes:
    """WCCPv2 GRE redirection: GRE protocol 0x883E, a 4-byte redirect header, the IPv4 packet."""
    return gre(outer_src, outer_dst, struct.pack("!BBBB", 0x05, 0x59, 0x00, 0x48) + inner_ip, protocol=0x883E)


def wlan_data(ip: bytes) -> bytes:
    """An IEEE 802.11 data frame (to DS) with LLC/SNAP carrying ``ip``."""
    return (struct.pack("<BBH", 0x08, 0x01, 0) + MAC_B + MAC_A + MAC_B + b"\x00\x00"
            + b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", _ethertype_of(ip)) + ip)


# -- other link layers --------------------------------------------------------------------------------

def pktap(frame: bytes, dlt: int = 1) -> bytes:
    """Apple PKTAP header (108 bytes, little-endian: length, record type 1, inner DLT, 'en0'...)."""
    hdr = struct.pack("<III24sIIII", 108, 1, dlt, b"en0", 2, 2, 14, 0)
    return hdr + b"\x00" * (108 - len(hdr)) + frame


def macsec(ip: bytes, sci: bool = True, encrypted: bool = False) -> bytes:
    """Ethernet with an 802.1AE SecTAG (integrity only unless ``encrypted``) and a 16-byte ICV."""
    tci = (0x20 if sci else 0) | (0x0C if encrypted else 0)
    tag = struct.pack("!BBI", tci, 0, 66) + (MAC_A + b"\x00\x01" if sci else b"")
    return MAC_B + MAC_A + b"\x88\xe5" + tag + struct.pack("!H", _ethertype_of(ip)) + ip + b"\x5a" * 16


def fddi(ip: bytes) -> bytes:
    """FDDI frame (LLC frame control, addresses) with 802.2 LLC/SNAP."""
    return b"\x50" + MAC_B + MAC_A + b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", _ethertype_of(ip)) + ip


def ipoib(ip: bytes) -> bytes:
    """LINKTYPE_IPOIB: 20-byte destination and source hardware addresses, ethertype, reserved."""
    return b"\x00" * 20 + b"\x80" + b"\x00" * 19 + struct.pack("!HH", _ethertype_of(ip), 0) + ip


def juniper_ether(frame: bytes) -> bytes:
    """LINKTYPE_JUNIPER_ETHER: 'MGC', flags (extensions present), TLV length, TLVs, Ethernet frame."""
    tlvs = b"\x03\x01\x01\x06\x01\x0e\x01\x02\x00\x8c"
    return b"MGC\x80" + struct.pack("!H", len(tlvs)) + tlvs + frame



def sll(ip: bytes, protocol: int | None = None) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\x00\x00", protocol or _ethertype_of(ip)) + ip


def sll2(ip: bytes, protocol: int | None = None) -> bytes:
    return struct.pack("!HHIHBB8s", protocol or _ethertype_of(ip), 0, 2, 1, 0, 6, MAC_A + b"\x00\x00") + ip


def null_loopback(ip: bytes, byteorder: str = "<", family: int | None = None) -> bytes:
    fam = family if family is not None else (30 if ip[0] >> 4 == 6 else 2)
    return struct.pack(byteorder + "I", fam) + ip


# -- files ----------------------------------------------------------------------------------------------

def _stamped(packets: Iterable[Packet], start: float = 1_700_000_000.0) -> Iterable[tuple[float, bytes]]:
    for i, p in enumerate(packets):
        yield p if isinstance(p, tuple) else (start + i * 0.001, p)


def pcap_bytes(packets: Iterable[Packet], linktype: int = 1, nano: bool = False, byteorder: str = "<",
               snaplen: int = 65535) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data in _stamped(packets):
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        cap = data[:snaplen]
        out.append(struct.pack(byteorder + "IIII", sec, frac, len(cap), len(data)) + cap)
    return b"".join(out)


def write_pcap(path: str | Path, packets: Iterable[Packet], linktype: int = 1, nano: bool = False,
               byteorder: str = "<", snaplen: int = 65535, compression: str = "none") -> Path:
    """Write a classic pcap; packets are frames or (timestamp, frame)."""
    return write_bytes(path, pcap_bytes(packets, linktype, nano, byteorder, snaplen), compression)


def _block(btype: int, body: bytes, bo: str) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def _option(code: int, value: bytes, bo: str) -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def pcapng_bytes(interfaces: Sequence[int | tuple[int, int]], packets: Iterable[tuple[int, float, bytes]],
                 byteorder: str = "<", block: str = "epb", snaplen: int = 0) -> bytes:
    """One section. ``interfaces``: link type, or (link type, if_tsresol byte). ``packets``:
    (interface index, timestamp, frame). ``block``: 'epb', 'spb' (interface 0 only) or 'opb'."""
    bo = byteorder
    out = [_block(0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1), bo)]
    resols: list[tuple[bool, int]] = []
    for iface in interfaces:
        lt, resol = (iface, 6) if isinstance(iface, int) else iface
        opts = b""
        if isinstance(iface, tuple):
            opts = _option(9, bytes([resol]), bo) + _option(0, b"", bo)
        out.append(_block(1, struct.pack(bo + "HHI", lt, 0, snaplen) + opts, bo))
        resols.append((bool(resol & 0x80), resol & 0x7F))
    for ifid, ts, data in packets:
        pow2, n = resols[ifid]
        ticks = round(ts * (2 ** n if pow2 else 10 ** n))
        if block == "spb":
            out.append(_block(3, struct.pack(bo + "I", len(data)) + data, bo))
        elif block == "opb":
            out.append(_block(2, struct.pack(bo + "HHIIII", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                              len(data), len(data)) + data, bo))
        else:
            out.append(_block(6, struct.pack(bo + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF,
                                              len(data), len(data)) + data, bo))
    return b"".join(out)


def write_pcapng(path: str | Path, interfaces: Sequence[int | tuple[int, int]],
                 packets: Iterable[tuple[int, float, bytes] | bytes], byteorder: str = "<",
                 block: str = "epb", compression: str = "none", sections: int = 1) -> Path:
    """Write a pcapng file; a bare frame in ``packets`` goes to interface 0. With ``sections`` > 1 the
    packets are repeated in that many sections (alternating byte order when byteorder is 'mixed')."""
    pk = [p if isinstance(p, tuple) else (0, 1_700_000_000.0 + i * 0.001, p) for i, p in enumerate(packets)]
    parts = []
    for s in range(sections):
        bo = ("<" if s % 2 == 0 else ">") if byteorder == "mixed" else byteorder
        parts.append(pcapng_bytes(interfaces, pk, bo, block))
    return write_bytes(path, b"".join(parts), compression)


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data)
    if compression == "bz2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def write_bytes(path: str | Path, data: bytes, compression: str = "none") -> Path:
    p = Path(path)
    p.write_bytes(compress(data, compression))
    return p


WEB_CLIENT, WEB_SERVER, WEB_DNS = "10.0.30.5", "10.0.1.20", "10.0.1.53"


def web_session(t: float = 1_700_000_000.0) -> list[tuple[float, bytes]]:
    """Eleven frames a quarter of a second apart: an HTTP request to WEB_SERVER naming it
    sf.corp.example (Host) with handshake and close, a refused ICA attempt, a DNS query, IPv6 syslog.
    For readers of other formats to show the same audit as the pcap (tests/test_capture_foreign.py,
    tests/test_audit_nstrace.py)."""
    c, s, dns = WEB_CLIENT, WEB_SERVER, WEB_DNS
    frames = [eth_ipv4_tcp(c, s, 51000, 443, "S", seq=100), eth_ipv4_tcp(s, c, 443, 51000, "SA", seq=7, ack=101),
              eth_ipv4_tcp(c, s, 51000, 443, "A", seq=101, ack=8),
              eth_ipv4_tcp(c, s, 51000, 443, "PA", b"GET / HTTP/1.1\r\nHost: sf.corp.example\r\n\r\n", seq=101,
                           ack=8),
              eth_ipv4_tcp(s, c, 443, 51000, "PA", b"HTTP/1.1 200 OK\r\n\r\n", seq=8, ack=142),
              eth_ipv4_tcp(c, s, 51000, 443, "FA", seq=142, ack=27),
              eth_ipv4_tcp(s, c, 443, 51000, "FA", seq=27, ack=143),
              eth_ipv4_tcp(c, s, 51001, 1494, "S"), eth_ipv4_tcp(s, c, 1494, 51001, "RA"),
              eth_ipv4_udp(c, dns, 5353, 53, b"\x12\x34\x01\x00" + b"\x00" * 8),
              eth_ipv6_udp("fd00::5", "fd00::53", 40000, 514, b"<13>hello")]
    return [(t + i * 0.25, f) for i, f in enumerate(frames)]
