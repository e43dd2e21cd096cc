"""The typed audit document (docs/json-schema.md): what every renderer takes.

Frozen dataclasses, one per object of the JSON; a field's name is its JSON member's name and the
fields are in the JSON's member order, so ``to_json_dict`` is one generic walk (report/jsondata.py)
and ``load_document`` (report/load.py) its inverse (saved audits, and documents built in memory by
tests).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from auditor.errors import AuditorError
from auditor.model import frozen_rows
from auditor.refusal import RefusedBy

SCHEMA_VERSION = "2.2"
T = TypeVar("T")


class DocumentError(AuditorError, ValueError):
    """An audit document (a saved JSON, or a dict built in memory) that does not have the schema's
    shape; the message names the member (``flows[3].bytes: missing``)."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    """Always "pcap-audit"."""
    version: str
    """The version that wrote the document."""


@dataclass(frozen=True, slots=True)
class Run:
    started: str
    """When the audit started, ISO 8601 UTC."""
    finished: str
    """When the document was built, ISO 8601 UTC."""
    command_line: str
    """The command as typed (shell-quoted)."""
    engine: str
    """fast | tshark."""


@dataclass(frozen=True, slots=True)
class Criteria:
    fail_on: tuple[str, ...]
    """The --fail-on kinds named (unexpected, failing, missing, in that order); () without --fail-on."""
    result: str
    """PASS | FAIL | "no criteria given"."""
    hits: tuple[str, ...]
    """The named kinds that occurred."""


@dataclass(frozen=True, slots=True)
class SourceInfo:
    title: str
    """The document the catalog transcribes."""
    publisher: str
    """Who publishes it."""
    url: str | None
    """Where it is, if the catalog says."""
    revision: str | None
    """The document's own revision or date; None when the copy carries none."""
    reviewed: str
    """When the catalog was last reviewed against it."""


@dataclass(frozen=True, slots=True)
class Alternative:
    id: str
    """The group's id (rules/alternatives.yaml)."""
    title: str
    """What the members are alternatives for."""
    members: tuple[str, ...]
    """Rule ids; one observed member covers the others."""


@dataclass(frozen=True, slots=True)
class ProductLink:
    product: str
    """A product the seed document has no port table for."""
    link: str
    """The seed's link text instead."""


@dataclass(frozen=True, slots=True)
class CatalogInfo:
    source: SourceInfo | None
    """The document the document layer transcribes; None when a catalog folder does not name it."""
    digest: str
    """sha256 over every catalog file read, in order."""
    rules: int
    """Rules in the catalog."""
    site_rule_files: tuple[str, ...]
    """--rules files added as the site layer."""
    layers: tuple[str, ...]
    """document, supplement, site: the layers loaded."""
    rules_by_layer: Mapping[str, int]
    """Layer -> rules."""
    alternatives: tuple[Alternative, ...]
    """Groups of rules of which one observed member is enough."""
    products_without_port_data: tuple[ProductLink, ...]
    """Products whose flows cannot be checked."""


@dataclass(frozen=True, slots=True)
class RolesFile:
    path: str
    """roles.yaml as given."""
    digest: str
    """sha256 of its bytes."""


@dataclass(frozen=True, slots=True)
class Vantage:
    hosts: tuple[str, ...]
    """Addresses at the capture point, and network:/range: keys of roles.yaml entries never seen."""
    source: str
    """roles.yaml | option | roles.yaml and option | auto | none."""


@dataclass(frozen=True, slots=True)
class Feature:
    id: str
    """The deployment feature's id."""
    title: str
    """Its title in the catalog."""
    how: str
    """How it was found: declared, mapped (with the line) or detected (with the flow)."""


@dataclass(frozen=True, slots=True)
class RolesWarning:
    code: str
    """unmatched-entry | name-not-resolved | host-bits | overlap | vantage-unmatched."""
    line: int
    """1-based line in roles.yaml (0 for a command-line vantage)."""
    entry: str
    """The entry as written."""
    message: str
    """A sentence for people."""


@dataclass(frozen=True, slots=True)
class FrameRef:
    input: int
    """Index into inputs[]."""
    frame: int
    """1-based frame number in that input."""


@dataclass(frozen=True, slots=True)
class InputInfo:
    path: str
    """As given on the command line ("-" for standard input)."""
    sha256: str
    """Of the bytes as stored (before decompression)."""
    size: int
    """Bytes read."""
    packets: int
    """Frames read."""
    first_ts: str | None
    """First frame's time, ISO 8601 UTC; None without frames."""
    last_ts: str | None
    """Last frame's time."""
    link_types: Mapping[str, int]
    """Link type name -> frames."""
    format: str
    """pcap, pcapng, or Wireshark's captype name of another format."""
    compression: str
    """none, gzip, bzip2, xz, zstd."""
    truncated: bool
    """The file ends inside a record."""
    warnings: tuple[str, ...]
    """How it was read, what was abandoned (bounded text)."""


@dataclass(frozen=True, slots=True)
class NotAudited:
    frames: int
    """Frames read."""
    records: int
    """IP packets decoded."""
    non_ip: int
    """Frames that carried no IP."""
    malformed: Mapping[str, int]
    """Kind -> packets that could not be decoded."""
    unsupported: Mapping[str, int]
    """Link types and encapsulations not read -> packets."""
    other_protocols: Mapping[str, int]
    """IP protocols other than TCP, UDP, ICMP -> packets."""
    bad_checksums: int
    """Packets with a bad checksum (counted, still audited)."""
    checksums_verified: str
    """Which packets had their checksums verified."""
    summarised_flows: int
    """Flows beyond the flow bound, kept as aggregates."""
    summarised_connections: int
    """Their connections."""
    summarised_packets: int
    """Their packets."""
    tunnels: Mapping[str, int]
    """Tunnel kind -> inner packets (audited inside)."""
    evicted_live: int
    """Connections closed early because the live table was full."""
    names: Mapping[str, int]
    """names_kept, names_dropped, names_refused, parse_errors."""
    examples: Mapping[str, FrameRef]
    """Kind of damage -> its first frame."""


@dataclass(frozen=True, slots=True)
class HostName:
    name: str
    """A name the capture gave the address (bounded, still hostile)."""
    source: str
    """dns | sni | host."""
    input: int
    """Index into inputs[]."""
    frame: int
    """The frame that named it."""


@dataclass(frozen=True, slots=True)
class HostRow:
    address: str
    """An address that holds a role or was named."""
    roles: tuple[str, ...]
    """Its roles (canonical names), sorted."""
    names: tuple[HostName, ...]
    """Up to 10 names, with their evidence."""


@dataclass(frozen=True, slots=True)
class AppEvidenceRow:
    """Why a flow's connections were identified as one application protocol (auditor/apps.py)."""

    direction: str
    """orig (the initiator's first payload) | resp (the responder's)."""
    frame: FrameRef
    """The packet that carried the bytes (of the protocol's earliest connection)."""
    head: str
    """The first bytes (at most 16) in hex."""
    detail: str
    """A short printable summary ("SSH-2.0-OpenSSH_9.6"), bounded; hostile."""


@frozen_rows
class FlowRow:
    """One flows[] entry: the conversations of one (initiator, responder, protocol, port)."""

    initiator: str
    """The address that opened the flow ("*" for a flood aggregate)."""
    responder: str
    """The address that answered."""
    protocol: str
    """tcp | udp | icmp."""
    port: int
    """The responder's port (ICMP: the type)."""
    initiator_roles: tuple[str, ...]
    """The initiator's roles, sorted."""
    responder_roles: tuple[str, ...]
    """The responder's roles, sorted."""
    initiator_names: tuple[str, ...]
    """Up to 5 names the capture gave the initiator (bounded)."""
    responder_names: tuple[str, ...]
    """Up to 5 names of the responder."""
    classification: str
    """expected | unexpected | unmapped."""
    failing: bool
    """Expected, but every connection was rejected or unanswered."""
    outcome: str
    """established | rejected | unanswered | one-way."""
    refused_by: tuple[RefusedBy, ...]
    """Who refused its rejected connections; () when none was."""
    rule_ids: tuple[str, ...]
    """Rules matched, in the flow's direction first."""
    reverse_rule_ids: tuple[str, ...]
    """Rules matched only as bidirectional rules opened by the other side."""
    layers: tuple[str, ...]
    """Catalog layers of the matching rules."""
    reason: str | None
    """Unexpected only: why (a stable code)."""
    reason_text: str | None
    """Unexpected only: a sentence naming the closest rules."""
    connections: int
    """Connections in the flow."""
    established: int
    """Of them, established."""
    rejected: int
    """Rejected (RST, ICMP unreachable)."""
    unanswered: int
    """Never answered."""
    packets: int
    """Both directions."""
    bytes: int
    """IP bytes, both directions."""
    orig_packets: int
    """Sent by the initiator."""
    resp_packets: int
    """Sent by the responder."""
    orig_bytes: int
    """IP bytes sent by the initiator."""
    resp_bytes: int
    """IP bytes sent by the responder."""
    first_seen: str | None
    """First packet, ISO 8601 UTC."""
    last_seen: str | None
    """Last packet."""
    first_frame: FrameRef
    """Where its first packet is."""
    direction_evidence: str
    """The strongest kind of evidence for who initiated, among its connections."""
    direction_inferred: bool
    """True unless the evidence is a SYN or SYN-ACK."""
    conn_states: Mapping[str, int]
    """Zeek conn_state -> connections, by state."""
    tunnels: tuple[str, ...]
    """Tunnels its packets came through."""
    summarised: bool
    """A flood aggregate beyond the flow bound (initiator "*")."""
    app_protocol: str = "unknown"
    """The application protocol its connections carried, most frequent first (SPEC §6); "unknown"
    when none was recognised."""
    apps: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Recognised application protocol -> connections."""
    unverified: int = 0
    """Connections whose payload was absent or not recognised."""
    app_evidence: Mapping[str, AppEvidenceRow] = dataclasses.field(default_factory=dict)
    """Recognised application protocol -> the evidence of its earliest connection."""


@dataclass(frozen=True, slots=True)
class Citation:
    title: str
    """The Citrix page a supplement rule comes from."""
    section: str
    """Its section."""
    url: str
    """Its address."""


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: str
    """Stable rule id."""
    product: str
    """The Citrix product."""
    source: str
    """Role that opens the flow."""
    destination: str
    """Role that answers."""
    protocols: tuple[str, ...]
    """tcp, udp, icmp."""
    ports: str
    """As the catalog writes them ("80,443", "49152-65535")."""
    description: str
    """The catalog's wording."""
    note: str
    """A note on the rule, or ""."""
    one_way: bool
    """No answer is expected (syslog, SNMP traps)."""
    bidirectional: bool
    """Either side may open it."""
    layer: str
    """document | supplement | site."""
    feature: str | None
    """The deployment feature it belongs to."""
    citation: Citation | None
    """A supplement rule's public Citrix page."""
    uncited: str | None
    """Why no public page was found."""
    group: str | None
    """Its alternative group."""
    status: str
    """observed | failing | missing | covered | not-observable | not-applicable."""
    covered_by: tuple[str, ...]
    """covered: the group's observed members."""
    flows: int
    """Matching flows."""
    hosts_lacking: tuple[str, ...]
    """Single-host source/destination entries that never used it."""
    apps: tuple[str, ...] = ()
    """The application protocols its ports may carry; () refuses nothing (SPEC §6)."""
    mismatched_flows: int = 0
    """Flows on its roles and port whose payload it refused (protocol-mismatch): not counted in flows."""


@dataclass(frozen=True, slots=True)
class RoleCounts:
    expected: int
    """Expected flows involving the role."""
    failing: int
    """Expected but failing."""
    unexpected: int
    """Unexpected."""
    missing: int
    """Missing rules of the role."""


@dataclass(frozen=True, slots=True)
class RoleRow:
    role: str
    """A role mapped in roles.yaml."""
    hosts: tuple[str, ...]
    """Seen addresses that hold it."""
    entries: tuple[str, ...]
    """Its roles.yaml entries as written."""
    counts: RoleCounts
    """Its flows and missing rules."""


@dataclass(frozen=True, slots=True)
class Summary:
    packets: int
    """Packets audited."""
    connections: int
    """Connections in the flows."""
    flows: int
    """flows[] entries."""
    expected: int
    """Expected flows (failing included)."""
    expected_failing: int
    """Expected flows that failed."""
    unexpected: int
    """Unexpected flows."""
    unmapped: int
    """Flows between hosts outside roles.yaml."""
    rules: Mapping[str, int]
    """Rule status -> rules."""
    verified: int = 0
    """Expected flows with a connection whose payload was recognised (and allowed: SPEC §6)."""
    unverified: int = 0
    """Expected flows none of whose connections' payload was recognised (the port is the only claim)."""
    mismatched: int = 0
    """Flows unexpected because their payload is a protocol every rule of their port refuses."""


@dataclass(frozen=True, slots=True)
class AuditDocument:
    """The whole audit: the JSON export is this, member for member."""

    schema_version: str
    """docs/json-schema.md's version."""
    tool: Tool
    """What wrote it."""
    run: Run
    """When and how."""
    criteria: Criteria | None
    """--fail-on and the result; None in documents older than 2.1."""
    catalog: CatalogInfo
    """The catalog judged against."""
    roles_file: RolesFile
    """roles.yaml."""
    vantage: Vantage
    """Where the capture was taken."""
    features: tuple[Feature, ...]
    """Deployment features in use."""
    warnings: tuple[RolesWarning, ...]
    """roles.yaml lint."""
    inputs: tuple[InputInfo, ...]
    """The captures read."""
    not_audited: NotAudited
    """What could not be audited, as values."""
    hosts: tuple[HostRow, ...]
    """Addresses with roles or names, by address."""
    flows: Sequence[FlowRow]
    """Every flow (built from the verdicts as they are read: see document.FlowRows)."""
    rules: tuple[RuleRow, ...]
    """Every catalog rule and its status."""
    roles: tuple[RoleRow, ...]
    """Per role mapped in roles.yaml."""
    summary: Summary
    """The counts."""

    def to_json_dict(self) -> dict[str, Any]:
        """The document as JSON-ready dicts and lists (flows[] built one dict at a time as read)."""
        from auditor.report.jsondata import JsonFlows, plain

        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = JsonFlows(value) if f.name == "flows" else plain(value)
        return out
