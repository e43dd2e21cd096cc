"""The signatures of application protocols, and their dispatch on a payload's first byte (SPEC §6).

A signature claims a payload only when the published framing of its protocol checks out on the bytes
we have (several fields, lengths consistent with each other); an ambiguous or short payload is None,
because an unrecognised payload never changes a verdict and a false claim does (``protocol-mismatch``).
Each check is dispatched on the payload's first byte (one tuple lookup), so a connection costs a few
function calls. The ports never stand in for evidence.

Where they live: common.py (the bytes kept, byte classes, BER readers), citrix.py (ICA, CGP), web.py
(SSH, TLS, DTLS, QUIC, HTTP, WebSocket), windows.py (RDP, SMB, NetBIOS datagrams, DCE/RPC, LDAP, Kerberos,
TDS), infrastructure.py (DNS, NetBIOS names, NTP, SNMP, RADIUS, syslog, TFTP, DHCP), dispatch.py (TCP_TABLE
and UDP_TABLE, by first byte). auditor/apps.py asks the tables and joins the two directions.

These modules and apps.py are compiled with the rest of the hot path when the install can
(setup.py, auditor/capture/native.py): mypyc-clean, and never patched at run time.
"""
