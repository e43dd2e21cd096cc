"""Flows as Parquet: the CSV's table with typed columns, read back by pandas; a clear error without pyarrow."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.errors import AuditorError
from auditor.report.load import load_document
from auditor.report.parquet import render_parquet
from auditor.report.tabular import FLOW_COLUMNS

SAMPLE = Path(__file__).resolve().parent.parent / "sample_pcaps" / "pvs-boot"


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("pq") / "a.json"
    res = CliRunner().invoke(main, [f"{SAMPLE}.pcapng", "--roles", f"{SAMPLE}.roles.yaml", "--json", str(out),
                                    "--no-html", "-q"])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_parquet_round_trips_through_pandas(doc: dict) -> None:  # type: ignore[type-arg]
    frame = pd.read_parquet(io.BytesIO(render_parquet(load_document(doc))))
    assert list(frame.columns) == FLOW_COLUMNS
    assert len(frame) == len(doc["flows"]) > 0
    for row, flow in zip(frame.itertuples(index=False), doc["flows"], strict=True):
        r = row._asdict()
        assert (r["initiator"], r["responder"], r["protocol"], r["port"]) == \
            (flow["initiator"], flow["responder"], flow["protocol"], flow["port"])
        assert r["packets"] == flow["packets"] and r["classification"] == flow["classification"]
        assert list(r["rule_ids"]) == flow["rule_ids"]
    assert str(frame["packets"].dtype) == "Int64"
    assert str(frame["first_seen"].dtype).startswith("datetime64")


def test_without_pyarrow_is_one_clear_error(doc: dict, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(AuditorError, match="pip install 'pcap-audit\\[parquet\\]'"):
        render_parquet(load_document(doc))
