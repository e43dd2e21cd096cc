"""The wheel carries the catalog and the report templates, and its CLI works from anywhere.

Builds the wheel from a copy of the source tree (so that the checkout gets no build/ or
egg-info litter), installs it into a fresh venv that sees this interpreter's packages (so that
the dependencies are there offline), and runs it from another folder. Runs in CI: never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.capture import native

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("auditor", "rules", "reports", "setup.py", "pyproject.toml", "README.md")


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the freshly built wheel installed; returns its bin/ folder."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            # Not an in-place build of the kernel (pip install -e): the wheel builds its own.
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
        elif path.exists():
            shutil.copy2(path, src / name)
    wheels = root / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(wheels)], src, 300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("pcap_audit-*.whl")
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], root)
    assert made.returncode == 0, made.stderr
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    # pip itself comes from the system site-packages the venv can see.
    pip = [str(bindir / "python"), "-m", "pip"]
    inst = _run([*pip, "install", "--no-deps", "--no-index", "-q", str(wheel)], root)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    return bindir


def test_installed_package_finds_its_data(installed: Path, tmp_path: Path) -> None:
    code = ("import auditor, auditor.resources as r; print(auditor.__file__); "
            "print(r.rules_dir()); print(r.templates_dir())")
    out = _run([str(installed / "python"), "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    package, rules, templates = out.stdout.splitlines()
    venv = installed.parent.resolve()
    for path in (package, rules, templates):
        assert Path(path).resolve().is_relative_to(venv), (path, venv)  # not the checkout
    assert Path(templates).is_dir() and Path(templates).name == "templates"
    assert Path(rules).is_dir() and Path(rules).name == "rules"
    shipped = {p.name for p in Path(rules).glob("*.yaml")}
    assert shipped == {p.name for p in (REPO / "rules").glob("*.yaml")}


def test_installed_cli_lists_catalog(installed: Path, tmp_path: Path, fixture_rules: Path) -> None:
    exe = str(installed / "pcap-audit")
    out = _run([exe, "catalog", "--rules-dir", str(fixture_rules), "list"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "netscaler-003" in out.stdout
    out = _run([exe, "catalog", "list"], tmp_path)
    if (REPO / "rules" / "roles.yaml").is_file():
        assert out.returncode == 0, out.stderr
        assert "rules" in out.stdout.splitlines()[-1]
    else:  # the bundled data is not written yet: a clean error, never a traceback
        assert out.returncode == 2 and "roles.yaml" in out.stderr and "Traceback" not in out.stderr
    out = _run([exe, "--version"], tmp_path)
    assert out.returncode == 0 and "pcap-audit" in out.stdout


def test_installed_cli_names_its_kernel(installed: Path, tmp_path: Path) -> None:
    # The wheel compiles the kernel where it can (always in CI: PCAP_AUDIT_REQUIRE_COMPILED=1), and
    # --version says which kernel runs; kernel.py is installed either way.
    code = "import auditor.capture.kernel as k, pathlib; print(pathlib.Path(k.__file__).parent)"
    out = _run([str(installed / "python"), "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    capture = Path(out.stdout.strip())
    assert (capture / "kernel.py").is_file()
    compiled = sorted(p.name for p in capture.glob("_kernel_native*"))
    if native.env_flag(os.environ, native.REQUIRE_ENV):
        assert compiled, "the wheel has no compiled kernel"
    env = {k: v for k, v in os.environ.items() if k != "PCAP_AUDIT_PURE"}
    for pure, line in (("0", "kernel: compiled (mypyc " if compiled else "kernel: pure Python (no compiled"),
                       ("1", "kernel: pure Python (PCAP_AUDIT_PURE=1)")):
        ran = subprocess.run([str(installed / "pcap-audit"), "--version"], cwd=tmp_path, capture_output=True,
                             text=True, env={**env, "PCAP_AUDIT_PURE": pure}, timeout=60, check=False)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.splitlines()[1].startswith(line), (ran.stdout, compiled)
