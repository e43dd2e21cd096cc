"""The audit of each sample capture finds what its README says, and nothing else.

For each sample in sample_pcaps/, the real CLI runs in-process (`pcap-audit <name>.pcapng --roles
<name>.roles.yaml --json ... -o ...`) and its JSON is checked against <name>.expect.yaml, the
machine-readable form of the README's "What the audit should find":

- every listed flow is present with that classification, rule ids, reason and outcome;
- the set of flows (initiator, responder, protocol, port) equals the listed set (a new or vanished flow
  fails);
- the listed rule statuses, and every observed/failing/missing/not-observable rule is listed;
- the listed hosts lacking a rule;
- every sample shows every verdict kind;
- the normalised JSON equals tests/golden/<name>.json (regenerate with sample_pcaps/make_golden.py).

An expect file leaves out a verdict that contradicts SPEC, with a `# pending product fix:` comment
(the sample's README gives the right verdict): a flow left out makes the flow-set test fail, on
purpose, until the product is fixed and the expectation is written down.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from auditor.cli import main
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = ROOT / "sample_pcaps"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
NAMES = ["cvad-onprem", "daas-cloud", "gateway-dmz", "netscaler-ha", "pvs-boot"]
FLOW_KINDS = ("expected", "failing", "unexpected", "unmapped")
RULE_KINDS = ("observed", "failing", "missing", "not-observable")
LISTED_STATUSES = {*RULE_KINDS, "covered"}  # statuses whose rules the expect file must list in full

Key = tuple[str, str, str, int | None]


def _load_make_golden() -> ModuleType:
    return load_script(SAMPLES_DIR / "make_golden.py")


make_golden = _load_make_golden()


class Run:
    def __init__(self, name: str, doc: dict[str, Any], html: Path, output: str) -> None:
        self.name = name
        self.doc = doc
        self.html = html
        self.output = output
        self.flows: dict[Key, dict[str, Any]] = {}
        for f in doc["flows"]:
            key = _key(f)
            assert key not in self.flows, f"{name}: flow {key} reported twice"
            self.flows[key] = f
        self.rules = {r["id"]: r for r in doc["rules"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """One real CLI run per sample, shared by the tests of this module."""
    out: dict[str, Run] = {}
    for name in NAMES:
        tmp = tmp_path_factory.mktemp(name)
        result = CliRunner().invoke(main, make_golden.sample_args(name, tmp), catch_exceptions=False)
        assert result.exit_code == 0, f"{name}: exit {result.exit_code}\n{result.output}"
        doc = json.loads((tmp / "out.json").read_text(encoding="utf-8"))
        out[name] = Run(name, doc, tmp / "out.html", result.output)
    return out


def _key(f: dict[str, Any]) -> Key:
    return (str(f["initiator"]), str(f["responder"]), str(f["protocol"]), f["port"])


def _expect(name: str) -> dict[str, Any]:
    data = yaml.safe_load((SAMPLES_DIR / f"{name}.expect.yaml").read_text(encoding="utf-8"))
    assert data.get("sample") == name
    return data


def _rules_of(entry: dict[str, Any]) -> list[str]:
    rule = entry.get("rule")
    return sorted([rule] if isinstance(rule, str) else rule or [])


def _show(key: Key) -> str:
    i, r, proto, port = key
    return f"{i} -> {r} {proto}/{port}"


def _expected_keys(exp: dict[str, Any]) -> dict[Key, str]:
    keys: dict[Key, str] = {}
    for kind in FLOW_KINDS:
        for e in exp.get(kind) or []:
            key = (str(e["initiator"]), str(e["responder"]), str(e["protocol"]), e["port"])
            assert key not in keys, f"{_show(key)} listed twice in the expect file"
            keys[key] = kind
    return keys


@pytest.mark.parametrize("name", NAMES)
def test_cli_exit_and_outputs(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    assert run.html.is_file() and run.html.stat().st_size > 0, f"{name}: no HTML report"
    assert "<html" in run.html.read_text(encoding="utf-8").lower()
    assert run.doc["schema_version"].startswith("2.")


@pytest.mark.parametrize("name", NAMES)
def test_listed_flows_have_their_verdict(runs: dict[str, Run], name: str) -> None:
    run, exp = runs[name], _expect(name)
    problems: list[str] = []
    for kind in FLOW_KINDS:
        for e in exp.get(kind) or []:
            key = (str(e["initiator"]), str(e["responder"]), str(e["protocol"]), e["port"])
            f = run.flows.get(key)
            if f is None:
                problems.append(f"{kind} flow {_show(key)} not in the audit")
                continue
            want_class = "expected" if kind == "failing" else kind
            got = {
                "classification": f["classification"],
                "failing": f["failing"],
                "rule": sorted(f["rule_ids"]),
                "reason": f["reason"],
            }
            want: dict[str, Any] = {
                "classification": want_class,
                "failing": kind == "failing",
                "rule": _rules_of(e),
                "reason": e.get("reason"),
            }
            if "outcome" in e:
                got["outcome"], want["outcome"] = f["outcome"], e["outcome"]
            if got != want:
                problems.append(f"{_show(key)}: expect {want}, audit says {got}")
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_flow_set_is_exactly_the_listed_one(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    listed = set(_expected_keys(_expect(name)))
    audited = set(run.flows)
    new = sorted(audited - listed, key=str)
    gone = sorted(listed - audited, key=str)
    assert not new and not gone, (
        f"{name}: flows reported but not in {name}.expect.yaml: "
        f"{[_show(k) + ' (' + run.flows[k]['classification'] + ')' for k in new]}; "
        f"listed but not reported: {[_show(k) for k in gone]}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_rule_statuses(runs: dict[str, Run], name: str) -> None:
    run, exp = runs[name], _expect(name)
    listed: dict[str, str] = exp.get("rules") or {}
    wrong = {
        rid: (want, run.rules[rid]["status"] if rid in run.rules else "absent")
        for rid, want in listed.items()
        if rid not in run.rules or run.rules[rid]["status"] != want
    }
    assert not wrong, f"{name}: rule id -> (expected status, audit status): {wrong}"
    unlisted = sorted(
        f"{rid} ({r['status']})"
        for rid, r in run.rules.items()
        if r["status"] in LISTED_STATUSES and rid not in listed
    )
    assert not unlisted, f"{name}: rules with a status the README discusses, not in expect file: {unlisted}"


@pytest.mark.parametrize("name", NAMES)
def test_hosts_lacking(runs: dict[str, Run], name: str) -> None:
    run, exp = runs[name], _expect(name)
    wrong = {}
    for rid, hosts in (exp.get("hosts_lacking") or {}).items():
        got = sorted(run.rules[rid]["hosts_lacking"]) if rid in run.rules else None
        if got != sorted(hosts):
            wrong[rid] = {"expected": sorted(hosts), "audit": got}
    assert not wrong, f"{name}: hosts lacking differ: {wrong}"


@pytest.mark.parametrize("name", NAMES)
def test_summary_agrees_with_flows_and_rules(runs: dict[str, Run], name: str) -> None:
    doc = runs[name].doc
    flows = doc["flows"]
    summary = doc["summary"]
    classes = Counter(f["classification"] for f in flows)
    assert summary["flows"] == len(flows)
    assert summary["expected"] == classes["expected"]
    assert summary["unexpected"] == classes["unexpected"]
    assert summary["unmapped"] == classes["unmapped"]
    assert summary["expected_failing"] == sum(1 for f in flows if f["failing"])
    nonzero = {k: v for k, v in summary["rules"].items() if v}
    assert nonzero == dict(Counter(r["status"] for r in doc["rules"]))


@pytest.mark.parametrize("name", NAMES)
def test_every_sample_shows_every_verdict_kind(runs: dict[str, Run], name: str) -> None:
    doc = runs[name].doc
    flow_kinds = Counter("failing" if f["failing"] else f["classification"] for f in doc["flows"])
    rule_kinds = Counter(r["status"] for r in doc["rules"])
    reasons = Counter(f["reason"] for f in doc["flows"] if f["classification"] == "unexpected")
    missing = [k for k in FLOW_KINDS if not flow_kinds[k]]
    missing += [f"rule {k}" for k in (*RULE_KINDS, "not-applicable") if not rule_kinds[k]]
    missing += [
        f"unexpected/{r}"
        for r in ("no-rule-between-roles", "other-port-or-protocol", "reverse-of-rule", "peer-not-in-roles")
        if not reasons[r]
    ]
    assert not missing, f"{name} lacks verdict kinds: {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_audit_equals_golden(runs: dict[str, Run], name: str) -> None:
    golden_path = GOLDEN_DIR / f"{name}.json"
    hint = (
        f"the audit of sample_pcaps/{name}.pcapng differs from tests/golden/{name}.json. If the change is "
        "intended, run `python sample_pcaps/make_golden.py` and review `git diff tests/golden/` (and "
        f"update sample_pcaps/{name}.expect.yaml and its README); never edit the golden file by hand."
    )
    assert golden_path.is_file(), f"no {golden_path.name}: run `python sample_pcaps/make_golden.py`"
    golden = json.loads(golden_path.read_text(encoding="utf-8"))
    current = make_golden.normalise(runs[name].doc)
    if current != golden:
        diffs = _first_differences(golden, current)
        pytest.fail(f"{hint}\nfirst differences (golden vs now):\n  " + "\n  ".join(diffs))


def _first_differences(a: Any, b: Any, path: str = "$", limit: int = 12) -> list[str]:
    out: list[str] = []

    def walk(x: Any, y: Any, p: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                if k not in x or k not in y:
                    out.append(f"{p}.{k}: {x.get(k, '<absent>')!r:.120} vs {y.get(k, '<absent>')!r:.120}")
                else:
                    walk(x[k], y[k], f"{p}.{k}")
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                out.append(f"{p}: {len(x)} items vs {len(y)} items")
            for i, (u, v) in enumerate(zip(x, y, strict=False)):
                walk(u, v, f"{p}[{i}]")
        elif x != y:
            out.append(f"{p}: {x!r:.120} vs {y!r:.120}")

    walk(a, b, path)
    return out
