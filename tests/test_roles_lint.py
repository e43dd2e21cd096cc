"""Lint of roles.yaml against what a capture showed (SPEC §2)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping

from auditor.roles import RoleMap, parse_roles, parse_vantage
from auditor.roles_lint import LINT_CODES, RoleWarning, lint_roles
from tests.test_roles import FakeVocabulary

V = FakeVocabulary()


def lint(text: str, seen: Iterable[str] = (), names: Mapping[str, Iterable[str]] | None = None,
         role_hosts: Mapping[str, Collection[str]] | None = None) -> list[RoleWarning]:
    return lint_roles(parse_roles(text, "r.yaml", V), seen, names or {}, role_hosts or {})


def codes(warnings: list[RoleWarning]) -> list[tuple[str, int, str]]:
    return [(w.code, w.line, w.entry) for w in warnings]


CLEAN = """\
roles:
  Delivery Controller: [10.0.1.10, 10.0.1.11]
  Virtual Delivery Agent: [10.0.20.0/24, 10.0.21.5-10.0.21.50, "2001:db8::/64"]
  StoreFront Server: [sf01.corp.example]
  Citrix Cloud: ["*.cloud.com"]
features: [citrix-gateway]
vantage: [10.0.1.0/24, Citrix Gateway]
"""
CLEAN_SEEN = ["10.0.1.10", "10.0.1.11", "10.0.20.9", "10.0.21.50", "2001:db8::7", "10.0.1.20", "52.1.1.1",
              "203.0.113.10"]
CLEAN_NAMES = {"10.0.1.20": ["sf01.corp.example"], "52.1.1.1": ["eu.x.cloud.com", "cdn.other.example"]}


def test_a_clean_file_gives_no_warning() -> None:
    assert lint(CLEAN, CLEAN_SEEN, CLEAN_NAMES, {"Citrix Gateway": {"203.0.113.10"}}) == []


def test_every_code_is_listed() -> None:
    assert set(LINT_CODES) == {"unmatched-entry", "name-not-resolved", "host-bits", "overlap", "vantage-unmatched"}


def test_unmatched_entries() -> None:
    seen = [a for a in CLEAN_SEEN if a not in ("10.0.1.11", "2001:db8::7", "10.0.21.50")]
    seen.append("10.0.21.51")  # just past the range
    ws = lint(CLEAN, seen, CLEAN_NAMES, {"Citrix Gateway": {"203.0.113.10"}})
    assert codes(ws) == [("unmatched-entry", 2, "10.0.1.11"), ("unmatched-entry", 3, "10.0.21.5-10.0.21.50"),
                         ("unmatched-entry", 3, "2001:db8::/64")]
    assert ws[0].message.startswith("10.0.1.11 (Delivery Controller) was not seen in the capture")
    assert ws[1].message.startswith("10.0.21.5-10.0.21.50 (Virtual Delivery Agent) contains no address seen")


def test_names_the_capture_never_tied_to_an_address() -> None:
    ws = lint(CLEAN, CLEAN_SEEN, {"52.1.1.1": ["cloud.com"]}, {"Citrix Gateway": {"203.0.113.10"}})
    assert codes(ws) == [("name-not-resolved", 4, "sf01.corp.example"), ("name-not-resolved", 5, "*.cloud.com")]
    assert "probably cached before the capture started" in ws[0].message
    assert "give the host's address instead" in ws[0].message
    assert "a name under cloud.com" in ws[1].message  # the bare domain is not under *.cloud.com


def test_cidr_with_host_bits_says_what_it_was_read_as() -> None:
    ws = lint("roles:\n  VDA: [10.0.1.5/24]\nvantage: [10.0.2.7/30]\n", ["10.0.1.9", "10.0.2.5"])
    assert codes(ws) == [("host-bits", 2, "10.0.1.5/24"), ("host-bits", 3, "10.0.2.7/30")]
    assert ws[0].message == ("10.0.1.5/24 (Virtual Delivery Agent) has host bits set: it was read as the network "
                             "10.0.1.0/24 (256 addresses); write 10.0.1.5 for the single host, or 10.0.1.0/24 for "
                             "the network")
    assert "read as the network 10.0.2.4/30" in ws[1].message


def test_wide_entry_swallowing_more_specific_ones() -> None:
    text = ("roles:\n  User Device: [10.0.0.0/8]\n  Delivery Controller: [10.0.1.10, 10.0.1.11]\n"
            "  Virtual Delivery Agent: [10.0.20.0/24]\n")
    ws = lint(text, ["10.0.1.10", "10.0.1.11", "10.0.20.1"])
    assert codes(ws) == [("overlap", 2, "10.0.0.0/8")]
    assert ws[0].message == ("10.0.0.0/8 (User Device) also covers 10.0.1.10 (Delivery Controller), 10.0.1.11 "
                             "(Delivery Controller), 10.0.20.0/24 (Virtual Delivery Agent): those hosts hold only "
                             "the roles of their more specific entry")


def test_overlaps_within_one_role_are_not_warned() -> None:
    ws = lint("roles:\n  VDA: [10.0.0.0/16, 10.0.5.0/24, 10.0.5.5]\n", ["10.0.5.5"])
    assert ws == []


def test_overlap_lists_at_most_five_then_counts() -> None:
    hosts = ", ".join(f"10.0.1.{i}" for i in range(1, 13))
    ws = lint(f"roles:\n  User Device: [10.0.0.0/8]\n  Delivery Controller: [{hosts}]\n", ["10.0.1.1"])
    (w,) = [w for w in ws if w.code == "overlap"]
    assert "10.0.1.5 (Delivery Controller) and 7 more:" in w.message
    assert "10.0.1.6" not in w.message


def test_partial_range_overlap() -> None:
    text = "roles:\n  VDA: [10.0.0.1-10.0.0.100]\n  StoreFront: [10.0.0.51-10.0.0.250]\n"
    ws = lint(text, ["10.0.0.1", "10.0.0.200"])
    assert codes(ws) == [("overlap", 3, "10.0.0.51-10.0.0.250")]
    assert ws[0].message == ("10.0.0.51-10.0.0.250 (StoreFront Server) overlaps 10.0.0.1-10.0.0.100 (Virtual "
                             "Delivery Agent, partly): where they overlap, the more specific entry decides and "
                             "those hosts hold only its roles")


def test_equal_specificity_overlap_says_union() -> None:
    text = ("roles:\n  Delivery Controller: [10.0.1.10]\n  License Server: [10.0.1.10/32]\n"
            "  VDA: [10.0.2.1-10.0.2.100]\n  User Device: [10.0.2.51-10.0.2.150]\n")
    ws = lint(text, ["10.0.1.10", "10.0.2.60"])
    # One host given under two roles is the deliberate union SPEC §2 describes: no warning for it.
    assert codes(ws) == [("overlap", 4, "10.0.2.1-10.0.2.100")]
    assert ws[0].message == ("10.0.2.1-10.0.2.100 (Virtual Delivery Agent) overlaps 10.0.2.51-10.0.2.150 (User "
                             "Device, partly) at the same specificity: the hosts in both hold the roles of both")


def test_wider_and_equal_overlaps_in_one_warning() -> None:
    text = ("roles:\n  User Device: [10.0.0.0/24]\n  VDA: [10.0.0.0/24, 10.0.0.5]\n")
    ws = lint(text, ["10.0.0.5"])
    assert codes(ws) == [("overlap", 2, "10.0.0.0/24")]
    assert ws[0].message == ("10.0.0.0/24 (User Device) also covers 10.0.0.5 (Virtual Delivery Agent): those hosts "
                             "hold only the roles of their more specific entry; it is also listed as 10.0.0.0/24 "
                             "(Virtual Delivery Agent): at the same specificity, its hosts hold all these roles")


def test_nested_name_patterns_overlap() -> None:
    text = "roles:\n  Citrix Cloud: ['*.cloud.com']\n  Citrix WEM Service: [wem.cloud.com, '*.eu.cloud.com']\n"
    ws = lint(text, ["52.1.1.1"], {"52.1.1.1": ["wem.cloud.com", "a.eu.cloud.com"]})
    assert codes(ws) == [("overlap", 2, "*.cloud.com")]
    assert "also covers wem.cloud.com (Citrix WEM Service), *.eu.cloud.com (Citrix WEM Service)" in ws[0].message


def test_a_name_tied_to_an_address_inside_an_address_entry_of_another_role() -> None:
    text = "roles:\n  User Device: [10.0.0.0/8]\n  StoreFront: [sf01.corp.example]\n  Citrix Cloud: ['*.cloud.com']\n"
    names = {"10.0.1.20": ["sf01.corp.example"], "10.0.9.9": ["a.cloud.com"], "10.0.9.10": ["b.cloud.com"],
             "10.0.9.11": ["c.cloud.com"], "192.0.2.1": ["d.cloud.com"]}
    ws = lint(text, ["10.0.1.20", "10.0.9.9"], names)
    assert codes(ws) == [("overlap", 2, "10.0.0.0/8")]
    assert ws[0].message == (
        "10.0.0.0/8 (User Device) also covers sf01.corp.example (StoreFront Server; the capture tied it to "
        "10.0.1.20), *.cloud.com (Citrix Cloud; the capture tied a.cloud.com to 10.0.9.9 and 2 more addresses): "
        "those hosts hold only the roles of their more specific entry")


def test_names_from_the_capture_are_escaped_and_bounded_in_messages() -> None:
    text = "roles:\n  User Device: [10.0.0.0/8]\n  Citrix Cloud: ['*.cloud.com']\n"
    for name, shown in (("x" * 300 + "\x1b[31m.cloud.com", "x" * 99 + "…"),
                        ("a\x1b[2J\u202e.cloud.com", "a\\x1b[2J\\u202e.cloud.com")):
        (w,) = lint(text, ["10.0.9.9"], {"10.0.9.9": [name]})
        assert f"the capture tied {shown} to 10.0.9.9)" in w.message
        assert "\x1b" not in w.message and "\u202e" not in w.message and "x" * 100 not in w.message


def test_vantage_that_matched_nothing() -> None:
    text = "roles:\n  VDA: [10.0.0.1]\nvantage:\n  - 10.9.0.0/16\n  - 10.0.0.1\n  - NetScaler Gateway\n  - vda\n"
    ws = lint(text, ["10.0.0.1"], {}, {"Virtual Delivery Agent": {"10.0.0.1"}, "Citrix Gateway": set()})
    assert codes(ws) == [("vantage-unmatched", 4, "10.9.0.0/16"), ("vantage-unmatched", 6, "NetScaler Gateway")]
    assert ws[0].message.startswith("vantage 10.9.0.0/16 matched no address seen in the capture")
    assert ws[1].message.startswith("vantage NetScaler Gateway (Citrix Gateway): no host seen in the capture holds")


def test_command_line_vantage_entries_join_the_map_and_come_first() -> None:
    m = parse_roles("roles:\n  VDA: [10.0.0.1]\nvantage: [10.0.0.0/24]\n", "r.yaml", V)
    both = dataclasses.replace(m, vantage=(*m.vantage, parse_vantage("Citrix Gateway", "--vantage", V)))
    assert both.roles_of("10.0.0.1") == {"Virtual Delivery Agent"}
    ws = lint_roles(both, ["10.0.0.1"], {}, {})
    assert codes(ws) == [("vantage-unmatched", 0, "Citrix Gateway")]
    assert ws[0].message.startswith("vantage Citrix Gateway: no host seen")


def test_warnings_are_sorted_by_line_and_bounded() -> None:
    long_name = ".".join(["abcdefghij"] * 20) + ".example"
    text = (f"roles:\n  User Device: [10.0.0.0/8]\n  StoreFront: ['{long_name}']\n"
            "  Delivery Controller: [10.0.1.10, 10.0.1.11/24]\n")
    ws = lint(text, ["10.0.1.10"])
    assert [w.line for w in ws] == sorted(w.line for w in ws)
    assert codes(ws) == [("overlap", 2, "10.0.0.0/8"), ("name-not-resolved", 3, long_name),
                         ("host-bits", 4, "10.0.1.11/24")]
    assert all(len(w.message) < 600 and "\n" not in w.message for w in ws)
    assert long_name not in ws[1].message and "…" in ws[1].message


def test_lint_takes_a_role_map_built_without_a_file() -> None:
    m = parse_roles(CLEAN, "r.yaml", V)
    bare = RoleMap("x", "sha256:x", m.entries)
    ws = lint_roles(bare, [], {}, {})
    assert [w.code for w in ws] == ["unmatched-entry"] * 5 + ["name-not-resolved"] * 2
