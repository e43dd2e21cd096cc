"""Tunnels for the general decoder (capture/decode.py): VXLAN, Geneve, GRE (with ERSPAN, WCCP and
Aruba's 802.11-in-GRE), IP-in-IP, PIM registers and IPComp. The inner packet is audited, with the
outermost tunnel recorded on its record (TunnelInfo), to MAX_TUNNEL_DEPTH levels."""

from __future__ import annotations

import struct
import zlib

from auditor.capture.kernel import ETH_IPV4, ETH_IPV6, VXLAN_PORT
from auditor.capture.link import ARUBA_WLAN, LinkLayers
from auditor.model import PacketRecord, TunnelInfo

_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from

MAX_TUNNEL_DEPTH = 4
# An IPComp (RFC 3173) payload inflates to at most one IP datagram; more is not a packet.
IPCOMP_MAX = 65535


class Tunnels(LinkLayers):
    """Decapsulation; the IP and transport layers it hands the inner packet to are the Decoder's."""

    def _ip(self, buf: bytes, p: int, end: int, ver: int, ts: float, frame: int,
            tunnel: TunnelInfo | None, depth: int) -> PacketRecord | None:
        raise NotImplementedError

    def _transport(self, buf: bytes, q: int, ipend: int, complete: bool, proto: int, src: bytes, dst: bytes,
                   ip_len: int, l4len: int, ts: float, frame: int, tunnel: TunnelInfo | None, depth: int,
                   fkey: tuple[bytes, bytes, int, int] | None, first: bool, v6: bool) -> PacketRecord | None:
        raise NotImplementedError

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
            return self._decap("gre", buf, p, end, ARUBA_WLAN, src, dst, key, ts, frame, tunnel, depth)
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
        elif ptype == ARUBA_WLAN:
            ver, p = self._wlan(buf, p, end, frame)
        else:
            ver, p = self._ethertype(buf, p, end, ptype, frame)
        if ver < 0:
            return None
        return self._ip(buf, p, end, ver, ts, frame, outer, depth + 1)
