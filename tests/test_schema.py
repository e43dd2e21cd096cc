"""The audit JSON's shape is a contract (docs/json-schema.md): this test fails when a field appears or
vanishes, so that the change is made on purpose, documented, and schema_version bumped."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from auditor.cli import main
from auditor.report.document import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
FREE_FORM = {"link_types", "malformed", "unsupported", "other_protocols", "conn_states", "examples", "tunnels",
             "counts", "summary.rules", "apps", "app_evidence"}


def _paths(obj: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{prefix}{k}"
            out.add(path)
            if k not in FREE_FORM and path not in FREE_FORM:
                out |= _paths(v, path + ".")
    elif isinstance(obj, list) and obj and isinstance(obj[0], dict):
        out |= _paths(obj[0], prefix.rstrip(".") + "[].")
    return out


def test_audit_json_has_exactly_the_documented_fields(tmp_path: Path) -> None:
    sample = ROOT / "sample_pcaps" / "daas-cloud"
    out = tmp_path / "a.json"
    res = CliRunner().invoke(main, [f"{sample}.pcapng", "--roles", f"{sample}.roles.yaml", "--json", str(out),
                                    "--no-html", "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    documented = (ROOT / "docs" / "json-schema.md").read_text()
    # Every leaf name the audit writes is spelled in the documented example.
    names = {p.rsplit(".", 1)[-1].removesuffix("[]") for p in _paths(doc)}
    undocumented = sorted(n for n in names if not re.search(rf'"{re.escape(n)}"\s*:', documented))
    assert not undocumented, f"fields missing from docs/json-schema.md: {undocumented}"
    required = {"inputs", "inputs[].path", "inputs[].sha256", "inputs[].packets", "flows", "flows[].initiator",
                "flows[].responder", "flows[].protocol", "flows[].port", "flows[].initiator_roles",
                "flows[].responder_roles", "flows[].classification", "flows[].outcome", "flows[].rule_ids",
                "flows[].reason", "flows[].connections", "flows[].packets", "flows[].bytes", "flows[].first_seen",
                "flows[].last_seen", "flows[].first_frame", "flows[].direction_evidence", "rules", "rules[].id",
                "rules[].status", "rules[].hosts_lacking", "summary", "schema_version"}
    assert required <= _paths(doc), sorted(required - _paths(doc))  # SPEC §5's minimum
