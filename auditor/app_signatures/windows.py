"""Windows and directory services: RDP, SMB, NetBIOS datagrams, DCE/RPC, LDAP/CLDAP, Kerberos, TDS (SQL Server)."""

from __future__ import annotations

from typing import Final

from auditor.app_signatures.common import _NOT_NETBIOS, APP_SNAP, Hit, _ber_int, _ber_length, _has, _line, _printable

# --- RDP: TPKT (RFC 1006 §6) + X.224 Connection Request/Confirm (ITU-T X.224 §13.3/13.4), MS-RDPBCGR
# §2.2.1.1/2.2.1.2: the variable part is empty, a 'Cookie: mstshash=' / routing token, or an RDP
# negotiation structure. An ISO transport over TCP with TSAP parameters (S7, MMS) is not RDP.

_RDP_NEG: Final = {0xE0: (0x01,), 0xD0: (0x02, 0x03)}


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

_SMB2_COMMANDS: Final = ("NEGOTIATE", "SESSION_SETUP", "LOGOFF", "TREE_CONNECT", "TREE_DISCONNECT", "CREATE",
                         "CLOSE", "FLUSH", "READ", "WRITE", "LOCK", "IOCTL", "CANCEL", "ECHO", "QUERY_DIRECTORY",
                         "CHANGE_NOTIFY", "QUERY_INFO", "SET_INFO", "OPLOCK_BREAK")


_SMB1_COMMANDS: Final = {0x72: "Negotiate", 0x73: "Session Setup AndX", 0x75: "Tree Connect AndX", 0x25: "Trans",
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

_NBDGM_TYPES: Final = {0x10: "direct unique", 0x11: "direct group", 0x12: "broadcast", 0x13: "error",
                       0x14: "query request", 0x15: "positive query response", 0x16: "negative query response"}


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

_DCERPC_TYPES: Final = {0: "request", 2: "response", 3: "fault", 11: "bind", 12: "bind_ack", 13: "bind_nak",
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

_LDAP_OPS: Final = {0x60: "bindRequest", 0x61: "bindResponse", 0x42: "unbindRequest", 0x63: "searchRequest",
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

# --- Kerberos: RFC 4120 §5.4.1 KDC-REQ (pvno [1], msg-type [2]), §5.4.2 KDC-REP and §5.9.1 KRB-ERROR
# (pvno [0], msg-type [1]); over TCP each message follows a 4-byte length (§7.2.2), over UDP it is bare.

_KRB_MESSAGES: Final = {0x6A: "AS-REQ", 0x6B: "AS-REP", 0x6C: "TGS-REQ", 0x6D: "TGS-REP", 0x6E: "AP-REQ",
                        0x6F: "AP-REP", 0x7E: "KRB-ERROR"}


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
# --- TDS (SQL Server): MS-TDS §2.2.3.1 packet header (type, status, length, SPID, packet id, window 0)
# and the first message: PRELOGIN (§2.2.6.5: option tokens, VERSION first), LOGIN7 (§2.2.6.4) or a
# tabular response to either. ---------------------------------------------------------------------

_TDS_TYPES = {0x12: "PRELOGIN", 0x10: "LOGIN7", 0x04: "response"}
_TDS_STATUS: Final = frozenset((0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x10, 0x11))
_TDS_TOKENS: Final = frozenset((0x00, 0x79, 0x81, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xD1, 0xE3, 0xED, 0xFD, 0xFE,
                                0xFF))


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
