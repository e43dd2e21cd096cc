"""The NetScaler trace format's vocabulary: the signature records that name a version
(:func:`identify`), the page sizes, and the record tables (time records, the packet record types of
each version and their header layouts) that nstrace.py's walk reads records by. The format itself is
described in nstrace.py.
"""

from __future__ import annotations

import struct

HEAD = 8192
"""How many first bytes :func:`identify` looks at: Wireshark scans the first 8 KiB page for the
signature record."""

PAGE = 8192
PAGE3 = 16384

SIGNATURES: dict[str, bytes] = {
    "nstrace10": b"NetScaler Performance Data",
    "nstrace20": b"NetScaler V20 Performance Data",
    "nstrace30": b"Netscaler V30 Performance Data",
    "nstrace35": b"Netscaler V35 Performance Data",
}
"""captype's name of each version -> the start of its signature string (3.x spell "Netscaler")."""

_SIG_V10 = 0x0101
_SIG_V10_SIZE = 64  # type, size, endian byte, 3 reserved, 56 signature bytes
_SIG_V20 = 0x01
_SIG_V20_SIZE = 34  # type, size, endian byte, 31 signature bytes
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                b"\x0a\x0d\x0d\x0a"}

ABSTIME, RELTIME = 0x07, 0x08
ABSTIME_V10, RELTIME_V10 = 0x0107, 0x0108

NS = 1_000_000_000
M32 = 0xFFFFFFFF
HR_MASK = 0x3FFFFFFF
HR_MUL = (1_000_000_000, 1_000_000, 1_000, 1)  # top two bits: s, ms, us, ns

U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
V10 = struct.Struct("<HHxxxxI")  # type, size, relative time (the 12 bytes every v1.0 record needs)
V30 = struct.Struct("<4xQ8xH9xBB")  # absolute ns, original size, VM name lengths
V35 = struct.Struct("<4xQ8xH4xH")  # absolute ns, original size, header length


def _v2_types() -> dict[int, tuple[int, bool, bool, int, int]]:
    """2.x packet record type -> (header size, partial, absolute time, offset of the original size,
    offset of the two VM name lengths or 0)."""
    table: dict[int, tuple[int, bool, bool, int, int]] = {}
    # (full types, partial types, full header, partial header, absolute, orig offset, vm offsets)
    for full, part, fh, ph, absolute, orig, vm in (
            ((0xC0, 0xC1, 0xC2), (0xC4, 0xC5, 0xC6), 8, 12, False, 8, (0, 0)),             # 2.0
            ((0xD0, 0xD1, 0xD2), (0xD4, 0xD5, 0xD6), 16, 20, False, 8, (0, 0)),            # 2.1
            ((0xE0, 0xE1, 0xE2), (0xE4, 0xE5, 0xE6), 18, 22, False, 8, (0, 0)),            # 2.2
            ((0xF0, 0xF1, 0xF2), (0xF4, 0xF5, 0xF6), 24, 28, True, 12, (0, 0)),            # 2.3
            ((0xF8, 0xF9, 0xFA, 0xFB), (0xFC, 0xFD, 0xFE, 0xFF), 29, 33, True, 12, (0, 0)),  # 2.4
            ((0xB0, 0xB1, 0xB2, 0xB3), (0xB4, 0xB5, 0xB6, 0xB7), 31, 35, True, 12, (29, 33)),  # 2.5
            ((0xA0, 0xA1, 0xA2, 0xA3), (0xA4, 0xA5, 0xA6, 0xA7), 48, 52, True, 12, (29, 33))):  # 2.6
        for t in full:
            table[t] = (fh, False, absolute, 0, vm[0])
        for t in part:
            table[t] = (ph, True, absolute, orig, vm[1])
    return table


V2_TYPES = _v2_types()
V10_FULL = frozenset({0x0310, 0x0311, 0x0312})
V10_PART = frozenset({0x0314, 0x0315, 0x0316})


def identify(head: bytes) -> str | None:
    """The version of a NetScaler trace ("nstrace10", "nstrace20", "nstrace30", "nstrace35", as
    captype names them) from its first bytes (:data:`HEAD`, 8 KiB, are enough; fewer are scanned as
    they are), or None. Like Wireshark, a signature record is looked for at any offset of the first
    page; files starting with a pcap or pcapng magic are never NetScaler traces."""
    head = bytes(head[:HEAD])
    if head[:4] in _PCAP_MAGICS:
        return None
    n = len(head)
    best: tuple[int, str] | None = None
    for name, sig in SIGNATURES.items():
        back = 8 if name == "nstrace10" else 3  # where the signature string sits in its record
        i = head.find(sig)
        while i >= 0:
            dp = i - back
            if best is not None and dp >= best[0]:
                break
            left = n - dp
            if dp >= 0 and left > _SIG_V20_SIZE:
                if name == "nstrace10":
                    if (left >= _SIG_V10_SIZE and U16.unpack_from(head, dp)[0] == _SIG_V10
                            and _SIG_V10_SIZE <= U16.unpack_from(head, dp + 2)[0] <= left):
                        best = (dp, name)
                        break
                elif head[dp] == _SIG_V20 and _SIG_V20_SIZE <= head[dp + 1] <= left:
                    best = (dp, name)
                    break
            i = head.find(sig, i + 1)
    return best[1] if best is not None else None
