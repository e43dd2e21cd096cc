"""Write a large, realistic pcap for benchmarks: `python bench/make_capture.py OUT.pcap --packets 5000000`.

Mixed sizes, 802.1Q VLANs on ~20 % of traffic, ~10 % IPv6, full TCP handshakes with data and FIN
teardown, unanswered SYNs (with retransmissions), RST-rejected attempts, UDP request/response pairs and
one-way UDP (syslog/traps). Headers and checksums are real (IPv4 header, TCP and UDP checksums), so
tshark and pcap-audit read it like a capture from a wire. Deterministic for a given --seed.

Bytes are written directly with struct: building millions of dpkt objects would take far longer than
the benchmarks themselves.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

ETH_V4 = b"\x00\x16\x3e\x00\x00\x02\x00\x16\x3e\x00\x00\x01\x08\x00"
ETH_V6 = b"\x00\x16\x3e\x00\x00\x02\x00\x16\x3e\x00\x00\x01\x86\xdd"


def _eth(v6: bool, vlan: int | None) -> bytes:
    base = ETH_V6 if v6 else ETH_V4
    if vlan is None:
        return base
    return base[:12] + struct.pack("!HH", 0x8100, vlan) + base[12:]


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Writer:
    def __init__(self, path: Path) -> None:
        self.fh = path.open("wb")
        self.fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.count = 0
        self.buf: list[bytes] = []

    def packet(self, ts: float, frame: bytes) -> None:
        sec = int(ts)
        self.buf.append(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
        self.count += 1
        if len(self.buf) >= 4096:
            self.fh.write(b"".join(self.buf))
            self.buf.clear()

    def close(self) -> None:
        self.fh.write(b"".join(self.buf))
        self.fh.close()


def ip_packet(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    if len(src) == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst)
        hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
        return hdr + l4
    return struct.pack("!IHBB16s16s", 0x60000000, len(l4), proto, 64, src, dst) + l4


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def tcp_seg(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
            payload: bytes) -> bytes:
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 64240, 0, 0)
    seg = hdr + payload
    c = _csum(_pseudo(src, dst, 6, len(seg)) + seg)
    return ip_packet(src, dst, 6, seg[:16] + struct.pack("!H", c) + seg[18:])


def udp_dgram(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    c = _csum(_pseudo(src, dst, 17, length) + seg) or 0xFFFF
    return ip_packet(src, dst, 17, seg[:6] + struct.pack("!H", c) + seg[8:])


SERVER_PORTS_TCP = [80, 443, 1494, 2598, 1433, 389, 636, 88, 445, 27000, 7279, 8080, 22, 3389, 135, 9095]
SERVER_PORTS_UDP = [53, 123, 1494, 2598, 443, 1812, 161]
ONEWAY_UDP = [514, 162, 4739, 3003]


def generate(path: Path, packets: int, seed: int = 1, conversations: int | None = None,
             unique_flows: bool = False) -> tuple[int, int]:
    """Write about `packets` packets; with `conversations`, hold the number of conversations fixed and
    lengthen the TCP ones instead (so a 10M and a 1M capture have the same conversations)."""
    rnd = random.Random(seed)
    # Mean packets per conversation without TCP data: 0.62*6 + 0.08*3 + 0.06*2 + 0.18*5 + 0.06*3 = 5.16;
    # each TCP data packet adds 0.62. Default mean of 16 data packets.
    mean_data = 16.0
    if conversations:
        mean_data = max(0.0, (packets / conversations - 5.16) / 0.62)
    w = Writer(path)
    ts = 1_764_000_000.0
    v4_clients = [bytes([10, 1, i // 250, i % 250 + 1]) for i in range(5000)]
    v4_servers = [bytes([10, 0, 0, i + 1]) for i in range(200)]
    v6_clients = [b"\x20\x01\x0d\xb8" + bytes(10) + struct.pack("!H", i + 1) for i in range(500)]
    v6_servers = [b"\x20\x01\x0d\xb8\x00\x01" + bytes(8) + struct.pack("!H", i + 1) for i in range(50)]
    payload_sizes = [0, 40, 120, 512, 1200, 1400]
    # Clients talk to a handful of servers each (their StoreFront, Controllers, VDAs...), as on a real
    # estate; with unique_flows every conversation picks any server (the worst case for flow tables).
    affinity = {c: rnd.sample(v4_servers, 6) for c in v4_clients}
    affinity.update({c: rnd.sample(v6_servers, 6) for c in v6_clients})
    # ... and each server offers a couple of services, not every port.
    tcp_ports = {srv: rnd.sample(SERVER_PORTS_TCP, 2) for srv in v4_servers + v6_servers}
    udp_ports = {srv: rnd.sample(SERVER_PORTS_UDP, 2) for srv in v4_servers + v6_servers}
    oneway_ports = {srv: rnd.sample(ONEWAY_UDP, 1) for srv in v4_servers + v6_servers}

    def port(table: dict[bytes, list[int]], every: list[int], srv: bytes) -> int:
        return rnd.choice(every) if unique_flows else rnd.choice(table[srv])

    conns = 0
    while w.count < packets:
        conns += 1
        v6 = rnd.random() < 0.10
        cli = rnd.choice(v6_clients if v6 else v4_clients)
        srv = rnd.choice(v6_servers if v6 else v4_servers) if unique_flows else rnd.choice(affinity[cli])
        vlan = rnd.choice((None, None, None, None, 100, 200))
        eth = _eth(v6, vlan)
        sport = rnd.randint(49152, 65535)
        ts += rnd.random() * 0.0005
        kind = rnd.random()
        if kind < 0.62:  # full TCP conversation
            dport = port(tcp_ports, SERVER_PORTS_TCP, srv)
            cs, ss = rnd.getrandbits(32), rnd.getrandbits(32)
            w.packet(ts, eth + tcp_seg(cli, srv, sport, dport, cs, 0, 0x02, b""))
            w.packet(ts + 0.0002, eth + tcp_seg(srv, cli, dport, sport, ss, cs + 1, 0x12, b""))
            w.packet(ts + 0.0003, eth + tcp_seg(cli, srv, sport, dport, cs + 1, ss + 1, 0x10, b""))
            cs += 1
            ss += 1
            t = ts + 0.0004
            for _ in range(rnd.randint(int(mean_data * 0.5), int(mean_data * 1.5) + 1)):
                n = rnd.choice(payload_sizes)
                if rnd.random() < 0.5:
                    w.packet(t, eth + tcp_seg(cli, srv, sport, dport, cs, ss, 0x18, bytes(n)))
                    cs += n
                else:
                    w.packet(t, eth + tcp_seg(srv, cli, dport, sport, ss, cs, 0x18, bytes(n)))
                    ss += n
                t += 0.0001
            w.packet(t, eth + tcp_seg(cli, srv, sport, dport, cs, ss, 0x11, b""))
            w.packet(t + 0.0001, eth + tcp_seg(srv, cli, dport, sport, ss, cs + 1, 0x11, b""))
            w.packet(t + 0.0002, eth + tcp_seg(cli, srv, sport, dport, cs + 1, ss + 1, 0x10, b""))
        elif kind < 0.70:  # unanswered SYN with two retransmissions
            dport = port(tcp_ports, SERVER_PORTS_TCP, srv)
            cs = rnd.getrandbits(32)
            for k in range(3):
                w.packet(ts + k * 1.0, eth + tcp_seg(cli, srv, sport, dport, cs, 0, 0x02, b""))
        elif kind < 0.76:  # rejected by RST
            dport = port(tcp_ports, SERVER_PORTS_TCP, srv)
            cs = rnd.getrandbits(32)
            w.packet(ts, eth + tcp_seg(cli, srv, sport, dport, cs, 0, 0x02, b""))
            w.packet(ts + 0.0002, eth + tcp_seg(srv, cli, dport, sport, 0, cs + 1, 0x14, b""))
        elif kind < 0.94:  # UDP request/response
            dport = port(udp_ports, SERVER_PORTS_UDP, srv)
            for _ in range(rnd.randint(1, 4)):
                w.packet(ts, eth + udp_dgram(cli, srv, sport, dport, bytes(rnd.choice((40, 48, 120)))))
                w.packet(ts + 0.0003, eth + udp_dgram(srv, cli, dport, sport, bytes(rnd.choice((48, 200, 512)))))
                ts += 0.0005
        else:  # one-way UDP (syslog, traps, heartbeats)
            dport = port(oneway_ports, ONEWAY_UDP, srv)
            for _ in range(rnd.randint(1, 5)):
                w.packet(ts, eth + udp_dgram(cli, srv, sport, dport, bytes(rnd.choice((80, 200)))))
                ts += 0.001
    w.close()
    return w.count, conns


def generate_flood(path: Path, packets: int, seed: int = 1) -> int:
    """A spoofed-source SYN flood: `packets` one-packet conversations from random IPv4 sources to one
    server port (the case that must not exhaust memory)."""
    rnd = random.Random(seed)
    w = Writer(path)
    eth = _eth(False, None)
    dst = bytes([10, 0, 0, 1])
    ts = 1_764_000_000.0
    for i in range(packets):
        src = rnd.getrandbits(32).to_bytes(4, "big")
        w.packet(ts + i * 1e-5, eth + tcp_seg(src, dst, rnd.randint(1024, 65535), 443, rnd.getrandbits(32), 0,
                                              0x02, b""))
    w.close()
    return w.count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--packets", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--conversations", type=int, help="hold the number of conversations fixed")
    ap.add_argument("--unique-flows", action="store_true", help="clients pick any server (worst case)")
    ap.add_argument("--flood", action="store_true", help="write a spoofed-source SYN flood instead")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.flood:
        n = generate_flood(args.out, args.packets, args.seed)
        print(f"wrote {args.out}: {n:,} spoofed SYNs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        return 0
    n, conns = generate(args.out, args.packets, args.seed, args.conversations, args.unique_flows)
    dt = time.perf_counter() - t0
    print(f"wrote {args.out}: {n:,} packets, ~{conns:,} conversations, {args.out.stat().st_size / 1e6:,.0f} MB "
          f"in {dt:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
