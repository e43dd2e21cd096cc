"""`pcap-audit CAPTURE... --roles roles.yaml` as a user meets it (SPEC §5).

Exit codes (0 done, 1 --fail-on finding, 2 bad usage or input, one clear line and no traceback),
outputs written whole or not at all, inputs never touched, the progress bar on a terminal only,
stdin, several inputs, --jobs, and the text summary. Most runs are in-process (click's CliRunner);
real exit codes, the terminal and stdin go through `python -m auditor.cli` in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from auditor.cli import main
from auditor.cli_audit import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK
from tests.capture_factory import eth_ipv4_tcp, eth_ipv4_udp, write_pcap, write_pcapng
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
CVAD = SAMPLES / "cvad-onprem.pcapng"
CVAD_ROLES = SAMPLES / "cvad-onprem.roles.yaml"
ERROR_PREFIX = "pcap-audit: error:"

CLIENT, STOREFRONT = "10.0.30.5", "10.0.1.20"
TINY_ROLES = f"roles:\n  User Device: [{CLIENT}]\n  StoreFront Server: [{STOREFRONT}]\n"


# --- helpers -----------------------------------------------------------------------------------


def invoke(args: Sequence[str | Path]) -> Result:
    """The CLI in-process; stdout and stderr apart (click >= 8.2)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e.pop("COLUMNS", None)
    return e


def run_cli(args: Sequence[str | Path], cwd: Path, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    """The real command in a subprocess: `python -m auditor.cli ARGS` with cwd."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "auditor.cli", *map(str, args)], cwd=cwd, env=env(),
                          timeout=120, check=False, **kw)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def handshake(client: str, server: str, sport: int, dport: int) -> list[bytes]:
    """A whole TCP conversation: handshake, one data segment each way, FIN teardown."""
    return [
        eth_ipv4_tcp(client, server, sport, dport, "S", seq=100),
        eth_ipv4_tcp(server, client, dport, sport, "SA", seq=500, ack=101),
        eth_ipv4_tcp(client, server, sport, dport, "A", seq=101, ack=501),
        eth_ipv4_tcp(client, server, sport, dport, "PA", payload=b"x" * 10, seq=101, ack=501),
        eth_ipv4_tcp(server, client, dport, sport, "PA", payload=b"y" * 20, seq=501, ack=111),
        eth_ipv4_tcp(client, server, sport, dport, "FA", seq=111, ack=521),
        eth_ipv4_tcp(server, client, dport, sport, "FA", seq=521, ack=112),
        eth_ipv4_tcp(client, server, sport, dport, "A", seq=112, ack=522),
    ]


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """A capture holding one expected flow only (User Device -> StoreFront tcp/443), and its roles."""
    cap = write_pcap(tmp_path / "tiny.pcap", handshake(CLIENT, STOREFRONT, 50000, 443))
    roles = tmp_path / "tiny.roles.yaml"
    roles.write_text(TINY_ROLES, encoding="utf-8")
    return cap, roles


def assert_one_error_line(stderr: str) -> str:
    """Exactly one `pcap-audit: error: ...` line (usage errors click finds included), never a
    traceback. Returns the message."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith(ERROR_PREFIX), stderr
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files of write_atomic (`.NAME.XXXX.tmp`) anywhere under folder."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*.tmp"))


def strip_run(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    run = dict(out["run"])
    for key in ("started", "finished", "command_line"):
        run.pop(key, None)
    out["run"] = run
    return out


# --- exit status 0 and 1 -------------------------------------------------------------------------


def test_exit_0_on_a_sample(tmp_path: Path) -> None:
    result = invoke([CVAD, "--roles", CVAD_ROLES, "-o", tmp_path / "r.html", "-q"])
    assert result.exit_code == EXIT_OK, result.output
    assert result.stderr == ""


@pytest.mark.parametrize("kind", ["unexpected", "failing", "missing"])
def test_fail_on_a_finding_that_occurred_exits_1(kind: str, tmp_path: Path) -> None:
    result = invoke([CVAD, "--roles", CVAD_ROLES, "--json", tmp_path / "a.json", "--fail-on", kind,
                     "-o", tmp_path / "r.html"])
    assert result.exit_code == EXIT_FINDINGS, result.output
    assert f"--fail-on: {kind} found" in result.stderr
    # The outputs are still written: a pipeline wants the report of the failure.
    assert (tmp_path / "r.html").is_file()
    s = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["summary"]
    count = {"unexpected": s["unexpected"], "failing": s["expected_failing"] + s["rules"]["failing"],
             "missing": s["rules"]["missing"]}[kind]
    assert count > 0


def test_fail_on_exits_1_even_when_quiet(tmp_path: Path) -> None:
    result = invoke([CVAD, "--roles", CVAD_ROLES, "--no-html", "-q", "--fail-on", "missing,unexpected"])
    assert result.exit_code == EXIT_FINDINGS
    assert result.stdout == "" and result.stderr == ""


@pytest.mark.parametrize("kinds", ["unexpected", "failing", "missing", "unexpected,failing,missing"])
def test_fail_on_kinds_that_did_not_occur_exit_0(kinds: str, tiny: tuple[Path, Path], tmp_path: Path) -> None:
    cap, roles = tiny
    out = tmp_path / "a.json"
    result = invoke([cap, "--roles", roles, "--json", out, "--no-html", "--fail-on", kinds])
    assert result.exit_code == EXIT_OK, result.output
    s = json.loads(out.read_text(encoding="utf-8"))["summary"]
    assert (s["flows"], s["expected"], s["unexpected"], s["expected_failing"]) == (1, 1, 0, 0)
    assert (s["rules"]["failing"], s["rules"]["missing"]) == (0, 0)
    assert "--fail-on" not in result.stderr


def test_real_exit_codes_in_a_subprocess(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    cap, roles = tiny
    assert run_cli([cap, "--roles", roles, "--no-html", "-q"], tmp_path).returncode == EXIT_OK
    assert run_cli([CVAD, "--roles", CVAD_ROLES, "--no-html", "-q", "--fail-on", "unexpected"],
                   tmp_path).returncode == EXIT_FINDINGS
    bad = run_cli([tmp_path / "nope.pcap", "--roles", roles, "--no-html"], tmp_path)
    assert bad.returncode == EXIT_BAD_INPUT
    assert_one_error_line(bad.stderr.decode())
    assert bad.stdout == b""


# --- exit status 2: bad usage or input -----------------------------------------------------------

SITE_RULE_BAD_PORT = """\
product: Site
rules:
  - id: site-001
    source: User Device
    destination: StoreFront Server
    protocols: [tcp]
    ports: [70000]
    type: TCP
    description: out of range
"""

# name -> (files to write, extra args, substrings of the message)
BAD_INPUTS: dict[str, tuple[dict[str, str], list[str], list[str]]] = {
    "unknown-fail-on-kind": ({}, ["--fail-on", "unexpected,bogus"], ["--fail-on", "bogus",
                                                                     "(see pcap-audit audit --help)"]),
    "missing-capture": ({}, ["CAP=nope.pcapng"], ["nope.pcapng"]),
    "not-a-capture": ({"notes.pcap": "hello, this is text\n"}, ["CAP=notes.pcap"], ["notes.pcap", "not a pcap"]),
    "missing-roles": ({}, ["ROLES=absent.yaml"], ["absent.yaml"]),
    "unknown-role": ({"r.yaml": "roles:\n  User Device: [10.0.30.5]\n  Delivery Controler: [10.0.1.10]\n"},
                     ["ROLES=r.yaml"], ["r.yaml:3", "Delivery Controler", "did you mean", "Delivery Controller"]),
    "bad-yaml": ({"r.yaml": "roles:\n  User Device: [10.0.30.5\n  StoreFront Server: [10.0.1.20]\n"},
                 ["ROLES=r.yaml"], ["r.yaml:", "YAML"]),
    "invalid-address": ({"r.yaml": "roles:\n  User Device: [10.0.30.5]\n  StoreFront Server: [10.0.1.300]\n"},
                        ["ROLES=r.yaml"], ["r.yaml:3", "10.0.1.300"]),
    "unknown-vantage-role": ({}, ["--vantage", "Store Frnt"], ["--vantage", "Store Frnt", "did you mean"]),
    "bad-rules-file": ({"site.yaml": SITE_RULE_BAD_PORT}, ["--rules", "site.yaml"], ["site.yaml:7", "70000"]),
}


def _bad_args(tmp_path: Path, tiny: tuple[Path, Path], case: str) -> tuple[list[str], list[str]]:
    files, extra, wanted = BAD_INPUTS[case]
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    cap, roles = str(tiny[0]), str(tiny[1])
    rest: list[str] = []
    for a in extra:
        if a.startswith("CAP="):
            cap = str(tmp_path / a[4:])
        elif a.startswith("ROLES="):
            roles = str(tmp_path / a[6:])
        elif a.endswith(".yaml"):
            rest.append(str(tmp_path / a))
        else:
            rest.append(a)
    out = tmp_path / "out"
    args = [cap, "--roles", roles, *rest, "-o", str(out / "report.html"), "--json", str(out / "a.json"),
            "--csv", str(out / "a.csv")]
    return args, wanted


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case: str, tiny: tuple[Path, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args, wanted = _bad_args(tmp_path, tiny, case)
    inputs = {p: sha256(p) for p in tmp_path.iterdir() if p.is_file()}
    result = invoke(args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no uncaught exception
    message = assert_one_error_line(result.stderr)
    for text in wanted:
        assert text in message, message
    assert result.stdout == ""
    # Nothing written, nothing half-written, inputs untouched.
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []
    assert not (tmp_path / "report.html").exists()
    assert leftovers(tmp_path) == []
    assert {p: sha256(p) for p in inputs} == inputs


def test_debug_shows_the_traceback(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    proc = run_cli([tiny[0], "--roles", tmp_path / "absent.yaml", "--no-html", "--debug"], tmp_path)
    assert proc.returncode != EXIT_OK
    err = proc.stderr.decode()
    assert "Traceback (most recent call last)" in err
    assert "absent.yaml" in err


def test_debug_still_exits_2_on_bad_input(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    proc = run_cli([tiny[0], "--roles", tmp_path / "absent.yaml", "--no-html", "--debug"], tmp_path)
    assert "Traceback (most recent call last)" in proc.stderr.decode()
    assert proc.returncode == EXIT_BAD_INPUT


# --- outputs: whole or not at all; inputs untouched -------------------------------------------------


def test_failed_audit_leaves_an_existing_report_untouched(tiny: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    old = b"<html>yesterday's audit</html>\n"
    (tmp_path / "report.html").write_bytes(old)
    (tmp_path / "a.json").write_bytes(b'{"old": true}\n')
    attempts: list[list[str | Path]] = [[tmp_path / "gone.pcap", "--roles", tiny[1]],
                                        [tiny[0], "--roles", tmp_path / "gone.yaml"]]
    for args in attempts:
        result = invoke([*args, "--json", "a.json"])
        assert result.exit_code == EXIT_BAD_INPUT
        assert (tmp_path / "report.html").read_bytes() == old
        assert (tmp_path / "a.json").read_bytes() == b'{"old": true}\n'
        assert leftovers(tmp_path) == []


def test_successful_audit_writes_every_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = {p: sha256(p) for p in (CVAD, CVAD_ROLES)}
    result = invoke([CVAD, "--roles", CVAD_ROLES, "--json", "out/a.json", "--csv", "out/a.csv",
                     "-o", "out/report.html"])
    assert result.exit_code == EXIT_OK, result.output
    doc = json.loads((tmp_path / "out/a.json").read_text(encoding="utf-8"))
    frame = pd.read_csv(tmp_path / "out/a.csv")
    assert len(frame) == len(doc["flows"]) == doc["summary"]["flows"] > 0
    keys = sorted(zip(frame["initiator"], frame["responder"], frame["protocol"], frame["port"].astype("Int64"),
                      strict=True), key=str)
    assert keys == sorted(((f["initiator"], f["responder"], f["protocol"], f["port"]) for f in doc["flows"]),
                          key=str)
    html = (tmp_path / "out/report.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "</html>" in html
    assert leftovers(tmp_path) == []
    assert {p: sha256(p) for p in before} == before
    for name in ("report.html", "a.json", "a.csv"):
        assert f"wrote out/{name}" in result.stdout


def test_default_output_is_report_html_in_cwd(tiny: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = invoke([tiny[0], "--roles", tiny[1]])
    assert result.exit_code == EXIT_OK, result.output
    assert sorted(p.name for p in work.iterdir()) == ["report.html"]
    assert "<html" in (work / "report.html").read_text(encoding="utf-8")


def test_no_html_writes_no_report(tiny: tuple[Path, Path], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = invoke([tiny[0], "--roles", tiny[1], "--no-html", "--json", "a.json"])
    assert result.exit_code == EXIT_OK, result.output
    assert sorted(p.name for p in work.iterdir()) == ["a.json"]
    assert "report.html" not in result.stdout


def test_an_output_that_cannot_be_written_changes_no_other_output(
        tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.json").write_bytes(b'{"old": true}\n')
    (tmp_path / "a.csv").write_bytes(b"old\n")
    (tmp_path / "report.html").mkdir()  # -o names a folder: that output cannot be written
    result = invoke([tiny[0], "--roles", tiny[1], "--json", "a.json", "--csv", "a.csv"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert leftovers(tmp_path) == []
    assert (tmp_path / "a.json").read_bytes() == b'{"old": true}\n'
    assert (tmp_path / "a.csv").read_bytes() == b"old\n"


def test_an_output_that_cannot_be_written_is_named(tiny: tuple[Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.html").mkdir()
    result = invoke([tiny[0], "--roles", tiny[1]])
    assert result.exit_code == EXIT_BAD_INPUT
    message = assert_one_error_line(result.stderr)
    assert "report.html" in message and ".tmp" not in message, message


@pytest.mark.parametrize("failing", ["a.json", "report.html"])
def test_an_output_failing_while_written_leaves_every_output_as_it_was(
        failing: str, tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With two cores the JSON and CSV are written by forked processes while this one writes the
    # HTML: a failure in either kind of writer is one line naming the output, and nothing changes.
    import auditor.report.html as html
    import auditor.report.tabular as tabular

    def disk_full(doc: Any) -> Any:
        yield "{"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tabular if failing == "a.json" else html,
                        "iter_json" if failing == "a.json" else "iter_html", disk_full)
    monkeypatch.chdir(tmp_path)
    old = {name: f"old {name}\n".encode() for name in ("a.json", "a.csv", "report.html")}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    result = invoke([tiny[0], "--roles", tiny[1], "--json", "a.json", "--csv", "a.csv"])
    assert result.exit_code == EXIT_BAD_INPUT
    message = assert_one_error_line(result.stderr)
    assert failing in message and "No space left on device" in message, message
    assert {name: (tmp_path / name).read_bytes() for name in old} == old
    assert leftovers(tmp_path) == []


def test_outputs_get_the_usual_file_mode(tiny: tuple[Path, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Not mkstemp's 0600: the mode any new file gets, also when replacing an existing report."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.html").write_bytes(b"old\n")
    (tmp_path / "report.html").chmod(0o600)
    umask = os.umask(0o022)
    try:
        result = invoke([tiny[0], "--roles", tiny[1], "--json", "a.json", "--csv", "a.csv"])
    finally:
        os.umask(umask)
    assert result.exit_code == EXIT_OK
    for name in ("report.html", "a.json", "a.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


# --- inputs: stdin, several files ----------------------------------------------------------------


def test_capture_on_stdin(tmp_path: Path) -> None:
    data = CVAD.read_bytes()
    proc = run_cli(["-", "--roles", CVAD_ROLES, "--json", "out.json", "--no-html", "-q"], tmp_path, input=data)
    assert proc.returncode == EXIT_OK, proc.stderr.decode()
    doc = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    [inp] = doc["inputs"]
    assert inp["path"] == "-"
    assert inp["sha256"] == hashlib.sha256(data).hexdigest()
    assert inp["size"] == len(data)
    assert inp["packets"] == doc["summary"]["packets"] > 0
    # Same audit as from the file.
    direct = invoke([CVAD, "--roles", CVAD_ROLES, "--json", tmp_path / "file.json", "--no-html", "-q"])
    assert direct.exit_code == EXIT_OK
    from_file = json.loads((tmp_path / "file.json").read_text(encoding="utf-8"))
    assert doc["summary"] == from_file["summary"]
    assert doc["flows"] == from_file["flows"]


def test_several_inputs_in_one_run(tmp_path: Path) -> None:
    first = write_pcap(tmp_path / "one.pcap", handshake(CLIENT, STOREFRONT, 50000, 443))
    second_packets = [*handshake(CLIENT, STOREFRONT, 50001, 80),
                      eth_ipv4_udp(CLIENT, "10.0.1.99", 50002, 514, b"syslog")]
    second = write_pcapng(tmp_path / "two.pcapng", [1], second_packets)
    roles = tmp_path / "roles.yaml"
    roles.write_text(TINY_ROLES, encoding="utf-8")
    result = invoke([first, second, "--roles", roles, "--json", tmp_path / "a.json", "--no-html"])
    assert result.exit_code == EXIT_OK, result.output
    doc = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    got = [(i["path"], i["sha256"], i["packets"], i["format"]) for i in doc["inputs"]]
    assert got == [
        (str(first), hashlib.sha256(first.read_bytes()).hexdigest(), 8, "pcap"),
        (str(second), hashlib.sha256(second.read_bytes()).hexdigest(), 9, "pcapng"),
    ]
    assert doc["summary"]["packets"] == 17
    assert "2 input(s), 17 packets" in result.stdout
    # Evidence points into the right input.
    syslog = [f for f in doc["flows"] if f["port"] == 514]
    assert [f["first_frame"] for f in syslog] == [{"input": 1, "frame": 9}]


# --- --jobs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", [
    "netscaler-ha",
    "daas-cloud",
])
def test_jobs_2_gives_the_same_audit_as_jobs_1(sample: str, tmp_path: Path) -> None:
    docs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}.json"
        result = invoke([SAMPLES / f"{sample}.pcapng", "--roles", SAMPLES / f"{sample}.roles.yaml",
                         "--json", out, "--no-html", "-q", "--jobs", jobs])
        assert result.exit_code == EXIT_OK, result.output
        docs.append(strip_run(json.loads(out.read_text(encoding="utf-8"))))
    one, two = docs
    assert one.keys() == two.keys()
    assert [k for k in one if one[k] != two[k]] == []


def test_jobs_on_a_larger_pcap_give_the_same_audit(long_run: tuple[Path, Path], tmp_path: Path) -> None:
    # A pcap takes the kernel and the fast lane; this process reads share 0, forked workers the rest.
    cap, roles = long_run
    docs = []
    for jobs in ("1", "2", "3"):
        out = tmp_path / f"jobs{jobs}.json"
        result = invoke([cap, "--roles", roles, "--json", out, "--no-html", "-q", "--jobs", jobs])
        assert result.exit_code == EXIT_OK, result.output
        docs.append(strip_run(json.loads(out.read_text(encoding="utf-8"))))
    assert docs[0]["summary"]["packets"] > 100_000 and len(docs[0]["flows"]) > 1_000
    for other in docs[1:]:
        assert [k for k in docs[0] if docs[0][k] != other[k]] == []


def test_a_large_compressed_capture_is_decompressed_by_a_second_process(long_run: tuple[Path, Path], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # -j 0 on two cores picks the decompressing process for a large compressed file (the threshold
    # lowered here); -j 1 decompresses in line. The audits are the same.
    import gzip

    from auditor import capture, parallel
    from auditor.capture import source

    cap, roles = long_run
    gz = tmp_path / "long.pcap.gz"
    gz.write_bytes(gzip.compress(cap.read_bytes(), compresslevel=1))
    monkeypatch.setattr(capture, "INFLATE_MIN", 1 << 20)
    monkeypatch.setattr(parallel, "cpus", lambda: 2)
    started: list[str] = []
    real = source.Inflater.__init__

    def counting(self: source.Inflater, path: str, compression: str) -> None:
        started.append(path)
        real(self, path, compression)

    monkeypatch.setattr(source.Inflater, "__init__", counting)
    docs = []
    for jobs in ("1", "0"):
        out = tmp_path / f"jobs{jobs}.json"
        result = invoke([gz, "--roles", roles, "--json", out, "--no-html", "-q", "--jobs", jobs])
        assert result.exit_code == EXIT_OK, result.output
        docs.append(strip_run(json.loads(out.read_text(encoding="utf-8"))))
        assert started == ([] if jobs == "1" else [str(gz)])
    assert docs[0]["summary"]["packets"] > 100_000
    assert [k for k in docs[0] if docs[0][k] != docs[1][k]] == []


# --- the text summary --------------------------------------------------------------------------------

SUMMARY = re.compile(
    r"pcap-audit \S+: (?P<inputs>\d+) input\(s\), (?P<packets>[\d,]+) packets, (?P<connections>[\d,]+) "
    r"connections, (?P<flows>[\d,]+) flows\n"
    r"  flows: (?P<expected>\d+) expected \((?P<expected_failing>\d+) failing\), (?P<unexpected>\d+) "
    r"unexpected, (?P<unmapped>\d+) unmapped\n"
    r"  rules: (?P<observed>\d+) observed, (?P<failing>\d+) failing, (?P<missing>\d+) missing [^,]*, "
    r"(?P<covered>\d+) covered by an alternative, "
    r"(?P<not_observable>\d+) not observable, (?P<not_applicable>\d+) not applicable\n"
)


@pytest.mark.parametrize("sample", ["cvad-onprem", "pvs-boot"])
def test_text_summary_counts_equal_the_json_summary(sample: str, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    result = invoke([SAMPLES / f"{sample}.pcapng", "--roles", SAMPLES / f"{sample}.roles.yaml",
                     "--json", out, "--no-html"])
    assert result.exit_code == EXIT_OK, result.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    m = SUMMARY.match(result.stdout)
    assert m, result.stdout
    got = {k: int(v.replace(",", "")) for k, v in m.groupdict().items()}
    s, r = doc["summary"], doc["summary"]["rules"]
    assert got == {
        "inputs": len(doc["inputs"]), "packets": s["packets"], "connections": s["connections"],
        "flows": s["flows"], "expected": s["expected"], "expected_failing": s["expected_failing"],
        "unexpected": s["unexpected"], "unmapped": s["unmapped"], "observed": r["observed"],
        "failing": r["failing"], "missing": r["missing"], "covered": r["covered"],
        "not_observable": r["not-observable"],
        "not_applicable": r["not-applicable"],
    }
    # The listed failing / unexpected flows are among the JSON's.
    listed = re.findall(r"^    (\S+) -> (\S+) (\w+)/(\d+) ", result.stdout, re.M)
    flows = {(f["initiator"], f["responder"], f["protocol"], str(f["port"])) for f in doc["flows"]}
    assert set(listed) <= flows
    assert len(listed) == min(5, s["expected_failing"]) + min(5, s["unexpected"])


# --- the progress bar ----------------------------------------------------------------------------------

BAR = re.compile(r"\r\[[# ]{30}\]\s+(\d+)% ([\d,]+)/([\d,]+) MB\s+([\d,]+) packets/s")


def _load_make_capture() -> ModuleType:
    return load_script(ROOT / "bench" / "make_capture.py")


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A capture that takes about a second to audit (120k packets, ~54 MB: one process), and roles."""
    folder = tmp_path_factory.mktemp("long")
    cap = folder / "long.pcap"
    _load_make_capture().generate(cap, 120_000)
    roles = folder / "roles.yaml"
    roles.write_text("roles:\n  Delivery Controller: [10.0.0.1]\n", encoding="utf-8")
    return cap, roles


def run_on_pty(args: Sequence[str | Path], cwd: Path, timeout: float = 60) -> tuple[int, str, bytes]:
    """Run the CLI with stderr on a pseudo-terminal; returns (exit code, terminal text, stdout)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "auditor.cli", *map(str, args)], cwd=cwd, env=env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.stdout is not None
        out = proc.stdout.read()
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace"), out


@pytest.fixture(scope="module")
def bar_on_terminal(long_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[int, str, bytes]:
    cap, roles = long_run
    return run_on_pty([cap, "--roles", roles, "--no-html"], tmp_path_factory.mktemp("pty"))


def test_progress_bar_on_a_terminal(bar_on_terminal: tuple[int, str, bytes]) -> None:
    code, terminal, out = bar_on_terminal
    assert code == EXIT_OK, terminal
    assert "packets/s" in terminal and "%" in terminal, terminal
    frames = BAR.findall(terminal)
    assert frames, terminal
    percents = [int(f[0]) for f in frames]
    assert percents == sorted(percents) and all(f[2] == frames[0][2] for f in frames)
    # The bar is wiped at the end; the summary goes to stdout, not the terminal's stderr.
    assert terminal.rstrip(" \r").endswith("packets/s")
    assert b"120,0" in out and b"packets" in out


def test_progress_bar_rate_is_not_zero_while_reading(bar_on_terminal: tuple[int, str, bytes]) -> None:
    _, terminal, _ = bar_on_terminal
    midway = [f for f in BAR.findall(terminal) if 0 < int(f[0]) < 100 and f[1] != "0"]
    assert midway, terminal
    assert all(rate != "0" for *_, rate in midway), midway


def test_no_progress_bar_when_not_a_terminal(long_run: tuple[Path, Path], tmp_path: Path) -> None:
    cap, roles = long_run
    proc = run_cli([cap, "--roles", roles, "--no-html"], tmp_path)
    assert proc.returncode == EXIT_OK
    assert proc.stderr == b""
    assert b"packets/s" not in proc.stdout and b"\r" not in proc.stdout


def test_no_progress_bar_when_quiet(long_run: tuple[Path, Path], tmp_path: Path) -> None:
    cap, roles = long_run
    code, terminal, out = run_on_pty([cap, "--roles", roles, "--no-html", "--quiet"], tmp_path)
    assert code == EXIT_OK
    assert terminal == ""
    assert out == b""


@pytest.mark.parametrize(("fail_on", "status"), [([], EXIT_OK), (["--fail-on", "unexpected"], EXIT_FINDINGS)])
def test_a_reader_that_stops_early_does_not_change_the_exit_status(tmp_path: Path, fail_on: list[str],
                                                                   status: int) -> None:
    # `pcap-audit ... | head`: the summary's reader is gone before it is written. The outputs are
    # written all the same, and the exit status is the audit's (click alone would exit 1, which
    # here means findings).
    out = tmp_path / "a.json"
    proc = subprocess.Popen([sys.executable, "-m", "auditor.cli", str(SAMPLES / "cvad-onprem.pcapng"), "--roles",
                             str(SAMPLES / "cvad-onprem.roles.yaml"), "--json", str(out), "-o",
                             str(tmp_path / "r.html"), *fail_on],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # no reader: every write to standard output fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == status, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert json.loads(out.read_text(encoding="utf-8"))["summary"]["packets"] == 781
    assert (tmp_path / "r.html").stat().st_size > 10_000
