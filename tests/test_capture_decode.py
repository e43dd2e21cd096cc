"""Frame decoding: VLAN/QinQ, IPv4 options, IPv6 extension headers, fragments, ICMP, tunnels, checksums."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.capture import open_captures
from auditor.capture.info import ReadStats
from auditor.model import PAYLOAD_SNAP, PacketRecord, QuotedPacket, TunnelInfo
from tests.capture_factory import (
    ah,
    erspan2,
    erspan3,
    eth,
    eth_ip,
    eth_ipv4_tcp,
    eth_ipv4_udp,
    eth_ipv6_tcp,
    eth_ipv6_udp,
    ext_header,
    fddi,
    geneve,
    gre,
    home_address_option,
    icmp,
    icmp_echo,
    ipcomp,
    ipoib,
    ipv4,
    ipv4_fragments,
    ipv4_tcp,
    ipv4_tunnel,
    ipv4_udp,
    ipv6,
    ipv6_jumbo,
    ipv6_tcp,
    juniper_ether,
    macsec,
    packed,
    pim_register,
    pktap,
    routing_header,
    tcp,
    udp,
    vxlan,
    wccp_gre,
    wlan_data,
    write_pcap,
)

# Each test runs with either kernel (conftest.each_kernel).
pytestmark = pytest.mark.usefixtures("each_kernel")

A, B = "10.0.0.1", "10.0.0.2"


def decode(tmp_path: Path, frames: list[bytes], verify: bool = True) -> tuple[list[PacketRecord], ReadStats]:
    cs = open_captures([str(write_pcap(tmp_path / "t.pcap", frames))], verify_checksums=verify)
    return list(cs), cs.stats


def test_tcp_fields(tmp_path: Path) -> None:
    (r,), _ = decode(tmp_path, [eth_ipv4_tcp(A, B, 50000, 1494, "PA", b"ICA\x00" * 10, seq=7, ack=9)])
    assert (r.src, r.dst, r.proto, r.sport, r.dport, r.tcp_flags, r.seq, r.ack) == (
        packed(A), packed(B), 6, 50000, 1494, 0x18, 7, 9)
    assert (r.ip_len, r.payload_len, r.payload, r.checksum_bad) == (80, 40, b"ICA\x00" * 10, False)


def test_payload_is_bounded_and_lengths_are_wire_lengths(tmp_path: Path) -> None:
    big = eth_ipv4_tcp(A, B, 1, 443, "PA", b"x" * 3000)
    cs = open_captures([str(write_pcap(tmp_path / "s.pcap", [big, big[:100]]))])
    r1, r2 = list(cs)
    assert r1.payload_len == 3000 and len(r1.payload) == PAYLOAD_SNAP
    assert r2.payload_len == 3000 and r2.payload == b"x" * 46 and r2.ip_len == 3040  # snaplen-cut frame


@pytest.mark.parametrize("tpid", [0x8100, 0x88A8, 0x9100])
def test_vlan_and_qinq(tmp_path: Path, tpid: int) -> None:
    frames = [eth_ipv4_tcp(A, B, 1, 2, vlan=10), eth_ip(ipv4_udp(A, B, 3, 4, b"q"), vlan=[100, 200],
                                                           outer_tpid=tpid),
              eth_ipv6_udp("fd00::1", "fd00::2", 5, 6, b"z")]
    recs, stats = decode(tmp_path, frames)
    assert [(r.sport, r.dport) for r in recs] == [(1, 2), (3, 4), (5, 6)]
    assert stats.malformed == {} and stats.unsupported == {}


def test_ipv4_options_and_bad_ihl(tmp_path: Path) -> None:
    seg = tcp(A, B, 7, 8)
    with_opts = eth_ip(ipv4(A, B, 6, seg, options=b"\x94\x04\x00\x00"))  # router alert
    bad = bytearray(eth_ip(ipv4(A, B, 6, seg)))
    bad[14] = 0x43  # IHL 3
    recs, stats = decode(tmp_path, [with_opts, bytes(bad)])
    assert [(r.sport, r.ip_len, r.checksum_bad) for r in recs] == [(7, 44, False)]
    assert stats.malformed == {"ipv4-bad-header": 1} and stats.examples["ipv4-bad-header"] == (0, 2)


def test_ipv6_extension_header_chain(tmp_path: Path) -> None:
    chain = [ext_header(0), ext_header(43), ext_header(60)]
    recs, stats = decode(tmp_path, [eth_ipv6_tcp("fd00::1", "fd00::2", 1000, 443, "S", ext=chain),
                                    eth_ipv6_udp("fd00::1", "fd00::2", 53, 53, b"d", ext=chain[:1])])
    assert [(r.proto, r.sport, r.dport) for r in recs] == [(6, 1000, 443), (17, 53, 53)]
    assert recs[0].ip_len == 40 + 24 + 20 and not recs[0].checksum_bad and stats.malformed == {}


def test_ipv4_fragments_get_first_fragment_ports(tmp_path: Path) -> None:
    seg = udp(A, B, 5000, 514, b"y" * 40)
    frags = ipv4_fragments(A, B, 17, seg, size=16, ident=77)
    orphan = ipv4(A, "10.9.9.9", 17, b"z" * 16, ident=5, flags=0, frag_offset=4)
    recs, stats = decode(tmp_path, [eth_ip(f) for f in frags] + [eth_ip(orphan)])
    assert [(r.sport, r.dport, r.fragment) for r in recs] == [(5000, 514, True)] * 3 + [(0, 0, True)]
    assert recs[0].payload_len == 40
    assert stats.malformed == {"fragment-orphan": 1}


def test_ipv6_fragments(tmp_path: Path) -> None:
    seg = tcp("fd00::1", "fd00::2", 4000, 80, "PA", b"w" * 40)
    f1 = ipv6("fd00::1", "fd00::2", 6, seg[:24], [ext_header(44, 0, True, 9)])
    f2 = ipv6("fd00::1", "fd00::2", 6, seg[24:], [ext_header(44, 3, False, 9)])
    recs, _ = decode(tmp_path, [eth_ip(f1), eth_ip(f2)])
    assert [(r.sport, r.dport, r.fragment) for r in recs] == [(4000, 80, True), (4000, 80, True)]


def test_icmp_echo_and_errors(tmp_path: Path) -> None:
    quoted_udp = ipv4_udp(B, "10.0.0.9", 40000, 161, b"snmp")
    unreach = eth_ip(ipv4("10.0.0.9", B, 1, icmp(3, 3, data=quoted_udp[:28])))
    quoted6 = ipv6_q = ipv6("fd00::2", "fd00::9", 6, tcp("fd00::2", "fd00::9", 1, 22))
    unreach6 = eth_ip(ipv6("fd00::9", "fd00::2", 58, icmp(1, 4, data=ipv6_q[:48])))
    frames = [eth_ip(ipv4(A, B, 1, icmp_echo(0x1234))), eth_ip(ipv4(B, A, 1, icmp_echo(0x1234, reply=True))),
              unreach, eth_ip(ipv6("fd00::1", "fd00::2", 58, icmp_echo(77, v6=True))), unreach6]
    recs, _ = decode(tmp_path, frames)
    assert [(r.proto, r.icmp_type, r.icmp_code, r.icmp_id) for r in recs] == [
        (1, 8, 0, 0x1234), (1, 0, 0, 0x1234), (1, 3, 3, 0), (58, 128, 0, 77), (58, 1, 4, 0)]
    assert recs[2].quoted == QuotedPacket(packed(B), packed("10.0.0.9"), 17, 40000, 161)
    assert recs[4].quoted == QuotedPacket(packed("fd00::2"), packed("fd00::9"), 6, 1, 22)
    assert quoted6


def test_checksums_verified_optional(tmp_path: Path) -> None:
    frames = [eth_ipv4_tcp(A, B, 1, 2, "PA", b"abc", bad_checksum=True),
              eth_ipv4_tcp(A, B, 1, 2, "PA", b"abcd"),
              eth_ipv4_udp(A, B, 3, 4, b"odd", bad_checksum=True), eth_ipv4_udp(A, B, 3, 4, b"even"),
              eth_ip(ipv4(A, B, 17, udp(A, B, 5, 6, b"nocsum", checksum=False))),
              eth_ipv6_udp("fd00::1", "fd00::2", 7, 8, b"v6")]
    recs, _ = decode(tmp_path, frames)
    assert [r.checksum_bad for r in recs] == [True, False, True, False, False, False]
    recs, _ = decode(tmp_path, frames, verify=False)
    assert not any(r.checksum_bad for r in recs)


INNER = eth_ipv4_tcp("192.168.1.10", "192.168.1.20", 51000, 2598, "S")


@pytest.mark.parametrize(("frame", "kind", "vni"), [
    (vxlan("172.16.0.1", "172.16.0.2", INNER, vni=4242), "vxlan", 4242),
    (geneve("172.16.0.1", "172.16.0.2", INNER, vni=99, options=b"\x01\x02\x03\x01" + b"\x00" * 4),
     "geneve", 99),
    (geneve("172.16.0.1", "172.16.0.2", INNER[14:], vni=98, protocol=0x0800), "geneve", 98),
    (gre("172.16.0.1", "172.16.0.2", INNER[14:], key=31, seq=2, checksum=True), "gre", 31),
    (gre("172.16.0.1", "172.16.0.2", INNER, protocol=0x6558), "gre", 0),
    (erspan2("172.16.0.1", "172.16.0.2", INNER, session=17), "erspan2", 17),
    (erspan3("172.16.0.1", "172.16.0.2", INNER, session=18), "erspan3", 18),
    (erspan3("172.16.0.1", "172.16.0.2", INNER, session=19, subheader=True), "erspan3", 19),
])
def test_tunnels_decapsulated(tmp_path: Path, frame: bytes, kind: str, vni: int) -> None:
    (r,), stats = decode(tmp_path, [frame])
    assert (r.src, r.dst, r.sport, r.dport, r.tcp_flags) == (
        packed("192.168.1.10"), packed("192.168.1.20"), 51000, 2598, 2)
    assert r.tunnel == TunnelInfo(kind, packed("172.16.0.1"), packed("172.16.0.2"), vni)
    assert stats.tunnels == {kind: 1}


def test_nested_tunnels_outermost_noted_and_bounded(tmp_path: Path) -> None:
    two = vxlan("1.1.1.1", "1.1.1.2", vxlan("2.2.2.1", "2.2.2.2", INNER, vni=2), vni=1)
    deep = INNER
    for i in range(6):
        deep = vxlan(f"3.3.3.{i}", "3.3.3.9", deep, vni=i)
    recs, stats = decode(tmp_path, [two, deep])
    assert len(recs) == 1 and recs[0].tunnel == TunnelInfo("vxlan", packed("1.1.1.1"), packed("1.1.1.2"), 1)
    assert stats.unsupported == {"tunnel-too-deep": 1}


def test_non_ip_and_unknown_gre_counted(tmp_path: Path) -> None:
    arp = eth(b"\x00" * 28, 0x0806)
    lldp = eth(b"\x00" * 30, 0x88CC)
    pptp = eth_ip(ipv4(A, B, 47, b"\x30\x01\x88\x0b" + b"\x00" * 12))
    recs, stats = decode(tmp_path, [arp, lldp, pptp])
    assert recs == [] and stats.non_ip == 2
    assert stats.unsupported == {"ethertype:0x0806": 1, "ethertype:0x88cc": 1, "ipproto:47-unknown-gre": 1}


def test_short_transport_headers_are_malformed(tmp_path: Path) -> None:
    t = eth_ip(ipv4(A, B, 6, b"\x00" * 10))
    u = eth_ip(ipv4(A, B, 17, b"\x00" * 4))
    recs, stats = decode(tmp_path, [t, u, eth_ip(ipv4_tcp(A, B, 1, 2))])
    assert len(recs) == 1 and stats.malformed == {"tcp-short": 1, "udp-short": 1}


def _link_records(tmp_path: Path, frames: list[bytes], linktype: int) -> tuple[list[PacketRecord], ReadStats]:
    cs = open_captures([str(write_pcap(tmp_path / "l.pcap", frames, linktype=linktype))])
    return list(cs), cs.stats


def _wlan_data(ip: bytes, *, qos: bool = False, protected: bool = False, four_addr: bool = False) -> bytes:
    fc = 0x08 | (0x80 if qos else 0)  # type 2 (data), subtype 0 or 8 (QoS data)
    flags = (0x40 if protected else 0) | (0x03 if four_addr else 0x01)
    hdr = bytes([fc, flags]) + bytes(22) + (bytes(6) if four_addr else b"") + (bytes(2) if qos else b"")
    return hdr + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ip


def test_ieee80211_data_frames_radiotap_and_ppi(tmp_path: Path) -> None:
    ip = ipv4_tcp(A, B, 50000, 443)
    recs, stats = _link_records(tmp_path, [_wlan_data(ip), _wlan_data(ip, qos=True, four_addr=True),
                                           _wlan_data(ip, protected=True), b"\x80\x00" + bytes(30)], 105)
    assert [(r.sport, r.dport) for r in recs] == [(50000, 443)] * 2
    assert stats.non_ip == 2
    radiotap = b"\x00\x00\x08\x00\x00\x00\x00\x00" + _wlan_data(ip)
    (r,), _ = _link_records(tmp_path, [radiotap], 127)
    assert r.dport == 443
    ppi = b"\x00\x00\x08\x00\x69\x00\x00\x00" + _wlan_data(ip)  # PPI header, inner DLT 105
    (r,), _ = _link_records(tmp_path, [ppi], 192)
    assert r.dport == 443


def test_nflog_payload_tlv(tmp_path: Path) -> None:
    ip = ipv4_udp(A, B, 5353, 53, b"\x00" * 12)
    prefix_tlv = b"\x08\x00\x01\x00" + b"\x08\x00\x00\x00"          # NFULA_PACKET_HDR (len 8)
    payload_tlv = (len(ip) + 4).to_bytes(2, "little") + b"\x09\x00" + ip
    frame = b"\x02\x00\x00\x00" + prefix_tlv + payload_tlv           # AF_INET, version 0, resource 0
    (r,), _ = _link_records(tmp_path, [frame], 239)
    assert (r.sport, r.dport) == (5353, 53)


# -- what tshark reads and the oracle run on the public corpus showed we missed (docs/oracle.md) --------


def test_pktap_and_user2_pktap_link_types(tmp_path: Path) -> None:
    """tcpdump/tests/LINKTYPE_PKTAP.pcap, LINKTYPE_USER2_PKTAP.pcap: macOS `tcpdump -k`."""
    frame = eth_ipv4_udp(A, B, 63538, 53, b"\x00" * 12)
    for lt in (258, 149):
        cs = open_captures([str(write_pcap(tmp_path / f"{lt}.pcap", [pktap(frame), pktap(frame, dlt=99)],
                                           linktype=lt))])
        assert [(r.sport, r.dport) for r in cs] == [(63538, 53)], lt
        assert cs.stats.unsupported == {"linktype:DLT_LINKTYPE_99": 1}


def test_fddi_ipoib_and_juniper_link_types(tmp_path: Path) -> None:
    """zeek/.../llc.pcap (FDDI), tcpdump/tests/ipoib.pcap, tcpdump/tests/bgp-aigp.pcap (Juniper)."""
    ip = ipv4_tcp(A, B, 2035, 80, "S")
    for lt, frame in ((10, fddi(ip)), (242, ipoib(ip)), (178, juniper_ether(eth_ip(ip)))):
        cs = open_captures([str(write_pcap(tmp_path / f"{lt}.pcap", [frame, frame[:3]], linktype=lt))])
        assert [(r.sport, r.dport, r.checksum_bad) for r in cs] == [(2035, 80, False)], lt
        assert sum(cs.stats.malformed.values()) == 1, lt  # the cut frame is counted, not fatal


def test_macsec_integrity_only_is_read_encrypted_counted(tmp_path: Path) -> None:
    """tcpdump/tests/macsec-short-*.pcap: an 802.1AE SecTAG without E/C bits carries plain data."""
    ip = ipv4_udp("192.168.114.1", "192.168.114.2", 37459, 6666, b"123\n")
    recs, stats = decode(tmp_path, [macsec(ip), macsec(ip, sci=False), macsec(ip, encrypted=True)])
    assert [(r.sport, r.dport, r.checksum_bad) for r in recs] == [(37459, 6666, False)] * 2
    assert stats.unsupported == {"macsec-encrypted": 1}


def test_deeply_nested_tags_are_walked(tmp_path: Path) -> None:
    """zeek/.../pbb-recursive-frames.pcapng: 60 nested 802.1ah I-TAGs (tshark walks them all)."""
    inner = eth_ipv4_udp("192.0.2.1", "198.51.100.1", 12345, 53, b"\x00" * 12)
    frame = inner
    for _ in range(60):
        frame = inner[:12] + b"\x88\xe7" + b"\x00" * 4 + frame
    (r,), _ = decode(tmp_path, [frame])
    assert (r.sport, r.dport) == (12345, 53)


def test_ipv6_jumbogram(tmp_path: Path) -> None:
    """tcpdump/tests/bigtcp-ipv6-hbh.pcap: Linux BIG TCP writes payload length 0 and a Jumbo option."""
    seg = tcp("fd00::b", "fd00::d", 43913, 41851, "A", b"j" * 100)
    recs, stats = decode(tmp_path, [eth_ip(ipv6_jumbo("fd00::b", "fd00::d", 6, seg))])
    assert [(r.sport, r.dport, r.payload_len, r.checksum_bad) for r in recs] == [(43913, 41851, 100, False)]
    assert stats.malformed == {}


def test_ipv6_final_destination_and_home_address(tmp_path: Path) -> None:
    """zeek/.../ip6-route0-*, ipv6-mobile-routing, ip6-hoa-*, tcpdump/tests/ipv6-srh-insert-cksum.pcap:
    tshark (and the checksum) use the routing header's final destination and the home address."""
    s, d, fin, home = "fd00::1", "fd00::2", "fd00::99", "fd00::77"
    frames = []
    for ext in ([routing_header(["fd00::50", fin])], [routing_header([fin], rtype=2)],
                [routing_header([fin, "fd00::50", d], rtype=4, segments_left=2)]):
        frames.append(eth_ip(ipv6(s, d, 17, udp(s, fin, 30000, 13000, b"x"), ext)))
    frames.append(eth_ip(ipv6(s, d, 6, tcp(home, d, 30000, 80, "S"), [home_address_option(home)])))
    frames.append(eth_ip(ipv6(s, d, 17, udp(s, d, 1, 2, b"x"), [routing_header([fin], segments_left=0)])))
    recs, _ = decode(tmp_path, frames)
    assert [(r.src, r.dst, r.checksum_bad) for r in recs] == (
        [(packed(s), packed(fin), False)] * 3 + [(packed(home), packed(d), False), (packed(s), packed(d), False)])


def test_ipv4_source_route_final_destination(tmp_path: Path) -> None:
    """pcap4j/.../IpV4PacketTest.pcap: tshark keys a loose source route on its last address."""
    lsrr = bytes([131, 11, 8]) + packed("192.168.1.1") + packed("192.168.1.2") + b"\x01"
    done = bytes([131, 7, 8]) + packed("192.168.1.1") + b"\x00"  # pointer past the route: no hops left
    recs, _ = decode(tmp_path, [eth_ip(ipv4("192.0.2.1", "192.0.2.2", 17, udp("192.0.2.1", "192.168.1.2", 161, 9),
                                            options=lsrr)),
                                eth_ip(ipv4("192.0.2.1", "192.0.2.2", 17, udp("192.0.2.1", "192.0.2.2", 161, 9),
                                            options=done))])
    assert [r.dst for r in recs] == [packed("192.168.1.2"), packed("192.0.2.2")]
    assert not any(r.checksum_bad for r in recs)


def test_pim_register_wccp_and_aruba_decapsulated(tmp_path: Path) -> None:
    """tcpdump/tests/pim-packet-assortment.pcap, wccp_redirect_gre.pcap, zeek/.../gre-aruba.pcap."""
    inner = ipv4_udp("10.0.0.12", "225.0.0.11", 2468, 2468, b"m" * 8)
    seg = ipv4_tcp("10.254.127.195", "10.254.108.228", 1291, 445, "PA", b"smb")
    frames = [pim_register("10.0.0.1", "10.0.0.2", inner), pim_register("10.0.0.1", "10.0.0.2", inner, null=True),
              wccp_gre("10.254.127.194", "10.254.214.82", seg),
              gre("10.1.1.1", "10.1.1.2", wlan_data(seg), protocol=0x8200)]
    recs, stats = decode(tmp_path, frames)
    assert [(r.proto, r.sport, r.dport, r.tunnel.kind if r.tunnel else "") for r in recs] == [
        (17, 2468, 2468, "pim"), (103, 0, 0, ""), (6, 1291, 445, "wccp"), (6, 1291, 445, "gre")]
    assert stats.tunnels == {"pim": 1, "wccp": 1, "gre": 1}


def test_ipv4_ah_and_ipcomp(tmp_path: Path) -> None:
    """libpcap/tests/filter/AH-IPcomp-IPv4.pcap, -IPv6.pcap: tunnel-mode AH, DEFLATE IPComp inside."""
    inner = ipv4_tcp("50.0.1.1", "150.0.1.1", 1026, 80, "PA", b"GET / HTTP/1.0\r\n" * 8)
    inner6 = ipv6_tcp("4000::1", "2003::8c00:1", 12764, 80, "A")
    frames = [ipv4_tunnel("40.0.0.2", "30.0.0.1", 51, ah(4, inner)),
              ipv4_tunnel("40.0.0.2", "30.0.0.1", 51, ah(108, ipcomp(4, inner, cpi=0xEED1))),
              ipv4_tunnel("40.0.0.2", "30.0.0.1", 108, ipcomp(6, tcp("40.0.0.2", "30.0.0.1", 5, 6, "S"))),
              eth_ip(ipv6("fd00::1", "fd00::2", 108, ipcomp(41, inner6))),
              ipv4_tunnel("40.0.0.2", "30.0.0.1", 108, b"\x04\x00\xee\xd1" + b"\xff" * 20),
              ipv4_tunnel("40.0.0.2", "30.0.0.1", 108, b"\x04\x00\x00\x03" + b"\x00" * 20)]
    recs, stats = decode(tmp_path, frames)
    assert [(r.sport, r.dport, r.payload_len, r.checksum_bad) for r in recs] == [
        (1026, 80, 128, False), (1026, 80, 128, False), (5, 6, 0, False), (12764, 80, 0, False)]
    assert stats.unsupported == {"ipcomp": 2}


def test_first_fragment_of_a_tunnel_packet_is_decapsulated(tmp_path: Path) -> None:
    """zeek/.../erspan.pcap: mirrored packets whose outer GRE/VXLAN packet was fragmented."""
    inner = eth_ipv4_tcp("192.168.69.2", "192.168.69.10", 80, 49162, "PA", b"h" * 100)
    outer = vxlan("172.16.0.1", "172.16.0.2", inner)[14:]
    l4 = outer[20:]
    frags = [eth_ip(ipv4("172.16.0.1", "172.16.0.2", 17, l4[off:off + 72], ident=3,
                         flags=0x2000 if off + 72 < len(l4) else 0, frag_offset=off // 8))
             for off in range(0, len(l4), 72)]
    gre_frags = [eth_ip(f) for f in ipv4_fragments("10.0.0.1", "10.0.0.2", 47, b"\x00\x00\x08\x00" + inner[14:],
                                                   size=64)]
    recs, stats = decode(tmp_path, frags + gre_frags)
    assert [(r.sport, r.dport, r.tunnel.kind if r.tunnel else "") for r in recs] == [(80, 49162, "vxlan"),
                                                                                       (80, 49162, "gre")]
    assert stats.unsupported == {"tunnel-fragment": len(frags) + len(gre_frags) - 2}


def test_checksums_are_verified_on_every_early_frame_then_sampled() -> None:
    from auditor.capture.decode import VERIFY_EVERY, Decoder

    frame = eth_ipv4_udp(A, B, 5000, 514, b"<13>syslog message from a host", bad_checksum=True)
    dec = Decoder(ReadStats(), 0)
    at = 1_700_000_000.123457  # a timestamp whose microsecond is not a multiple of VERIFY_EVERY
    assert round(at * 1e6) % VERIFY_EVERY
    early = dec.decode(frame, 0, len(frame), at, 1, 1)
    assert early is not None and early.checksum_bad
    # Past the first VERIFY_ALL_BYTES of the input (the walk says when): the packets whose timestamp
    # in microseconds is a multiple of VERIFY_EVERY, whatever their frame number.
    dec.kernel.verify_all = False
    late = [dec.decode(frame, 0, len(frame), 1_700_000_000 + us / 1e6, 7, 1) for us in range(4 * VERIFY_EVERY)]
    sampled = [us for us in range(4 * VERIFY_EVERY) if (1_700_000_000_000_000 + us) % VERIFY_EVERY == 0]
    assert len(sampled) == 4
    assert [us for us, r in enumerate(late) if r is not None and r.checksum_bad] == sampled
    assert all(r is not None for r in late)
    skipped = dec.decode(frame, 0, len(frame), at, 1, 1)
    assert skipped is not None and not skipped.checksum_bad
    off = Decoder(ReadStats(), 0, verify_checksums=False).decode(frame, 0, len(frame), 0.0, 1, 1)
    assert off is not None and not off.checksum_bad
    # TCP SYN, FIN and RST are always verified: every TCP connection gets its own verdict.
    for flags, verified in (("S", True), ("FA", True), ("R", True), ("PA", False), ("A", False)):
        seg = eth_ipv4_tcp(A, B, 40000, 443, flags, b"x" * 10, bad_checksum=True)
        rec = dec.decode(seg, 0, len(seg), at, 1, 1)
        assert rec is not None and rec.checksum_bad == verified, flags
