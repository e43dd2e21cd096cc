"""Chunks and their merge (SPEC §8): any cut of a record stream into chunks, each read by its own
builder and merged in any grouping, gives exactly the conversations of one sequential read: flows,
connections with their conn_state, history, direction and frames, counters, TTLs.

The traffic is made to cross chunk boundaries in every way that matters: handshakes cut in two, a
FIN and its ACK apart, long sessions whose fast-lane packets run through several chunks, idle gaps
shorter and longer than the timeouts and the close linger, port reuse, mid-stream starts, SYN
retransmissions, TFTP transfers and DHCP replies joined to requests of an earlier chunk, ICMP errors
quoting connections of an earlier chunk.

The records of byte ranges of a capture file (capture/ranges.py) merge the same way: read with the
kernel's real checksum sample, a capture with wrong checksums all along gives, cut anywhere, the bad
checksum counts and 'C'/'c' history letters of one read.
"""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor import conversations
from auditor.apps import APP_SNAP
from auditor.capture import CaptureSet, Chunk, kernel, native, ranges
from auditor.conversations import ConversationBuilder, ConversationResult
from auditor.model import PacketRecord
from tests import broken_checksums
from tests.records import handshake, icmp_echo, icmp_unreach, numbered, tcp, udp
from tests.test_invariance import capture

# Each test runs with each build of the core (conftest.each_kernel): the Python modules, and their
# compiled builds; the core is reached through its package, which hands out the build that runs.
pytestmark = pytest.mark.usefixtures("each_kernel")

PORTS = frozenset({("tcp", 1494), ("tcp", 2598), ("tcp", 443)})
NOT_EXACT = ("idle_splits", "peak_live")
"""Counters that depend on when the amortised sweep ran, in a sequential read too."""


def _long_sessions(rnd: random.Random, span: float) -> list[PacketRecord]:
    recs: list[PacketRecord] = []
    clients = [f"10.9.1.{i}" for i in range(1, 12)]
    servers = [f"10.9.2.{i}" for i in range(1, 4)]
    for n in range(60):
        c, s = rnd.choice(clients), rnd.choice(servers)
        cport = rnd.randrange(50000, 50012)  # few ports: reuse across sessions
        sport = rnd.choice((1494, 2598, 443))
        ts = rnd.uniform(0, span)
        isn = rnd.randrange(1 << 32)
        kind = n % 7
        if kind in (0, 1, 2):  # a handshake, then data both ways for a while, with gaps
            recs.append(tcp(c, s, cport, sport, "S", ts, seq=isn, ttl=64))
            if rnd.random() < 0.2:
                recs.append(tcp(c, s, cport, sport, "S", ts + 1.0, seq=isn, ttl=64))  # retransmitted
            recs.append(tcp(s, c, sport, cport, "SA", ts + 1.01, seq=7, ack=isn + 1, ttl=rnd.choice((64, 128))))
            t = ts + 1.02
            recs.append(tcp(c, s, cport, sport, "A", t))
            for _ in range(rnd.randrange(5, 80)):
                t += rnd.choice((0.01, 0.2, 1.0, 3.0, 6.0, 40.0)) if rnd.random() < 0.9 else rnd.uniform(100, 400)
                if rnd.random() < 0.5:
                    recs.append(tcp(c, s, cport, sport, "PA", t, payload=b"\x16\x03\x01" + bytes(rnd.randrange(1, 60))))
                else:
                    recs.append(tcp(s, c, sport, cport, "PA", t, payload=b"\x7f\x7fICA\x00" + bytes(8)))
                if rnd.random() < 0.3:
                    recs.append(tcp(c if rnd.random() < 0.5 else s, s, cport, sport, "A", t + 0.001))
            end = rnd.randrange(4)
            if end == 0:
                recs.append(tcp(c, s, cport, sport, "FA", t + 0.5))
                recs.append(tcp(s, c, sport, cport, "FA", t + 0.6, ttl=64))
                recs.append(tcp(c, s, cport, sport, "A", t + rnd.choice((0.7, 8.0))))  # its ACK, maybe late
            elif end == 1:
                recs.append(tcp(s, c, sport, cport, "RA", t + 0.5, ttl=rnd.choice((64, 250))))
            elif end == 2:
                recs.append(tcp(c, s, cport, sport, "PA", t + rnd.choice((2.0, 6.0)), payload=b"x"))
        elif kind == 3:  # mid-stream: data without a handshake, both ways
            t = ts
            for _ in range(rnd.randrange(3, 30)):
                t += rnd.choice((0.1, 2.0, 7.0))
                if rnd.random() < 0.5:
                    recs.append(tcp(s, c, sport, cport, "PA", t, payload=b"data"))
                else:
                    recs.append(tcp(c, s, cport, sport, "A", t))
        elif kind == 4:  # TFTP: request to 69, transfer from a new server port, an ICMP refusal later
            req = udp(c, s, cport, 69, ts, payload=b"\x00\x01boot.bin\x00octet\x00")
            recs.append(req)
            t = ts + rnd.choice((0.01, 2.0, 30.0))
            sp = rnd.randrange(30000, 30010)
            for k in range(rnd.randrange(1, 20)):
                recs.append(udp(s, c, sp, cport, t, payload=b"\x00\x03" + k.to_bytes(2, "big") + b"x" * 20))
                recs.append(udp(c, s, cport, sp, t + 0.001, payload=b"\x00\x04" + k.to_bytes(2, "big")))
                t += rnd.choice((0.01, 1.0, 10.0))
            if rnd.random() < 0.5:
                recs.append(icmp_unreach(c, s, t + 1, quoting=udp(s, c, sp, cport, t, payload=b"x")))
        elif kind == 6:  # a long ping, and port-unreachables for a session of an earlier minute
            ident, t = rnd.randrange(1 << 16), ts
            for _ in range(rnd.randrange(5, 40)):
                recs.append(icmp_echo(c, s, t, ident=ident))
                recs.append(icmp_echo(s, c, t + 0.002, reply=True, ident=ident))
                t += rnd.choice((1.0, 10.0, 30.0))
            probe = udp(c, s, cport, 1604, ts, payload=b"probe")
            recs += [probe, icmp_unreach(s, c, ts + rnd.choice((0.5, 20.0)), quoting=probe)]
        else:  # DHCP broadcast request, the server's reply joins it
            xid = rnd.randrange(1 << 32).to_bytes(4, "big")
            recs.append(udp("0.0.0.0", "255.255.255.255", 68, 67, ts, payload=b"\x01\x01\x06\x00" + xid + bytes(40)))
            recs.append(udp(s, "255.255.255.255", 67, 68, ts + rnd.choice((0.01, 3.0)),
                            payload=b"\x02\x01\x06\x00" + xid + bytes(40)))
    return recs


def traffic(seed: int) -> list[PacketRecord]:
    rnd = random.Random(seed)
    recs = capture(seed, "10.1", conversations=3000, span=900.0)
    recs += _long_sessions(rnd, 900.0)
    recs.sort(key=lambda r: r.ts)
    return numbered(recs)


def _builder(chunk: bool) -> ConversationBuilder:
    return conversations.ConversationBuilder(server_ports=PORTS, keep_connections=True, chunk=chunk)


def sequential(recs: list[PacketRecord]) -> ConversationResult:
    b = _builder(False)
    b.feed_many(recs)
    return b.finish()


def chunks(recs: list[PacketRecord], cuts: list[int], first_chunked: bool = True) -> list[ConversationBuilder]:
    out = []
    bounds = [0, *sorted(set(cuts)), len(recs)]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        builder = _builder(first_chunked or i > 0)
        builder.feed_many(recs[a:b])
        out.append(builder.end_chunk())
    return out


def merged(parts: list[ConversationBuilder], tree: random.Random | None = None) -> ConversationResult:
    """Merge neighbouring parts in a random order (any grouping), or left to right."""
    parts = list(parts)
    while len(parts) > 1:
        i = tree.randrange(len(parts) - 1) if tree is not None else 0
        parts[i:i + 2] = [parts[i].absorb(parts[i + 1])]
    return parts[0].finish()


def facts(res: ConversationResult) -> dict[str, Any]:
    stats = dataclasses.asdict(res.stats)
    for name in NOT_EXACT:
        stats.pop(name)
    return {
        "flows": sorted((k, dataclasses.asdict(f)) for k, f in res.flows.items()),
        "connections": sorted((dataclasses.astuple(c) for c in res.connections), key=repr),
        "stats": stats,
        "host_ttls": res.host_ttls,
    }


@pytest.fixture(scope="module")
def recs() -> list[PacketRecord]:
    return traffic(7)


@pytest.fixture(scope="module")
def whole(recs: list[PacketRecord]) -> dict[str, Any]:
    return facts(sequential(recs))


def test_traffic_crosses_boundaries_in_every_way(recs: list[PacketRecord], whole: dict[str, Any]) -> None:
    res = sequential(recs)
    states = {c.conn_state for c in res.connections}
    assert {"SF", "S1", "REJ", "OTH", "RSTR"} <= states
    assert res.stats.port_reuse and res.stats.tftp_transfers and res.stats.dhcp_replies_joined
    assert res.stats.icmp_errors_matched and any("^" in c.history for c in res.connections)
    assert any(c.last_seen - c.first_seen > 300 for c in res.connections)  # spans many chunks


@pytest.mark.parametrize("n", [2, 3, 7, 25])
def test_even_chunks_left_to_right(recs: list[PacketRecord], whole: dict[str, Any], n: int) -> None:
    cuts = [len(recs) * k // n for k in range(1, n)]
    parts = chunks(recs, cuts)
    first = parts[0]
    assert facts(merged(parts)) == whole
    # The merges did continue conversations across the boundaries, of every kind.
    if n >= 7:
        assert {6, 17, 1} <= set(first.replays), first.replays


def test_first_chunk_may_be_a_plain_builder(recs: list[PacketRecord], whole: dict[str, Any]) -> None:
    cuts = [len(recs) // 3, 2 * len(recs) // 3]
    assert facts(merged(chunks(recs, cuts, first_chunked=False))) == whole


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=12),
       grouping=st.integers(0, 1 << 30))
def test_any_cut_any_grouping(recs: list[PacketRecord], whole: dict[str, Any], cuts: list[int],
                              grouping: int) -> None:
    cuts = [c % len(recs) or 1 for c in cuts]
    assert facts(merged(chunks(recs, cuts), random.Random(grouping))) == whole


class Broken:
    """tests/broken_checksums.py's capture, and one read of it by each build of the kernel."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames = broken_checksums.write(path)
        self.size = path.stat().st_size
        self._whole: dict[bool, dict[str, Any]] = {}

    def whole(self) -> dict[str, Any]:
        compiled = native.KERNEL.compiled
        if compiled not in self._whole:
            self._whole[compiled] = facts(sequential(list(CaptureSet([str(self.path)]))))
        return self._whole[compiled]

    def ranges(self, cuts: list[int]) -> list[list[PacketRecord]]:
        """The records of each byte range, read by itself, numbered from the file's start (ranges.join;
        the ranges after one that could not end at its cut are dropped)."""
        edges = [0, *cuts, -1]
        sets = [CaptureSet.from_chunks([Chunk(str(self.path), 0, edges[k], edges[k + 1], k)])
                for k in range(len(edges) - 1)]
        read = [list(cs) for cs in sets]
        _, offsets = ranges.join([cs.inputs[0] for cs in sets])
        return [[r.replace(frame=r.frame + by) for r in recs]
                for recs, by in zip(read, offsets, strict=False)]


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Broken:
    return Broken(tmp_path_factory.mktemp("broken") / "broken.pcap")


def test_the_broken_capture_has_verified_and_unverified_bad_checksums(broken: Broken) -> None:
    verified = broken_checksums.verified(broken.frames, kernel.VERIFY_ALL_BYTES, kernel.VERIFY_EVERY)
    pairs = list(zip(broken.frames, verified, strict=True))
    late = [(f, v) for f, v in pairs if f.offset >= kernel.VERIFY_ALL_BYTES]
    assert sum(f.bad and v and not f.flags & 7 for f, v in late) >= 10  # sampled, not SYN/FIN/RST
    assert sum(f.bad and not v for f, v in late) >= 500
    res = sequential(list(CaptureSet([str(broken.path)])))
    assert res.stats.bad_checksums == sum(f.bad and v for f, v in pairs)
    histories = [c.history for c in res.connections]
    assert any("C" in h for h in histories) and any("c" in h for h in histories)
    assert facts(res) == broken.whole()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), grouping=st.integers(0, 1 << 30))
def test_byte_ranges_with_the_checksum_sample_any_cut_any_grouping(broken: Broken, data: st.DataObject,
                                                                    grouping: int) -> None:
    records = [f.offset - 16 for f in broken.frames]
    at = st.one_of(st.sampled_from(records), st.integers(records[0], broken.size - 1))
    cuts = data.draw(st.lists(at, min_size=1, max_size=6, unique=True).map(sorted))
    parts = []
    for i, recs in enumerate(broken.ranges(cuts)):
        builder = _builder(i > 0)
        builder.feed_many(recs)
        parts.append(builder.end_chunk())
    assert facts(merged(parts, random.Random(grouping))) == broken.whole()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_other_traffic_cut_everywhere_near_handshakes(seed: int) -> None:
    # Cuts right inside handshakes and between a FIN and its ACK.
    recs = traffic(seed)
    want = facts(sequential(recs))
    cuts = [i for i, r in enumerate(recs) if r.proto == 6 and r.tcp_flags & 0x03][:: max(1, len(recs) // 400)]
    assert len(cuts) > 5
    assert facts(merged(chunks(recs, cuts), random.Random(seed))) == want


def test_a_chunk_result_travels_between_processes(recs: list[PacketRecord], whole: dict[str, Any]) -> None:
    parts = [pickle.loads(pickle.dumps(p)) for p in chunks(recs, [len(recs) // 2])]
    assert facts(merged(parts)) == whole


def test_a_chain_and_its_connection_travel_whole() -> None:
    # What a worker sends back holds head chains and their live connections, pointing at each other:
    # unpickled, every field is there and equal, and the pair points at each other again. _Conn's
    # state is its fields by name (_CONN_FIELDS: the class compiled with mypyc has no __slots__).
    state = native.KERNEL.of("auditor.conversations.state")
    _CONN_FIELDS, _Conn = state._CONN_FIELDS, state._Conn
    fields = getattr(_Conn, "__mypyc_attrs__", None) or _Conn.__annotations__  # compiled, or Python
    assert sorted(_CONN_FIELDS) == sorted(fields)
    b = conversations.ConversationBuilder(chunk=True)
    b.feed_many(numbered([*handshake("10.0.0.1", "10.0.0.2", 40000, 1494, 1.0),
                          tcp("10.0.0.2", "10.0.0.1", 1494, 40000, "PA", 1.5, payload=b"hello", seq=9)]))
    chain = b.chains[0]
    assert chain.conn is not None and chain.conn.chain is chain
    copy = pickle.loads(pickle.dumps(chain))
    assert copy.conn is not None and copy.conn.chain is copy
    for name in _CONN_FIELDS:
        if name != "chain":
            assert getattr(copy.conn, name) == getattr(chain.conn, name), name
    for name in ("ck", "proto", "first_ts", "last_ts", "closed", "ttls"):
        assert getattr(copy, name) == getattr(chain, name), name
    assert len(copy.log) == len(chain.log) and copy.log[0] == chain.log[0]


def test_a_chain_logs_plain_records_as_bytes_that_give_them_back() -> None:
    # A head chain keeps its first record as it is (a merge looks it up) and the plain TCP/UDP ones
    # after it packed (a third of the memory): unpacked, each is the record, payload cut to APP_SNAP.
    query = udp("10.0.0.1", "10.0.0.9", 5353, 53, 3.0, payload=b"\x00\x01\x01\x00")
    first, *rest = numbered([*handshake("2001:db8::1", "2001:db8::2", 40000, 443, 1.0),
                             tcp("2001:db8::2", "2001:db8::1", 443, 40000, "PA", 2.0, payload=b"x" * 900, seq=7),
                             query, icmp_unreach("10.0.0.9", "10.0.0.1", 3.5, quoting=query)])
    state = native.KERNEL.of("auditor.conversations.state")
    chain = state._Chain(b"k", first.proto, first.ts)
    for rec in (first, *rest):
        chain.record(rec)
    assert chain.log[0] is first
    packed = [item for item in chain.log if isinstance(item, bytes)]
    assert len(packed) == len(rest) - 1  # all but the ICMP error, which quotes a packet
    for item, rec in zip(packed, rest, strict=False):
        assert state.unpacked(item) == rec.replace(payload=rec.payload[:APP_SNAP])
    assert len(packed[-2]) < 200  # the 900-byte payload was cut


def test_handshake_cut_in_two() -> None:
    recs = numbered(handshake("10.0.0.1", "10.0.0.2", 40000, 1494, 1.0))
    want = sequential(recs)
    for cut in range(1, len(recs)):
        got = merged(chunks(recs, [cut]))
        assert facts(got) == facts(want), cut
        (conn,) = got.connections
        assert conn.conn_state == "SF" and conn.history == "ShADdFf" and conn.direction_evidence == "syn"


@pytest.mark.parametrize("n", [2, 7, 25])
def test_chunks_settled_in_their_own_process(recs: list[PacketRecord], whole: dict[str, Any], n: int) -> None:
    # How local processes merge (auditor/engine.py): the merged side looks the next chunk's chain
    # heads up first; the chunk folds the chains that continue nothing itself and sends only the
    # others' logs.
    merging = conversations.merging
    cuts = [len(recs) * k // n for k in range(1, n)]
    parts = chunks(recs, cuts, first_chunked=False)
    acc = parts[0]
    sent = kept = 0
    for part in parts[1:]:
        firsts = merging.heads(part)
        joins = merging.decide(acc, firsts)
        merging.settle(part, joins)
        sent += len(firsts)
        kept += len(part.chains)
        part = pickle.loads(pickle.dumps(part))
        merging.absorb_decided(acc, part, firsts, joins)
    assert acc.merge_misses == 0
    assert facts(acc.finish()) == whole
    assert 0 < kept < sent / 4  # most chains continue nothing: their logs never travel


def _absorbed(left: ConversationBuilder, right: ConversationBuilder, settled: bool) -> ConversationBuilder:
    """``right`` merged into ``left``: directly (``absorb``), or ``settled`` as local processes merge
    (auditor/engine.py: heads looked up first, the chains that continue nothing folded on their side)."""
    if not settled:
        return left.absorb(right)
    merging = conversations.merging
    firsts = merging.heads(right)
    joins = merging.decide(left, firsts)
    merging.settle(right, joins)
    return merging.absorb_decided(left, right, firsts, joins)


def _dhcp(xid: int, ts: float, server: str | None = None) -> PacketRecord:
    """A DHCP request (broadcast from 0.0.0.0) or, from ``server``, its reply."""
    body = xid.to_bytes(4, "big") + bytes(40)
    if server is None:
        return udp("0.0.0.0", "255.255.255.255", 68, 67, ts, payload=b"\x01\x01\x06\x00" + body)
    return udp(server, "255.255.255.255", 67, 68, ts, payload=b"\x02\x01\x06\x00" + body)


@pytest.mark.parametrize("settled", [False, True])
def test_a_reply_joined_in_a_later_chunk_finds_the_connection_an_earlier_one_made(settled: bool) -> None:
    # The request's 5-tuple stays live (requests 10 s apart); the second server's first reply answers
    # no request (xid 9), so its replies make a connection of their own, which the third reply
    # continues (found by its 5-tuple before its xid is looked up). Cut so that the second reply ends
    # the middle chunk and the third request and reply open the last; merged as a + (b + c): the last
    # chunk's request continues the first chunk's connection, and its chain's log holds the reply it
    # joined there, which belongs to the connection the middle chunk made.
    recs = numbered([_dhcp(1, 0.0), _dhcp(1, 3.0, "10.9.2.1"), _dhcp(2, 10.0), _dhcp(9, 13.0, "10.9.2.2"),
                     _dhcp(3, 20.0), _dhcp(3, 23.0, "10.9.2.2")])
    want = sequential(recs)
    assert sorted((c.orig_h, c.resp_h, c.orig_pkts + c.resp_pkts) for c in want.connections) == [
        ("0.0.0.0", "10.9.2.1", 4), ("255.255.255.255", "10.9.2.2", 2)]
    a, b, c = chunks(recs, [3, 4])
    assert facts(a.absorb(_absorbed(b, c, settled)).finish()) == facts(want)


def retrying_dhcp_client() -> list[PacketRecord]:
    """A DHCP client retrying with new xids: the server answers its first request (the connection
    now holds the server's reply 5-tuple), then none of the retries, but repeats its first answer
    late; each request keeps the connection live, so a sequential read gives that reply (on the
    reply 5-tuple) to it. Cut after the first reply, the later chunk sees the repeated reply past
    its head window, answering no request of its own, with no connection to give it to."""
    return numbered([_dhcp(1, 0.0), _dhcp(1, 3.0, "10.9.2.1"), _dhcp(2, 50.0), _dhcp(3, 100.0), _dhcp(4, 150.0),
                     _dhcp(1, 200.0, "10.9.2.1")])


@pytest.mark.parametrize("settled", [False, True])
def test_a_reply_a_later_chunk_cannot_place_makes_the_merge_inexact(settled: bool) -> None:
    recs = retrying_dhcp_client()
    want = sequential(recs)
    assert [(c.orig_h, c.resp_h, c.orig_pkts, c.resp_pkts) for c in want.connections] == [
        ("0.0.0.0", "10.9.2.1", 4, 2)]
    a, b = chunks(recs, [2])
    assert b._unjoined  # the last reply, noted for the merge
    merged = _absorbed(a, b, settled)
    assert merged.merge_misses == 1  # the engine reads again (tests/test_engine.py)
    assert facts(merged.finish()) != facts(want)  # what the merge would have given instead
    # A reply the client's connection could not have taken (its requests stopped long before) is no
    # miss: the merge stays exact.
    recs = numbered([*recs[:3], _dhcp(1, 200.0, "10.9.2.1")])
    a, b = chunks(recs, [2])
    assert b._unjoined
    merged = _absorbed(a, b, settled)
    assert merged.merge_misses == 0 and facts(merged.finish()) == facts(sequential(recs))


@pytest.mark.parametrize("settled", [False, True])
def test_replies_of_two_servers_split_from_their_requests_make_the_merge_inexact(settled: bool) -> None:
    # Two broadcast requests within the 5-tuple's timeout: one connection in a sequential read, whose
    # responder is the server that answers first (10.9.2.2, to the first request). Cut after the first
    # request, the later chunk holds the second request (its chain, with the reply it joined there,
    # from 10.9.2.1) and, on a chain of its own, the first request's reply: each chain continues the
    # first chunk's connection, and replayed one after the other their replies come in another order
    # than the capture's. The merge cannot give what one read gives: it says so.
    recs = numbered([_dhcp(1, 0.0), _dhcp(2, 2.7), _dhcp(1, 3.0, "10.9.2.2"), _dhcp(2, 5.7, "10.9.2.1")])
    want = sequential(recs)
    assert [(c.orig_h, c.resp_h, c.orig_pkts, c.resp_pkts) for c in want.connections] == [
        ("0.0.0.0", "10.9.2.2", 2, 2)]
    a, b = chunks(recs, [1])
    merged = _absorbed(a, b, settled)
    assert merged.merge_misses == 1  # the engine reads again
    assert facts(merged.finish()) != facts(want)  # the other server named: what the merge would give
    # The replies in the order of the chains (the first request's answered first): exact, no miss.
    recs = numbered([_dhcp(1, 0.0), _dhcp(2, 2.7), _dhcp(2, 3.0, "10.9.2.1"), _dhcp(1, 5.7, "10.9.2.2")])
    a, b = chunks(recs, [1])
    merged = _absorbed(a, b, settled)
    assert merged.merge_misses == 0 and facts(merged.finish()) == facts(sequential(recs))


def test_an_unplaced_reply_is_looked_up_again_by_each_merge() -> None:
    # Three chunks merged as a + (b + c): b alone does not hold the client's connection, a does.
    recs = retrying_dhcp_client()
    a, b, c = chunks(recs, [2, 4])
    bc = b.absorb(c)
    assert bc.merge_misses == 0 and bc._unjoined
    assert a.absorb(bc).merge_misses == 1


@pytest.mark.parametrize("settled", [False, True])
def test_an_icmp_error_in_a_later_chunk_finds_the_connection_it_quotes(settled: bool) -> None:
    # A router's port-unreachables to one host: the first quotes nothing live, so it makes an ICMP
    # connection of its own; the second quotes a UDP conversation live in the chunk before, which a
    # sequential read refuses with it. In the later chunk alone that conversation is not live, so the
    # second error joins the first's ICMP connection: the merge must look its quote up too.
    recs = numbered([udp("10.1.1.5", "10.1.2.9", 5000, 1604, 0.0, payload=b"q"),
                     udp("10.1.2.9", "10.1.1.5", 1604, 5000, 1.0, payload=b"r"),
                     icmp_unreach("10.1.9.1", "10.1.1.5", 10.0, quoting=udp("10.1.1.5", "10.1.2.8", 6000, 1604, 9.9)),
                     icmp_unreach("10.1.9.1", "10.1.1.5", 12.0, quoting=udp("10.1.1.5", "10.1.2.9", 5000, 1604, 11.9))])
    want = sequential(recs)
    assert want.stats.icmp_errors_matched == 1 and want.stats.icmp_refusals == 1
    a, c = chunks(recs, [2])
    assert facts(_absorbed(a, c, settled).finish()) == facts(want)


def test_a_flood_across_chunks_keeps_exact_totals() -> None:
    # Beyond the bounds (a SYN flood on one service, more 5-tuples than the builders keep chains or
    # flows for) what is summarised may depend on the cut, but not the totals: packets, connections,
    # and packets in flows plus summarised ones.
    rnd = random.Random(11)
    recs = [tcp(f"10.{rnd.randrange(1, 200)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}", "10.0.0.5",
                rnd.randrange(1024, 65535), 443, "S", i * 0.001, seq=rnd.randrange(1 << 32)) for i in range(6000)]
    recs += [r for k in range(30) for r in handshake("10.7.0.1", "10.0.0.6", 40000 + k, 1494, k * 0.2)]
    recs = numbered(sorted(recs, key=lambda r: r.ts))

    def build(chunk: bool) -> ConversationBuilder:
        return conversations.ConversationBuilder(server_ports=PORTS, max_flows=400, flood_fanin=50, chunk=chunk)

    one = build(False)
    one.feed_many(recs)
    want = one.finish()
    cuts = [1500, 3100, 4700]
    parts = []
    for i, (a, b) in enumerate(itertools.pairwise([0, *cuts, len(recs)])):
        part = build(i > 0)
        part.feed_many(recs[a:b])
        parts.append(part.end_chunk())
    got = merged(parts, random.Random(3))
    assert want.overflowed and got.overflowed
    for res in (want, got):
        assert res.stats.packets == len(recs)
        assert sum(f.packets for f in res.flows.values()) == len(recs)
    assert got.stats.connections == want.stats.connections
    assert sum(f.connections for f in got.flows.values()) == sum(f.connections for f in want.flows.values())
    # The real conversations beside the flood keep their own flows.
    key = next(k for k in want.flows if k.port == 1494)
    assert dataclasses.asdict(got.flows[key]) == dataclasses.asdict(want.flows[key])
