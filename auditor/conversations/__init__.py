"""Sans-IO conversation core: a PacketRecord stream in, Connection and Flow tables out (SPEC §3).

Nothing here opens a file or prints: tests feed records built in memory (h11's idea).

Its modules are compiled with mypyc where the install can (setup.py; auditor/capture/native.py chooses,
all compiled or all Python): reach the core through this package (``ConversationBuilder``,
``ConversationResult``, ``merging``...), which hands out the build that runs; importing its modules
directly gets the Python ones whichever runs.

Design, for speed (the audit targets >= 300k packets/s in one process):
  * The live table is a plain dict holding every connection under BOTH directions of its key,
    ``key -> (conn, is_orig)``, so a packet costs one lookup and its direction comes with the hit.
    A key is one bytes object (state.conn_key): the addresses and ports as they sit in the packet,
    which the capture kernel takes as one slice of it (a UDP key after a byte that TCP's lack); ICMP
    keys (state.icmp_key) have lengths of their own, so no two kinds meet.
  * An established TCP packet (no SYN/FIN/RST, its sender already active) and any UDP packet of a
    known connection take the fast lane (``FastLane.take``: from ``feed``, or straight from the
    capture decoder without a record); everything else goes to ``_slow``.
  * Expiry is decided per packet (``ts - last > timeout``), so results do not depend on when the
    amortised sweeps run; sweeps (every ``SWEEP_EVERY`` packets) only reclaim memory. Two FIFO
    queues of connections give O(1) expiry. A connection that cannot expire for about the shortest
    idle timeout waits in the long one, looked at once a minute by default (a new UDP or ICMP
    connection at once, a TCP one from its first look on); the others, new TCP connections and every
    closed TCP connection (its CLOSE_LINGER) wait in the short one, looked at every CLOSE_LINGER
    seconds: a connection is looked at a few times before it expires, not every few seconds of its
    life. The short queue, then the long one, give second-chance ("clock") eviction when the table
    holds ``max_live`` connections: an approximation of "close the idlest" without a heap.

Deviations from Zeek (documented because analysts cross-check with it):
  * Bad-checksum packets are processed like any other and add Zeek's 'C'/'c' (logarithmic: at 1,
    10, 100... packets); Zeek stops processing them (captures on the host see checksum offload).
  * No 't' (retransmission), 'g' (gap) or 'w' (zero window) letters: they need reassembly/window
    fields that PacketRecord does not carry. S/H, F and R repeat when their sequence number
    differs from the last one of that kind (Zeek's rule); A, D, I, Q are recorded once.
  * A SYN arriving after its SYN-ACK (two capture interfaces merged) joins the connection and
    establishes the originator, as if they had come in order.
  * An initial SYN after mid-stream data starts a new connection (Zeek: "SYN_seq_jump"), as does
    any SYN on a closed connection or a SYN whose ISN differs from the originator's first SYN.
  * ICMP connections get the UDP-style conn_state (SF/S0/SHR) and D/d history; Zeek logs OTH.
  * UDP connections refused by an ICMP unreachable get conn_state REJ (Zeek logs S0 and a separate
    ICMP connection). The ICMP error itself is NOT counted in the quoted connection's packets or
    bytes (as in Zeek): it often comes from a router or firewall, not the responder, and counting
    it would make a refused one-way UDP conversation look answered. It is counted in stats.
  * Closed TCP connections (FIN both ways, or any RST) linger ``CLOSE_LINGER`` seconds (Zeek's
    tcp_close_delay/tcp_reset_delay); later packets start a new connection.

Refusals (SPEC §4, "who refused it"): a connection counted rejected records what refused it in its
flow (Flow.refusals): the responder's RST with the RST's TTL, or the first ICMP unreachable quoting
it with its sender, type and code. The responders' TTLs on SYN-ACKs and FINs (packets that never
take the fast lane, so one process and the shares of a parallel run see the same ones) are kept per
host, bounded (HOST_TTLS_MAX), in ConversationResult.host_ttls; auditor/refusal.py compares a RST's
TTL with them once the partial results are merged.

Direction evidence ``wellknown_port``: ports rank 0 well-known (1-1023), 1 registered (1024-49151),
2 dynamic (49152-65535 and 0). When the two ranks differ, the side with the lower rank is the
server: 443 vs 51000, 443 vs 3000, 3389 vs 50000 decide; 1494 vs 40000 (both registered, as
Linux's ephemeral range is) and 123 vs 123 do not, and the next kind of evidence decides.
ICMP flows use the request type as their port: 8 (echo) or 128 (ICMPv6 echo); other ICMP types
are their own port (an unmatched unreachable is port 3); protocol is "icmp" for v4 and v6.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auditor.conversations.state import CLOSE_LINGER, DISORDER_SLACK, HOST_TTLS_MAX, SWEEP_EVERY

if TYPE_CHECKING:
    from auditor.conversations import chunks as merging
    from auditor.conversations.builder import ConversationBuilder
    from auditor.conversations.lane import FastLane
    from auditor.conversations.results import ConversationResult, ConversationStats
    from auditor.conversations.state import conn_key
    from auditor.flow import Flow, share_counts

__all__ = ["CLOSE_LINGER", "DISORDER_SLACK", "HOST_TTLS_MAX", "SWEEP_EVERY", "ConversationBuilder",
           "ConversationResult", "ConversationStats", "FastLane", "Flow", "conn_key", "merging", "share_counts"]

_FROM = {"ConversationBuilder": "auditor.conversations.builder", "FastLane": "auditor.conversations.lane",
         "ConversationResult": "auditor.conversations.results", "ConversationStats": "auditor.conversations.results",
         "merging": "auditor.conversations.chunks", "conn_key": "auditor.conversations.state",
         "Flow": "auditor.flow", "share_counts": "auditor.flow"}
"""What the package hands out, from which module: of the build that runs (auditor/capture/native.py:
these modules, or their compiled builds). ``merging`` is chunks.py itself (the merge of chunks)."""


def __getattr__(name: str) -> Any:
    # Looked up at each use (not bound at import): the build is chosen by native.py, whose choice
    # imports these modules; a test may choose another (tests/conftest.py's each_kernel).
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from auditor.capture import native

    chosen = native.KERNEL.of(module)
    return chosen if name == "merging" else getattr(chosen, name)
