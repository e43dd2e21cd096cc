"""The Catalog object and its queries: every rule in stable order, the product sections, the
alternative groups, the source document, the rules between two roles and the servers' ports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from auditor.catalog.rule import LAYER_DOCUMENT, LAYERS, FlowRule
from auditor.catalog.vocabulary import Feature, Vocabulary

# Ranges wider than this are client (ephemeral) ranges, not a server's listening port: no evidence
# of direction (SPEC §3: the dynamic range 49152-65535 is no evidence).
SERVER_RANGE_MAX = 64
DYNAMIC_RANGE = (49152, 65535)


@dataclass(frozen=True, slots=True)
class AlternativeGroup:
    """Rules that are alternatives of one another (rules/alternatives.yaml): one of them is enough."""

    id: str
    title: str
    members: tuple[str, ...]
    """Rule ids, the most secure (or preferred) first: an unobserved group is reported by it."""
    note: str = ""


@dataclass(frozen=True, slots=True)
class ProductSection:
    """One rule file: a section of the seed document (or a site's own file)."""

    product: str
    file: str
    """The file as errors name it ('rules/storefront.yaml')."""
    order: int
    port_data: bool
    """False for sections that only link elsewhere (the report says so)."""
    link: str = ""
    rules: tuple[FlowRule, ...] = ()
    layer: str = LAYER_DOCUMENT


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """The document the catalog transcribes (rules/roles.yaml ``source:``): every report names it."""

    title: str
    publisher: str
    reviewed: str
    """ISO date (YYYY-MM-DD) the catalog was last reviewed against the document."""
    revision: str | None = None
    """The document's own revision or date; None when the copy carries none."""
    url: str = ""


@dataclass(frozen=True)
class Catalog:
    """Every rule of the catalog and its site files, with the role vocabulary they use."""

    rules: tuple[FlowRule, ...]
    """In stable order: section order, then id (natural order)."""
    sections: tuple[ProductSection, ...]
    vocabulary: Vocabulary
    digest: str
    """'sha256:' + hex digest of the bytes of every file read, in load order."""
    files: tuple[Path, ...]
    """Every file read, in load order (roles file, rule files by name, then site files)."""
    extra: tuple[Path, ...] = ()
    """The site files among ``files`` (given with --rules)."""
    alternatives: tuple[AlternativeGroup, ...] = ()
    """Groups of rules that stand for one another (members present in ``rules`` only)."""
    layers: tuple[str, ...] = LAYERS
    """The layers whose rules are in ``rules`` (``--catalog document`` leaves the supplement out)."""
    source: SourceDocument | None = None
    """The document of the document layer, when the catalog's roles.yaml names it (``source:``)."""
    _by_id: dict[str, FlowRule] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_id.update({r.id: r for r in self.rules})

    @property
    def features(self) -> dict[str, Feature]:
        """The deployment features of the vocabulary, by id."""
        return self.vocabulary.features

    def by_id(self, rule_id: str) -> FlowRule | None:
        return self._by_id.get(rule_id)

    def rules_for(self, source_roles: Iterable[str], dest_roles: Iterable[str]) -> list[FlowRule]:
        """Rules whose source is played by one of source_roles and destination by one of dest_roles."""
        src = self.vocabulary.expand(source_roles)
        dst = self.vocabulary.expand(dest_roles)
        return [r for r in self.rules if r.source in src and r.destination in dst]

    def server_ports(self) -> frozenset[tuple[str, int]]:
        """(protocol, port) pairs that are a specific destination port of some rule.

        Small ranges count port by port; the dynamic range and ranges wider than
        SERVER_RANGE_MAX ports are a client's ports, no evidence of who serves (SPEC §3).
        """
        out: set[tuple[str, int]] = set()
        for r in self.rules:
            for lo, hi in r.ports:
                if (lo, hi) == DYNAMIC_RANGE or hi - lo + 1 > SERVER_RANGE_MAX:
                    continue
                for proto in r.protocols:
                    if proto != "icmp":
                        out.update((proto, p) for p in range(lo, hi + 1))
        return frozenset(out)

    def products_without_port_data(self) -> tuple[ProductSection, ...]:
        """Sections that only link elsewhere (the report names them and their link)."""
        return tuple(s for s in self.sections if not s.port_data)

    def products(self) -> tuple[str, ...]:
        return tuple(s.product for s in self.sections)
