"""The dispatch of a payload to the signatures that may claim it, by its first byte: TCP_TABLE, UDP_TABLE."""

from __future__ import annotations

from auditor.app_signatures.citrix import _cgp, _ica
from auditor.app_signatures.common import Check, Hit
from auditor.app_signatures.infrastructure import (
    _RADIUS_CODES,
    _dhcp,
    _dns_tcp,
    _dns_udp,
    _ntp,
    _radius,
    _snmp,
    _syslog,
    _syslog_tcp,
    _tftp,
)
from auditor.app_signatures.web import (
    _HTTP_METHODS,
    _dtls,
    _http2,
    _http_request,
    _http_response,
    _quic,
    _ssh,
    _sslv2,
    _tls,
)
from auditor.app_signatures.windows import (
    _KRB_MESSAGES,
    _NBDGM_TYPES,
    _cldap,
    _dcerpc,
    _kerberos_tcp,
    _kerberos_udp,
    _ldap,
    _netbios_dgm,
    _rdp,
    _smb,
    _tds,
)


def _ber_sequence(p: bytes) -> Hit | None:
    """0x30 first: an LDAP message, or an SNMP message (their second element tells them apart: LDAP's
    protocolOp is an APPLICATION tag, SNMP's is the community OCTET STRING or the v3 header)."""
    return _ldap(p) or _snmp(p)


def _ber_sequence_udp(p: bytes) -> Hit | None:
    return _cldap(p) or _snmp(p)

def _table(entries: list[tuple[range | tuple[int, ...], Check]], fallback: tuple[Check, ...] = ()) \
        -> tuple[tuple[Check, ...], ...]:
    slots: list[list[Check]] = [[] for _ in range(256)]
    for firsts, check in entries:
        for b in firsts:
            slots[b].append(check)
    return tuple(tuple(slot) + fallback for slot in slots)


TCP_TABLE = _table([
    ((0x7F,), _ica), ((0x1A,), _cgp), ((ord("S"),), _ssh), (range(0x14, 0x18), _tls), (range(0x80, 0x100), _sslv2),
    (tuple(m[0] for m in _HTTP_METHODS), _http_request), ((ord("H"),), _http_response), ((ord("P"),), _http2),
    ((0x03,), _rdp), ((0x00, 0x81), _smb), ((0x05,), _dcerpc), ((0x30,), _ber_sequence), ((0x00,), _kerberos_tcp),
    ((0x12, 0x10, 0x04), _tds), ((ord("<"),), _syslog_tcp), (range(0x31, 0x3A), _syslog_tcp),
], fallback=(_dns_tcp,))

UDP_TABLE = _table([
    (range(0x14, 0x18), _dtls), (range(0xC0, 0x100), _quic), ((0x01, 0x02), _dhcp),
    ((0x30,), _ber_sequence_udp), (tuple(_KRB_MESSAGES), _kerberos_udp),
    (tuple(b for b in range(256) if 1 <= (b >> 3) & 7 <= 4 and b & 7), _ntp),
    (tuple(_RADIUS_CODES), _radius), ((ord("<"),), _syslog), ((0x00,), _tftp), (tuple(_NBDGM_TYPES), _netbios_dgm),
], fallback=(_dns_udp,))
