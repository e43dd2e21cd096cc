"""A roles.yaml draft from what a capture shows (SPEC §7): `pcap-audit roles suggest`.

Pure: flows and name evidence in (auditor/audit.py ``collect``), a Draft out, rendered as text. Nothing
here opens a file or prints.

Evidence comes from listeners: a host is given a role for what it *answered* as the responder of a
flow (the ICA banner on 1494, HTTP for /Citrix/CdsController/IRegistrar, FlexLM on 27000...), and for
a few requests only a role's clients send (a VDA registering). A port is a claim and the payload is
the evidence (SPEC §6): an answer whose payload the core recognised as the role's protocol is
``high`` confidence, an answer on the role's port whose payload was not recognised is ``medium``
(and says so), a hint (a name containing "storefront", a licence console port) is ``low``. A payload
recognised as another protocol is no evidence at all. A host with no evidence is not listed.

Hosts that only initiate, and talk to VDAs or StoreFront, become User Device; PVS streaming clients
become Target Device; each group is written as the narrowest CIDRs that swallow no listener and no
other entry (roles_lint would call that an overlap), never wider than /16 (IPv6: /64).

Every string out of the capture (names, request lines) is hostile: comments carry it as printable
ASCII only, bounded (a YAML comment ends at any line break, and YAML counts U+0085, U+2028 and U+2029
as line breaks too).
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from auditor.model import Flow
from auditor.roles import RoleEntry, name_matches, name_specificity

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Confidence(enum.IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        return self.name.lower()


CONFIDENCE_HELP = {
    Confidence.HIGH: "the payload showed the role's protocol (a banner, a request path, a protocol answer)",
    Confidence.MEDIUM: "an answer on the role's port whose payload was not recognised (port only)",
    Confidence.LOW: "a hint: a host name, a console port, or a role that hosts of this kind usually hold",
}

# Canonical role names (rules/roles.yaml). A catalog without one of them skips its rules.
VDA = "Virtual Delivery Agent"
DDC = "Delivery Controller"
STA = "Secure Ticketing Authority"
CLOUD_CONNECTOR = "Cloud Connector"
STOREFRONT = "StoreFront Server"
LICENSE = "Citrix License Server"
SQL = "Microsoft SQL Server"
DC = "Domain Controller"
LDAP = "LDAP Server"
DNS = "DNS Server"
NTP = "NTP Server"
PVS = "Provisioning Server"
TFTP = "TFTP Server"
TARGET = "Target Device"
NSIP = "NetScaler NSIP"
SNIP = "NetScaler SNIP"
CLOUD = "Citrix Cloud"
USER = "User Device"

ORDER = (DDC, STA, CLOUD_CONNECTOR, STOREFRONT, VDA, LICENSE, SQL, PVS, TFTP, NSIP, SNIP, DC, LDAP, DNS, NTP,
         CLOUD, TARGET, USER)
"""Roles in the order the draft lists them (roles from catalog host names follow CLOUD)."""

NOT_FOUND = {
    DDC: "no HTTP answer for /Citrix/CdsController/IRegistrar, /scripts/wpnbr.dll or /scripts/ctxsta.dll "
         "(over TLS the paths cannot be seen)",
    STOREFRONT: "no HTTP answer for /Citrix/Store..., /Citrix/Roaming or /Citrix/Authentication, and no "
                "name containing 'storefront'",
    VDA: "no ICA/CGP listener on tcp 1494/2598 and no VDA registration seen",
    LICENSE: "no FlexLM listener on tcp 27000 or 7279 answered",
    SQL: "no TDS listener on tcp 1433 answered",
    DC: "no host answered both Kerberos (88) and LDAP (389/636/3268)",
    DNS: "no DNS answer on port 53",
    NTP: "no NTP answer on udp 123",
    PVS: "no PVS streaming on udp 6890-6930 answered",
    NSIP: "no HA heartbeats (udp 3003 both ways) and no NITRO request (/nitro/) seen",
    CLOUD: "no DNS answer, TLS SNI or HTTP Host named a Citrix Cloud host",
    USER: "no client-only host talking to a VDA or StoreFront",
}
"""Roles the rules look for, and why one was not found (the draft's closing comment block)."""

TEXT_MAX = 160
"""Characters of one piece of evidence in a comment at most."""
NAME_MAX = 80
"""Characters of a host name in a comment at most."""
NAMES_SHOWN = 2
EVIDENCE_SHOWN = 2
GROUP_LISTED = 4
"""Member addresses named in a grouped entry's comment."""

_HTTP_METHODS = ("GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH")
_DDC_PATHS = ("/citrix/cdscontroller/iregistrar", "/citrix/cdscontroller/iscscontroller",
              "/citrix/cdscontroller/ibrokerpeer")
_XML_PATH = "/scripts/wpnbr.dll"
_STA_PATH = "/scripts/ctxsta.dll"
_WORKER_PATH = "/citrix/cdscontroller/iworkeragent"
_SF_PATHS = ("/citrix/store", "/citrix/roaming", "/citrix/authentication")
_NITRO_PATH = "/nitro/"
_PVS_PORTS = range(6890, 6931)  # streaming 6890-6909, login and stream services up to 6930
_LDAP_PORTS = (389, 636, 3268, 3269)
_HDX_PORTS = (1494, 2598)
_USER_TARGET_PORTS = (1494, 2598, 443, 80, 8008)
_INFRA_CLIENT_PORTS = {("udp", 1812), ("udp", 1645), ("tcp", 1433), ("tcp", 27000), ("tcp", 7279)}
"""Ports only infrastructure talks to (RADIUS, SQL, licensing): their clients are not user devices."""


class NameSource(Protocol):
    """What the draft needs of auditor.names.NameEvidence."""

    def names_for(self, address: str) -> Sequence[_Named]: ...


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def source(self) -> str: ...


class Vocabulary(Protocol):
    def lookup(self, name: str) -> str | None: ...

    def expand(self, roles: Iterable[str], features: Iterable[str] | None = None) -> frozenset[str]: ...


def comment_text(text: str, limit: int = TEXT_MAX) -> str:
    """Capture text made safe for a YAML comment: printable ASCII only (everything else becomes '?',
    so no line break of any kind survives), bounded."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text[:limit + 1])
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Evidence:
    """One reason a host holds a role."""

    confidence: Confidence
    text: str
    """For a person; capture text inside it already passed through comment_text."""
    frame: tuple[int, int] = (1 << 62, 0)
    """Where to look (input index, frame); the earliest evidence is shown first among equals."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the draft: an address or a CIDR under a role."""

    role: str
    text: str
    """The address or CIDR as written."""
    confidence: Confidence
    evidence: tuple[Evidence, ...]
    """Strongest first."""
    names: tuple[str, ...] = ()
    """'vda01.corp.example (dns)', already safe for a comment."""
    members: tuple[str, ...] = ()
    """For a CIDR: the hosts that gave it."""


@dataclass(frozen=True, slots=True)
class Draft:
    entries: tuple[Entry, ...]
    not_found: tuple[tuple[str, str], ...]
    """(role, why) for the roles the rules look for and found no host for."""
    min_confidence: Confidence = Confidence.LOW
    dropped: int = 0
    """Entries left out for being below min_confidence."""

    def pairs(self) -> set[tuple[str, str]]:
        return {(e.text, e.role) for e in self.entries}


def _frame_text(frame: tuple[int, int]) -> str:
    return f"frame {frame[1]}" if frame[0] == 0 else f"input {frame[0] + 1} frame {frame[1]}"


def _path(detail: str) -> str | None:
    """The request target of an HTTP request line ('POST /x HTTP/1.1 ...'), lowercased; None for a
    response or anything else."""
    parts = detail.split(" ", 2)
    if len(parts) >= 2 and parts[0] in _HTTP_METHODS and parts[1].startswith("/"):
        return parts[1].lower()
    return None


@dataclass
class _Collector:
    found: dict[str, dict[str, list[Evidence]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))

    def add(self, address: str, role: str, ev: Evidence) -> None:
        self.found[address][role].append(ev)

    def has(self, address: str, role: str) -> bool:
        return bool(self.found.get(address, {}).get(role))


def _usable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_multicast or ip.is_unspecified or ip.is_loopback or address == "255.255.255.255")


def _port_evidence(f: Flow, proto_name: str, verifying: Sequence[str], allowed: Sequence[str] = ()) -> Evidence | None:
    """An answered flow on a role's port: high when the payload was recognised as one of
    ``verifying``, medium when it was not recognised (or only as one of ``allowed``, as TLS on an
    HDX port); None when the payload showed another protocol."""
    apps = f.apps or {}
    k = f.key
    where = f"{k.protocol}/{k.port}"
    for name in verifying:
        if name in apps:
            ev = (f.app_evidence or {}).get(name)
            frame = ev.frame if ev is not None else f.first_frame
            what = comment_text(ev.detail, 60) if ev is not None and ev.detail else name
            return Evidence(Confidence.HIGH, f"answered {proto_name} on {where} ({what})", frame)
    if any(name not in allowed for name in apps):
        return None
    if proto_name in ("DNS", "NTP") and f.direction_evidence.get("protocol"):
        return Evidence(Confidence.HIGH, f"answered {proto_name} on {where} ({proto_name} responses)", f.first_frame)
    shown = f"{', '.join(sorted(apps)).upper()} " if apps else ""
    return Evidence(Confidence.MEDIUM, f"answered {shown}on {where} (port only: payload not recognised as "
                                       f"{proto_name})", f.first_frame)


def collect_evidence(flows: Iterable[Flow], names: NameSource, name_roles: Sequence[tuple[str, str]],
                     roles_known: Iterable[str]) -> tuple[_Collector, dict[str, set[str]], set[str]]:
    """Evidence per (address, role) from the flows; also who each host initiated answered flows to
    (address -> {responder}) and the hosts that answered anything (listeners)."""
    known = set(roles_known)
    c = _Collector()
    clients: dict[str, set[str]] = defaultdict(set)
    client_ports: dict[str, set[tuple[str, int]]] = defaultdict(set)
    client_flows: dict[str, set[tuple[str, str, int]]] = defaultdict(set)
    listeners: set[str] = set()
    kerberos: dict[str, Evidence] = {}
    ldap: dict[str, Evidence] = {}
    heartbeats: dict[frozenset[str], Flow] = {}
    registering: dict[str, Evidence] = {}
    sta_clients: dict[str, Evidence] = {}
    pvs_clients: dict[str, Evidence] = {}
    flows = [f for f in flows if not f.summarised]

    def add(address: str, role: str, ev: Evidence | None) -> None:
        if ev is not None and role in known and _usable(address):
            c.add(address, role, ev)

    for f in flows:
        k = f.key
        i, r = k.initiator, k.responder
        if not f.established or not _usable(r):
            continue
        listeners.add(r)
        clients[i].add(r)
        client_ports[i].add((k.protocol, k.port))
        client_flows[i].add((r, k.protocol, k.port))
        tcp, udp = k.protocol == "tcp", k.protocol == "udp"
        if (tcp and k.port in _HDX_PORTS) or "ica" in (f.apps or {}) or "cgp" in (f.apps or {}):
            add(r, VDA, _port_evidence(f, "ICA" if k.port != 2598 else "CGP", ("ica", "cgp"), ("tls",)))
        elif udp and k.port in _HDX_PORTS:
            add(r, VDA, _port_evidence(f, "EDT", ()))
        if tcp and k.port in (27000, 7279):
            add(r, LICENSE, _port_evidence(f, "FlexLM" if k.port == 27000 else "the Citrix vendor daemon", ()))
        elif tcp and k.port in (8082, 8083):
            ev = _port_evidence(f, "the licence console", (), ("http", "tls"))
            if ev is not None:
                add(r, LICENSE, Evidence(Confidence.LOW, ev.text.replace("answered", "answered (a hint only)", 1),
                                         ev.frame))
        if (tcp and k.port == 1433) or "tds" in (f.apps or {}):
            add(r, SQL, _port_evidence(f, "TDS", ("tds",)))
        if k.port == 53 and (tcp or udp):
            add(r, DNS, _port_evidence(f, "DNS", ("dns",)))
        if udp and k.port == 123:
            add(r, NTP, _port_evidence(f, "NTP", ("ntp",)))
        if k.port == 88 and (tcp or udp):
            ev = _port_evidence(f, "Kerberos", ("kerberos",))
            if ev is not None:
                kerberos.setdefault(r, ev)
        if k.port in _LDAP_PORTS and (tcp or udp):
            ev = _port_evidence(f, "LDAP", ("ldap", "cldap"), ("tls",))
            if ev is not None and (r not in ldap or ev.confidence > ldap[r].confidence):
                ldap[r] = ev
        if udp and k.port in _PVS_PORTS:
            ev = _port_evidence(f, "PVS streaming", ())
            add(r, PVS, ev)
            if ev is not None:
                pvs_clients.setdefault(i, Evidence(Confidence.MEDIUM, f"streams from {r} on udp/{k.port}",
                                                   f.first_frame))
        if udp and k.port == 69:
            add(r, TFTP, _port_evidence(f, "TFTP", ("tftp",)))
        if udp and k.port == 3003 and f.resp_pkts and f.orig_pkts:
            heartbeats.setdefault(frozenset((i, r)), f)
        http = (f.app_evidence or {}).get("http")
        path = _path(http.detail) if http is not None else None
        if http is None or path is None:
            continue
        line = comment_text(" ".join(http.detail.split(" ", 2)[:2]), 80)
        said = f"answered HTTP '{line}'"
        if path.startswith(_DDC_PATHS):
            add(r, DDC, Evidence(Confidence.HIGH, said, http.frame))
            if path.startswith(_DDC_PATHS[0]):
                registering.setdefault(i, Evidence(Confidence.HIGH, f"registers with {r}: '{line}'", http.frame))
        elif path.startswith(_XML_PATH):
            add(r, DDC, Evidence(Confidence.HIGH, said + ": the XML service", http.frame))
        elif path.startswith(_STA_PATH):
            ev = Evidence(Confidence.HIGH, said + ": the STA", http.frame)
            add(r, DDC, ev)
            add(r, STA, ev)
            sta_clients.setdefault(i, Evidence(Confidence.MEDIUM, f"asks the STA {r} for tickets: '{line}'",
                                               http.frame))
        elif path.startswith(_WORKER_PATH):
            add(r, VDA, Evidence(Confidence.HIGH, said + ": the VDA's broker agent", http.frame))
        elif path.startswith(_SF_PATHS):
            add(r, STOREFRONT, Evidence(Confidence.HIGH, said, http.frame))
        elif path.startswith(_NITRO_PATH):
            add(r, NSIP, Evidence(Confidence.HIGH, said + ": the NITRO API", http.frame))

    for a, ev in registering.items():
        add(a, VDA, ev)
    for pair, f in heartbeats.items():
        a, b = sorted(pair)
        for x, y in ((a, b), (b, a)):
            add(x, NSIP, Evidence(Confidence.MEDIUM, f"NetScaler HA heartbeats on udp/3003 both ways with {y} "
                                                     "(port only)", f.first_frame))
    for a in set(kerberos) | set(ldap):
        kerb, dir_ = kerberos.get(a), ldap.get(a)
        if kerb is not None and dir_ is not None:
            conf = min(kerb.confidence, dir_.confidence)
            add(a, DC, Evidence(conf, f"Kerberos and LDAP: {kerb.text}; {dir_.text}", min(kerb.frame, dir_.frame)))
        if dir_ is not None:
            add(a, LDAP, dir_)
            if kerb is None and c.has(a, DNS):
                add(a, DC, Evidence(Confidence.LOW, "LDAP and DNS on one host, as a domain controller serves "
                                                    "them (no Kerberos seen)", dir_.frame))
        elif kerb is not None:
            add(a, DC, Evidence(Confidence.LOW, f"Kerberos only (a KDC is a domain controller): {kerb.text}",
                                kerb.frame))
    _name_evidence(c, names, name_roles, listeners, add)
    _cloud_connectors(c, clients, names, name_roles, known)
    # Clients: user devices, target devices, and the Gateway SNIP that asks the STA for tickets.
    vdas = {a for a in c.found if c.has(a, VDA)}
    stores = {a for a in c.found if c.has(a, STOREFRONT)}
    brokers = {a for a in c.found if c.has(a, DDC) or c.has(a, CLOUD_CONNECTOR)}
    for a, ev in sta_clients.items():
        if clients[a] & vdas and a not in listeners:
            add(a, SNIP, Evidence(Confidence.MEDIUM, ev.text + "; and proxies HDX to VDAs, as a Citrix "
                                                               "Gateway's SNIP does", ev.frame))
    for a, ev in pvs_clients.items():
        if a not in listeners and not c.found.get(a):
            add(a, TARGET, ev)
    for a in clients:
        if a in listeners or c.found.get(a) or not _usable(a) or client_ports[a] & _INFRA_CLIENT_PORTS:
            continue
        if a in sta_clients:
            continue
        # A user device reaches VDAs on HDX ports and StoreFront on web ports; what asks a broker's web
        # services (XML, STA, Director's OData) is infrastructure.
        web = [(s, port) for s, _, port in client_flows[a] if port in _USER_TARGET_PORTS]
        if any(s in brokers and port in (80, 443) for s, port in web):
            continue
        talked = {s for s, port in web if s in vdas or (s in stores and port in (80, 443))}
        if not talked:
            continue
        kinds = [role for role, group in ((VDA, vdas), (STOREFRONT, stores)) if talked & group]
        add(a, USER, Evidence(Confidence.MEDIUM, f"client only: talks to {' and '.join(kinds)} on HDX or web "
                                                 "ports, answers nothing"))
    return c, clients, listeners


def _most_specific(name: str, name_roles: Sequence[tuple[str, str]]) -> set[str]:
    hits = [(name_specificity(RoleEntry(role, pattern, 0, "name")), pattern, role)
            for pattern, role in name_roles if name_matches(pattern, name)]
    if not hits:
        return set()
    top = max(h[0] for h in hits)
    return {role for spec, _, role in hits if spec == top}


def _name_evidence(c: _Collector, names: NameSource, name_roles: Sequence[tuple[str, str]], listeners: set[str],
                   add: _Add) -> None:
    """Roles the catalog ties to host names (Citrix Cloud, Gateway Service, DigiCert...), and the
    StoreFront hint, for every host a name was tied to."""
    for address in sorted(listeners):
        sources: dict[str, list[str]] = defaultdict(list)
        for obs in names.names_for(address):
            sources[obs.name].append(obs.source)
        for name, how in sources.items():
            shown = f"{comment_text(name, NAME_MAX)} ({', '.join(how)})"
            strong = any(h in ("dns", "dns-cname", "sni") for h in how)
            for role in sorted(_most_specific(name, name_roles)):
                conf = Confidence.HIGH if strong else Confidence.MEDIUM
                add(address, role, Evidence(conf, f"answers as {shown}, a {role} host name"))
            if "storefront" in name:
                add(address, STOREFRONT, Evidence(Confidence.LOW, f"answers as {shown}: a hint only"))


class _Add(Protocol):
    def __call__(self, address: str, role: str, ev: Evidence | None) -> None: ...


def _cloud_connectors(c: _Collector, clients: Mapping[str, set[str]], names: NameSource,
                      name_roles: Sequence[tuple[str, str]], known: set[str]) -> None:
    """A host that answers VDA registration or XML like a Delivery Controller but itself connects to
    Citrix Cloud is a Cloud Connector (SPEC §4: it does not play the Delivery Controller)."""
    if CLOUD_CONNECTOR not in known:
        return
    for a in list(c.found):
        if not c.has(a, DDC):
            continue
        cloud = sorted(s for s in clients.get(a, ()) if c.has(s, CLOUD))
        if not cloud:
            continue
        ddc = c.found[a].pop(DDC)
        c.found[a].pop(STA, None)  # every Cloud Connector runs the STA (implied)
        named = next((o.name for o in names.names_for(cloud[0])), cloud[0])
        for ev in ddc:
            c.add(a, CLOUD_CONNECTOR, Evidence(ev.confidence, f"{ev.text}; and connects to Citrix Cloud "
                                               f"({comment_text(named, NAME_MAX)}), as a Cloud Connector does",
                                               ev.frame))


# ------------------------------------------------------------------------------------------- grouping


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def group_hosts(hosts: Iterable[str], blockers: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Hosts as the narrowest networks that hold them and no blocker, never wider than /16 (IPv6:
    /64); a host alone stays an address. (entry text, member hosts)."""
    out: list[tuple[str, tuple[str, ...]]] = []
    by_version: dict[int, set[int]] = defaultdict(set)
    blocked: dict[int, set[int]] = defaultdict(set)
    for h in hosts:
        ip = _ip(h)
        by_version[ip.version].add(int(ip))
    for b in blockers:
        ip = _ip(b)
        blocked[ip.version].add(int(ip))
    for version, values in sorted(by_version.items()):
        _split(sorted(values), sorted(blocked[version]), version, out)
    return out


def _split(values: list[int], stops: list[int], version: int, out: list[tuple[str, tuple[str, ...]]]) -> None:
    """The narrowest network around ``values`` if it holds no stop and is not too wide, else each
    half (by the first bit they differ in) on its own."""
    bits, widest = (32, 16) if version == 4 else (128, 64)
    lo, hi = values[0], values[-1]
    if lo == hi:
        out.append((_text(lo, version), (_text(lo, version),)))
        return
    prefix = bits - (lo ^ hi).bit_length()
    base = lo >> (bits - prefix) << (bits - prefix)
    top = base + (1 << (bits - prefix)) - 1
    j = bisect.bisect_left(stops, base)
    if prefix >= widest and not (j < len(stops) and stops[j] <= top):
        net = ipaddress.ip_network((base, prefix)) if version == 4 else ipaddress.IPv6Network((base, prefix))
        out.append((str(net), tuple(_text(v, version) for v in values)))
        return
    k = bisect.bisect_left(values, base + (1 << (bits - prefix - 1)))  # both halves are non-empty
    _split(values[:k], stops, version, out)
    _split(values[k:], stops, version, out)


def _text(value: int, version: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


# ---------------------------------------------------------------------------------------------- draft


def suggest(flows: Iterable[Flow], names: NameSource, vocabulary: Vocabulary,
            name_roles: Sequence[tuple[str, str]] = (), *,
            min_confidence: Confidence = Confidence.LOW) -> Draft:
    """The draft for a capture's flows and name evidence. ``name_roles``: (host-name pattern, role)
    from the catalog (role host names and rule destinations), as the audit itself ties names to roles."""
    known = {r for r in (vocabulary.lookup(n) for n in (*ORDER, *(role for _, role in name_roles))) if r}
    c, _, listeners = collect_evidence(flows, names, name_roles, known)
    grouped = (USER, TARGET)
    entries: list[Entry] = []
    dropped = 0
    singles: dict[str, list[Entry]] = defaultdict(list)
    for address, roles in c.found.items():
        for role, items in roles.items():
            if not items or role in grouped:
                continue
            ranked = tuple(sorted(items, key=lambda e: (-e.confidence, e.frame, e.text)))
            e = Entry(role, address, ranked[0].confidence, ranked, _names(names, address))
            if e.confidence < min_confidence:
                dropped += 1
                continue
            singles[role].append(e)
    # Blockers are points: two aligned networks nest or are disjoint, so a group that holds no address
    # of another role's evidence never overlaps another group either.
    held = {a for a, roles in c.found.items() if any(roles.values())}
    for role in grouped:
        members: dict[str, list[Evidence]] = {}
        for a, roles in c.found.items():
            if roles.get(role):
                members[a] = roles[role]
        keep = {a: items for a, items in members.items() if max(ev.confidence for ev in items) >= min_confidence}
        dropped += len(members) - len(keep)
        blockers = (listeners | held) - set(keep)
        for text, hosts in group_hosts(keep, blockers):
            evs = tuple(sorted((ev for h in hosts for ev in keep[h]), key=lambda e: (-e.confidence, e.frame, e.text)))
            conf = min(max(ev.confidence for ev in keep[h]) for h in hosts)
            singles[role].append(Entry(role, text, conf, evs, _names(names, text) if len(hosts) == 1 else (),
                                       hosts if len(hosts) > 1 else ()))
    rank = {r: i for i, r in enumerate(ORDER)}
    for role in sorted(singles, key=lambda r: (rank.get(r, rank[CLOUD] + 0.5), r)):
        entries.extend(sorted(singles[role], key=lambda e: _sort_key(e.text)))
    found = {e.role for e in entries}
    missing = tuple((role, why) for role, why in NOT_FOUND.items() if role in known and role not in found)
    return Draft(tuple(entries), missing, min_confidence, dropped)


def _sort_key(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text, strict=False)
    return net.version, int(net.network_address)


def _names(names: NameSource, address: str) -> tuple[str, ...]:
    """'sf01.corp.example (dns, sni)' per name tied to the address, first seen first."""
    sources: dict[str, list[str]] = defaultdict(list)
    for obs in names.names_for(address):
        sources[obs.name].append(obs.source)
    return tuple(f"{comment_text(n, NAME_MAX)} ({', '.join(how)})" for n, how in sources.items())


def _entry_line(e: Entry) -> str:
    text = f'"{e.text}"' if ":" in e.text else e.text
    seen: dict[str, list[Evidence]] = {}
    for ev in e.evidence:  # strongest and earliest first: the first of each text is the one shown
        seen.setdefault(ev.text, []).append(ev)
    reasons = []
    for why, same in list(seen.items())[:EVIDENCE_SHOWN]:
        where = [_frame_text(same[0].frame)] if same[0].frame[0] < 1 << 62 else []
        if len(same) > 1 and not e.members:  # a group's count is its members
            where.append(f"{len(same)} times")
        reasons.append(f"{why} [{', '.join(where)}]" if where else why)
    if len(seen) > EVIDENCE_SHOWN:
        reasons.append(f"{len(seen) - EVIDENCE_SHOWN} more")
    parts = [f"{e.confidence.label}: " + "; ".join(reasons)]
    if e.members:
        listed = ", ".join(e.members[:GROUP_LISTED]) + (" ..." if len(e.members) > GROUP_LISTED else "")
        parts.append(f"{len(e.members)} hosts ({listed})")
    if e.names:
        parts.append("name " + ", ".join(e.names[:NAMES_SHOWN])
                     + (f" and {len(e.names) - NAMES_SHOWN} more" if len(e.names) > NAMES_SHOWN else ""))
    return f"    - {text:<15}  # " + comment_text("; ".join(parts), 600)


def render(draft: Draft, sources: Sequence[str], version: str) -> str:
    """The draft as roles.yaml text (schema 2, `roles:` only), with its evidence as comments."""
    lines = [
        f"# roles.yaml drafted by pcap-audit {comment_text(version, 40)} roles suggest from:",
        *(f"#   {comment_text(s, 200)}" for s in sources),
        "# Every entry says why, from the capture, and how sure: review each one before you rely on the audit.",
        *(f"#   {level.label}: {why}" for level, why in sorted(CONFIDENCE_HELP.items(), reverse=True)),
        *([f"# Entries below {draft.min_confidence.label} confidence are left out ({draft.dropped} of them)."]
          if draft.min_confidence > Confidence.LOW else []),
        "# Roles the capture cannot show (Director, Citrix Gateway, FAS...) and hosts that were silent are",
        "# not here: add them by hand.",
    ]
    if not draft.entries:
        lines.append("roles: {}")
    else:
        lines.append("roles:")
        role = None
        for e in draft.entries:
            if e.role != role:
                role = e.role
                lines.append(f"  {role}:")
            lines.append(_entry_line(e))
    if draft.not_found:
        lines.append("# not found:")
        lines.extend(f"#   {role}: {why}" for role, why in draft.not_found)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- quality


def reduce_implied(roles: Iterable[str], vocabulary: Vocabulary) -> frozenset[str]:
    """Roles without those another of them implies (SPEC §7: implied roles are not counted)."""
    held = frozenset(roles)
    implied: set[str] = set()
    for r in held:
        implied |= vocabulary.expand([r]) - {r}
    return held - implied


@dataclass(frozen=True, slots=True)
class Score:
    true_positives: int
    suggested: int
    expected: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.suggested if self.suggested else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.expected if self.expected else 1.0


def score(suggested: Mapping[str, Iterable[str]], expected: Mapping[str, Iterable[str]],
          vocabulary: Vocabulary) -> Score:
    """Precision and recall of (address, role) pairs: address -> roles as the draft gives them and
    as the hand-written roles file gives them, over the addresses the capture shows (the caller's
    keys), each side without the roles its other roles imply."""
    got = {(a, r) for a, roles in suggested.items() for r in reduce_implied(roles, vocabulary)}
    want = {(a, r) for a, roles in expected.items() for r in reduce_implied(roles, vocabulary)}
    return Score(len(got & want), len(got), len(want))


class _RoleLookup(Protocol):
    def roles_of(self, address: str, names: Iterable[str] = ()) -> frozenset[str]: ...


def held_roles(role_map: _RoleLookup, addresses: Iterable[str], names: NameSource,
               name_roles: Sequence[tuple[str, str]] = ()) -> dict[str, frozenset[str]]:
    """Address -> the roles a roles file maps it to, as the audit ties them: the file's entries
    (names through the capture's name evidence) and the catalog's host-name patterns."""
    out: dict[str, frozenset[str]] = {}
    for a in addresses:
        tied = tuple(dict.fromkeys(o.name for o in names.names_for(a)))
        roles = set(role_map.roles_of(a, tied))
        for pattern, role in name_roles:
            if any(name_matches(pattern, n) for n in tied):
                roles.add(role)
        if roles:
            out[a] = frozenset(roles)
    return out


def seen_addresses(flows: Iterable[Flow]) -> set[str]:
    """The hosts a capture shows: both ends of every flow (broadcast, multicast and '*' left out)."""
    return {a for f in flows for a in (f.key.initiator, f.key.responder) if _usable(a)}
