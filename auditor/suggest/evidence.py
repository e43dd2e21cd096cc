"""Evidence gathering: which roles the flows and names show each host holds (SPEC §7). What counts as
evidence, and each confidence level, is in the package's docstring (auditor/suggest/__init__.py):
a role for what a host answered, high where the payload showed the role's protocol, medium on its
port alone, low for hints; client-only hosts become User Device, PVS streaming clients Target Device.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from auditor.flow import Flow
from auditor.roles import RoleEntry, name_matches, name_specificity
from auditor.suggest.model import (
    CLOUD,
    CLOUD_CONNECTOR,
    DC,
    DDC,
    DNS,
    LDAP,
    LICENSE,
    NAME_MAX,
    NSIP,
    NTP,
    PVS,
    SNIP,
    SQL,
    STA,
    STOREFRONT,
    TARGET,
    TFTP,
    USER,
    VDA,
    Confidence,
    Evidence,
    NameSource,
    comment_text,
)

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
