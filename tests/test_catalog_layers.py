"""Catalog layers (document, supplement, site), features, citations and alternative groups."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from auditor.catalog import load_catalog
from auditor.errors import CatalogError
from auditor.resources import rules_dir

SUPPLEMENT = """\
product: Test topic (supplement)
roles:
  - name: Test Service
    hostnames: ["*.test-service.example"]
rules:
  - id: supplement-test-001
    source: Virtual Delivery Agent
    destination: Test Service
    protocols: [tcp]
    ports: [443]
    type: HTTPS
    description: A flow documented elsewhere.
    citation: {title: "A Citrix page", section: "Ports", url: "https://docs.citrix.com/en-us/example.html"}
  - id: supplement-test-002
    source: User Device
    destination: Virtual Delivery Agent
    protocols: [tcp]
    ports: [8008]
    type: TCP
    description: HTML5 to the VDA.
    feature: html5-websocket
    uncited: searched Citrix's documentation for the port and found no page.
"""


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    shutil.copytree(rules_dir(), d)
    (d / "supplement" / "test.yaml").write_text(SUPPLEMENT, encoding="utf-8")
    return d


def test_layers_and_document_only(rules_copy: Path, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SUPPLEMENT.replace("supplement-test", "site-test").replace("Test topic (supplement)", "Site")
                    .replace("  - name: Test Service\n    hostnames: [\"*.test-service.example\"]\n", "  []\n")
                    .replace("roles:\n  []\n", ""), encoding="utf-8")
    cat = load_catalog(rules_copy, [site])
    layers = {r.id: r.layer for r in cat.rules}
    assert layers["cvad-001"] == "document"
    assert layers["supplement-test-001"] == "supplement"
    assert layers["site-test-001"] == "site"
    first = cat.by_id("supplement-test-001")
    assert first is not None and first.citation is not None and first.citation.section == "Ports"
    second = cat.by_id("supplement-test-002")
    assert second is not None and second.feature == "html5-websocket" and second.uncited
    doc = load_catalog(rules_copy, [site], document_only=True)
    ids = {r.id for r in doc.rules}
    assert "supplement-test-001" not in ids and "cvad-001" in ids and "site-test-001" in ids
    assert doc.vocabulary.lookup("Test Service") == "Test Service"  # roles stay in the vocabulary
    assert "supplement" not in doc.layers and "supplement" in cat.layers


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("    citation: {title: \"A Citrix page\", section: \"Ports\", "
                         "url: \"https://docs.citrix.com/en-us/example.html\"}\n", ""),
     "rules[0]: a supplement rule needs a 'citation'"),
    (lambda t: t.replace("https://docs.citrix.com", "http://docs.citrix.com"), "expected an https:// address"),
    (lambda t: t.replace("feature: html5-websocket", "feature: html5-websockets"),
     "unknown feature 'html5-websockets' (did you mean 'html5-websocket'?)"),
    (lambda t: t.replace("    uncited: searched", "    citation: {title: x, url: \"https://x.example\"}\n"
                                                 "    uncited: searched"), "not both"),
])
def test_supplement_problems_name_file_and_line(rules_copy: Path, edit: object, message: str) -> None:
    path = rules_copy / "supplement" / "test.yaml"
    path.write_text(edit(SUPPLEMENT), encoding="utf-8")  # type: ignore[operator]
    with pytest.raises(CatalogError) as e:
        load_catalog(rules_copy)
    assert any(p.startswith("rules/supplement/test.yaml:") and message in p for p in e.value.problems), \
        e.value.problems


def test_alternative_groups_are_checked(rules_copy: Path) -> None:
    alt = rules_copy / "alternatives.yaml"
    alt.write_text(alt.read_text(encoding="utf-8") + """\
  - id: broken
    title: Broken
    members: [cvad-015, no-such-rule]
  - id: lonely
    title: Lonely
    members: [cvad-001]
  - id: twice
    title: Twice
    members: [cvad-016, cvad-002]
""", encoding="utf-8")
    with pytest.raises(CatalogError) as e:
        load_catalog(rules_copy)
    text = "\n".join(e.value.problems)
    assert "no rule 'no-such-rule'" in text
    assert "a group needs two rules or more" in text
    assert "rule 'cvad-016' is already in group 'hdx-user-device'" in text


def test_feature_detection_rules_must_exist(rules_copy: Path) -> None:
    roles = rules_copy / "roles.yaml"
    roles.write_text(roles.read_text(encoding="utf-8").replace("detected_by: [netscaler-002]",
                                                                "detected_by: [netscaler-999]"), encoding="utf-8")
    with pytest.raises(CatalogError) as e:
        load_catalog(rules_copy)
    assert any("rules/roles.yaml:" in p and "no rule 'netscaler-999'" in p for p in e.value.problems)


def test_document_only_drops_supplement_members_of_groups(rules_copy: Path) -> None:
    alt = rules_copy / "alternatives.yaml"
    alt.write_text(alt.read_text(encoding="utf-8") + """\
  - id: mixed
    title: Mixed
    members: [supplement-test-001, cvad-001]
""", encoding="utf-8")
    full = load_catalog(rules_copy)
    assert any(g.id == "mixed" for g in full.alternatives)
    doc = load_catalog(rules_copy, document_only=True)
    assert not any(g.id == "mixed" for g in doc.alternatives)  # one member left is no group
