"""Who refused a failing flow: the core records it (RST and its TTL, ICMP sender and code), the
responder's TTLs are kept per host, both merge exactly, and auditor/refusal.py judges them."""

from __future__ import annotations

import pickle
import random

import pytest

from auditor import conversations
from auditor.conversations import ConversationResult
from auditor.flow import Flow
from auditor.model import REFUSAL_OTHER, REFUSALS_MAX, FlowKey, PacketRecord, QuotedPacket, Refusal
from auditor.refusal import (
    PARTY_MIDDLEBOX,
    PARTY_OTHER,
    PARTY_RESPONDER,
    TTL_TOLERANCE,
    RefusedBy,
    refused_by,
    summary_text,
    ttl_check,
)
from tests.records import icmp, icmp_unreach, numbered, tcp, udp

# Each test runs with each build of the core (conftest.each_kernel): the Python modules, and their
# compiled builds; the core is reached through its package, which hands out the build that runs.
pytestmark = pytest.mark.usefixtures("each_kernel")

C, C2, S, FW = "10.0.0.1", "10.0.0.4", "10.0.0.2", "10.9.9.9"


def run(recs: list[PacketRecord]) -> ConversationResult:
    b = conversations.ConversationBuilder(keep_connections=True)
    b.feed_many(numbered(recs))
    return b.finish()


def accepted(server: str, port: int, ts: float, ttl: int, client: str = C, cport: int = 50000) -> list[PacketRecord]:
    """A connection the server accepts and closes, its packets with TTL ``ttl``."""
    return [tcp(client, server, cport, port, "S", ts, seq=100, ttl=60),
            tcp(server, client, port, cport, "SA", ts + 0.01, seq=900, ack=101, ttl=ttl),
            tcp(client, server, cport, port, "A", ts + 0.02, seq=101, ttl=60),
            tcp(server, client, port, cport, "FA", ts + 0.03, seq=901, ttl=ttl),
            tcp(client, server, cport, port, "FA", ts + 0.04, seq=101, ttl=60)]


def reset(server: str, port: int, ts: float, ttl: int, client: str = C, cport: int = 50001) -> list[PacketRecord]:
    """A SYN answered by a RST bearing the server's address, with TTL ``ttl``."""
    return [tcp(client, server, cport, port, "S", ts, seq=200, ttl=60),
            tcp(server, client, port, cport, "RA", ts + 0.01, ack=201, ttl=ttl)]


def judged(res: ConversationResult, key: FlowKey) -> list[RefusedBy]:
    return refused_by(res.flows[key], res.host_ttls)


def test_a_rst_with_the_responders_ttl_is_the_responders() -> None:
    res = run([*accepted(S, 443, 1.0, 120), *reset(S, 8080, 2.0, 120)])
    flow = res.flows[FlowKey(C, S, "tcp", 8080)]
    assert flow.rejected == 1
    assert flow.refusals == {Refusal("rst", S, -1, -1, 120, True): 1}
    assert res.host_ttls == {S: 1 << 120}  # its SYN-ACK and FIN; never the client's packets
    (e,) = judged(res, FlowKey(C, S, "tcp", 8080))
    assert (e.kind, e.address, e.party, e.ttl, e.ttl_check, e.connections) == ("rst", S, PARTY_RESPONDER, 120,
                                                                                "same", 1)
    assert e.text == f"RST from the responder {S} (TTL 120, as on its SYN-ACKs and FINs)"
    assert refused_by(res.flows[FlowKey(C, S, "tcp", 443)], res.host_ttls) == []


def test_a_rst_with_a_foreign_ttl_is_flagged_as_a_middlebox() -> None:
    # An IPS two hops nearer the capture point, with initial TTL 255, resets in the server's name.
    res = run([*accepted(S, 443, 1.0, 120), *reset(S, 1494, 2.0, 253)])
    (e,) = judged(res, FlowKey(C, S, "tcp", 1494))
    assert (e.kind, e.address, e.party, e.ttl, e.ttl_check) == ("rst", S, PARTY_MIDDLEBOX, 253, "differs")
    assert e.party == "likely middlebox (TTL differs)"
    assert "253" in e.text and "120" in e.text and "middlebox" in e.text


@pytest.mark.parametrize(("ttl", "check"), [(118, "differs"), (119, "same"), (120, "same"), (121, "same"),
                                            (122, "differs"), (0, "differs"), (255, "differs")])
def test_a_difference_beyond_the_tolerance_counts(ttl: int, check: str) -> None:
    assert TTL_TOLERANCE == 1
    res = run([*accepted(S, 443, 1.0, 120), *reset(S, 8080, 2.0, ttl)])
    (e,) = judged(res, FlowKey(C, S, "tcp", 8080))
    assert e.ttl_check == check
    assert e.party == (PARTY_RESPONDER if check == "same" else PARTY_MIDDLEBOX)


def test_ttl_check_edges() -> None:
    assert ttl_check(0, 1 << 1) == "same"
    assert ttl_check(255, 1 << 254) == "same"
    assert ttl_check(64, (1 << 128) | (1 << 64)) == "same"  # one of the host's paths
    assert ttl_check(64, 0) == "unknown"
    assert ttl_check(-1, 1 << 64) == "unknown"


def test_nothing_to_compare_with_is_unknown() -> None:
    # The host only ever reset: its RSTs' TTLs are not its own TTLs to compare with.
    res = run([*reset(S, 8080, 1.0, 250), *reset(S, 8081, 2.0, 250, cport=50002)])
    assert res.host_ttls == {}
    for port in (8080, 8081):
        (e,) = judged(res, FlowKey(C, S, "tcp", port))
        assert (e.party, e.ttl, e.ttl_check) == (PARTY_RESPONDER, 250, "unknown")
        assert "no SYN-ACK or FIN of it to compare with" in e.text


def test_the_comparison_uses_the_whole_run() -> None:
    # The SYN-ACK comes after the RST, and from a connection with another client.
    res = run([*reset(S, 8080, 1.0, 250), *accepted(S, 443, 2.0, 120, client=C2)])
    (e,) = judged(res, FlowKey(C, S, "tcp", 8080))
    assert e.ttl_check == "differs"


def test_ipv6_hop_limit() -> None:
    c6, s6 = "fd00::1", "fd00::2"
    res = run([*accepted(s6, 443, 1.0, 64, client=c6), *reset(s6, 8080, 2.0, 255, client=c6)])
    (e,) = judged(res, FlowKey(c6, s6, "tcp", 8080))
    assert (e.party, e.ttl, e.ttl_check) == (PARTY_MIDDLEBOX, 255, "differs")
    assert "hop limit 255" in e.text


def test_only_rejected_connections_name_a_refuser() -> None:
    # Reset after the handshake (RSTR) is an established connection; a RST from the initiator is not
    # the responder's refusal.
    res = run([tcp(C, S, 50000, 443, "S", 1.0, seq=100), tcp(S, C, 443, 50000, "SA", 1.01, seq=900, ttl=120),
               tcp(C, S, 50000, 443, "A", 1.02, seq=101), tcp(S, C, 443, 50000, "R", 1.03, seq=901, ttl=120),
               tcp(C, S, 50001, 443, "S", 2.0, seq=100), tcp(C, S, 50001, 443, "R", 2.01, seq=101)])
    flow = res.flows[FlowKey(C, S, "tcp", 443)]
    assert (flow.established, flow.rejected, flow.refusals) == (1, 0, None)


def test_icmp_administratively_prohibited_from_a_third_host() -> None:
    syn = tcp(C, S, 50000, 1494, "S", 1.0, seq=100)
    res = run([syn, icmp_unreach(FW, C, 1.01, quoting=syn, code=13)])
    flow = res.flows[FlowKey(C, S, "tcp", 1494)]
    assert flow.rejected == 1
    assert flow.refusals == {Refusal("icmp", FW, 3, 13, -1, False): 1}
    assert res.connections[0].refusal == Refusal("icmp", FW, 3, 13, -1, False)
    (e,) = refused_by(flow, res.host_ttls)
    assert (e.kind, e.address, e.party, e.icmp_type, e.icmp_code, e.ttl, e.ttl_check) == (
        "icmp", FW, PARTY_OTHER, 3, 13, None, None)
    assert e.text == f"ICMP communication administratively prohibited from {FW} (not the responder)"


def test_icmp_port_unreachable_from_the_responder() -> None:
    q = udp(C, S, 50000, 389, 1.0, payload=b"x")
    res = run([q, icmp_unreach(S, C, 1.01, quoting=q)])
    (e,) = refused_by(res.flows[FlowKey(C, S, "udp", 389)], res.host_ttls)
    assert (e.kind, e.address, e.party, e.icmp_type, e.icmp_code) == ("icmp", S, PARTY_RESPONDER, 3, 3)
    assert e.text == f"ICMP port unreachable from the responder {S}"


@pytest.mark.parametrize(("code", "words"), [(0, "no route to destination"),
                                             (1, "communication administratively prohibited"),
                                             (3, "address unreachable"), (4, "port unreachable"),
                                             (5, "source address failed ingress/egress policy"),
                                             (6, "reject route to destination"), (99, "type 1 code 99")])
def test_icmpv6_codes(code: int, words: str) -> None:
    q = udp("fd00::1", "fd00::2", 50000, 1494, 1.0, payload=b"x")
    quoted = QuotedPacket(q.src, q.dst, q.proto, q.sport, q.dport)
    res = run([q, icmp("fd00::fe", "fd00::1", 1, 1.01, code=code, quoted=quoted)])
    (e,) = refused_by(res.flows[FlowKey("fd00::1", "fd00::2", "udp", 1494)], res.host_ttls)
    assert e.party == PARTY_OTHER and (e.icmp_type, e.icmp_code) == (1, code)
    assert e.text.startswith("ICMPv6 ") and words in e.text and "fd00::fe (not the responder)" in e.text


@pytest.mark.parametrize(("code", "words"), [(0, "net unreachable"), (1, "host unreachable"),
                                             (9, "network administratively prohibited"),
                                             (10, "host administratively prohibited")])
def test_icmpv4_codes(code: int, words: str) -> None:
    q = udp(C, S, 50000, 1494, 1.0, payload=b"x")
    res = run([q, icmp_unreach(FW, C, 1.01, quoting=q, code=code)])
    (e,) = refused_by(res.flows[FlowKey(C, S, "udp", 1494)], res.host_ttls)
    assert e.text == f"ICMP {words} from {FW} (not the responder)"


def test_the_first_icmp_error_names_the_refuser_and_counts_stay_per_connection() -> None:
    recs: list[PacketRecord] = []
    for i in range(3):
        syn = tcp(C, S, 50000 + i, 1494, "S", 1.0 + i, seq=100)
        recs += [syn, icmp_unreach(FW, C, 1.01 + i, quoting=syn, code=13),
                 icmp_unreach(S, C, 1.02 + i, quoting=syn, code=3)]
    recs += reset(S, 1494, 10.0, 128, cport=50009)
    res = run(recs)
    flow = res.flows[FlowKey(C, S, "tcp", 1494)]
    assert flow.rejected == 4 and sum(flow.refusals.values()) == 4  # type: ignore[union-attr]
    entries = refused_by(flow, res.host_ttls)
    assert [(e.kind, e.address, e.connections) for e in entries] == [("icmp", FW, 3), ("rst", S, 1)]
    assert summary_text([{"text": e.text, "connections": e.connections} for e in entries]) == (
        f"ICMP communication administratively prohibited from {FW} (not the responder), 3 connections; "
        f"RST from the responder {S} (TTL 128; no SYN-ACK or FIN of it to compare with)")


# ---- merging ------------------------------------------------------------------------------------

def _random_refusals(rng: random.Random, n: int) -> list[Refusal]:
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            out.append(Refusal("rst", S, -1, -1, rng.choice([64, 120, 121, 250, -1]), True))
        else:
            out.append(Refusal("icmp", f"10.9.9.{rng.randrange(12)}", 3, rng.choice([3, 13]), -1, False))
    return out


def _flow_of(refusals: list[Refusal]) -> Flow:
    f = Flow(FlowKey(C, S, "tcp", 1494))
    for r in refusals:
        f.add("tcp", "REJ", "Sr", 1, 44, 1, 40, 1.0, 1.1, (0, 1), "syn", 0, False, frozenset(), r)
    return f


def _state(f: Flow) -> tuple[object, ...]:
    return f.connections, f.rejected, f.refusals


@pytest.mark.parametrize("seed", range(20))
def test_flow_refusals_merge_exactly_and_associatively(seed: int) -> None:
    rng = random.Random(seed)
    refusals = _random_refusals(rng, rng.randrange(1, 60))
    whole = _flow_of(refusals)
    assert whole.refusals is not None
    assert len(whole.refusals) <= REFUSALS_MAX + 1
    assert sum(whole.refusals.values()) == whole.rejected == len(refusals)
    kept = sorted(set(refusals))[:REFUSALS_MAX]
    assert {r: n for r, n in whole.refusals.items() if r != REFUSAL_OTHER} == {r: refusals.count(r) for r in kept}
    # Cut the connections into three parts, in a shuffled order, and merge them both ways.
    shuffled = refusals[:]
    rng.shuffle(shuffled)
    i, j = sorted(rng.sample(range(len(shuffled) + 1), 2))
    parts = [shuffled[:i], shuffled[i:j], shuffled[j:]]
    a, b, c = (_flow_of(p) for p in parts)
    a.merge(b)
    a.merge(c)
    x, y, z = (_flow_of(p) for p in parts)
    y.merge(z)
    x.merge(y)
    z2, x2, y2 = _flow_of(parts[2]), _flow_of(parts[0]), _flow_of(parts[1])
    z2.merge(x2)
    z2.merge(y2)
    assert _state(a) == _state(x) == _state(z2) == _state(whole)
    assert _state(pickle.loads(pickle.dumps(whole))) == _state(whole)  # a share's flows travel pickled


def _part(recs: list[PacketRecord]) -> ConversationResult:
    b = conversations.ConversationBuilder()
    b.feed_many(recs)
    return b.finish()


def test_results_merge_associatively() -> None:
    def parts() -> list[ConversationResult]:
        return [_part(accepted(S, 443, 1.0, 120)), _part(reset(S, 8080, 2.0, 250)),
                _part([*accepted(S, 445, 3.0, 121, client=C2), *reset(S, 8080, 4.0, 120, cport=50007)])]

    a, b, c = parts()
    a.merge(b)
    a.merge(c)
    x, y, z = parts()
    y.merge(z)
    x.merge(y)
    assert a.host_ttls == x.host_ttls == {S: (1 << 120) | (1 << 121)}
    assert {k: _state(f) for k, f in a.flows.items()} == {k: _state(f) for k, f in x.flows.items()}
    key = FlowKey(C, S, "tcp", 8080)
    assert [(e.ttl, e.ttl_check, e.connections) for e in refused_by(a.flows[key], a.host_ttls)] == [
        (120, "same", 1), (250, "differs", 1)]


def test_the_hosts_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from auditor.capture import native

    monkeypatch.setattr(native.KERNEL.of("auditor.conversations.builder"), "HOST_TTLS_MAX", 2)
    recs = [p for i in range(4) for p in accepted(f"10.0.1.{i}", 443, 1.0 + i, 120)]
    res = run(recs)
    assert len(res.host_ttls) == 2 and res.overflowed
