"""Chunks and their exact merge (SPEC §8): a chunk's head chains, ``absorb`` and the replay."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from auditor.apps import identify_connection
from auditor.conversations import related, tcp
from auditor.conversations.state import (
    _ICMP_ECHO,
    _REPLAYED_COUNTERS,
    _RESP,
    DISORDER_SLACK,
    Head,
    _Chain,
    _Conn,
    _Run,
    conn_key,
    icmp_key,
    packed,
    unpacked,
)
from auditor.flow import Flow, share_counts
from auditor.model import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    SYN,
)
from auditor.record import PacketRecord

if TYPE_CHECKING:
    from auditor.conversations.builder import ConversationBuilder

def end_chunk(b: ConversationBuilder, last: bool = False) -> ConversationBuilder:
    """End a chunk: its live connections stay open, for the next chunk's merge (``absorb``) or
    ``finish``, but those no later packet can continue are closed here, in the chunk's own process
    (``close_idle``; all of them when the chunk is the ``last`` of the run). The builder is then a
    value (picklable: a worker process sends it back)."""
    for c, _ in b._table.values():
        if c.last > b.last_ts:
            b.last_ts = c.last
    for chain in b.chains:
        chain.seal()
    close_idle(b, last)
    # The sweep's queues still hold the connections closed since they were queued (each with its
    # history and first payloads): the part keeps only live ones.
    b._queue = deque(c for c in b._queue if not c.dead and not c.later)
    b._later = deque(c for c in b._later if not c.dead and c.later)
    b._lane = None  # the lane holds the builder and cannot be pickled
    return b


def close_idle(b: ConversationBuilder, everything: bool = False) -> None:
    """Close the live connections idle past their timeout at DISORDER_SLACK before the last packet
    so far (``everything``: all of them): no later packet can continue them, as a chunk that starts
    earlier than that makes the merge inexact (auditor/engine.py then reads again). Of those left
    open whose first payloads are both in, what they show is worked out now (``_Conn.appc``), so that
    their close costs less in the merging process."""
    clock = b.last_ts - DISORDER_SLACK
    for key, (c, is_orig) in list(b._table.items()):
        if not is_orig or c.keys[0] != key:
            continue
        if everything or clock - c.last > c.timeout:
            b._close(c)
        elif c.appc is None and c.ho is not None and c.hr is not None and c.proto in (IPPROTO_TCP, IPPROTO_UDP):
            c.appc = (identify_connection(c.proto, c.op, c.rp, c.ho, c.fo, c.hr, c.fr),)


def absorb(b: ConversationBuilder, right: ConversationBuilder) -> ConversationBuilder:
    """Merge the chunk that comes next (``right``, ended with ``end_chunk``) into this one, exactly
    as one builder would have read both in order, and return this builder (``right`` is consumed).

    For each head chain of ``right`` (a 5-tuple seen in the first idle timeout of its chunk), its
    first packet is looked up here, as a sequential read would: when it continues a connection of
    this builder (or a TFTP/DHCP request waiting for its answer, or the connection an ICMP error
    quotes), the chain's log is replayed on that connection and the chain's own results are
    dropped; otherwise this builder's stale connection on the 5-tuple is closed as a sequential
    read would close it, and the chain's results stand. Then ``right``'s flows, counters and live
    connections are taken over. Below the table bounds the result is exactly one builder's.

    The merge is associative: chains this builder would still have to check against an earlier
    chunk stay chains (logs joined), so (a+b)+c and a+(b+c) give the same result."""
    firsts = heads(right)
    return absorb_decided(b, right, firsts, decide(b, firsts))


def heads(right: ConversationBuilder) -> list[Head]:
    """What a merge looks up of each head chain, in order (``decide``): its first packet, and the
    packets of other 5-tuples its connections took as joined to a request (``_Chain.aside``)."""
    out: list[Head] = []
    for chain in right.chains:
        first = chain.log[0]
        assert not isinstance(first, (bytes, _Run))  # a chain starts with the record that made it
        aside = tuple(chain.aside) if chain.aside else ()
        if first.quoted is None and first.tunnel is None:
            out.append((packed(first, first.payload), aside))
        else:
            out.append((first, aside))
    return out


def decide(b: ConversationBuilder, firsts: list[Head]) -> list[bool]:
    """Which head chains of the next chunk continue something live here, looked up before any is
    merged (``probe`` without acting). ``absorb_decided`` checks each again at its turn, acting."""
    return [continues(b, record(first), aside, act=False) for first, aside in firsts]


def continues(b: ConversationBuilder, first: PacketRecord, aside: tuple[tuple[bytes, float], ...],
              act: bool = True) -> bool:
    """Whether a head chain continues something live here: its first packet (``probe``), or one of the
    packets it took as joined to a request (``live_aside``)."""
    return probe(b, first, act) or live_aside(b, aside)


def record(first: PacketRecord | bytes) -> PacketRecord:
    """A head chain's first packet, as ``heads`` gave it (``packed`` or not)."""
    return unpacked(first) if isinstance(first, bytes) else first


def live_aside(b: ConversationBuilder, aside: tuple[tuple[bytes, float], ...]) -> bool:
    """Whether a packet a head chain took as joined to a request (``_Chain.aside``) would have gone to
    a connection live here on its 5-tuple: then the chain is replayed here, as a sequential read."""
    return any(live(b, key, ts) for key, ts in aside)


def live(b: ConversationBuilder, key: bytes, ts: float) -> bool:
    """Whether a connection is live here on table key ``key`` at time ``ts`` (not idle past its
    timeout), looked up without acting."""
    ent = b._table.get(key)
    return ent is not None and ts - ent[0].last <= ent[0].timeout


def settle(right: ConversationBuilder, joins: list[bool]) -> None:
    """In the next chunk's own process, once this side has ``decide``d: the chains that continue
    nothing are folded into its flows there (their logs are never sent); the others stay, to be
    replayed (``absorb_decided`` with all True). Only for a merge into a builder that starts the
    run (it keeps no chains of its own to extend)."""
    kept = []
    for chain, joined in zip(right.chains, joins, strict=True):
        if joined:
            kept.append(chain)
            continue
        right._chunk = False  # fold: into flows, not into the chain
        fold(right, chain)
        right._chunk = True
        c = chain.conn
        if c is not None and c.chain is chain:
            c.chain = None
        right._chains.pop(chain.ck, None)
    right.chains = kept
    right.settled = True
    # The flows travel with their tallies shared (one copy of each distinct one: a part's flows are
    # many, their tallies a few dozen); Flow.add and Flow.merge copy a shared one before changing it.
    share_counts(right.result.flows.values())
    # What only a merge into a chunk reads (adopt), and the sweep's queues (the merge queues the live
    # connections it takes over afresh): not sent.
    right._seen, right._chains = set(), {}
    right._queue.clear()
    right._later.clear()


def absorb_decided(b: ConversationBuilder, right: ConversationBuilder, firsts: list[Head],
                   joins: list[bool], more: Iterable[list[Flow]] = ()) -> ConversationBuilder:
    """``absorb`` once ``decide`` has looked the chains' first packets (``firsts``, from ``heads``)
    up here. ``right`` holds all its chains, or, once ``settle``d in its own process, only those
    that ``joins`` says continue something here. At its turn each first packet is looked up again,
    acting as a sequential read would; a chain whose answer changed meanwhile (a chain merged ahead
    of it changed what is live) is replayed when its log is here, else counted in ``merge_misses``,
    as are two chains replayed onto one connection with their packets interleaved in time.
    ``more``: flows of ``right`` that come after it (a worker sends them in pieces), taken over
    after its own, where one builder of the whole would have them."""
    if right._anchor is None:  # no connection at all: its counters only
        take_counts(b, right, set(), more)
        return b
    if b._anchor is None:
        b._anchor, b._seen = right._anchor, right._seen
    dropped: set[int] = set()
    landed: dict[int, tuple[_Conn, float]] = {}
    """A connection here that replayed chains went on to -> (it, the latest of their packets)."""
    chains = iter(right.chains)
    for (head, aside), joined in zip(firsts, joins, strict=True):
        first = record(head)
        chain = next(chains) if joined or not right.settled else None
        if not joined and continues(b, first, aside):
            if chain is None:
                b.merge_misses += 1
                continue
            joined = True
        if joined:
            assert chain is not None
            replay_instead(b, chain)
            dropped.add(id(chain))
            b.replays[first.proto] = b.replays.get(first.proto, 0) + 1
            ent = b._table.get(chain.ck)
            if ent is not None:
                c = ent[0]
                met = landed.get(id(c))
                if met is not None and chain.first_ts < met[1]:
                    # Two chains of the next chunk went on to one connection here (a DHCP reply and
                    # a retried request joined by their transaction ids) with their packets
                    # interleaved in time: replayed a chain after the other, not in the order a
                    # sequential read meets them (which server answered first names the responder).
                    b.merge_misses += 1
                landed[id(c)] = (c, max(met[1], chain.last_ts) if met is not None else chain.last_ts)
        elif chain is not None:
            adopt(b, chain, right)
    # A packet the next chunk gave a connection of its own past its head window may belong to one
    # of this builder's that the chains just replayed kept live (related.note_unjoined): a sequential
    # read would have given it there. Rare (a DHCP client retrying across the boundary): the merge is
    # then not exact, and the engine reads again.
    b.merge_misses += sum(1 for key, ts in right._unjoined if live(b, key, ts))
    take_counts(b, right, dropped, more)
    return b


def probe(b: ConversationBuilder, rec: PacketRecord, act: bool = True) -> bool:
    """Whether ``rec`` continues something live here (a connection, a pending TFTP or DHCP
    request, the connection an ICMP error quotes). With ``act``, when it does not, what a sequential
    read does before making a new connection is done: a stale connection on its 5-tuple is closed
    (idle split, or port reuse), a stale pending request dropped; without, nothing changes."""
    proto = rec.proto
    if proto in (IPPROTO_TCP, IPPROTO_UDP):
        ent = b._table.get(conn_key(proto, rec.src, rec.sport, rec.dst, rec.dport))
        if ent is not None and rec.ts - ent[0].last > ent[0].timeout:
            if act:
                b.stats.idle_splits += 1
                b._close(ent[0])
            ent = None
        if ent is not None:
            if proto == IPPROTO_TCP and rec.tcp_flags & SYN and not tcp.syn_joins(ent[0], ent[1], rec):
                if act:
                    b.stats.port_reuse += 1
                    b._close(ent[0])
                return False
            return True
        if proto == IPPROTO_UDP and b._join:
            if b._tftp and related.tftp_pending(b, rec, act) is not None:
                return True
            if b._dhcp and related.dhcp_answer_ports(rec.sport, rec.dport) \
                    and related.dhcp_pending(b, rec, act) is not None:
                return True
        return False
    if proto not in _ICMP_ECHO:
        return False
    q = rec.quoted
    if (q is not None and q.proto in (IPPROTO_TCP, IPPROTO_UDP)
            and live(b, conn_key(q.proto, q.src, q.sport, q.dst, q.dport), rec.ts)):
        return True
    request, reply = _ICMP_ECHO[proto]
    echo = rec.icmp_type in (request, reply)
    key = icmp_key(proto, echo, rec.src, rec.dst, rec.icmp_id if echo else rec.icmp_type)
    if act:
        return b._lookup(key, rec.ts) is not None
    return live(b, key, rec.ts)


def replay_instead(b: ConversationBuilder, chain: _Chain) -> None:
    """Replay a chain of the next chunk here, in place of its own results. Its packets were
    counted there; the counters its own reading added are taken back (what a fresh builder
    replaying it counts), those of this replay added."""
    fresh = type(b)(**b._params)  # type: ignore[arg-type]
    replay(fresh, chain.log)
    mine, theirs = b.stats, fresh.stats
    for name in _REPLAYED_COUNTERS:
        setattr(mine, name, getattr(mine, name) - getattr(theirs, name))
    replay(b, chain.log)


def replay(b: ConversationBuilder, log: list[PacketRecord | _Run | bytes]) -> None:
    for item in log:
        if type(item) is _Run:
            apply_run(b, item)
        elif type(item) is bytes:
            b._slow(unpacked(item))
        else:
            b._slow(item)  # type: ignore[arg-type]


def apply_run(b: ConversationBuilder, run: _Run) -> None:
    """The effect of a run of fast-lane packets: counters, times and history letters, on the
    connection each table key leads to here. The lane took them as plain packets of active
    senders within CLOSE_LINGER of the connection's last packet, so no connection ends inside the
    run and no endpoint state moves; a sender still inactive here (a responder's ACKs to a SYN it
    has not answered) would have sent only pure ACKs, whose effect on the slow path is the same.
    Chains of this builder log the part of the run that went to their connections."""
    table = b._table
    parts: dict[int, tuple[_Chain, _Run]] = {}
    first, last = run.first, run.last
    for way, key, n, v in ((0, run.k0, run.n0, run.v0), (1, run.k1, run.n1, run.v1)):
        if n <= 0:
            continue
        ent = table.get(key)
        if ent is None:  # only when a bound evicted the connection in between
            b.result.overflowed = True
            continue
        c, is_orig = ent
        c.add(is_orig, n, v, first, last)
        chain = c.chain if b._chunk else None
        if chain is not None:
            part = parts.get(id(chain))
            if part is None:
                part = parts[id(chain)] = (chain, _Run(run.k0, run.k1))
                part[1].first, part[1].last = first, last
            if way:
                part[1].n1, part[1].v1 = n, v
            else:
                part[1].n0, part[1].v0 = n, v
            if last > chain.last_ts:
                chain.last_ts = last
    for letter in run.letters:
        responder = letter >= 1 << _RESP  # a letter of k1's sender
        ent = table.get(run.k1 if responder else run.k0)
        if ent is None:
            continue
        c, is_orig = ent
        bit = letter >> _RESP if responder else letter
        c.mark(bit if is_orig else bit << _RESP)
        if c.chain is not None and id(c.chain) in parts:
            parts[id(c.chain)][1].letters.append(letter)
    for chain, sub in parts.values():
        chain.log.append(sub)
        chain.run = None


def adopt(b: ConversationBuilder, chain: _Chain, right: ConversationBuilder) -> None:
    """A chain of the next chunk that starts afresh here too: its results stand. It stays a chain
    when this builder would still have to check it against an earlier chunk."""
    ck = chain.ck
    mine = b._chains.get(ck)
    if mine is not None and chain.first_ts - mine.last_ts > b._timeouts[chain.proto]:
        del b._chains[ck]  # this builder's chain ended with a full idle timeout
        mine = None
    if not b._chunk:
        fold(b, chain)
        keep: _Chain | None = None
    elif mine is not None:  # this builder's chain goes on: one log, one set of results
        mine.log.extend(chain.log)
        if chain.aside:
            mine.aside = (mine.aside or []) + chain.aside
        mine.closed.extend(chain.closed)
        if chain.ttls:
            ttls = mine.ttls = mine.ttls or {}
            for addr, bits in chain.ttls.items():
                ttls[addr] = ttls.get(addr, 0) | bits
        mine.last_ts = max(mine.last_ts, chain.last_ts)
        mine.run = None
        keep = mine
        if ck not in right._chains:
            del b._chains[ck]
    elif ck in b._seen or chain.first_ts - b._anchor > b._windows[chain.proto]:  # type: ignore[operator]
        first = chain.log[0]
        if chain.proto == IPPROTO_UDP and b._join and not isinstance(first, (bytes, _Run)) and first.quoted is None:
            # Past this builder's head window, but a connection of a chunk before it may hold the
            # 5-tuple by a join and be kept live by this builder's chains: looked up by that merge.
            related.note_unjoined(b, first.src, first.sport, first.dst, first.dport, first.ts)
        fold(b, chain)
        keep = None
    else:
        keep = chain
        b.chains.append(chain)
        if ck in right._chains:
            b._chains[ck] = chain
    c = chain.conn
    if keep is not chain and c is not None and c.chain is chain:
        c.chain = keep
        if keep is not None:
            keep.conn = c


def fold(b: ConversationBuilder, chain: _Chain) -> None:
    """A chain's results into the flows: nothing before it continues it."""
    for e in chain.closed:  # (Flow.add's arguments..., initiator, responder, its port, Connection)
        b._flow_for(e[16], e[17], e[0], e[18], e[5], e[1], e[3]).add(*e[:16])
        conn = e[19]
        if conn is not None and b._keep:
            b.result.connections.append(conn)
    if chain.ttls:
        for addr, bits in chain.ttls.items():
            for ttl in range(bits.bit_length()):
                if bits >> ttl & 1:
                    tcp.ttl_seen(b, addr, ttl)
    chain.closed, chain.ttls = [], None


def take_counts(b: ConversationBuilder, right: ConversationBuilder, dropped: set[int],
                more: Iterable[list[Flow]] = ()) -> None:
    """Take over the next chunk's flows (then ``more`` of them, piece by piece), counters and live
    connections (but those of dropped chains, replayed here instead)."""
    result = b.result
    right.result.host_ttls = {}
    result.merge(right.result)
    for piece in more:
        result.take(piece)
    for addr, bits in right._ttls.items():
        for ttl in range(bits.bit_length()):
            if bits >> ttl & 1:
                tcp.ttl_seen(b, addr, ttl)
    b.merge_misses += right.merge_misses
    if b._chunk:  # a merge into a chunk before this one looks them up again
        b._unjoined += right._unjoined
    b._normal_flows += right._normal_flows
    b._summaries += right._summaries
    for target, n in right._fanin.items():
        b._fanin[target] = b._fanin.get(target, 0) + n
    if right._seen is not b._seen and right._anchor is not None and b._anchor is not None \
            and right._anchor - b._anchor <= b._window:
        b._seen |= right._seen
    b.first_ts = min(b.first_ts, right.first_ts)
    b.last_ts = max(b.last_ts, right.last_ts)
    table = b._table
    moved: set[int] = set()
    for key, (c, is_orig) in right._table.items():
        if c.chain is not None and id(c.chain) in dropped:
            continue
        old = table.get(key)
        if old is not None and old[0] is not c:
            b._close(old[0])  # idle since long before: a sequential read's sweep closed it
        table[key] = (c, is_orig)
        if id(c) not in moved:
            moved.add(id(c))
            b._live += 1
            b.enqueue(c, b.clock(c.last))
    for xid, c in right._dhcp.items():
        if id(c) in moved:
            b._dhcp[xid] = c
    for tkey, c in right._tftp.items():
        if id(c) in moved:
            b._tftp[tkey] = c
    if b._live > b.stats.peak_live:
        b.stats.peak_live = b._live


def chain_for(b: ConversationBuilder, c: _Conn, proto: int, keys: tuple[bytes, bytes],
               ts: float) -> None:
    """A new connection in a chunk: part of its 5-tuple's head chain, if it has one."""
    if ts < b.first_ts:
        b.first_ts = ts
    if b._anchor is None:
        b._anchor = ts
    k0, k1 = keys
    ck = k0 if k0 <= k1 else k1
    chain = b._chains.get(ck)
    inside = ts - b._anchor <= b._windows[proto]
    if chain is not None:
        chain.seal()
        if ts - chain.last_ts <= b._timeouts[proto]:
            c.chain = chain
            chain.conn = c
            return
        del b._chains[ck]  # a full idle timeout since the chain's last packet: it ends
    elif inside and ck not in b._seen:
        if len(b.chains) >= b._max_flows:
            # As many chains as flows: a flood or a scan. Later 5-tuples get none (their connections
            # go to flows at once); the result is a bounded summary, exact in its totals (SPEC §8).
            b.result.overflowed = True
            return
        chain = c.chain = _Chain(ck, proto, ts)
        chain.conn = c
        b._chains[ck] = chain
        b.chains.append(chain)
    if inside:
        b._seen.add(ck)
