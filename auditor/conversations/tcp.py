"""TCP in the conversation core: Zeek's history letters and endpoint state machine, SYNs on live
connections (retransmission, reordering, port reuse), conn_state, responders' TTLs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from auditor.conversations.state import (
    _A,
    _D,
    _D_BOTH,
    _F,
    _I,
    _NOT_HANDSHAKE,
    _O_INACTIVE,
    _Q,
    _R,
    _RESP,
    _RSTOS0,
    _S,
    _SYN_LETTERS,
    CLOSE_LINGER,
    CLOSED,
    ESTABLISHED,
    EV_SYN,
    EV_SYNACK,
    INACTIVE,
    PARTIAL,
    RESET,
    SYN_ACK_SENT,
    SYN_SENT,
    _Conn,
)
from auditor.model import (
    ACK,
    FIN,
    RST,
    SYN,
)
from auditor.record import PacketRecord

if TYPE_CHECKING:
    from auditor.conversations.builder import ConversationBuilder

def syn_joins(c: _Conn, is_orig: bool, rec: PacketRecord) -> bool:
    """Whether a SYN or SYN-ACK on a live key belongs to its connection (else: port reuse)."""
    if rec.tcp_flags & ACK:
        return True
    if c.os == RESET or c.rs == RESET or (c.os == CLOSED and c.rs == CLOSED):
        return False
    if c.isn >= 0:
        return is_orig and rec.seq == c.isn  # a retransmitted SYN
    return not c.hseen & _NOT_HANDSHAKE  # the SYN came after its SYN-ACK or ACK (reordered)


def syn_on_existing(b: ConversationBuilder, c: _Conn, is_orig: bool, rec: PacketRecord) -> tuple[_Conn, bool] | None:
    """A SYN or SYN-ACK on a live key: same connection (maybe flipped), or None for a new one."""
    if not syn_joins(c, is_orig, rec):
        b.stats.port_reuse += 1
        b._close(c)
        return None
    handshake_only = not c.hseen & _NOT_HANDSHAKE
    if rec.tcp_flags & ACK:
        # SYN-ACK: its receiver is the initiator. Flip only while nothing but handshake was seen.
        if c.ev > EV_SYNACK and handshake_only:
            if is_orig:
                flip(b, c)
                is_orig = False
            c.ev = EV_SYNACK
        return c, is_orig
    if c.isn >= 0:
        return c, is_orig  # retransmitted SYN
    # The SYN came after its SYN-ACK or ACK (reordered capture): it settles the direction.
    if not is_orig:
        flip(b, c)
        is_orig = True
    c.ev = EV_SYN
    return c, is_orig


def flip(b: ConversationBuilder, c: _Conn) -> None:
    c.oa, c.ra, c.op, c.rp = c.ra, c.oa, c.rp, c.op
    c.opk, c.rpk, c.oby, c.rby = c.rpk, c.opk, c.rby, c.oby
    c.os, c.rs, c.oprev, c.rprev = c.rs, c.os, c.rprev, c.oprev
    c.bad_o, c.bad_r = c.bad_r, c.bad_o
    c.ho, c.hr, c.fo, c.fr = c.hr, c.ho, c.fr, c.fo
    c.appc = None
    low = (1 << _RESP) - 1
    c.hseen = ((c.hseen & low) << _RESP) | (c.hseen >> _RESP)
    if c.marks is not None:
        c.marks = c.marks[3:] + c.marks[:3]
    c.keys = (c.keys[1], c.keys[0])
    b._table[c.keys[1]] = (c, False)
    b._table[c.keys[0]] = (c, True)
    c.hist.append("^")


def packet(b: ConversationBuilder, c: _Conn, is_orig: bool, rec: PacketRecord) -> None:
    flags, plen = rec.tcp_flags, rec.payload_len
    syn, fin, rst, ack = flags & SYN, flags & FIN, flags & RST, flags & ACK
    shift, base = (0, 0) if is_orig else (_RESP, 3)
    # History, as Zeek's update_history (TCPSessionAdapter.cc).
    nflags = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    if nflags == 1:
        # S/H, F, R: recorded again when their sequence number differs from the last one.
        if syn:
            bit, slot, value = _S << shift, base, rec.seq
            letter = _SYN_LETTERS[is_orig][1 if ack else 0]
        elif fin:
            bit, slot, value = _F << shift, base + 1, (rec.seq + plen) & 0xFFFFFFFF  # after its data
            letter = "F" if is_orig else "f"
        else:
            bit, slot, value = _R << shift, base + 2, rec.seq
            letter = "R" if is_orig else "r"
        marks = c.marks
        if marks is None:
            marks = c.marks = [-1] * 6
        if not c.hseen & bit:
            c.hseen |= bit
            c.hist.append(letter)
        elif marks[slot] != value:
            c.hist.append(letter)
        marks[slot] = value
    elif nflags:
        c.mark((_I if fin and rst else _Q) << shift)
    elif plen:
        c.mark(_D << shift)
    elif ack:
        c.mark(_A << shift)
    if plen and not rst:
        c.data = True
    if syn and not ack and is_orig and c.isn < 0:
        c.isn = rec.seq
    if not is_orig and rec.ttl >= 0:
        # The responder's TTL: of its first RST, and of its SYN-ACKs and FINs (never laned, so
        # seen alike by one process and by the shares of a parallel run) for comparison.
        if rst:
            if c.rst_ttl < 0:
                c.rst_ttl = rec.ttl
        elif syn or fin:
            if c.chain is not None:
                ttls = c.chain.ttls
                if ttls is None:
                    ttls = c.chain.ttls = {}
                ttls[rec.src] = ttls.get(rec.src, 0) | 1 << rec.ttl
            else:
                ttl_seen(b, rec.src, rec.ttl)
    # Endpoint state machine, as Zeek's UpdateStateMachine.
    if is_orig:
        es, ep, ps, pp = c.os, c.oprev, c.rs, c.rprev
    else:
        es, ep, ps, pp = c.rs, c.rprev, c.os, c.oprev
    if es == INACTIVE:
        if syn:
            if is_orig:
                if ack:
                    es, ep = SYN_ACK_SENT, es
                elif ps == ESTABLISHED:
                    es, ep = ESTABLISHED, es  # SYN seen after its SYN-ACK
                else:
                    es, ep = SYN_SENT, es
            else:
                if ps == SYN_SENT:
                    ps, pp = ESTABLISHED, ps
                es, ep = ESTABLISHED, es
        if fin:
            es, ep = CLOSED, es
        if rst:
            es, ep = RESET, es
        if es == INACTIVE:
            if not is_orig and plen == 0 and c.os == SYN_SENT:
                pass  # an ACK of the SYN before the SYN-ACK is no partial connection
            elif ack and ps == ESTABLISHED:
                es, ep = ESTABLISHED, es  # missed the SYN, saw the SYN-ACK and now an ACK
            else:
                es, ep = PARTIAL, es
    elif es in (SYN_SENT, SYN_ACK_SENT):
        if fin:
            es, ep = CLOSED, es
        if rst:
            es, ep = RESET, es
    elif es in (PARTIAL, ESTABLISHED):
        if syn and es == PARTIAL and ps == INACTIVE and not ack:
            es, ep = SYN_SENT, es
        if fin and not rst:
            es, ep = CLOSED, es
            if ps == RESET and pp == CLOSED:
                ps, pp = CLOSED, ps  # FIN then RST from the peer was a normal close
        if rst:
            es, ep = RESET, es
    elif es == CLOSED and rst and ps != CLOSED:
        es, ep = RESET, es
    if is_orig:
        c.os, c.oprev, c.rs, c.rprev = es, ep, ps, pp
    else:
        c.rs, c.rprev, c.os, c.oprev = es, ep, ps, pp
    if (c.os == RESET or c.rs == RESET or (c.os == CLOSED and c.rs == CLOSED)) and c.timeout > CLOSE_LINGER:
        c.timeout = CLOSE_LINGER
        b.soon(c, rec.ts)


def ttl_seen(b: ConversationBuilder, addr: bytes, ttl: int) -> None:
    ttls = b._ttls
    seen = ttls.get(addr)
    if seen is None:
        if len(ttls) >= b._ttls_max:
            b.result.overflowed = True  # a host past the bound: its RSTs' TTL check says unknown
            return
        ttls[addr] = 1 << ttl
    elif not seen >> ttl & 1:
        ttls[addr] = seen | 1 << ttl


def conn_state(b: ConversationBuilder, c: _Conn, history: str) -> str:
    """Zeek's conn_state() (base/protocols/conn/main.zeek), from the two endpoint states."""
    os, rs = c.os, c.rs
    o_inactive, r_inactive = os in _O_INACTIVE, rs in _O_INACTIVE
    if rs == RESET:
        size0 = not c.data and not c.hseen & _D_BOTH
        if os in (SYN_SENT, SYN_ACK_SENT) or (os == RESET and size0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.fullmatch(history) else "OTH"
        return "RSTO"
    if os == CLOSED and rs == CLOSED:
        return "SF"
    if os == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"

