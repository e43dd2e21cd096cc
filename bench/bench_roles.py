"""Benchmark of role lookup: time per host against roles files of several sizes, and the peak memory
of reading a very large roles file.

    python bench/bench_roles.py [--entries 20 2000 20000] [--hosts 100000 500000] [--peak-entries 2600000]

Each roles file is generated (seeded) with mixed entries, as a large estate writes them: half single
addresses, a quarter CIDRs (/24 to /30), a fifth inclusive ranges, 5 % host names and `*.` wildcards,
a tenth of everything IPv6, spread over ten roles. It is parsed with auditor.roles.parse_roles, then
``RoleMap.roles_of`` resolves N distinct hosts once each: 60 % inside an entry, 30 % elsewhere in
10.0.0.0/8, 5 % IPv6, 5 % with a host name the capture would have tied to them; then the audit's
HostResolver does the same from scratch (roles_of, plus the catalog's host-name patterns and the
roles each role implies). The times are first lookups (both cache their answers per address), with
the garbage collector tuned as the audit command tunes it.

The peak memory is measured in a fresh process that reads a generated file of --peak-entries entries
with load_roles (the audit's path: the size limit, the composer, the index), written to a temporary
folder; the file's size is raised above the default limit with PCAP_AUDIT_MAX_CONFIG_BYTES when needed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor.audit import HostResolver  # noqa: E402
from auditor.catalog import Catalog, load_catalog  # noqa: E402
from auditor.parallel import tune_gc  # noqa: E402
from auditor.roles import RoleMap, load_roles, parse_roles  # noqa: E402
from auditor.yamlsafe import DEFAULT_MAX_CONFIG_BYTES, MAX_CONFIG_BYTES_ENV  # noqa: E402

ROLES = ("Delivery Controller", "Virtual Delivery Agent", "StoreFront Server", "Citrix License Server",
         "Domain Controller", "User Device", "Citrix Gateway", "Provisioning Server", "Microsoft SQL Server",
         "DNS Server")
V4_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))
SPACING = 6
"""Addresses between the starts of two consecutive entries: 2.6M entries fit in 10.0.0.0/8."""


def peak_mib() -> float:
    """This process's peak RSS: VmHWM, which starts over at exec (ru_maxrss keeps the parent's)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def entry_text(i: int, rnd: random.Random) -> tuple[str, int, int, int]:
    """(text, version, lo, hi) of entry i; names have version 0."""
    kind = i % 20
    v6 = i % 10 == 3
    base = (V6_BASE if v6 else V4_BASE) + i * SPACING
    version = 6 if v6 else 4
    ip = ipaddress.ip_address(base)
    if kind < 10:
        return str(ip), version, base, base
    if kind < 15:
        prefix = rnd.choice((24, 27, 29, 30)) if not v6 else rnd.choice((120, 124, 126))
        net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
        return str(net), version, int(net.network_address), int(net.broadcast_address)
    if kind < 19:
        last = base + rnd.randint(3, 40)
        return f"{ip}-{ipaddress.ip_address(last)}", version, base, last
    if i % 40 == 19:
        return f"*.zone{i}.corp.example", 0, 0, 0
    return f"host{i}.site{i % 7}.corp.example", 0, 0, 0


def make_roles(entries: int, seed: int = 1) -> tuple[str, list[tuple[str, int, int, int]]]:
    """roles.yaml text with this many entries, and each entry's (text, version, lo, hi)."""
    rnd = random.Random(seed)
    by_role: dict[str, list[str]] = {r: [] for r in ROLES}
    seen: set[tuple[str, str]] = set()
    spans = []
    for i in range(entries):
        role = ROLES[i % len(ROLES)]
        text, version, lo, hi = entry_text(i, rnd)
        if (role, text) in seen:  # a wide CIDR that an earlier one of the role already wrote
            ip = ipaddress.ip_address((V6_BASE if version == 6 else V4_BASE) + i * SPACING)
            text, lo, hi = str(ip), int(ip), int(ip)
        seen.add((role, text))
        by_role[role].append(text)
        spans.append((text, version, lo, hi))
    lines = ["roles:"]
    for role, texts in by_role.items():
        if texts:
            lines.append(f"  {role}:")
            lines.extend(f'    - "{t}"' if t.startswith("*") else f"    - {t}" for t in texts)
    return "\n".join(lines) + "\n", spans


def make_hosts(n: int, spans: list[tuple[str, int, int, int]], seed: int = 2) -> list[tuple[str, tuple[str, ...]]]:
    """n distinct hosts (address and the names tied to it): 60 % drawn inside an entry (fewer when a
    small file's entries hold fewer addresses), 30 % elsewhere in 10.0.0.0/8, 5 % IPv6, 5 % named."""
    rnd = random.Random(seed)
    addresses = [s for s in spans if s[1]]
    names = [s[0].replace("*", f"h{k}") for k, s in enumerate(spans) if not s[1]] or ["none.example"]
    out: dict[str, tuple[str, ...]] = {}
    while len(out) < n:
        r = rnd.random()
        named: tuple[str, ...] = ()
        if r < 0.60:
            _, _, lo, hi = rnd.choice(addresses)
            address = str(ipaddress.ip_address(rnd.randint(lo, hi)))
            if address in out:  # the entries are full: a host elsewhere instead
                address = str(ipaddress.IPv4Address(V4_BASE + rnd.randrange(1 << 24)))
        elif r < 0.90:
            address = str(ipaddress.IPv4Address(V4_BASE + rnd.randrange(1 << 24)))
        elif r < 0.95:
            address = str(ipaddress.IPv6Address(V6_BASE + rnd.randrange(1 << 32)))
        else:
            address = str(ipaddress.IPv4Address(V4_BASE + rnd.randrange(1 << 24)))
            named = (rnd.choice(names) if rnd.random() < 0.8 else f"unknown{rnd.randrange(1000)}.example",)
        out.setdefault(address, named)
    return list(out.items())


class _Observation:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Names:
    """The one method of NameEvidence that HostResolver calls, over the generated names."""

    def __init__(self, hosts: list[tuple[str, tuple[str, ...]]]) -> None:
        self.by_address = {a: [_Observation(n) for n in names] for a, names in hosts if names}

    def names_for(self, address: str) -> list[_Observation]:
        return self.by_address.get(address, [])


def lookup(entries: int, hosts: list[int], catalog: Catalog) -> None:
    text, spans = make_roles(entries)
    t0 = time.perf_counter()
    role_map = parse_roles(text, f"roles-{entries}.yaml", catalog.vocabulary)
    parse_s = time.perf_counter() - t0
    kinds = {k: sum(1 for e in role_map.entries if e.kind == k) for k in ("address", "network", "range", "name")}
    print(f"{entries:,} entries ({', '.join(f'{v:,} {k}' for k, v in kinds.items())}; {len(text) / 1e3:,.0f} kB): "
          f"parse {parse_s * 1e3:,.0f} ms")
    for n in hosts:
        batch = make_hosts(n, spans)
        fresh = RoleMap(path=role_map.path, digest=role_map.digest, entries=role_map.entries)
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        mapped = 0
        for address, names in batch:
            if fresh.roles_of(address, names):
                mapped += 1
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
        fresh = RoleMap(path=role_map.path, digest=role_map.digest, entries=role_map.entries)
        resolver = HostResolver(catalog, fresh, _Names(batch))  # type: ignore[arg-type]
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        for address, _ in batch:
            resolver(address)
        took_r, cpu_r = time.perf_counter() - t0, time.process_time() - c0
        print(f"  {n:>7,} hosts ({mapped:,} with roles): roles_of {took:5.2f} s, {took / n * 1e6:4.1f} us/host "
              f"(CPU {cpu / n * 1e6:4.1f}); HostResolver {took_r:5.2f} s, {took_r / n * 1e6:4.1f} us/host "
              f"(CPU {cpu_r / n * 1e6:4.1f})")


def peak_child(path: Path, hosts: int) -> None:
    """In a fresh process: load_roles on the file, its wall time and the process's peak RSS."""
    vocabulary = load_catalog().vocabulary
    gc.collect()
    before = peak_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    role_map = load_roles(path, vocabulary)
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    after = peak_mib()
    print(f"  load_roles: {len(role_map.entries):,} entries in {took:.1f} s (CPU {cpu:.1f} s); "
          f"peak RSS {after:,.0f} MiB (+{after - before:,.0f} MiB over the {before:,.0f} MiB of the process "
          "with its catalog)")
    if hosts:
        spans = [(e.text, e.version, e.lo, e.hi) for e in role_map.entries]
        batch = make_hosts(hosts, spans)
        t0, c0 = time.perf_counter(), time.process_time()
        for address, names in batch:
            role_map.roles_of(address, names)
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"  {hosts:,} hosts, roles_of: {took:.2f} s, {took / hosts * 1e6:.1f} us/host "
              f"(CPU {cpu / hosts * 1e6:.1f}); "
              f"peak RSS {peak_mib():,.0f} MiB")


def peak(entries: int, hosts: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roles.yaml"
        text, _ = make_roles(entries)
        path.write_text(text, encoding="utf-8")
        size = path.stat().st_size
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        raised = ""
        if size > DEFAULT_MAX_CONFIG_BYTES:
            env[MAX_CONFIG_BYTES_ENV] = str(size)
            raised = f"; over the default limit, so {MAX_CONFIG_BYTES_ENV}={size}"
        print(f"{entries:,}-entry roles file: {size / 2**20:,.1f} MiB{raised}")
        del text
        subprocess.run([sys.executable, __file__, "--child", str(path), "--hosts", str(hosts)], env=env,
                       check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, nargs="+", default=[20, 2000, 20000])
    ap.add_argument("--hosts", type=int, nargs="+", default=[100_000, 500_000])
    ap.add_argument("--peak-entries", type=int, default=2_600_000, help="0: skip the peak-memory run")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    tune_gc()  # as the audit command does
    if args.child:
        peak_child(args.child, args.hosts[0])
        return 0
    catalog = load_catalog()
    for entries in args.entries:
        lookup(entries, args.hosts, catalog)
    if args.peak_entries:
        peak(args.peak_entries, args.hosts[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
