"""Site rules (--rules) make accepted business traffic expected under their own product name."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from auditor.cli import main
from auditor.report.load import load_document

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_pcaps" / "cvad-onprem"


def _audit(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "a.json"
    res = CliRunner().invoke(main, [f"{SAMPLE}.pcapng", "--roles", f"{SAMPLE}.roles.yaml", "--json", str(out),
                                    "--no-html", "-q", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def test_site_rules_turn_dns_expected_under_their_product(tmp_path: Path) -> None:
    # Against the ports document alone: the supplement already makes the Windows roles' DNS expected.
    site = ROOT / "examples" / "site-infrastructure.yaml"
    before = _audit(tmp_path, "--catalog", "document")
    after = _audit(tmp_path, "--catalog", "document", "--rules", str(site))
    dns_before = [f for f in before["flows"] if f["port"] == 53 and f["initiator_roles"]]
    dns_after = [f for f in after["flows"] if f["port"] == 53 and f["initiator_roles"]]
    assert dns_before and all(f["classification"] == "unexpected" for f in dns_before)
    assert all(f["classification"] == "expected" for f in dns_after)
    assert all(any(r.startswith("site-infra-") for r in f["rule_ids"]) for f in dns_after)
    products = {r["product"] for r in after["rules"] if r["id"].startswith("site-infra-")}
    assert products == {"Site: infrastructure"}
    assert after["catalog"]["site_rule_files"] == [str(site)]
    assert after["catalog"]["digest"] != before["catalog"]["digest"]
    assert after["catalog"]["layers"] == ["document", "site"]


def test_supplement_makes_windows_dns_expected_and_keeps_site_policy_for_the_rest(tmp_path: Path) -> None:
    full = _audit(tmp_path)
    dns = {f["initiator"]: f for f in full["flows"] if f["port"] == 53 and f["initiator_roles"]}
    # Delivery Controllers and StoreFront are Windows domain members: their lookups are documented.
    assert dns["10.0.1.10"]["classification"] == "expected" and dns["10.0.1.10"]["layers"] == ["supplement"]
    # A user device's lookup is no Citrix flow: site policy (examples/site-infrastructure.yaml) decides.
    assert dns["10.0.30.51"]["classification"] == "unexpected"


def test_csv_export_is_the_flows_table(tmp_path: Path) -> None:
    """The streamed CSV and the pandas table (flows_frame) are one table: same rows, same cells."""
    import io

    import pandas as pd

    from auditor.report.tabular import flows_frame, render_csv

    doc = _audit(tmp_path)
    parsed = pd.read_csv(io.StringIO(render_csv(load_document(doc))), keep_default_na=False, dtype=str)
    table = flows_frame(load_document(doc)).astype(str)
    assert len(parsed) == len(doc["flows"]) > 0
    assert list(parsed.columns) == list(table.columns)
    assert parsed.values.tolist() == table.values.tolist()
