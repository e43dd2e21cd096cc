"""Application identification (SPEC §6): every signature on bytes written from its published framing,
the near misses it must refuse, the Citrix port cases, both directions joined, and hostile or random
bytes. The comparison with tshark's dissectors on the corpus is tests/test_oracle_apps.py.
"""

from __future__ import annotations

import random
import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.apps import (
    APP_SNAP,
    DETAIL_MAX,
    PROTOCOLS,
    UNKNOWN,
    AppEvidence,
    identify,
    identify_connection,
)

TCP, UDP = 6, 17


# --- builders, from the specifications ---------------------------------------------------------------

def tls_record(kind: int, body: bytes, version: int = 0x0301) -> bytes:
    """RFC 5246 §6.2.1 TLSPlaintext."""
    return struct.pack(">BHH", kind, version, len(body)) + body


def tls_hello(msg: int = 1, version: int = 0x0303, record_version: int = 0x0301) -> bytes:
    """RFC 8446 §4.1.2 ClientHello / §4.1.3 ServerHello: type, uint24 length, legacy_version, random,
    session id, then the rest (cipher suites, compression, extensions) as filler."""
    body = struct.pack(">H", version) + bytes(range(32)) + b"\x20" + bytes(32) + b"\x00\x02\x13\x01\x01\x00"
    body += b"\x00\x20" + bytes(32)
    return tls_record(0x16, bytes([msg]) + len(body).to_bytes(3, "big") + body, record_version)


def dtls_record(kind: int, body: bytes, version: int = 0xFEFD, epoch: int = 0, seq: int = 0) -> bytes:
    """RFC 6347 §4.1 DTLSPlaintext: type, version, epoch, 48-bit sequence number, length."""
    return struct.pack(">BHH", kind, version, epoch) + seq.to_bytes(6, "big") + struct.pack(">H", len(body)) + body


def dtls_client_hello() -> bytes:
    # RFC 6347 §4.2.2 handshake header: type, length, message_seq, fragment_offset, fragment_length
    hello = b"\xfe\xfd" + bytes(32) + b"\x00" + b"\x00" + b"\x00\x02\xc0\x2b\x01\x00"
    hs = b"\x01" + len(hello).to_bytes(3, "big") + b"\x00\x00" + bytes(3) + len(hello).to_bytes(3, "big")
    return dtls_record(0x16, hs + hello, version=0xFEFF)


def tpkt_x224(code: int, variable: bytes = b"") -> bytes:
    """RFC 1006 §6 TPKT (version 3) + ITU-T X.224 CR/CC TPDU (LI, code, DST-REF, SRC-REF, class 0)."""
    tpdu = bytes([6 + len(variable), code]) + b"\x00\x00\x12\x34\x00" + variable
    return struct.pack(">BBH", 3, 0, 4 + len(tpdu)) + tpdu


def rdp_neg(kind: int, flags: int = 0, protocols: int = 3) -> bytes:
    """MS-RDPBCGR §2.2.1.1.1 RDP_NEG_REQ / §2.2.1.2.1 RDP_NEG_RSP: type, flags, length 8, protocols."""
    return struct.pack("<BBHI", kind, flags, 8, protocols)


def netbios_name(name: str) -> bytes:
    """RFC 1001 §14.1 first-level encoding: 16 bytes (space padded), each half-octet + 'A', length 32."""
    raw = name.encode().ljust(15)[:15] + b"\x00"
    return b"\x20" + bytes(c for b in raw for c in (0x41 + (b >> 4), 0x41 + (b & 0xF))) + b"\x00"


def smb2_header(command: int = 0) -> bytes:
    """MS-SMB2 §2.2.1.2 SYNC header: ProtocolId, StructureSize 64, CreditCharge, Status, Command, ..."""
    return b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ", 64, 0, 0, command, 1, 0, 0, 0, 0xFEFF, 0, 0) + bytes(16)


def ber(tag: int, content: bytes, long_form: bool = False) -> bytes:
    """X.690 §8.1 TLV: short-form length, or the 4-octet long form Active Directory uses."""
    if long_form or len(content) > 127:
        return bytes([tag, 0x84]) + len(content).to_bytes(4, "big") + content
    return bytes([tag, len(content)]) + content


def ber_int(v: int) -> bytes:
    return ber(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def ldap_message(msgid: int, op_tag: int, op: bytes, long_form: bool = False) -> bytes:
    """RFC 4511 §4.1.1 LDAPMessage."""
    return ber(0x30, ber_int(msgid) + ber(op_tag, op, long_form), long_form)


LDAP_BIND = ldap_message(1, 0x60, ber_int(3) + ber(0x04, b"cn=svc,dc=corp,dc=example") + ber(0x80, b"secret"))
# An Active Directory rootDSE search (the CLDAP "ping" shape: long-form lengths, equality filter).
LDAP_SEARCH = ldap_message(7, 0x63, ber(0x04, b"") + b"\x0a\x01\x00\x0a\x01\x00\x02\x01\x00\x02\x01\x00\x01\x01\x00"
                           + ber(0xA3, ber(0x04, b"DnsDomain") + ber(0x04, b"corp.example"))
                           + ber(0x30, ber(0x04, b"Netlogon")), long_form=True)


def kerberos_req(tag: int = 0x6A, msg_type: int = 10) -> bytes:
    """RFC 4120 §5.4.1 KDC-REQ: [APPLICATION 10/12] SEQUENCE { pvno [1] 5, msg-type [2], padata [3], req-body [4] }."""
    req_body = ber(0x30, ber(0xA0, b"\x03\x05\x00\x40\x81\x00\x10") + ber(0xA2, ber(0x1B, b"CORP.EXAMPLE")))
    body = ber(0xA1, ber_int(5)) + ber(0xA2, ber_int(msg_type)) + ber(0xA4, req_body)
    return ber(tag, ber(0x30, body))


def kerberos_error() -> bytes:
    """RFC 4120 §5.9.1 KRB-ERROR: [APPLICATION 30] SEQUENCE { pvno [0] 5, msg-type [1] 30, ... }."""
    body = ber(0xA0, ber_int(5)) + ber(0xA1, ber_int(30)) + ber(0xA4, b"\x18\x0f20261206070000Z")
    return ber(0x7E, ber(0x30, body))


def dns_query(name: str = "_ldap._tcp.dc._msdcs.corp.example", qtype: int = 33) -> bytes:
    return bytes(dpkt.dns.DNS(id=0x1234, qd=[dpkt.dns.DNS.Q(name=name, type=qtype)]))


def ntp_packet(first: int = 0x23, stratum: int = 0, poll: int = 6, precision: int = 0xEC) -> bytes:
    """RFC 5905 §7.3: LI/VN/mode, stratum, poll, precision, root delay, root dispersion, refid, 4 timestamps."""
    return struct.pack(">BBBBII4s", first, stratum, poll, precision, 0x100, 0x200, b"\0\0\0\0") + bytes(32)


def tds_prelogin(kind: int = 0x12) -> bytes:
    """MS-TDS §2.2.6.5 PRELOGIN: option tokens (token, offset, length), 0xFF, then the option data;
    §2.2.3.1 header: type, status EOM, length, SPID, packet id, window."""
    options = [(0x00, b"\x0f\x00\x07\xd0\x00\x00"), (0x01, b"\x00"), (0x02, b"\x00"), (0x03, b"\x00\x00\x12\x34"),
               (0x04, b"\x00")]
    table, data = b"", b""
    offset = 5 * len(options) + 1
    for token, value in options:
        table += struct.pack(">BHH", token, offset + len(data), len(value))
        data += value
    payload = table + b"\xff" + data
    return struct.pack(">BBHHBB", kind, 0x01, 8 + len(payload), 0, 1, 0) + payload


def radius_packet(code: int = 1,
                  attrs: tuple[tuple[int, bytes], ...] = ((1, b"alice"), (4, b"\x0a\x00\x00\x01"))) -> bytes:
    """RFC 2865 §3: code, identifier, length, 16-byte authenticator, attributes (type, length, value)."""
    body = b"".join(bytes([t, 2 + len(v)]) + v for t, v in attrs)
    return struct.pack(">BBH", code, 7, 20 + len(body)) + bytes(range(16)) + body


def snmp_message(version: int = 1, pdu: int = 0xA0, community: bytes = b"public") -> bytes:
    """RFC 3416 / RFC 1157: SEQUENCE { version, community, PDU { request-id, error-status, error-index, varbinds } }."""
    varbind = ber(0x30, ber(0x06, b"\x2b\x06\x01\x02\x01\x01\x01\x00") + b"\x05\x00")
    body = ber_int(0x12345678) + ber_int(0) + ber_int(0) + ber(0x30, varbind)
    return ber(0x30, ber_int(version) + ber(0x04, community) + ber(pdu, body))


def snmp_v3() -> bytes:
    """RFC 3412 §6: SEQUENCE { msgVersion 3, msgGlobalData { msgID, msgMaxSize, msgFlags, msgSecurityModel }, ...}."""
    header = ber(0x30, ber_int(4321) + ber_int(65507) + ber(0x04, b"\x04") + ber_int(3))
    return ber(0x30, ber_int(3) + header + ber(0x04, bytes(20)))


def dhcp_discover(op: int = 1) -> bytes:
    """RFC 2131 §2 (dpkt writes the fixed header, the magic cookie and option 53)."""
    return bytes(dpkt.dhcp.DHCP(op=op, chaddr=b"\x00\x50\x56\x01\x02\x03", xid=0xCAFE, opts=[(53, bytes([op]))]))


# RFC 1035 §4.1.1: ID 0, flags 0, one question (mDNS, RFC 6762 §18); RFC 1002 §4.2.12 name query, broadcast.
DNS_HEADER_ONE_QUESTION = b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
NBNS_HEADER = b"\x81\x02\x01\x10\x00\x01\x00\x00\x00\x00\x00\x00"


# --- every signature ---------------------------------------------------------------------------------

POSITIVE: list[tuple[str, int, bytes, str, str]] = [
    # id, transport, payload, protocol, a piece of the detail
    ("ica-detect", TCP, b"\x7f\x7fICA\x00", "ica", "ICA"),
    ("ica-detect-then-more", TCP, b"\x7f\x7fICA\x00\x7f\x7fICA\x00", "ica", "ICA"),
    ("cgp-header", TCP, b"\x1aCGP/01\x00\x00\x00\x00", "cgp", "CGP/01"),
    ("ssh-2", TCP, b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", "ssh", "SSH-2.0-OpenSSH_9.6p1"),
    ("ssh-1.99", TCP, b"SSH-1.99-Cisco-1.25\r\n", "ssh", "Cisco"),
    ("tls-client-hello", TCP, tls_hello(), "tls", "ClientHello TLS 1.2"),
    ("tls-server-hello", TCP, tls_hello(2, 0x0303, 0x0303), "tls", "ServerHello"),
    ("tls-ssl3-hello", TCP, tls_hello(1, 0x0300, 0x0300), "tls", "SSL 3.0"),
    ("tls-alert", TCP, tls_record(0x15, b"\x02\x28", 0x0303), "tls", "alert"),
    ("tls-application-data", TCP, tls_record(0x17, bytes(100), 0x0303), "tls", "application data"),
    ("tls-change-cipher-spec", TCP, tls_record(0x14, b"\x01", 0x0303), "tls", "ChangeCipherSpec"),
    # RFC 6101 appendix E.1: SSL 2.0 CLIENT-HELLO header, 21 bytes of cipher specs, 16-byte challenge
    ("sslv2-client-hello", TCP, b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + bytes(21) + bytes(16), "tls",
     "SSLv2-compatible"),
    ("dtls-client-hello", UDP, dtls_client_hello(), "dtls", "ClientHello DTLS 1.0 epoch 0"),
    ("dtls-application-data", UDP, dtls_record(0x17, bytes(40), epoch=1, seq=9), "dtls", "application data"),
    # RFC 9000 §17.2.2 Initial: 0b1100xxxx, version 1, DCID length 8, DCID, SCID length 0, token length 0
    ("quic-initial", UDP, b"\xc3\x00\x00\x00\x01\x08" + bytes(range(8)) + b"\x00\x00\x44\xd0" + bytes(50), "quic",
     "QUIC v1 Initial"),
    ("http-get", TCP, b"GET /Citrix/StoreWeb/ HTTP/1.1\r\nHost: sf.corp.example\r\n", "http", "GET /Citrix"),
    ("http-post-cds", TCP, b"POST /Citrix/CdsController/IRegistrar HTTP/1.1\r\n", "http", "IRegistrar"),
    ("http-absolute", TCP, b"GET http://proxy.example/x HTTP/1.0\r\n\r\n", "http", "GET http://"),
    ("http-connect", TCP, b"CONNECT gw.corp.example:443 HTTP/1.1\r\n", "http", "CONNECT"),
    ("http-options-star", TCP, b"OPTIONS * HTTP/1.1\r\n", "http", "OPTIONS"),
    ("http-rpc-over-http", TCP, b"RPC_IN_DATA /rpc/rpcproxy.dll?dc1:6004 HTTP/1.1\r\n", "http", "RPC_IN_DATA"),
    ("http-wsman", TCP, b"POST /wsman HTTP/1.1\r\nConnection: Keep-Alive\r\n", "http", "/wsman"),
    ("http-long-target", TCP, b"GET /" + b"a" * 100, "http", "GET /aaa"),
    ("http-0.9-simple-request", TCP, b"GET /\r\n\r\n", "http", "GET /"),
    ("http-response", TCP, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n", "http", "HTTP/1.1 200 OK"),
    ("http-response-404", TCP, b"HTTP/1.0 404 Not Found\r\n", "http", "404"),
    ("http2-preface", TCP, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "http", "HTTP/2"),
    ("websocket-request", TCP, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", "websocket",
     "GET /ws"),
    ("websocket-101", TCP, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", "websocket", "101"),
    ("websocket-101-cut", TCP, b"HTTP/1.1 101 Switching Protocols\r\nServer: x\r\nDate: Sun, 06 Dec 2026", "websocket",
     "101"),
    ("rdp-cr-cookie", TCP, tpkt_x224(0xE0, b"Cookie: mstshash=admin\r\n" + rdp_neg(1)), "rdp",
     "Connection Request, mstshash=admin"),
    ("rdp-cr-neg", TCP, tpkt_x224(0xE0, rdp_neg(1, 0, 0xB)), "rdp", "Connection Request"),
    ("rdp-cr-bare", TCP, tpkt_x224(0xE0), "rdp", "Connection Request"),
    ("rdp-cc-neg", TCP, tpkt_x224(0xD0, rdp_neg(2, 0x1F, 2)), "rdp", "Connection Confirm"),
    ("smb1-negotiate", TCP, b"\x00\x00\x00\x54\xffSMB\x72" + bytes(27) + b"\x00\x31\x00\x02NT LM 0.12\x00", "smb",
     "SMB1 Negotiate"),
    ("smb2-negotiate", TCP, b"\x00\x00\x00\xa0" + smb2_header(0) + b"\x24\x00\x02\x00", "smb", "SMB2 NEGOTIATE"),
    ("smb2-session-setup", TCP, b"\x00\x00\x01\x00" + smb2_header(1), "smb", "SMB2 SESSION_SETUP"),
    ("smb3-transform", TCP, b"\x00\x00\x01\x00\xfdSMB" + bytes(48), "smb", "transform"),
    ("nbss-session-request", TCP, b"\x81\x00\x00\x44" + netbios_name("FILESRV") + netbios_name("CLIENT"), "smb",
     "NetBIOS session request"),
    # C706 §12.6.3.1 bind: version 5.0, type 11, flags first|last, drep little-endian ASCII, frag_length 72
    ("dcerpc-bind", TCP, b"\x05\x00\x0b\x03\x10\x00\x00\x00\x48\x00\x00\x00\x01\x00\x00\x00" + bytes(56), "dcerpc",
     "bind"),
    ("ldap-bind", TCP, LDAP_BIND, "ldap", "bindRequest"),
    ("ldap-search-long-form", TCP, LDAP_SEARCH, "ldap", "searchRequest"),
    ("ldap-starttls", TCP, ldap_message(1, 0x77, ber(0x80, b"1.3.6.1.4.1.1466.20037")), "ldap", "extendedReq"),
    ("ldap-unbind", TCP, ldap_message(9, 0x42, b""), "ldap", "unbindRequest"),
    ("cldap-search", UDP, LDAP_SEARCH, "cldap", "searchRequest"),
    ("snmp-v1-get", UDP, snmp_message(0), "snmp", "SNMPv1 GetRequest"),
    ("snmp-v2c-response", UDP, snmp_message(1, 0xA2), "snmp", "SNMPv2c Response"),
    ("snmp-v2c-trap", UDP, snmp_message(1, 0xA7), "snmp", "SNMPv2-Trap"),
    ("snmp-v3", UDP, snmp_v3(), "snmp", "SNMPv3"),
    ("kerberos-as-req-udp", UDP, kerberos_req(), "kerberos", "AS-REQ"),
    ("kerberos-tgs-req-udp", UDP, kerberos_req(0x6C, 12), "kerberos", "TGS-REQ"),
    ("kerberos-as-req-tcp", TCP, len(kerberos_req()).to_bytes(4, "big") + kerberos_req(), "kerberos", "AS-REQ"),
    ("kerberos-error-tcp", TCP, len(kerberos_error()).to_bytes(4, "big") + kerberos_error(), "kerberos",
     "KRB-ERROR"),
    ("kerberos-error-udp", UDP, kerberos_error(), "kerberos", "KRB-ERROR"),
    ("dns-query", UDP, dns_query(), "dns", "DNS query SRV _ldap._tcp.dc._msdcs.corp"),
    ("dns-query-a", UDP, dns_query("sf.corp.example", 1), "dns", "DNS query A sf.corp.example"),
    ("dns-tcp", TCP, len(dns_query()).to_bytes(2, "big") + dns_query(), "dns", "DNS query SRV"),
    ("dns-response", UDP, bytes(dpkt.dns.DNS(id=7, op=dpkt.dns.DNS_RA | 0x8000, qd=[dpkt.dns.DNS.Q(name="a.example")],
                                             an=[dpkt.dns.DNS.RR(name="a.example", rdata=b"\x0a\x00\x00\x01")])),
     "dns", "DNS response A a.example"),
    ("mdns-query", UDP, DNS_HEADER_ONE_QUESTION + b"\x05_ipps\x04_tcp\x05local\x00\x00\x0c\x80\x01",
     "dns", "_ipps._tcp.local"),
    # RFC 6762 §8.3 announcement: a response with no question, one answer (class IN with cache-flush)
    ("mdns-announcement", UDP, b"\x00\x00\x84\x00\x00\x00\x00\x01\x00\x00\x00\x00\x03vda\x05local\x00"
     b"\x00\x01\x80\x01\x00\x00\x00\x78\x00\x04\x0a\x00\x00\x07", "dns", "DNS announcement A vda.local"),
    ("nbns-query", UDP, NBNS_HEADER + netbios_name("WORKGROUP") + b"\x00\x20\x00\x01",
     "netbios-ns", "NBNS query WORKGROUP"),
    # RFC 1002 §4.4.2 DIRECT_GROUP datagram: type, flags (first, B node), id, source IP and port, length,
    # offset, source and destination names, then the SMB mailslot (a browser announcement)
    ("nbdgm-direct-group", UDP, b"\x11\x02\x81\x09\x0a\x00\x00\x07\x00\x8a\x00\xbb\x00\x00" + netbios_name("VDA01")
     + netbios_name("CORP") + b"\xffSMB\x25", "netbios-dgm", "NetBIOS datagram direct group"),
    ("ntp-client", UDP, ntp_packet(), "ntp", "NTPv4 client"),
    ("ntp-server", UDP, ntp_packet(0x24, 2, 6, 0xE9), "ntp", "NTPv4 server"),
    ("sntp-zeros", UDP, b"\x1b" + bytes(47), "ntp", "NTPv3 client"),
    ("ntp-with-mac", UDP, ntp_packet() + b"\x00\x00\x00\x01" + bytes(16), "ntp", "client"),
    # RFC 9327 §2: ntpq READVAR request (VN 2, mode 6), sequence 1, no data
    ("ntp-control-request", UDP, b"\x16\x02\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00", "ntp", "control"),
    # ntpdc's private mode 7 (ntp_request.h): VN 2, implementation 3 (XNTPD), request 42 (MON_GETLIST_1)
    ("ntp-mode-7-monlist", UDP, b"\x17\x00\x03\x2a" + bytes(44), "ntp", "private"),
    ("tds-prelogin", TCP, tds_prelogin(), "tds", "PRELOGIN"),
    ("tds-prelogin-response", TCP, tds_prelogin(0x04), "tds", "PRELOGIN response"),
    ("radius-access-request", UDP, radius_packet(), "radius", "Access-Request"),
    ("radius-accounting-response", UDP, radius_packet(5, ()), "radius", "Accounting-Response"),
    ("radius-long-request", UDP, radius_packet(1, ((1, b"alice@corp.example"), (2, bytes(16)), (4, b"\x0a\0\0\1"),
                                                   (32, b"netscaler-gw-01"), (80, bytes(16))))[:64],
     "radius", "Access-Request"),
    ("syslog-5424", UDP, b"<165>1 2026-12-06T07:00:00.003Z vda01 citrix 1234 ID47 - msg", "syslog", "RFC 5424"),
    ("syslog-3164", UDP, b"<13>Dec  6 07:00:00 ns01 kernel: something", "syslog", "RFC 3164"),
    ("syslog-tag", UDP, b"<134>ns01 NetScaler: 12/06/2026:07:00:00 GMT", "syslog", "facility 16 severity 6"),
    ("syslog-cisco", UDP, b"<166>%ASA-6-302013: Built inbound TCP connection", "syslog", "facility 20 severity 6"),
    ("syslog-tcp-octet-counting", TCP, b"87 <34>1 2026-12-06T07:00:00Z host app - - - hello", "syslog", "RFC 5424"),
    ("tftp-rrq", UDP, b"\x00\x01ARDBP32.BIN\x00octet\x00", "tftp", "TFTP read ARDBP32.BIN"),
    ("tftp-wrq-options", UDP, b"\x00\x02config.txt\x00netascii\x00blksize\x001428\x00", "tftp", "TFTP write"),
    ("dhcp-discover", UDP, dhcp_discover(), "dhcp", "BOOTREQUEST"),
    ("dhcp-offer", UDP, dhcp_discover(dpkt.dhcp.DHCP_OP_REPLY), "dhcp",
     "BOOTREPLY"),
]

NEGATIVE: list[tuple[str, int, bytes]] = [
    ("empty", TCP, b""),
    ("one-byte", TCP, b"\x16"),
    ("ica-wrong-magic", TCP, b"\x7f\x7fICB\x00"),
    ("ica-cut", TCP, b"\x7f\x7fIC"),
    ("cgp-other", TCP, b"\x1aCGX/01"),
    ("ssh-unknown-version", TCP, b"SSH-3.0-x\r\n"),
    ("tls-bad-version", TCP, tls_record(0x16, b"\x01\x00\x00\x01\x00", 0x0305)),
    ("tls-empty-record", TCP, b"\x16\x03\x01\x00\x00"),
    ("tls-unknown-handshake", TCP, tls_record(0x16, b"\x63\x00\x00\x01\x00")),
    ("tls-ccs-long", TCP, tls_record(0x14, b"\x01\x01\x01")),
    ("tls-hello-bad-version", TCP, tls_hello(1, 0x0909)),
    ("tls-over-udp", UDP, tls_hello()),
    ("sslv2-bad-lengths", TCP, b"\x80\x2f\x01\x03\x01\x00\x15\x00\x00\x00\x10" + bytes(37)),
    ("dtls-over-tcp", TCP, dtls_client_hello()),
    ("dtls-bad-version", UDP, dtls_record(0x16, bytes(30), version=0xFE00)),
    ("dtls-short-datagram", UDP, dtls_record(0x17, bytes(40))[:30]),
    ("quic-unknown-version", UDP, b"\xc3\x12\x34\x56\x78\x08" + bytes(40)),
    ("http-lowercase-method", TCP, b"get / HTTP/1.1\r\n"),
    ("http-unknown-method", TCP, b"FETCH / HTTP/1.1\r\n"),
    ("http-no-target", TCP, b"GET  HTTP/1.1\r\n"),
    ("http-relative-target", TCP, b"GET index.html HTTP/1.1\r\n"),
    ("http-version-2", TCP, b"GET / HTTP/2.0\r\n"),
    ("http-other-version", TCP, b"GET / RTSP/1.0\r\n"),
    ("http-control-in-target", TCP, b"GET /\x01x HTTP/1.1\r\n"),
    ("http-short-no-version", TCP, b"GET /index.html"),
    ("http-status-99", TCP, b"HTTP/1.1 099 x\r\n"),
    ("http-status-letters", TCP, b"HTTP/1.1 2x0 OK\r\n"),
    ("http-response-udp", UDP, b"HTTP/1.1 200 OK\r\n"),
    ("rtsp", TCP, b"RTSP/1.0 200 OK\r\n"),
    ("rdp-tpkt-v2", TCP, b"\x02" + tpkt_x224(0xE0)[1:]),
    ("rdp-bad-li", TCP, tpkt_x224(0xE0)[:4] + b"\x07" + tpkt_x224(0xE0)[5:]),
    ("rdp-data-tpdu", TCP, b"\x03\x00\x00\x0b\x06\xf0\x00\x00\x00\x00\x00"),
    # ISO transport with TSAP parameters (Siemens S7 on 102): COTP, not RDP
    ("cotp-tsap", TCP, tpkt_x224(0xE0, b"\xc1\x02\x01\x00\xc2\x02\x01\x02\xc0\x01\x0a")),
    ("smb2-bad-structure", TCP, b"\x00\x00\x00\xa0\xfeSMB" + bytes(60)),
    ("smb-short-length", TCP, b"\x00\x00\x00\x10\xffSMB\x72" + bytes(20)),
    ("nbss-bad-name", TCP, b"\x81\x00\x00\x44" + b"\x20" + b"Z" * 32 + b"\x00" + netbios_name("CLIENT")),
    ("dcerpc-bad-drep", TCP, b"\x05\x00\x0b\x03\x20\x00\x00\x00\x48\x00\x00\x00\x01\x00\x00\x00" + bytes(56)),
    ("ldap-unknown-op", TCP, ldap_message(1, 0x62, b"\x04\x00")),
    ("ldap-negative-id", TCP, b"\x30\x07\x02\x01\xff\x42\x00" + bytes(2)),
    ("ldap-op-overruns", TCP, b"\x30\x07\x02\x01\x01\x60\x40\x02\x01\x03"),
    ("ber-sequence-only", TCP, b"\x30\x03\x02\x01\x01"),
    ("snmp-version-2", UDP, snmp_message(2)),
    ("snmp-bad-pdu", UDP, snmp_message(1, 0xB0)),
    ("kerberos-wrong-msg-type", UDP, kerberos_req(0x6A, 12)),
    ("kerberos-pvno-4", UDP, kerberos_req().replace(b"\xa1\x03\x02\x01\x05", b"\xa1\x03\x02\x01\x04")),
    ("kerberos-tcp-bad-mark", TCP, b"\x00\x00\x00\x05" + kerberos_req()),
    ("dns-seventeen-questions", UDP, dns_query()[:4] + b"\x00\x11" + dns_query()[6:]),
    ("dns-query-without-question", UDP, dns_query()[:4] + b"\x00\x00" + dns_query()[6:]),
    ("nbns-broken-name", UDP, NBNS_HEADER + b"\x20" + b"EGFCENEBF@FDD" + b"A" * 19 + b"\x00\x00\x20\x00\x01"),
    ("nbdgm-bad-flags", UDP, b"\x11\x22\x81\x09\x0a\x00\x00\x07\x00\x8a\x00\xbb\x00\x00" + netbios_name("VDA01")),
    ("nbdgm-short-length", UDP, b"\x11\x02\x81\x09\x0a\x00\x00\x07\x00\x8a\x00\x10\x00\x00" + netbios_name("VDA01")),
    ("dns-z-bit", UDP, dns_query()[:3] + b"\x40" + dns_query()[4:]),
    ("dns-opcode-3", UDP, dns_query()[:2] + b"\x18\x00" + dns_query()[4:]),
    ("dns-control-label", UDP, dns_query()[:12] + b"\x03a\x01b\x00\x00\x01\x00\x01"),
    ("dns-bad-class", UDP, dns_query()[:-2] + b"\x00\x09"),
    ("dns-tcp-bad-length", TCP, b"\x00\x05" + dns_query()),
    ("ntp-mode-7-bad-implementation", UDP, b"\x17\x00\x09\x2a" + bytes(44)),
    ("ntp-version-0", UDP, b"\x03" + ntp_packet()[1:]),
    ("ntp-wrong-size", UDP, ntp_packet()[:40]),
    ("ntp-stratum-200", UDP, ntp_packet(0x24, 200)),
    ("ntp-huge-dispersion", UDP, ntp_packet()[:8] + b"\x7f\x00\x00\x00" + ntp_packet()[12:]),
    ("tds-window", TCP, tds_prelogin()[:7] + b"\x01" + tds_prelogin()[8:]),
    ("tds-length-mismatch", TCP, tds_prelogin() + b"\x00"),
    ("radius-length-mismatch", UDP, radius_packet() + b"\x00"),
    ("radius-short-attribute", UDP, radius_packet(1, ((1, b""),))),
    ("radius-code-6", UDP, b"\x06" + radius_packet()[1:]),
    ("syslog-pri-192", UDP, b"<192>1 2026-12-06T07:00:00Z h a - - x"),
    ("syslog-leading-zero", UDP, b"<013>1 2026-12-06T07:00:00Z h a - - x"),
    ("syslog-binary", UDP, b"<13>\x00\x01\x02\x03"),
    ("xml", TCP, b"<?xml version=\"1.0\"?><a/>"),
    ("tftp-bad-mode", UDP, b"\x00\x01file\x00binary\x00"),
    ("tftp-empty-name", UDP, b"\x00\x01\x00octet\x00"),
    ("tftp-data", UDP, b"\x00\x03\x00\x01" + bytes(60)),
    ("dhcp-padding", UDP, dhcp_discover()[:40] + b"\x01" + dhcp_discover()[41:]),
    ("dhcp-hlen-16", UDP, dhcp_discover()[:2] + b"\x10" + dhcp_discover()[3:]),
    ("icmp-proto", 1, tls_hello()),
    ("zeros", TCP, bytes(64)),
    ("zeros-udp", UDP, bytes(64)),
    ("ones", UDP, b"\xff" * 64),
    ("text", TCP, b"hello world, this is not a protocol\r\n"),
]


@pytest.mark.parametrize(("transport", "payload", "protocol", "detail"),
                         [p[1:] for p in POSITIVE], ids=[p[0] for p in POSITIVE])
def test_signature_recognised(transport: int, payload: bytes, protocol: str, detail: str) -> None:
    assert protocol in PROTOCOLS
    hit = identify(payload[:APP_SNAP], transport, 50000, 1)
    assert hit is not None, payload[:APP_SNAP]
    assert hit[0] == protocol
    assert detail in hit[1]


@pytest.mark.parametrize(("transport", "payload"), [n[1:] for n in NEGATIVE], ids=[n[0] for n in NEGATIVE])
def test_near_miss_refused(transport: int, payload: bytes) -> None:
    assert identify(payload[:APP_SNAP], transport, 50000, 1) is None


def test_every_protocol_has_a_positive_case() -> None:
    covered = {p[3] for p in POSITIVE}
    assert covered == set(PROTOCOLS)


@pytest.mark.parametrize(("transport", "payload", "protocol"), [(p[1], p[2], p[3]) for p in POSITIVE],
                         ids=[p[0] for p in POSITIVE])
def test_truncation_never_raises_nor_changes_the_protocol(transport: int, payload: bytes, protocol: str) -> None:
    """Every cut of a recognised payload is either not recognised or recognised as the same protocol (a
    WebSocket request cut before its Upgrade header is the HTTP request it also is)."""
    same = {protocol, "http"} if protocol == "websocket" else {protocol}
    for n in range(APP_SNAP + 1):
        hit = identify(payload[:n], transport, 50000, 1)
        assert hit is None or hit[0] in same, (n, hit)


# --- Citrix ports: the bytes decide, never the port -------------------------------------------------

@pytest.mark.parametrize("port", [1494, 2598])
@pytest.mark.parametrize(("payload", "protocol"), [
    (b"SSH-2.0-OpenSSH_9.6\r\n", "ssh"),
    (b"GET / HTTP/1.1\r\nHost: vda\r\n", "http"),
    (tpkt_x224(0xE0, b"Cookie: mstshash=user\r\n" + rdp_neg(1)), "rdp"),
    (tls_hello(), "tls"),
])
def test_other_protocols_on_hdx_ports_are_named(port: int, payload: bytes, protocol: str) -> None:
    found = identify_connection(TCP, 50000, port, payload, (0, 4), None, (0, 0))
    assert found is not None and found.protocol == protocol


@pytest.mark.parametrize("head", [None, b"", bytes(64), b"\x8a\x13\x07" * 20])
def test_no_or_opaque_payload_is_not_identified(head: bytes | None) -> None:
    assert identify_connection(TCP, 50000, 1494, head, (0, 4), head, (0, 5)) is None


def test_ica_banner_from_the_server() -> None:
    found = identify_connection(TCP, 50000, 1494, None, (0, 0), b"\x7f\x7fICA\x00", (1, 4))
    assert found == AppEvidence("ica", "resp", (1, 4), "7f7f49434100", "ICA detect string")


def test_ica_both_ways_takes_the_first_bytes_sent() -> None:
    found = identify_connection(TCP, 50000, 1494, b"\x7f\x7fICA\x00", (0, 6), b"\x7f\x7fICA\x00", (0, 4))
    assert found is not None and (found.protocol, found.direction, found.frame) == ("ica", "resp", (0, 4))


def test_cgp_client_header_and_server_answer() -> None:
    found = identify_connection(TCP, 50000, 2598, b"\x1aCGP/01\x00\x00", (0, 4), b"\x1aCGP/01\x00\x01", (0, 6))
    assert found is not None and (found.protocol, found.direction) == ("cgp", "orig")


# --- both directions ---------------------------------------------------------------------------------

def test_http_request_answered_101_is_websocket() -> None:
    found = identify_connection(TCP, 50000, 8008, b"GET /ws HTTP/1.1\r\nHost: vda:8008\r\n", (0, 4),
                                b"HTTP/1.1 101 Switching Protocols\r\n", (0, 6))
    assert found is not None
    assert (found.protocol, found.direction, found.frame) == ("websocket", "resp", (0, 6))
    assert "GET /ws" in found.detail and len(found.detail) <= DETAIL_MAX


def test_websocket_upgrade_refused_stays_http() -> None:
    found = identify_connection(TCP, 50000, 80, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n", (0, 4),
                                b"HTTP/1.1 400 Bad Request\r\n", (0, 6))
    assert found is not None and (found.protocol, found.direction) == ("http", "resp")


def test_client_hello_alone_is_tls() -> None:
    found = identify_connection(TCP, 50000, 443, tls_hello(), (2, 4), b"\x9f" * 64, (2, 6))
    assert found is not None
    assert (found.protocol, found.direction, found.frame) == ("tls", "orig", (2, 4))
    assert found.head == tls_hello()[:16].hex()


def test_request_and_answer_agreeing_take_the_request() -> None:
    found = identify_connection(UDP, 50000, 53, dns_query(), (0, 1), dns_query()[:2] + b"\x81\x80" + dns_query()[4:],
                                (0, 2))
    assert found is not None and (found.protocol, found.direction) == ("dns", "orig")


def test_disagreement_takes_the_responder_and_says_so() -> None:
    found = identify_connection(TCP, 50000, 1494, b"GET / HTTP/1.1\r\n", (0, 4), b"SSH-2.0-" + b"x" * 100, (0, 5))
    assert found is not None
    assert (found.protocol, found.direction) == ("ssh", "resp")
    assert found.detail.endswith("(initiator sent http)") and len(found.detail) <= DETAIL_MAX


def test_head_is_at_most_sixteen_bytes() -> None:
    found = identify_connection(TCP, 50000, 22, None, (0, 0), b"SSH-2.0-OpenSSH_9.6\r\n", (0, 3))
    assert found is not None and found.head == b"SSH-2.0-OpenSSH_".hex()


# --- hostile and random bytes -------------------------------------------------------------------------

HOSTILE = [
    (TCP, b"SSH-2.0-\x1b[31mred\x1b[0m\x00\x07<script>" + b"\xff" * 80),
    (TCP, b"GET /<script>alert(1)</script>" + b"A" * 60),
    (TCP, b"HTTP/1.1 200 \x1b]0;title\x07\xe2\x80\xae\r\n"),
    (TCP, tpkt_x224(0xE0, b"Cookie: mstshash=\x1b[2J\x00\xff\xfe" + b"x" * 20 + b"\r\n")),
    (UDP, dns_query("\u202e\u0007evil\u00e9.example".encode().decode("latin-1"), 1)),
    (UDP, NBNS_HEADER + b"\x20" + b"AP" * 16 + b"\x00"),
    (UDP, b"\x00\x01" + bytes(range(0x20, 0x7F))[:60] + b"\x00"),
]


@pytest.mark.parametrize(("transport", "payload"), HOSTILE)
def test_hostile_detail_is_printable_and_bounded(transport: int, payload: bytes) -> None:
    found = identify_connection(transport, 50000, 1, payload[:APP_SNAP], (0, 1), None, (0, 0))
    for hit in (identify(payload[:APP_SNAP], transport, 1, 2), (found.protocol, found.detail) if found else None):
        if hit is not None:
            assert len(hit[1]) <= DETAIL_MAX
            assert all(0x20 <= ord(c) < 0x7F for c in hit[1]), hit[1]


def test_random_payloads_are_almost_never_claimed() -> None:
    """20,000 random 64-byte payloads, each as TCP and as UDP: a false claim is a false protocol-mismatch
    finding, so the bound is tight (none at all when this was written)."""
    rng = random.Random(20261206)
    claims = []
    for _ in range(20_000):
        payload = rng.randbytes(APP_SNAP)
        for transport in (TCP, UDP):
            hit = identify(payload, transport, rng.randrange(1, 65536), rng.randrange(1, 65536))
            if hit is not None:
                claims.append((transport, hit, payload[:16].hex()))
    assert len(claims) <= 2, claims


@settings(max_examples=3000, deadline=None)
@given(payload=st.binary(max_size=APP_SNAP + 8), transport=st.sampled_from([TCP, UDP, 1, 132]),
       sport=st.integers(0, 65535), dport=st.integers(0, 65535))
def test_any_bytes_never_raise(payload: bytes, transport: int, sport: int, dport: int) -> None:
    hit = identify(payload, transport, sport, dport)
    if hit is not None:
        assert hit[0] in PROTOCOLS
        assert len(hit[1]) <= DETAIL_MAX and hit[1].isprintable() and hit[1].isascii()
    found = identify_connection(transport, sport, dport, payload, (0, 1), payload[::-1], (0, 2))
    assert found is None or (found.protocol in PROTOCOLS and len(found.head) <= 32 and len(found.detail) <= DETAIL_MAX)


@settings(max_examples=2000, deadline=None)
@given(case=st.sampled_from(POSITIVE), data=st.data())
def test_mutated_signatures_never_raise(case: tuple[str, int, bytes, str, str], data: st.DataObject) -> None:
    """Valid payloads with a few bytes changed: near-valid input reaches the deepest checks."""
    payload = bytearray(case[2][:APP_SNAP])
    for _ in range(data.draw(st.integers(1, 4))):
        if payload:
            payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    hit = identify(bytes(payload), case[1], 1, 2)
    assert hit is None or (hit[0] in PROTOCOLS and len(hit[1]) <= DETAIL_MAX and hit[1].isprintable())


def test_joined_detail_keeps_its_own_summary_within_bounds() -> None:
    request = b"GET /Citrix/StoreWeb/ws/" + b"x" * 60 + b" HTTP/1.1\r\n"
    found = identify_connection(TCP, 50000, 443, request[:APP_SNAP], (0, 4),
                                b"HTTP/1.1 101 Switching Protocols\r\n", (0, 6))
    assert found is not None and found.protocol == "websocket"
    assert found.detail.startswith("HTTP/1.1 101 Switching Protocols (request: GET /Citrix")
    assert len(found.detail) <= DETAIL_MAX


def test_vocabulary() -> None:
    assert len(set(PROTOCOLS)) == len(PROTOCOLS)
    assert UNKNOWN not in PROTOCOLS


@pytest.mark.parametrize(("transport", "payload", "protocol"), [(p[1], p[2], p[3]) for p in POSITIVE[::7]],
                         ids=[p[0] for p in POSITIVE[::7]])
@pytest.mark.parametrize("ports", [(50000, 1494), (1494, 50000), (53, 389), (161, 88), (0, 0)])
def test_ports_never_change_the_answer(transport: int, payload: bytes, protocol: str, ports: tuple[int, int]) -> None:
    """Signatures that share first bytes (LDAP and SNMP both open with a BER SEQUENCE) are told apart by
    their structure, so no port is consulted at all."""
    assert identify(payload[:APP_SNAP], transport, *ports) == identify(payload[:APP_SNAP], transport, 1, 2)


# --- the compiled build (auditor/capture/native.py) names everything as this module does -------------

def _mutations(payload: bytes, rng: random.Random) -> list[bytes]:
    """Every cut of ``payload`` and a few copies with bytes changed: near-valid input that reaches the
    deepest checks of each signature."""
    out = [payload[:n] for n in range(min(len(payload), APP_SNAP) + 1)]
    for _ in range(40):
        changed = bytearray(payload[:APP_SNAP])
        for _ in range(rng.randint(1, 4)):
            if changed:
                changed[rng.randrange(len(changed))] = rng.randrange(256)
        out.append(bytes(changed))
    return out


def test_both_builds_identify_alike(each_kernel: object) -> None:
    from auditor.capture import native

    built = native.KERNEL.of("auditor.apps")
    rng = random.Random(20261206)
    cases = [(p[1], p[2]) for p in POSITIVE] + [(n[1], n[2]) for n in NEGATIVE] + HOSTILE
    heads = [(t, m) for t, p in cases for m in _mutations(p, rng)]
    heads += [(t, rng.randbytes(rng.randint(0, APP_SNAP))) for _ in range(5000) for t in (TCP, UDP)]
    tried = 0
    for (transport, head), (_, other) in zip(heads, heads[1:] + heads[:1], strict=True):
        assert built.identify(head, transport, 50000, 443) == identify(head, transport, 50000, 443), head
        for pair in ((head, other), (head, None), (None, head), (head, head)):
            assert built.identify_connection(transport, 50000, 443, pair[0], (0, 2), pair[1], (1, 1)) == \
                identify_connection(transport, 50000, 443, pair[0], (0, 2), pair[1], (1, 1)), pair
        tried += 1
    assert tried > 10_000 and built.AppEvidence is AppEvidence
