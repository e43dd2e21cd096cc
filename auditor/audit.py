"""The glue: inputs -> conversations -> verdicts -> the audit document (docs/json-schema.md).

Knows only the interfaces of the layers below; opens the inputs it is given (through capture/)
and the roles file, never an output file.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor import __version__
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
from auditor.conversations import ConversationBuilder, ConversationResult
from auditor.errors import AuditorError
from auditor.model import PacketRecord
from auditor.names import MAX_NAMES, NameEvidence
from auditor.parallel import auto_jobs, collect_parallel, paused_gc
from auditor.report.document import build_document
from auditor.roles import RoleMap, load_roles, name_matches

_DHCP_PORTS = (67, 68)

Progress = Callable[[int, int, int], None]
"""(bytes read, total bytes, packets read so far)."""


@dataclass
class AuditRequest:
    """Everything a run needs, as the CLI parsed it."""

    inputs: Sequence[str]
    roles_path: Path
    rules_dir: Path | None = None
    extra_rules: Sequence[Path] = ()
    vantage: str | None = None
    """An address or a role name; None = automatic (SPEC §4)."""
    engine: str = "fast"
    command_line: str = ""
    progress: Progress | None = None
    jobs: int = 0
    """Processes to read with; 0 = automatic (parallel.auto_jobs: 1)."""
    verify_checksums: bool = True


@dataclass
class AuditOutcome:
    """The run's results: the document for renderers and the pieces the CLI summarises."""

    doc: dict[str, Any]
    analysis: Analysis
    capture: CaptureSet


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _norm_addr(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


class HostResolver:
    """Address -> HostView, from roles.yaml, the capture's names and the catalog's host names."""

    def __init__(self, catalog: Catalog, roles: RoleMap, names: NameEvidence) -> None:
        self.catalog = catalog
        self.roles = roles
        self.names = names
        vocab = catalog.vocabulary
        self.name_roles: list[tuple[str, str]] = []
        """(pattern, role) from the vocabulary's roles and the rules' destination host names."""
        for role, patterns in vocab.role_hostnames.items():
            self.name_roles.extend((p, role) for p in patterns)
        for r in catalog.rules:
            self.name_roles.extend((p, r.destination) for p in r.hostnames)
        self._cache: dict[str, HostView] = {}

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
            for pattern, role in self.name_roles:
                if any(name_matches(pattern, n) for n in names):
                    mapped.add(role)
            roles = frozenset(mapped)
            view = HostView(address, roles, self.catalog.vocabulary.expand(roles), names)
        self._cache[address] = view
        return view


def _resolve_vantage(option: str | None, catalog: Catalog, roles: RoleMap, resolver: HostResolver,
                     seen: set[str], flows: Sequence[Any]) -> tuple[frozenset[str], str]:
    if option:
        v = option.strip()
        try:
            return frozenset({str(ipaddress.ip_address(v))}), "option"
        except ValueError:
            pass
        role = catalog.vocabulary.lookup(v)
        if role is None:
            close = catalog.vocabulary.suggest(v, 3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise AuditorError(f"--vantage {v!r} is neither an address nor a known role{hint}")
        hosts = frozenset(a for a in seen if role in resolver(a).effective)
        hosts |= frozenset(_norm_addr(e.text) for e in roles.single_hosts(role) if e.kind == "address")
        return hosts, "option"
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


def collect(records: Iterable[PacketRecord], server_ports: frozenset[tuple[str, int]], *,
            shard: tuple[int, int] = (0, 1)) -> tuple[ConversationResult, NameEvidence]:
    """Packet records -> conversations and name evidence (both mergeable across partial runs).

    ``shard=(k, n)``: keep only worker k's share of n (auditor/parallel.py). A packet belongs to a
    worker by a hash symmetric in its two addresses, so both directions, ICMP errors (by the packet
    they quote) and TFTP transfers (same two hosts) stay together; DHCP (67/68) goes to worker 0,
    where broadcast replies join their requests by xid. The decoder applies the same rule to IPv4
    TCP/UDP before building records (capture/decode.py); the check is inlined: it runs per packet.

    From a CaptureSet, most packets never become records: the builder's fast lane takes them from
    the decoder by their fields (ConversationBuilder.lane), in order with the records around them.
    """
    k, n = shard
    builder = ConversationBuilder(server_ports=server_ports, share=n)
    names = NameEvidence(max_names=MAX_NAMES // n)  # a share's bounds shrink with it (parallel.py)
    feed, observe = builder.feed, names.observe
    if isinstance(records, CaptureSet):
        records.lane = builder.lane()
    with paused_gc():
        for rec in records:
            if n > 1:
                if rec.proto == 17 and (rec.sport in _DHCP_PORTS or rec.dport in _DHCP_PORTS):
                    if k:
                        continue
                else:
                    q = rec.quoted
                    a, b = (q.src, q.dst) if q is not None else (rec.src, rec.dst)
                    if (a[-1] + a[-2] + b[-1] + b[-2]) % n != k:
                        continue
            feed(rec)
            if rec.payload:
                observe(rec)
        return builder.finish(), names


def analyse(records: Iterable[PacketRecord], catalog: Catalog, roles: RoleMap, *,
            vantage: str | None = None) -> Analysis:
    """Sans-IO core of an audit: packet records in, verdicts and rule status out."""
    conv, names = collect(records, catalog.server_ports())
    return judge(conv, names, catalog, roles, vantage=vantage)


def judge(conv: ConversationResult, names: NameEvidence, catalog: Catalog, roles: RoleMap, *,
          vantage: str | None = None) -> Analysis:
    """Conversations and names -> verdicts and rule status."""
    resolver = HostResolver(catalog, roles, names)
    flows = [conv.flows[k] for k in sorted(conv.flows)]
    verdicts = classify_flows(flows, resolver, RuleIndex(catalog.rules))

    seen: set[str] = set()
    for f in flows:
        seen.add(f.key.initiator)
        seen.add(f.key.responder)
    seen.discard("*")
    hosts_by_role: dict[str, set[str]] = defaultdict(set)
    for addr in seen:
        for role in resolver(addr).effective:
            hosts_by_role[role].add(addr)
    # Every roles.yaml entry maps hosts to its role (and to the roles it satisfies), even when the
    # capture never saw them: a single address stands for itself, a network, range or name for
    # "some host(s)" (two placeholders when it can hold several, for same-role rules).
    named = {n for addr in seen for n in resolver(addr).names}
    for e in roles.entries:
        if e.kind == "name" and any(name_matches(e.text, n) for n in named):
            continue  # the capture tied this name to an address: that address already counts
        keys = [_norm_addr(e.text)] if e.kind == "address" else [f"{e.kind}:{e.text}"]
        if (e.kind in ("network", "range") and e.hi > e.lo) or "*" in e.text:
            keys.append(keys[0] + "#2")
        for r in catalog.vocabulary.expand({e.role}):
            hosts_by_role[r].update(keys)
    single_hosts = {role: tuple(_norm_addr(e.text) for e in roles.single_hosts(role) if e.kind == "address")
                    for role in roles.roles}
    single_hosts = {k: v for k, v in single_hosts.items() if v}
    vantage_set, vantage_source = _resolve_vantage(vantage, catalog, roles, resolver, seen, flows)
    ctx = StatusContext(
        hosts_by_role={k: frozenset(v) for k, v in hosts_by_role.items()},
        seen=frozenset(seen),
        single_hosts=single_hosts,
        vantage=vantage_set,
    )
    rule_results = rule_status(catalog.rules, verdicts, ctx)
    return Analysis(conv, names, resolver, verdicts, rule_results, vantage_set, vantage_source)


def run_audit(request: AuditRequest) -> AuditOutcome:
    started = _now()
    catalog = load_catalog(request.rules_dir, list(request.extra_rules))
    roles = load_roles(request.roles_path, catalog.vocabulary)
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
    jobs = request.jobs if request.jobs > 0 else auto_jobs(capture, request.engine)
    if "-" in capture.paths:
        jobs = 1  # standard input can be read once, by one process
    if jobs > 1:
        conv, names = collect_parallel(capture, catalog.server_ports(), jobs, request.progress)
    else:
        conv, names = collect(capture, catalog.server_ports())
    analysis = judge(conv, names, catalog, roles, vantage=request.vantage)
    doc = build_document(
        version=__version__, started=started, finished=_now(), request_command=request.command_line,
        engine=request.engine, catalog=catalog, roles=roles, capture=capture,
        conv=analysis.conv, names=analysis.names, verdicts=analysis.verdicts, rule_results=analysis.rules,
        resolver=analysis.resolver, vantage=analysis.vantage, vantage_source=analysis.vantage_source,
        extra_rules=[str(p) for p in request.extra_rules],
    )
    return AuditOutcome(doc, analysis, capture)
