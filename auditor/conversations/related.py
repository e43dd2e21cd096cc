"""Packets that belong to another connection than their 5-tuple says, in the conversation core: TFTP
transfers from a server's new port joined to their udp/69 request, DHCP replies from a server joined
to the broadcast request with the same xid, ICMP echo conversations, and ICMP errors attributed to the
connection whose packet they quote."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from auditor.conversations.state import (
    _D,
    _DHCP_GROUPS,
    _DHCP_PORTS,
    _ICMP_ECHO,
    _RESP,
    EV_FIRST,
    EV_PROTOCOL,
    _Chain,
    _Conn,
    conn_key,
    icmp_key,
)
from auditor.model import (
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
)
from auditor.record import PacketRecord

if TYPE_CHECKING:
    from auditor.conversations.builder import ConversationBuilder


def tftp_transfer(b: ConversationBuilder, rec: PacketRecord) -> tuple[_Conn, bool] | None:
    """A TFTP server answers a read/write request from a new port (RFC 1350 §4): the transfer
    belongs to the request's udp/69 connection, as Zeek's TFTP analyzer expects it."""
    c = tftp_pending(b, rec)
    if c is None:
        return None
    del b._tftp[(rec.src, rec.dst, rec.dport)]
    from_server = conn_key(IPPROTO_UDP, rec.src, rec.sport, rec.dst, rec.dport)
    from_client = conn_key(IPPROTO_UDP, rec.dst, rec.dport, rec.src, rec.sport)
    c.keys = (*c.keys, from_server, from_client)
    b._table[from_server] = (c, False)
    b._table[from_client] = (c, True)
    b.stats.tftp_transfers += 1
    return c, False


def tftp_pending(b: ConversationBuilder, rec: PacketRecord, act: bool = True) -> _Conn | None:
    """The live udp/69 request this packet would be the transfer of (an expired one is dropped, with
    ``act``; without, nothing changes: a merge looking ahead, conversations/chunks.py)."""
    return _pending(b, b._tftp, (rec.src, rec.dst, rec.dport), rec, act)


_V6_REQUESTS: Final = frozenset({1, 3, 4, 5, 6, 8, 9, 11})
"""DHCPv6 messages a client sends (RFC 8415 §7.3): Solicit, Request, Confirm, Renew, Rebind, Release,
Decline, Information-request."""
_V6_ANSWERS: Final = frozenset({2, 7})
"""DHCPv6 messages a server answers them with: Advertise, Reply."""


def dhcp_xid(payload: bytes, v6: bool, request: bool) -> bytes | None:
    """The transaction id of a client's DHCP request (``request``) or of a server's answer: DHCPv4's
    BOOTREQUEST / BOOTREPLY xid (4 bytes, RFC 2131 §2), DHCPv6's transaction-id (3 bytes, RFC 8415
    §8); None for another message or too short a payload."""
    if v6:
        if len(payload) >= 4 and payload[0] in (_V6_REQUESTS if request else _V6_ANSWERS):
            return payload[1:4]
        return None
    if len(payload) >= 8 and payload[0] == (1 if request else 2):
        return payload[4:8]
    return None


def dhcp_answer_ports(sport: int, dport: int) -> bool:
    """Whether a UDP packet goes from a DHCP server's port to its clients' (DHCPv4 or DHCPv6)."""
    return _DHCP_PORTS.get(sport) == dport


def dhcp_pending(b: ConversationBuilder, rec: PacketRecord, act: bool = True) -> _Conn | None:
    """The live request this DHCP answer (from a server's port to a client's) answers (an expired one
    is dropped, with ``act``)."""
    xid = dhcp_xid(rec.payload, rec.sport == 547, False)
    if xid is None:
        return None
    return _pending(b, b._dhcp, xid, rec, act)


def _pending(b: ConversationBuilder, table: dict[Any, _Conn], key: Any, rec: PacketRecord, act: bool) -> _Conn | None:
    c = table.get(key)
    if c is None:
        return None
    ent = b._table.get(c.keys[0])
    if ent is None or ent[0] is not c or rec.ts - c.last > c.timeout:
        if act:
            del table[key]
        return None
    return c


def dhcp_request(b: ConversationBuilder, c: _Conn, rec: PacketRecord) -> None:
    """A DHCP client's request to all servers (``_DHCP_GROUPS``) on connection ``c``: the answers,
    found by its transaction id, join ``c`` (``dhcp_reply``). Every request, not only the
    connection's first: a client that retries with a new xid (RFC 2131 §4.1) is answered on the xid
    the server chose to answer."""
    xid = dhcp_xid(rec.payload, rec.dport == 547, True)
    if xid is not None:
        pend(b, b._dhcp, xid, c)


def pend(b: ConversationBuilder, table: dict[Any, _Conn], key: Any, c: _Conn) -> None:
    """Hold connection ``c`` as a request waiting for its answer under ``key`` in ``table`` (``b._tftp``,
    ``b._dhcp``); a full table (``_pending_max``) lets its oldest go, and the result says it overflowed."""
    if len(table) >= b._pending_max:
        b.result.overflowed = True
        del table[next(iter(table))]
    table[key] = c


def dhcp_reply(b: ConversationBuilder, rec: PacketRecord) -> tuple[_Conn, bool] | None:
    """A DHCP server answers a request to all servers (DHCPv4: from 0.0.0.0 to 255.255.255.255; DHCPv6:
    from the client's link-local address to ff02::1:2) from its own address: the answer joins the
    request (same transaction id, RFC 2131 §4.1, RFC 8415 §8) and names the server as the responder,
    so the flow is client -> DHCP server udp/67 (udp/547), as the catalog documents it."""
    c = dhcp_pending(b, rec)
    if c is None:
        return None
    if c.ra in _DHCP_GROUPS:
        c.ra = rec.src
    from_server = conn_key(IPPROTO_UDP, rec.src, rec.sport, rec.dst, rec.dport)
    to_server = conn_key(IPPROTO_UDP, rec.dst, rec.dport, rec.src, rec.sport)
    c.keys = (*c.keys, from_server, to_server)
    b._table[from_server] = (c, False)
    b._table.setdefault(to_server, (c, True))
    b.stats.dhcp_replies_joined += 1
    return c, False


def icmp(b: ConversationBuilder, rec: PacketRecord) -> None:
    proto, itype, q = rec.proto, rec.icmp_type, rec.quoted
    if q is not None:
        if icmp_error(b, rec):
            return
        b.stats.icmp_errors_unmatched += 1
        if b._chunk and q.proto == IPPROTO_UDP and b._join:
            note_unjoined(b, q.src, q.sport, q.dst, q.dport, rec.ts)
    request, reply = _ICMP_ECHO[proto]
    if itype in (request, reply):
        ent = b._lookup(icmp_key(proto, True, rec.src, rec.dst, rec.icmp_id), rec.ts)
        if ent is None:
            sender_orig = itype == request
            oa, ra = (rec.src, rec.dst) if sender_orig else (rec.dst, rec.src)
            keys = (icmp_key(proto, True, oa, ra, rec.icmp_id), icmp_key(proto, True, ra, oa, rec.icmp_id))
            conn = b._create(proto, oa, rec.icmp_id, ra, request, keys, EV_PROTOCOL, rec, sender_orig)
            ent = conn, sender_orig
    else:
        ent = b._lookup(icmp_key(proto, False, rec.src, rec.dst, itype), rec.ts)
        if ent is None:
            keys = (icmp_key(proto, False, rec.src, rec.dst, itype), icmp_key(proto, False, rec.dst, rec.src, itype))
            ent = b._create(proto, rec.src, 0, rec.dst, itype, keys, EV_FIRST, rec, True), True
    c, is_orig = ent
    if q is not None and c.chain is not None and q.proto in (IPPROTO_TCP, IPPROTO_UDP):
        note_aside(b, c.chain, q.proto, q.src, q.sport, q.dst, q.dport, rec.ts)
    b._account(c, is_orig, rec)
    c.mark(_D << (0 if is_orig else _RESP))


def note_aside(b: ConversationBuilder, chain: _Chain, proto: int, src: bytes, sport: int, dst: bytes, dport: int,
               ts: float) -> None:
    """In a chunk, a connection with a head chain took a packet whose place depends on another
    5-tuple (``proto``, ``src``... as a table key) not being live: a DHCP reply or TFTP transfer joined to a
    request, an ICMP error whose quoted connection is not live here. When that 5-tuple is first seen
    within the head window, a connection of the chunk before may have been live on it, and a
    sequential read would have given the packet to that connection: the merge looks it up too
    (``_Chain.aside``, chunks.live_aside) and replays the chain when it is."""
    key = conn_key(proto, src, sport, dst, dport)
    back = conn_key(proto, dst, dport, src, sport)
    if (key if key <= back else back) not in b._seen and b._anchor is not None \
            and ts - b._anchor <= b._windows[proto]:
        if chain.aside is None:
            chain.aside = []
        chain.aside.append((key, ts))


def note_unjoined(b: ConversationBuilder, src: bytes, sport: int, dst: bytes, dport: int, ts: float) -> None:
    """In a chunk, a UDP packet found no connection and no head chain takes it (a new connection past
    the head window, or after its 5-tuple's chain ended; an ICMP error quoting it matched none). A
    connection of an earlier chunk that a head chain continues here may hold this 5-tuple by a join
    the chunk never saw (a DHCP server's reply 5-tuple, a TFTP transfer's), and be live on it at
    ``ts`` in a sequential read, which would then have given it the packet: such 5-tuples are noted
    (``_unjoined``), and the merge looks them up once the chains are replayed (chunks.absorb_decided;
    a live one makes the merge inexact, and the engine reads again)."""
    dhcp = dhcp_answer_ports(sport, dport) or dhcp_answer_ports(dport, sport)
    if not (dhcp or _tftp_chained(b, dst, dport, src) or _tftp_chained(b, src, sport, dst)):
        return
    b._unjoined.append((conn_key(IPPROTO_UDP, src, sport, dst, dport), ts))


def _tftp_chained(b: ConversationBuilder, client: bytes, cport: int, server: bytes) -> bool:
    """Whether a udp/69 request connection from ``client`` to ``server`` is live here on a head chain."""
    ent = b._table.get(conn_key(IPPROTO_UDP, client, cport, server, 69))
    return ent is not None and ent[0].chain is not None


def icmp_error(b: ConversationBuilder, rec: PacketRecord) -> bool:
    """Attribute an ICMP error to the live connection whose packet it quotes."""
    q = rec.quoted
    if q is None or q.proto not in (IPPROTO_TCP, IPPROTO_UDP):
        return False  # a quoted echo carries no id here: cannot be matched reliably
    ent = b._table.get(conn_key(q.proto, q.src, q.sport, q.dst, q.dport))
    if ent is None or rec.ts - ent[0].last > ent[0].timeout:
        return False
    c, quoted_from_orig = ent
    if c.chain is not None:
        c.chain.record(rec)
    b.stats.icmp_errors_matched += 1
    # Destination unreachable (ICMPv4 type 3, ICMPv6 type 1), except "fragmentation needed"
    # (v4 code 4, RFC 1191 path-MTU discovery), which is no refusal. Only a refusal of what
    # the initiator sent refuses the connection; a responder's bounced reply does not.
    unreach = (rec.icmp_type == 3 and rec.icmp_code != 4) if rec.proto == IPPROTO_ICMP \
        else rec.icmp_type == 1
    if unreach and quoted_from_orig:
        if c.refused is None:
            c.refused = (rec.src, rec.icmp_type, rec.icmp_code)
        b.stats.icmp_refusals += 1
    return True

