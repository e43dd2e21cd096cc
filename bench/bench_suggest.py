"""Quality of `pcap-audit roles suggest`: precision and recall of (address, role) pairs (SPEC §7).

    python bench/bench_suggest.py [--bench-capture /tmp/sg.pcap --bench-roles ROLES.yaml] [--show]

For each bundled sample (sample_pcaps/<name>.pcapng with its hand-written <name>.roles.yaml) and,
when given, another capture with its roles file (the shared bench: gen_realistic_pcap.py --packets
200000 --seed 1 with realistic.roles.yaml): the draft is made as the command makes it, parsed back
as a roles file, and both files are resolved for every address the capture shows (the hand-written
one through the capture's names and the catalog's host-name patterns, as the audit resolves it).
A pair counts once per address and role, without the roles a host's other roles imply (a Domain
Controller's DNS Server). Silent hosts of the hand-written file are not counted: the capture cannot
show them. --show prints the pairs each side has that the other lacks.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor import __version__  # noqa: E402
from auditor.audit import collect  # noqa: E402
from auditor.capture import open_captures  # noqa: E402
from auditor.catalog import Catalog, load_catalog  # noqa: E402
from auditor.roles import parse_roles  # noqa: E402
from auditor.suggest import (  # noqa: E402
    Score,
    held_roles,
    reduce_implied,
    render,
    score,
    seen_addresses,
    suggest,
)

SAMPLES = ("cvad-onprem", "daas-cloud", "gateway-dmz", "netscaler-ha", "pvs-boot")


@dataclass
class Measured:
    name: str
    score: Score
    missed: list[tuple[str, str]]
    extra: list[tuple[str, str]]
    draft: str
    seconds: float


def name_roles(catalog: Catalog) -> list[tuple[str, str]]:
    vocab = catalog.vocabulary
    pairs = [(p, role) for role, patterns in vocab.role_hostnames.items() for p in patterns]
    return pairs + [(p, r.destination) for r in catalog.rules for p in r.hostnames]


def measure(name: str, capture: Path, roles_path: Path, catalog: Catalog) -> Measured:
    """Draft the roles of ``capture`` and score it against ``roles_path``."""
    started = time.perf_counter()
    conv, names = collect(open_captures([str(capture)]), catalog.server_ports())
    vocab = catalog.vocabulary
    patterns = name_roles(catalog)
    draft = suggest(conv.flows.values(), names, vocab, patterns)
    text = render(draft, [capture.name], __version__)
    seconds = time.perf_counter() - started
    drafted = parse_roles(text, "draft", vocab)
    truth = parse_roles(roles_path.read_text(encoding="utf-8"), str(roles_path), vocab)
    seen = seen_addresses(conv.flows.values())
    got = held_roles(drafted, seen, names)  # the draft's own entries; no names
    want = held_roles(truth, seen, names, patterns)
    result = score(got, want, vocab)
    got_pairs = {(a, r) for a, rs in got.items() for r in reduce_implied(rs, vocab)}
    want_pairs = {(a, r) for a, rs in want.items() for r in reduce_implied(rs, vocab)}
    return Measured(name, result, sorted(want_pairs - got_pairs), sorted(got_pairs - want_pairs), text, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-capture", type=Path, help="Another capture to score (e.g. /tmp/sg.pcap).")
    ap.add_argument("--bench-roles", type=Path, help="Its hand-written roles file.")
    ap.add_argument("--show", action="store_true", help="Print the pairs missed and the pairs suggested wrongly.")
    ap.add_argument("--print-draft", action="store_true", help="Print each draft.")
    args = ap.parse_args()
    catalog = load_catalog()
    runs = [(s, ROOT / "sample_pcaps" / f"{s}.pcapng", ROOT / "sample_pcaps" / f"{s}.roles.yaml") for s in SAMPLES]
    if args.bench_capture is not None:
        if args.bench_roles is None:
            ap.error("--bench-capture needs --bench-roles")
        runs.append((args.bench_capture.name, args.bench_capture, args.bench_roles))
    print(f"{'capture':<22} {'pairs':>5} {'suggested':>9} {'correct':>7} {'precision':>9} {'recall':>6} {'seconds':>7}")
    total_tp = total_got = total_want = 0
    for name, capture, roles_path in runs:
        m = measure(name, capture, roles_path, catalog)
        s = m.score
        total_tp, total_got, total_want = total_tp + s.true_positives, total_got + s.suggested, total_want + s.expected
        print(f"{name:<22} {s.expected:>5} {s.suggested:>9} {s.true_positives:>7} {s.precision:>9.2f} "
              f"{s.recall:>6.2f} {m.seconds:>7.2f}")
        if args.show:
            for a, r in m.missed:
                print(f"    missed  {a:<16} {r}")
            for a, r in m.extra:
                print(f"    extra   {a:<16} {r}")
        if args.print_draft:
            print(m.draft)
    overall = Score(total_tp, total_got, total_want)
    print(f"{'all':<22} {overall.expected:>5} {overall.suggested:>9} {overall.true_positives:>7} "
          f"{overall.precision:>9.2f} {overall.recall:>6.2f}")


if __name__ == "__main__":
    main()
