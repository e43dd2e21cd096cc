"""The flow: all connections of one FlowKey, aggregated (SPEC §3), and the accounting that folds
each closed connection into it (``Flow.add``) or one partial flow into another (``Flow.merge``).

Compiled with the conversation core where a compiler exists (auditor/capture/native.py's COMPILED):
the core makes every flow and folds every closed connection into one, so the class the core uses is
the build's (``native.KERNEL.of("auditor.flow").Flow``); this module's class is the pure-Python
build's and what the type checker knows. Readers take a flow of either build alike. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from auditor.model import (
    DIRECTION_EVIDENCE,
    REFUSAL_OTHER,
    REFUSALS_MAX,
    UNKNOWN,
    AppEvidence,
    FlowKey,
    Outcome,
    Refusal,
    SharedCounts,
)

_TCP_ESTABLISHED: Final = frozenset(("SF", "S1", "S2", "S3", "RSTO", "RSTR"))
_ONE_EVIDENCE: Final[dict[str, SharedCounts]] = {}
_ONE_STATE: Final[dict[str, SharedCounts]] = {}
"""Tallies of one connection (of its direction evidence, of its conn_state), each shared by every
flow of one connection with that tally (``_one``)."""


def _one(tallies: dict[str, SharedCounts], kind: str) -> SharedCounts:
    one = tallies.get(kind)
    if one is None:
        one = tallies[kind] = SharedCounts({kind: 1})
    return one


@dataclass(slots=True)
class Flow:
    """All connections of one FlowKey, aggregated. Mergeable: two partial audits combine."""

    key: FlowKey
    connections: int = 0
    established: int = 0
    """Connections that completed a handshake or carried data both ways."""
    rejected: int = 0
    """Connections answered by RST, or refused by an ICMP unreachable."""
    unanswered: int = 0
    """Connections that got no reply at all."""
    orig_pkts: int = 0
    orig_bytes: int = 0
    resp_pkts: int = 0
    resp_bytes: int = 0
    first_seen: float = float("inf")
    last_seen: float = float("-inf")
    first_frame: tuple[int, int] = (1 << 62, 0)
    direction_evidence: dict[str, int] = field(default_factory=dict)
    """How many connections had each kind of evidence."""
    conn_states: dict[str, int] = field(default_factory=dict)
    """How many connections ended in each conn_state."""
    bad_checksums: int = 0
    tunnels: frozenset[str] = frozenset()
    """Tunnels the flow's packets arrived in (shared empty set: most flows have none)."""
    summarised: bool = False
    """True for an aggregate of a flood beyond the flow table bound (initiator '*')."""
    refusals: dict[Refusal, int] | None = None
    """Rejected connections by who refused them (None: none recorded). Bounded: the REFUSALS_MAX
    smallest refusals are kept and the others counted under REFUSAL_OTHER, which is exactly the
    same whatever the order connections came in or partial flows were merged."""
    apps: dict[str, int] | None = None
    """Connections per recognised application protocol (auditor/apps.py); the others are unverified
    (``unverified``). None: no connection was recognised."""
    app_evidence: dict[str, AppEvidence] | None = None
    """Per recognised protocol, the evidence of its earliest connection (the smallest frame): exact
    whatever the order connections came in or partial flows were merged."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as the constructor's arguments (a share of a parallel run sends its flows back):
        # half the time of the dataclass's field-by-field state.
        return Flow, (self.key, self.connections, self.established, self.rejected, self.unanswered,
                      self.orig_pkts, self.orig_bytes, self.resp_pkts, self.resp_bytes, self.first_seen,
                      self.last_seen, self.first_frame, self.direction_evidence, self.conn_states,
                      self.bad_checksums, self.tunnels, self.summarised, self.refusals, self.apps, self.app_evidence)

    @property
    def packets(self) -> int:
        return self.orig_pkts + self.resp_pkts

    @property
    def bytes(self) -> int:
        return self.orig_bytes + self.resp_bytes

    @property
    def outcome(self) -> Outcome:
        if self.established:
            return Outcome.ESTABLISHED
        if self.rejected:
            return Outcome.REJECTED
        if self.key.protocol == "udp" and self.resp_pkts == 0:
            return Outcome.ONE_WAY
        return Outcome.UNANSWERED

    @property
    def app_protocol(self) -> str:
        """What the flow's connections carried: the most frequent recognised protocol (ties by name),
        or 'unknown' when none was recognised (SPEC §6)."""
        apps = self.apps
        if not apps:
            return UNKNOWN
        return min(apps, key=lambda name: (-apps[name], name))

    @property
    def unverified(self) -> int:
        """Connections whose payload was absent or not recognised."""
        return self.connections - (sum(self.apps.values()) if self.apps else 0)

    @property
    def strongest_evidence(self) -> str:
        for kind in DIRECTION_EVIDENCE:
            if self.direction_evidence.get(kind):
                return kind
        return "first_packet"

    @property
    def inferred(self) -> bool:
        """Direction not proven by a TCP handshake (SPEC §3: shown as inferred)."""
        return self.strongest_evidence not in ("syn", "synack")

    def add(self, protocol: str, conn_state: str, history: str, orig_pkts: int, orig_bytes: int,
            resp_pkts: int, resp_bytes: int, first_seen: float, last_seen: float,
            first_frame: tuple[int, int], direction_evidence: str, bad_checksums: int,
            icmp_refused: bool, tunnels: frozenset[str], refusal: Refusal | None = None,
            app: AppEvidence | None = None) -> None:
        """One closed connection, by its Connection fields (the core folds connections in without
        building Connection objects). ``refusal`` is recorded when the connection counts as rejected;
        ``app`` is its application-protocol evidence, if any."""
        self.connections += 1
        if app is not None:
            apps = self.apps
            if apps is None:
                apps = self.apps = {}
            apps[app.protocol] = apps.get(app.protocol, 0) + 1
            self._app_evidence(app.protocol, app)
        if protocol == "tcp":
            # Data both ways ('D' and 'd' in the Zeek history) is an established conversation even when
            # the handshake was not seen: a session captured mid-way and ended by the server's RST is
            # RSTRH, one whose capture stopped after a single FIN is SH (SPEC §3).
            if conn_state in _TCP_ESTABLISHED or (orig_pkts and resp_pkts and conn_state == "OTH") \
                    or ("D" in history and "d" in history):
                self.established += 1
            elif conn_state in ("REJ", "RSTRH") or icmp_refused:
                # RSTOS0 (originator gave up with a RST) and SH fall through to unanswered below.
                self.rejected += 1
                if refusal is not None:
                    self._refused({refusal: 1})
            elif resp_pkts and conn_state not in ("S0", "RSTOS0", "SH"):
                self.established += 1
            else:
                self.unanswered += 1
        else:
            if icmp_refused:
                self.rejected += 1
                if refusal is not None:
                    self._refused({refusal: 1})
            elif resp_pkts:
                self.established += 1
            else:
                self.unanswered += 1
        self.orig_pkts += orig_pkts
        self.orig_bytes += orig_bytes
        self.resp_pkts += resp_pkts
        self.resp_bytes += resp_bytes
        if first_seen < self.first_seen:
            self.first_seen = first_seen
        if last_seen > self.last_seen:
            self.last_seen = last_seen
        if first_frame < self.first_frame:
            self.first_frame = first_frame
        ev = self.direction_evidence
        states = self.conn_states
        if self.connections == 1 and not ev and not states:
            # A flow's first connection: the tallies of one connection, shared (most flows have one:
            # two dicts fewer each, and share_counts has nothing left to do for them).
            self.direction_evidence = _one(_ONE_EVIDENCE, direction_evidence)
            self.conn_states = _one(_ONE_STATE, conn_state)
        else:
            if type(ev) is not dict:
                ev = self.direction_evidence = dict(ev)  # shared (share_counts): a copy of its own
            ev[direction_evidence] = ev.get(direction_evidence, 0) + 1
            if type(states) is not dict:
                states = self.conn_states = dict(states)
            states[conn_state] = states.get(conn_state, 0) + 1
        self.bad_checksums += bad_checksums
        if tunnels:
            self.tunnels = self.tunnels | tunnels

    def merge(self, other: Flow) -> None:
        """Fold another partial aggregate of the same key into this one."""
        if other.key != self.key:
            raise ValueError(f"cannot merge flow {other.key} into {self.key}")
        for name in ("connections", "established", "rejected", "unanswered", "orig_pkts", "orig_bytes",
                     "resp_pkts", "resp_bytes", "bad_checksums"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.first_frame = min(self.first_frame, other.first_frame)
        if type(self.direction_evidence) is not dict:  # shared (share_counts): a copy of its own
            self.direction_evidence = dict(self.direction_evidence)
        if type(self.conn_states) is not dict:
            self.conn_states = dict(self.conn_states)
        for src, dst in ((other.direction_evidence, self.direction_evidence),
                         (other.conn_states, self.conn_states)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
        self.tunnels |= other.tunnels
        self.summarised = self.summarised or other.summarised
        if other.refusals:
            self._refused(other.refusals)
        if other.apps:
            self._apps(other.apps, other.app_evidence or {})

    def _apps(self, counts: dict[str, int], evidence: dict[str, AppEvidence]) -> None:
        apps = self.apps
        if apps is None:
            apps = self.apps = {}
        for name, n in counts.items():
            apps[name] = apps.get(name, 0) + n
        if self.app_evidence is None:
            self.app_evidence = {}
        for name, ev in evidence.items():
            self._app_evidence(name, ev)

    def _app_evidence(self, name: str, ev: AppEvidence) -> None:
        """Keep ``ev`` as the evidence of ``name`` if it came first."""
        mine = self.app_evidence
        if mine is None:
            self.app_evidence = {name: ev}
            return
        kept = mine.get(name)
        if kept is None or ev.frame < kept.frame:
            mine[name] = ev

    def _refused(self, counts: dict[Refusal, int]) -> None:
        """Add refusal counts, keeping the REFUSALS_MAX smallest refusals: a refusal beyond them was
        beyond them in any order or grouping of the connections, so merging stays exact."""
        mine = self.refusals
        if mine is None:
            mine = self.refusals = {}
        for r, n in counts.items():
            mine[r] = mine.get(r, 0) + n
        if len(mine) > REFUSALS_MAX + (REFUSAL_OTHER in mine):
            kept = sorted(r for r in mine if r != REFUSAL_OTHER)
            for r in kept[REFUSALS_MAX:]:
                mine[REFUSAL_OTHER] = mine.get(REFUSAL_OTHER, 0) + mine.pop(r)


def share_counts(flows: Iterable[Flow]) -> None:
    """Make final flows with equal tallies share one copy of each (insertion order kept): two dicts
    of ~184 bytes a flow, where an audit of many hosts holds hundreds of thousands of flows whose
    tallies are a few dozen distinct ones ({"syn": 1}, {"SF": 1}...)."""
    seen: dict[tuple[tuple[str, int], ...], SharedCounts] = {}
    for f in flows:
        ev, states = f.direction_evidence, f.conn_states
        if type(ev) is not dict and type(states) is not dict:
            continue  # shared already (a flow of one connection: Flow.add)
        key = tuple(ev.items())
        one = seen.get(key)
        if one is None:
            one = seen[key] = SharedCounts(ev)
        f.direction_evidence = one
        key = (("", -1), *states.items())  # never equal to an evidence tally
        one = seen.get(key)
        if one is None:
            one = seen[key] = SharedCounts(states)
        f.conn_states = one
