"""--fail-on criteria: one pure judgement (auditor/criteria.py) for the document, the reports and the
exit status; the document records the criteria and the result (docs/json-schema.md `criteria`)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.cli_audit import parse_fail_on
from auditor.criteria import FAIL, FAIL_ON_KINDS, NO_CRITERIA, PASS, criteria_record, findings_hit, normalise_kinds

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_pcaps" / "pvs-boot"


def summary(unexpected: int = 0, expected_failing: int = 0, rules_failing: int = 0,
            missing: int = 0) -> dict[str, Any]:
    return {"unexpected": unexpected, "expected_failing": expected_failing,
            "rules": {"failing": rules_failing, "missing": missing, "observed": 3}}


def every_summary() -> list[dict[str, Any]]:
    return [summary(*counts) for counts in itertools.product((0, 2), repeat=4)]


def every_criteria() -> list[tuple[str, ...]]:
    return [kinds for n in range(len(FAIL_ON_KINDS) + 1) for kinds in itertools.combinations(FAIL_ON_KINDS, n)]


def test_no_criteria_is_neither_pass_nor_fail() -> None:
    assert criteria_record(summary(unexpected=5, missing=1), ()) == \
        {"fail_on": [], "result": NO_CRITERIA, "hits": []}


@pytest.mark.parametrize(("counts", "kinds", "result", "hits"), [
    (summary(), FAIL_ON_KINDS, PASS, []),
    (summary(unexpected=1), ("failing", "missing"), PASS, []),
    (summary(unexpected=1), ("unexpected",), FAIL, ["unexpected"]),
    (summary(expected_failing=1), ("failing",), FAIL, ["failing"]),
    (summary(rules_failing=1), ("failing",), FAIL, ["failing"]),  # a rule whose every flow failed
    (summary(missing=2, unexpected=1), ("missing", "unexpected"), FAIL, ["unexpected", "missing"]),
])
def test_result_and_hits(counts: dict[str, Any], kinds: tuple[str, ...], result: str, hits: list[str]) -> None:
    rec = criteria_record(counts, kinds)
    assert rec["result"] == result and rec["hits"] == hits
    assert rec["fail_on"] == [k for k in FAIL_ON_KINDS if k in kinds]  # one order, whatever was typed


def test_kinds_are_normalised_and_checked() -> None:
    assert normalise_kinds(["missing", " unexpected", "missing", ""]) == ("unexpected", "missing")
    with pytest.raises(ValueError, match="bogus"):
        findings_hit(summary(), ["unexpected", "bogus"])


def test_the_command_line_reads_kinds_as_the_criteria_do() -> None:
    """One judgement: the command's exit status is the document's result (next test), and the kinds it
    reads from --fail-on are the criteria's, in their order."""
    for kinds in every_criteria():
        typed = ",".join(reversed(kinds))
        assert parse_fail_on(typed) == normalise_kinds(kinds) == tuple(k for k in FAIL_ON_KINDS if k in kinds)


@pytest.mark.parametrize("fail_on", [None, "unexpected", "missing,failing", "unexpected,failing,missing"])
def test_exit_status_follows_the_documents_result(fail_on: str | None, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    args = [f"{SAMPLE}.pcapng", "--roles", f"{SAMPLE}.roles.yaml", "--json", str(out), "--no-html", "-q"]
    result = CliRunner().invoke(main, [*args, *(["--fail-on", fail_on] if fail_on else [])])
    crit = json.loads(out.read_text(encoding="utf-8"))["criteria"]
    kinds = fail_on.split(",") if fail_on else []
    assert crit["fail_on"] == [k for k in FAIL_ON_KINDS if k in kinds]
    assert result.exit_code == (1 if crit["result"] == FAIL else 0), result.output
    assert crit["result"] == (NO_CRITERIA if not kinds else FAIL)  # the sample has every kind of finding
    assert crit["hits"] == crit["fail_on"]
