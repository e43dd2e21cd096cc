"""Frames -> PacketRecord: link layers, VLAN tags, IPv4/IPv6, TCP/UDP/ICMP, fragments, tunnels.

``Decoder.decode`` is the hot path: Ethernet (+one 802.1Q tag) carrying IPv4 without options or
IPv6 without extension headers, then TCP or plain UDP, decoded inline with precompiled structs on
the reader's block buffer (no per-packet objects besides the record). Everything else falls to the
general decoder below it, which checks every bound explicitly. A frame that cannot be decoded is
counted by kind in ReadStats and skipped; nothing here raises but ``BadRun`` (BAD_RUN_MAX malformed
frames in a row: the walk gives up on the rest of the input).
"""

from __future__ import annotations

import struct
import zlib

from auditor.apps import APP_SNAP
from auditor.capture.info import ReadStats
from auditor.model import PAYLOAD_SNAP, Lane, PacketRecord, QuotedPacket, TunnelInfo

_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_U32LE = struct.Struct("<I").unpack_from
_U16LE = struct.Struct("<H").unpack_from
# IPv4: total length, flags+fragment offset, protocol, src, dst (the fast path reads these only).
_IP4 = struct.Struct("!2xH2xHxB2x4s4s").unpack_from
# Ethernet type + IPv4 (as _IP4) + TCP (as _TCP) in one read, untagged and with one 802.1Q tag.
_E4 = struct.Struct("!12xHBxH2xHxB2x4s4sHHIIBB").unpack_from
_E4V = struct.Struct("!16xHBxH2xHxB2x4s4sHHIIBB").unpack_from
# The same from the IPv4 header on (other link layers).
_I4 = struct.Struct("!BxH2xHxB2x4s4sHHIIBB").unpack_from
# The same without TCP seq/ack (UDP length/checksum): the fused pcap walk reads those only when it
# builds a record, so a packet the fast lane takes allocates two integers fewer.
_E4L = struct.Struct("!12xHBxH2xHxB2x4s4sHH8xBB").unpack_from
_E4LV = struct.Struct("!16xHBxH2xHxB2x4s4sHH8xBB").unpack_from
# IPv6 (payload length, next header, src, dst) and the TCP ports, offset and flags (for UDP: its ports
# and 6 more bytes), for the fused pcap walk.
_I6L = struct.Struct("!4xHBx16s16sHH8xBB").unpack_from
_SEQACK = struct.Struct("!II").unpack_from
_ULEN_SUM = struct.Struct("!HH").unpack_from
_IP4ID = struct.Struct("!4xH").unpack_from
# IPv6: payload length, next header, src, dst.
_IP6 = struct.Struct("!4xHBx16s16s").unpack_from
_TCP = struct.Struct("!HHIIBB").unpack_from
_UDP = struct.Struct("!HHHH").unpack_from
_FRAG6 = struct.Struct("!BxHI").unpack_from
# Apple PKTAP header (host byte order, little-endian in practice): length, record type, inner DLT.
_PKTAP = struct.Struct("<III").unpack_from

VXLAN_PORT = 4789
GENEVE_PORT = 6081
MAX_TUNNEL_DEPTH = 4
# An IPComp (RFC 3173) payload inflates to at most one IP datagram; more is not a packet.
IPCOMP_MAX = 65535
# Later fragments find their ports here; bounded so a fragment flood cannot grow memory.
FRAG_TABLE_SIZE = 4096
# The fragment table's mark for a tunnel packet audited from its first fragment.
_TUNNELED = (-1, -1)
# GRE protocol type of Aruba's 802.11-in-GRE (its range starts here), as _decap's payload kind.
_ARUBA_WLAN = 0x8200

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
# ICMP types that carry an identifier (echo, timestamp, information, address mask) and errors.
_ICMP4_ID = frozenset((0, 8, 13, 14, 15, 16, 17, 18))
_ICMP4_ERR = frozenset((3, 4, 5, 11, 12))
_ICMP6_ID = frozenset((128, 129))
_ICMP6_ERR = frozenset((1, 2, 3, 4))
# IPv6 extension headers walked to find the transport header (RFC 8200 §4; AH is RFC 4302).
# Mobility (135), HIP (139) and Shim6 (140) share the generic extension-header layout (RFC 7045).
_IP6_EXT = frozenset((0, 43, 60, 51, 135, 139, 140))
# BSD loopback address families meaning IPv6 (Linux, NetBSD/OpenBSD, FreeBSD, Darwin).
_AF_INET6 = frozenset((10, 24, 28, 30))


def _net_sll(buf: bytes, off: int, end: int) -> tuple[int, int]:
    return (off + 16, _U16(buf, off + 14)[0]) if end - off >= 16 else (0, 0)


def _net_sll2(buf: bytes, off: int, end: int) -> tuple[int, int]:
    return (off + 20, _U16(buf, off)[0]) if end - off >= 20 else (0, 0)


def _net_raw(buf: bytes, off: int, end: int) -> tuple[int, int]:
    v = buf[off] >> 4 if end > off else 0
    return off, 0x0800 if v == 4 else 0x86DD if v == 6 else 0


def _net_null(buf: bytes, off: int, end: int, big: bool = False) -> tuple[int, int]:
    if end - off < 4:
        return 0, 0
    # NULL (0) is in host byte order: guessed from the zero bytes, as Decoder._link does.
    fam = _U32(buf, off)[0] if big or (buf[off] == 0 and buf[off + 1] == 0) else _U32LE(buf, off)[0]
    return off + 4, 0x0800 if fam == 2 else 0x86DD if fam in _AF_INET6 else 0


def _net_loop(buf: bytes, off: int, end: int) -> tuple[int, int]:
    return _net_null(buf, off, end, True)


_NET = {113: _net_sll, 276: _net_sll2, 0: _net_null, 108: _net_loop,
        **dict.fromkeys((101, 12, 14, 228, 229), _net_raw)}
"""Link types the fast path reads besides Ethernet: (offset of the IP header, its ethertype; 0 for
anything the general path must judge), as Decoder._link finds them."""
# The TCP fast paths keep only the first payload byte of a segment that can carry no name evidence
# (auditor/names.py: DNS over TCP on port 53, a TLS handshake record 0x16, an HTTP request line; the
# conversation core reads TCP payload not at all): the record's payload stays non-empty with the
# same first byte, without copying up to PAYLOAD_SNAP bytes per data segment. Letters of either case
# are kept in full (HTTP methods are upper-case; lower case costs nothing to keep).
_KEEP_FIRST = frozenset(b"\x16ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

# Transport checksums cost about a third of decoding on the fast path. They only tell whether the
# capture host offloaded checksumming, so after the first VERIFY_ALL_FRAMES frames of an input the
# fast path verifies every TCP SYN, FIN and RST (so each TCP connection still gets its own verdict,
# and its 'C' history letter) and one other frame in VERIFY_EVERY (the count stays a count, of a
# sample; the report says so). Packets on the general path (tunnels, fragments, options) are always
# verified.
VERIFY_ALL_FRAMES = 10_000
VERIFY_EVERY = 64
VERIFY_EVERY_MASK = VERIFY_EVERY - 1
CHECKSUM_POLICY = (f"every packet of the first {VERIFY_ALL_FRAMES:,} frames of each input, then every TCP "
                   f"SYN, FIN and RST and 1 in {VERIFY_EVERY} of the other packets on the common path")
# Link-layer header types tried in Decoder._link, by LINKTYPE_ value.
LINKTYPE_PKTAP, LINKTYPE_USER2, LINKTYPE_JUNIPER_ETHER, LINKTYPE_IPOIB = 258, 149, 178, 242

LINKTYPE_NAMES = {
    0: "NULL", 1: "EN10MB", 6: "IEEE802", 8: "SLIP", 9: "PPP", 10: "FDDI", 12: "RAW", 14: "RAW",
    50: "PPP_HDLC", 51: "PPP_ETHER", 101: "RAW", 104: "C_HDLC", 105: "IEEE802_11", 107: "FRELAY",
    108: "LOOP", 113: "LINUX_SLL", 117: "PFLOG", 119: "PRISM_HEADER", 122: "IP_OVER_FC",
    127: "IEEE802_11_RADIO", 138: "APPLE_IP_OVER_IEEE1394", 140: "MTP2", 141: "MTP3", 143: "DOCSIS",
    163: "IEEE802_11_RADIO_AVS", 166: "PPP_PPPD", 187: "BLUETOOTH_HCI_H4", 189: "USB_LINUX",
    192: "PPI", 195: "IEEE802_15_4", 197: "ERF", 201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    204: "PPP_WITH_DIR", 215: "IEEE802_15_4_NOFCS", 220: "USB_LINUX_MMAPPED", 228: "IPV4",
    229: "IPV6", 239: "NFLOG", 242: "IPOIB", 249: "USBPCAP", 253: "NETLINK", 149: "USER2",
    178: "JUNIPER_ETHER", 258: "PKTAP", 276: "LINUX_SLL2",
}


def linktype_name(lt: int) -> str:
    return LINKTYPE_NAMES.get(lt, f"LINKTYPE_{lt}")


def checksum_bad(buf: bytes, a: int, b: int, src: bytes, dst: bytes, proto: int) -> bool:
    """Internet checksum over pseudo-header + segment buf[a:b].

    Since 2**16 == 1 (mod 0xFFFF), the one's-complement sum of 16-bit words is congruent to the
    whole big-endian integer mod 0xFFFF: one C-level conversion instead of a Python loop. A correct
    segment sums to 0xFFFF, i.e. 0 mod 0xFFFF.
    """
    n = int.from_bytes(buf[a:b], "big")
    if (b - a) & 1:
        n <<= 8
    return (n + int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + b - a) % 0xFFFF != 0


_new = object.__new__


def fast_record(ii: int, frame: int, ts: float, src: bytes, dst: bytes, proto: int, ip_len: int, sport: int,
                dport: int, flags: int, seq: int, ack: int, plen: int, payload: bytes, bad: bool,
                ttl: int) -> PacketRecord:
    """A TCP/UDP PacketRecord of the fast paths, built without PacketRecord.__init__.

    On Python 3.11 a class call to a Python __init__ goes through type.__call__ and costs about twice
    a plain Python call plus the slot stores; PacketRecord has no __post_init__, so setting every slot
    here gives the same object (tests/test_capture_fastpath.py pins the field list).
    """
    r: PacketRecord = _new(PacketRecord)
    r.input_index = ii
    r.frame = frame
    r.ts = ts
    r.src = src
    r.dst = dst
    r.proto = proto
    r.ip_len = ip_len
    r.sport = sport
    r.dport = dport
    r.tcp_flags = flags
    r.seq = seq
    r.ack = ack
    r.payload_len = plen
    r.payload = payload
    r.icmp_type = -1
    r.icmp_code = -1
    r.icmp_id = 0
    r.quoted = None
    r.checksum_bad = bad
    r.tunnel = None
    r.fragment = False
    r.ttl = ttl
    return r


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


class Decoder:
    """Decodes the frames of one input. Counters go to the shared ReadStats."""

    def __init__(self, stats: ReadStats, input_index: int, *, verify_checksums: bool = True) -> None:
        self.stats = stats
        self.ii = input_index
        self.verify = verify_checksums
        self.lane: Lane | None = None
        """The conversation core's fast lane (ConversationBuilder.lane), offered the common TCP/UDP
        packets that need no record: see ``decode``."""
        self.laned = 0
        """Packets the lane took (records in all but object: counted into ReadStats.records)."""
        self.frags: dict[tuple[bytes, bytes, int, int], tuple[int, int]] = {}
        self._bad_last = 0
        """The last malformed frame (``bad``), and how many malformed frames in a row end there."""
        self._bad_run = 0

    # -- counting ---------------------------------------------------------------------------------

    def bad(self, kind: str, frame: int) -> None:
        m = self.stats.malformed
        m[kind] = m.get(kind, 0) + 1
        self.stats.examples.setdefault(kind, (self.ii, frame))
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

    def unsup(self, kind: str, frame: int) -> None:
        u = self.stats.unsupported
        u[kind] = u.get(kind, 0) + 1
        self.stats.examples.setdefault(kind, (self.ii, frame))

    def non_ip(self, kind: str, frame: int) -> None:
        self.stats.non_ip += 1
        self.unsup(kind, frame)

    # -- hot path -----------------------------------------------------------------------------------

    def decode(self, buf: bytes, off: int, caplen: int, ts: float, frame: int,
               lt: int) -> PacketRecord | None:
        """Decode the frame buf[off:off+caplen] of link type ``lt``; None if it yields no record
        (not IP, malformed, or taken by the conversation core's fast lane)."""
        end = off + caplen
        if lt == 1:
            if caplen < 54:
                return self.slow(buf, off, end, ts, frame, lt)
            # One unpack reads Ethernet type, the IPv4 fields and the TCP (or UDP) header at once,
            # assuming the common layout; the checks below decide whether the guess was right. IPv6
            # reads its own headers; from there on TCP and UDP are handled alike for both.
            et, vihl, tot, frag, proto, src, dst, sport, dport, seq, ack, offb, flags = _E4(buf, off)
            p = off + 14
            if et == 0x8100:
                et, vihl, tot, frag, proto, src, dst, sport, dport, seq, ack, offb, flags = _E4V(buf, off)
                p = off + 18
        else:
            # Other link layers (Linux cooked, raw IP, loopback): find the IP header, then the same
            # path. Anything else, and any doubt, is the general path's (``slow``).
            link = _NET.get(lt)
            if link is None:
                return self.slow(buf, off, end, ts, frame, lt)
            p, et = link(buf, off, end)
            if et == 0x0800:
                if end - p < 40:
                    return self.slow(buf, off, end, ts, frame, lt)
                vihl, tot, frag, proto, src, dst, sport, dport, seq, ack, offb, flags = _I4(buf, p)
        v4 = et == 0x0800
        if v4:
            if vihl != 0x45 or frag & 0x3FFF:
                return self.slow(buf, off, end, ts, frame, lt)
            l4, l4len = p + 20, tot - 20
            if proto == 17:
                ulen, ucs = seq >> 16, seq & 0xFFFF  # where UDP has its length and checksum
        elif et == 0x86DD and end - p >= 48 and buf[p] >> 4 == 6:
            l4len, proto, src, dst = _IP6(buf, p)
            l4 = p + 40
            tot = 40 + l4len
            if proto == 6 and l4len >= 20 and end - l4 >= 20:
                sport, dport, seq, ack, offb, flags = _TCP(buf, l4)
            elif proto == 17 and l4len >= 8:
                sport, dport, ulen, ucs = _UDP(buf, l4)
            else:
                return self.slow(buf, off, end, ts, frame, lt)
        else:
            return self.slow(buf, off, end, ts, frame, lt)
        ipend = l4 + l4len
        if proto == 6 and l4len >= 20:
            doff = (offb >> 4) << 2
            plen = l4len - doff
            if doff >= 20 and plen >= 0:
                quiet = True  # no payload that names.py reads
                a = b = 0
                if plen:
                    a = l4 + doff
                    b = ipend if ipend < end else end
                    if a < b and buf[a] not in _KEEP_FIRST and sport != 53 and dport != 53:
                        if b > a + APP_SNAP:
                            b = a + APP_SNAP
                    else:
                        quiet = a >= b
                        if b > a + PAYLOAD_SNAP:
                            b = a + PAYLOAD_SNAP
                bad = bool(self.verify and ipend <= end
                           and (frame <= VERIFY_ALL_FRAMES or flags & 7 or not frame & VERIFY_EVERY_MASK)
                           and checksum_bad(buf, l4, ipend, src, dst, 6))
                lane = self.lane
                if quiet and not bad and lane is not None and lane.take(6, src, sport, dst, dport, ts, flags,
                                                                        plen, tot):
                    self.laned += 1
                    return None
                return fast_record(self.ii, frame, ts, src, dst, 6, tot, sport, dport, flags, seq, ack, plen,
                                   buf[a:b] if plen else b"", bad, buf[p + 8] if v4 else buf[p + 7])
        elif proto == 17 and 8 <= ulen <= l4len and dport != VXLAN_PORT and dport != GENEVE_PORT:
            plen = ulen - 8
            bad = bool(ucs and self.verify and l4 + ulen <= end
                       and (frame <= VERIFY_ALL_FRAMES or not frame & VERIFY_EVERY_MASK)
                       and checksum_bad(buf, l4, l4 + ulen, src, dst, 17))
            lane = self.lane
            if (not bad and lane is not None and sport != 53 and dport != 53
                    and lane.take(17, src, sport, dst, dport, ts, 0, plen, tot)):
                self.laned += 1
                return None
            payload = b""
            if plen:
                a = l4 + 8
                b = a + plen
                if b > end:
                    b = end
                if b > a + PAYLOAD_SNAP:
                    b = a + PAYLOAD_SNAP
                payload = buf[a:b]
            return fast_record(self.ii, frame, ts, src, dst, 17, tot, sport, dport, 0, 0, 0, plen,
                               payload, bad, buf[p + 8] if v4 else buf[p + 7])
        return self.slow(buf, off, end, ts, frame, lt)

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

    def _link(self, buf: bytes, off: int, end: int, frame: int, lt: int) -> tuple[int, int]:
        """Returns (4 or 6, offset of the IP header), or (-1, 0) when the frame was counted."""
        n = end - off
        if lt == 1:
            if n < 14:
                self.bad("eth-short", frame)
                return -1, 0
            return self._ethertype(buf, off + 14, end, _U16(buf, off + 12)[0], frame)
        if lt in (101, 12, 14, 228, 229):
            if n < 1:
                self.bad("raw-short", frame)
                return -1, 0
            v = buf[off] >> 4
            if v in (4, 6):
                return v, off
            self.bad("raw-bad-version", frame)
            return -1, 0
        if lt in (0, 108):
            if n < 4:
                self.bad("loopback-short", frame)
                return -1, 0
            # LOOP (108) is always network order; NULL (0) is host order: guess it from the zero bytes.
            big = lt == 108 or (buf[off] == 0 and buf[off + 1] == 0)
            fam = _U32(buf, off)[0] if big else _U32LE(buf, off)[0]
            if fam == 2:
                return 4, off + 4
            if fam in _AF_INET6:
                return 6, off + 4
            self.non_ip(f"loopback-family:{fam}", frame)
            return -1, 0
        if lt == 113:
            if n < 16:
                self.bad("sll-short", frame)
                return -1, 0
            return self._ethertype(buf, off + 16, end, _U16(buf, off + 14)[0], frame)
        if lt == 276:
            if n < 20:
                self.bad("sll2-short", frame)
                return -1, 0
            return self._ethertype(buf, off + 20, end, _U16(buf, off)[0], frame)
        if lt in (9, 50, 204, 166):
            p = off + (1 if lt == 204 else 0)
            if end - p >= 2 and buf[p] == 0xFF and buf[p + 1] == 0x03:
                p += 2
            return self._ppp(buf, p, end, frame)
        if lt == 104:
            if n < 4:
                self.bad("chdlc-short", frame)
                return -1, 0
            return self._ethertype(buf, off + 4, end, _U16(buf, off + 2)[0], frame)
        if lt == 192 and n >= 8:
            # PPI (Per-Packet Information): u8 version, u8 flags, u16 header length, u32 inner DLT,
            # both little-endian; the inner frame follows the header.
            hlen, dlt = _U16LE(buf, off + 2)[0], _U32LE(buf, off + 4)[0]
            if 8 <= hlen <= n and dlt != 192:
                return self._link(buf, off + hlen, end, frame, dlt)
            self.bad("ppi-bad-header", frame)
            return -1, 0
        if lt == 239 and n >= 4:
            return self._nflog(buf, off, end, frame)
        if lt == 105:
            return self._wlan(buf, off, end, frame)
        if lt in (LINKTYPE_PKTAP, LINKTYPE_USER2):
            # Apple PKTAP (macOS tcpdump -k; older versions wrote it as USER2, which tshark reads as
            # PKTAP too): a header naming the inner link type (a DLT value), then the frame.
            if n >= 12:
                hlen, rtype, dlt = _PKTAP(buf, off)
                if 12 <= hlen <= n and rtype == 1 and dlt not in (LINKTYPE_PKTAP, LINKTYPE_USER2):
                    return self._link(buf, off + hlen, end, frame, dlt)
            if lt == LINKTYPE_USER2:
                self.unsup("linktype:DLT_USER2", frame)
            else:
                self.bad("pktap-bad-header", frame)
            return -1, 0
        if lt == 10:
            # FDDI: frame control, destination and source addresses (13 bytes), then 802.2 LLC/SNAP.
            if n < 13:
                return self._short("fddi-short", frame)
            return self._ethertype(buf, off + 13, end, 0, frame)
        if lt == LINKTYPE_IPOIB:
            # IP over InfiniBand (RFC 4391): 20-byte destination and source hardware addresses, then
            # the ethertype and two reserved bytes.
            if n < 44:
                return self._short("ipoib-short", frame)
            return self._ethertype(buf, off + 44, end, _U16(buf, off + 40)[0], frame)
        if lt == LINKTYPE_JUNIPER_ETHER:
            return self._juniper_ether(buf, off, end, frame)
        if lt == 127 and n >= 4:
            # Radiotap: u8 version, u8 pad, u16 length (little-endian), then the 802.11 frame.
            rlen = _U16LE(buf, off + 2)[0]
            if 4 <= rlen <= n:
                return self._wlan(buf, off + rlen, end, frame)
            self.bad("radiotap-bad-header", frame)
            return -1, 0
        self.unsup(f"linktype:DLT_{linktype_name(lt)}", frame)
        return -1, 0

    def _juniper_ether(self, buf: bytes, off: int, end: int, frame: int) -> tuple[int, int]:
        """Juniper's capture header: magic 'MGC', flags, then (flag 0x80) a 2-byte length of TLV
        extensions; the Ethernet frame follows, or (flag 0x02, no L2 header) 4 bytes and the IP
        packet."""
        if end - off < 4 or buf[off:off + 3] != b"MGC":
            self.bad("juniper-bad-header", frame)
            return -1, 0
        flags = buf[off + 3]
        p = off + 4
        if flags & 0x80:
            if end - p < 2:
                return self._short("juniper-short", frame)
            p += 2 + _U16(buf, p)[0]
        if flags & 0x02:
            p += 4
            if end - p < 1 or buf[p] >> 4 not in (4, 6):
                self.non_ip("juniper-no-l2", frame)
                return -1, 0
            return buf[p] >> 4, p
        if end - p < 14:
            return self._short("juniper-short", frame)
        return self._ethertype(buf, p + 14, end, _U16(buf, p + 12)[0], frame)

    def _wlan(self, buf: bytes, off: int, end: int, frame: int) -> tuple[int, int]:
        """IEEE 802.11 data frames (IEEE 802.11-2020 §9.2.4) with an LLC/SNAP header; management,
        control and encrypted frames carry no IP we can read and are counted."""
        if end - off < 24:
            self.bad("wlan-short", frame)
            return -1, 0
        fc, flags = buf[off], buf[off + 1]
        if (fc >> 2) & 3 != 2:
            self.non_ip("wlan-not-data", frame)
            return -1, 0
        if flags & 0x40:
            self.non_ip("wlan-protected", frame)
            return -1, 0
        hlen = 24
        if flags & 3 == 3:
            hlen += 6  # four-address frame (to DS and from DS)
        if fc & 0x80:
            hlen += 2  # QoS data subtypes carry a QoS control field
            if flags & 0x80:
                hlen += 4  # HT control
        if (fc >> 4) & 4:
            self.non_ip("wlan-null-data", frame)
            return -1, 0
        p = off + hlen
        if end - p < 8 or buf[p:p + 3] != b"\xaa\xaa\x03":
            self.non_ip("wlan-not-snap", frame)
            return -1, 0
        return self._ethertype(buf, p + 8, end, _U16(buf, p + 6)[0], frame)

    def _nflog(self, buf: bytes, off: int, end: int, frame: int) -> tuple[int, int]:
        """Linux NFLOG: a 4-byte header (family, version, resource id), then TLVs whose length and
        type are in the capturing host's byte order (little-endian in practice); type 9 carries the
        packet (NFULA_PAYLOAD)."""
        fam = buf[off]
        p = off + 4
        while p + 4 <= end:
            tlen, ttype = _U16LE(buf, p)[0], _U16LE(buf, p + 2)[0]
            if tlen < 4:
                break
            if ttype == 9:
                if fam == 2:
                    return 4, p + 4
                if fam == 10:
                    return 6, p + 4
                self.non_ip(f"nflog-family:{fam}", frame)
                return -1, 0
            p += (tlen + 3) & ~3
        self.bad("nflog-no-payload", frame)
        return -1, 0

    def _ppp(self, buf: bytes, p: int, end: int, frame: int) -> tuple[int, int]:
        if end - p < 2:
            self.bad("ppp-short", frame)
            return -1, 0
        proto = _U16(buf, p)[0]
        if proto == 0x0021:
            return 4, p + 2
        if proto == 0x0057:
            return 6, p + 2
        if proto in (0x0281, 0x0283):  # MPLS unicast/multicast over PPP (RFC 3032)
            return self._ethertype(buf, p + 2, end, 0x8847, frame)
        self.non_ip(f"ppp:0x{proto:04x}", frame)
        return -1, 0

    def _ethertype(self, buf: bytes, p: int, end: int, et: int, frame: int) -> tuple[int, int]:
        # Every step consumes at least 4 bytes, so the packet bounds the walk; the cap only ends a
        # pathological nesting (Zeek's test traces have a frame of 60 nested 802.1ah tags).
        for _ in range(256):
            if et == ETH_IPV4:
                return 4, p
            if et == ETH_IPV6:
                return 6, p
            if et in _VLAN_TPIDS:
                if end - p < 4:
                    self.bad("vlan-short", frame)
                    return -1, 0
                et = _U16(buf, p + 2)[0]
                p += 4
                continue
            if et in (0x8847, 0x8848):  # MPLS: labels until bottom-of-stack, then IP by version nibble
                for _ in range(8):
                    if end - p < 4:
                        self.bad("mpls-short", frame)
                        return -1, 0
                    label = _U32(buf, p)[0]
                    p += 4
                    if label & 0x100:
                        break
                if end - p < 1 or buf[p] >> 4 not in (4, 6):
                    self.non_ip("mpls-payload", frame)
                    return -1, 0
                return buf[p] >> 4, p
            if et == 0x88E7:  # 802.1ah provider backbone bridging: I-TAG, then the customer frame
                if end - p < 18:
                    return self._short("pbb-short", frame)
                et = _U16(buf, p + 16)[0]
                p += 18
                continue
            if et == 0x88E5:  # MACsec (IEEE 802.1AE): SecTAG (+ SCI), then the frame's own ethertype
                if end - p < 8:
                    return self._short("macsec-short", frame)
                tci = buf[p]
                if tci & 0x0C:  # E or C: encrypted or modified user data, nothing we can read
                    self.non_ip("macsec-encrypted", frame)
                    return -1, 0
                hl = 14 if tci & 0x20 else 6
                if end - p < hl + 2:
                    return self._short("macsec-short", frame)
                et = _U16(buf, p + hl)[0]
                p += hl + 2
                continue
            if et == 0x8864:  # PPPoE session
                if end - p < 8:
                    return self._short("pppoe-short", frame)
                return self._ppp(buf, p + 6, end, frame)
            if et <= 1500:  # 802.3 length: LLC, maybe SNAP carrying an ethertype
                if end - p >= 8 and buf[p] == 0xAA and buf[p + 1] == 0xAA and buf[p + 2] == 0x03:
                    et = _U16(buf, p + 6)[0]
                    p += 8
                    continue
                self.non_ip("ethertype:802.3-llc", frame)
                return -1, 0
            self.non_ip(f"ethertype:0x{et:04x}", frame)
            return -1, 0
        self.bad("vlan-too-many-tags", frame)
        return -1, 0

    def _short(self, kind: str, frame: int) -> tuple[int, int]:
        self.bad(kind, frame)
        return -1, 0

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
            ports = self.frags.get(fkey)
            if ports is None:
                self.bad("fragment-orphan", frame)
                ports = (0, 0)
            elif ports == _TUNNELED:
                # The rest of a tunnel packet whose inner packet was audited from its first fragment.
                self.unsup("tunnel-fragment", frame)
                return None
            return PacketRecord(ii, frame, ts, src, dst, proto, ip_len, ports[0], ports[1],
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
                   and checksum_bad(buf, q, q + l4len, src, dst, 6))
            if fkey is not None:
                self._remember(fkey, sport, dport)
            return PacketRecord(ii, frame, ts, src, dst, 6, ip_len, sport, dport, flags, seq, ack, plen,
                                payload, checksum_bad=bad, tunnel=tunnel, fragment=frag)
        if proto == 17:
            if avail < 8:
                self.bad("udp-short", frame)
                return None
            sport, dport, ulen, ucs = _UDP(buf, q)
            if fkey is not None:
                self._remember(fkey, sport, dport)
            if dport in (VXLAN_PORT, GENEVE_PORT):
                # A first fragment holds the inner headers too: audit the inner packet from it.
                done, rec = self._udp_tunnel(buf, q + 8, ipend, dport, src, dst, ts, frame, tunnel, depth)
                if done:
                    if fkey is not None and rec is not None:
                        self._remember(fkey, *_TUNNELED)
                    return rec
            if ulen >= 8 and (frag or ulen <= l4len):
                plen = ulen - 8
            else:
                self.bad("udp-bad-length", frame)
                plen = max(l4len - 8, 0)
            a = q + 8
            payload = buf[a:min(a + plen, a + PAYLOAD_SNAP, ipend)] if plen else b""
            bad = bool(ucs and self.verify and complete and not frag and 8 <= ulen <= l4len
                       and checksum_bad(buf, q, q + ulen, src, dst, 17))
            return PacketRecord(ii, frame, ts, src, dst, 17, ip_len, sport, dport, 0, 0, 0, plen, payload,
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
            return PacketRecord(ii, frame, ts, src, dst, proto, ip_len, 0, 0, 0, 0, 0, max(l4len - 8, 0),
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
            return PacketRecord(ii, frame, ts, src, dst, proto, ip_len, payload_len=max(l4len, 0),
                                tunnel=tunnel, fragment=frag)
        if fkey is not None and rec is not None:
            self._remember(fkey, *_TUNNELED)
        return rec

    def _ipcomp(self, buf: bytes, q: int, end: int, src: bytes, dst: bytes, ip_len: int, ts: float, frame: int,
                tunnel: TunnelInfo | None, depth: int, v6: bool) -> PacketRecord | None:
        """IPComp (RFC 3173): next header, flags, CPI, then the compressed payload (an inner IP
        packet in tunnel mode). Like tshark, inflate it as DEFLATE (RFC 2394) unless the CPI names
        another well-known algorithm (OUI 1, LZS 3, LZJH 4; SAs negotiate CPIs above 255)."""
        if _U16(buf, q + 2)[0] in (1, 3, 4) or depth + 1 >= MAX_TUNNEL_DEPTH:
            self.unsup("ipcomp", frame)
            return None
        try:
            data = zlib.decompressobj(-15).decompress(buf[q + 4:end], IPCOMP_MAX)
        except zlib.error:
            self.unsup("ipcomp", frame)
            return None
        return self._transport(data, 0, len(data), True, buf[q], src, dst, ip_len, len(data), ts, frame, tunnel,
                               depth + 1, None, True, v6)

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

    def _remember(self, key: tuple[bytes, bytes, int, int], sport: int, dport: int) -> None:
        frags = self.frags
        if len(frags) >= FRAG_TABLE_SIZE and key not in frags:
            del frags[next(iter(frags))]
        frags[key] = (sport, dport)

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

    # -- tunnels ------------------------------------------------------------------------------------

    def _udp_tunnel(self, buf: bytes, a: int, end: int, dport: int, src: bytes, dst: bytes, ts: float,
                    frame: int, tunnel: TunnelInfo | None, depth: int) -> tuple[bool, PacketRecord | None]:
        """(True, record) when the UDP payload is a VXLAN/Geneve frame; (False, None) to keep it UDP."""
        if end - a < 8:
            return False, None
        if dport == VXLAN_PORT:
            if not buf[a] & 0x08:  # I flag: a valid VNI (RFC 7348 §5)
                return False, None
            vni = _U32(buf, a + 4)[0] >> 8
            return True, self._decap("vxlan", buf, a + 8, end, 0x6558, src, dst, vni, ts, frame, tunnel,
                                     depth)
        if buf[a] >> 6:  # Geneve version 0 only (RFC 8926 §3.4)
            return False, None
        hl = 8 + ((buf[a] & 0x3F) << 2)
        ptype = _U16(buf, a + 2)[0]
        vni = _U32(buf, a + 4)[0] >> 8
        return True, self._decap("geneve", buf, a + hl, end, ptype, src, dst, vni, ts, frame, tunnel, depth)

    def _gre(self, buf: bytes, q: int, end: int, src: bytes, dst: bytes, ts: float, frame: int,
             tunnel: TunnelInfo | None, depth: int) -> PacketRecord | None:
        if end - q < 4:
            self.bad("gre-short", frame)
            return None
        flags, ptype = _U16(buf, q)[0], _U16(buf, q + 2)[0]
        if flags & 0x4007:  # routing present (RFC 1701) or version != 0 (PPTP's enhanced GRE)
            self.unsup("ipproto:47-unknown-gre", frame)
            return None
        p = q + 4
        if flags & 0x8000:  # checksum + reserved
            p += 4
        key = 0
        if flags & 0x2000:
            if end - p < 4:
                self.bad("gre-short", frame)
                return None
            key = _U32(buf, p)[0]
            p += 4
        seq = bool(flags & 0x1000)
        if seq:
            p += 4
        if ptype in (0x6558, ETH_IPV4, ETH_IPV6):
            return self._decap("gre", buf, p, end, ptype, src, dst, key, ts, frame, tunnel, depth)
        if 0x8200 <= ptype <= 0x820F:
            # Aruba wireless controllers' GRE from their access points: a bare 802.11 frame.
            return self._decap("gre", buf, p, end, _ARUBA_WLAN, src, dst, key, ts, frame, tunnel, depth)
        if ptype == 0x883E:
            # WCCP redirection (Citrix SD-WAN/WAN optimisers): the redirected IPv4 packet, after a
            # 4-byte WCCPv2 redirect header unless it starts right away (WCCPv1).
            if end - p >= 1 and buf[p] >> 4 != 4:
                p += 4
            return self._decap("wccp", buf, p, end, ETH_IPV4, src, dst, 0, ts, frame, tunnel, depth)
        if ptype == 0x88BE:
            if not seq:  # ERSPAN type I: no ERSPAN header, the mirrored frame follows GRE
                return self._decap("erspan2", buf, p, end, 0x6558, src, dst, 0, ts, frame, tunnel, depth)
            if end - p < 8:
                self.bad("erspan-short", frame)
                return None
            session = _U16(buf, p + 2)[0] & 0x3FF
            return self._decap("erspan2", buf, p + 8, end, 0x6558, src, dst, session, ts, frame, tunnel,
                               depth)
        if ptype == 0x22EB:
            if end - p < 12:
                self.bad("erspan-short", frame)
                return None
            session = _U16(buf, p + 2)[0] & 0x3FF
            hl = 20 if buf[p + 11] & 1 else 12  # O flag: platform-specific subheader follows
            return self._decap("erspan3", buf, p + hl, end, 0x6558, src, dst, session, ts, frame, tunnel,
                               depth)
        self.unsup("ipproto:47-unknown-gre", frame)
        return None

    def _decap(self, kind: str, buf: bytes, p: int, end: int, ptype: int, src: bytes, dst: bytes, vni: int,
               ts: float, frame: int, tunnel: TunnelInfo | None, depth: int) -> PacketRecord | None:
        if depth + 1 >= MAX_TUNNEL_DEPTH:
            self.unsup("tunnel-too-deep", frame)
            return None
        if p > end:
            self.bad(f"{kind}-short", frame)
            return None
        t = self.stats.tunnels
        t[kind] = t.get(kind, 0) + 1
        outer = tunnel if tunnel is not None else TunnelInfo(kind, src, dst, vni)
        if ptype == 0x6558:
            if end - p < 14:
                self.bad("eth-short", frame)
                return None
            ver, p = self._ethertype(buf, p + 14, end, _U16(buf, p + 12)[0], frame)
        elif ptype == _ARUBA_WLAN:
            ver, p = self._wlan(buf, p, end, frame)
        else:
            ver, p = self._ethertype(buf, p, end, ptype, frame)
        if ver < 0:
            return None
        return self._ip(buf, p, end, ver, ts, frame, outer, depth + 1)
