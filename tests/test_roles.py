"""roles.yaml parsing and resolution (SPEC §2)."""

from __future__ import annotations

import difflib
import ipaddress
import random
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.errors import RolesError
from auditor.roles import RoleEntry, RoleMap, load_roles, name_matches, parse_roles, parse_vantage


class FakeVocabulary:
    """Just enough of the catalog vocabulary for roles.py (the real one is tested with the catalog)."""

    canon: ClassVar[dict[str, str]] = {
             "delivery controller": "Delivery Controller", "controller": "Delivery Controller",
             "virtual delivery agent": "Virtual Delivery Agent", "vda": "Virtual Delivery Agent",
             "storefront server": "StoreFront Server", "storefront": "StoreFront Server",
             "citrix cloud": "Citrix Cloud", "user device": "User Device",
             "citrix license server": "Citrix License Server", "license server": "Citrix License Server",
             "citrix gateway": "Citrix Gateway", "netscaler gateway": "Citrix Gateway",
             "citrix wem service": "Citrix WEM Service", "domain controller": "Domain Controller",
             "broadcast/dhcpserver": "DHCP Server", "sd-wan se/ee": "SD-WAN Standard and Enterprise Edition"}
    features: ClassVar[tuple[str, ...]] = ("netscaler-ha", "netscaler-cluster", "citrix-gateway", "gateway-vpn",
                                           "html5-websocket")

    def lookup(self, name: str) -> str | None:
        return self.canon.get(" ".join(name.lower().split()))

    def suggest(self, name: str, n: int = 3) -> list[str]:
        hits = difflib.get_close_matches(name.lower(), list(self.canon), n=n, cutoff=0.5)
        return list(dict.fromkeys(self.canon[h] for h in hits))

    def lookup_feature(self, name: str) -> str | None:
        key = name.strip().lower()
        return key if key in self.features else None

    def feature_names(self) -> tuple[str, ...]:
        return self.features


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


# --------------------------------------------------------------------------- most specific entry decides

ESTATE = """\
roles:
  User Device: [10.0.0.0/8, "2001:db8::/32"]
  Delivery Controller: [10.0.1.10, 10.0.1.11, "2001:db8:1::10"]
  Citrix License Server: [10.0.1.11/32]
  Virtual Delivery Agent: [10.0.20.0/24, 10.0.21.1-10.0.21.100, "2001:db8:1::/48"]
  StoreFront Server: [10.0.21.51-10.0.21.250]
"""


def test_address_beats_networks_and_narrower_beats_wider() -> None:
    m = parse_roles(ESTATE, "r.yaml", V)
    assert m.roles_of("10.0.1.10") == {"Delivery Controller"}        # not also User Device (old union)
    assert m.roles_of("10.0.1.12") == {"User Device"}
    assert m.roles_of("10.0.20.7") == {"Virtual Delivery Agent"}
    assert m.roles_of("10.200.0.1") == {"User Device"}
    assert m.roles_of("11.0.0.1") == frozenset()
    assert [e.text for e in m.entries_of("10.0.20.7")] == ["10.0.20.0/24"]


def test_equal_specificity_is_the_union() -> None:
    m = parse_roles(ESTATE, "r.yaml", V)
    # 10.0.1.11 and 10.0.1.11/32 both cover one address: the host holds both roles.
    assert m.roles_of("10.0.1.11") == {"Delivery Controller", "Citrix License Server"}
    assert [(e.text, e.role) for e in m.entries_of("10.0.1.11")] == [
        ("10.0.1.11", "Delivery Controller"), ("10.0.1.11/32", "Citrix License Server")]


def test_partial_range_overlap_is_decided_by_size() -> None:
    m = parse_roles(ESTATE, "r.yaml", V)
    # VDA range covers 100 addresses, StoreFront range 200: the VDA range decides where they overlap.
    assert m.roles_of("10.0.21.1") == {"Virtual Delivery Agent"}
    assert m.roles_of("10.0.21.75") == {"Virtual Delivery Agent"}
    assert m.roles_of("10.0.21.100") == {"Virtual Delivery Agent"}
    assert m.roles_of("10.0.21.101") == {"StoreFront Server"}
    assert m.roles_of("10.0.21.250") == {"StoreFront Server"}
    assert m.roles_of("10.0.21.251") == {"User Device"}


def test_a_range_wider_than_a_cidr_loses_to_it() -> None:
    # The range is not a CIDR but covers 300 addresses; the /24 covers 256 and so is more specific.
    text = "roles:\n  VDA: [10.0.0.0/24]\n  User Device: [10.0.0.0-10.0.1.43]\n"
    m = parse_roles(text, "r.yaml", V)
    assert m.roles_of("10.0.0.200") == {"Virtual Delivery Agent"}
    assert m.roles_of("10.0.1.43") == {"User Device"}


def test_equal_size_partial_overlap_is_the_union_only_where_they_overlap() -> None:
    text = "roles:\n  VDA: [10.0.0.1-10.0.0.100]\n  User Device: [10.0.0.51-10.0.0.150]\n"
    m = parse_roles(text, "r.yaml", V)
    assert m.roles_of("10.0.0.50") == {"Virtual Delivery Agent"}
    assert m.roles_of("10.0.0.51") == {"Virtual Delivery Agent", "User Device"}
    assert m.roles_of("10.0.0.100") == {"Virtual Delivery Agent", "User Device"}
    assert m.roles_of("10.0.0.101") == {"User Device"}


def test_ipv6_precedence_and_versions_kept_apart() -> None:
    m = parse_roles(ESTATE, "r.yaml", V)
    assert m.roles_of("2001:db8:1::10") == {"Delivery Controller"}
    assert m.roles_of("2001:db8:1::11") == {"Virtual Delivery Agent"}
    assert m.roles_of("2001:db8:2::1") == {"User Device"}
    assert m.roles_of("2001:db9::1") == frozenset()
    # 10.0.1.10 as an int is inside no IPv6 entry and vice versa.
    assert m.roles_of(str(ipaddress.IPv6Address(int(ipaddress.IPv4Address("10.0.1.10"))))) == frozenset()
    assert m.roles_of("not an address") == frozenset()


NAMES = """\
roles:
  Citrix Cloud: ["*.cloud.com"]
  Citrix WEM Service: ["*.eu.cloud.com", wem.cloud.com]
  StoreFront Server: [sf01.corp.example]
  Delivery Controller: [10.0.1.20, ddc.corp.example]
  User Device: [10.0.0.0/8]
"""


def test_a_name_tied_to_the_address_beats_every_address_entry() -> None:
    m = parse_roles(NAMES, "r.yaml", V)
    assert m.roles_of("10.0.1.20", ["sf01.corp.example"]) == {"StoreFront Server"}
    assert m.roles_of("10.0.1.20") == {"Delivery Controller"}
    assert m.roles_of("10.0.1.20", ["unrelated.example"]) == {"Delivery Controller"}
    assert m.roles_of("10.9.9.9", ["SF01.Corp.Example."]) == {"StoreFront Server"}
    assert [e.text for e in m.entries_of("10.9.9.9", ["sf01.corp.example"])] == ["sf01.corp.example"]


def test_exact_name_beats_wildcard_and_longer_suffix_beats_shorter() -> None:
    m = parse_roles(NAMES, "r.yaml", V)
    assert m.roles_of("192.0.2.1", ["wem.cloud.com"]) == {"Citrix WEM Service"}
    assert m.roles_of("192.0.2.2", ["a.b.eu.cloud.com"]) == {"Citrix WEM Service"}
    assert m.roles_of("192.0.2.3", ["a.us.cloud.com"]) == {"Citrix Cloud"}
    assert m.roles_of("192.0.2.4", ["eu.cloud.com"]) == {"Citrix Cloud"}   # *.eu.cloud.com needs a label more
    # An exact name beats a wildcard even when the address has both kinds of name.
    assert m.roles_of("192.0.2.5", ["x.eu.cloud.com", "sf01.corp.example"]) == {"StoreFront Server"}


def test_names_of_equal_specificity_give_the_union() -> None:
    m = parse_roles(NAMES, "r.yaml", V)
    assert m.roles_of("10.0.1.30", ["sf01.corp.example", "ddc.corp.example"]) == {
        "StoreFront Server", "Delivery Controller"}
    assert m.roles_of("10.0.1.30", ("ddc.corp.example", "sf01.corp.example")) == {
        "StoreFront Server", "Delivery Controller"}


def test_results_are_cached_per_address_and_names() -> None:
    m = parse_roles(NAMES, "r.yaml", V)
    first = m.roles_of("10.0.1.20", iter(["sf01.corp.example"]))
    assert m.roles_of("10.0.1.20", ["sf01.corp.example"]) is first
    assert m.roles_of("10.0.1.20") == {"Delivery Controller"}


# ------------------------------------------------------------------- lookup equals a brute-force reference

ROLE_POOL = ("Delivery Controller", "Virtual Delivery Agent", "StoreFront Server", "User Device", "Citrix Cloud")


def reference_roles(entries: tuple[RoleEntry, ...], address: str, names: tuple[str, ...] = ()) -> set[str]:
    """SPEC §2 read literally, with no index: the most specific entries containing the address."""
    hits = [e for e in entries if e.kind == "name" and any(name_matches(e.text, n) for n in names)]
    if hits:
        def rank(e: RoleEntry) -> tuple[int, int]:
            return (0, e.text.count(".")) if e.text.startswith("*.") else (1, 0)
        best = max(rank(e) for e in hits)
        return {e.role for e in hits if rank(e) == best}
    ip = ipaddress.ip_address(address)
    cover = [e for e in entries if e.kind != "name" and e.version == ip.version and e.lo <= int(ip) <= e.hi]
    if not cover:
        return set()
    narrowest = min(e.hi - e.lo for e in cover)
    return {e.role for e in cover if e.hi - e.lo == narrowest}


def _yaml(by_role: dict[str, list[str]]) -> str:
    lines = ["roles:"]
    for role, items in by_role.items():
        if items:
            lines.append(f"  {role}: [" + ", ".join(f'"{i}"' for i in dict.fromkeys(items)) + "]")
    return "\n".join(lines) + "\n"


def _span_text(version: int, base: int, a: int, b: int, kind: int) -> str:
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    lo, hi = min(a, b), max(a, b)
    if kind == 0:
        return str(make(base + a))
    if kind == 1:
        return f"{make(base + lo)}-{make(base + hi)}"
    bits = 32 if version == 4 else 128
    prefix = bits - (a % 9)  # networks of 1 to 256 addresses inside the test space
    net = ipaddress.ip_network(f"{make(base + b)}/{prefix}", strict=False)
    return str(net)


V4_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))

span_entries = st.lists(
    st.tuples(st.sampled_from(ROLE_POOL), st.sampled_from((4, 6)), st.integers(0, 511), st.integers(0, 511),
              st.integers(0, 2)),
    min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(span_entries)
def test_address_lookup_equals_brute_force(spec: list[tuple[str, int, int, int, int]]) -> None:
    by_role: dict[str, list[str]] = {r: [] for r in ROLE_POOL}
    for role, version, a, b, kind in spec:
        by_role[role].append(_span_text(version, V4_BASE if version == 4 else V6_BASE, a, b, kind))
    m = parse_roles(_yaml(by_role), "r.yaml", V)
    for offset in range(0, 520, 3):
        for base, make in ((V4_BASE, ipaddress.IPv4Address), (V6_BASE, ipaddress.IPv6Address)):
            address = str(make(base + offset))
            assert m.roles_of(address) == reference_roles(m.entries, address), address


LABELS = ("a", "b", "eu", "cloud")
name_entries = st.lists(
    st.tuples(st.sampled_from(ROLE_POOL), st.booleans(), st.lists(st.sampled_from(LABELS), min_size=1, max_size=3)),
    min_size=1, max_size=12)
capture_names = st.lists(st.lists(st.sampled_from(LABELS), min_size=1, max_size=4).map(".".join), max_size=4)


@settings(max_examples=150, deadline=None)
@given(name_entries, capture_names)
def test_name_lookup_equals_brute_force(spec: list[tuple[str, bool, list[str]]], names: list[str]) -> None:
    by_role: dict[str, list[str]] = {r: ["10.0.0.0/24"] if r == "User Device" else [] for r in ROLE_POOL}
    for role, wildcard, labels in spec:
        by_role[role].append(("*." if wildcard else "") + ".".join(labels))
    m = parse_roles(_yaml(by_role), "r.yaml", V)
    assert m.roles_of("10.0.0.1", names) == reference_roles(m.entries, "10.0.0.1", tuple(names))


def test_lookup_on_a_large_random_file_equals_brute_force() -> None:
    rng = random.Random(7)
    entries: list[RoleEntry] = []
    for i in range(400):
        lo = rng.randrange(0, 4096)
        hi = lo + rng.choice((0, 0, 3, 15, 100, 700, 3000))
        entries.append(RoleEntry(rng.choice(ROLE_POOL), f"e{i}", i + 1, "range", V4_BASE + lo, V4_BASE + hi, 4))
    m = RoleMap("r.yaml", "sha256:x", tuple(entries))
    for offset in range(0, 7200, 7):
        address = str(ipaddress.IPv4Address(V4_BASE + offset))
        assert m.roles_of(address) == reference_roles(m.entries, address), address


# ---------------------------------------------------------------------------------------------- schema 2

SCHEMA_2 = """\
roles:
  Delivery Controller: [10.0.1.10]
  Citrix Gateway: [203.0.113.10]
features: [netscaler-ha, Citrix-Gateway]
vantage:
  - 10.0.1.0/24
  - 10.0.2.1-10.0.2.9
  - 10.0.3.3
  - netscaler gateway
  - "2001:db8::/64"
"""


def test_schema_2_features_and_vantage() -> None:
    m = parse_roles(SCHEMA_2, "r.yaml", V)
    assert [(f.id, f.text, f.line) for f in m.features] == [("netscaler-ha", "netscaler-ha", 4),
                                                           ("citrix-gateway", "Citrix-Gateway", 4)]
    assert m.feature_ids == {"netscaler-ha", "citrix-gateway"}
    assert [(v.kind, v.line) for v in m.vantage] == [("network", 6), ("range", 7), ("address", 8), ("role", 9),
                                                     ("network", 10)]
    net, rng, addr, role, v6 = m.vantage
    assert net.contains("10.0.1.200") and not net.contains("10.0.2.1")
    assert rng.contains("10.0.2.9") and not rng.contains("10.0.2.10")
    assert addr.contains("10.0.3.3") and not addr.contains("10.0.3.4")
    assert v6.contains("2001:db8::abcd") and not v6.contains("10.0.1.1")
    assert role.role == "Citrix Gateway" and role.text == "netscaler gateway" and not role.contains("203.0.113.10")


def test_a_file_with_only_roles_has_no_features_or_vantage() -> None:
    m = parse_roles("roles:\n  VDA: [10.0.0.1]\n", "r.yaml", V)
    assert m.features == () and m.vantage == ()
    m = parse_roles("roles:\n  VDA: [10.0.0.1]\nfeatures: []\nvantage:\n", "r.yaml", V)
    assert m.features == () and m.vantage == ()


def test_parse_vantage_matches_the_file_and_names_where() -> None:
    v = parse_vantage(" Citrix Gateway ", "--vantage", V)
    assert (v.kind, v.role, v.line) == ("role", "Citrix Gateway", 0)
    assert parse_vantage("10.0.0.0/30", "--vantage", V).contains("10.0.0.3")
    with pytest.raises(RolesError) as err:
        parse_vantage("Citrix Gateway VIP!", "--vantage", V)
    assert str(err.value).startswith("--vantage: vantage 'Citrix Gateway VIP!' is neither")
    assert "did you mean 'Citrix Gateway'" in str(err.value)
    assert parse_vantage("Broadcast/DHCPServer", "--vantage", V).role == "DHCP Server"  # not a network
    assert parse_vantage("SD-WAN SE/EE", "--vantage", V).role == "SD-WAN Standard and Enterprise Edition"
    with pytest.raises(RolesError, match=r"^--vantage: invalid address '10\.0\.0\.256'"):
        parse_vantage("10.0.0.256", "--vantage", V)


def test_cidr_with_host_bits_is_read_as_its_network_and_recorded() -> None:
    m = parse_roles('roles:\n  VDA: [10.0.1.5/24, 10.0.2.0/24, "2001:db8::5/64"]\n', "r.yaml", V)
    assert [e.read_as for e in m.entries] == ["10.0.1.0/24", "", "2001:db8::/64"]
    assert m.roles_of("10.0.1.200") == {"Virtual Delivery Agent"}
    assert parse_vantage("10.0.1.5/24", "--vantage", V).read_as == "10.0.1.0/24"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("roles:\n  VDA: [10.0.0.1]\nfeatures:\n  - netscaler-ha\n  - netscaler-haa\n",
         "r.yaml:5: unknown feature 'netscaler-haa'; did you mean 'netscaler-ha'"),
        ("roles:\n  VDA: [10.0.0.1]\nfeatures: [netscaler-ha, NetScaler-HA]\n",
         "r.yaml:3: feature 'netscaler-ha' is listed twice"),
        ("roles:\n  VDA: [10.0.0.1]\nfeatures: {netscaler-ha: true}\n", "r.yaml:3: 'features' must be a list"),
        ("roles:\n  VDA: [10.0.0.1]\nfeatures:\n  - [netscaler-ha]\n", "r.yaml:4: each feature must be a feature id"),
        ("roles:\n  VDA: [10.0.0.1]\nvantage:\n  - 10.0.0.0/24\n  - 10.0.300.1\n",
         "r.yaml:5: invalid address '10.0.300.1' in vantage"),
        ("roles:\n  VDA: [10.0.0.1]\nvantage: [Citrix Gatewy]\n",
         "r.yaml:3: vantage 'Citrix Gatewy' is neither an address, network or range nor a known role; "
         "did you mean 'Citrix Gateway'"),
        ("roles:\n  VDA: [10.0.0.1]\nvantage: [10.0.0.9-10.0.0.1]\n",
         "r.yaml:3: range '10.0.0.9-10.0.0.1' is reversed"),
        ("roles:\n  VDA: [10.0.0.1]\nvantage: [VDA, virtual delivery agent]\n",
         "r.yaml:3: vantage 'virtual delivery agent' is listed twice"),
        ("roles:\n  VDA: [10.0.0.1]\nvantage: {a: b}\n", "r.yaml:3: 'vantage' must be a list"),
        ("features: [netscaler-ha]\n", "r.yaml:1: 'roles' must be a mapping"),
        ("roles:\n  VDA: [10.0.0.1]\nfeature: [netscaler-ha]\n",
         "r.yaml:3: unknown key 'feature' (expected 'roles', 'features' or 'vantage')"),
        ("roles:\n  VDA: [10.0.0.1]\nvantage: [a]\nvantage: [b]\n", "r.yaml:4: duplicate key 'vantage'"),
    ],
)
def test_schema_2_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(RolesError) as err:
        parse_roles(text, "r.yaml", V)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
