"""Infrastructure services, mostly over UDP: DNS and NetBIOS name service, NTP, SNMP, RADIUS, syslog, TFTP, DHCP."""

from __future__ import annotations

import struct
from typing import Final

from auditor.app_signatures.common import (
    _CONTROL,
    _NOT_NETBIOS,
    _NOT_VISIBLE,
    APP_SNAP,
    Hit,
    _ber_int,
    _ber_length,
    _has,
    _printable,
)

# --- SNMP: RFC 3416 §3 / RFC 1157 §4: SEQUENCE { version INTEGER (0 v1, 1 v2c), community OCTET STRING,
# PDU [0..8] }; RFC 3412 §6 (v3): SEQUENCE { msgVersion 3, msgGlobalData SEQUENCE { msgID, ...} }.
# The community is a password: it never goes into the detail.

_SNMP_PDUS: Final = ("GetRequest", "GetNextRequest", "Response", "SetRequest", "Trap", "GetBulkRequest",
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

# --- DNS: RFC 1035 §4.1.1 header (ID, QR/opcode/AA/TC/RD/RA/Z/AD/CD/RCODE, four counts), §4.1.2
# question; over TCP a 2-byte length first (§4.2.2). NetBIOS name service (RFC 1002 §4.2) shares the
# format with first-level-encoded 32-byte names (RFC 1001 §14.1).

_DNS_HEADER: Final = struct.Struct(">HHHHH")
_DNS_OPCODES: Final = {0: "query", 1: "inverse query", 2: "status", 4: "notify", 5: "update"}
_DNS_TYPES: Final = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
              35: "NAPTR", 43: "DS", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 252: "AXFR", 251: "IXFR", 255: "ANY"}
_DNS_CLASSES: Final = (1, 3, 4, 254, 255)
_NBNS_OPCODES: Final = {0: "query", 5: "registration", 6: "release", 7: "WACK", 8: "refresh", 9: "refresh"}


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
    joined = b".".join(labels)  # the dots are no control bytes: one join serves the check and the name
    if _has(joined, _CONTROL):
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
    kind = ("response" if qd else "announcement") if response else _DNS_OPCODES[opcode]
    qt = f" {_DNS_TYPES.get(qtype) or qtype}" if qtype >= 0 else ""
    return "dns", f"DNS {kind}{qt} {_printable(joined or b'.', 60)}"


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

_NTP_MODES: Final = {1: "symmetric active", 2: "symmetric passive", 3: "client", 4: "server", 5: "broadcast"}


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
# --- RADIUS: RFC 2865 §3 (code, identifier, length 20..4096, authenticator, attributes), RFC 2866
# accounting, RFC 5176 dynamic authorization, RFC 5997 Status-Server. -----------------------------

_RADIUS_CODES: Final = {1: "Access-Request", 2: "Access-Accept", 3: "Access-Reject", 4: "Accounting-Request",
                        5: "Accounting-Response", 11: "Access-Challenge", 12: "Status-Server", 13: "Status-Client",
                        40: "Disconnect-Request", 41: "Disconnect-ACK", 42: "Disconnect-NAK", 43: "CoA-Request",
                        44: "CoA-ACK", 45: "CoA-NAK"}
_RADIUS_LONG: Final = frozenset((1, 2, 3, 4, 11, 40, 43))
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

_MONTHS: Final = (b"Jan ", b"Feb ", b"Mar ", b"Apr ", b"May ", b"Jun ",
                  b"Jul ", b"Aug ", b"Sep ", b"Oct ", b"Nov ", b"Dec ")


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

_TFTP_MODES: Final = (b"netascii", b"octet", b"mail")


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
