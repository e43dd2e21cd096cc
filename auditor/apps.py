"""Application protocol evidence from a connection's first payload bytes (SPEC §6).

Sans-IO and pure: the conversation core keeps the first APP_SNAP payload bytes of each direction of a
connection (and the frame they came in) and asks ``identify_connection`` once, when the connection
closes. A port is a claim; these bytes are the evidence. Every byte is hostile: nothing here is
evaluated, and ``detail`` is bounded and printable (the renderers still escape it).

A signature claims a payload only when the published framing of its protocol checks out on the bytes
we have (several fields, lengths consistent with each other); an ambiguous or short payload is None,
because an unrecognised payload never changes a verdict and a false claim does (``protocol-mismatch``).
Each check is dispatched on the payload's first byte (one tuple lookup), so a connection costs a few
function calls. The ports never stand in for evidence.

Vocabulary: PROTOCOLS below; ``unknown`` when no payload was seen or none was recognised.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

APP_SNAP = 64
"""Payload bytes kept per direction of a connection for identification."""
UNKNOWN = "unknown"
DETAIL_MAX = 80
"""Characters of ``AppEvidence.detail`` at most."""
HEAD_MAX = 16
"""Payload bytes shown (in hex) in ``AppEvidence.head``."""

PROTOCOLS = ("ica", "cgp", "tls", "dtls", "quic", "http", "websocket", "ssh", "rdp", "smb", "dcerpc", "ldap",
             "cldap", "kerberos", "dns", "netbios-ns", "netbios-dgm", "ntp", "tds", "radius", "snmp", "syslog",
             "tftp", "dhcp")
"""Application protocols identification may name (besides UNKNOWN)."""

TCP = 6
UDP = 17


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


Hit = tuple[str, str]
Check = Callable[[bytes], Hit | None]

# Printable ASCII stays, everything else (controls, DEL, bytes >= 0x80) becomes '.'.
_PRINTABLE = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


# Byte classes, tested with bytes.translate (C speed) rather than a Python loop over the bytes.
_CONTROL = bytes(range(0x20)) + b"\x7f"
_NOT_VISIBLE = bytes(range(0x20)) + bytes(range(0x7F, 0x100))
_NOT_TOKEN = bytes(range(0x21)) + bytes(range(0x7F, 0x100))
_NOT_NETBIOS = bytes(b for b in range(256) if not 0x41 <= b <= 0x50)


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


# --- Citrix: ICA and CGP -----------------------------------------------------------------------------
# Neither is publicly specified and Wireshark has no dissector. What public descriptions give: Citrix
# CTX104147 explains CGP (Session Reliability, 2598) as the client tunnelling ICA inside CGP to the XTE
# service, which relays it to the ICA listener on 1494, but shows no bytes; the open-source nDPI Citrix
# detector matches, at the start of the first payload after the handshake (either direction), the
# 6-byte ICA detect string ('ICA' NUL after two marker bytes, 7F 7F as SPEC §6 and Citrix troubleshooting
# notes give them) and the 7-byte 1A 'CGP/01'. That the ICA server speaks first is SPEC §6's statement;
# that the client echoes the detect string, or that the CGP server answers with its own CGP/01 header,
# no public description we found confirms. So either direction's bytes are evidence, and neither
# signature needs the other direction.

def _ica(p: bytes) -> Hit | None:
    return ("ica", "ICA detect string") if p.startswith(b"\x7f\x7fICA\x00") else None


def _cgp(p: bytes) -> Hit | None:
    return ("cgp", "CGP/01 header") if p.startswith(b"\x1aCGP/01") else None


# --- SSH: RFC 4253 §4.2 identification string 'SSH-protoversion-softwareversion SP comments CR LF' ----

def _ssh(p: bytes) -> Hit | None:
    if p.startswith((b"SSH-2.0-", b"SSH-1.99-", b"SSH-1.5-")):
        return "ssh", _printable(_line(p))
    return None


# --- TLS: RFC 8446 §5.1 / RFC 5246 §6.2.1 record header: type, legacy version, length ----------------

_TLS_RECORD = {0x14: "ChangeCipherSpec", 0x15: "alert", 0x16: "handshake", 0x17: "application data"}
_TLS_VERSION = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
# RFC 8446 §4: handshake types a connection's first record may carry.
_TLS_HANDSHAKE = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 11: "Certificate", 12: "ServerKeyExchange",
                  13: "CertificateRequest", 14: "ServerHelloDone", 16: "ClientKeyExchange", 20: "Finished"}
_TLS_MAX_RECORD = 2**14 + 2048  # RFC 5246 §6.2.3: TLSCiphertext.length


def _tls(p: bytes) -> Hit | None:
    if len(p) < 5:
        return None
    version = (p[1] << 8) | p[2]
    length = (p[3] << 8) | p[4]
    if version not in _TLS_VERSION or length == 0 or length > _TLS_MAX_RECORD:
        return None
    kind = p[0]
    if kind == 0x16:
        if len(p) < 6:
            return None
        msg = _TLS_HANDSHAKE.get(p[5])
        if msg is None:
            # An encrypted first handshake record (renegotiation seen mid-stream) is not claimed.
            return None
        if p[5] in (1, 2) and len(p) >= 11:
            hello = (p[9] << 8) | p[10]
            if hello not in _TLS_VERSION:
                return None
            return "tls", f"{msg} {_TLS_VERSION[hello]}"
        return "tls", msg
    if kind == 0x14 and length != 1:
        return None
    if kind == 0x15 and length < 2:
        return None
    return "tls", f"{_TLS_RECORD[kind]} ({_TLS_VERSION[version]} record)"


def _sslv2(p: bytes) -> Hit | None:
    """An SSL 2.0-compatible CLIENT-HELLO (RFC 6101 appendix E.1; RFC 5246 appendix E.2): a 2-byte header
    with the top bit set, msg type 1, version, then cipher-spec, session-id and challenge lengths that
    add up to the record length."""
    if len(p) < 11 or p[2] != 1:
        return None
    version = (p[3] << 8) | p[4]
    if version != 0x0002 and version not in _TLS_VERSION:
        return None
    specs = (p[5] << 8) | p[6]
    session = (p[7] << 8) | p[8]
    challenge = (p[9] << 8) | p[10]
    length = ((p[0] & 0x7F) << 8) | p[1]
    if specs == 0 or specs % 3 or session not in (0, 16, 32) or not 16 <= challenge <= 32:
        return None
    if length != 9 + specs + session + challenge:
        return None
    return "tls", f"SSLv2-compatible ClientHello {_TLS_VERSION.get(version, 'SSL 2.0')}"


# --- DTLS: RFC 6347 §4.1 / RFC 9147 §4: type, version, epoch, 48-bit sequence, length ---------------

_DTLS_VERSION = {0xFEFF: "DTLS 1.0", 0xFEFD: "DTLS 1.2", 0xFEFC: "DTLS 1.3"}
_DTLS_HANDSHAKE = {1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest", 11: "Certificate"}


def _dtls(p: bytes) -> Hit | None:
    if len(p) < 13:
        return None
    version = (p[1] << 8) | p[2]
    name = _DTLS_VERSION.get(version)
    if name is None:
        return None
    epoch = (p[3] << 8) | p[4]
    length = (p[11] << 8) | p[12]
    if length == 0 or length > _TLS_MAX_RECORD or epoch > 0xFF:
        return None
    if len(p) < APP_SNAP and 13 + length > len(p):
        return None  # a whole datagram shorter than its first record
    kind = p[0]
    if kind == 0x16 and epoch == 0:
        if len(p) < 14 or p[13] not in _DTLS_HANDSHAKE:
            return None
        return "dtls", f"{_DTLS_HANDSHAKE[p[13]]} {name} epoch 0"
    if kind == 0x14 and length != 1:
        return None
    return "dtls", f"{_TLS_RECORD[kind]} {name} epoch {epoch}"


# --- QUIC: RFC 9000 §17.2 long header (form and fixed bits set, 32-bit version, connection IDs) ------

def _quic(p: bytes) -> Hit | None:
    if len(p) < 7:
        return None
    version = int.from_bytes(p[1:5], "big")
    if version == 1:
        name = "QUIC v1"
    elif version == 0x6B3343CF:
        name = "QUIC v2"  # RFC 9369
    elif version >> 8 == 0xFF0000 and 29 <= (version & 0xFF) <= 34:
        name = f"QUIC draft-{version & 0xFF}"
    else:
        return None
    dcid = p[5]
    if dcid > 20 or 6 + dcid >= len(p) or p[6 + dcid] > 20:
        return None
    types = ("Retry", "Initial", "0-RTT", "Handshake") if version == 0x6B3343CF else \
        ("Initial", "0-RTT", "Handshake", "Retry")  # RFC 9369 §3.2 renumbered them
    kind = types[(p[0] >> 4) & 3]
    return "quic", f"{name} {kind}"


# --- HTTP: RFC 9112 §3 request-line 'method SP request-target SP HTTP-version', §4 status-line --------

_HTTP_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
                           # WebDAV (RFC 4918, 3253, 5323) and RPC over HTTP (MS-RPCH §2.1.2.1)
                           b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"REPORT",
                           b"SEARCH", b"RPC_IN_DATA", b"RPC_OUT_DATA"))


def _target_ok(target: bytes, method: bytes) -> bool:
    if not target:
        return False
    if _has(target, _NOT_TOKEN):
        return False
    if target[0] == 0x2F or target == b"*":  # origin-form, asterisk-form
        return True
    if method == b"CONNECT":  # authority-form 'host:port'
        return b":" in target
    scheme, sep, _ = target.partition(b"://")  # absolute-form
    return bool(sep) and scheme.isalpha()


def _websocket_upgrade(p: bytes) -> bool:
    # RFC 6455 §4.1: the opening handshake is an HTTP/1.1 GET with 'Upgrade: websocket'.
    return b"upgrade: websocket" in p.lower()


def _http_request(p: bytes) -> Hit | None:
    space = p.find(b" ", 0, 14)
    if space <= 0 or p[:space] not in _HTTP_METHODS:
        return None
    method = p[:space]
    line = _line(p)
    cut = len(line) == len(p)  # no line end in the bytes kept
    end = line.find(b" ", space + 1)
    if end < 0:
        # RFC 1945 §4.1 Simple-Request 'GET SP Request-URI CRLF' (HTTP/0.9), or a request-target that
        # runs past the bytes kept and is still a clean token.
        if (cut and len(p) < APP_SNAP) or not _target_ok(line[space + 1:], method):
            return None
        if not cut and method != b"GET":
            return None
    else:
        version = line[end + 1:]
        if not _target_ok(line[space + 1:end], method):
            return None
        if cut:
            if not (version and (b"HTTP/1.1".startswith(version) or b"HTTP/1.0".startswith(version))):
                return None
        elif version not in (b"HTTP/1.1", b"HTTP/1.0"):
            return None
    if method == b"GET" and _websocket_upgrade(p):
        return "websocket", _printable(line)
    return "http", _printable(line)


def _http_response(p: bytes) -> Hit | None:
    # 'HTTP/1.1 101' is the WebSocket handshake answer (RFC 6455 §4.2.2) unless it names another upgrade
    # (h2c, RFC 7540 §3.2, or TLS, RFC 2817).
    if len(p) < 12 or not p.startswith(b"HTTP/1.") or p[7] not in b"01" or p[8] != 0x20:
        return None
    if not (p[9:12].isdigit() and 0x31 <= p[9] <= 0x35) or (len(p) > 12 and p[12] not in b" \r\n"):
        return None
    line = _line(p)
    if p[9:12] == b"101":
        lower = p.lower()
        if b"upgrade: h2c" not in lower and b"upgrade: tls" not in lower:
            return "websocket", _printable(line)
    return "http", _printable(line)


def _http2(p: bytes) -> Hit | None:
    # RFC 9113 §3.4: the prior-knowledge client connection preface.
    return ("http", "HTTP/2 connection preface") if p.startswith(b"PRI * HTTP/2.0\r\n") else None


# --- RDP: TPKT (RFC 1006 §6) + X.224 Connection Request/Confirm (ITU-T X.224 §13.3/13.4), MS-RDPBCGR
# §2.2.1.1/2.2.1.2: the variable part is empty, a 'Cookie: mstshash=' / routing token, or an RDP
# negotiation structure. An ISO transport over TCP with TSAP parameters (S7, MMS) is not RDP.

_RDP_NEG = {0xE0: (0x01,), 0xD0: (0x02, 0x03)}


def _rdp(p: bytes) -> Hit | None:
    if len(p) < 11 or p[1] != 0:
        return None
    length = (p[2] << 8) | p[3]
    code = p[5]
    if length < 11 or p[4] != length - 5 or code not in _RDP_NEG or p[10] != 0:
        return None
    name = "X.224 Connection Request" if code == 0xE0 else "X.224 Connection Confirm"
    rest = p[11:length]
    if not rest:
        return "rdp", name
    if rest.startswith(b"Cookie: ") and code == 0xE0:
        return "rdp", f"{name}, {_printable(_line(rest[8:]), 40)}"
    if rest[0] in _RDP_NEG[code] and (len(rest) < 4 or rest[2:4] == b"\x08\x00"):
        return "rdp", name
    return None


# --- SMB: NetBIOS session message (RFC 1002 §4.3.1) or SMB2 direct TCP (MS-SMB2 §2.1), then the
# SMB1 (MS-CIFS §2.2.3.1), SMB2 (MS-SMB2 §2.2.1), transform (§2.2.41) or compression (§2.2.42) header.

_SMB2_COMMANDS = ("NEGOTIATE", "SESSION_SETUP", "LOGOFF", "TREE_CONNECT", "TREE_DISCONNECT", "CREATE", "CLOSE",
                  "FLUSH", "READ", "WRITE", "LOCK", "IOCTL", "CANCEL", "ECHO", "QUERY_DIRECTORY", "CHANGE_NOTIFY",
                  "QUERY_INFO", "SET_INFO", "OPLOCK_BREAK")


_SMB1_COMMANDS = {0x72: "Negotiate", 0x73: "Session Setup AndX", 0x75: "Tree Connect AndX", 0x25: "Trans",
                  0x32: "Trans2", 0xA2: "NT Create AndX", 0x2E: "Read AndX", 0x2F: "Write AndX"}


def _nbss_name(p: bytes, i: int) -> int:
    """Index after a first-level-encoded NetBIOS name at ``p[i]`` (RFC 1001 §14.1: length 32, 'A'-'P'
    half-octets, then the empty root label), or -1."""
    if i + 34 > len(p) or p[i] != 0x20 or p[i + 33] != 0:
        return -1
    return -1 if _has(p[i + 1:i + 33], _NOT_NETBIOS) else i + 34


def _smb(p: bytes) -> Hit | None:
    if len(p) < 8:
        return None
    if p[0] == 0x81:
        # NetBIOS SESSION REQUEST (RFC 1002 §4.3.2) on 139: called and calling names, then SMB follows.
        # The calling name ends past the bytes kept (72 > APP_SNAP): what is visible of it must be encoded.
        if p[1] == 0 and (p[2] << 8 | p[3]) == 68 and _nbss_name(p, 4) == 38 and p[38:39] == b"\x20" \
                and not _has(p[39:71], _NOT_NETBIOS) and p[71:72] in (b"", b"\x00"):
            return "smb", "NetBIOS session request"
        return None
    length = (p[1] << 16) | (p[2] << 8) | p[3]  # 17 bits under NetBIOS, 24 under direct TCP
    magic = p[4:8]
    if magic == b"\xffSMB":
        if length < 32 or len(p) < 9:
            return None
        return "smb", f"SMB1 {_SMB1_COMMANDS.get(p[8], f'command 0x{p[8]:02x}')}"
    if magic == b"\xfeSMB":
        if length < 64 or len(p) < 18 or p[8:10] != b"\x40\x00":
            return None
        command = p[16] | (p[17] << 8)
        name = _SMB2_COMMANDS[command] if command < len(_SMB2_COMMANDS) else None
        return ("smb", f"SMB2 {name}") if name else None
    if magic in (b"\xfdSMB", b"\xfcSMB"):
        return ("smb", "SMB3 transform" if magic == b"\xfdSMB" else "SMB3 compressed") if length >= 52 else None
    return None


# --- NetBIOS datagram service: RFC 1002 §4.4.1 header (type 0x10-0x12 data, 0x13 error, 0x14-0x16 query;
# flags with the four high bits zero; id; source IP and port; then, for data, length, offset and the
# first-level-encoded source name). Windows browser announcements travel this way on udp/138.

_NBDGM_TYPES = {0x10: "direct unique", 0x11: "direct group", 0x12: "broadcast", 0x13: "error", 0x14: "query request",
                0x15: "positive query response", 0x16: "negative query response"}


def _netbios_dgm(p: bytes) -> Hit | None:
    if len(p) < 11 or p[1] & 0xF0:
        return None
    kind = p[0]
    if kind <= 0x12:
        if len(p) < 14 + 34 or _nbss_name(p, 14) != 48:
            return None
        length = (p[10] << 8) | p[11]
        if length < 68 or (p[12] << 8 | p[13]) > length:
            return None
    elif kind == 0x13:
        if len(p) != 11 or p[10] not in (0x82, 0x83, 0x84):
            return None
    elif len(p) < 10 + 34 or _nbss_name(p, 10) != 44:
        return None
    return "netbios-dgm", f"NetBIOS datagram {_NBDGM_TYPES[kind]}"


# --- DCE/RPC connection-oriented PDU header (C706 §12.6.3.1; MS-RPCE §2.2.2.13): version 5.0/5.1,
# PDU type, flags, data representation, frag_length >= 16 -----------------------------------------

_DCERPC_TYPES = {0: "request", 2: "response", 3: "fault", 11: "bind", 12: "bind_ack", 13: "bind_nak",
                 14: "alter_context", 15: "alter_context_resp", 16: "auth3"}


def _dcerpc(p: bytes) -> Hit | None:
    if len(p) < 16 or p[1] not in (0, 1) or p[2] not in _DCERPC_TYPES:
        return None
    if p[4] not in (0x10, 0x00) or p[5] not in (0x00, 0x01, 0x02, 0x03) or p[6:8] != b"\x00\x00":
        return None
    little = p[4] == 0x10
    frag = int.from_bytes(p[8:10], "little" if little else "big")
    auth = int.from_bytes(p[10:12], "little" if little else "big")
    if frag < 16 or (auth and auth + 24 > frag):
        return None
    return "dcerpc", f"DCE/RPC {_DCERPC_TYPES[p[2]]}"


# --- LDAP: RFC 4511 §4.1.1 LDAPMessage ::= SEQUENCE { messageID INTEGER, protocolOp [APPLICATION n] ... }
# CLDAP is the same message over UDP (RFC 1798 as Active Directory uses it, MS-ADTS §6.3.3).

_LDAP_OPS = {0x60: "bindRequest", 0x61: "bindResponse", 0x42: "unbindRequest", 0x63: "searchRequest",
             0x64: "searchResEntry", 0x65: "searchResDone", 0x66: "modifyRequest", 0x67: "modifyResponse",
             0x68: "addRequest", 0x69: "addResponse", 0x4A: "delRequest", 0x6B: "delResponse",
             0x6C: "modDNRequest", 0x6D: "modDNResponse", 0x6E: "compareRequest", 0x6F: "compareResponse",
             0x50: "abandonRequest", 0x73: "searchResRef", 0x77: "extendedReq", 0x78: "extendedResp",
             0x79: "intermediateResponse"}


def _ldap_op(p: bytes) -> str | None:
    seq = _ber_length(p, 1)
    if seq is None:
        return None
    seq_len, i = seq
    if seq_len < 5 or (len(p) < APP_SNAP and i + seq_len > len(p)):
        return None  # a first message shorter than the bytes kept arrives whole
    msgid = _ber_int(p, i)
    if msgid is None or msgid[0] < 0:
        return None
    j = msgid[1]
    if j >= len(p):
        return None
    op = _LDAP_OPS.get(p[j])
    if op is None:
        return None
    op_len = _ber_length(p, j + 1)
    if op_len is None or op_len[1] + op_len[0] > i + seq_len:
        return None
    return op


def _ldap(p: bytes) -> Hit | None:
    op = _ldap_op(p)
    return ("ldap", f"LDAP {op}") if op else None


def _cldap(p: bytes) -> Hit | None:
    op = _ldap_op(p)
    return ("cldap", f"CLDAP {op}") if op else None


# --- SNMP: RFC 3416 §3 / RFC 1157 §4: SEQUENCE { version INTEGER (0 v1, 1 v2c), community OCTET STRING,
# PDU [0..8] }; RFC 3412 §6 (v3): SEQUENCE { msgVersion 3, msgGlobalData SEQUENCE { msgID, ...} }.
# The community is a password: it never goes into the detail.

_SNMP_PDUS = ("GetRequest", "GetNextRequest", "Response", "SetRequest", "Trap", "GetBulkRequest",
              "InformRequest", "SNMPv2-Trap", "Report")


def _snmp(p: bytes) -> Hit | None:
    seq = _ber_length(p, 1)
    if seq is None:
        return None
    version = _ber_int(p, seq[1], 1)
    if version is None:
        return None
    i = version[1]
    if version[0] in (0, 1):
        if i + 2 > len(p) or p[i] != 0x04:
            return None
        community = _ber_length(p, i + 1)
        if community is None:
            return None
        j = community[1] + community[0]
        if j >= len(p):
            return None  # the PDU tag is past the bytes kept: not enough to claim
        if not 0xA0 <= p[j] <= 0xA8:
            return None
        return "snmp", f"SNMP{'v1' if version[0] == 0 else 'v2c'} {_SNMP_PDUS[p[j] - 0xA0]}"
    if version[0] == 3:
        if i + 2 > len(p) or p[i] != 0x30:
            return None
        header = _ber_length(p, i + 1)
        if header is None or _ber_int(p, header[1]) is None:
            return None
        return "snmp", "SNMPv3"
    return None


def _ber_sequence(p: bytes) -> Hit | None:
    """0x30 first: an LDAP message, or an SNMP message (their second element tells them apart: LDAP's
    protocolOp is an APPLICATION tag, SNMP's is the community OCTET STRING or the v3 header)."""
    return _ldap(p) or _snmp(p)


def _ber_sequence_udp(p: bytes) -> Hit | None:
    return _cldap(p) or _snmp(p)


# --- Kerberos: RFC 4120 §5.4.1 KDC-REQ (pvno [1], msg-type [2]), §5.4.2 KDC-REP and §5.9.1 KRB-ERROR
# (pvno [0], msg-type [1]); over TCP each message follows a 4-byte length (§7.2.2), over UDP it is bare.

_KRB_MESSAGES = {0x6A: "AS-REQ", 0x6B: "AS-REP", 0x6C: "TGS-REQ", 0x6D: "TGS-REP", 0x6E: "AP-REQ", 0x6F: "AP-REP",
                 0x7E: "KRB-ERROR"}


def _krb_message(p: bytes, i: int) -> tuple[str, int] | None:
    """(message name, total length) of the Kerberos message at ``p[i]``."""
    if i >= len(p):
        return None
    name = _KRB_MESSAGES.get(p[i])
    outer = _ber_length(p, i + 1)
    if name is None or outer is None:
        return None
    j = outer[1]
    if j + 2 > len(p) or p[j] != 0x30:
        return None
    inner = _ber_length(p, j + 1)
    if inner is None or inner[1] + inner[0] > j + outer[0]:
        return None
    k = inner[1]
    # pvno 5 is [1] in KDC-REQ and [0] in KDC-REP, AP-REQ/AP-REP and KRB-ERROR; msg-type follows it
    # with the next tag and repeats the APPLICATION tag number.
    if k + 10 > len(p) or p[k] not in (0xA0, 0xA1) or p[k + 1:k + 5] != b"\x03\x02\x01\x05":
        return None
    if p[k + 5] != p[k] + 1 or p[k + 6:k + 9] != b"\x03\x02\x01" or p[k + 9] != p[i] & 0x1F:
        return None
    return name, outer[1] - i + outer[0]


def _kerberos_udp(p: bytes) -> Hit | None:
    found = _krb_message(p, 0)
    return ("kerberos", found[0]) if found else None


def _kerberos_tcp(p: bytes) -> Hit | None:
    if len(p) < 6 or p[0] & 0x80:
        return None
    found = _krb_message(p, 4)
    if found is None or int.from_bytes(p[:4], "big") != found[1]:
        return None
    return "kerberos", found[0]


# --- DNS: RFC 1035 §4.1.1 header (ID, QR/opcode/AA/TC/RD/RA/Z/AD/CD/RCODE, four counts), §4.1.2
# question; over TCP a 2-byte length first (§4.2.2). NetBIOS name service (RFC 1002 §4.2) shares the
# format with first-level-encoded 32-byte names (RFC 1001 §14.1).

_DNS_HEADER = struct.Struct(">HHHHH")
_DNS_OPCODES = {0: "query", 1: "inverse query", 2: "status", 4: "notify", 5: "update"}
_DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
              35: "NAPTR", 43: "DS", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 252: "AXFR", 251: "IXFR", 255: "ANY"}
_DNS_CLASSES = (1, 3, 4, 254, 255)
_NBNS_OPCODES = {0: "query", 5: "registration", 6: "release", 7: "WACK", 8: "refresh", 9: "refresh"}


def _dns_message(p: bytes, at: int, tcp: bool) -> Hit | None:
    end = len(p)
    if end < at + 17:
        return None
    flags, qd, an, ns, ar = _DNS_HEADER.unpack_from(p, at + 2)
    response = bool(flags & 0x8000)
    opcode = (flags >> 11) & 0xF
    rcode = flags & 0xF
    if flags & 0x0040 or an > 256 or ns > 256 or ar > 256:  # the Z bit is zero
        return None
    # One question in unicast DNS (RFC 9619); an mDNS query may ask several, and an mDNS announcement
    # asks none and answers (RFC 6762 §6, §18.6): then the first name is the first record's owner.
    if not (1 <= qd <= 16 or (qd == 0 and response and an + ns + ar)):
        return None
    # Walk the first name in the bytes kept: labels of 1..63 octets (no compression pointer can
    # precede the first name), then its TYPE and CLASS when they are still inside the bytes kept.
    i = at + 12
    labels: list[bytes] = []
    complete = False
    while i < end:
        n = p[i]
        if n == 0:
            complete = True
            break
        if n > 63:
            return None
        if i + 1 + n > end and not labels and n == 32:
            return None  # cut inside a first label of NetBIOS length: DNS or NetBIOS cannot be told
        labels.append(p[i + 1:i + 1 + n])
        i += 1 + n
    if not complete and not labels:
        return None
    if _has(b"".join(labels), _CONTROL):
        return None  # names are text (UTF-8 in mDNS instance names); control bytes are noise
    qtype = -1
    if complete and i + 5 <= end:
        qtype = (p[i + 1] << 8) | p[i + 2]
        qclass = ((p[i + 3] << 8) | p[i + 4]) & 0x7FFF  # mDNS: the unicast-response / cache-flush bit
        if qclass not in _DNS_CLASSES or qtype == 0:
            return None
    # NetBIOS name service: one 32-octet label of 'A'..'P' half-octets. A 32-octet label of capitals
    # outside that range is a broken NetBIOS name, not a host name: not claimed.
    if labels and len(labels[0]) == 32 and all(0x40 <= b <= 0x5A for b in labels[0]) and not tcp:
        if opcode not in _NBNS_OPCODES or _has(labels[0], _NOT_NETBIOS):
            return None
        name = bytes(((labels[0][k] - 0x41) << 4) | (labels[0][k + 1] - 0x41) for k in range(0, 30, 2))
        kind = "response" if response else _NBNS_OPCODES[opcode]
        return "netbios-ns", f"NBNS {kind} {_printable(name.rstrip(b' '), 40)}"
    if opcode not in _DNS_OPCODES or (not response and rcode):
        return None
    name = b".".join(labels) or b"."
    kind = ("response" if qd else "announcement") if response else _DNS_OPCODES[opcode]
    qt = f" {_DNS_TYPES.get(qtype, str(qtype))}" if qtype >= 0 else ""
    return "dns", f"DNS {kind}{qt} {_printable(name, 60)}"


def _dns_udp(p: bytes) -> Hit | None:
    return _dns_message(p, 0, False)


def _dns_tcp(p: bytes) -> Hit | None:
    if len(p) < 19:
        return None
    length = (p[0] << 8) | p[1]
    if length < 17 or (len(p) < APP_SNAP and length + 2 < len(p)):
        return None
    return _dns_message(p, 2, True)


# --- NTP: RFC 5905 §7.3 (48-byte header: LI, VN, mode; stratum, poll, precision; root delay and
# dispersion as NTP short format), §7.5 extension fields / MAC; RFC 9327 mode 6 control messages. ----

_NTP_MODES = {1: "symmetric active", 2: "symmetric passive", 3: "client", 4: "server", 5: "broadcast"}


def _ntp(p: bytes) -> Hit | None:
    n = len(p)
    if n < 12:
        return None
    mode = p[0] & 7
    version = (p[0] >> 3) & 7
    if not 1 <= version <= 4:
        return None
    if mode == 6:
        # RFC 9327 §2: R/E/M bits and opcode (1-12, 31), sequence, status, association, offset, count (<= 468)
        opcode = p[1] & 0x1F
        if p[0] >> 6 or not (1 <= opcode <= 12 or opcode == 31):
            return None
        count = (p[10] << 8) | p[11]
        if count > 468:
            return None
        if p[1] & 0x80 == 0:  # a request: no error or more bit, status and offset zero
            if p[1] & 0x60 or p[4:6] != b"\0\0" or p[8:10] != b"\0\0" or (n < APP_SNAP and n < 12 + count):
                return None
        elif n < APP_SNAP and not 12 + count <= n <= 12 + count + 3 + 24:  # data, padding, optional MAC
            return None
        elif n >= APP_SNAP and (count + 12 + 3 + 24 < n or _has(p[12:], _NOT_VISIBLE)):
            return None  # cut by the snap: only a read-variables answer, which is text ('version=...')
        return "ntp", f"NTPv{version} control"
    if mode == 7:
        # ntpd's private mode (ntpdc; the 'monlist' of reflection attacks): R/M bits, VN, mode; A bit and
        # sequence; implementation 0/2/3; request code; error and item count; item size (ntp_request.h).
        if p[2] not in (0, 2, 3) or p[3] > 45 or p[4] >> 4 > 7 or (p[6] >> 4) or ((p[6] << 8) | p[7]) > 500:
            return None
        if p[0] & 0x80 == 0 and (p[4] >> 4 or (n < APP_SNAP and n % 4)):
            return None  # a request carries no error code and is padded to 4 octets
        return "ntp", f"NTPv{version} private (mode 7)"
    if mode not in _NTP_MODES or not (n in (48, 52) or n >= APP_SNAP):
        return None
    stratum, poll, precision = p[1], p[2], p[3]
    if stratum > 16 or poll > 17 or not (precision == 0 or precision >= 0xE0):
        return None
    if int.from_bytes(p[4:8], "big") > 0x00200000 or int.from_bytes(p[8:12], "big") > 0x00200000:
        return None  # root delay or dispersion past 32 s: no synchronising peer sends that
    return "ntp", f"NTPv{version} {_NTP_MODES[mode]}"


# --- TDS (SQL Server): MS-TDS §2.2.3.1 packet header (type, status, length, SPID, packet id, window 0)
# and the first message: PRELOGIN (§2.2.6.5: option tokens, VERSION first), LOGIN7 (§2.2.6.4) or a
# tabular response to either. ---------------------------------------------------------------------

_TDS_TYPES = {0x12: "PRELOGIN", 0x10: "LOGIN7", 0x04: "response"}
_TDS_STATUS = frozenset((0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x10, 0x11))
_TDS_TOKENS = frozenset((0x00, 0x79, 0x81, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xD1, 0xE3, 0xED, 0xFD, 0xFE, 0xFF))


def _tds(p: bytes) -> Hit | None:
    if len(p) < 14 or p[1] not in _TDS_STATUS or p[7] != 0:
        return None
    length = (p[2] << 8) | p[3]
    if length < 14 or (len(p) < APP_SNAP and length != len(p)) or (len(p) >= APP_SNAP and length < len(p)):
        return None
    kind = p[0]
    if kind in (0x12, 0x04) and p[8] == 0x00:
        # PRELOGIN option 0 (VERSION): offset, length 6, inside the packet
        offset = (p[9] << 8) | p[10]
        if (p[11] << 8 | p[12]) != 6 or offset < 6 or offset + 6 > length - 8:
            return None
        return "tds", f"TDS {'PRELOGIN' if kind == 0x12 else 'PRELOGIN response'}"
    if kind == 0x10:
        if len(p) < 16 or int.from_bytes(p[8:12], "little") != length - 8:
            return None
        return "tds", "TDS LOGIN7"
    if kind == 0x04 and p[8] in _TDS_TOKENS:
        return "tds", "TDS response"
    return None


# --- RADIUS: RFC 2865 §3 (code, identifier, length 20..4096, authenticator, attributes), RFC 2866
# accounting, RFC 5176 dynamic authorization, RFC 5997 Status-Server. -----------------------------

_RADIUS_CODES = {1: "Access-Request", 2: "Access-Accept", 3: "Access-Reject", 4: "Accounting-Request",
                 5: "Accounting-Response", 11: "Access-Challenge", 12: "Status-Server", 13: "Status-Client",
                 40: "Disconnect-Request", 41: "Disconnect-ACK", 42: "Disconnect-NAK", 43: "CoA-Request",
                 44: "CoA-ACK", 45: "CoA-NAK"}
_RADIUS_LONG = frozenset((1, 2, 3, 4, 11, 40, 43))
"""Codes whose packets commonly exceed the bytes kept (requests, and answers that carry attributes)."""


def _radius(p: bytes) -> Hit | None:
    n = len(p)
    if n < 20:
        return None
    length = (p[2] << 8) | p[3]
    if length < 20 or length > 4096 or (n < APP_SNAP and length != n) or (n >= APP_SNAP and length < n):
        return None
    # Attributes (RFC 2865 §5): type 1-255, length >= 3 (no empty values), each inside the packet. A whole datagram's
    # attributes chain exactly to its length; one cut by the snap needs two whole attributes of the
    # assigned ranges (1-127 and the extended 241-246, RFC 6929), or a whole User-Name.
    i, whole, plausible = 20, 0, True
    end = min(n, length)
    while i + 2 <= end:
        kind, a_len = p[i], p[i + 1]
        if kind == 0 or a_len < 3 or i + a_len > length:
            return None
        if i + a_len > end:
            break
        whole += 1
        plausible = plausible and (kind < 128 or 241 <= kind <= 246)
        i += a_len
    if length == n:
        if i != end:
            return None
    elif p[0] not in _RADIUS_LONG or not ((whole >= 2 and plausible) or (whole >= 1 and p[20] == 1 and p[21] > 2
              and not _has(p[22:20 + p[21]], _NOT_VISIBLE))):
        return None
    return "radius", f"RADIUS {_RADIUS_CODES[p[0]]}"


# --- syslog: RFC 5424 §6.2 '<PRI>VERSION SP', RFC 3164 §4.1 '<PRI>TIMESTAMP' ('Mmm dd hh:mm:ss') or a
# tag; over TCP optionally RFC 6587 §3.4.1 octet counting 'LEN SP <PRI>'. PRI is 0..191. ------------

_MONTHS = (b"Jan ", b"Feb ", b"Mar ", b"Apr ", b"May ", b"Jun ", b"Jul ", b"Aug ", b"Sep ", b"Oct ", b"Nov ", b"Dec ")


def _syslog(p: bytes) -> Hit | None:
    close = p.find(b">", 1, 5)
    if close < 2:
        return None
    pri = p[1:close]
    if not pri.isdigit() or (len(pri) > 1 and pri[0] == 0x30) or int(pri) > 191:
        return None
    rest = p[close + 1:close + 5]
    if rest[:2] == b"1 ":
        form = "RFC 5424"
    elif rest in _MONTHS or (len(rest) == 4 and rest.isdigit() and p[close + 5:close + 6] == b"-"):
        form = "RFC 3164"
    elif (rest[:1].isalpha() or (rest[:1] == b"%" and rest[1:2].isalpha())) and len(p) >= close + 9 \
            and not _has(p[close + 1:close + 17], _NOT_VISIBLE):
        form = "BSD"  # a tag or host name first; '%FACILITY-SEVERITY-MNEMONIC' on Cisco devices
    else:
        return None
    facility, severity = divmod(int(pri), 8)
    return "syslog", f"syslog {form} facility {facility} severity {severity}"


def _syslog_tcp(p: bytes) -> Hit | None:
    if p[:1] == b"<":
        return _syslog(p)
    space = p.find(b" ", 1, 7)
    if space > 0 and p[:space].isdigit() and p[space + 1:space + 2] == b"<":
        return _syslog(p[space + 1:])
    return None


# --- TFTP: RFC 1350 §5 RRQ/WRQ 'opcode filename 0 mode 0' (mode netascii/octet/mail), RFC 2347 options.

_TFTP_MODES = (b"netascii", b"octet", b"mail")


def _tftp(p: bytes) -> Hit | None:
    if len(p) < 4 or p[1] not in (1, 2):
        return None
    end = p.find(b"\x00", 2)
    name = p[2:end] if end >= 0 else p[2:]
    if not name or _has(name, _NOT_VISIBLE):
        return None
    if end < 0:
        if len(p) < APP_SNAP:
            return None
    else:
        mode_end = p.find(b"\x00", end + 1)
        mode = p[end + 1:mode_end if mode_end >= 0 else len(p)].lower()
        if mode_end >= 0 and mode not in _TFTP_MODES:
            return None
        if mode_end < 0 and (len(p) < APP_SNAP or not any(m.startswith(mode) for m in _TFTP_MODES)):
            return None
    return "tftp", f"TFTP {'read' if p[1] == 1 else 'write'} {_printable(name, 60)}"


# --- DHCP/BOOTP: RFC 2131 §2 fixed header: op 1/2, htype 1 (Ethernet), hlen 6, hops, ..., flags with only
# the broadcast bit, chaddr padded with zeros after the 6-byte MAC. The magic cookie (RFC 2132 §2) sits
# at offset 236, beyond the bytes kept, so the header has to carry the evidence.

def _dhcp(p: bytes) -> Hit | None:
    if len(p) < 44 or p[1] != 1 or p[2] != 6 or p[3] > 16 or p[10] & 0x7F or p[11]:
        return None
    if any(p[34:44]):
        return None
    return "dhcp", "BOOTREQUEST" if p[0] == 1 else "BOOTREPLY"


# --- dispatch on the first byte ---------------------------------------------------------------------

def _table(entries: list[tuple[range | tuple[int, ...], Check]], fallback: tuple[Check, ...] = ()) \
        -> tuple[tuple[Check, ...], ...]:
    slots: list[list[Check]] = [[] for _ in range(256)]
    for firsts, check in entries:
        for b in firsts:
            slots[b].append(check)
    return tuple(tuple(slot) + fallback for slot in slots)


_TCP_TABLE = _table([
    ((0x7F,), _ica), ((0x1A,), _cgp), ((ord("S"),), _ssh), (range(0x14, 0x18), _tls), (range(0x80, 0x100), _sslv2),
    (tuple(m[0] for m in _HTTP_METHODS), _http_request), ((ord("H"),), _http_response), ((ord("P"),), _http2),
    ((0x03,), _rdp), ((0x00, 0x81), _smb), ((0x05,), _dcerpc), ((0x30,), _ber_sequence), ((0x00,), _kerberos_tcp),
    ((0x12, 0x10, 0x04), _tds), ((ord("<"),), _syslog_tcp), (range(0x31, 0x3A), _syslog_tcp),
], fallback=(_dns_tcp,))

_UDP_TABLE = _table([
    (range(0x14, 0x18), _dtls), (range(0xC0, 0x100), _quic), ((0x01, 0x02), _dhcp),
    ((0x30,), _ber_sequence_udp), (tuple(_KRB_MESSAGES), _kerberos_udp),
    (tuple(b for b in range(256) if 1 <= (b >> 3) & 7 <= 4 and b & 7), _ntp),
    (tuple(_RADIUS_CODES), _radius), ((ord("<"),), _syslog), ((0x00,), _tftp), (tuple(_NBDGM_TYPES), _netbios_dgm),
], fallback=(_dns_udp,))


def identify(payload: bytes, proto: int, sport: int, dport: int) -> tuple[str, str] | None:
    """(protocol, detail) of one direction's first payload bytes, or None when not recognised.
    ``proto`` is the IP protocol (6 TCP, 17 UDP). The ports may only break a tie between signatures
    that share their first bytes, never stand in for evidence; none needs them today (LDAP and SNMP,
    which both open with a BER SEQUENCE, are told apart by their second element)."""
    if not payload:
        return None
    if proto == TCP:
        table = _TCP_TABLE
    elif proto == UDP:
        table = _UDP_TABLE
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
_PAIRS = {("http", "websocket"): "websocket", ("websocket", "http"): "http", ("cgp", "ica"): "cgp",
          ("ica", "cgp"): "cgp"}
_OWN_MIN = 40
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
