"""Limits on roles and rule files (auditor/yamlsafe.py): size, aliases, nesting.

Each refusal is one error naming the file (and the line, for what is inside it); none of them reads
further than the size limit or expands anything. The same files through the real command, under a
memory limit: tests/test_config_limits_cli.py.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from auditor.catalog import load_catalog
from auditor.errors import AuditorError, CatalogError, RolesError
from auditor.roles import load_roles, parse_roles
from auditor.yamlsafe import (
    DEFAULT_MAX_CONFIG_BYTES,
    MAX_CONFIG_BYTES_ENV,
    MAX_DEPTH,
    YamlError,
    compose_yaml,
    load_yaml,
    load_yaml_text,
    max_config_bytes,
    read_config,
)
from tests.test_roles import FakeVocabulary

V = FakeVocabulary()

LAUGHS = """\
a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
"""The billion laughs: 324 bytes, 9^9 strings once expanded."""


def deep_flow(levels: int) -> str:
    return "roles:\n  VDA: " + "[" * levels + "10.0.0.1" + "]" * levels + "\n"


def deep_block(levels: int) -> str:
    return "".join("  " * i + "- \n" for i in range(levels))


# --- aliases -------------------------------------------------------------------------------------


def test_the_billion_laughs_is_refused_at_its_first_alias() -> None:
    with pytest.raises(YamlError) as exc:
        load_yaml_text(LAUGHS, "bomb.yaml")
    assert exc.value.problems == ["bomb.yaml:2: YAML alias *a is not allowed in roles and rule files "
                                  "(write the value out)"]


@pytest.mark.parametrize(("text", "line"), [
    ("base: &b {ports: [80]}\nrule:\n  <<: *b\n", 3),  # a merge key needs an alias too
    ("a: 1\nb: *undefined\n", 2),
    ("a: &x [*x]\n", 1),  # recursive
    ("- &x one\n- *x\n", 2),
])
def test_every_alias_is_refused_with_its_line(text: str, line: int) -> None:
    with pytest.raises(YamlError, match=rf"^f\.yaml:{line}: YAML alias \*\w+ is not allowed"):
        load_yaml_text(text, "f.yaml")


def test_an_anchor_without_alias_is_harmless() -> None:
    data, lines = load_yaml_text("a: &x [1, 2]\nb: 3\n", "f.yaml")
    assert data == {"a": [1, 2], "b": 3}
    assert lines.line("b") == 2


def test_a_roles_file_with_aliases_is_refused() -> None:
    text = "roles:\n  VDA: &v [10.0.0.1]\n  StoreFront: *v\n"
    with pytest.raises(RolesError, match=r"^r\.yaml:3: YAML alias \*v is not allowed"):
        parse_roles(text, "r.yaml", V)
    with pytest.raises(RolesError, match=r"^bomb\.yaml:2: YAML alias"):
        parse_roles(LAUGHS, "bomb.yaml", V)


def test_a_site_rule_file_with_aliases_is_refused(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(LAUGHS, encoding="utf-8")
    with pytest.raises(CatalogError) as exc:
        load_catalog(extra=[site])
    assert exc.value.problems == [f"{site}:2: YAML alias *a is not allowed in roles and rule files "
                                  "(write the value out)"]


# --- nesting -------------------------------------------------------------------------------------


def test_nesting_up_to_the_limit_loads() -> None:
    data, _ = load_yaml_text("[" * MAX_DEPTH + "1" + "]" * MAX_DEPTH, "f.yaml")
    for _ in range(MAX_DEPTH):
        assert isinstance(data, list) and len(data) == 1
        data = data[0]
    assert data == 1


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000, 100_000])
def test_deeper_nesting_is_one_error_with_its_line(levels: int) -> None:
    # 100,000 levels overflowed libyaml's recursive composer (a segmentation fault), and PyYAML's
    # pure-Python one raised RecursionError: both are now refused as the events arrive.
    with pytest.raises(YamlError, match=rf"^f\.yaml:1: nested more than {MAX_DEPTH} levels deep$"):
        load_yaml_text("[" * levels + "]" * levels, "f.yaml")
    with pytest.raises(YamlError, match=rf"^f\.yaml:{MAX_DEPTH + 1}: nested more than {MAX_DEPTH} levels"):
        load_yaml_text(deep_block(max(levels, MAX_DEPTH + 1) if levels < 1000 else 1000), "f.yaml")


def test_deep_roles_file_is_a_roles_error() -> None:
    with pytest.raises(RolesError, match=rf"^r\.yaml:2: nested more than {MAX_DEPTH} levels deep$"):
        parse_roles(deep_flow(100_000), "r.yaml", V)


def test_the_composer_gives_what_pyyaml_gives() -> None:
    """The composer that replaced libyaml's: same tags, values and lines on the bundled catalog."""
    for path in sorted(Path(load_catalog().files[0]).parent.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert load_yaml_text(text, path.name)[0] == yaml.safe_load(text), path
    text = "a: !!str 1\nb: '2'\nc: 2026-12-06\nd: ~\ne: yes\nf: [1.5, .inf]\n? [x, y]\n: z\n"
    mine, theirs = compose_yaml(text, "t.yaml"), yaml.compose(text, Loader=yaml.SafeLoader)

    def shape(n: yaml.Node) -> object:
        if isinstance(n, yaml.ScalarNode):
            return n.tag, n.value, n.start_mark.line
        if isinstance(n, yaml.SequenceNode):
            return n.tag, [shape(i) for i in n.value], n.start_mark.line
        assert isinstance(n, yaml.MappingNode)
        return n.tag, [(shape(k), shape(v)) for k, v in n.value], n.start_mark.line

    assert mine is not None and shape(mine) == shape(theirs)
    assert compose_yaml("", "t.yaml") is None and compose_yaml("# nothing\n", "t.yaml") is None
    with pytest.raises(yaml.YAMLError, match="another document"):
        compose_yaml("a: 1\n---\nb: 2\n", "t.yaml")


# --- size ----------------------------------------------------------------------------------------


def test_the_default_limit_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_CONFIG_BYTES_ENV, raising=False)
    assert max_config_bytes() == DEFAULT_MAX_CONFIG_BYTES == 64 * 1024 * 1024
    monkeypatch.setenv(MAX_CONFIG_BYTES_ENV, "1_000")
    assert max_config_bytes() == 1000
    for bad in ("0", "-5", "lots", "1.5"):
        monkeypatch.setenv(MAX_CONFIG_BYTES_ENV, bad)
        with pytest.raises(AuditorError, match=rf"^{MAX_CONFIG_BYTES_ENV}='{bad}': expected a number of bytes"):
            max_config_bytes()


def test_a_file_at_the_limit_loads_one_byte_more_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "roles:\n  VDA: [10.0.0.1]\n"
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(MAX_CONFIG_BYTES_ENV, str(len(text)))
    assert len(load_roles(path, V).entries) == 1
    assert load_yaml(path)[0] == {"roles": {"VDA": ["10.0.0.1"]}}
    monkeypatch.setenv(MAX_CONFIG_BYTES_ENV, str(len(text) - 1))
    wanted = (f"{path}: larger than {len(text) - 1} bytes, the limit for roles and rule files "
              f"(set {MAX_CONFIG_BYTES_ENV} to change it)")
    with pytest.raises(RolesError) as exc:
        load_roles(path, V)
    assert str(exc.value) == wanted
    with pytest.raises(YamlError) as yexc:
        load_yaml(path)
    assert yexc.value.problems == [wanted]


def test_a_site_rule_file_over_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("# padding\n" * 5000 + "product: Site\nrules: []\n", encoding="utf-8")  # 50 kB
    size = site.stat().st_size
    monkeypatch.setenv(MAX_CONFIG_BYTES_ENV, str(size))  # the bundled files are 27 kB at most
    load_catalog(extra=[site])
    monkeypatch.setenv(MAX_CONFIG_BYTES_ENV, str(size - 1))
    with pytest.raises(CatalogError) as exc:
        load_catalog(extra=[site])
    assert exc.value.problems == [f"{site}: larger than {size - 1} bytes, the limit for roles and rule files "
                                  f"(set {MAX_CONFIG_BYTES_ENV} to change it)"]


def test_a_large_sparse_file_is_refused_without_reading_it(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_CONFIG_BYTES_ENV, raising=False)
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(8 * 1024**3)  # 8 GiB of holes
    with pytest.raises(RolesError, match=rf"huge\.yaml: larger than {DEFAULT_MAX_CONFIG_BYTES} bytes"):
        load_roles(path, V)


@contextlib.contextmanager
def zeros_in_fifo(path: Path) -> Iterator[threading.Thread]:
    """A FIFO at path that a thread fills with zeros for as long as somebody reads it (/dev/zero
    that stat() does not show as a regular file)."""
    os.mkfifo(path)
    stop = threading.Event()

    def feed() -> None:
        with contextlib.suppress(OSError), path.open("wb") as fh:
            while not stop.is_set():
                fh.write(b"\0" * 65536)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        yield writer
    finally:
        stop.set()
        # Unblock a writer still waiting for a reader, and drain one still writing.
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                writer.join(0.2)
                while writer.is_alive():
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 1 << 20)
                    writer.join(0.05)
            finally:
                os.close(fd)
        writer.join(5)


def test_a_fifo_that_never_ends_stops_at_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_CONFIG_BYTES_ENV, str(1 << 20))
    fifo = tmp_path / "roles.fifo"
    with zeros_in_fifo(fifo) as writer:
        with pytest.raises(RolesError, match=rf"^{fifo}: larger than {1 << 20} bytes"):
            load_roles(fifo, V)
        writer.join(10)
        assert not writer.is_alive()  # the reader closed: the writer got EPIPE and stopped
    os.unlink(fifo)
    with zeros_in_fifo(fifo), pytest.raises(YamlError, match=rf"^{fifo}: larger than {1 << 20} bytes"):
        read_config(fifo, str(fifo))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_stops_at_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_CONFIG_BYTES_ENV, "100000")
    with pytest.raises(RolesError, match=r"^/dev/zero: larger than 100000 bytes"):
        load_roles(Path("/dev/zero"), V)
    with pytest.raises(CatalogError, match=r"/dev/zero: larger than 100000 bytes"):
        load_catalog(extra=[Path("/dev/zero")])


def test_unreadable_files_keep_their_errors(tmp_path: Path) -> None:
    with pytest.raises(RolesError, match=r"absent\.yaml: cannot read roles file: No such file"):
        load_roles(tmp_path / "absent.yaml", V)
    with pytest.raises(RolesError, match=r"cannot read roles file: Is a directory"):
        load_roles(tmp_path, V)
    with pytest.raises(YamlError, match=r"absent\.yaml:0: cannot read file: No such file"):
        load_yaml(tmp_path / "absent.yaml")
