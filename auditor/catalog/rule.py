"""The catalog's rule vocabulary: FlowRule, the public page a rule cites, and the catalog's layers.

What the catalog loader produces and classify.py matches flows against; it depends on nothing else in
the package, so every layer may import it without pulling in the loader.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Citation:
    """The public Citrix page a supplement rule comes from (SPEC §4: never invented)."""

    title: str
    """The page's title, as published."""
    url: str
    section: str = ""
    """The section of the page that states the flow ("" when the whole page does)."""


# The catalog's layers (SPEC §4): the seed document, Citrix's other public documentation, the site's own.
LAYER_DOCUMENT = "document"
LAYER_SUPPLEMENT = "supplement"
LAYER_SITE = "site"
LAYERS = (LAYER_DOCUMENT, LAYER_SUPPLEMENT, LAYER_SITE)


@dataclass(frozen=True, slots=True)
class FlowRule:
    """One documented flow of the Citrix catalog (or a site rule given with --rules)."""

    id: str
    """Stable identifier, e.g. 'storefront-003'."""
    product: str
    """The seed's section heading (or the site file's product name)."""
    source: str
    """Canonical source role."""
    destination: str
    """Canonical destination role."""
    protocols: tuple[str, ...]
    """Subset of ('tcp', 'udp', 'icmp')."""
    ports: tuple[tuple[int, int], ...]
    """Inclusive port ranges; a single port p is (p, p). Empty for ICMP, N/A or random."""
    type: str
    """The seed's original Type column (TCP, UDP, HTTPS, SNMP, Syslog, RADIUS, TACACS, DCOM...)."""
    description: str
    bidirectional: bool = False
    configurable: bool = False
    one_way: bool = False
    """No reply is expected (traps, syslog, NetFlow/IPFIX, heartbeats)."""
    loopback_only: bool = False
    """Only ever on 127.0.0.1: never missing, never observable on a wire."""
    hostnames: tuple[str, ...] = ()
    """Destination host-name patterns from the seed ('*.digicert.com')."""
    note: str = ""
    """Where the seed is garbled, ambiguous or inconsistent: what was repaired and why."""
    seed_row: str = ""
    """Where in the seed this rule comes from (table row or prose)."""
    source_file: str = ""
    """Catalog file and line, 'rules/storefront.yaml:41'."""
    layer: str = LAYER_DOCUMENT
    """Where the rule comes from: 'document' (the seed), 'supplement' (rules/supplement/), 'site' (--rules)."""
    feature: str = ""
    """A deployment feature the flow exists only with ('udp-audio', 'rendezvous'...); '' = always."""
    citation: Citation | None = None
    """The public Citrix page the rule comes from (supplement rules; optional elsewhere)."""
    uncited: str = ""
    """Why a supplement rule has no citation: what was searched and not found."""
    apps: tuple[str, ...] = ()
    """The application protocols its ports may carry (apps.PROTOCOLS), SPEC §6; () refuses nothing."""
    apps_on: tuple[str, ...] = ()
    """The transports ``apps`` speaks for (some of ``protocols``); () = every one. HDX on TCP and UDP
    1494 names what TCP carries (ica, tls) and leaves UDP (EDT, Citrix's own framing) unconstrained."""

    def refuses(self, transport: str, app: str) -> bool:
        """Does this rule refuse a connection on ``transport`` whose payload was recognised as ``app``?
        A rule without apps, or whose apps do not speak for that transport, refuses nothing."""
        return self.constrains(transport) and app not in self.apps

    def constrains(self, transport: str) -> bool:
        """Does ``apps`` say what this rule's ``transport`` may carry?"""
        return bool(self.apps) and (not self.apps_on or transport in self.apps_on)

    def matches_port(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ports)

    @property
    def ports_text(self) -> str:
        """'80,443' or '49152-65535' (as the CSV export writes them)."""
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ports)
