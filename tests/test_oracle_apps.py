"""tshark's dissectors as the oracle for application identification (SPEC §6).

For each TCP/UDP conversation of a capture, the first payload of each direction (at most APP_SNAP bytes)
goes through ``identify_connection``; tshark dissects the same frames one by one (TCP reassembly off,
as we see them) and names its protocols in ``frame.protocols``. Where tshark names one of ours, we must
agree or not claim anything; a disagreement is only allowed in KNOWN_DISAGREEMENTS, by cause
(docs/oracle.md). The whole corpus, with counts per protocol: ``python bench/bench_oracle.py``.

A second test writes every signature's test payload from tests/test_apps.py into a capture, on the
protocol's registered port, and asks tshark to name it: the bytes our tests write from the published
framing are what Wireshark's dissectors take them for too (TDS and CLDAP, which the corpus lacks,
included). ICA and CGP have no Wireshark dissector: tests/test_apps.py alone checks them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from auditor.apps import APP_SNAP, identify_connection

TSHARK = shutil.which("tshark")
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

# tshark protocol names (frame.protocols) -> ours. 'nbss' is the NetBIOS session service that carries SMB
# on 139 (its SESSION REQUEST is the first payload there); mDNS and LLMNR use the DNS message format. A
# NetBIOS datagram (nbdgm) often carries an SMB mailslot too, past the bytes kept: tshark names both.
TSHARK_TO_OURS = {
    "tls": "tls", "ssl": "tls", "dtls": "dtls", "quic": "quic", "http": "http", "http2": "http",
    "websocket": "websocket", "ssh": "ssh", "rdp": "rdp", "smb": "smb", "smb2": "smb", "nbss": "smb",
    "dcerpc": "dcerpc", "ldap": "ldap", "cldap": "cldap", "kerberos": "kerberos", "dns": "dns", "mdns": "dns",
    "llmnr": "dns", "nbns": "netbios-ns", "nbdgm": "netbios-dgm", "ntp": "ntp", "tds": "tds", "radius": "radius",
    "snmp": "snmp", "syslog": "syslog", "tftp": "tftp", "dhcp": "dhcp", "bootp": "dhcp",
}
# Two names for one exchange: tshark calls the WebSocket handshake's frames http.
SAME = {("websocket", "http"), ("http", "websocket")}

FIELDS = ("frame.number", "frame.protocols", "ip.src", "ipv6.src", "tcp.srcport", "tcp.dstport", "udp.srcport",
          "udp.dstport", "tcp.stream", "udp.stream", "tcp.payload", "udp.payload")
# Every frame dissected alone, as we see it: no TCP reassembly, no IP defragmentation.
TSHARK_PREFS = {"tcp.desegment_tcp_streams": "FALSE", "ip.defragment": "FALSE", "ipv6.defragment": "FALSE"}
TSHARK_ARGS = ("-n", *(a for k, v in TSHARK_PREFS.items() for a in ("-o", f"{k}:{v}")))


@dataclass
class Side:
    frame: int
    payload: bytes
    names: frozenset[str]
    """Our names for the protocols tshark dissected above the transport in this frame."""


@dataclass
class Conversation:
    proto: int
    orig_port: int
    resp_port: int
    orig_key: tuple[str, int]
    orig: Side | None = None
    resp: Side | None = None


@dataclass
class Outcome:
    file: str
    frame: int
    ours: str | None
    theirs: frozenset[str]
    detail: str = ""

    @property
    def kind(self) -> str:
        if self.ours is None:
            return "we-unknown" if self.theirs else "neither"
        if not self.theirs:
            return "tshark-unknown"
        if self.ours in self.theirs or any((self.ours, t) in SAME for t in self.theirs):
            return "agree"
        return "disagree"


def names_above_transport(protocols: str) -> frozenset[str]:
    """Our names for what tshark dissected above the last TCP/UDP layer of a frame."""
    chain = protocols.split(":")
    last = max((i for i, p in enumerate(chain) if p in ("tcp", "udp")), default=-1)
    return frozenset(TSHARK_TO_OURS[p] for p in chain[last + 1:] if p in TSHARK_TO_OURS)


def _last(value: str) -> str:
    return value.rsplit(",", 1)[-1]


def conversations(rows: Iterable[list[str]]) -> Iterator[Conversation]:
    """The first payload of each direction of each TCP/UDP stream, from tshark field rows (FIELDS order).
    The stream's first sender is its initiator; frames with ICMP (an error quoting a datagram) are
    left out."""
    table: dict[tuple[int, str], Conversation] = {}
    for row in rows:
        if len(row) < len(FIELDS):
            continue
        number, protocols, ip4, ip6, tsport, tdport, usport, udport, tstream, ustream, tpay, upay = row[:12]
        if "icmp" in protocols:
            continue
        if tstream:
            proto, stream, sport, dport, payload = 6, _last(tstream), _last(tsport), _last(tdport), _last(tpay)
        elif ustream:
            proto, stream, sport, dport, payload = 17, _last(ustream), _last(usport), _last(udport), _last(upay)
        else:
            continue
        if not sport.isdigit() or not dport.isdigit():
            continue
        src = (_last(ip6) if protocols.rfind("ipv6") > protocols.rfind(":ip:") else _last(ip4)) or _last(ip4 or ip6)
        key = (src, int(sport))
        conv = table.get((proto, stream))
        if conv is None:
            conv = table[(proto, stream)] = Conversation(proto, int(sport), int(dport), key)
        if not payload:
            continue
        try:
            data = bytes.fromhex(payload.replace(":", ""))[:APP_SNAP]
        except ValueError:
            continue
        side = Side(int(number), data, names_above_transport(protocols))
        if key == conv.orig_key:
            if conv.orig is None:
                conv.orig = side
        elif conv.resp is None:
            conv.resp = side
    yield from table.values()


def tshark_rows(path: Path, timeout: float = 60) -> list[list[str]]:
    assert TSHARK is not None
    cmd = [TSHARK, *TSHARK_ARGS, "-r", str(path), "-T", "fields", "-E", "separator=\t"]
    for name in FIELDS:
        cmd += ["-e", name]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="replace", check=False)
    return [line.split("\t") for line in done.stdout.splitlines()]


def outcomes(name: str, convs: Iterable[Conversation]) -> Iterator[Outcome]:
    """Our identification of each conversation with a payload, beside tshark's names for the same frames."""
    for c in convs:
        if c.orig is None and c.resp is None:
            continue
        found = identify_connection(c.proto, c.orig_port, c.resp_port,
                                    c.orig.payload if c.orig else None, (0, c.orig.frame if c.orig else 0),
                                    c.resp.payload if c.resp else None, (0, c.resp.frame if c.resp else 0))
        theirs = (c.orig.names if c.orig else frozenset()) | (c.resp.names if c.resp else frozenset())
        frame = (c.orig or c.resp).frame  # type: ignore[union-attr]
        if found is not None:
            frame = found.frame[1]
        yield Outcome(name, frame, found.protocol if found else None, theirs, found.detail if found else "")


@dataclass
class Tally:
    """Per protocol (ours where we named one, else tshark's): agree / we-unknown / tshark-unknown /
    disagree counts, and the outcomes that are not agreements, by kind."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    others: dict[str, list[Outcome]] = field(default_factory=dict)

    @property
    def disagreements(self) -> list[Outcome]:
        return self.others.get("disagree", [])

    def add(self, o: Outcome) -> None:
        kind = o.kind
        if kind == "neither":
            return
        keys = [o.ours or ""] if kind in ("agree", "tshark-unknown") else sorted(o.theirs)
        for k in keys:
            self.counts.setdefault(k, Counter())[kind] += 1
        if kind != "agree":
            self.others.setdefault(kind, []).append(o)


# --- the test: a fixed subset of the corpus ------------------------------------------------------------

# Chosen with a one-time `tshark -T fields -e frame.protocols` scan of the corpus for files carrying the
# protocols we identify (docs/oracle.md), small enough for a few seconds of tshark.
SUBSET = (
    "tcpdump/tests/ntp.pcap",
    "tcpdump/tests/quic_handshake.pcap",
    "tcpdump/tests/RADIUS-RFC5176-2.pcap",
    "tcpdump/tests/syslog_udp.pcap",
    "tcpdump/tests/tftp.pcap",
    "tcpdump/tests/nbns-valgrind.pcap",
    "zeek/testing/btest/Traces/dce-rpc/bind-ack-no-inband-null.pcap",
    "zeek/testing/btest/Traces/dhcp/dhcp_discover_param_req_and_client_id.pcap",
    "zeek/testing/btest/Traces/dns/mdns.pcap",
    "zeek/testing/btest/Traces/http/get-to-ssh-server.pcap",
    "zeek/testing/btest/Traces/http/http-single-conn-22.pcap",
    "zeek/testing/btest/Traces/krb/kerberos_tso.pcapng",
    "zeek/testing/btest/Traces/ldap/aduser1.pcap",
    "zeek/testing/btest/Traces/ldap/simpleauth.pcap",
    "zeek/testing/btest/Traces/ntp/ntpmode67.pcap",
    "zeek/testing/btest/Traces/quic/quicdoq.pcap",
    "zeek/testing/btest/Traces/quic/quicv2-http3-443.pcap",
    "zeek/testing/btest/Traces/rdp/rdp-to-ssl.pcap",
    "zeek/testing/btest/Traces/smb/cifs_negotiate_lanman.pcap",
    "zeek/testing/btest/Traces/smb/smb3_negotiate_context.pcap",
    "zeek/testing/btest/Traces/snmp/snmpv2_get.pcap",
    "zeek/testing/btest/Traces/tls/dtls13-wolfssl.pcap",
    "zeek/testing/btest/Traces/tls/tls13_psk_succesfull.pcap",
    "zeek/testing/btest/Traces/tunnels/Teredo.pcap",
    "zeek/testing/btest/Traces/websocket/two-binary-fragments.pcap",
    "zeek/testing/btest/Traces/wikipedia-filtered-plus-udp.pcap",
)

# (file, frame) -> why tshark and we name different protocols for the same bytes.
KNOWN_DISAGREEMENTS: dict[tuple[str, int], str] = {
    ("zeek/testing/btest/Traces/http/http-single-conn-22.pcap", 4):
        "an HTTP request sent to port 22: tshark dissects tcp/22 as SSH by port, the bytes are HTTP",
    ("zeek/testing/btest/Traces/quic/quicdoq.pcap", 1):
        "DNS over QUIC on udp/853: tshark dissects 853 as DTLS (DNS over DTLS) by port, the bytes are a QUIC "
        "v1 Initial",
}

# Protocols the subset must show us agreeing with tshark on: the test fails if identification is broken.
MUST_AGREE = ("dcerpc", "dhcp", "dns", "dtls", "http", "kerberos", "ldap", "netbios-dgm", "netbios-ns", "ntp",
              "quic", "radius", "rdp", "smb", "snmp", "ssh", "syslog", "tftp", "tls", "websocket")

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="public capture corpus not present")
needs_tshark = pytest.mark.skipif(TSHARK is None and os.environ.get("CI") != "true",
                                  reason="tshark not installed (CI installs it)")


@pytest.mark.tshark
@pytest.mark.corpus
@needs_tshark
@needs_corpus
def test_identification_agrees_with_tshark_on_the_corpus_subset() -> None:
    tally = Tally()
    for name in SUBSET:
        for o in outcomes(name, conversations(tshark_rows(CORPUS / name))):
            tally.add(o)
    unexplained = [o for o in tally.disagreements if (o.file, o.frame) not in KNOWN_DISAGREEMENTS]
    assert not unexplained, "\n".join(f"{o.file} frame {o.frame}: ours {o.ours} ({o.detail!r}), tshark "
                                      f"{sorted(o.theirs)}" for o in unexplained)
    stale = set(KNOWN_DISAGREEMENTS) - {(o.file, o.frame) for o in tally.disagreements}
    assert not stale, f"known disagreements that no longer occur: {sorted(stale)}"
    for proto in MUST_AGREE:
        assert tally.counts.get(proto, Counter())["agree"] > 0, (proto, tally.counts.get(proto))
    # Where tshark names one of ours, we name the same nearly always (the rest: malformed or cut payloads
    # tshark still labels by port, docs/oracle.md).
    total: Counter[str] = Counter()
    for c in tally.counts.values():
        total.update(c)
    named = total["agree"] + total["we-unknown"] + total["disagree"]
    assert total["agree"] >= 0.9 * named, dict(total)


# --- the signatures' own test payloads, dissected by tshark ----------------------------------------------

# Where each protocol's test payload is sent, so that tshark's port-registered dissectors get their chance.
STANDARD_PORT = {"ica": 1494, "cgp": 2598, "tls": 443, "dtls": 443, "quic": 443, "http": 80, "websocket": 80,
                 "ssh": 22, "rdp": 3389, "smb": 445, "dcerpc": 135, "ldap": 389, "cldap": 389, "kerberos": 88,
                 "dns": 53, "netbios-ns": 137, "netbios-dgm": 138, "ntp": 123, "tds": 1433, "radius": 1812,
                 "snmp": 161, "syslog": 514, "tftp": 69, "dhcp": 67}
SPECIAL_PORT = {"nbss-session-request": 139, "mdns-query": 5353, "mdns-announcement": 5353, "dhcp-offer": 68}
# Test payloads tshark does not name; every other one it must name as we do (among them TDS and CLDAP,
# which the corpus does not carry).
TSHARK_NAMES_NOTHING = {
    "ica-detect": "no ICA dissector in Wireshark",
    "ica-detect-then-more": "no ICA dissector in Wireshark",
    "cgp-header": "no CGP dissector in Wireshark",
    "rdp-cr-bare": "an X.224 Connection Request without cookie or RDP negotiation: tshark shows cotp only",
    "syslog-tcp-octet-counting": "tshark 4.0 registers syslog on udp/514 only",
}


@pytest.mark.tshark
@needs_tshark
def test_tshark_names_the_test_payloads_as_we_do(tmp_path: Path) -> None:
    from tests import capture_factory as cf
    from tests.test_apps import POSITIVE

    frames: list[bytes] = []
    expect: dict[int, str] = {}  # frame number (1-based) of each case's payload -> case id
    for n, (case, transport, payload, protocol, _) in enumerate(POSITIVE):
        client, server, cport = f"10.1.{n // 200}.{n % 200 + 1}", "10.2.0.1", 40000 + n
        port = SPECIAL_PORT.get(case, STANDARD_PORT[protocol])
        if transport == 6:
            frames += [cf.eth_ipv4_tcp(client, server, cport, port, "S", seq=1000),
                       cf.eth_ipv4_tcp(server, client, port, cport, "SA", seq=5000, ack=1001),
                       cf.eth_ipv4_tcp(client, server, cport, port, "A", seq=1001, ack=5001),
                       cf.eth_ipv4_tcp(client, server, cport, port, "PA", payload, seq=1001, ack=5001)]
        else:
            sport = 68 if protocol == "dhcp" and case != "dhcp-offer" else cport
            frames.append(cf.eth_ipv4_udp(client, server, sport, port, payload))
        expect[len(frames)] = case
    path = cf.write_pcap(tmp_path / "signatures.pcap", frames)
    names = {int(row[0]): names_above_transport(row[1]) for row in tshark_rows(path) if len(row) > 1}
    cases = {c[0]: c for c in POSITIVE}
    wrong, unnamed = [], []
    for frame, case in expect.items():
        theirs, ours = names.get(frame, frozenset()), cases[case][3]
        if theirs and ours not in theirs and not any((ours, t) in SAME for t in theirs):
            wrong.append((case, ours, sorted(theirs)))
        if case not in TSHARK_NAMES_NOTHING and not theirs:
            unnamed.append((case, ours))
        if case in TSHARK_NAMES_NOTHING and theirs:
            unnamed.append((case, "stale: tshark names", sorted(theirs)))
    assert not wrong, wrong
    assert not unnamed, unnamed
