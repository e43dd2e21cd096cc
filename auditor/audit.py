"""The glue: inputs -> conversations -> verdicts -> the audit document (docs/json-schema.md).

Knows only the interfaces of the layers below; opens the inputs it is given (through capture/)
and the roles file, never an output file.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor import (
    __version__,
    conversations,  # its builder looked up at each use: of the build that runs
    engine,
    names_apart,
)
from auditor.capture import CaptureSet, open_captures
from auditor.catalog import Catalog, load_catalog
from auditor.classify import (
    FlowVerdict,
    HostView,
    RuleIndex,
    RuleResult,
    StatusContext,
    classify_flows,
    is_wildcard_address,
    rule_status,
)
from auditor.errors import AuditorError
from auditor.model import Connection, FlowKey, PacketRecord
from auditor.names import MAX_NAMES, NameEvidence
from auditor.parallel import auto_jobs, paused_gc
from auditor.report.document import build_document
from auditor.report.model import AuditDocument
from auditor.roles import RoleEntry, RoleMap, VantageEntry, load_roles, name_matches, parse_vantage
from auditor.roles_lint import RoleWarning, lint_roles

if TYPE_CHECKING:
    from auditor.conversations import ConversationResult

_FLOW_KEY = attrgetter("key")
_INITIATOR, _RESPONDER, _PORT = itemgetter(0), itemgetter(1), itemgetter(3)
"""A FlowKey's initiator, responder and port (a tuple's items, read in C)."""

Progress = Callable[[int, int, int], None]
"""(bytes read, total bytes, packets read so far)."""


@dataclass
class AuditRequest:
    """Everything a run needs, as the CLI parsed it."""

    inputs: Sequence[str]
    roles_path: Path
    rules_dir: Path | None = None
    extra_rules: Sequence[Path] = ()
    vantage: Sequence[str] = ()
    """Addresses, CIDRs, ranges or role names (--vantage), added to roles.yaml's vantage: list."""
    document_only: bool = False
    """--catalog document: the ports document without the supplement."""
    strict_roles: bool = False
    """--strict-roles: roles.yaml warnings are errors."""
    engine: str = "fast"
    command_line: str = ""
    progress: Progress | None = None
    jobs: int = 0
    """Processes to read with; 0 = automatic (one, plus parallel.auto_jobs's decompressing process)."""
    verify_checksums: bool = True
    connection_sink: Callable[[Connection], None] | None = None
    """Called with every connection as it closes (--conn-log). The conversations are then read by one
    process, so that the sink sees every connection once, in the order they close."""
    fail_on: Sequence[str] = ()
    """--fail-on kinds (criteria.FAIL_ON_KINDS): the document records them and the result against them."""
    scheduler: str | None = None
    """--scheduler: the address of a Dask distributed scheduler whose workers read the inputs."""


@dataclass
class AuditOutcome:
    """The run's results: the document for renderers and the pieces the CLI summarises."""

    document: AuditDocument
    """What the renderers take."""
    analysis: Analysis
    capture: CaptureSet

    @property
    def doc(self) -> dict[str, Any]:
        """The document as its JSON data (flows[] made as read), for the CLI's summary lines."""
        return self.document.to_json_dict()


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _norm_addr(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


class HostResolver:
    """Address -> HostView, from roles.yaml, the capture's names and the catalog's host names.

    ``features``: the deployment features in use (feature-implied roles are held only with them)."""

    def __init__(self, catalog: Catalog, roles: RoleMap, names: NameEvidence,
                 features: frozenset[str] = frozenset()) -> None:
        self.catalog = catalog
        self.roles = roles
        self.names = names
        self.features = features
        vocab = catalog.vocabulary
        self.name_roles: list[tuple[str, str]] = []
        """(pattern, role) from the vocabulary's roles and the rules' destination host names."""
        for role, patterns in vocab.role_hostnames.items():
            self.name_roles.extend((p, role) for p in patterns)
        for r in catalog.rules:
            self.name_roles.extend((p, r.destination) for p in r.hostnames)
        self._cache: dict[str, HostView] = {}
        self._roles: dict[frozenset[str], tuple[frozenset[str], frozenset[str], frozenset[str]]] = {}
        """Mapped roles -> (the same set, expanded with the features in use, with every feature): one
        copy of each of a few role sets, shared by every address that holds it (a frozenset is 216
        bytes or more, three per address of a many-host audit)."""

    def _role_sets(self, mapped: set[str]) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
        roles = frozenset(mapped)
        hit = self._roles.get(roles)
        if hit is None:
            vocab = self.catalog.vocabulary
            hit = self._roles[roles] = (roles, vocab.expand(roles, self.features), vocab.expand(roles))
        return hit

    def __call__(self, address: str) -> HostView:
        hit = self._cache.get(address)
        if hit is not None:
            return hit
        if address == "*":
            view = HostView(address, frozenset(), frozenset())
        elif is_wildcard_address(address) and not self.roles.roles_of(address):
            view = HostView(address, frozenset(), frozenset(), wildcard=True)
        else:
            names = tuple(dict.fromkeys(o.name for o in self.names.names_for(address)))
            mapped = set(self.roles.roles_of(address, names))
            if names:  # most addresses have no name: the catalog's patterns cannot match them
                for pattern, role in self.name_roles:
                    if any(name_matches(pattern, n) for n in names):
                        mapped.add(role)
            roles, effective, potential = self._role_sets(mapped)
            view = HostView(address, roles, effective, names, potential=potential)
        self._cache[address] = view
        return view


def _entry_in_vantage(e: RoleEntry, vantage: Sequence[VantageEntry], vantage_roles: frozenset[str],
                      catalog: Catalog, features: frozenset[str]) -> bool:
    """Does a roles.yaml entry the capture never showed stand at the capture point?"""
    if catalog.vocabulary.expand({e.role}, features) & vantage_roles:
        return True
    return e.kind != "name" and any(v.kind != "role" and v.version == e.version and v.lo <= e.hi and e.lo <= v.hi
                                    for v in vantage)


def resolve_vantage(entries: Sequence[VantageEntry], source: str, resolver: HostResolver, seen: set[str],
                    placeholders: Mapping[str, RoleEntry], flows: Sequence[Any], catalog: Catalog,
                    features: frozenset[str]) -> tuple[frozenset[str], str]:
    """The hosts at the capture point (SPEC §4): roles.yaml's vantage: and every --vantage, as seen
    addresses and the placeholder keys of roles.yaml entries the capture never showed; without
    either, detected when every audited packet touches one host."""
    if entries:
        vantage_roles = frozenset(e.role for e in entries if e.kind == "role" and e.role)
        hosts = {a for a in seen
                 if any(e.contains(a) for e in entries if e.kind != "role")
                 or (vantage_roles and resolver(a).effective & vantage_roles)}
        hosts |= {k for k, e in placeholders.items() if _entry_in_vantage(e, entries, vantage_roles, catalog, features)}
        return frozenset(hosts), source
    common: set[str] | None = None
    for f in flows:
        if f.summarised:
            continue
        pair = {a for a in (f.key.initiator, f.key.responder) if not is_wildcard_address(a)}
        if not pair:
            continue  # broadcast between unconfigured hosts (DHCP discover) says nothing of the vantage
        common = pair if common is None else common & pair
        if not common:
            return frozenset(), "none"
    if common and len(common) == 1:
        return frozenset(common), "auto"
    return frozenset(), "none"


@dataclass
class Analysis:
    """Everything the audit concluded from a stream of packet records."""

    conv: ConversationResult
    names: NameEvidence
    resolver: HostResolver
    verdicts: list[FlowVerdict]
    rules: list[RuleResult]
    vantage: frozenset[str]
    vantage_source: str
    features: dict[str, str]
    """Deployment features in use -> how the audit knows (declared, mapped role, detected flow)."""
    warnings: list[RoleWarning] = field(default_factory=list)
    """roles.yaml lint (roles.lint_roles): mistakes that make a report wrong."""


def collect(records: Iterable[PacketRecord], server_ports: frozenset[tuple[str, int]], *,
            connection_sink: Callable[[Connection], None] | None = None) -> tuple[ConversationResult, NameEvidence]:
    """Packet records -> conversations and name evidence (both mergeable across partial runs), read
    as one chunk that starts and ends the run (engine.read_records)."""
    names = NameEvidence(max_names=MAX_NAMES)
    return _conversations(records, server_ports, connection_sink, names), names


def _conversations(records: Iterable[PacketRecord], server_ports: frozenset[tuple[str, int]],
                   connection_sink: Callable[[Connection], None] | None, names: NameEvidence | None,
                   ) -> ConversationResult:
    """The records' conversations, and their names into ``names`` (None: read apart)."""
    builder = conversations.ConversationBuilder(server_ports=server_ports, connection_sink=connection_sink)
    with paused_gc(keep=True):
        engine.read_records(records, builder, names)
        return builder.finish()


def analyse(records: Iterable[PacketRecord], catalog: Catalog, roles: RoleMap, *,
            vantage: Sequence[VantageEntry] = ()) -> Analysis:
    """Sans-IO core of an audit: packet records in, verdicts and rule status out."""
    conv, names = collect(records, catalog.server_ports())
    return judge(conv, names, catalog, roles, vantage=vantage)


def declared_features(catalog: Catalog, roles: RoleMap) -> dict[str, str]:
    """Features roles.yaml says are in use: listed under ``features:``, or implied by mapping one of
    the feature's roles explicitly (a Gateway VIP under Citrix Gateway). Feature id -> how we know."""
    vocab = catalog.vocabulary
    out: dict[str, str] = {}
    for decl in roles.features:
        out.setdefault(decl.id, f"declared in roles.yaml (line {decl.line})")
    for e in roles.entries:
        f = vocab.role_feature(e.role)
        if f is not None:
            out.setdefault(f, f"{e.role} mapped in roles.yaml (line {e.line})")
    return out


def _rule_index(catalog: Catalog, features: frozenset[str], rules: Sequence[Any] | None = None) -> RuleIndex:
    vocab = catalog.vocabulary
    role_features = {name: r.feature for name, r in vocab.roles.items() if r.feature}
    titles = {f.id: f.title for f in vocab.features.values()}
    return RuleIndex(catalog.rules if rules is None else rules, features, role_features, titles)


def detect_features(flows: Sequence[Any], keys: Sequence[FlowKey], catalog: Catalog, roles: RoleMap,
                    names: NameEvidence, in_use: frozenset[str]) -> dict[str, str]:
    """Features not declared that the capture proves (SPEC §4): a flow between two hosts of one
    product that matches one of the feature's ``detected_by`` rules (HA heartbeats between NSIPs).
    ``keys``: the flows' keys, in the same order."""
    out: dict[str, str] = {}
    plans = []
    for feature in catalog.features.values():
        if feature.id in in_use or not feature.detected_by:
            continue
        rules = [r for r in (catalog.by_id(i) for i in feature.detected_by) if r is not None]
        ports = {(p, port) for r in rules for p in r.protocols for lo, hi in (r.ports or ((0, 0),))
                 for port in range(lo, hi + 1)}
        plans.append((feature, rules, ports))
    # The flows on those ports by (protocol, port), in one walk over the flows for all features.
    wanted = {port for _, _, ports in plans for _, port in ports}
    by_port: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i in [i for i, port in enumerate(map(_PORT, keys)) if port in wanted] if wanted else ():
        f = flows[i]
        if not f.summarised:
            by_port[(f.key.protocol, f.key.port)].append(i)
    for feature, rules, ports in plans:
        trial = in_use | {feature.id}
        resolver = HostResolver(catalog, roles, names, trial)
        index = _rule_index(catalog, trial, rules)
        for i in sorted(i for key in ports for i in by_port.get(key, ())):
            f = flows[i]
            v = classify_flows([f], resolver, index)[0]
            if v.rule_ids:
                out[feature.id] = (f"detected: {f.key.initiator} -> {f.key.responder} "
                                   f"{f.key.protocol}/{f.key.port} ({', '.join(v.rule_ids)})")
                break
    return out


def judge(conv: ConversationResult, names: NameEvidence, catalog: Catalog, roles: RoleMap, *,
          vantage: Sequence[VantageEntry] = (), vantage_source: str = "option") -> Analysis:
    """Conversations and names -> verdicts and rule status.

    ``vantage``: where the capture was taken, besides roles.yaml's own ``vantage:`` list."""
    flows = sorted(conv.flows.values(), key=_FLOW_KEY)  # keys are unique: no two flows compare equal
    flow_keys = [f.key for f in flows]
    features_in_use = declared_features(catalog, roles)
    features_in_use.update(detect_features(flows, flow_keys, catalog, roles, names, frozenset(features_in_use)))
    features = frozenset(features_in_use)
    resolver = HostResolver(catalog, roles, names, features)
    verdicts = classify_flows(flows, resolver, _rule_index(catalog, features))

    seen = set(map(_INITIATOR, flow_keys))
    seen.update(map(_RESPONDER, flow_keys))
    seen.discard("*")
    hosts_by_role: dict[str, set[str]] = defaultdict(set)
    for addr in seen:
        for role in resolver(addr).effective:
            hosts_by_role[role].add(addr)
    # Every roles.yaml entry maps hosts to its role (and to the roles it satisfies), even when the
    # capture never saw them: a single address stands for itself, a network, range or name for
    # "some host(s)" (two placeholders when it can hold several, for same-role rules).
    named = {n for addr in seen for n in resolver(addr).names}
    placeholders: dict[str, RoleEntry] = {}
    for e in roles.entries:
        if e.kind == "name" and any(name_matches(e.text, n) for n in named):
            continue  # the capture tied this name to an address: that address already counts
        keys = [_norm_addr(e.text)] if e.kind == "address" else [f"{e.kind}:{e.text}"]
        if (e.kind in ("network", "range") and e.hi > e.lo) or "*" in e.text:
            keys.append(keys[0] + "#2")
        for r in catalog.vocabulary.expand({e.role}, features):
            hosts_by_role[r].update(keys)
        placeholders.update((k, e) for k in keys if k not in seen)
    single_hosts = {role: tuple(_norm_addr(e.text) for e in roles.single_hosts(role) if e.kind == "address")
                    for role in roles.roles}
    single_hosts = {k: v for k, v in single_hosts.items() if v}
    entries = [*roles.vantage, *vantage]
    source = ("roles.yaml and option" if roles.vantage and vantage else "roles.yaml" if roles.vantage
              else vantage_source)
    vantage_set, vantage_source = resolve_vantage(entries, source, resolver, seen, placeholders, flows,
                                                  catalog, features)
    linted = dataclasses.replace(roles, vantage=tuple(entries)) if vantage else roles
    warnings = lint_roles(linted, seen, {a: tied for a in seen if (tied := resolver(a).names)},
                          {role: hosts & seen for role, hosts in hosts_by_role.items()})
    ctx = StatusContext(
        hosts_by_role={k: frozenset(v) for k, v in hosts_by_role.items()},
        seen=frozenset(seen),
        single_hosts=single_hosts,
        vantage=vantage_set,
        features=features,
        groups=catalog.alternatives,
    )
    rule_results = rule_status(catalog.rules, verdicts, ctx)
    return Analysis(conv, names, resolver, verdicts, rule_results, vantage_set, vantage_source,
                    features_in_use, warnings)


def read_captures(capture: CaptureSet, server_ports: frozenset[tuple[str, int]], *, jobs: int = 0,
                  scheduler: str | None = None, progress: Progress | None = None,
                  connection_sink: Callable[[Connection], None] | None = None,
                  ) -> tuple[ConversationResult, NameEvidence]:
    """Read the inputs: as chunks merged in order (auditor/engine.py) on a Dask cluster
    (``scheduler``) or on ``jobs`` local processes (0: automatic), or by this process."""
    if scheduler is not None:
        if capture.streams:
            raise AuditorError(f"{min(capture.streams)}: a pipe or standard input cannot be read by a cluster's "
                               "workers: give files they can read")
        if connection_sink is not None:
            raise AuditorError("--conn-log is written by one process: it cannot be combined with --scheduler")
    asked = jobs
    if jobs == 0:
        # Automatic: one process reads (and a second decompresses a large compressed input, or reads
        # the names of large uncompressed ones: below). Chunks are
        # asked for with -j N: on one machine they measured slower than one process, on the dense
        # realistic capture and on the 10M-packet one of long conversations alike (docs/scale.md).
        jobs = 1
    if capture.streams or connection_sink is not None or capture.engine != "fast":
        jobs = 1  # a pipe can be read once; a connection sink sees one process's connections
    if scheduler is not None:  # the cluster's size is its own: cut large files finely
        chunks = engine.plan(capture.paths, asked or 16)
    else:
        chunks = engine.plan_local(capture.paths, jobs) if jobs > 1 else []
    if scheduler is not None or len(chunks) > 1:
        if scheduler is not None:
            got, exact = engine.run_dask(chunks, server_ports, capture.engine, capture.verify_checksums,
                                         scheduler, progress)
        else:
            got, exact = engine.run_local(chunks, server_ports, capture.engine, capture.verify_checksums, jobs,
                                          progress)
        if exact:
            capture.inputs, capture.stats = got.inputs, got.stats
            return got.conv, got.names
        why = got.inexact
        del got  # not one sequential read's result: one process reads the inputs in order (engine.py)
        again = CaptureSet(capture.paths, engine=capture.engine, verify_checksums=capture.verify_checksums)
        conv, names = collect(again, server_ports)
        capture.inputs, capture.stats = again.inputs, again.stats
        capture.inputs[0].warnings.append(f"{why}: read in the order given by one process")
        return conv, names
    # One process reads; a second one decompresses a large compressed input, or reads the names of
    # large uncompressed ones.
    capture.inflate = auto_jobs(capture, capture.engine) > 1 if asked == 0 else jobs > 1
    if asked == 0 and names_apart.worth(capture):
        return _collect_apart(capture, server_ports, connection_sink)
    return collect(capture, server_ports, connection_sink=connection_sink)


def _collect_apart(capture: CaptureSet, server_ports: frozenset[tuple[str, int]],
                   connection_sink: Callable[[Connection], None] | None) -> tuple[ConversationResult, NameEvidence]:
    """``collect``, the name evidence read by a second process meanwhile (auditor/names_apart.py)."""
    apart = names_apart.NamesApart(capture)
    try:
        conv = _conversations(capture, server_ports, connection_sink, None)
        return conv, apart.result(names_apart.addresses(conv), tuple(info.packets for info in capture.inputs))
    finally:
        apart.stop()


def run_audit(request: AuditRequest) -> AuditOutcome:
    started = _now()
    catalog = load_catalog(request.rules_dir, list(request.extra_rules), document_only=request.document_only)
    roles = load_roles(request.roles_path, catalog.vocabulary)
    # Bad --vantage values are bad input: said before the capture is read, not after.
    vantage = [parse_vantage(v, "--vantage", catalog.vocabulary) for v in request.vantage]
    progress = None
    if request.progress is not None:
        report = request.progress
        holder: list[CaptureSet] = []

        def progress(done: int, total: int) -> None:
            report(done, total, holder[0].frames_read if holder else 0)

    capture = open_captures(list(request.inputs), engine=request.engine, progress=progress,
                            verify_checksums=request.verify_checksums)
    if request.progress is not None:
        holder.append(capture)
    conv, names = read_captures(capture, catalog.server_ports(), jobs=request.jobs, scheduler=request.scheduler,
                                progress=request.progress, connection_sink=request.connection_sink)
    conversations.share_counts(conv.flows.values())  # the flows are final: one copy of each tally
    analysis = judge(conv, names, catalog, roles, vantage=vantage)
    if request.strict_roles and analysis.warnings:
        w = analysis.warnings[0]
        more = f" (and {len(analysis.warnings) - 1} more)" if len(analysis.warnings) > 1 else ""
        where = f"{roles.path}:{w.line}" if w.line else "--vantage"
        raise AuditorError(f"{where}: {w.message}{more} [--strict-roles]")
    doc = build_document(
        version=__version__, started=started, finished=_now(), request_command=request.command_line,
        engine=request.engine, catalog=catalog, roles=roles, capture=capture,
        conv=analysis.conv, names=analysis.names, verdicts=analysis.verdicts, rule_results=analysis.rules,
        resolver=analysis.resolver, vantage=analysis.vantage, vantage_source=analysis.vantage_source,
        extra_rules=[str(p) for p in request.extra_rules], features=analysis.features,
        warnings=analysis.warnings, fail_on=request.fail_on,
    )
    return AuditOutcome(doc, analysis, capture)
