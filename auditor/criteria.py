"""The pass/fail criteria of an audit (``--fail-on``) and the result against them (SPEC §5).

One pure function decides, from the document's summary, which of the named findings occurred: the
document records it (``criteria``), the reports show it first, and the command line's exit status
follows it, so the three cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FAIL_ON_KINDS = ("unexpected", "failing", "missing", "mismatch")
"""What --fail-on can name: unexpected flows; expected flows or rules that failed; rules missing;
flows whose payload is a protocol their documented port's rules refuse (protocol-mismatch, SPEC §6:
they are unexpected flows too)."""
PASS, FAIL, NO_CRITERIA = "PASS", "FAIL", "no criteria given"


def normalise_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """Known kinds in FAIL_ON_KINDS order, each once; ValueError names any other."""
    given = {k.strip() for k in kinds if k.strip()}
    unknown = given - set(FAIL_ON_KINDS)
    if unknown:
        raise ValueError(f"unknown --fail-on kind(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(FAIL_ON_KINDS)}")
    return tuple(k for k in FAIL_ON_KINDS if k in given)


def findings_hit(summary: Mapping[str, Any], kinds: Iterable[str]) -> list[str]:
    """The kinds among ``kinds`` that occurred, in FAIL_ON_KINDS order. ``failing`` counts expected
    flows that failed and rules whose every matching flow failed; ``mismatch`` the protocol-mismatch
    flows (absent from summaries older than schema 2.2: none)."""
    wanted = normalise_kinds(kinds)
    rules = summary["rules"]
    occurred = {
        "unexpected": bool(summary["unexpected"]),
        "failing": bool(summary["expected_failing"] or rules["failing"]),
        "missing": bool(rules["missing"]),
        "mismatch": bool(summary.get("mismatched", 0)),
    }
    return [k for k in wanted if occurred[k]]


def criteria_record(summary: Mapping[str, Any], kinds: Iterable[str]) -> dict[str, Any]:
    """The document's ``criteria``: what --fail-on named, the result, and the kinds that occurred."""
    fail_on = normalise_kinds(kinds)
    hits = findings_hit(summary, fail_on)
    result = NO_CRITERIA if not fail_on else FAIL if hits else PASS
    return {"fail_on": list(fail_on), "result": result, "hits": hits}
