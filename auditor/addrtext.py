"""Packed addresses as text (``addr_str``): every closed connection's two hosts and every address a
DNS answer carries go through here.

Compiled where a compiler exists (auditor/capture/native.py's COMPILED): the conversation core and
the name readers then call it in C, where a call into a Python function cost a tenth of reading the
realistic capture. It imports nothing of the package, so that auditor/model.py can hand it to the
Python modules.
"""

from __future__ import annotations

import socket
from typing import Final

CACHE_MAX: Final = 1 << 16
_CACHE: Final[dict[bytes, str]] = {}
_OCTETS: Final = [str(i) for i in range(256)]


def ipv4_at(buf: bytes, off: int) -> str:
    """The IPv4 address at buf[off:off + 4] as text, not cached: a DNS answer's addresses are seldom
    met again, and would push the hosts of the capture's conversations out of the cache."""
    o = _OCTETS
    return f"{o[buf[off]]}.{o[buf[off + 1]]}.{o[buf[off + 2]]}.{o[buf[off + 3]]}"


def addr_str(packed: bytes) -> str:
    """Packed 4- or 16-byte address -> canonical text (IPv6 compressed). Cached: the same hosts close
    thousands of connections. Another length raises ValueError (socket.inet_ntop's)."""
    text = _CACHE.get(packed)
    if text is None:
        if len(packed) == 4:
            o = _OCTETS
            text = f"{o[packed[0]]}.{o[packed[1]]}.{o[packed[2]]}.{o[packed[3]]}"
        else:
            text = socket.inet_ntop(socket.AF_INET6, packed)
        if len(_CACHE) >= CACHE_MAX:
            _CACHE.clear()
        _CACHE[packed] = text
    return text
