"""The catalog names the document it transcribes (rules/roles.yaml `source:`), and when it was last
reviewed against it; reports show both first (SPEC §5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.catalog import SourceDocument, load_catalog
from auditor.errors import CatalogError

SOURCE = """\
source:
  title: Communication   Ports Used by Citrix Technologies
  publisher: Citrix
  revision: null
  reviewed: {reviewed}
"""


def with_source(rules: Path, block: str) -> Path:
    roles = rules / "roles.yaml"
    roles.write_text(block + roles.read_text(encoding="utf-8"), encoding="utf-8")
    return rules


def problems(rules: Path, extra: list[Path] | None = None) -> list[str]:
    with pytest.raises(CatalogError) as exc:
        load_catalog(rules, extra or [])
    return exc.value.problems


def test_the_bundled_catalog_names_its_document(real_rules: Path) -> None:
    assert load_catalog(real_rules).source == SourceDocument(
        title="Communication Ports Used by Citrix Technologies", publisher="Citrix", reviewed="2026-12-06",
        revision=None,
        url="https://docs.citrix.com/en-us/tech-zone/build/tech-papers/citrix-communication-ports.html")


@pytest.mark.parametrize("reviewed", ["2026-12-06", '"2026-12-06"'])
def test_reviewed_date_quoted_or_not(fixture_rules: Path, reviewed: str) -> None:
    cat = load_catalog(with_source(fixture_rules, SOURCE.format(reviewed=reviewed)))
    assert cat.source == SourceDocument("Communication Ports Used by Citrix Technologies", "Citrix", "2026-12-06")


def test_a_catalog_without_source_loads(fixture_rules: Path) -> None:
    assert load_catalog(fixture_rules).source is None


def test_the_source_is_part_of_the_digest(fixture_rules: Path) -> None:
    before = load_catalog(fixture_rules).digest
    assert load_catalog(with_source(fixture_rules, SOURCE.format(reviewed="2026-12-06"))).digest != before


@pytest.mark.parametrize(("block", "message"), [
    (SOURCE.format(reviewed='"06/12/2026"'), "roles.yaml:5 source.reviewed: expected a date YYYY-MM-DD"),
    (SOURCE.format(reviewed='"2026-02-30"'), "source.reviewed: expected a date YYYY-MM-DD"),
    (SOURCE.format(reviewed="2026-12-06 10:00:00"), "source.reviewed: expected a date YYYY-MM-DD"),
    (SOURCE.format(reviewed="2026-12-06").replace("  revision: null\n", ""),
     "roles.yaml:1 source: state the document's 'revision' (null when the copy carries none)"),
    (SOURCE.format(reviewed="2026-12-06").replace("  publisher: Citrix\n", ""),
     "source: missing required field 'publisher'"),
    (SOURCE.format(reviewed="2026-12-06") + "  url: http://docs.example/x\n",
     "source.url: expected an https:// address"),
    (SOURCE.format(reviewed="2026-12-06") + "  edition: 3\n", "source.edition: unknown key"),
])
def test_bad_source_blocks_name_file_line_and_field(fixture_rules: Path, block: str, message: str) -> None:
    found = problems(with_source(fixture_rules, block))
    assert any(message in p for p in found), found


def test_a_site_file_cannot_name_the_catalogs_document(fixture_rules: Path, tmp_path: Path) -> None:
    site = tmp_path / "site-roles.yaml"
    site.write_text(SOURCE.format(reviewed="2026-12-06") + "roles:\n  - name: Site Backup Server\n",
                    encoding="utf-8")
    found = problems(fixture_rules, [site])
    assert any("site-roles.yaml:1 source: only the catalog's own roles.yaml" in p for p in found), found
