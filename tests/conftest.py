"""Shared fixtures: small catalogs written to tmp_path, and the bundled catalog when it has data."""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from auditor.resources import rules_dir

FIXTURE_ROLES = """\
roles:
  - name: Delivery Controller
    aliases: [Controller]
    citrix: true
  - name: Virtual Delivery Agent
    aliases: [VDA]
    citrix: true
  - name: StoreFront Server
    aliases: [StoreFront]
    citrix: true
  - name: User Device
    aliases: [Citrix Workspace app, Citrix Workspace App]
  - name: NetScaler NSIP
    citrix: true
  - name: NetScaler HA Peer
    citrix: true
    satisfied_by: [NetScaler NSIP]
  - name: NetScaler ADM
    aliases: [Citirx ADM]
    citrix: true
  - name: DNS Server
  - name: Any Citrix Component
    family: citrix
"""

FIXTURE_STOREFRONT = """\
product: StoreFront
order: 18
port_data: true
rules:
  - id: storefront-002
    source: User Device
    destination: StoreFront
    protocols: [tcp]
    ports: [80, 443]
    type: HTTPS
    description: Connecting to the store
    seed_row: "table row 1"
    hostnames: ["*.digicert.com"]
  - id: storefront-001
    source: storefront server
    destination: controller
    protocols: [tcp, udp]
    ports: [80, "49152-65535", "1494-1495"]
    type: TCP
    description: XML service
    bidirectional: true
    note: "repaired"
"""

FIXTURE_NETSCALER = """\
product: NetScaler
order: 2
rules:
  - id: netscaler-001
    source: NetScaler HA Peer
    destination: NetScaler HA Peer
    protocols: [udp]
    ports: [3003]
    type: UDP
    description: HA heartbeat
    one_way: true
  - id: netscaler-002
    source: NetScaler ADM
    destination: NetScaler NSIP
    protocols: [icmp]
    ports: []
    type: ICMP
    description: Ping
  - id: netscaler-003
    source: Any Citrix Component
    destination: DNS Server
    protocols: [udp, tcp]
    ports: [53]
    type: DNS
    description: Name resolution
"""

FIXTURE_LINK = """\
product: App Layering
order: 30
port_data: false
link: "https://docs.citrix.com/en-us/citrix-app-layering/4/install-appliance/firewall-ports.html"
rules: []
"""


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """write('name.yaml', text) -> path, text dedented, under tmp_path (folders made as needed)."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def fixture_rules(tmp_path: Path) -> Path:
    """A small, valid catalog folder: tmp_path/rules/{roles,storefront,netscaler,app-layering}.yaml."""
    d = tmp_path / "rules"
    d.mkdir()
    for name, text in (("roles.yaml", FIXTURE_ROLES), ("storefront.yaml", FIXTURE_STOREFRONT),
                       ("netscaler.yaml", FIXTURE_NETSCALER), ("app-layering.yaml", FIXTURE_LINK)):
        (d / name).write_text(text, encoding="utf-8")
    return d


_CACHE: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """What runs prepare for later runs (auditor/cache.py) goes to a folder of this test session's
    own, from before the test modules are imported (some load the catalog then) to the end; the
    commands the tests start inherit it."""
    where = tempfile.mkdtemp(prefix="pcap-audit-test-cache-")
    _CACHE.append(where)
    os.environ["PCAP_AUDIT_CACHE"] = where


def pytest_unconfigure(config: pytest.Config) -> None:
    for where in _CACHE:
        shutil.rmtree(where, ignore_errors=True)


def real_catalog_present() -> bool:
    try:
        d = rules_dir()
    except FileNotFoundError:
        return False
    return (d / "roles.yaml").is_file() and any(p.name != "roles.yaml" for p in d.glob("*.yaml"))


@pytest.fixture
def real_rules() -> Path:
    """The bundled catalog folder; skips while the data files are not written yet."""
    if not real_catalog_present():
        pytest.skip("the bundled catalog (rules/*.yaml) is not there yet")
    return rules_dir()


def compiled_kernel_or_skip() -> dict[str, ModuleType]:
    """The compiled modules (auditor/capture/native.py's COMPILED); where they are not installed the
    test is skipped, except under PCAP_AUDIT_REQUIRE_COMPILED=1 (CI), where it fails."""
    from auditor.capture import native

    modules, why_not = native.load_native()
    if modules is None:
        if native.env_flag(os.environ, native.REQUIRE_ENV):
            pytest.fail(f"{native.REQUIRE_ENV}=1 but {why_not}")
        pytest.skip(why_not)
    return modules


@pytest.fixture
def compiled_kernel() -> dict[str, ModuleType]:
    return compiled_kernel_or_skip()


@pytest.fixture(params=["pure", "compiled"])
def each_kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The test once with each build of the hot path (auditor/capture/native.py): the Python modules
    (capture/kernel.py, dnswire.py), and their compiled builds (compiled_kernel_or_skip). Decoders and
    name readers made during the test use it; the value is the kernel's module (KEEP_FIRST...), the
    others are ``native.KERNEL.of(name)``."""
    from auditor.capture import native

    if request.param == "pure":
        build = native.Build(native.pure_modules(), False, "pure Python (test)")
    else:
        build = native.Build(compiled_kernel_or_skip(), True, "compiled (test)")
    monkeypatch.setattr(native, "KERNEL", build)
    return build.module
