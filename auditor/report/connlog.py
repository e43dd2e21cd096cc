"""The connections as a Zeek conn.log (TSV with Zeek's header lines), written as they close.

Renderers return text; the CLI writes it. Zeek's meanings hold where we can (conn.zeek): ``ts`` is the
first packet's time, ``duration`` last minus first, ``orig_ip_bytes`` / ``resp_ip_bytes`` the IP bytes
each side sent, ``conn_state`` and ``history`` as the core computes them. What we do not know is
Zeek's unset field ``-``: ``orig_bytes`` / ``resp_bytes`` (Zeek's are payload bytes, which the core
does not count), ``missed_bytes``, ``local_orig`` / ``local_resp``. ``service`` is the application
protocol the connection's first payload bytes showed (auditor/apps.py) under Zeek's name where Zeek
has one (``ssl`` for TLS, ``krb``, ``dce_rpc``), ours otherwise (``ica``, ``cgp``, ``tds``), unset when
none was recognised. ICMP follows Zeek: ``id.orig_p`` is the request's ICMP type, ``id.resp_p`` its code
(0: the core keys echo conversations by type and id, not code).

uids are deterministic for one input: a hash of the connection's first frame and 5-tuple, so two runs
over the same capture give the same log.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable

from auditor.apps import UNKNOWN
from auditor.model import Connection

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
          "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history",
          "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count", "count",
         "string", "bool", "bool", "count", "string", "count", "count", "count", "count", "set[string]")
UNSET = "-"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _stamp(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d-%H-%M-%S")


def header(opened: float) -> str:
    """The header lines of a conn.log opened at ``opened`` (seconds since the epoch)."""
    return (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
        f"#open\t{_stamp(opened)}\n#fields\t" + "\t".join(FIELDS) + "\n#types\t" + "\t".join(TYPES) + "\n"
    )


def footer(closed: float) -> str:
    return f"#close\t{_stamp(closed)}\n"


def uid(conn: Connection) -> str:
    """A Zeek-style uid ('C' and 17 base-62 characters), the same for the same connection of one input."""
    key = (f"{conn.first_frame[0]}:{conn.first_frame[1]}:{conn.protocol}:{conn.orig_h}:{conn.orig_p}:"
           f"{conn.resp_h}:{conn.resp_p}").encode()
    n = int.from_bytes(hashlib.sha256(key).digest()[:13], "big")
    out = []
    for _ in range(17):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "C" + "".join(out)


ZEEK_SERVICES = {"tls": "ssl", "kerberos": "krb", "dcerpc": "dce_rpc"}
"""Our application protocol names where Zeek's conn.log names the service otherwise."""


def row(conn: Connection) -> str:
    """One connection as one conn.log line."""
    if conn.protocol == "icmp":
        orig_p, resp_p = conn.resp_p, 0
    else:
        orig_p, resp_p = conn.orig_p, conn.resp_p
    duration = max(0.0, conn.last_seen - conn.first_seen)
    app = conn.app_protocol
    service = UNSET if app == UNKNOWN else ZEEK_SERVICES.get(app, app)
    return "\t".join((
        f"{conn.first_seen:.6f}", uid(conn), conn.orig_h, str(orig_p), conn.resp_h, str(resp_p), conn.protocol,
        service, f"{duration:.6f}", UNSET, UNSET, conn.conn_state, UNSET, UNSET, UNSET, conn.history or UNSET,
        str(conn.orig_pkts), str(conn.orig_bytes), str(conn.resp_pkts), str(conn.resp_bytes), UNSET,
    )) + "\n"


def render(connections: Iterable[Connection], opened: float, closed: float) -> str:
    """A whole conn.log (tests and small audits; the CLI streams header, rows and footer)."""
    return header(opened) + "".join(row(c) for c in connections) + footer(closed)
