"""A pcap written with dpkt whose TCP and UDP checksums are wrong on many packets, larger than the
kernel's verify-all region (kernel.VERIFY_ALL_BYTES), so that byte ranges past that region meet bad
checksums that the sample verifies and others it does not.

TCP connections to 443, 1494 and 2598 (handshake, data both ways, FIN or RST) interleaved with UDP
exchanges: a third of the clients send every packet with a wrong checksum (checksum offload on the
capturing host), and any packet is wrong with a small chance. Timestamps step by a random number of
microseconds. ``write`` returns each frame's place and what the sample needs to know of it.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import NamedTuple

import dpkt


class Frame(NamedTuple):
    offset: int
    """File offset of the frame's first byte (after its record header)."""
    us: int
    """Timestamp in microseconds."""
    flags: int
    """TCP flags (0: UDP)."""
    bad: bool
    """Its transport checksum is wrong."""


def _packet(src: str, dst: str, sport: int, dport: int, proto: int, flags: int, payload: bytes, seq: int,
            bad: bool) -> bytes:
    l4: dpkt.tcp.TCP | dpkt.udp.UDP
    if proto == 6:
        l4 = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, flags=flags, data=payload)
    else:
        l4 = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
        l4.ulen = len(l4)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), p=proto,
                    ttl=64, data=l4)
    ip.len = len(ip)
    bytes(ip)  # dpkt fills in the checksums
    if bad:
        l4.sum ^= 0x5555
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def write(path: Path, seed: int = 3, packets: int = 14000) -> list[Frame]:
    rnd = random.Random(seed)
    offloaded = {f"10.1.0.{i}" for i in range(1, 40, 3)}
    live: list[list[object]] = []  # [client, server, client port, server port, proto, packets left, state]
    kinds: list[tuple[int, bool]] = []
    us = 1_700_000_000 * 1_000_000 + rnd.randrange(1_000_000)
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        while len(kinds) < packets:
            if len(live) < 30 or rnd.random() < 0.05:
                proto = 6 if rnd.random() < 0.8 else 17
                live.append([f"10.1.0.{rnd.randrange(1, 40)}", f"10.2.0.{rnd.randrange(1, 6)}",
                             rnd.randrange(40000, 60000), rnd.choice((443, 1494, 2598)) if proto == 6 else 514,
                             proto, rnd.randrange(4, 60), 0])
            conn = rnd.choice(live)
            client, server, cport, sport, proto, left, state = conn
            assert isinstance(client, str) and isinstance(server, str) and isinstance(left, int)
            assert isinstance(cport, int) and isinstance(sport, int) and isinstance(proto, int)
            fwd = rnd.random() < 0.55
            flags = 0
            if proto == 6:
                if state == 0:
                    flags, fwd, conn[6] = dpkt.tcp.TH_SYN, True, 1
                elif state == 1:
                    flags, fwd, conn[6] = dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, False, 2
                elif left <= 1:
                    flags = dpkt.tcp.TH_RST if rnd.random() < 0.3 else dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK
                else:
                    flags = dpkt.tcp.TH_ACK | (dpkt.tcp.TH_PUSH if rnd.random() < 0.7 else 0)
            # (a UDP frame of fewer than 54 bytes would take the general path, which verifies all)
            payload = (b"" if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_RST)
                       else rnd.randbytes(rnd.randrange(0 if proto == 6 else 12, 1200)))
            src, dst, ps, pd = (client, server, cport, sport) if fwd else (server, client, sport, cport)
            bad = (fwd and client in offloaded) or rnd.random() < 0.02
            frame = _packet(src, dst, ps, pd, proto, flags, payload, rnd.randrange(1 << 32), bad)
            us += rnd.randrange(1, 4000)
            writer.writepkt(frame, us / 1e6)
            kinds.append((flags, bad))
            conn[5] = left - 1
            if left <= 1:
                live.remove(conn)
    # The timestamps as written (dpkt rounds the float it is given).
    data = path.read_bytes()
    frames: list[Frame] = []
    pos = 24
    for flags, bad in kinds:
        sec, usec, caplen = struct.unpack_from("<III", data, pos)
        frames.append(Frame(pos + 16, sec * 1_000_000 + usec, flags, bad))
        pos += 16 + caplen
    assert pos == len(data)
    return frames


def verified(frames: list[Frame], all_below: int, every: int) -> list[bool]:
    """Whether the kernel verifies each frame's checksum (capture/kernel.py's rule; every frame here
    takes its common path)."""
    return [f.offset < all_below or bool(f.flags & 7) or f.us % every == 0 for f in frames]
