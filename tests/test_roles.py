"""roles.yaml parsing and resolution (SPEC §2)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import ClassVar

import pytest

from auditor.errors import RolesError
from auditor.roles import load_roles, name_matches, parse_roles


class FakeVocabulary:
    """Just enough of the catalog vocabulary for roles.py (the real one is tested with the catalog)."""

    canon: ClassVar[dict[str, str]] = {
             "delivery controller": "Delivery Controller", "controller": "Delivery Controller",
             "virtual delivery agent": "Virtual Delivery Agent", "vda": "Virtual Delivery Agent",
             "storefront server": "StoreFront Server", "storefront": "StoreFront Server",
             "citrix cloud": "Citrix Cloud"}

    def lookup(self, name: str) -> str | None:
        return self.canon.get(" ".join(name.lower().split()))

    def suggest(self, name: str, n: int = 3) -> list[str]:
        hits = difflib.get_close_matches(name.lower(), list(self.canon), n=n, cutoff=0.5)
        return list(dict.fromkeys(self.canon[h] for h in hits))


V = FakeVocabulary()

SPEC_EXAMPLE = """\
roles:
  Delivery Controller: [10.0.1.10, 10.0.1.11]
  Virtual Delivery Agent:
    - 10.0.20.0/24
    - 10.0.21.5-10.0.21.50
    - 2001:db8::/64
  StoreFront Server: [sf01.corp.example, 10.0.1.20]
  Citrix Cloud: ["*.citrixworkspacesapi.net", "*.cloud.com"]
"""


def test_spec_example_resolves_every_entry_kind() -> None:
    m = parse_roles(SPEC_EXAMPLE, "roles.yaml", V)
    assert m.roles_of("10.0.1.10") == {"Delivery Controller"}
    assert m.roles_of("10.0.20.77") == {"Virtual Delivery Agent"}
    assert m.roles_of("10.0.21.5") == {"Virtual Delivery Agent"}
    assert m.roles_of("10.0.21.50") == {"Virtual Delivery Agent"}
    assert m.roles_of("10.0.21.51") == frozenset()
    assert m.roles_of("2001:db8::1234") == {"Virtual Delivery Agent"}
    assert m.roles_of("192.0.2.1", ["sf01.corp.example"]) == {"StoreFront Server"}
    assert m.roles_of("192.0.2.2", ["eu.a.b.citrixworkspacesapi.net"]) == {"Citrix Cloud"}
    assert m.roles_of("192.0.2.3", ["citrixworkspacesapi.net.evil.example"]) == frozenset()
    assert [e.text for e in m.single_hosts("Delivery Controller")] == ["10.0.1.10", "10.0.1.11"]


def test_several_roles_per_host_and_aliases_case_insensitive() -> None:
    m = parse_roles("roles:\n  controller: [10.0.0.1]\n  STOREFRONT: [10.0.0.1]\n", "r.yaml", V)
    assert m.roles_of("10.0.0.1") == {"Delivery Controller", "StoreFront Server"}


def test_wildcards_match_any_depth() -> None:
    assert name_matches("*.nssvc.net", "a.g.nssvc.net")
    assert name_matches("*.nssvc.net", "X.NSSVC.NET.")
    assert not name_matches("*.nssvc.net", "nssvc.net.evil")
    assert not name_matches("cis.citrix.com", "x.cis.citrix.com")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("roles:\n  Storefront Srv: [10.0.0.1]\n",
         "unknown role 'Storefront Srv' at r.yaml:2; did you mean 'StoreFront Server'"),
        ("roles:\n  VDA: [10.0.0.300]\n", "r.yaml:2: invalid address '10.0.0.300'"),
        ("roles:\n  VDA: [10.0.0.0/33]\n", "r.yaml:2: invalid network '10.0.0.0/33'"),
        ("roles:\n  VDA:\n    - 10.0.0.9-10.0.0.1\n", "r.yaml:3: range '10.0.0.9-10.0.0.1' is reversed"),
        ("roles:\n  VDA: [10.0.0.1-2001:db8::1]\n", "mixes IPv4 and IPv6"),
        ("roles:\n  VDA: [10.0.0.1]\n  Virtual Delivery Agent: [10.0.0.2]\n",
         "r.yaml:3: role 'Virtual Delivery Agent' is given twice"),
        ("roles:\n  VDA: [10.0.0.1, 10.0.0.1]\n", "r.yaml:2: '10.0.0.1' is listed twice"),
        ("roles: [a, b\n", "r.yaml:2: unreadable YAML"),
        ("hosts:\n  VDA: [10.0.0.1]\n", "r.yaml:1: unknown key 'hosts'"),
        ("roles:\n  VDA: {a: 1}\n", "must be a list"),
        ("roles:\n  VDA:\n", "lists no hosts"),
        ("", "empty roles file"),
        ("roles:\n  VDA: ['bad name!']\n", "is not an address, network, range or host name"),
    ],
)
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(RolesError) as err:
        parse_roles(text, "r.yaml", V)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_load_roles_missing_and_binary(tmp_path: Path) -> None:
    with pytest.raises(RolesError, match="cannot read roles file"):
        load_roles(tmp_path / "nope.yaml", V)
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"roles:\n  VDA: [\xff\xfe]\n")
    with pytest.raises(RolesError, match="not UTF-8"):
        load_roles(bad, V)


def test_digest_changes_with_content() -> None:
    a = parse_roles("roles:\n  VDA: [10.0.0.1]\n", "r.yaml", V)
    b = parse_roles("roles:\n  VDA: [10.0.0.2]\n", "r.yaml", V)
    assert a.digest.startswith("sha256:") and a.digest != b.digest
