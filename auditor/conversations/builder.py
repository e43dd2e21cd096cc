"""The conversation core's builder: records (and the fast lane's packets) in, connections and flows
out. See the package's docstring for the design."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from auditor.addrtext import addr_str
from auditor.apps import APP_SNAP, UNKNOWN, AppEvidence, identify_connection
from auditor.conversations import chunks, related, tcp
from auditor.conversations.lane import FastLane
from auditor.conversations.results import ConversationResult
from auditor.conversations.state import (
    _ATTEMPT_STATES,
    _C,
    _D,
    _DHCP_GROUPS,
    _DHCP_PORTS,
    _HIST_LETTER,
    _NO_TUNNELS,
    _POW10,
    _RESET_STATES,
    _RESP,
    CLOSE_LINGER,
    DISORDER_SLACK,
    ESTABLISHED,
    FANIN_TARGETS_MAX,
    HOST_TTLS_MAX,
    INACTIVE,
    SWEEP_EVERY,
    TFTP_PENDING_MAX,
    TFTP_PORT,
    _Chain,
    _Conn,
    _tunnel_text,
    conn_key,
    direction,
)
from auditor.flow import Flow
from auditor.model import (
    DIRECTION_EVIDENCE,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    PROTO_NAMES,
    SYN,
    Connection,
    FlowKey,
    Refusal,
)
from auditor.nametable import NameTable
from auditor.record import PacketRecord, as_record


class ConversationBuilder:
    """Feed PacketRecords, then ``finish()`` for the flows. Memory follows live connections."""

    def __init__(self, *, server_ports: frozenset[tuple[str, int]] = frozenset(),
                 tcp_idle_timeout: float = 300.0, udp_idle_timeout: float = 60.0,
                 icmp_idle_timeout: float = 60.0, max_live: int = 100_000, max_flows: int = 250_000,
                 flood_fanin: int = 1_000,
                 keep_connections: bool = False, join_related: bool = True,
                 connection_sink: Callable[[Connection], None] | None = None, chunk: bool = False) -> None:
        self._pending_max = TFTP_PENDING_MAX
        self._targets_max = FANIN_TARGETS_MAX
        self._server_ports = server_ports
        self._join = join_related
        """Join TFTP transfers and broadcast DHCP replies to their requests (off: plain 5-tuples, as
        tshark's conversation table has them)."""
        self._timeouts = {IPPROTO_TCP: tcp_idle_timeout, IPPROTO_UDP: udp_idle_timeout,
                          IPPROTO_ICMP: icmp_idle_timeout, IPPROTO_ICMPV6: icmp_idle_timeout}
        self._min_timeout = min(CLOSE_LINGER, tcp_idle_timeout, udp_idle_timeout, icmp_idle_timeout)
        self._late = max(self._min_timeout, min(tcp_idle_timeout, udp_idle_timeout, icmp_idle_timeout))
        """How long a connection waits in the sweep's long queue (see ``enqueue``)."""
        self._max_live = max(1, max_live)
        self._max_flows = max(1, max_flows)
        self._max_summaries = max(16, max_flows // 16)
        self._flood_fanin = max(1, flood_fanin)
        self._fanin: dict[tuple[str, str, int], int] = {}
        self._ttls: dict[bytes, int] = {}
        """Responder (packed) -> bit set of its SYN-ACK and FIN TTLs (ConversationResult.host_ttls)."""
        self._ttls_max = HOST_TTLS_MAX
        """Unanswered-attempt flows per (responder, protocol, port), for flood detection."""
        self._keep = keep_connections
        self._sink = connection_sink
        """Called with every connection as it closes (a Zeek conn.log streams them: memory stays that
        of the live connections)."""
        self._table: dict[bytes, tuple[_Conn, bool]] = {}
        self._queue: deque[_Conn] = deque()
        """The sweep's short queue: connections it looks at again after ``_min_timeout`` seconds."""
        self._later: deque[_Conn] = deque()
        """The sweep's long queue: connections it looks at again after ``_late`` seconds."""
        self._now = float("-inf")
        """The latest time a connection was queued at: the queues' clock, which never goes back (a
        packet of a capture's disorder, earlier than some before it, would put its connection behind
        later ones, and so hold them past their turn)."""
        self._tftp: dict[tuple[bytes, bytes, int], _Conn] = {}
        """Pending TFTP requests: (server, client, client port) -> the udp/69 connection."""
        self._dhcp: dict[bytes, _Conn] = {}
        """Pending DHCP requests to all servers (related.dhcp_request): transaction id -> the connection."""
        self._live = 0
        self._countdown = SWEEP_EVERY
        self._normal_flows = 0
        self._summaries = 0
        self.result = ConversationResult()
        self.stats = self.result.stats
        self._lane: FastLane | None = FastLane(self)
        """The fast lane, for records too (``feed``); None once the builder has ended (``finish``,
        ``end_chunk``): the lane holds the builder, and cannot be pickled."""
        self._params = dict(server_ports=server_ports, tcp_idle_timeout=tcp_idle_timeout,
                            udp_idle_timeout=udp_idle_timeout, icmp_idle_timeout=icmp_idle_timeout,
                            max_live=max_live, max_flows=max_flows, flood_fanin=flood_fanin,
                            keep_connections=keep_connections, join_related=join_related)
        self._chunk = chunk
        """This builder reads a chunk that may not start the run: it keeps head chains (_Chain) for a
        merge (``absorb``) and ``end_chunk`` leaves its live connections open."""
        self._anchor: float | None = None
        """Time of the chunk's first connection: 5-tuples first seen within ``_window`` of it start
        head chains (later ones cannot continue a connection of an earlier chunk)."""
        longest = max(tcp_idle_timeout, udp_idle_timeout, icmp_idle_timeout)
        self._windows = {IPPROTO_TCP: tcp_idle_timeout + DISORDER_SLACK, IPPROTO_UDP: udp_idle_timeout + DISORDER_SLACK,
                         IPPROTO_ICMP: longest + DISORDER_SLACK, IPPROTO_ICMPV6: longest + DISORDER_SLACK}
        """Per IP protocol, how long after the chunk's first connection a new 5-tuple starts a head chain:
        one idle timeout (an earlier chunk's connection of that protocol expires after it) and the slack
        for timestamps out of order; ICMP the longest, as its errors quote TCP and UDP connections."""
        self._window = max(self._windows.values())
        self._seen: set[bytes] = set()
        """5-tuples (both directions as one, the smaller key) seen within the window."""
        self._chains: dict[bytes, _Chain] = {}
        """Head chains still taking connections, by 5-tuple."""
        self.chains: list[_Chain] = []
        """Every head chain of this chunk whose results are not yet folded into flows, in order."""
        self.settled = False
        """``chunks.settle`` kept only the chains a merge decided continue something."""
        self.merge_misses = 0
        """Packets of later chunks a merge could not place as a sequential read would: chains settled
        in their own process (``chunks.settle``) found continuing something after all, packets noted in
        ``_unjoined`` found belonging to a connection here. The merge is then not exact
        (auditor/engine.py reads again)."""
        self._unjoined: list[tuple[bytes, float]] = []
        """(table key, time) of UDP packets this chunk found no connection for past its head window, on
        5-tuples a connection of an earlier chunk may hold by a DHCP or TFTP join (related.note_unjoined):
        the merge looks them up once the chains are replayed."""
        self.replays: dict[int, int] = {}
        """Chains of later chunks replayed here, by IP protocol of their first packet (what a merge
        found continuing across a chunk boundary)."""
        self.first_ts = float("inf")
        self.last_ts = float("-inf")
        """Time span of the connections (first and last packets), for the merge's order check."""

    @property
    def live_connections(self) -> int:
        return self._live

    # ---- feeding ------------------------------------------------------------------------------

    def feed(self, record: Any) -> None:
        """One record. Established TCP and known UDP packets take the fast lane (``FastLane.take``:
        one dict lookup and a few integer updates); everything else goes to the slow path."""
        rec = record if type(record) is PacketRecord else as_record(record)
        proto = rec.proto
        lane = self._lane
        key = b""
        # SYN, FIN and RST never take the lane (FastLane.take declines them): straight to the slow path.
        if (proto == 6 or proto == 17) and not rec.tcp_flags & 7 and not rec.checksum_bad and rec.tunnel is None \
                and lane is not None:
            key = conn_key(proto, rec.src, rec.sport, rec.dst, rec.dport)
            if lane.take(proto, key, rec.ts, rec.tcp_flags, rec.payload_len, rec.ip_len):
                return
        self.stats.packets += 1
        self._countdown -= 1
        if not self._countdown:
            self._countdown = SWEEP_EVERY
            self._sweep(rec.ts)
        self._slow(rec, key)

    def lane(self, names: NameTable | None = None, tick: Callable[[], None] | None = None, *,
             puts: bool | None = None) -> FastLane:
        """The fast lane for a capture reader (see FastLane); with ``names`` (or ``puts``), it takes the
        reader's records too, into this builder and that name table (FastLane.put), calling ``tick``
        every lane.TICK_RECORDS of them."""
        return FastLane(self, names, tick, puts=puts)

    def feed_many(self, recs: Iterable[Any]) -> None:
        """Several records (of either build: ``feed``), in order: the same as feeding them one at a time."""
        feed = self.feed
        for rec in recs:
            feed(rec)

    def finish(self) -> ConversationResult:
        """Close every live connection into its flow and return the result (call once). A chunk's
        builder (or the merge of chunks) folds its head chains in: nothing comes before it any more."""
        self._chunk = False
        for chain in self.chains:
            chunks.fold(self, chain)
        self.chains, self._chains, self._seen = [], {}, set()
        for key, (c, is_orig) in list(self._table.items()):
            if is_orig and c.keys[0] == key:
                self._close(c)
        self._queue.clear()
        self._later.clear()
        self.result.host_ttls = {addr_str(a): seen for a, seen in self._ttls.items()}
        if self._keep:
            self.result.connections.sort(key=lambda x: (x.first_seen, x.first_frame))
        # The lane holds this builder: no cycle left (audit.collect pauses the collector).
        self._lane = None
        return self.result

    # ---- chunks and their merge (SPEC §8) -------------------------------------------------------

    def end_chunk(self, last: bool = False) -> ConversationBuilder:
        """End a chunk (``last``: nothing follows it) for the next chunk's merge (``absorb``) or
        ``finish`` (chunks.end_chunk). The builder is then a value (picklable: a worker process
        sends it back)."""
        return chunks.end_chunk(self, last)

    def absorb(self, right: ConversationBuilder) -> ConversationBuilder:
        """Merge the chunk that comes next (``right``, ended with ``end_chunk``) into this one, exactly
        as one builder would have read both in order, and return this builder (auditor/conversations/
        chunks.py says how)."""
        return chunks.absorb(self, right)

    # ---- slow path ----------------------------------------------------------------------------

    def _slow(self, rec: PacketRecord, key: bytes = b"") -> None:
        """A record off the fast lane (``key``: its table key, when ``feed`` made it already)."""
        proto = rec.proto
        if rec.checksum_bad:
            self.stats.bad_checksums += 1
        if proto in (IPPROTO_TCP, IPPROTO_UDP):
            self._transport(rec, self._table.get(key or conn_key(proto, rec.src, rec.sport, rec.dst, rec.dport)))
        elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            related.icmp(self, rec)
        else:
            other = self.stats.other_protocols
            name = f"ipproto:{proto}"
            other[name] = other.get(name, 0) + 1

    def _lookup(self, key: bytes, ts: float) -> tuple[_Conn, bool] | None:
        ent = self._table.get(key)
        if ent is not None and ts - ent[0].last > ent[0].timeout:
            self.stats.idle_splits += 1
            self._close(ent[0])
            return None
        return ent

    def _transport(self, rec: PacketRecord, ent: tuple[_Conn, bool] | None) -> None:
        """A TCP/UDP packet off the fast path; ``ent`` is the live table's entry for its key."""
        proto = rec.proto
        if ent is not None and ent[0].chain is not None and ent[0].chain.run is not None:
            ent[0].chain.seal()  # the lane's open run ends before anything here changes the connection
        if ent is not None and rec.ts - ent[0].last > ent[0].timeout:
            self.stats.idle_splits += 1
            self._close(ent[0])
            ent = None
        if ent is not None and proto == IPPROTO_TCP and rec.tcp_flags & SYN:
            ent = tcp.syn_on_existing(self, ent[0], ent[1], rec)
        if ent is None and proto == IPPROTO_UDP:
            if self._tftp:
                ent = related.tftp_transfer(self, rec)
            if ent is None and self._dhcp and related.dhcp_answer_ports(rec.sport, rec.dport):
                ent = related.dhcp_reply(self, rec)
            if ent is not None and ent[0].chain is not None:
                related.note_aside(self, ent[0].chain, proto, rec.src, rec.sport, rec.dst, rec.dport, rec.ts)
        if ent is None:
            ent = self._new_transport(rec)
            if self._chunk and ent[0].chain is None and proto == IPPROTO_UDP and self._join:
                related.note_unjoined(self, rec.src, rec.sport, rec.dst, rec.dport, rec.ts)
        c, is_orig = ent
        self._account(c, is_orig, rec)
        if proto == IPPROTO_TCP:
            tcp.packet(self, c, is_orig, rec)
        else:
            c.mark(_D << (0 if is_orig else _RESP))
            if is_orig and not c.os and self._join:  # a DHCP client's later broadcast (_new_transport)
                related.dhcp_request(self, c, rec)

    def _new_transport(self, rec: PacketRecord) -> tuple[_Conn, bool]:
        proto = rec.proto
        sender_orig, ev = direction(self._server_ports, rec)
        if sender_orig:
            oa, op, ra, rp = rec.src, rec.sport, rec.dst, rec.dport
        else:
            oa, op, ra, rp = rec.dst, rec.dport, rec.src, rec.sport
        keys = (conn_key(proto, oa, op, ra, rp), conn_key(proto, ra, rp, oa, op))
        c = self._create(proto, oa, op, ra, rp, keys, ev, rec, sender_orig)
        if not self._join or proto != IPPROTO_UDP:
            pass
        elif rp == TFTP_PORT and sender_orig:
            related.pend(self, self._tftp, (ra, oa, op), c)
        elif rp in _DHCP_PORTS and sender_orig and ra in _DHCP_GROUPS:
            # A DHCP client's requests to all servers: each waits for its answers (related.dhcp_request),
            # the later ones too, which the fast lane therefore declines (it takes no packet from a
            # side whose state is INACTIVE; a UDP connection's state is read by nothing else).
            c.os = INACTIVE
            related.dhcp_request(self, c, rec)
        if proto == IPPROTO_TCP:
            c.os = c.rs = c.oprev = c.rprev = INACTIVE
        return c, sender_orig

    def _create(self, proto: int, oa: bytes, op: int, ra: bytes, rp: int,
                keys: tuple[bytes, bytes], ev: int, rec: PacketRecord,
                sender_orig: bool) -> _Conn:
        if self._live >= self._max_live:
            self._evict(rec.ts)
        c = _Conn()
        c.proto, c.oa, c.op, c.ra, c.rp, c.keys, c.ev = proto, oa, op, ra, rp, keys, ev
        c.first = c.last = rec.ts
        c.ff = (rec.input_index, rec.frame)
        c.opk = c.oby = c.rpk = c.rby = c.hseen = c.bad_o = c.bad_r = 0
        c.hist = [] if sender_orig else ["^"]  # Zeek marks a flipped direction with '^'
        # UDP/ICMP have no endpoint states: a non-zero state lets them take the fast path.
        c.os = c.rs = c.oprev = c.rprev = ESTABLISHED
        c.isn = c.rst_ttl = -1
        c.marks = None
        c.data = False
        c.refused = None
        c.ho = c.hr = None
        c.fo = c.fr = c.ff
        c.tunnels = None
        c.timeout = self._timeouts[proto]
        c.dead = False
        c.chain = c.appc = None
        if self._chunk:
            chunks.chain_for(self, c, proto, keys, rec.ts)
        # keys[1] first: for a host talking to itself on one port both keys are the same, and the
        # entry must then be the initiator's (finish() closes connections by their orig entry).
        table = self._table
        table[keys[1]] = (c, False)
        table[keys[0]] = (c, True)
        if proto == IPPROTO_TCP:
            # A new TCP connection waits in the short queue: most end within its few seconds, and
            # then never stand in the long one (where the entry left behind would keep them in
            # memory until its turn).
            self._short(c, self.clock(rec.ts))
        else:
            self.enqueue(c, self.clock(rec.ts))
        self._live += 1
        if self._live > self.stats.peak_live:
            self.stats.peak_live = self._live
        return c

    def _account(self, c: _Conn, is_orig: bool, rec: PacketRecord) -> None:
        ts = rec.ts
        if c.chain is not None:
            c.chain.record(rec)
        c.add(is_orig, 1, rec.ip_len, ts, ts)
        if rec.payload_len:
            if is_orig:
                if c.ho is None:
                    c.ho, c.fo = rec.payload[:APP_SNAP], (rec.input_index, rec.frame)
            elif c.hr is None:
                c.hr, c.fr = rec.payload[:APP_SNAP], (rec.input_index, rec.frame)
        if rec.checksum_bad:
            if is_orig:
                c.bad_o += 1
                n, bit = c.bad_o, _C
            else:
                c.bad_r += 1
                n, bit = c.bad_r, _C << _RESP
            if n in _POW10:  # Zeek records 'C' logarithmically: at 1, 10, 100... packets
                c.hist.append(_HIST_LETTER[bit])
                c.hseen |= bit
        if rec.tunnel is not None:
            if c.tunnels is None:
                c.tunnels = set()
            c.tunnels.add(rec.tunnel)

    # ---- TCP ----------------------------------------------------------------------------------

    def _close(self, c: _Conn) -> None:
        table = self._table
        c.dead = True
        keys = c.keys
        ent = table.get(keys[0])
        if ent is None or ent[0] is not c:
            return  # already closed
        del table[keys[0]]
        for key in keys[1:]:
            ent = table.get(key)
            if ent is not None and ent[0] is c:
                del table[key]
        self._live -= 1
        history = "".join(c.hist)
        proto = c.proto
        refused = c.refused
        if proto == IPPROTO_TCP:
            state = tcp.conn_state(self, c, history)
        elif refused is not None:
            state = "REJ"
        elif c.opk:
            state = "SF" if c.rpk else "S0"
        else:
            state = "SHR" if c.rpk else "OTH"
        pname, orig_h, resp_h = PROTO_NAMES[proto], addr_str(c.oa), addr_str(c.ra)
        tunnels = frozenset(_tunnel_text(t) for t in c.tunnels) if c.tunnels else _NO_TUNNELS
        evidence = DIRECTION_EVIDENCE[c.ev]
        # Who refused it (Flow.add keeps it when the connection counts as rejected): the responder's
        # RST, else the ICMP error. A RST always bears the responder's address; its TTL is judged
        # later, against the responder's TTLs of the whole run (auditor/refusal.py).
        refusal = None
        if proto == IPPROTO_TCP and state in _RESET_STATES:
            refusal = Refusal("rst", resp_h, -1, -1, c.rst_ttl, True)
        elif refused is not None:
            refusal = Refusal("icmp", addr_str(refused[0]), refused[1], refused[2], -1, refused[0] == c.ra)
        app: AppEvidence | None = None
        if (c.ho or c.hr) and proto != IPPROTO_ICMP and proto != IPPROTO_ICMPV6:
            app = c.appc[0] if c.appc is not None else identify_connection(proto, c.op, c.rp, c.ho, c.fo, c.hr, c.fr)
        chain = c.chain if self._chunk else None
        if chain is None:
            # Straight into the flow: a Connection object is built only when connections are kept
            # (it cost ~8 % of the per-connection work). The arguments are written out, not a tuple
            # spread with *: compiled, that is a direct C call to the compiled Flow.add, where a
            # spread tuple goes through a Python-level call that unpacks it again.
            self._flow_for(orig_h, resp_h, pname, c.rp, c.rpk, state, c.opk).add(
                pname, state, history, c.opk, c.oby, c.rpk, c.rby, c.first, c.last, c.ff, evidence,
                c.bad_o + c.bad_r, refused is not None, tunnels, refusal, app)
        conn = None
        if self._keep or self._sink is not None:
            conn = Connection(
                protocol=pname, orig_h=orig_h, orig_p=c.op, resp_h=resp_h, resp_p=c.rp, first_seen=c.first,
                last_seen=c.last, first_frame=c.ff, orig_pkts=c.opk, orig_bytes=c.oby, resp_pkts=c.rpk,
                resp_bytes=c.rby, conn_state=state, history=history, direction_evidence=evidence,
                bad_checksums=c.bad_o + c.bad_r, icmp_refused=refused is not None, tunnels=tunnels,
                refusal=refusal, app_protocol=app.protocol if app is not None else UNKNOWN, app_evidence=app)
            if self._keep and chain is None:
                self.result.connections.append(conn)
            if self._sink is not None:
                self._sink(conn)
        if chain is not None:
            chain.closed.append((pname, state, history, c.opk, c.oby, c.rpk, c.rby, c.first, c.last, c.ff, evidence,
                                 c.bad_o + c.bad_r, refused is not None, tunnels, refusal, app,
                                 orig_h, resp_h, c.rp, conn))
            if chain.conn is c:
                chain.seal()
                chain.conn = None  # closed: nothing to point at a later chain, its memory freed

    def _flow_for(self, orig_h: str, resp_h: str, pname: str, resp_p: int, resp_pkts: int, state: str,
                  orig_pkts: int) -> Flow:
        """The flow a closing connection belongs to (made if new), or the flood summary it goes to."""
        stats = self.stats
        stats.connections += 1
        # FlowKey is a NamedTuple: the plain tuple finds its entry, and the key is made only for a
        # new flow (most connections close into a flow that exists).
        flows: dict[Any, Flow] = self.result.flows
        flow = flows.get((orig_h, resp_h, pname, resp_p))
        if flow is None:
            key = FlowKey(orig_h, resp_h, pname, resp_p)
            # A flood is millions of unanswered attempts from different sources to one service: once
            # a service has had flood_fanin of them, further ones are summarised, while answered
            # conversations (and the few failing attempts of a real deployment) keep their own flows.
            allowed = self._normal_flows < self._max_flows
            if allowed and (resp_pkts == 0 or state in _ATTEMPT_STATES):
                target = (resp_h, pname, resp_p)
                seen = self._fanin.get(target, 0)
                if seen >= self._flood_fanin:
                    allowed = False
                elif len(self._fanin) < self._targets_max or seen:
                    self._fanin[target] = seen + 1
                else:
                    self.result.overflowed = True  # a target past the table's bound is not counted
            if allowed:
                self._normal_flows += 1
                flow = flows[key] = Flow(key)
            else:
                # Flow table full: aggregate per (responder, protocol, port) with initiator '*';
                # past a second bound, per protocol only, so a spoofed flood stays bounded.
                self.result.overflowed = True
                key = FlowKey("*", resp_h, pname, resp_p)
                flow = flows.get(key)
                if flow is None and self._summaries >= self._max_summaries:
                    key = FlowKey("*", "*", pname, 0)
                    flow = flows.get(key)
                if flow is None:
                    self._summaries += 1
                    stats.summarised_flows += 1
                    flow = flows[key] = Flow(key, summarised=True)
                stats.summarised_connections += 1
                stats.summarised_packets += orig_pkts + resp_pkts
        return flow

    def enqueue(self, c: _Conn, now: float) -> None:
        """Queue a live connection for the sweep's next look at it: in the long queue (looked at
        after ``_late`` seconds) when it cannot expire within ``_late - _min_timeout`` seconds of
        ``now`` (a DNS exchange waiting out its idle timeout, a busy TCP session), else in the short
        one (every ``_min_timeout`` seconds). Either way the look comes within ``_min_timeout``
        seconds of its expiry, at the latest. ``now``: the queues' clock (``_now``)."""
        if c.last + c.timeout - now >= self._late - self._min_timeout:
            c.queued, c.later = now, True
            self._later.append(c)
        else:
            self._short(c, now)

    def _short(self, c: _Conn, now: float) -> None:
        c.queued, c.later = now, False
        self._queue.append(c)

    def clock(self, ts: float) -> float:
        """The queues' clock (``_now``) moved on to ``ts`` if that is later; its time."""
        now = self._now
        if ts > now:
            now = self._now = ts
        return now

    def soon(self, c: _Conn, ts: float) -> None:
        """A live connection's timeout shrank (a TCP close or reset: CLOSE_LINGER): when it waits in
        the long queue, it moves to the short one (its entry there is skipped)."""
        if c.later:
            self._short(c, self.clock(ts))

    def _sweep(self, clock: float) -> None:
        """Close connections idle past their timeout, within ``_min_timeout`` seconds of capture time
        of their expiry. Amortised O(1): a connection is looked at every ``_late`` seconds while it
        cannot expire sooner, else every ``_min_timeout`` seconds; a few looks in its life, where
        one queue of every connection looked at each every few seconds."""
        now = self.clock(clock)
        self._look(self._queue, False, now - self._min_timeout, clock, now)
        self._look(self._later, True, now - self._late, clock, now)
        queue, later = self._queue, self._later
        if len(queue) + len(later) > 4 * self._live + 1024:
            self._queue = deque(c for c in queue if not c.dead and not c.later)
            self._later = deque(c for c in later if not c.dead and c.later)

    def _look(self, queue: deque[_Conn], long: bool, limit: float, clock: float, now: float) -> None:
        """The sweep's looks at the connections of one queue (``long``: the long one) queued before
        ``limit``: each expired at ``clock`` is closed, the others queued again. An entry of a
        connection closed since, or moved to the other queue (``soon`` sets ``queued`` anew), goes
        whatever its time: it must not hold the others."""
        while queue:
            c = queue[0]
            stale = c.dead or c.later != long
            if not stale and c.queued >= limit:
                break
            queue.popleft()
            if stale:
                continue
            if clock - c.last > c.timeout:
                self._close(c)
            else:
                self.enqueue(c, now)

    def _evict(self, clock: float) -> None:
        """The live table is full: close one of the idlest connections (second-chance order), from
        the short queue first (those nearest to their expiry)."""
        chances = 16
        while self._live >= self._max_live and (self._queue or self._later):
            long = not self._queue
            queue = self._later if long else self._queue
            c = queue.popleft()
            if c.dead or c.later != long:
                continue
            if clock - c.last > c.timeout:
                self._close(c)
            elif c.last > c.queued and chances:
                chances -= 1
                c.queued = c.last
                queue.append(c)
            else:
                self.result.overflowed = True
                self.stats.evicted_live += 1
                self._close(c)
