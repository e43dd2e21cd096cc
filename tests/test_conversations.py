"""Conversation core: Zeek conn_state/history, direction evidence, reuse, timeouts, ICMP, bounds."""

from __future__ import annotations

import pytest

from auditor import conversations
from auditor.capture import native
from auditor.conversations import SWEEP_EVERY, ConversationResult
from auditor.model import Connection, FlowKey, Outcome, PacketRecord, SharedCounts
from tests.records import (
    handshake,
    icmp,
    icmp_echo,
    icmp_unreach,
    numbered,
    other,
    tcp,
    udp,
)

# Each test runs with each build of the core (conftest.each_kernel): the Python modules, and their
# compiled builds; the core is reached through its package, which hands out the build that runs.
pytestmark = pytest.mark.usefixtures("each_kernel")

C, S = "10.0.0.1", "10.0.0.2"


def run(recs: list[PacketRecord], **kw: object) -> ConversationResult:
    b = conversations.ConversationBuilder(keep_connections=True, **kw)  # type: ignore[arg-type]
    b.feed_many(numbered(recs))
    return b.finish()


def one(recs: list[PacketRecord], **kw: object) -> Connection:
    res = run(recs, **kw)
    assert len(res.connections) == 1, res.connections
    return res.connections[0]


def t(src: str, flags: str, ts: float, *, seq: int = 0, payload: bytes = b"") -> PacketRecord:
    """A packet of the C:51000 <-> S:443 conversation, from ``src``."""
    if src == C:
        return tcp(C, S, 51000, 443, flags, ts, seq=seq, payload=payload)
    return tcp(S, C, 443, 51000, flags, ts, seq=seq, payload=payload)


HS = [t(C, "S", 1.0, seq=100), t(S, "SA", 1.1, seq=900), t(C, "A", 1.2, seq=101)]

# (name, packets, conn_state, history) — each Zeek conn_state from a tiny sequence.
STATE_CASES = [
    ("S0", [t(C, "S", 1.0, seq=100)], "S0", "S"),
    ("S0-retransmit", [t(C, "S", 1.0, seq=100), t(C, "S", 2.0, seq=100)], "S0", "S"),
    ("REJ", [t(C, "S", 1.0, seq=100), t(S, "RA", 1.1)], "REJ", "Sr"),
    ("S1", [*HS, t(C, "PA", 1.3, payload=b"x")], "S1", "ShAD"),
    ("SF", [*HS, t(C, "PA", 1.3, payload=b"x"), t(S, "PA", 1.4, payload=b"y"),
            t(C, "FA", 1.5, seq=102), t(S, "FA", 1.6, seq=901), t(C, "A", 1.7)], "SF", "ShADdFf"),
    ("S2", [*HS, t(C, "FA", 1.5, seq=101)], "S2", "ShAF"),
    ("S3", [*HS, t(S, "FA", 1.5, seq=901)], "S3", "ShAf"),
    ("RSTO", [*HS, t(C, "RA", 1.5, seq=101)], "RSTO", "ShAR"),
    ("RSTR", [*HS, t(S, "R", 1.5, seq=901)], "RSTR", "ShAr"),
    ("RSTOS0", [t(C, "S", 1.0, seq=100), t(C, "R", 1.1, seq=101)], "RSTOS0", "SR"),
    ("RSTRH", [t(S, "SA", 1.0, seq=900), t(S, "R", 1.1, seq=901)], "RSTRH", "^hr"),
    ("SH", [t(C, "S", 1.0, seq=100), t(C, "F", 1.1, seq=101)], "SH", "SF"),
    ("SHR", [t(S, "SA", 1.0, seq=900), t(S, "FA", 1.1, seq=901)], "SHR", "^hf"),
    ("OTH", [t(C, "PA", 1.0, payload=b"x"), t(S, "PA", 1.1, payload=b"y")], "OTH", "Dd"),
    ("SF-midstream", [t(C, "PA", 1.0, payload=b"x"), t(C, "FA", 1.1), t(S, "FA", 1.2)], "SF", "DFf"),
]


@pytest.mark.parametrize(("name", "recs", "state", "history"), STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_zeek_conn_state_and_history(name: str, recs: list[PacketRecord], state: str, history: str) -> None:
    c = one(recs)
    assert (c.conn_state, c.history) == (state, history)
    assert (c.orig_h, c.orig_p, c.resp_h, c.resp_p) == (C, 51000, S, 443)


def test_history_repeats_fin_with_new_sequence_only() -> None:
    recs = [*HS, t(C, "FA", 1.5, seq=101), t(C, "FA", 1.6, seq=101), t(C, "FA", 1.7, seq=150)]
    assert one(recs).history == "ShAFF"


def test_bad_checksum_counted_and_processed() -> None:
    recs = [*HS]
    recs[2] = tcp(C, S, 51000, 443, "A", 1.2, checksum_bad=True)
    res = run(recs)
    c = res.connections[0]
    assert c.bad_checksums == 1 and c.conn_state == "S1" and c.history == "ShCA"
    assert res.stats.bad_checksums == 1


def test_bytes_are_ip_bytes_per_direction() -> None:
    c = one(handshake(C, S, 51000, 443, 1.0))
    assert (c.orig_pkts, c.resp_pkts) == (5, 3)
    assert c.orig_bytes == 4 * 40 + 45 and c.resp_bytes == 2 * 40 + 46


# ---- direction evidence -------------------------------------------------------------------------


def test_evidence_syn() -> None:
    c = one([t(C, "S", 1.0)])
    assert (c.orig_h, c.direction_evidence) == (C, "syn")


def test_evidence_synack_first_packet() -> None:
    c = one([t(S, "SA", 1.0), t(C, "A", 1.1)])
    assert (c.orig_h, c.resp_p, c.direction_evidence) == (C, 443, "synack")
    assert c.history == "^hA" and c.conn_state == "S1"


def test_late_syn_flips_and_upgrades() -> None:
    # Two capture interfaces merged: the SYN-ACK shows up first, then the SYN.
    c = one([t(S, "SA", 1.0, seq=900), t(C, "S", 1.0, seq=100), t(C, "A", 1.1), t(S, "FA", 1.2),
             t(C, "FA", 1.3)])
    assert (c.orig_h, c.direction_evidence, c.conn_state) == (C, "syn", "SF")


def test_late_syn_flips_first_packet_guess() -> None:
    # Both ports registered, no catalog: the first packet (an ACK from the server) guesses wrong.
    recs = [tcp(S, C, 3389, 3390, "A", 1.0), tcp(C, S, 3390, 3389, "S", 1.01, seq=7)]
    c = one(recs)
    assert (c.orig_h, c.orig_p, c.direction_evidence) == (C, 3390, "syn")
    assert c.history.startswith("a^") or "^" in c.history


def test_evidence_protocol_dns_reply_first() -> None:
    reply = b"\x12\x34\x81\x80" + b"\x00" * 8
    c = one([udp("10.0.0.53", C, 53, 53000, 1.0, payload=reply)])
    assert (c.orig_h, c.resp_h, c.resp_p, c.direction_evidence) == (C, "10.0.0.53", 53, "protocol")
    assert c.conn_state == "SHR" and c.history == "^d"


def test_evidence_protocol_ntp_server_reply() -> None:
    c = one([udp(S, C, 123, 123, 1.0, payload=bytes([0x24]) + b"\x00" * 47)])
    assert (c.orig_h, c.resp_h, c.direction_evidence) == (C, S, "protocol")


def test_evidence_protocol_dhcp_reply() -> None:
    c = one([udp(S, "255.255.255.255", 67, 68, 1.0, payload=b"\x02" + b"\x00" * 240)])
    assert (c.resp_h, c.resp_p, c.direction_evidence) == (S, 67, "protocol")


def test_evidence_catalog_port() -> None:
    # First packet is from the ICA server (1494) to a client port 50000: catalog says 1494 serves.
    recs = [tcp(S, C, 1494, 50000, "PA", 1.0, payload=b"x")]
    c = one(recs, server_ports=frozenset({("tcp", 1494)}))
    assert (c.orig_h, c.resp_p, c.direction_evidence) == (C, 1494, "catalog_port")
    # Dynamic-range catalog ports are no evidence, whatever the catalog says.
    c = one([tcp(S, C, 50000, 1494, "PA", 1.0)], server_ports=frozenset({("tcp", 50000)}))
    assert c.direction_evidence == "wellknown_port" and c.resp_p == 1494


def test_evidence_wellknown_port() -> None:
    c = one([tcp(S, C, 443, 51000, "PA", 1.0, payload=b"x")])
    assert (c.orig_h, c.resp_p, c.direction_evidence) == (C, 443, "wellknown_port")


def test_evidence_first_packet() -> None:
    c = one([tcp(S, C, 40000, 41000, "PA", 1.0, payload=b"x"), tcp(C, S, 41000, 40000, "A", 1.1)])
    assert (c.orig_h, c.orig_p, c.direction_evidence) == (S, 40000, "first_packet")


def test_inferred_flag_on_flow() -> None:
    res = run([tcp(S, C, 443, 51000, "PA", 1.0, payload=b"x"), t(C, "S", 5.0)])
    flows = {k.port: f for k, f in res.flows.items()}
    assert flows[443].direction_evidence == {"wellknown_port": 1, "syn": 1}
    assert not flows[443].inferred


# ---- splitting connections ----------------------------------------------------------------------


def test_port_reuse_after_close_is_new_connection() -> None:
    first = handshake(C, S, 51000, 443, 1.0, isn=100)
    second = handshake(C, S, 51000, 443, 2.0, isn=90000)
    res = run(first + second)
    assert [c.conn_state for c in res.connections] == ["SF", "SF"]
    assert res.flows[FlowKey(C, S, "tcp", 443)].connections == 2
    assert res.stats.port_reuse == 1


def test_syn_with_new_isn_on_s0_is_new_connection() -> None:
    res = run([t(C, "S", 1.0, seq=100), t(C, "S", 3.0, seq=100), t(C, "S", 40.0, seq=555)])
    assert [c.orig_pkts for c in res.connections] == [2, 1]


def test_rejected_retries_are_separate_connections() -> None:
    recs = [t(C, "S", 1.0, seq=1), t(S, "RA", 1.0), t(C, "S", 1.5, seq=1), t(S, "RA", 1.5)]
    res = run(recs)
    assert [c.conn_state for c in res.connections] == ["REJ", "REJ"]


def test_idle_timeout_starts_new_connection() -> None:
    res = run([udp(C, S, 50000, 514, 1.0), udp(C, S, 50000, 514, 30.0), udp(C, S, 50000, 514, 200.0)])
    assert [c.orig_pkts for c in res.connections] == [2, 1]
    assert res.stats.idle_splits == 1
    res = run([*HS, t(C, "PA", 500.0, payload=b"x")], tcp_idle_timeout=300.0)
    assert [c.conn_state for c in res.connections] == ["S1", "OTH"]


def test_sweep_closes_idle_connections_and_memory_follows_live() -> None:
    b = conversations.ConversationBuilder()
    for i in range(20_000):
        b.feed(udp(C, S, 1024 + i % 60000, 514, float(i)))
    # One packet a second and a 60 s UDP timeout: live = 60 + what arrived since the last sweep.
    assert b.live_connections <= SWEEP_EVERY + 61
    res = b.finish()
    assert res.stats.connections == 20_000



def test_closed_connections_leave_the_table_after_their_linger() -> None:
    # Each connection ends with FIN both ways, so it lingers CLOSE_LINGER (5 s), not its 300 s TCP
    # timeout: at one connection a second, about 5 (plus a sweep's worth) stay live.
    b = conversations.ConversationBuilder()
    for i in range(3 * SWEEP_EVERY):
        sp, ts = 1024 + i % 60000, float(i)
        for rec in (tcp(C, S, sp, 443, "S", ts), tcp(S, C, 443, sp, "SA", ts + 0.01),
                    tcp(C, S, sp, 443, "FA", ts + 0.02), tcp(S, C, 443, sp, "FA", ts + 0.03)):
            b.feed(rec)
    assert b.live_connections <= SWEEP_EVERY // 4 + 6
    assert b.finish().stats.connections == 3 * SWEEP_EVERY


def test_a_closed_connection_leaves_within_its_linger_though_its_timeout_was_long() -> None:
    # A new TCP connection waits for the sweep in the long queue (it cannot expire for 300 s); once
    # it is closed its timeout is CLOSE_LINGER, and it moves to the short queue: the sweep that the
    # last packet below runs (every SWEEP_EVERY records) leaves only the last ~5 s of connections.
    b = conversations.ConversationBuilder()
    for i in range(SWEEP_EVERY // 4):
        sp, ts = 1024 + i, float(i)
        for rec in (tcp(C, S, sp, 443, "S", ts), tcp(S, C, 443, sp, "SA", ts + 0.01),
                    tcp(C, S, sp, 443, "FA", ts + 0.02), tcp(S, C, 443, sp, "FA", ts + 0.03)):
            b.feed(rec)
    assert b.live_connections <= 7
    assert b.finish().stats.connections == SWEEP_EVERY // 4


def test_a_connection_moved_out_of_the_long_queue_holds_no_other_past_its_expiry() -> None:
    # A busy TCP connection waits in the sweep's long queue; when it closes it moves to the short
    # one, and the entry it leaves in the long queue must not hold the connections queued behind it.
    b = conversations.ConversationBuilder()
    other_host = "10.0.0.9"

    def sweep_at(ts: float) -> None:  # SWEEP_EVERY packets of one UDP conversation: one sweep at ts
        for _ in range(SWEEP_EVERY):
            b.feed(udp(other_host, S, 5000, 514, ts))

    b.feed(udp(other_host, S, 5000, 514, 0.0))
    for rec in (tcp(C, S, 40000, 443, "S", 0.0), tcp(S, C, 443, 40000, "SA", 0.01), tcp(C, S, 40000, 443, "A", 0.02)):
        b.feed(rec)
    for i in range(1, 8):
        b.feed(udp(C, S, 1000 + i, 53, float(i)))
    b.feed(tcp(C, S, 40000, 443, "PA", 7.5, payload=b"x"))
    sweep_at(8.0)  # the TCP connection, busy, goes to the long queue, behind the first seven
    for i in range(9, 21):
        b.feed(udp(C, S, 1000 + i, 53, float(i)))  # the next twelve, behind it
    b.feed(tcp(C, S, 40000, 443, "FA", 30.0))
    b.feed(tcp(S, C, 443, 40000, "FA", 30.01))
    sweep_at(40.0)  # closed at 30: gone at its linger
    sweep_at(85.0)  # all nineteen expired by 80
    assert b.live_connections == 1  # the sweeping conversation's own
    assert b.finish().stats.connections == 1 + 1 + 19


def test_eviction_closes_the_idlest_connection() -> None:
    b = conversations.ConversationBuilder(max_live=3, keep_connections=True)
    for port, ts in ((1001, 1.0), (1002, 2.0), (1003, 3.0)):
        b.feed(udp(C, S, port, 514, ts))
    b.feed(udp(C, S, 1001, 514, 4.0))  # 1001 is busy again: 1002 is now the idlest
    b.feed(udp(C, S, 1004, 514, 5.0))
    res = b.finish()
    assert res.stats.evicted_live == 1
    evicted = min(res.connections, key=lambda c: c.last_seen)
    assert (evicted.orig_p, evicted.last_seen) == (1002, 2.0)
    assert sorted(c.orig_p for c in res.connections) == [1001, 1002, 1003, 1004]

# ---- UDP and ICMP -------------------------------------------------------------------------------


def test_udp_states() -> None:
    assert one([udp(C, S, 50000, 514, 1.0, payload=b"x")]).conn_state == "S0"
    c = one([udp(C, S, 50000, 161, 1.0, payload=b"x"), udp(S, C, 161, 50000, 1.1, payload=b"y")])
    assert (c.conn_state, c.history) == ("SF", "Dd")


def test_host_talking_to_itself_on_one_port_is_kept() -> None:
    """Both direction keys of 127.0.0.1:500 <-> 127.0.0.1:500 are the same key: the connection must
    still be closed into the result (it used to vanish at finish), with every packet counted once."""
    recs = [udp("127.0.0.1", "127.0.0.1", 500, 500, 1.0, payload=b"x"),
            udp("127.0.0.1", "127.0.0.1", 500, 500, 1.1, payload=b"y")]
    c = one(recs)
    assert (c.orig_h, c.orig_p, c.resp_h, c.resp_p) == ("127.0.0.1", 500, "127.0.0.1", 500)
    assert (c.orig_pkts, c.resp_pkts) == (2, 0)
    b = conversations.ConversationBuilder(keep_connections=True)
    for r in numbered(recs):
        b.feed(r)
    assert [(x.orig_pkts, x.resp_pkts) for x in b.finish().connections] == [(2, 0)]


def test_icmp_echo_pairing() -> None:
    res = run([icmp_echo(C, S, 1.0, ident=7), icmp_echo(S, C, 1.1, reply=True, ident=7),
               icmp_echo(C, S, 2.0, ident=8)])
    by_id = {c.orig_p: c for c in res.connections}
    assert by_id[7].resp_pkts == 1 and by_id[7].resp_p == 8 and by_id[7].conn_state == "SF"
    assert by_id[8].resp_pkts == 0
    flow = res.flows[FlowKey(C, S, "icmp", 8)]
    assert flow.connections == 2 and flow.outcome is Outcome.ESTABLISHED


def test_icmpv6_echo_reply_first() -> None:
    c = one([icmp_echo("2001:db8::2", "2001:db8::1", 1.0, reply=True)])
    assert (c.orig_h, c.resp_h, c.resp_p, c.direction_evidence) == ("2001:db8::1", "2001:db8::2", 128,
                                                                       "protocol")


def test_icmp_unreachable_refuses_udp() -> None:
    q = udp(C, S, 50000, 1604, 1.0, payload=b"x")
    res = run([q, icmp_unreach(S, C, 1.01, quoting=q)])
    assert len(res.connections) == 1
    c = res.connections[0]
    assert c.icmp_refused and c.conn_state == "REJ" and c.resp_pkts == 0
    assert res.flows[FlowKey(C, S, "udp", 1604)].outcome is Outcome.REJECTED
    assert res.stats.icmp_errors_matched == 1 and res.stats.icmp_refusals == 1


def test_icmp_unreachable_refuses_tcp_from_router() -> None:
    q = t(C, "S", 1.0, seq=5)
    res = run([q, icmp_unreach("10.9.9.9", C, 1.01, quoting=q, code=13)])
    c = res.connections[0]
    assert c.icmp_refused and c.conn_state == "S0"
    assert res.flows[FlowKey(C, S, "tcp", 443)].outcome is Outcome.REJECTED


def test_frag_needed_is_not_refusal() -> None:
    q = t(C, "S", 1.0)
    res = run([q, icmp_unreach("10.9.9.9", C, 1.01, quoting=q, code=4)])
    assert not res.connections[0].icmp_refused
    assert res.stats.icmp_errors_matched == 1


def test_icmp_error_unmatched_is_own_connection() -> None:
    q = udp(C, S, 50000, 1604, 1.0)
    res = run([icmp_unreach(S, C, 1.01, quoting=q)])
    assert res.stats.icmp_errors_unmatched == 1
    assert FlowKey(S, C, "icmp", 3) in res.flows


def test_other_icmp_by_type() -> None:
    res = run([icmp(C, S, 13, 1.0), icmp(C, S, 13, 1.5), icmp(C, S, 10, 1.6)])
    assert {(c.resp_p, c.orig_pkts) for c in res.connections} == {(13, 2), (10, 1)}


def test_other_protocols_counted() -> None:
    res = run([other(C, S, 50, 1.0), other(C, S, 50, 1.1), other(C, S, 47, 1.2)])
    assert res.stats.other_protocols == {"ipproto:50": 2, "ipproto:47": 1}
    assert not res.flows and res.stats.packets == 3


# ---- outcomes -----------------------------------------------------------------------------------


def test_outcomes() -> None:
    res = run([
        *handshake(C, S, 51000, 443, 1.0),
        tcp(C, S, 51001, 80, "S", 2.0), tcp(S, C, 80, 51001, "RA", 2.0),
        tcp(C, S, 51002, 8080, "S", 3.0),
        udp(C, S, 50000, 514, 4.0, payload=b"<13>hi"),
    ])
    outcomes = {k.port: f.outcome for k, f in res.flows.items()}
    assert outcomes == {443: Outcome.ESTABLISHED, 80: Outcome.REJECTED, 8080: Outcome.UNANSWERED,
                        514: Outcome.ONE_WAY}


def test_midstream_session_reset_by_server_is_established() -> None:
    # A long ICA session captured mid-way, ended by the server's RST: Zeek says RSTRH.
    res = run([tcp(C, S, 51000, 1494, "PA", 1.0, payload=b"x"),
               tcp(S, C, 1494, 51000, "PA", 1.1, payload=b"y"), tcp(S, C, 1494, 51000, "RA", 1.2)])
    assert res.connections[0].conn_state == "RSTRH"
    assert res.flows[FlowKey(C, S, "tcp", 1494)].outcome is Outcome.ESTABLISHED


# ---- bounds -------------------------------------------------------------------------------------


def test_syn_flood_is_bounded_and_summarised() -> None:
    b = conversations.ConversationBuilder(max_flows=1000, max_live=5000)
    for i in range(50_000):
        src = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        b.feed(tcp(src, S, 1024 + i % 50000, 80, "S", 1.0 + i * 1e-5, frame=i + 1))
        assert b.live_connections <= 5000
    res = b.finish()
    assert len(res.flows) <= 1001
    summary = res.flows[FlowKey("*", S, "tcp", 80)]
    assert summary.summarised and summary.connections == 49_000 and summary.unanswered == 49_000
    assert res.stats.summarised_flows == 1
    assert res.stats.summarised_connections == 49_000 and res.stats.summarised_packets == 49_000
    assert res.stats.evicted_live == 45_000 and res.stats.connections == 50_000
    assert sum(f.connections for f in res.flows.values()) == 50_000


def test_merge_combines_flows_and_stats() -> None:
    a = run(handshake(C, S, 51000, 443, 1.0))
    b = run([*handshake(C, S, 51001, 443, 2.0), other(C, S, 50, 3.0)])
    a.merge(b)
    f = a.flows[FlowKey(C, S, "tcp", 443)]
    assert f.connections == 2 and f.first_seen == 1.0
    assert a.stats.packets == 17 and a.stats.other_protocols == {"ipproto:50": 1}


def test_tftp_transfer_from_new_server_port_joins_its_request() -> None:
    """RFC 1350: the server answers a read request from a fresh port; the transfer is the request's."""
    b = conversations.ConversationBuilder(keep_connections=True)
    rrq = b"\x00\x01ardbp32.bin\x00octet\x00"
    b.feed(udp("10.30.0.50", "10.30.0.5", 49200, 69, 1.0, 1, rrq))
    for i in range(3):
        b.feed(udp("10.30.0.5", "10.30.0.50", 51000, 49200, 1.1 + i, 2 + 2 * i, b"\x00\x03" + bytes(514)))
        b.feed(udp("10.30.0.50", "10.30.0.5", 49200, 51000, 1.15 + i, 3 + 2 * i, b"\x00\x04\x00\x01"))
    res = b.finish()
    assert list(res.flows) == [FlowKey("10.30.0.50", "10.30.0.5", "udp", 69)]
    flow = res.flows[FlowKey("10.30.0.50", "10.30.0.5", "udp", 69)]
    assert flow.outcome == Outcome.ESTABLISHED
    assert (flow.orig_pkts, flow.resp_pkts) == (4, 3)
    assert res.stats.tftp_transfers == 1
    # An unrelated datagram from the server to another client port is its own conversation.
    b2 = conversations.ConversationBuilder()
    b2.feed(udp("10.30.0.50", "10.30.0.5", 49200, 69, 1.0, 1, rrq))
    b2.feed(udp("10.30.0.5", "10.30.0.50", 51000, 49999, 1.1, 2, b"x"))
    assert len(b2.finish().flows) == 2


def test_broadcast_dhcp_replies_join_their_request_and_name_the_server() -> None:
    """RFC 2131 §4.1: DISCOVER from 0.0.0.0 to 255.255.255.255, OFFER from the server to the broadcast
    address, matched by xid: one conversation, client -> server udp/67."""
    xid = b"\x5a\x3c\x91\xe7"
    req = b"\x01\x01\x06\x00" + xid + bytes(232)
    rep = b"\x02\x01\x06\x00" + xid + bytes(232)
    other = b"\x02\x01\x06\x00" + b"\x00\x00\x00\x01" + bytes(232)
    b = conversations.ConversationBuilder()
    b.feed(udp("0.0.0.0", "255.255.255.255", 68, 67, 1.0, 1, req))
    b.feed(udp("10.30.0.5", "255.255.255.255", 67, 68, 1.1, 2, rep))
    b.feed(udp("0.0.0.0", "255.255.255.255", 68, 67, 1.2, 3, req))
    b.feed(udp("10.30.0.5", "255.255.255.255", 67, 68, 1.3, 4, rep))
    b.feed(udp("10.30.0.6", "255.255.255.255", 67, 68, 1.4, 5, other))  # another transaction: its own
    res = b.finish()
    flow = res.flows[FlowKey("0.0.0.0", "10.30.0.5", "udp", 67)]
    assert (flow.orig_pkts, flow.resp_pkts) == (2, 2) and flow.outcome == Outcome.ESTABLISHED
    assert res.stats.dhcp_replies_joined == 1
    assert len(res.flows) == 2


def test_a_dhcp_client_retrying_with_a_new_xid_is_answered_on_its_connection() -> None:
    """A DISCOVER left unanswered, retried with a new xid, and the server answers the retries: one
    conversation, client -> server udp/67, established; not an unanswered broadcast beside a reply
    from nowhere. The retries are offered to the fast lane first (``feed``), which declines a DHCP
    client's broadcasts, so that each one's xid is kept."""
    def dhcp(xid: int, ts: float, frame: int, server: str | None = None) -> PacketRecord:
        body = xid.to_bytes(4, "big") + bytes(232)
        if server is None:
            return udp("0.0.0.0", "255.255.255.255", 68, 67, ts, frame, b"\x01\x01\x06\x00" + body)
        return udp(server, "255.255.255.255", 67, 68, ts, frame, b"\x02\x01\x06\x00" + body)

    b = conversations.ConversationBuilder()
    recs = [dhcp(7, 1.0, 1), dhcp(7, 5.0, 2), dhcp(8, 13.0, 3), dhcp(8, 13.1, 4, "10.30.0.5"), dhcp(8, 13.2, 5),
            dhcp(8, 13.3, 6, "10.30.0.5"), dhcp(9, 20.0, 7), dhcp(9, 20.1, 8, "10.30.0.5")]
    b.feed_many(recs)
    res = b.finish()
    assert list(res.flows) == [FlowKey("0.0.0.0", "10.30.0.5", "udp", 67)]
    flow = res.flows[FlowKey("0.0.0.0", "10.30.0.5", "udp", 67)]
    assert (flow.orig_pkts, flow.resp_pkts, flow.outcome) == (5, 3, Outcome.ESTABLISHED)
    assert res.stats.dhcp_replies_joined == 1  # the first reply; the later ones come on its 5-tuple


def test_dhcpv6_answers_join_the_request_to_all_servers_and_name_the_server() -> None:
    """RFC 8415: Solicit from the client's link-local address to ff02::1:2, Advertise from a server to
    the client, matched by transaction id (3 bytes); then Request and Reply: one conversation, client
    -> server udp/547. A Solicit nobody answers stays a one-way flow of its own (to a group)."""
    def msg(kind: int, xid: int) -> bytes:
        return bytes([kind]) + xid.to_bytes(3, "big") + b"\x00\x01\x00\x0e" + bytes(14)

    client, server, group = "fe80::200:1ff:fe01:0", "fe80::40d3:61ff:fe62:3810", "ff02::1:2"
    recs = [udp(client, group, 546, 547, 1.0, 1, msg(1, 0xABCDEF)),
            udp(server, client, 547, 546, 1.1, 2, msg(2, 0xABCDEF)),
            udp(client, group, 546, 547, 1.2, 3, msg(3, 0x123456)),
            udp(server, client, 547, 546, 1.3, 4, msg(7, 0x123456)),
            udp("fe80::9", group, 546, 547, 2.0, 5, msg(1, 0x777777))]
    res = run(recs)
    assert sorted((k.initiator, k.responder, f.orig_pkts, f.resp_pkts, f.outcome) for k, f in res.flows.items()) == [
        (client, server, 2, 2, Outcome.ESTABLISHED), ("fe80::9", group, 1, 0, Outcome.ONE_WAY)]
    assert res.stats.dhcp_replies_joined == 1
    # A DHCPv4 message on the DHCPv6 ports is not taken for one (and the other way round).
    v4_like = b"\x01\x01\x06\x00" + (0xABCDEF).to_bytes(4, "big") + bytes(40)
    res = run([udp(client, group, 546, 547, 1.0, 1, v4_like), udp(server, client, 547, 546, 1.1, 2, msg(2, 0x06ABCD))])
    assert res.stats.dhcp_replies_joined == 0


def test_a_flood_of_attempts_on_one_service_is_summarised_past_its_fan_in() -> None:
    b = conversations.ConversationBuilder(max_flows=100, flood_fanin=10)
    for i in range(30):  # a flood of unanswered SYNs from spoofed sources
        b.feed(tcp(f"198.51.100.{i + 1}", S, 40000 + i, 443, "S", 1.0 + i * 0.01, frame=i + 1))
    for i in range(20):  # then real clients that complete handshakes
        for rec in handshake(f"10.9.0.{i + 1}", S, 50000 + i, 443, 2.0 + i * 0.1):
            b.feed(rec)
    for i in range(5):  # a few failing attempts to another service keep their own flows
        b.feed(tcp(f"10.8.0.{i + 1}", "10.0.0.99", 41000 + i, 1494, "S", 5.0 + i * 0.01, frame=100 + i))
    res = b.finish()
    real = [k for k in res.flows if k.initiator.startswith("10.9.0.")]
    spoofed = [k for k in res.flows if k.initiator.startswith("198.51.100.")]
    assert len(real) == 20 and len(spoofed) == 10
    assert res.flows[FlowKey("*", S, "tcp", 443)].connections == 20
    assert len([k for k in res.flows if k.responder == "10.0.0.99"]) == 5


def test_shared_counts_are_copied_before_a_flow_changes_them() -> None:
    """Flows of one connection share their tallies from the first add, and share_counts makes final
    flows with equal tallies share one dict; a later add or merge gives the flow its own copy and
    leaves the others alone. (The flow of the build that runs: the core's.)"""
    build = native.KERNEL.of("auditor.flow")
    flow, share_counts = build.Flow, build.share_counts
    flows = [flow(FlowKey(f"10.0.0.{i}", "10.0.1.1", "tcp", 443)) for i in range(3)]
    for f in flows:
        f.add("tcp", "SF", "ShADadFf", 5, 300, 4, 900, 1.0, 2.0, (0, 1), "syn", 0, False, frozenset())
    assert flows[0].conn_states is flows[1].conn_states and flows[0].direction_evidence is flows[1].direction_evidence
    assert flows[0].conn_states == {"SF": 1} and flows[0].direction_evidence == {"syn": 1}
    share_counts(flows)
    assert flows[0].conn_states is flows[1].conn_states is flows[2].conn_states
    assert flows[0].direction_evidence is flows[2].direction_evidence
    assert isinstance(flows[0].conn_states, SharedCounts)
    flows[0].add("tcp", "REJ", "Sr", 1, 40, 1, 40, 3.0, 3.0, (0, 9), "syn", 0, False, frozenset())
    other = flow(flows[1].key)
    other.add("udp", "S0", "D", 1, 60, 0, 0, 4.0, 4.0, (0, 12), "first_packet", 0, False, frozenset())
    flows[1].merge(other)
    assert flows[0].conn_states == {"SF": 1, "REJ": 1}
    assert flows[1].conn_states == {"SF": 1, "S0": 1}
    assert flows[1].direction_evidence == {"syn": 1, "first_packet": 1}
    assert flows[2].conn_states == {"SF": 1} and flows[2].direction_evidence == {"syn": 1}
    assert type(flows[0].conn_states) is dict
    later = flow(FlowKey("10.0.0.9", "10.0.1.1", "tcp", 443))
    later.add("tcp", "SF", "ShADadFf", 5, 300, 4, 900, 5.0, 6.0, (0, 20), "syn", 0, False, frozenset())
    assert later.conn_states == {"SF": 1} and later.direction_evidence == {"syn": 1}
    merged = flow(later.key, direction_evidence={"synack": 2}, conn_states={"S1": 2}, connections=0)
    merged.add("tcp", "SF", "ShADadFf", 5, 300, 4, 900, 5.0, 6.0, (0, 21), "syn", 0, False, frozenset())
    assert merged.conn_states == {"S1": 2, "SF": 1} and merged.direction_evidence == {"synack": 2, "syn": 1}
