"""Invariance oracle (h11's idea): how records are fed must not change the conversations.

The same capture fed at once, one by one, in random chunks, or interleaved (by time) with another
capture's records gives identical flows for its addresses; two halves split by connection and
merged give the whole.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from typing import Any

import pytest

from auditor import conversations
from auditor.conversations import SWEEP_EVERY, ConversationResult
from auditor.flow import Flow
from auditor.model import FlowKey, PacketRecord
from tests.records import handshake, icmp_echo, icmp_unreach, numbered, tcp, udp

# Each test runs with each build of the core (conftest.each_kernel): the Python modules, and their
# compiled builds; the core is reached through its package, which hands out the build that runs.
pytestmark = pytest.mark.usefixtures("each_kernel")


def capture(seed: int, net: str, conversations: int = 6000, span: float = 3000.0,
            input_index: int = 0) -> list[PacketRecord]:
    """A synthetic capture: handshakes, DNS, syslog, unanswered SYNs, RSTs, pings, mid-stream
    sessions, port reuse and ICMP refusals, between hosts of ``net`` (e.g. '10.1'), sorted by time."""
    rnd = random.Random(seed)
    recs: list[PacketRecord] = []
    clients = [f"{net}.1.{i}" for i in range(1, 40)]
    servers = [f"{net}.2.{i}" for i in range(1, 8)]
    for _ in range(conversations):
        c, s = rnd.choice(clients), rnd.choice(servers)
        ts = rnd.uniform(0, span)
        cport = rnd.randrange(49152, 49180)  # a small range, so ports get reused
        kind = rnd.randrange(9)
        if kind <= 2:
            recs += handshake(c, s, cport, rnd.choice((443, 1494, 2598)), ts, isn=rnd.randrange(1 << 32),
                              close=kind != 2)
        elif kind == 3:
            query = b"\x00\x07\x01\x00" + b"\x00" * 8
            recs.append(udp(c, s, cport, 53, ts, payload=query))
            if rnd.random() < 0.8:
                recs.append(udp(s, c, 53, cport, ts + 0.01, payload=b"\x00\x07\x81\x80" + b"\x00" * 8))
        elif kind == 4:
            recs.append(udp(c, s, cport, 514, ts, payload=b"<13>x"))
        elif kind == 5:
            recs.append(tcp(c, s, cport, 80, "S", ts, seq=rnd.randrange(1 << 32)))
            if rnd.random() < 0.5:
                recs.append(tcp(s, c, 80, cport, "RA", ts + 0.001))
        elif kind == 6:
            ident = rnd.randrange(1 << 16)
            recs.append(icmp_echo(c, s, ts, ident=ident))
            recs.append(icmp_echo(s, c, ts + 0.002, reply=True, ident=ident))
        elif kind == 7:
            recs.append(tcp(s, c, 1494, cport, "PA", ts, payload=b"ica"))
            recs.append(tcp(c, s, cport, 1494, "A", ts + 0.01))
            if rnd.random() < 0.5:
                recs.append(tcp(s, c, 1494, cport, "RA", ts + 0.02))
        else:
            probe = udp(c, s, cport, 1604, ts, payload=b"probe")
            recs += [probe, icmp_unreach(s, c, ts + 0.001, quoting=probe)]
    recs.sort(key=lambda r: r.ts)
    return numbered(recs, input_index=input_index)


def build(recs: list[PacketRecord], mode: str = "whole", seed: int = 0) -> ConversationResult:
    b = conversations.ConversationBuilder(server_ports=frozenset({("tcp", 1494), ("tcp", 2598)}))
    if mode == "whole":
        b.feed_many(recs)
    elif mode == "single":
        for rec in recs:
            b.feed(rec)
    else:
        rnd = random.Random(seed)
        i = 0
        while i < len(recs):
            n = rnd.randrange(1, 3 * SWEEP_EVERY)
            b.feed_many(recs[i:i + n])
            i += n
    return b.finish()


def only(flows: dict[FlowKey, Flow], net: str) -> dict[FlowKey, tuple[Any, ...]]:
    mine = (net + ".",)
    return values({k: f for k, f in flows.items() if k.initiator.startswith(mine) or k.responder.startswith(mine)})


def values(flows: dict[FlowKey, Flow]) -> dict[FlowKey, tuple[Any, ...]]:
    """Flows as their fields' values: results of the two builds compare (conftest.each_kernel), each
    build's Flow a class of its own (auditor/flow.py)."""
    return {k: f.__reduce__()[1] for k, f in flows.items()}


@pytest.fixture(scope="module")
def cap_a() -> list[PacketRecord]:
    return capture(1, "10.1")


@pytest.fixture(scope="module")
def whole_a(cap_a: list[PacketRecord]) -> ConversationResult:
    return build(cap_a)


def test_capture_is_big_enough_to_sweep(cap_a: list[PacketRecord], whole_a: ConversationResult) -> None:
    assert len(cap_a) > 2 * SWEEP_EVERY
    assert whole_a.stats.idle_splits > 0 and whole_a.stats.port_reuse > 0
    assert whole_a.stats.icmp_refusals > 0
    assert {f.outcome for f in whole_a.flows.values()} >= {"established", "rejected", "unanswered", "one-way"}


@pytest.mark.parametrize("mode", ["single", "chunks"])
def test_feeding_granularity(cap_a: list[PacketRecord], whole_a: ConversationResult, mode: str) -> None:
    res = build(cap_a, mode, seed=7)
    assert values(res.flows) == values(whole_a.flows)
    # As values: whole_a may come from the other build (conftest.each_kernel), a class of its own.
    assert dataclasses.asdict(res.stats) == dataclasses.asdict(whole_a.stats)


def test_interleaved_with_another_capture(cap_a: list[PacketRecord], whole_a: ConversationResult) -> None:
    cap_b = capture(2, "10.2", input_index=1)
    mixed = list(heapq.merge(cap_a, cap_b, key=lambda r: r.ts))
    res = build(mixed)
    assert only(res.flows, "10.1") == values(whole_a.flows)
    assert only(res.flows, "10.2") == values(build(cap_b).flows)


def test_merge_of_halves_split_by_connection(cap_a: list[PacketRecord], whole_a: ConversationResult) -> None:
    halves: tuple[list[PacketRecord], list[PacketRecord]] = ([], [])
    for rec in cap_a:
        # Which conversation a record belongs to, regardless of direction (ICMP errors go with the
        # connection they quote, echoes with their id).
        if rec.quoted is not None:
            q = rec.quoted
            ends = sorted([(q.src, q.sport), (q.dst, q.dport)])
        elif rec.proto in (1, 58):
            ends = sorted([(rec.src, rec.icmp_id), (rec.dst, rec.icmp_id)])
        else:
            ends = sorted([(rec.src, rec.sport), (rec.dst, rec.dport)])
        halves[hash((ends[0], ends[1])) & 1].append(rec)
    merged = build(halves[0])
    merged.merge(build(halves[1]))
    assert values(merged.flows) == values(whole_a.flows)
    assert merged.stats.packets == whole_a.stats.packets
    assert merged.stats.connections == whole_a.stats.connections
