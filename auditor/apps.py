"""Application protocol evidence from a connection's first payload bytes (SPEC §6).

Sans-IO and pure: the conversation core keeps the first APP_SNAP payload bytes of each direction of a
connection (and the frame they came in) and asks ``identify_connection`` once, when the connection
closes. A port is a claim; these bytes are the evidence. Every byte is hostile: nothing here is
evaluated, and ``detail`` is bounded and printable (the renderers still escape it).

Each signature (auditor/app_signatures/: Citrix, web and TLS, Windows and directory, infrastructure)
claims a payload only when the published framing of its protocol checks out on the bytes we have; the
ports never stand in for evidence. This module is the interface: the vocabulary, one direction's
identification and the joining of both directions; the evidence type, AppEvidence, is model.py's (one
class for both builds: this module and the signatures are compiled with the hot path when the install
can, setup.py, and auditor/capture/native.py chooses which build runs; the builder asks the build it
was compiled with).

Vocabulary: PROTOCOLS below; ``unknown`` when no payload was seen or none was recognised.
"""

from __future__ import annotations

from typing import Final

from auditor.app_signatures.common import APP_SNAP, DETAIL_MAX, Hit
from auditor.app_signatures.dispatch import TCP_TABLE, UDP_TABLE
from auditor.model import UNKNOWN, AppEvidence

__all__ = ["APP_SNAP", "DETAIL_MAX", "HEAD_MAX", "PROTOCOLS", "UNKNOWN", "AppEvidence", "identify",
           "identify_connection"]

HEAD_MAX: Final = 16
"""Payload bytes shown (in hex) in ``AppEvidence.head``."""

PROTOCOLS = ("ica", "cgp", "tls", "dtls", "quic", "http", "websocket", "ssh", "rdp", "smb", "dcerpc", "ldap",
             "cldap", "kerberos", "dns", "netbios-ns", "netbios-dgm", "ntp", "tds", "radius", "snmp", "syslog",
             "tftp", "dhcp")
"""Application protocols identification may name (besides UNKNOWN)."""

TCP: Final = 6
UDP: Final = 17


def identify(payload: bytes, proto: int, sport: int, dport: int) -> tuple[str, str] | None:
    """(protocol, detail) of one direction's first payload bytes, or None when not recognised.
    ``proto`` is the IP protocol (6 TCP, 17 UDP). The ports may only break a tie between signatures
    that share their first bytes, never stand in for evidence; none needs them today (LDAP and SNMP,
    which both open with a BER SEQUENCE, are told apart by their second element)."""
    if not payload:
        return None
    if proto == TCP:
        table = TCP_TABLE
    elif proto == UDP:
        table = UDP_TABLE
    else:
        return None
    # Every detail is built from _printable() pieces and ASCII literals, so it needs no further cleaning.
    for check in table[payload[0]]:
        hit = check(payload)
        if hit is not None:
            return hit if len(hit[1]) <= DETAIL_MAX else (hit[0], hit[1][:DETAIL_MAX])
    return None


# Pairs of different answers that are one protocol seen from both sides: (initiator's, responder's) ->
# the connection's. An HTTP request answered '101' became a WebSocket; one asking to upgrade that is
# answered otherwise stayed HTTP; a CGP tunnel carries ICA.
_PAIRS: Final = {("http", "websocket"): "websocket", ("websocket", "http"): "http", ("cgp", "ica"): "cgp",
                 ("ica", "cgp"): "cgp"}
_OWN_MIN: Final = 40
"""Characters of a direction's own detail kept when the other direction's is quoted beside it."""


def identify_connection(proto: int, orig_port: int, resp_port: int,
                        orig_head: bytes | None, orig_frame: tuple[int, int],
                        resp_head: bytes | None, resp_frame: tuple[int, int]) -> AppEvidence | None:
    """The connection's application protocol from both directions' first payload bytes (either may be
    None: no payload seen that way), or None when neither was recognised. Where both directions name
    the same protocol, the first bytes sent are the evidence; where they name different protocols that
    are not one exchange seen from both ends (_PAIRS), the responder's bytes win (a server's answer is
    the stronger evidence) and the detail says what the initiator's looked like."""
    orig = identify(orig_head, proto, orig_port, resp_port) if orig_head else None
    resp = identify(resp_head, proto, resp_port, orig_port) if resp_head else None
    if resp is None:
        return None if orig is None or orig_head is None else _evidence(orig, "orig", orig_frame, orig_head)
    if resp_head is None:  # (for the type checker: resp implies resp_head)
        return None
    if orig is None or orig_head is None:
        return _evidence(resp, "resp", resp_frame, resp_head)
    if orig[0] == resp[0]:
        if orig_frame <= resp_frame:
            return _evidence(orig, "orig", orig_frame, orig_head)
        return _evidence(resp, "resp", resp_frame, resp_head)
    joined = _PAIRS.get((orig[0], resp[0]))
    if joined == resp[0]:
        return _evidence(resp, "resp", resp_frame, resp_head, note=("request:", orig[1]))
    if joined is not None:
        return _evidence(orig, "orig", orig_frame, orig_head, joined, note=("answer:", resp[1]))
    return _evidence(resp, "resp", resp_frame, resp_head, note=("initiator sent", orig[0]))


def _evidence(hit: Hit, direction: str, frame: tuple[int, int], head: bytes, protocol: str | None = None,
              note: tuple[str, str] | None = None) -> AppEvidence:
    """The evidence of one direction; ``note`` (label, text) quotes the other direction after this one's
    own detail, which keeps at least _OWN_MIN characters of the DETAIL_MAX."""
    detail = hit[1]
    if note is not None:
        label, text = note
        room = DETAIL_MAX - min(len(detail), _OWN_MIN) - len(label) - 4
        quoted = f" ({label} {text[:max(0, room)]})"
        detail = detail[:DETAIL_MAX - len(quoted)] + quoted
    return AppEvidence(protocol or hit[0], direction, frame, head[:HEAD_MAX].hex(), detail[:DETAIL_MAX])
