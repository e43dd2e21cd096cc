"""What reading an audit's flows costs, whatever is done with what is read: the floor under the tail.

    python bench/bench_flow_reads.py CAPTURE --roles ROLES [--repeat 3]

Reads the capture once (``audit.collect``, one process, as ``-j 1`` does), then per repeat, CPU
seconds (time.process_time) of:

- ``key order``: the 18 fields the report's walk reads of every flow (report/flowscan.py), each
  column taken in one C loop (``map(attrgetter(name), flows)``), the flows in key order (the order
  of every output);
- ``creation order``: the same in the order the core made the flows (the dict's order);
- ``permute``: putting the creation-order columns in key order by a list of indexes;
- ``classify``: ``classify_flows`` of every flow (its verdict objects included), against ``lookups``:
  only its per-flow part that no verdict design can drop (each host's view looked up, the key of its
  judgement made).
"""

from __future__ import annotations

import argparse
import sys
import time
from operator import attrgetter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from auditor import conversations  # noqa: E402
from auditor.audit import HostResolver, _rule_index, collect, declared_features  # noqa: E402
from auditor.capture import open_captures  # noqa: E402
from auditor.catalog import load_catalog  # noqa: E402
from auditor.classify import classify_flows  # noqa: E402
from auditor.parallel import tune_gc  # noqa: E402
from auditor.roles import load_roles  # noqa: E402

FIELDS = ("key", "apps", "app_evidence", "connections", "resp_pkts", "established", "rejected", "unanswered",
          "conn_states", "refusals", "first_frame", "direction_evidence", "orig_bytes", "resp_bytes", "summarised",
          "orig_pkts", "first_seen", "last_seen")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("--roles", required=True, type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tune_gc()
    catalog = load_catalog(None, [])
    roles = load_roles(args.roles, catalog.vocabulary)
    conv, names = collect(open_captures([args.capture], engine="fast"), catalog.server_ports())
    conversations.share_counts(conv.flows.values())
    created = list(conv.flows.values())
    by_key = [conv.flows[k] for k in sorted(conv.flows)]
    order = sorted(range(len(created)), key=[f.key for f in created].__getitem__)
    features = frozenset(declared_features(catalog, roles))
    print(f"{len(by_key):,} flows; CPU seconds per repeat")
    print(f"{'key order':>10} {'creation':>9} {'permute':>8} {'classify':>9} {'lookups':>8}")
    for _ in range(args.repeat):
        t0 = time.process_time()
        for name in FIELDS:
            list(map(attrgetter(name), by_key))
        t1 = time.process_time()
        columns = [list(map(attrgetter(name), created)) for name in FIELDS]
        t2 = time.process_time()
        for column in columns:
            [column[i] for i in order]
        t3 = time.process_time()
        resolver = HostResolver(catalog, roles, names, features)
        classify_flows(by_key, resolver, _rule_index(catalog, features))
        t4 = time.process_time()
        views: dict[str, object] = {}
        get = views.get
        for k in [f.key for f in by_key]:
            a = get(k.initiator) or views.setdefault(k.initiator, resolver(k.initiator))
            b = get(k.responder) or views.setdefault(k.responder, resolver(k.responder))
            (id(a), id(b), k.protocol, k.port)
        t5 = time.process_time()
        print(f"{t1 - t0:>10.3f} {t2 - t1:>9.3f} {t3 - t2:>8.3f} {t4 - t3:>9.3f} {t5 - t4:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
