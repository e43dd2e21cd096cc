"""Web and encrypted transports: SSH, TLS (and SSLv2-compatible hellos), DTLS, QUIC, HTTP/1 and /2, WebSocket."""

from __future__ import annotations

from typing import Final

from auditor.app_signatures.common import _NOT_TOKEN, APP_SNAP, Hit, _has, _line, _printable

# --- SSH: RFC 4253 §4.2 identification string 'SSH-protoversion-softwareversion SP comments CR LF' ----

def _ssh(p: bytes) -> Hit | None:
    if p.startswith((b"SSH-2.0-", b"SSH-1.99-", b"SSH-1.5-")):
        return "ssh", _printable(_line(p))
    return None


# --- TLS: RFC 8446 §5.1 / RFC 5246 §6.2.1 record header: type, legacy version, length ----------------

_TLS_RECORD: Final = {0x14: "ChangeCipherSpec", 0x15: "alert", 0x16: "handshake", 0x17: "application data"}
_TLS_VERSION: Final = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
# RFC 8446 §4: handshake types a connection's first record may carry.
_TLS_HANDSHAKE: Final = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 11: "Certificate",
                         12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone",
                         16: "ClientKeyExchange", 20: "Finished"}
_TLS_MAX_RECORD: Final = 2**14 + 2048  # RFC 5246 §6.2.3: TLSCiphertext.length


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

_DTLS_VERSION: Final = {0xFEFF: "DTLS 1.0", 0xFEFD: "DTLS 1.2", 0xFEFC: "DTLS 1.3"}
_DTLS_HANDSHAKE: Final = {1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest", 11: "Certificate"}


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

_HTTP_METHODS: Final = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE",
                                  b"PATCH",
                                  # WebDAV (RFC 4918, 3253, 5323) and RPC over HTTP (MS-RPCH §2.1.2.1)
                                  b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK",
                                  b"REPORT", b"SEARCH", b"RPC_IN_DATA", b"RPC_OUT_DATA"))


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
