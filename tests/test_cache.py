"""What a run prepares for the next (auditor/cache.py): the catalog as built, the compiled template.

Each test has a cache folder of its own (``PCAP_AUDIT_CACHE``); a cached result must be the result
the work itself gives, and anything amiss (turned off, damaged, other inputs, an unsafe folder)
must leave the run doing the work itself, never failing."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
from pathlib import Path

import jinja2
import pytest

from auditor import cache
from auditor.catalog import load as catalog_load
from auditor.catalog import load_catalog
from auditor.catalog.model import Catalog
from auditor.errors import CatalogError
from auditor.report.html import render_html
from auditor.resources import rules_dir, templates_dir
from tests.audit_doc_factory import make_audit_document


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV, str(where))
    return where


def entries(where: Path, kind: str) -> list[Path]:
    return sorted(where.glob(f"{kind}-*"))


def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("the catalog was parsed again")

    monkeypatch.setattr(catalog_load, "load_yaml_text", refuse)


def same_catalog(a: Catalog, b: Catalog) -> bool:
    """Every field equal; the vocabulary (a plain class) by its attributes."""
    return all(getattr(a, f.name) == getattr(b, f.name) for f in dataclasses.fields(a) if f.name != "vocabulary") \
        and vars(a.vocabulary) == vars(b.vocabulary)


def test_the_folder_is_made_private(folder: Path) -> None:
    assert cache.folder() == folder
    assert folder.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("off", ["0", "off", "OFF", "no", "false"])
def test_turned_off(monkeypatch: pytest.MonkeyPatch, off: str) -> None:
    monkeypatch.setenv(cache.ENV, off)
    assert cache.folder() is None
    cache.store("catalog-x", b"data")
    assert cache.load("catalog-x") is None


def test_the_default_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.folder() == tmp_path / "xdg" / "pcap-audit"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/not/used")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.folder() == tmp_path / "home" / ".cache" / "pcap-audit"


def test_a_folder_others_may_write_to_is_not_used(folder: Path) -> None:
    folder.mkdir()
    folder.chmod(0o777)
    assert cache.folder() is None
    folder.chmod(0o755)
    assert cache.folder() == folder


def test_a_folder_that_cannot_be_made_is_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv(cache.ENV, str(tmp_path / "file" / "cache"))
    assert cache.folder() is None
    cache.store("catalog-x", b"data")  # quietly nothing
    assert cache.load("catalog-x") is None
    assert load_catalog().rules  # and the work is done as without a cache


def test_entries_are_kept_whole_and_pruned(folder: Path) -> None:
    for i in range(cache.KEEP + 3):
        name = cache.key("catalog", str(i))
        cache.store(name, b"x" * i)
        os.utime(folder / name, ns=(i * 10**9, i * 10**9))  # in the order made, whatever the clock
    cache.store(cache.key("template", "t"), b"t")
    kept = entries(folder, "catalog")
    assert len(kept) == cache.KEEP
    assert cache.load(cache.key("catalog", str(cache.KEEP + 2))) == b"x" * (cache.KEEP + 2)
    assert cache.load(cache.key("catalog", "0")) is None  # the oldest went
    assert len(entries(folder, "template")) == 1
    assert not list(folder.glob(".tmp-*"))


def test_what_a_killed_run_left_is_removed_in_time(folder: Path) -> None:
    cache.store(cache.key("catalog", "a"), b"a")
    old, new = folder / ".tmp-old", folder / ".tmp-new"
    for path in (old, new):
        path.write_bytes(b"half")
    os.utime(old, ns=(0, 0))
    cache.store(cache.key("catalog", "b"), b"b")
    assert not old.exists() and new.exists()  # another run may be writing that one
    assert cache.load(cache.key("catalog", "a")) == b"a"


def test_keys_depend_on_every_part_and_on_their_bounds() -> None:
    assert cache.key("catalog", "ab", "c") != cache.key("catalog", "a", "bc")
    assert cache.key("catalog", b"a") == cache.key("catalog", "a")
    assert cache.key("catalog", "a") != cache.key("template", "a")


def test_the_code_fingerprint_follows_every_module(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub" / "__pycache__").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    before = cache.code_fingerprint(pkg)
    (pkg / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"compiled")
    (pkg / "notes.txt").write_text("not code")
    assert cache.code_fingerprint(pkg) == before
    os.utime(pkg / "sub" / "b.py", ns=(1, 1))
    assert cache.code_fingerprint(pkg) != before
    touched = cache.code_fingerprint(pkg)
    (pkg / "sub" / "_kernel.so").write_bytes(b"\x7fELF")
    assert cache.code_fingerprint(pkg) != touched


def test_the_catalog_comes_back_as_built(folder: Path) -> None:
    cold = load_catalog()
    assert len(entries(folder, "catalog")) == 1
    with pytest.MonkeyPatch.context() as mp:
        no_parsing(mp)
        warm = load_catalog()
    assert same_catalog(warm, cold)
    assert warm.digest == cold.digest and warm.by_id(cold.rules[0].id) == cold.rules[0]
    # --catalog document is another catalog, another entry
    document = load_catalog(document_only=True)
    assert len(document.rules) < len(cold.rules)
    assert len(entries(folder, "catalog")) == 2


def test_without_a_cache_the_catalog_is_the_same(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = load_catalog()
    monkeypatch.setenv(cache.ENV, "off")
    assert same_catalog(load_catalog(), cached)


def test_an_edited_rules_file_is_read_again(folder: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(rules_dir(), rules)
    before = load_catalog(rules)
    target = rules / "storefront.yaml"
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace("description: ", "description: EDITED ", 1), encoding="utf-8")
    after = load_catalog(rules)
    assert after.digest != before.digest
    assert any(r.description.startswith("EDITED") for r in after.rules)
    assert not any(r.description.startswith("EDITED") for r in before.rules)
    assert len(entries(folder, "catalog")) == 2


def test_a_site_file_is_part_of_the_key(folder: Path) -> None:
    base = load_catalog()
    site = Path(str(folder.parent / "site.yaml"))
    site.write_text(
        "product: Site\nrules:\n  - id: site-001\n    source: User Device\n    destination: StoreFront\n"
        "    protocols: [tcp]\n    ports: [8443]\n    type: HTTPS\n    description: Site store\n",
        encoding="utf-8")
    with_site = load_catalog(None, [site])
    assert with_site.by_id("site-001") is not None and base.by_id("site-001") is None
    assert load_catalog(None, [site]).by_id("site-001") is not None


def test_a_damaged_entry_is_built_again(folder: Path) -> None:
    cold = load_catalog()
    [entry] = entries(folder, "catalog")
    for damage in (b"", b"not a pickle", pickle.dumps({"a": "dict"})):
        entry.write_bytes(damage)
        assert same_catalog(load_catalog(), cold)
        assert entry.read_bytes() != damage  # stored again, whole


def test_a_catalog_with_problems_is_never_kept(folder: Path, fixture_rules: Path) -> None:
    (fixture_rules / "broken.yaml").write_text("product: Broken\nrules: [1, 2\n", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(CatalogError):
            load_catalog(fixture_rules)
    assert entries(folder, "catalog") == []


def refuse_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the template was compiled again")

    monkeypatch.setattr(jinja2.Environment, "compile", refuse)


def test_the_template_comes_back_compiled(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = make_audit_document(flows=40)
    cold = render_html(doc)
    [entry] = entries(folder, "template")
    with pytest.MonkeyPatch.context() as mp:
        refuse_compiling(mp)
        assert render_html(doc) == cold
    monkeypatch.setenv(cache.ENV, "off")
    assert render_html(doc) == cold  # and without a cache, the same page
    monkeypatch.setenv(cache.ENV, str(folder))
    entry.write_bytes(b"damaged")
    assert render_html(doc) == cold
    assert entry.read_bytes() != b"damaged"  # compiled and stored again


def test_another_template_source_is_compiled(folder: Path, tmp_path: Path) -> None:
    doc = make_audit_document(flows=10)
    render_html(doc)
    mine = tmp_path / "templates"
    shutil.copytree(templates_dir(), mine)
    page = mine / "report.html.j2"
    page.write_text(page.read_text(encoding="utf-8").replace("<body", "<!-- site copy --><body", 1),
                    encoding="utf-8")
    assert "<!-- site copy -->" in render_html(doc, templates_dir=mine)
    assert len(entries(folder, "template")) == 2
    assert "<!-- site copy -->" not in render_html(doc)
