"""Usage errors of every command are one line, like every other error: `pcap-audit: error: <message>
(see <command> --help)`, exit status 2, never click's block of usage, hint, blank line and error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.cli_audit import EXIT_BAD_INPUT
from tests.test_cli_audit import CVAD, CVAD_ROLES, assert_one_error_line, env

# args -> (the command the hint names, a piece of the message)
USAGE_ERRORS: dict[str, tuple[list[str], str, str]] = {
    "audit-unknown-option": ([str(CVAD), "--roles", str(CVAD_ROLES), "--bogus"], "pcap-audit audit",
                             "No such option '--bogus'"),
    "audit-suggests-an-option": ([str(CVAD), "--roles", str(CVAD_ROLES), "--jsn", "a.json"], "pcap-audit audit",
                                 "'--json'"),
    "audit-missing-roles": ([str(CVAD)], "pcap-audit audit", "Missing option '--roles'"),
    "audit-missing-capture": (["audit", "--roles", str(CVAD_ROLES)], "pcap-audit audit",
                              "Missing argument 'CAPTURES...'"),
    "audit-bad-choice": ([str(CVAD), "--roles", str(CVAD_ROLES), "--engine", "wireshark"], "pcap-audit audit",
                         "'wireshark' is not one of 'fast', 'tshark'"),
    "audit-bad-number": ([str(CVAD), "--roles", str(CVAD_ROLES), "-j", "many"], "pcap-audit audit",
                         "'many' is not a valid integer"),
    "audit-bad-fail-on": ([str(CVAD), "--roles", str(CVAD_ROLES), "--fail-on", "unexpected,sometimes"],
                          "pcap-audit audit", "unknown kind(s) sometimes; choose from unexpected, failing, missing"),
    "audit-option-without-value": ([str(CVAD), "--roles"], "pcap-audit", "Option '--roles' requires an argument"),
    "catalog-unknown-command": (["catalog", "lst"], "pcap-audit catalog", "No such command 'lst'"),
    "catalog-unknown-option": (["catalog", "--verbose", "list"], "pcap-audit catalog", "No such option '--verbose'"),
    "catalog-list-bad-choice": (["catalog", "list", "--protocol", "sctp"], "pcap-audit catalog list",
                                "'sctp' is not one of 'tcp', 'udp', 'icmp'"),
    "catalog-list-port-range": (["catalog", "list", "--port", "70000"], "pcap-audit catalog list",
                                "70000 is not in the range 0<=x<=65535"),
    "catalog-show-missing-id": (["catalog", "show"], "pcap-audit catalog show", "Missing argument 'RULE_ID'"),
    "catalog-show-extra": (["catalog", "show", "cvad-001", "cvad-002"], "pcap-audit catalog show",
                           "unexpected extra argument (cvad-002)"),
    "catalog-validate-no-files": (["catalog", "validate"], "pcap-audit catalog validate",
                                  "Missing argument 'FILES...'"),
    "catalog-export-bad-format": (["catalog", "export", "--format", "xml"], "pcap-audit catalog export",
                                  "'xml' is not one of 'csv', 'json'"),
    "catalog-roles-unknown-option": (["catalog", "roles", "--all"], "pcap-audit catalog roles",
                                     "No such option '--all'"),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_a_usage_error_is_one_line(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args, command, wanted = USAGE_ERRORS[case]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert result.stdout == ""
    line = assert_one_error_line(result.stderr)
    assert wanted in line, line
    assert line.endswith(f" (see {command} --help)"), line
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_real_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    for args, line in (
        (["catalog", "list", "--bogus"],
         "pcap-audit: error: No such option '--bogus'. (see pcap-audit catalog list --help)"),
        ([CVAD, "--roles", CVAD_ROLES, "--engine", "x"],
         "pcap-audit: error: Invalid value for '--engine': 'x' is not one of 'fast', 'tshark'. "
         "(see pcap-audit audit --help)"),
    ):
        proc = subprocess.run([sys.executable, "-m", "auditor.cli", *map(str, args)], cwd=tmp_path, env=env(),
                              capture_output=True, text=True, timeout=120, check=False)
        assert (proc.returncode, proc.stdout, proc.stderr) == (EXIT_BAD_INPUT, "", line + "\n")


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["audit", "--help"], ["catalog", "--help"],
                                  ["catalog", "list", "--help"]])
def test_help_is_still_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ") and "Options:" in result.stdout


def test_a_group_without_a_command_shows_its_help() -> None:
    result = CliRunner().invoke(main, ["catalog"])
    assert "Commands:" in result.output and "validate" in result.output
    assert "error" not in result.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    # The second line names the per-packet kernel that runs (tests/test_kernel_native.py).
    assert result.exit_code == 0 and re.fullmatch(
        r"pcap-audit, version \S+\nkernel: (compiled \(mypyc \S+\)|pure Python \(.+\))\n", result.stdout)
