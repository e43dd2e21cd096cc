"""Bidi controls and zero-width characters in DNS names, through the real CLI, into CSV and JSON.

A name such as ``evil\\u202egnp.example`` reads reversed in a spreadsheet or a JSON viewer, and
``stor\\u200befront.example`` looks like a name it is not. The HTML report always showed these as
``\\uXXXX`` text (report/html.py's safe_text); document.bounded now does the same, so CSV, JSON and
HTML show one text for one name. (SNI and HTTP Host are decoded as ASCII, so only DNS carries them.)
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from auditor.report.document import bounded
from auditor.report.html import safe_text
from tests.capture_factory import eth_ipv4_udp, write_pcap
from tests.test_hostile_e2e import CLIENT, DNS_SERVER, ROLES, dns_response, strings, tcp_conversation

ROOT = Path(__file__).resolve().parent.parent

HIDDEN = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\u200c\u200d\u2060\ufeff"
"""What must never reach a CSV cell or a JSON string raw: bidi controls, zero-width characters, BOM."""

NAMES = {
    "10.0.1.80": "evil\u202egnp.example",
    "10.0.1.81": "stor\u200befront.example",
    "10.0.1.82": "\ufeffbom.example",
    "10.0.1.83": "iso\u2066late\u2069.example",
    "10.0.1.84": "marks\u200e\u200f\u061c.example",
    "10.0.1.85": "emb\u202a\u202b\u202c\u202d.example",
    "10.0.1.86": "join\u200c\u200d\u2060.example",
    "10.0.1.87": "iso\u2067\u2068.example",
    "10.0.1.88": "caf\u00e9-\u0434\u043e\u043c.example",  # visible letters: kept as they are
}


def escaped(name: str) -> str:
    return "".join(f"\\u{ord(ch):04x}" if ch in HIDDEN else ch for ch in name)


def test_bounded_shows_what_safe_text_shows() -> None:
    for ch in HIDDEN:
        assert unicodedata.category(ch) == "Cf"
        assert bounded(f"a{ch}b") == safe_text(f"a{ch}b") == f"a\\u{ord(ch):04x}b"
    assert bounded("caf\u00e9 \u0434\u043e\u043c \u4e2d") == "caf\u00e9 \u0434\u043e\u043c \u4e2d"
    assert bounded("tag\U000e0041s") == "tag\\ue0041s"  # tag characters are format characters too
    assert bounded("ctl\x07\x85") == "ctl\ufffd\ufffd"  # control characters: as before
    text = bounded("\u202e" * 100, 40)
    assert len(text) == 40 and "\u202e" not in text and text.endswith("\u2026")


class Run:
    def __init__(self, folder: Path) -> None:
        self.doc: dict[str, Any] = json.loads((folder / "audit.json").read_text(encoding="utf-8"))
        self.rows = list(csv.DictReader((folder / "flows.csv").read_text(encoding="utf-8").splitlines()))
        self.html = (folder / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("bidi")
    packets = [eth_ipv4_udp(DNS_SERVER, CLIENT, 53, 40000, dns_response(list(
        (name, addr) for addr, name in NAMES.items()), ident=9))]
    for i, addr in enumerate(NAMES):
        packets += tcp_conversation(addr, 49100 + i, 443, b"")
    write_pcap(folder / "bidi.pcap", packets)
    (folder / "roles.yaml").write_text(ROLES, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, "-m", "auditor.cli", "bidi.pcap", "--roles", "roles.yaml", "-o", "report.html",
         "--json", "audit.json", "--csv", "flows.csv", "-q"],
        cwd=folder, env=env, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return Run(folder)


def test_json_shows_them_as_escapes(run: Run) -> None:
    for s in strings(run.doc):
        assert not any(ch in HIDDEN for ch in s), repr(s)
    by_responder = {f["responder"]: f for f in run.doc["flows"]}
    hosts = {h["address"]: [n["name"] for n in h["names"]] for h in run.doc["hosts"]}
    for addr, name in NAMES.items():  # not vacuous: every name got through, escaped
        assert by_responder[addr]["responder_names"] == [escaped(name)], addr
        assert hosts[addr] == [escaped(name)]
    assert by_responder["10.0.1.80"]["responder_names"] == ["evil\\u202egnp.example"]
    assert by_responder["10.0.1.88"]["responder_names"] == ["caf\u00e9-\u0434\u043e\u043c.example"]


def test_csv_shows_them_as_escapes(run: Run) -> None:
    assert len(run.rows) == len(run.doc["flows"])
    for row in run.rows:
        for column, cell in row.items():
            assert not any(ch in HIDDEN for ch in cell), (column, cell)
    by_responder = {r["responder"]: r for r in run.rows}
    for addr, name in NAMES.items():
        assert by_responder[addr]["responder_names"] == escaped(name)


def test_html_shows_the_same_text(run: Run) -> None:
    assert not any(ch in HIDDEN for ch in run.html)
    for name in NAMES.values():
        shown = escaped(name)
        # As cell text, or inside the data block's JSON (where a backslash is doubled).
        assert shown in run.html or json.dumps(shown, ensure_ascii=False)[1:-1] in run.html, shown
