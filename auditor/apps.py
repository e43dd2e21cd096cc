"""Application protocol evidence from a connection's first payload bytes (SPEC §6).

Sans-IO and pure: the conversation core keeps the first APP_SNAP payload bytes of each direction of a
connection (and the frame they came in) and asks ``identify_connection`` once, when the connection
closes. A port is a claim; these bytes are the evidence. Every byte is hostile: nothing here is
evaluated, and ``detail`` is bounded and printable (the renderers still escape it).

Vocabulary: PROTOCOLS below; ``unknown`` when no payload was seen or none was recognised.
"""

from __future__ import annotations

from typing import NamedTuple

APP_SNAP = 64
"""Payload bytes kept per direction of a connection for identification."""
UNKNOWN = "unknown"
DETAIL_MAX = 80
"""Characters of ``AppEvidence.detail`` at most."""

PROTOCOLS = ("ica", "cgp", "tls", "dtls", "http", "websocket", "ssh", "rdp", "smb", "ldap", "cldap", "kerberos",
             "dns", "ntp", "tds", "radius", "snmp", "syslog")
"""Application protocols identification may name (besides UNKNOWN)."""


class AppEvidence(NamedTuple):
    """Why a connection was identified as ``protocol``: which bytes, which direction, which frame."""

    protocol: str
    direction: str
    """'orig' (the initiator's first payload) or 'resp' (the responder's)."""
    frame: tuple[int, int]
    """(input_index, frame) of the packet that carried the bytes."""
    head: str
    """The first bytes (at most 16) in hex."""
    detail: str = ""
    """A short printable summary: 'SSH-2.0-OpenSSH_9.6', 'POST /Citrix/CdsController/IRegistrar'."""


def _printable(raw: bytes) -> str:
    text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in raw[:DETAIL_MAX])
    return text


def _line(p: bytes) -> bytes:
    end = p.find(b"\r\n")
    return p[:end] if end >= 0 else p


_HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ")


def identify(payload: bytes, proto: int, sport: int, dport: int) -> tuple[str, str] | None:
    """(protocol, detail) of one direction's first payload bytes, or None when not recognised.
    ``proto`` is the IP protocol (6 TCP, 17 UDP); the ports only break ties between signatures that
    share their first bytes, never stand in for evidence."""
    if not payload:
        return None
    if payload.startswith(b"\x7f\x7fICA\x00"):
        return "ica", "ICA banner"
    if payload.startswith(b"\x1aCGP/01"):
        return "cgp", "CGP/01 banner"
    if payload.startswith(b"SSH-"):
        return "ssh", _printable(_line(payload))
    if proto == 6 and len(payload) >= 3 and payload[0] == 0x16 and payload[1] == 0x03 and payload[2] <= 0x04:
        kind = {1: "ClientHello", 2: "ServerHello"}.get(payload[5], "handshake") if len(payload) > 5 else "handshake"
        return "tls", kind
    if proto == 6 and (payload.startswith(_HTTP_METHODS) or payload.startswith(b"HTTP/1.")):
        return "http", _printable(_line(payload))
    return None


def identify_connection(proto: int, orig_port: int, resp_port: int,
                        orig_head: bytes | None, orig_frame: tuple[int, int],
                        resp_head: bytes | None, resp_frame: tuple[int, int]) -> AppEvidence | None:
    """The connection's application protocol from both directions' first payload bytes (either may be
    None: no payload seen that way), or None when neither was recognised. The responder's bytes win
    where both are recognised and disagree (a server banner is the stronger evidence)."""
    found: list[AppEvidence] = []
    for head, frame, direction, sport, dport in ((resp_head, resp_frame, "resp", resp_port, orig_port),
                                                 (orig_head, orig_frame, "orig", orig_port, resp_port)):
        if head:
            hit = identify(head, proto, sport, dport)
            if hit is not None:
                found.append(AppEvidence(hit[0], direction, frame, head[:16].hex(), hit[1][:DETAIL_MAX]))
    return found[0] if found else None
