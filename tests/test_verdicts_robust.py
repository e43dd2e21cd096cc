"""Verdicts do not depend on how the packets reached the capture ("captures you did not
design for"): the same deployment inside VXLAN (cloud traffic mirroring), behind QinQ VLAN tags, or
captured from the middle of its sessions gets the same findings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dpkt
import pytest
from click.testing import CliRunner

from auditor.cli import main
from tests import capture_factory as cf

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"


def _frames(name: str) -> list[tuple[float, bytes]]:
    with (SAMPLES / f"{name}.pcapng").open("rb") as fh:
        return [(ts, bytes(buf)) for ts, buf in dpkt.pcapng.Reader(fh)]


def _audit(path: Path, roles: Path, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{path.stem}.json"
    res = CliRunner().invoke(main, [str(path), "--roles", str(roles), "--json", str(out), "--no-html", "-q"])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def _verdicts(doc: dict[str, Any]) -> dict[tuple[str, str, str, int], tuple[str, bool, tuple[str, ...], str]]:
    return {(f["initiator"], f["responder"], f["protocol"], f["port"]):
            (f["classification"], f["failing"], tuple(f["rule_ids"]), f["outcome"]) for f in doc["flows"]}


def _rules(doc: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["status"] for r in doc["rules"]}


@pytest.mark.parametrize("sample", ["cvad-onprem", "pvs-boot"])
def test_vxlan_mirrored_capture_gets_the_same_findings(sample: str, tmp_path: Path) -> None:
    frames = _frames(sample)
    plain = _audit(SAMPLES / f"{sample}.pcapng", SAMPLES / f"{sample}.roles.yaml", tmp_path)
    wrapped = cf.write_pcap(tmp_path / "mirrored.pcap",
                            [(ts, cf.vxlan("172.31.0.10", "172.31.0.20", frame, vni=4242)) for ts, frame in frames])
    mirrored = _audit(wrapped, SAMPLES / f"{sample}.roles.yaml", tmp_path)
    assert _verdicts(mirrored) == _verdicts(plain)
    assert _rules(mirrored) == _rules(plain)
    assert all(f["tunnels"] == ["vxlan 172.31.0.10->172.31.0.20 vni 4242"] for f in mirrored["flows"])
    assert mirrored["not_audited"]["tunnels"] == {"vxlan": len(frames) - plain["not_audited"]["non_ip"]}


def test_qinq_tagged_capture_gets_the_same_findings(tmp_path: Path) -> None:
    sample = "cvad-onprem"
    frames = _frames(sample)
    plain = _audit(SAMPLES / f"{sample}.pcapng", SAMPLES / f"{sample}.roles.yaml", tmp_path)
    # Insert an 802.1ad outer tag and an 802.1Q inner tag after the MAC addresses.
    tagged = [(ts, f[:12] + b"\x88\xa8\x00\x64\x81\x00\x00\x0a" + f[12:]) for ts, f in frames]
    qinq = _audit(cf.write_pcap(tmp_path / "qinq.pcap", tagged), SAMPLES / f"{sample}.roles.yaml", tmp_path)
    assert _verdicts(qinq) == _verdicts(plain)


def test_capture_started_mid_session_raises_no_false_failures(tmp_path: Path) -> None:
    sample = "cvad-onprem"
    frames = _frames(sample)
    plain = _verdicts(_audit(SAMPLES / f"{sample}.pcapng", SAMPLES / f"{sample}.roles.yaml", tmp_path))
    cut = cf.write_pcap(tmp_path / "late.pcap", frames[len(frames) // 3:])
    late = _verdicts(_audit(cut, SAMPLES / f"{sample}.roles.yaml", tmp_path))
    assert late, "the second part of the capture still has flows"
    for key, (_cls, failing, _ids, _outcome) in late.items():
        if key in plain and failing:
            assert plain[key][1], f"{key} fails only because the capture started mid-session"
    # Sessions already running when the capture started are still judged, by port evidence.
    assert any(v[0] == "expected" and not v[1] for v in late.values())
