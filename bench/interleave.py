"""Write a pcap whose consecutive packets belong to different conversations: `python
bench/interleave.py SRC.pcap OUT.pcap --packets N [--streams K]` deals K stretches of SRC's first N
packets round-robin (timestamps rewritten 1 µs apart), the opposite of make_capture.py's bursty
conversations. Headers and payloads are copied unchanged; only the order and the timestamps differ.
Used to measure two processes (capture/split.py) where runs of one conversation are one frame long.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--streams", type=int, default=8)
    args = ap.parse_args()
    with args.src.open("rb") as f:
        header = f.read(24)
        if header[:4] != b"\xd4\xc3\xb2\xa1":
            raise SystemExit(f"{args.src}: a little-endian microsecond pcap is needed")
        records: list[bytes] = []
        while len(records) < args.packets:
            head = f.read(16)
            if len(head) < 16:
                break
            records.append(head + f.read(struct.unpack_from("<I", head, 8)[0]))
    per = len(records) // args.streams
    with args.out.open("wb") as out:
        out.write(header)
        t = 0
        for i in range(per):
            for k in range(args.streams):
                rec = bytearray(records[k * per + i])
                t += 1
                struct.pack_into("<II", rec, 0, 1_800_000_000 + t // 1_000_000, t % 1_000_000)
                out.write(rec)
    print(f"{args.out}: {per * args.streams} packets from {args.streams} interleaved stretches of {args.src}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
