"""Hostile roles and rule files through the real command, under a 1 GiB address-space limit.

Before the limits, a rule file of a few hundred bytes of nested aliases reached 4 GB (MemoryError),
100,000 levels of nesting crashed libyaml's composer (--rules) or raised RecursionError (--roles),
and /dev/zero was read until memory ran out. Now each is one `pcap-audit: error:` line naming the file,
exit status 2, well inside the limit.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.cli_audit import EXIT_BAD_INPUT, EXIT_OK
from auditor.yamlsafe import DEFAULT_MAX_CONFIG_BYTES, MAX_CONFIG_BYTES_ENV, MAX_DEPTH
from tests.capture_factory import write_pcap
from tests.test_cli_audit import CLIENT, STOREFRONT, TINY_ROLES, assert_one_error_line, env, handshake
from tests.test_yaml_limits import LAUGHS, deep_block, zeros_in_fifo

ADDRESS_SPACE = 1 << 30

ROLES_BOMB = "roles:\n  User Device: [10.0.30.5]\n  StoreFront Server: *i\n" + "".join(
    "#" + line + "\n" for line in LAUGHS.splitlines())
"""A roles file whose hosts are an alias (the anchors commented out: undefined aliases are refused too)."""
ROLES_LAUGHS = "vantage: [10.0.30.5]\n" + LAUGHS.replace("a: &a", "roles: &a").replace(
    "\nb: &b", "\nfeatures: &b").replace("\nc: &c", "\nvantage2: &c")


def limited() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def audit(tmp_path: Path, *args: str | Path, extra_env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    cap = tmp_path / "cap.pcap"
    if not cap.exists():
        write_pcap(cap, handshake(CLIENT, STOREFRONT, 50000, 443))
    if "--roles" not in args:
        roles = tmp_path / "roles.yaml"
        roles.write_text(TINY_ROLES, encoding="utf-8")
        args = (*args, "--roles", roles)
    e = env()
    e.pop(MAX_CONFIG_BYTES_ENV, None)
    e.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "auditor.cli", cap, "--no-html", "-q", *map(str, args)],
                          cwd=tmp_path, env=e, capture_output=True, text=True, timeout=120, check=False,
                          preexec_fn=limited)


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == EXIT_BAD_INPUT, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout == ""
    return assert_one_error_line(proc.stderr)


def test_the_limit_leaves_room_for_an_audit(tmp_path: Path) -> None:
    """Not vacuous: a good audit runs under the same limit."""
    proc = audit(tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr


@pytest.mark.parametrize("option", ["--rules", "--roles"])
def test_billion_laughs(option: str, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(LAUGHS, encoding="utf-8")
    assert bomb.stat().st_size < 400
    line = one_error(audit(tmp_path, option, bomb))
    assert line == (f"pcap-audit: error: {bomb}:2: YAML alias *a is not allowed in roles and rule files "
                    "(write the value out)")


@pytest.mark.parametrize(("text", "line"), [(ROLES_BOMB, 3), (ROLES_LAUGHS, 3)])
def test_aliases_in_a_roles_file(text: str, line: int, tmp_path: Path) -> None:
    roles = tmp_path / "r.yaml"
    roles.write_text(text, encoding="utf-8")
    assert f"r.yaml:{line}: YAML alias" in one_error(audit(tmp_path, "--roles", roles))


@pytest.mark.parametrize("option", ["--rules", "--roles"])
@pytest.mark.parametrize("shape", ["flow", "block"])
def test_deep_nesting(option: str, shape: str, tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 100_000 + "]" * 100_000 if shape == "flow" else deep_block(5000), encoding="utf-8")
    line = 1 if shape == "flow" else MAX_DEPTH + 1
    assert one_error(audit(tmp_path, option, deep)) == \
        f"pcap-audit: error: {deep}:{line}: nested more than {MAX_DEPTH} levels deep"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("option", ["--rules", "--roles"])
def test_dev_zero_stops_at_the_default_limit(option: str, tmp_path: Path) -> None:
    line = one_error(audit(tmp_path, option, "/dev/zero"))
    assert line.startswith(f"pcap-audit: error: /dev/zero: larger than {DEFAULT_MAX_CONFIG_BYTES} bytes"), line
    assert MAX_CONFIG_BYTES_ENV in line


@pytest.mark.parametrize("option", ["--rules", "--roles"])
def test_a_fifo_that_never_ends(option: str, tmp_path: Path) -> None:
    fifo = tmp_path / "endless.yaml"
    with zeros_in_fifo(fifo):
        proc = audit(tmp_path, option, fifo, extra_env={MAX_CONFIG_BYTES_ENV: "200000"})
    assert one_error(proc).startswith(f"pcap-audit: error: {fifo}: larger than 200000 bytes")


def test_the_limit_is_configurable(tmp_path: Path) -> None:
    roles = tmp_path / "r.yaml"
    roles.write_text(TINY_ROLES + "# padding\n" * 4000, encoding="utf-8")  # the bundled files are 27 kB at most
    size = roles.stat().st_size
    assert audit(tmp_path, "--roles", roles, extra_env={MAX_CONFIG_BYTES_ENV: str(size)}).returncode == EXIT_OK
    line = one_error(audit(tmp_path, "--roles", roles, extra_env={MAX_CONFIG_BYTES_ENV: str(size - 1)}))
    assert line == (f"pcap-audit: error: {roles}: larger than {size - 1} bytes, the limit for roles and rule "
                    f"files (set {MAX_CONFIG_BYTES_ENV} to change it)")
    line = one_error(audit(tmp_path, "--roles", roles, extra_env={MAX_CONFIG_BYTES_ENV: "a lot"}))
    assert line == f"pcap-audit: error: {MAX_CONFIG_BYTES_ENV}='a lot': expected a number of bytes (1 or more)"


def test_catalog_validate_refuses_them_too(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(LAUGHS, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "auditor.cli", "catalog", "validate", str(bomb)], cwd=tmp_path,
                          env=env(), capture_output=True, text=True, timeout=120, check=False, preexec_fn=limited)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert f"{bomb}:2: YAML alias *a is not allowed" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
