"""Link-layer headers for the general decoder (capture/decode.py): every link type it reads, VLAN
and provider tags, MPLS, MACsec, PPP(oE), 802.11 and the capture headers that wrap a frame (PPI,
PKTAP, NFLOG, Juniper, radiotap), down to the IP header. The common link types also have the kernel's
fast path (capture/kernel.py); this is where they go when the kernel is in doubt."""

from __future__ import annotations

import struct

from auditor.capture.info import ReadStats
from auditor.capture.kernel import AF_INET6, ETH_IPV4, ETH_IPV6, RAW_LINKTYPES

_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_U32LE = struct.Struct("<I").unpack_from
_U16LE = struct.Struct("<H").unpack_from
# Apple PKTAP header (host byte order, little-endian in practice): length, record type, inner DLT.
_PKTAP = struct.Struct("<III").unpack_from

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
# GRE protocol type of Aruba's 802.11-in-GRE (its range starts here), as the tunnels' payload kind.
ARUBA_WLAN = 0x8200
# Link-layer header types tried in LinkLayers._link, by LINKTYPE_ value.
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


class Counting:
    """What every layer of the general decoder counts with: the shared ReadStats, per kind and with
    an example frame. ``bad`` (malformed, with the run that ends an input) is the Decoder's."""

    stats: ReadStats
    ii: int

    def bad(self, kind: str, frame: int) -> None:
        raise NotImplementedError

    def unsup(self, kind: str, frame: int) -> None:
        u = self.stats.unsupported
        u[kind] = u.get(kind, 0) + 1
        self.stats.examples.setdefault(kind, (self.ii, frame))

    def non_ip(self, kind: str, frame: int) -> None:
        self.stats.non_ip += 1
        self.unsup(kind, frame)


class LinkLayers(Counting):
    """Frames -> (IP version 4 or 6, offset of the IP header), or (-1, 0) when counted."""

    def _link(self, buf: bytes, off: int, end: int, frame: int, lt: int) -> tuple[int, int]:
        """Returns (4 or 6, offset of the IP header), or (-1, 0) when the frame was counted."""
        n = end - off
        if lt == 1:
            if n < 14:
                self.bad("eth-short", frame)
                return -1, 0
            return self._ethertype(buf, off + 14, end, _U16(buf, off + 12)[0], frame)
        if lt in RAW_LINKTYPES:
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
            if fam in AF_INET6:
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

