"""Name evidence: DNS answers (A, AAAA, CNAME chains, over TCP), TLS SNI, HTTP Host, hostile names."""

from __future__ import annotations

import pickle
import socket

import dpkt

from auditor.names import NameEvidence, NameObservation
from tests.records import tcp, udp

CLIENT, RESOLVER, WEB = "10.0.0.1", "10.0.0.53", "192.0.2.10"


def dns_response(qname: str, answers: list[tuple[str, str, str]]) -> bytes:
    """answers: (owner, 'A'|'AAAA'|'CNAME', value)."""
    d = dpkt.dns.DNS(id=7)
    d.qr = dpkt.dns.DNS_R
    d.qd = [dpkt.dns.DNS.Q(name=qname, type=dpkt.dns.DNS_A)]
    rrs = []
    for owner, kind, value in answers:
        rr = dpkt.dns.DNS.RR(name=owner, cls=dpkt.dns.DNS_IN, ttl=60)
        if kind == "A":
            rr.type, rr.ip = dpkt.dns.DNS_A, socket.inet_aton(value)
        elif kind == "AAAA":
            rr.type, rr.ip6 = dpkt.dns.DNS_AAAA, socket.inet_pton(socket.AF_INET6, value)
        else:
            rr.type, rr.cname = dpkt.dns.DNS_CNAME, value
        rrs.append(rr)
    d.an = rrs
    return bytes(d)


def client_hello(server_name: bytes) -> bytes:
    sni = b"\x00" + len(server_name).to_bytes(2, "big") + server_name
    sni_list = len(sni).to_bytes(2, "big") + sni
    ext = b"\x00\x0a\x00\x04\x00\x02\x00\x17" + b"\x00\x00" + len(sni_list).to_bytes(2, "big") + sni_list
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + len(ext).to_bytes(2, "big") + ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def names(ev: NameEvidence, address: str) -> list[tuple[str, str]]:
    return [(o.name, o.source) for o in ev.names_for(address)]


def test_dns_a_aaaa_and_cname_chain() -> None:
    ev = NameEvidence()
    msg = dns_response("Login.Example.COM", [
        ("login.example.com", "CNAME", "edge.example.net"),
        ("edge.example.net", "CNAME", "pop7.cdn.example.org"),
        ("pop7.cdn.example.org", "A", "198.51.100.7"),
        ("pop7.cdn.example.org", "AAAA", "2001:db8::7"),
    ])
    ev.observe(udp(RESOLVER, CLIENT, 53, 50000, 1.0, frame=12, payload=msg))
    assert names(ev, "198.51.100.7") == [("pop7.cdn.example.org", "dns"), ("edge.example.net", "dns-cname"),
                                         ("login.example.com", "dns-cname")]
    assert names(ev, "2001:db8::7")[-1] == ("login.example.com", "dns-cname")
    first = NameObservation("pop7.cdn.example.org", "198.51.100.7", "dns", 0, 12)
    assert ev.names_for("198.51.100.7")[0] == first
    assert ev.addresses_matching("LOGIN.example.com.") == {"198.51.100.7", "2001:db8::7"}
    assert ev.addresses_matching("*.example.com") == {"198.51.100.7", "2001:db8::7"}
    assert ev.addresses_matching("*.cdn.example.org") == {"198.51.100.7", "2001:db8::7"}
    assert ev.addresses_matching("*.login.example.com") == set()


def test_dns_dedup_and_queries_ignored() -> None:
    ev = NameEvidence()
    msg = dns_response("a.nssvc.net", [("a.nssvc.net", "A", "203.0.113.1")])
    for i in range(3):
        ev.observe(udp(RESOLVER, CLIENT, 53, 50000 + i, float(i), payload=msg))
    query = bytearray(msg)
    query[2] &= 0x7F  # QR=0: a query carries no evidence
    ev.observe(udp(CLIENT, RESOLVER, 50000, 53, 5.0, payload=bytes(query)))
    assert names(ev, "203.0.113.1") == [("a.nssvc.net", "dns")]
    assert ev.addresses_matching("*.nssvc.net") == {"203.0.113.1"}
    assert ev.addresses_matching("x.b.nssvc.net") == set()


def test_dns_over_tcp() -> None:
    ev = NameEvidence()
    msg = dns_response("ddc01.corp.example", [("ddc01.corp.example", "A", "10.0.1.10")])
    ev.observe(tcp(RESOLVER, CLIENT, 53, 50000, "PA", 1.0, payload=len(msg).to_bytes(2, "big") + msg))
    assert names(ev, "10.0.1.10") == [("ddc01.corp.example", "dns")]
    ev.observe(tcp(RESOLVER, CLIENT, 53, 50001, "PA", 1.0, payload=(len(msg) + 50).to_bytes(2, "big") + msg))
    assert ev.stats["parse_errors"] == 1


def test_sni_tied_to_destination() -> None:
    ev = NameEvidence()
    ev.observe(tcp(CLIENT, WEB, 50000, 443, "PA", 1.0, frame=4, payload=client_hello(b"Cis.Citrix.com")))
    assert ev.names_for(WEB) == [NameObservation("cis.citrix.com", WEB, "sni", 0, 4)]
    assert ev.stats["sni"] == 1


def test_http_host() -> None:
    ev = NameEvidence()
    req = b"GET /Citrix/Store/ HTTP/1.1\r\nUser-Agent: x\r\nHost: StoreFront.corp.example:8080\r\n\r\n"
    ev.observe(tcp(CLIENT, WEB, 50000, 8080, "PA", 1.0, payload=req))
    assert names(ev, WEB) == [("storefront.corp.example", "http-host")]
    # Proxy-form requests and IP literals say nothing about the destination's name.
    ev.observe(tcp(CLIENT, "10.9.9.9", 50001, 3128, "PA", 1.0,
                   payload=b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"))
    ev.observe(tcp(CLIENT, "10.9.9.8", 50001, 80, "PA", 1.0,
                   payload=b"GET / HTTP/1.1\r\nHost: 10.9.9.8\r\n\r\n"))
    assert ev.names_for("10.9.9.9") == [] and ev.names_for("10.9.9.8") == []


def test_hostile_names_bounded() -> None:
    ev = NameEvidence()
    xss = b"GET / HTTP/1.1\r\nHost: <script>alert(1)</script>\r\n\r\n"
    ev.observe(tcp(CLIENT, WEB, 50000, 80, "PA", 1.0, payload=xss))
    ev.observe(tcp(CLIENT, WEB, 50001, 443, "PA", 1.0, payload=client_hello(b"evil\x1b[31m.example")))
    ev.observe(tcp(CLIENT, WEB, 50002, 443, "PA", 1.0, payload=client_hello(b"a" * 1000)))
    assert names(ev, WEB) == [("<script>alert(1)</script>", "http-host")]  # kept raw: renderers escape
    assert ev.stats["names_refused"] == 2


def test_malformed_dns_counted_never_raised() -> None:
    ev = NameEvidence()
    good = dns_response("a.example", [("a.example", "A", "192.0.2.1")])
    for junk in (b"\x00\x07\x81\x80\x00\x01", good[:-3], b"\xff" * 40, good[:12] + b"\xc0\x0c" * 20):
        ev.observe(udp(RESOLVER, CLIENT, 53, 50000, 1.0, payload=junk))
    ev.observe(tcp(CLIENT, WEB, 50000, 443, "PA", 1.0, payload=b"\x16\x03\x01\x00\x10\x01\x00"))
    assert ev.stats["parse_errors"] == 5
    assert ev.stats["names_kept"] == 0


def test_bounded_store_and_merge() -> None:
    ev = NameEvidence(max_names=3)
    for i in range(5):
        ev.observe(udp(RESOLVER, CLIENT, 53, 50000, 1.0,
                       payload=dns_response(f"h{i}.example", [(f"h{i}.example", "A", f"192.0.2.{i}")])))
    assert ev.stats["names_kept"] == 3 and ev.stats["names_dropped"] == 2
    other = NameEvidence()
    other.observe(tcp(CLIENT, "192.0.2.0", 50000, 443, "PA", 2.0, payload=client_hello(b"h0.example")))
    big = NameEvidence()
    big.merge(ev)
    big.merge(other)
    assert names(big, "192.0.2.0") == [("h0.example", "dns"), ("h0.example", "sni")]
    assert big.stats["names_kept"] == 4 and big.stats["names_dropped"] == 2


def test_travels_between_processes_whole() -> None:
    # A chunk's names are pickled in a worker (as columns) and merged in the audit's process: after
    # the trip they answer every query alike, and merge and keep counting as before.
    ev = NameEvidence(max_names=5)
    ev.observe(udp(RESOLVER, CLIENT, 53, 50000, 1.0, frame=3, payload=dns_response("Login.Example.COM", [
        ("login.example.com", "CNAME", "edge.example.net"), ("edge.example.net", "A", "198.51.100.7"),
        ("edge.example.net", "A", "198.51.100.8")])))
    ev.observe(tcp(CLIENT, "198.51.100.7", 50001, 443, "PA", 2.0, frame=9, payload=client_hello(b"sf.example.com")))
    ev.observe(tcp(CLIENT, "198.51.100.9", 50002, 443, "PA", 3.0, frame=11, payload=client_hello(b"x.example.com")))
    back = pickle.loads(pickle.dumps(ev))
    for address in ("198.51.100.7", "198.51.100.8", "198.51.100.9"):
        assert back.names_for(address) == ev.names_for(address)
    for pattern in ("*.example.com", "edge.example.net", "sf.example.com", "*.example.net"):
        assert back.addresses_matching(pattern) == ev.addresses_matching(pattern)
    assert back.stats == ev.stats and back.stats["names_kept"] == 5 and back.stats["names_dropped"] == 1
    # Still bounded, and still one observation per (address, name, source).
    late = dns_response("y.example", [("y.example", "A", "192.0.2.9")])
    back.observe(udp(RESOLVER, CLIENT, 53, 50000, 4.0, payload=late))
    back.observe(tcp(CLIENT, "198.51.100.7", 50003, 443, "PA", 5.0, payload=client_hello(b"sf.example.com")))
    assert back.stats["names_kept"] == 5 and back.stats["names_dropped"] == 2
    assert names(back, "198.51.100.7").count(("sf.example.com", "sni")) == 1


def _evidence(max_names: int, lots: list[tuple[float, int, str, str]]) -> NameEvidence:
    """(ts, frame, name, address) each as a DNS answer, in order."""
    ev = NameEvidence(max_names=max_names)
    for ts, frame, name, address in lots:
        ev.observe(udp(RESOLVER, CLIENT, 53, 50000, ts, frame=frame,
                       payload=dns_response(name, [(name, "A", address)])))
    return ev


def _state(ev: NameEvidence) -> tuple[object, ...]:
    return ({a: ev.names_for(a) for a in ev._by_addr}, ev.stats, ev._by_name, ev._seen)


def test_merged_in_pieces_as_whole() -> None:
    # A worker sends its names in pieces of a few addresses (auditor/engine.py): merging its
    # counters, then the pieces in order, gives what merging it whole gave, up to the bound.
    mine = [(1.0, 2, "a.example", "192.0.2.1"), (1.5, 4, "b.example", "192.0.2.2")]
    theirs = [(2.0, 1, "b.example", "192.0.2.2"), (2.1, 2, "c.example", "192.0.2.1")] + [
        (2.0 + i / 10, 3 + i, f"h{i}.example", f"192.0.2.{10 + i % 4}") for i in range(9)]
    for bound in (4, 100):
        want = _evidence(bound, mine)
        want.merge(_evidence(100, theirs))
        for size in (1, 2, 100):
            got, part = _evidence(bound, mine), _evidence(100, theirs)
            pieces = part.split(size)
            assert not part._by_addr and not part.names_for("192.0.2.1")  # moved out at once
            got.merge(pickle.loads(pickle.dumps(part)))
            lots = [pickle.loads(pickle.dumps(p)) for p in pieces]
            assert len(lots) == -(-6 // size)  # 6 addresses
            for lot in lots:
                assert sum(lot.stats.values()) == 0  # the counters travel once, with the part
                got.merge(lot)
            assert _state(got) == _state(want)
        assert (want.stats["names_dropped"] > 0) == (bound == 4)
