"""Benchmark of the conversation core's hot path (no reading: records are built in memory).

    python bench/bench_conversations.py [--packets 1000000] [--single]

Builds ~1M PacketRecords (TCP handshakes with data, UDP request/response, unanswered SYNs,
rejected SYNs; ~100k connections interleaved in time), feeds them, and prints packets/s for
feed_many (and, with --single, for feed one record at a time) and the peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditor.conversations import ConversationBuilder
from auditor.model import ACK, FIN, IPPROTO_TCP, IPPROTO_UDP, PSH, RST, SYN, PacketRecord


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make(total: int, seed: int = 1) -> list[PacketRecord]:
    rnd = random.Random(seed)
    hosts = [socket.inet_aton(f"10.{i >> 8}.{i & 255}.1") for i in range(2000)]
    servers = [socket.inet_aton(f"10.200.0.{i}") for i in range(1, 50)]
    recs: list[PacketRecord] = []
    frame = 0
    span = 600.0

    def add(ts: float, src: bytes, dst: bytes, proto: int, sport: int, dport: int, flags: int = 0,
            plen: int = 0, payload: bytes = b"") -> None:
        nonlocal frame
        frame += 1
        recs.append(PacketRecord(0, frame, ts, src, dst, proto, 40 + plen, sport, dport, flags, 0, 0, plen,
                                 payload))

    while len(recs) < total:
        c, s = rnd.choice(hosts), rnd.choice(servers)
        cp = rnd.randrange(49152, 65535)
        ts = rnd.uniform(0, span)
        kind = rnd.random()
        if kind < 0.55:  # TCP: handshake, request, ~8 data segments both ways, FIN/FIN/ACK
            sp = rnd.choice((443, 1494, 2598, 80, 389))
            add(ts, c, s, IPPROTO_TCP, cp, sp, SYN)
            add(ts + 0.001, s, c, IPPROTO_TCP, sp, cp, SYN | ACK)
            add(ts + 0.002, c, s, IPPROTO_TCP, cp, sp, ACK)
            for i in range(rnd.randrange(6, 14)):
                t = ts + 0.003 + i * 0.01
                add(t, c, s, IPPROTO_TCP, cp, sp, PSH | ACK, 200)
                add(t + 0.004, s, c, IPPROTO_TCP, sp, cp, PSH | ACK, 1400)
                add(t + 0.005, c, s, IPPROTO_TCP, cp, sp, ACK)
            t = ts + 0.2
            add(t, c, s, IPPROTO_TCP, cp, sp, FIN | ACK)
            add(t + 0.001, s, c, IPPROTO_TCP, sp, cp, FIN | ACK)
            add(t + 0.002, c, s, IPPROTO_TCP, cp, sp, ACK)
        elif kind < 0.80:  # UDP request/response (DNS)
            add(ts, c, s, IPPROTO_UDP, cp, 53, 0, 40, b"\x00\x01\x01\x00" + b"\x00" * 8)
            add(ts + 0.003, s, c, IPPROTO_UDP, 53, cp, 0, 90, b"\x00\x01\x81\x80" + b"\x00" * 8)
        elif kind < 0.92:  # unanswered SYN, retransmitted
            sp = rnd.choice((135, 445, 8080))
            for i in range(3):
                add(ts + i * 1.0, c, s, IPPROTO_TCP, cp, sp, SYN)
        else:  # rejected
            add(ts, c, s, IPPROTO_TCP, cp, 3389, SYN)
            add(ts + 0.001, s, c, IPPROTO_TCP, 3389, cp, RST | ACK)
    recs.sort(key=lambda r: r.ts)
    for i, r in enumerate(recs, 1):
        r.frame = i
    return recs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--single", action="store_true", help="also time feed() one record at a time")
    args = ap.parse_args()
    t0 = time.perf_counter()
    recs = make(args.packets)
    print(f"built {len(recs):,} records in {time.perf_counter() - t0:.1f}s, RSS {rss_mb():.0f} MB")
    # A streaming reader holds a handful of records, not a million: keep the cyclic GC from
    # re-scanning this benchmark's own record list on every collection.
    gc.freeze()
    ports = frozenset({("tcp", 1494), ("tcp", 2598), ("tcp", 443)})

    b = ConversationBuilder(server_ports=ports)
    t0, c0 = time.perf_counter(), time.process_time()
    b.feed_many(recs)
    t1, c1 = time.perf_counter(), time.process_time()
    res = b.finish()
    t2 = time.perf_counter()
    n = len(recs)
    print(f"feed_many: {n / (t1 - t0):,.0f} packets/s wall, {n / (c1 - c0):,.0f} packets/s CPU "
          f"({(c1 - c0) * 1e6 / n:.2f} us CPU/packet), finish {t2 - t1:.2f}s")
    est = [r for r in recs if r.proto == IPPROTO_TCP and not r.tcp_flags & (SYN | FIN | RST)]
    b2 = ConversationBuilder(server_ports=ports)
    b2.feed_many(r for r in recs if r.tcp_flags & SYN)  # open the connections, then time the rest
    c0 = time.process_time()
    b2.feed_many(est)
    c1 = time.process_time()
    print(f"established TCP packets only: {(c1 - c0) * 1e6 / len(est):.2f} us CPU/packet "
          f"({len(est):,} packets)")
    print(f"connections {res.stats.connections:,}, flows {len(res.flows):,}, "
          f"peak live {res.stats.peak_live:,}")
    if args.single:
        b = ConversationBuilder(server_ports=ports)
        feed = b.feed
        c0 = time.process_time()
        for rec in recs:
            feed(rec)
        c1 = time.process_time()
        b.finish()
        print(f"feed (one by one): {n / (c1 - c0):,.0f} packets/s CPU")
    print(f"peak RSS {rss_mb():.0f} MB (including the in-memory records)")


if __name__ == "__main__":
    main()
