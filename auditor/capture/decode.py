"""Frames -> PacketRecord: the general decoder, and the entry to the kernel.

``Decoder.decode`` is the kernel's (capture/kernel.py): the common Ethernet/cooked/raw/loopback
IPv4/IPv6 TCP/UDP packets, decoded inline. Everything else falls to the general decoder, which checks
every bound explicitly: its link layers (capture/link.py), IPv4 options and fragments, IPv6 extension
headers, TCP, UDP, ICMP and what ICMP errors quote (here), and tunnels (capture/tunnels.py). A frame
that cannot be decoded is counted by kind in ReadStats and skipped; nothing here raises but
``BadRun`` (BAD_RUN_MAX malformed frames in a row: the walk gives up on the rest of the input).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from auditor.capture import native
from auditor.capture.info import ReadStats
from auditor.capture.kernel import CHECKSUM_POLICY as CHECKSUM_POLICY
from auditor.capture.kernel import ETH_IPV4, ETH_IPV6, GENEVE_PORT, VXLAN_PORT, Kernel, checksum_bad
from auditor.capture.kernel import VERIFY_ALL_BYTES as VERIFY_ALL_BYTES
from auditor.capture.kernel import VERIFY_EVERY as VERIFY_EVERY
from auditor.capture.link import linktype_name as linktype_name
from auditor.capture.tunnels import Tunnels
from auditor.model import PAYLOAD_SNAP, PacketRecord, QuotedPacket, TunnelInfo, make_record

if TYPE_CHECKING:
    from auditor.conversations.lane import FastLane

_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
# IPv4: total length, flags+fragment offset, protocol, src, dst.
_IP4 = struct.Struct("!2xH2xHxB2x4s4s").unpack_from
_IP4ID = struct.Struct("!4xH").unpack_from
# IPv6: payload length, next header, src, dst.
_IP6 = struct.Struct("!4xHBx16s16s").unpack_from
_TCP = struct.Struct("!HHIIBB").unpack_from
_UDP = struct.Struct("!HHHH").unpack_from
_FRAG6 = struct.Struct("!BxHI").unpack_from

# Later fragments find their ports here; bounded so a fragment flood cannot grow memory.
FRAG_TABLE_SIZE = 4096
FRAG_TIMEOUT = 30.0
"""Seconds after its first fragment that a later fragment of a datagram still finds its ports (the
reassembly timeout of the capturing host's kernel: Linux's ipfrag_time, 30 s). Later it is an orphan.
The bound also lets a byte range of a file find the datagrams begun before it (``Decoder.behind``)."""
FRAG_SLACK = 5.0
"""Seconds that timestamps at a byte range's start may run out of order for ``Decoder.behind``: it
covers the first fragments up to FRAG_TIMEOUT + FRAG_SLACK before the range's first orphan-looking
fragment."""
# The fragment table's mark for a tunnel packet audited from its first fragment.
_TUNNELED = (-1, -1)

FragKey = tuple[bytes, bytes, int, int]
"""A datagram's fragments: (source, destination, IP identification, protocol)."""
FragTable = dict[FragKey, tuple[int, int, float]]
"""Datagram -> (source port, destination port, time of its first fragment), oldest first."""
Behind = Callable[[float], FragTable]
"""The fragment table as one read of the input would have it at a byte range's start, covering the
datagrams whose first fragment came at or after the time given (capture/fragments.py)."""


def remember_fragment(frags: FragTable, key: FragKey, sport: int, dport: int, ts: float) -> None:
    """A datagram's first fragment: its ports, for its later fragments (``fragment_ports``). The
    oldest datagram makes room past FRAG_TABLE_SIZE. Both engines keep their tables so."""
    if len(frags) >= FRAG_TABLE_SIZE and key not in frags:
        del frags[next(iter(frags))]
    frags[key] = (sport, dport, ts)


def fragment_ports(frags: FragTable, key: FragKey, ts: float) -> tuple[int, int] | None:
    """The ports of a later fragment's datagram, or None for an orphan: its first fragment was not
    seen, or came more than FRAG_TIMEOUT before."""
    ent = frags.get(key)
    if ent is None or ts - ent[2] > FRAG_TIMEOUT:
        return None
    return ent[0], ent[1]


# ICMP types that carry an identifier (echo, timestamp, information, address mask) and errors.
_ICMP4_ID = frozenset((0, 8, 13, 14, 15, 16, 17, 18))
_ICMP4_ERR = frozenset((3, 4, 5, 11, 12))
_ICMP6_ID = frozenset((128, 129))
_ICMP6_ERR = frozenset((1, 2, 3, 4))
# IPv6 extension headers walked to find the transport header (RFC 8200 §4; AH is RFC 4302).
# Mobility (135), HIP (139) and Shim6 (140) share the generic extension-header layout (RFC 7045).
_IP6_EXT = frozenset((0, 43, 60, 51, 135, 139, 140))


BAD_RUN_MAX = 100_000
"""Consecutive malformed frames after which the rest of an input is taken for junk and not read: a
valid file header followed by zeros (a preallocated or sparse file, a tail the file system zeroed
after a crash) is a run of empty records, each counted as malformed at about half a million a
second. Real captures have their malformed frames scattered; a run this long has nothing to audit."""
_EMITTED = frozenset({"fragment-orphan", "udp-bad-length"})
"""Malformed kinds whose frames still give a record: they do not count towards a run."""


class BadRun(Exception):
    """Raised by ``Decoder.bad`` at the BAD_RUN_MAX-th malformed frame in a row (after counting it).
    The walk that meets it stops there, with a warning (capture/pcapfile.py)."""

    def __init__(self, frame: int, run: int) -> None:
        super().__init__(frame, run)
        self.frame = frame
        """The frame that made the run."""
        self.run = run
        self.offset = -1
        """Where that frame's record ends in the capture bytes (set by the walk that knows)."""


def bad_run_why(e: BadRun, compression: str) -> str:
    """The warning of a walk that gave up at a run of malformed frames (before "stopped after frame")."""
    data = "" if compression == "none" else f" of the {compression}-decompressed data"
    return (f"gave up after {e.run} malformed records in a row, at byte offset {e.offset}{data} "
            f"(junk such as zeros after the last good record?); the rest is not read")



def _read(buf: bytes, off: int, end: int, ts: float, frame: int, lt: int) -> PacketRecord | None:
    """The slow path of a closed decoder: its input is read."""
    return None


class Decoder(Tunnels):
    """Decodes the frames of one input. Counters go to the shared ReadStats."""

    def __init__(self, stats: ReadStats, input_index: int, *, verify_checksums: bool = True) -> None:
        self.stats = stats
        self.ii = input_index
        self.verify = verify_checksums
        self.kernel: Kernel = native.KERNEL.module.Kernel(input_index, verify_checksums, VERIFY_ALL_BYTES, self.slow)
        """The hot path (``decode``), compiled or pure Python (capture/native.py); it hands this decoder
        (``slow``) whatever it does not take. It verifies every checksum (``kernel.verify_all``) until
        a walk reads a frame past the first VERIFY_ALL_BYTES of the input, then a sample."""
        self.frags: FragTable = {}
        self.behind: Behind | None = None
        """A byte range that starts inside its file: how to learn the datagrams begun before it,
        asked once, at its first later fragment whose first fragment it has not seen."""
        self._bad_last = 0
        """The last malformed frame (``bad``), and how many malformed frames in a row end there."""
        self._bad_run = 0

    @property
    def lane(self) -> FastLane | None:
        """The conversation core's fast lane (ConversationBuilder.lane), offered the common TCP/UDP
        packets that need no record (by the kernel)."""
        return self.kernel.lane

    @lane.setter
    def lane(self, lane: FastLane | None) -> None:
        self.kernel.lane = lane

    def close(self) -> None:
        """The input is read: let go of the kernel's way back into this decoder (a reference cycle the
        reading would otherwise leave to the cyclic collector, which collect() pauses)."""
        self.kernel.slow = _read
        self.kernel.lane = None
        self.behind = None

    def decode(self, buf: bytes, off: int, caplen: int, ts: float, frame: int, lt: int) -> PacketRecord | None:
        """Decode the frame buf[off:off+caplen] of link type ``lt``; None if it yields no record
        (not IP, malformed, or taken by the conversation core's fast lane). The walks call
        ``kernel.decode`` themselves, one call fewer."""
        return self.kernel.decode(buf, off, caplen, ts, frame, lt)

    # -- counting ---------------------------------------------------------------------------------

    def bad(self, kind: str, frame: int) -> None:
        self.stats.count_malformed(kind, self.ii, frame)
        # Runs are counted here, on malformed frames only, so good frames cost nothing; frame numbers
        # say whether two are consecutive (a frame may be counted more than once: tunnels).
        if frame != self._bad_last and kind not in _EMITTED:
            self._bad_run = self._bad_run + 1 if frame == self._bad_last + 1 else 1
            self._bad_last = frame
            if self._bad_run >= BAD_RUN_MAX:
                raise BadRun(frame, self._bad_run)

    def in_bad_run(self, frame: int) -> bool:
        """Whether ``frame`` (the last frame walked) ends a run of malformed frames."""
        return self._bad_last == frame and self._bad_run > 0


    # -- general path -------------------------------------------------------------------------------

    def slow(self, buf: bytes, off: int, end: int, ts: float, frame: int, lt: int) -> PacketRecord | None:
        try:
            ver, p = self._link(buf, off, end, frame, lt)
            if ver < 0:
                return None
            return self._ip(buf, p, end, ver, ts, frame, None, 0)
        except (struct.error, IndexError, ValueError):
            # Every bound is checked above; this is a safety net so that a missed check is counted,
            # not fatal (SPEC §3: nothing in a capture can crash the run).
            self.bad("decode-error", frame)
            return None


    def _ip(self, buf: bytes, p: int, end: int, ver: int, ts: float, frame: int,
            tunnel: TunnelInfo | None, depth: int) -> PacketRecord | None:
        if ver == 4:
            if end - p < 20:
                self.bad("ipv4-short", frame)
                return None
            vihl = buf[p]
            if vihl >> 4 != 4:
                self.bad("ipv4-bad-version", frame)
                return None
            ihl = (vihl & 15) << 2
            if ihl < 20:
                self.bad("ipv4-bad-header", frame)
                return None
            if end - p < ihl:
                self.bad("ipv4-short", frame)
                return None
            tot, fragw, proto, src, dst = _IP4(buf, p)
            if tot == 0:  # TSO/GSO on the capturing host: the length is what was captured
                tot = end - p
            if tot < ihl:
                self.bad("ipv4-bad-length", frame)
                return None
            if ihl > 20:
                dst = self._ip4_final_dst(buf, p + 20, p + ihl, dst)
            foff = fragw & 0x1FFF
            key = (src, dst, _IP4ID(buf, p)[0], proto) if fragw & 0x3FFF else None
            ipend = min(p + tot, end)
            rec = self._transport(buf, p + ihl, ipend, p + tot <= end, proto, src, dst, tot, tot - ihl,
                                  ts, frame, tunnel, depth, key, foff == 0, False)
            if rec is not None and rec.ttl < 0:  # an inner packet of a tunnel keeps its own
                rec.ttl = buf[p + 8]
            return rec
        if end - p < 40:
            self.bad("ipv6-short", frame)
            return None
        if buf[p] >> 4 != 6:
            self.bad("ipv6-bad-version", frame)
            return None
        plen6, nh, src, dst = _IP6(buf, p)
        q = p + 40
        if plen6 == 0 and nh == 0:  # a jumbogram (RFC 2675; Linux BIG TCP): the length is an option
            plen6 = self._ip6_jumbo(buf, q, end)
        full_end = p + 40 + plen6
        ipend = min(full_end, end)
        key6: tuple[bytes, bytes, int, int] | None = None
        first = True
        # Each header is at least 8 bytes, so the walk is bounded by the packet; the cap only stops
        # a pathological chain early (libpcap's test suite has one of ~90 headers that tshark reads).
        for _ in range(256):
            if nh in _IP6_EXT:
                if ipend - q < 8:
                    self.bad("ipv6-ext-short", frame)
                    return None
                hl = (buf[q + 1] + 2) * 4 if nh == 51 else (buf[q + 1] + 1) * 8
                if q + hl <= ipend:
                    # Like tshark (and the checksum's pseudo-header, RFC 8200 §8.1, RFC 6275 §6.3),
                    # the conversation is between the final destination of a routing header and
                    # the home address of a Mobile IPv6 destination option.
                    if nh == 43 and buf[q + 3] and hl >= 24:
                        rtype = buf[q + 2]
                        if rtype == 0 or rtype == 2:  # the last address listed is the final one
                            dst = buf[q + hl - 16:q + hl]
                        elif rtype == 4:  # segment routing (RFC 8754): Segment List[0] is the last
                            dst = buf[q + 8:q + 24]
                    elif nh == 60 and hl >= 24:
                        src = self._ip6_home_address(buf, q + 2, q + hl, src)
                nh = buf[q]
                q += hl
                continue
            if nh == 44:
                if ipend - q < 8:
                    self.bad("ipv6-ext-short", frame)
                    return None
                nh2, offflags, ident = _FRAG6(buf, q)
                if offflags & 0xFFF9:
                    key6 = (src, dst, ident, nh2)
                    first = offflags >> 3 == 0
                nh = nh2
                q += 8
                continue
            break
        else:
            self.bad("ipv6-ext-chain", frame)
            return None
        if q > ipend:
            self.bad("ipv6-ext-short", frame)
            return None
        rec = self._transport(buf, q, ipend, full_end <= end, nh, src, dst, 40 + plen6, full_end - q,
                              ts, frame, tunnel, depth, key6, first, True)
        if rec is not None and rec.ttl < 0:
            rec.ttl = buf[p + 7]  # the hop limit
        return rec

    def _transport(self, buf: bytes, q: int, ipend: int, complete: bool, proto: int, src: bytes, dst: bytes,
                   ip_len: int, l4len: int, ts: float, frame: int, tunnel: TunnelInfo | None, depth: int,
                   fkey: tuple[bytes, bytes, int, int] | None, first: bool, v6: bool) -> PacketRecord | None:
        ii = self.ii
        if fkey is not None and not first:
            ports = self._ports(fkey, ts)
            if ports is None:
                self.bad("fragment-orphan", frame)
                ports = (0, 0)
            elif ports == _TUNNELED:
                # The rest of a tunnel packet whose inner packet was audited from its first fragment.
                self.unsup("tunnel-fragment", frame)
                return None
            return make_record(ii, frame, ts, src, dst, proto, ip_len, ports[0], ports[1],
                               payload_len=max(l4len, 0), tunnel=tunnel, fragment=True)
        frag = fkey is not None
        avail = ipend - q
        if proto == 6:
            if avail < 20:
                self.bad("tcp-short", frame)
                return None
            sport, dport, seq, ack, offb, flags = _TCP(buf, q)
            doff = (offb >> 4) << 2
            if doff < 20 or (doff > l4len and not frag):
                self.bad("tcp-bad-offset", frame)
                return None
            plen = max(l4len - doff, 0)
            a = q + doff
            payload = buf[a:min(a + PAYLOAD_SNAP, ipend)] if plen and a < ipend else b""
            bad = (self.verify and complete and not frag
                   and checksum_bad(buf, q, q + l4len, src + dst, 6))
            if fkey is not None:
                self._remember(fkey, sport, dport, ts)
            return make_record(ii, frame, ts, src, dst, 6, ip_len, sport, dport, flags, seq, ack, plen,
                               payload, checksum_bad=bad, tunnel=tunnel, fragment=frag)
        if proto == 17:
            if avail < 8:
                self.bad("udp-short", frame)
                return None
            sport, dport, ulen, ucs = _UDP(buf, q)
            if fkey is not None:
                self._remember(fkey, sport, dport, ts)
            if dport in (VXLAN_PORT, GENEVE_PORT):
                # A first fragment holds the inner headers too: audit the inner packet from it.
                done, rec = self._udp_tunnel(buf, q + 8, ipend, dport, src, dst, ts, frame, tunnel, depth)
                if done:
                    if fkey is not None and rec is not None:
                        self._remember(fkey, *_TUNNELED, ts)
                    return rec
            if ulen >= 8 and (frag or ulen <= l4len):
                plen = ulen - 8
            else:
                self.bad("udp-bad-length", frame)
                plen = max(l4len - 8, 0)
            a = q + 8
            payload = buf[a:min(a + plen, a + PAYLOAD_SNAP, ipend)] if plen else b""
            bad = bool(ucs and self.verify and complete and not frag and 8 <= ulen <= l4len
                       and checksum_bad(buf, q, q + ulen, src + dst, 17))
            return make_record(ii, frame, ts, src, dst, 17, ip_len, sport, dport, 0, 0, 0, plen, payload,
                               checksum_bad=bad, tunnel=tunnel, fragment=frag)
        if (proto == 1 and not v6) or (proto == 58 and v6):
            if frag and not first:
                return None  # unreachable: handled above
            if avail < 4:
                self.bad("icmp-short", frame)
                return None
            t, c = buf[q], buf[q + 1]
            icmp_id = 0
            quoted = None
            if (t in _ICMP6_ID) if v6 else (t in _ICMP4_ID):
                if avail >= 6:
                    icmp_id = _U16(buf, q + 4)[0]
            elif (t in _ICMP6_ERR) if v6 else (t in _ICMP4_ERR):
                quoted = self._quote(buf, q + 8, ipend)
            return make_record(ii, frame, ts, src, dst, proto, ip_len, 0, 0, 0, 0, 0, max(l4len - 8, 0),
                               b"", t, c, icmp_id, quoted, tunnel=tunnel, fragment=frag)
        # Tunnels and IPsec wrappers. A first fragment holds the inner headers too, so the inner
        # packet is audited from it; its later fragments are then counted as "tunnel-fragment".
        if proto == 47:
            rec = self._gre(buf, q, ipend, src, dst, ts, frame, tunnel, depth)
        elif proto == 4 or proto == 41:  # IP-in-IP, 6in4, 4in6, 6in6 (RFC 2003, 2473)
            rec = self._decap("ipip", buf, q, ipend, ETH_IPV4 if proto == 4 else ETH_IPV6, src, dst, 0, ts,
                              frame, tunnel, depth)
        elif proto == 103 and avail >= 9 and buf[q] == 0x21 and not buf[q + 4] & 0x40 and buf[q + 8] >> 4 in (4, 6):
            # PIM register (RFC 7761 §4.9.3, not a null-register): the multicast data packet itself.
            rec = self._decap("pim", buf, q + 8, ipend, ETH_IPV4 if buf[q + 8] >> 4 == 4 else ETH_IPV6, src, dst,
                              0, ts, frame, tunnel, depth)
        elif proto == 51 and not v6 and avail >= 12:
            # IPv4 AH (RFC 4302): skip it (IPv6 walks it as an extension header).
            hl = (buf[q + 1] + 2) * 4
            if hl > avail:
                self.bad("ah-short", frame)
                return None
            return self._transport(buf, q + hl, ipend, complete, buf[q], src, dst, ip_len, l4len - hl, ts, frame,
                                   tunnel, depth, fkey, first, v6)
        elif proto == 108 and not frag and avail >= 4:
            return self._ipcomp(buf, q, ipend, src, dst, ip_len, ts, frame, tunnel, depth, v6)
        else:
            return make_record(ii, frame, ts, src, dst, proto, ip_len, payload_len=max(l4len, 0),
                               tunnel=tunnel, fragment=frag)
        if fkey is not None and rec is not None:
            self._remember(fkey, *_TUNNELED, ts)
        return rec


    def _ip4_final_dst(self, buf: bytes, o: int, end: int, dst: bytes) -> bytes:
        """The last address of a loose or strict source route option with hops left (RFC 791), as
        tshark shows it; ``dst`` otherwise."""
        while o < end:
            t = buf[o]
            if t == 0:
                break
            if t == 1:
                o += 1
                continue
            if end - o < 2 or buf[o + 1] < 2:
                break
            olen = buf[o + 1]
            if (t == 131 or t == 137) and 7 <= olen <= end - o and buf[o + 2] <= olen:
                return buf[o + olen - 4:o + olen]
            o += olen
        return dst

    def _ip6_jumbo(self, buf: bytes, q: int, end: int) -> int:
        """The payload length from a hop-by-hop Jumbo Payload option; else what was captured."""
        if end - q >= 8:
            hend = min(q + (buf[q + 1] + 1) * 8, end)
            o = q + 2
            while o < hend:
                t = buf[o]
                if t == 0:
                    o += 1
                    continue
                if hend - o < 2:
                    break
                if t == 0xC2 and buf[o + 1] == 4 and hend - o >= 6:
                    return int(_U32(buf, o + 2)[0])
                o += 2 + buf[o + 1]
        return max(end - q, 0)

    def _ip6_home_address(self, buf: bytes, o: int, end: int, src: bytes) -> bytes:
        """The Home Address option (type 0xC9) of a destination options header, else ``src``."""
        while o < end:
            t = buf[o]
            if t == 0:
                o += 1
                continue
            if end - o < 2:
                break
            if t == 0xC9 and buf[o + 1] == 16 and end - o >= 18:
                return buf[o + 2:o + 18]
            o += 2 + buf[o + 1]
        return src

    def _remember(self, key: FragKey, sport: int, dport: int, ts: float) -> None:
        remember_fragment(self.frags, key, sport, dport, ts)

    def _ports(self, key: FragKey, ts: float) -> tuple[int, int] | None:
        """The ports of a later fragment's datagram (from its first fragment), None for an orphan. A
        byte range that starts inside its file has not seen what came before it: at its first such
        fragment it takes in the datagrams begun in the FRAG_TIMEOUT before (``behind``), older
        than its own, so that it finds what one read of the file finds."""
        found = fragment_ports(self.frags, key, ts)
        if found is None and self.behind is not None:
            behind, self.behind = self.behind, None
            before = {k: v for k, v in behind(ts - FRAG_TIMEOUT - FRAG_SLACK).items() if k not in self.frags}
            merged = before | self.frags
            for k in list(merged)[:max(0, len(merged) - FRAG_TABLE_SIZE)]:
                del merged[k]
            self.frags = merged
            found = fragment_ports(merged, key, ts)
        return found

    def _quote(self, buf: bytes, p: int, end: int) -> QuotedPacket | None:
        """The original packet an ICMP error quotes: its IP header and first 8 bytes (RFC 792/4443)."""
        if end - p < 20:
            return None
        v = buf[p] >> 4
        if v == 4:
            ihl = (buf[p] & 15) << 2
            if ihl < 20:
                return None
            proto = buf[p + 9]
            src, dst = buf[p + 12:p + 16], buf[p + 16:p + 20]
            q = p + ihl
        elif v == 6:
            if end - p < 40:
                return None
            _, proto, src, dst = _IP6(buf, p)
            q = p + 40
            for _ in range(4):
                if (proto not in _IP6_EXT and proto != 44) or end - q < 8:
                    break
                hl = 8 if proto == 44 else (buf[q + 1] + 2) * 4 if proto == 51 else (buf[q + 1] + 1) * 8
                proto = buf[q]
                q += hl
        else:
            return None
        sport = dport = 0
        if proto in (6, 17) and end - q >= 4:
            sport, dport = _U16(buf, q)[0], _U16(buf, q + 2)[0]
        return QuotedPacket(src, dst, proto, sport, dport)

