"""The catalog: rules/*.yaml and rules/roles.yaml -> Catalog of FlowRule and a role Vocabulary.

Loading collects every problem of every file (pySigma's collect-errors mode) and raises one
CatalogError at the end, each problem formatted ``rules/storefront.yaml:41 rules[3].ports: ...``.
Site files given with ``--rules`` use the same schema and may add roles of their own.

Where things live (every public name is importable from ``auditor.catalog``):
  vocabulary.py  roles, features and the Vocabulary (aliases, 'satisfies', feature-implied roles)
  rule.py        FlowRule, Citation and the layers: the rule vocabulary every layer may import
  model.py       the Catalog object and its queries, product sections, alternative groups, source document
  fields.py      field validation of the YAML mappings, ports, the source document; located problems
  load.py        the loader: files -> Catalog (load_catalog, catalog_files, validate_files)
  export.py      rules as JSON and CSV
"""

from __future__ import annotations

from auditor.catalog.export import EXPORT_FIELDS, citation_record, citation_text, export_csv, export_json, rule_record
from auditor.catalog.load import (
    ALTERNATIVES_FILE,
    FAMILIES,
    PROTOCOLS,
    ROLES_FILE,
    SUPPLEMENT_DIR,
    catalog_files,
    load_catalog,
    validate_files,
)
from auditor.catalog.model import (
    DYNAMIC_RANGE,
    SERVER_RANGE_MAX,
    AlternativeGroup,
    Catalog,
    ProductSection,
    SourceDocument,
)
from auditor.catalog.vocabulary import Feature, Role, UnknownRoleError, Vocabulary, did_you_mean, normalise

__all__ = [
    "ALTERNATIVES_FILE", "DYNAMIC_RANGE", "EXPORT_FIELDS", "FAMILIES", "PROTOCOLS", "ROLES_FILE", "SERVER_RANGE_MAX",
    "SUPPLEMENT_DIR", "AlternativeGroup", "Catalog", "Feature", "ProductSection", "Role", "SourceDocument",
    "UnknownRoleError", "Vocabulary", "catalog_files", "citation_record", "citation_text", "did_you_mean",
    "export_csv", "export_json", "load_catalog", "normalise", "rule_record", "validate_files",
]
