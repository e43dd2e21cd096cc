"""What every signature shares: the bytes kept, the result type, byte classes and BER readers.

A payload shorter than APP_SNAP is everything its packet carried (a check may demand that its lengths
add up); one of APP_SNAP bytes may have been cut by the snap. Every byte is hostile: details are built
from ``_printable`` pieces and ASCII literals only, so they need no further cleaning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

APP_SNAP: Final = 64
"""Payload bytes kept per direction of a connection for identification."""
DETAIL_MAX: Final = 80
"""Characters of ``AppEvidence.detail`` at most."""

Hit = tuple[str, str]
Check = Callable[[bytes], Hit | None]

# Printable ASCII stays, everything else (controls, DEL, bytes >= 0x80) becomes '.'.
_PRINTABLE: Final = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


# Byte classes, tested with bytes.translate (C speed) rather than a Python loop over the bytes.
_CONTROL: Final = bytes(range(0x20)) + b"\x7f"
_NOT_VISIBLE = bytes(range(0x20)) + bytes(range(0x7F, 0x100))
_NOT_TOKEN = bytes(range(0x21)) + bytes(range(0x7F, 0x100))
_NOT_NETBIOS: Final = bytes(b for b in range(256) if not 0x41 <= b <= 0x50)


def _has(raw: bytes, chars: bytes) -> bool:
    """Whether any byte of ``raw`` is one of ``chars``."""
    return len(raw.translate(None, chars)) != len(raw)


def _printable(raw: bytes, limit: int = DETAIL_MAX) -> str:
    return raw[:limit].translate(_PRINTABLE).decode("ascii")


def _line(p: bytes) -> bytes:
    end = p.find(b"\r\n")
    if end < 0:
        end = p.find(b"\n")
    return p[:end] if end >= 0 else p


def _ber_length(p: bytes, i: int) -> tuple[int, int] | None:
    """(length, index of the contents) of the BER length at ``p[i]`` (X.690 §8.1.3: short form, or long
    form with 1-4 length octets; the indefinite form is not DER/LDAP/Kerberos and is refused)."""
    if i >= len(p):
        return None
    first = p[i]
    if first < 0x80:
        return first, i + 1
    n = first & 0x7F
    if n == 0 or n > 4 or i + 1 + n > len(p):
        return None
    return int.from_bytes(p[i + 1:i + 1 + n], "big"), i + 1 + n


def _ber_int(p: bytes, i: int, max_len: int = 4) -> tuple[int, int] | None:
    """(value, index after) of a BER INTEGER (tag 0x02) at ``p[i]`` of 1..max_len octets."""
    if i + 2 > len(p) or p[i] != 0x02:
        return None
    n = p[i + 1]
    if n < 1 or n > max_len or i + 2 + n > len(p):
        return None
    return int.from_bytes(p[i + 2:i + 2 + n], "big", signed=True), i + 2 + n
