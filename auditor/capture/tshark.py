"""The tshark engine: the same PacketRecords, from `tshark -T fields` (slow, but knows every format).

We feed tshark the capture bytes ourselves (through its standard input), so hashing, compression
and '-' work exactly as in the fast engine, and read one tab-separated line per frame. Reassembly
is switched off so that every frame is reported with its own headers (as the fast engine sees it).
Layers: with every occurrence of a field requested, the frame's protocol path (frame.protocols)
says which ip/ipv6 occurrence belongs to which layer; the audited packet is the innermost one, or
the one before the packet an ICMP error quotes. Payload bytes come from tcp.payload and udp.payload,
kept as the fast path keeps them (``_payload``), so names from DNS, SNI and Host and the direction
evidence of DNS, NTP and DHCP payloads are the fast path's. A later IP fragment (IPv4, or IPv6 after
its fragment header) takes its ports from its datagram's first fragment in a table kept as the fast
engine keeps its own (decode.remember_fragment, fragment_ports: bounded, 30 s), and an orphan is
counted alike.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator

from auditor.capture.decode import BAD_RUN_MAX, FragTable, fragment_ports, remember_fragment
from auditor.capture.decompress import CHUNK, DECOMPRESS_ERRORS
from auditor.capture.foreign import describe
from auditor.capture.info import InputInfo, ReadStats
from auditor.capture.kernel import KEEP_FIRST
from auditor.capture.pcapfile import PCAP_MAGICS, PCAPNG_MAGIC
from auditor.capture.source import Source
from auditor.errors import CaptureError
from auditor.model import PAYLOAD_SNAP, PacketRecord, QuotedPacket, TunnelInfo, make_record

FIELDS = (
    "frame.number", "frame.time_epoch", "frame.protocols",
    "ip.src", "ip.dst", "ip.proto", "ip.len", "ip.hdr_len", "ip.id", "ip.flags.mf", "ip.frag_offset", "ip.ttl",
    "ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.plen", "ipv6.hlim", "ipv6.fraghdr.offset", "ipv6.fraghdr.more",
    "ipv6.fraghdr.ident", "ipv6.fraghdr.nxt", "data.len",
    "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len", "tcp.hdr_len",
    "tcp.checksum.status",
    "udp.srcport", "udp.dstport", "udp.length", "udp.checksum.status",
    "icmp.type", "icmp.code", "icmp.ident", "icmpv6.type", "icmpv6.code", "icmpv6.echo.identifier",
    "vxlan.vni", "geneve.vni", "gre.key", "erspan.spanid",
    "tcp.payload", "udp.payload",
)
_IX = {name: i for i, name in enumerate(FIELDS)}

PREFS = (
    "ip.defragment:FALSE", "ipv6.defragment:FALSE", "tcp.desegment_tcp_streams:FALSE",
    "tcp.analyze_sequence_numbers:FALSE", "tcp.relative_sequence_numbers:FALSE",
    "tcp.check_checksum:TRUE", "udp.check_checksum:TRUE",
)
_LINK_NAMES = {"eth": "EN10MB", "sll": "LINUX_SLL", "raw": "RAW", "null": "NULL", "loop": "LOOP"}
_TUNNELS = (("vxlan", "vxlan.vni"), ("geneve", "geneve.vni"), ("erspan", "erspan.spanid"), ("gre", "gre.key"))
_ICMP4_ERR = frozenset((3, 4, 5, 11, 12))
_ICMP6_ERR = frozenset((1, 2, 3, 4))


def tshark_command(extra: tuple[str, ...] = (), *, source: str = "-") -> list[str]:
    """The tshark command line that prints FIELDS of every frame of ``source`` (- for its standard input)."""
    exe = shutil.which("tshark")
    if exe is None:
        raise CaptureError("tshark: not found on PATH (needed for --engine tshark)")
    cmd = [exe, "-r", source, "-n", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
           "-E", "aggregator=,", "-E", "quote=n"]
    for p in PREFS:
        cmd += ["-o", p]
    for f in FIELDS:
        cmd += ["-e", f]
    return cmd + list(extra)


def _ip_bytes(text: str) -> bytes:
    import ipaddress

    return ipaddress.ip_address(text).packed


def _ints(s: str) -> list[int]:
    return [int(x, 0) for x in s.split(",") if x]


def read_tshark(path: str, index: int, info: InputInfo, stats: ReadStats,
                report: Callable[[int], None], *, foreign: str | None = None,
                src: Source | None = None) -> Iterator[PacketRecord]:
    """The PacketRecords of one input, from tshark. ``foreign``: the input is a file in that format
    (capture/foreign.py), which tshark reads itself while this process hashes the stored bytes;
    otherwise tshark reads the pcap/pcapng bytes this process feeds it (decompressed, hashed).
    ``src``: the input already opened (a pipe, whose first bytes were looked at)."""
    if foreign is not None:
        src = Source(path, stored=True)
        first = b""
        info.format = foreign
        info.compression = src.compression
        info.warnings.append(f"{describe(foreign)} capture: read through tshark (the fast reader reads pcap "
                             f"and pcapng, and editcap could not copy this one into pcapng), at tshark's speed")
    else:
        if src is None:
            src = Source(path)
        info.compression = src.compression
        try:
            first = src.read(CHUNK)
        except DECOMPRESS_ERRORS as e:
            src.close_quietly()
            raise CaptureError(f"{path}: {src.compression} data cannot be decompressed: {e}") from e
        if first[:4] not in PCAP_MAGICS and first[:4] != PCAPNG_MAGIC:
            src.close_quietly()
            raise CaptureError(f"{path}: not a pcap or pcapng file (magic 0x{first[:4].hex()})")
        info.format = "pcapng" if first[:4] == PCAPNG_MAGIC else "pcap"
    proc = subprocess.Popen(tshark_command(source="-" if foreign is None else path),
                            stdin=subprocess.PIPE if foreign is None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    stdin, stderr_pipe = proc.stdin, proc.stderr
    errors: list[str] = []

    def feed() -> None:
        data = first
        try:
            while data:
                if stdin is not None:
                    stdin.write(data)
                data = src.read(CHUNK)
        except DECOMPRESS_ERRORS as e:  # includes BrokenPipeError (tshark stopped reading)
            errors.append(str(e))
        finally:
            if stdin is not None:
                with contextlib.suppress(OSError):
                    stdin.close()

    stderr_lines: list[bytes] = []
    t_err = threading.Thread(target=lambda: stderr_lines.extend(stderr_pipe), daemon=True)
    t_in = threading.Thread(target=feed, daemon=True)
    t_err.start()
    t_in.start()
    frames = records = run = 0
    gave_up = False
    frags: FragTable = {}
    complete = False
    try:
        for raw in proc.stdout:
            cols = raw.decode("utf-8", "replace").rstrip("\n").split("\t")
            if len(cols) < len(FIELDS):
                continue
            frames += 1
            ts = float(cols[1] or 0)
            if info.first_ts is None or ts < info.first_ts:
                info.first_ts = ts
            if info.last_ts is None or ts > info.last_ts:
                info.last_ts = ts
            protos = cols[2].split(":")
            link = _LINK_NAMES.get(protos[0], protos[0].upper())
            info.link_types[link] = info.link_types.get(link, 0) + 1
            try:
                rec = _record(cols, protos, index, frames, ts, stats, frags)
            except (ValueError, IndexError, KeyError):
                # tshark printed fields we cannot read as a packet (odd dissections of malformed
                # frames): counted like any malformed packet, never fatal.
                stats.count_malformed("tshark-unreadable-fields", index, frames)
                rec = None
            if frames % 4096 == 0:
                report(src.raw.nread)
            if rec is not None:
                records += 1
                run = 0
                yield rec
            elif len(protos) <= 1:  # nothing past the link layer: junk (zeros after the last record?)
                run += 1
                if run >= BAD_RUN_MAX:
                    gave_up = True
                    proc.kill()  # the rest is not read (the fast reader gives up alike: decode.BadRun)
                    break
            else:
                run = 0
        proc.wait()
        t_in.join()
        t_err.join()
        complete = True
    finally:
        if not complete:
            proc.kill()
            proc.wait()
        info.packets = frames
        stats.frames += frames
        stats.records += records
        if complete:
            info.sha256 = src.finish()
            info.size = src.raw.stored if src.once else src.size
        else:
            src.close_quietly()
    if gave_up:
        info.truncated = True
        info.warnings.append(f"gave up after {run} records in a row with nothing past the link layer (junk such "
                             f"as zeros after the last good record?); the rest is not read: stopped after "
                             f"frame {frames}")
        return
    msg = b"".join(stderr_lines).decode("utf-8", "replace").strip().replace("\n", " ")
    msg = " ".join(w for w in msg.split() if w)
    if "appears to have been cut short" in msg:
        info.truncated = True
        info.warnings.append(f"file ends inside a record: stopped after frame {frames}")
    elif proc.returncode not in (0, None) or errors:
        info.truncated = True
        info.warnings.append(f"tshark stopped after frame {frames}: {msg or '; '.join(errors)}"[:300])


def _payload(column: str, length: int, whole: bool, tcp: bool) -> bytes:
    """The record's payload bytes from tshark's hex of them, as the kernel keeps them
    (capture/kernel.py): at most PAYLOAD_SNAP bytes, and of a TCP segment that is neither DNS (``whole``)
    nor starts like a TLS handshake or an HTTP request (kernel.KEEP_FIRST), the first byte only. The
    audited layer is the innermost: its payload, when it has one, is the last occurrence."""
    if length <= 0 or not column:
        return b""
    text = column.rpartition(",")[2]
    if tcp and not whole:
        first = bytes.fromhex(text[:2])
        if first and first[0] not in KEEP_FIRST:
            return first
    return bytes.fromhex(text[:2 * PAYLOAD_SNAP])


def _record(cols: list[str], protos: list[str], ii: int, frame: int, ts: float, stats: ReadStats,
            frags: FragTable) -> PacketRecord | None:
    def col(name: str) -> list[str]:
        v = cols[_IX[name]]
        return v.split(",") if v else []

    layers = [i for i, p in enumerate(protos) if p in ("ip", "ipv6")]
    if not layers:
        stats.non_ip += 1
        return None
    v4 = {k: col(k) for k in ("ip.src", "ip.dst", "ip.proto", "ip.len", "ip.hdr_len", "ip.id", "ip.flags.mf",
                                 "ip.frag_offset", "ip.ttl")}
    v6 = {k: col(k) for k in ("ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.plen", "ipv6.hlim")}
    n4 = n6 = 0
    found: list[tuple[int, dict[str, str]]] = []  # (position in protos, fields of that IP layer)
    for pos in layers:
        if protos[pos] == "ip":
            d = {k.split(".", 1)[1]: (v[n4] if n4 < len(v) else "") for k, v in v4.items()}
            n4 += 1
            d["v"] = "4"
        else:
            d = {k.split(".", 1)[1]: (v[n6] if n6 < len(v) else "") for k, v in v6.items()}
            n6 += 1
            d["v"] = "6"
        found.append((pos, d))
    quoted: QuotedPacket | None = None
    audited = len(found) - 1
    if len(found) > 1 and any(p in ("icmp", "icmpv6") for p in protos[found[-2][0]:found[-1][0]]):
        audited = len(found) - 2  # the last IP header is the one an ICMP error quotes
    pos, d = found[audited]
    if not d.get("src"):
        return None
    src, dst = _ip_bytes(d["src"]), _ip_bytes(d["dst"])
    v6p = d["v"] == "6"
    ip_len = (40 + int(d["plen"] or 0)) if v6p else int(d["len"] or 0)
    ttl = int((d.get("hlim") if v6p else d.get("ttl")) or -1)
    after = protos[pos + 1:]
    proto_name = next((p for p in after if p in ("tcp", "udp", "icmp", "icmpv6")), "")
    proto = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}.get(proto_name, 0)
    if not proto:
        nxt = d.get("nxt") if v6p else d.get("proto")
        proto = int(nxt or 0)
    tunnel = None
    if audited > 0:
        kind, key = next(((k, f) for k, f in _TUNNELS if k in protos), ("gre", "gre.key"))
        o = found[0][1]
        vals = _ints(cols[_IX[key]])
        if kind == "erspan":
            kind = "erspan2" if "gre" in protos else kind
        tunnel = TunnelInfo(kind, _ip_bytes(o["src"]), _ip_bytes(o["dst"]), vals[0] if vals else 0)
    fragment = False
    fkey = None
    later = False
    if v6p:
        # The audited layer's fragment header, if it has one: the n-th of the frame's, as many come
        # before it in the protocol path (its fields hold one value per fragment header).
        end = next((i for i in range(pos + 1, len(protos)) if protos[i] in ("ip", "ipv6")), len(protos))
        if "ipv6.fraghdr" in protos[pos + 1:end]:
            n = protos[:end].count("ipv6.fraghdr") - 1
            offs, more = col("ipv6.fraghdr.offset"), col("ipv6.fraghdr.more")
            idents, nxts = col("ipv6.fraghdr.ident"), col("ipv6.fraghdr.nxt")
            if n < len(offs) and n < len(idents) and n < len(nxts):
                later = offs[n] not in ("", "0")
                fragment = later or (n < len(more) and more[n] in ("1", "True"))
                follows = int(nxts[n] or 0)
                if fragment:
                    fkey = (src, dst, int(idents[n] or "0", 0), follows)
                if later:
                    proto = follows  # what follows the fragment header (not dissected past it)
    elif d.get("flags.mf") in ("1", "True") or d.get("frag_offset") not in ("", "0"):
        fragment = True
        fkey = (src, dst, int(d["id"] or "0", 0), proto)
        later = d.get("frag_offset") not in ("", "0")
    if later and fkey is not None:
        # A later fragment: the ports of its datagram's first fragment, as the fast engine finds them.
        ports = fragment_ports(frags, fkey, ts)
        if ports is None:
            stats.count_malformed("fragment-orphan", ii, frame)
            ports = (0, 0)
        size = (_ints(cols[_IX["data.len"]]) or [0])[-1] if v6p else ip_len - int(d["hdr_len"] or 20)
        return make_record(ii, frame, ts, src, dst, proto, ip_len, ports[0], ports[1],
                           payload_len=max(size, 0), fragment=True, tunnel=tunnel, ttl=ttl)
    if proto_name == "tcp":
        sport, dport = _ints(cols[_IX["tcp.srcport"]])[-1], _ints(cols[_IX["tcp.dstport"]])[-1]
        lens = _ints(cols[_IX["tcp.len"]])
        if lens:
            plen = lens[-1]
        elif fragment:
            # A datagram's first fragment: tshark leaves tcp.len out; the fast engine counts the bytes
            # after the TCP header in this fragment, by the IP lengths (an IPv6 fragment header only).
            below = int(d["hdr_len"] or 20) if not v6p else 48
            plen = max(ip_len - below - (_ints(cols[_IX["tcp.hdr_len"]]) or [20])[-1], 0)
        else:
            plen = 0
        bad = (_ints(cols[_IX["tcp.checksum.status"]]) or [2])[-1] == 0
        if fkey is not None:
            remember_fragment(frags, fkey, sport, dport, ts)
        return make_record(ii, frame, ts, src, dst, 6, ip_len, sport, dport,
                           (_ints(cols[_IX["tcp.flags"]]) or [0])[-1] & 0xFF,
                           (_ints(cols[_IX["tcp.seq_raw"]]) or [0])[-1],
                           (_ints(cols[_IX["tcp.ack_raw"]]) or [0])[-1],
                           plen, _payload(cols[_IX["tcp.payload"]], plen, 53 in (sport, dport), True),
                           checksum_bad=bad, tunnel=tunnel, fragment=fragment, ttl=ttl)
    if proto_name == "udp":
        sport, dport = _ints(cols[_IX["udp.srcport"]])[-1], _ints(cols[_IX["udp.dstport"]])[-1]
        ulen = (_ints(cols[_IX["udp.length"]]) or [8])[-1]
        bad = (_ints(cols[_IX["udp.checksum.status"]]) or [2])[-1] == 0
        if fkey is not None:
            remember_fragment(frags, fkey, sport, dport, ts)
        return make_record(ii, frame, ts, src, dst, 17, ip_len, sport, dport, payload_len=max(ulen - 8, 0),
                           payload=_payload(cols[_IX["udp.payload"]], ulen - 8, True, False),
                           checksum_bad=bad, tunnel=tunnel, fragment=fragment, ttl=ttl)
    if proto_name in ("icmp", "icmpv6"):
        pre = "icmpv6" if proto_name == "icmpv6" else "icmp"
        t = (_ints(cols[_IX[f"{pre}.type"]]) or [-1])[0]
        c = (_ints(cols[_IX[f"{pre}.code"]]) or [-1])[0]
        ident = (_ints(cols[_IX["icmpv6.echo.identifier" if pre == "icmpv6" else "icmp.ident"]]) or [0])[0]
        if audited == len(found) - 2 and t in (_ICMP6_ERR if pre == "icmpv6" else _ICMP4_ERR):
            q = found[-1][1]
            qproto = int((q.get("nxt") if q["v"] == "6" else q.get("proto")) or 0)
            qs = qd = 0
            qname = {6: "tcp", 17: "udp"}.get(qproto)
            if qname and f"{qname}" in protos[found[-1][0]:]:
                qs = (_ints(cols[_IX[f"{qname}.srcport"]]) or [0])[-1]
                qd = (_ints(cols[_IX[f"{qname}.dstport"]]) or [0])[-1]
            if q.get("src"):
                quoted = QuotedPacket(_ip_bytes(q["src"]), _ip_bytes(q["dst"]), qproto, qs, qd)
            ident = 0
        hdr = 40 if v6p else int(d.get("hdr_len") or 20)
        return make_record(ii, frame, ts, src, dst, proto, ip_len, payload_len=max(ip_len - hdr - 8, 0),
                           icmp_type=t, icmp_code=c, icmp_id=ident, quoted=quoted, tunnel=tunnel,
                           fragment=fragment, ttl=ttl)
    return make_record(ii, frame, ts, src, dst, proto, ip_len, tunnel=tunnel, fragment=fragment, ttl=ttl)
