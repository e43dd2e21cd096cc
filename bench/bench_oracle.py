"""Application identification against tshark's dissectors on the whole corpus, and its cost per call.

    python bench/bench_oracle.py [--limit N] [--engine pyshark|tshark] [--show KIND ...] [CORPUS_DIR]

For every TCP/UDP conversation, the first payload of each direction (at most APP_SNAP bytes) goes through
``identify_connection``; tshark dissects the same frames (TCP reassembly and IP defragmentation off) and
names its protocols. Prints, per protocol, how many conversations agree, how many tshark names and we do
not (we-unknown), how many we name and tshark does not (tshark-unknown), and how many disagree; then the
microseconds per ``identify_connection`` call on the payloads collected. ``--engine pyshark`` (the
product's deep-dissection dependency) reads frame.protocols and the payloads through pyshark's JSON
mode; ``--engine tshark`` runs ``tshark -T fields`` directly (what tests/test_oracle_apps.py does, faster).
The method and the measured numbers: docs/oracle.md.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.apps import APP_SNAP, identify_connection
from tests.test_apps import POSITIVE
from tests.test_oracle_apps import (
    FIELDS,
    TSHARK_PREFS,
    Conversation,
    Tally,
    conversations,
    outcomes,
    tshark_rows,
)

KINDS = ("agree", "we-unknown", "tshark-unknown", "disagree")


def _pyshark_rows(path: Path) -> list[list[str]]:
    """The same rows as tshark_rows (FIELDS order), read through pyshark's JSON mode. A file cut short
    keeps the rows read before the cut, as tshark's own output does."""
    import pyshark
    from pyshark.capture.capture import TSharkCrashException

    rows: list[list[str]] = []
    cap = pyshark.FileCapture(str(path), keep_packets=False, use_json=True, override_prefs=dict(TSHARK_PREFS))
    try:
        for pkt in cap:
            rows.append([_pyshark_field(pkt, name) for name in FIELDS])
    except TSharkCrashException:
        pass
    finally:
        with contextlib.suppress(TSharkCrashException):
            cap.close()
        cap._running_processes.clear()  # a failed close left them: pyshark's __del__ would raise again
    return rows


def _pyshark_field(pkt: Any, name: str) -> str:
    layer_name, _, attr = name.partition(".")
    if name == "frame.number":
        return str(pkt.frame_info.number)
    if name == "frame.protocols":
        return str(pkt.frame_info.protocols)
    layers = [layer for layer in pkt.layers if layer.layer_name == layer_name]
    if not layers:
        return ""
    value = getattr(layers[-1], attr, "")
    if attr == "payload" and value:
        return str(value).replace(":", "")
    return str(value) if value is not None else ""


def _corpus_files(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.is_file() and p.name not in ("MANIFEST.tsv", "README.md"))


Call = tuple[int, int, int, bytes | None, tuple[int, int], bytes | None, tuple[int, int]]


def _synthetic_mix() -> list[Call]:
    """Every signature's test payload as an initiator's bytes, each beside a random 64-byte answer, and as
    many connections whose both directions are random (opaque, or encrypted mid-stream)."""
    rng = random.Random(7)
    calls: list[Call] = []
    for _, transport, payload, _, _ in POSITIVE:
        calls.append((transport, 50000, 443, payload[:APP_SNAP], (0, 1), rng.randbytes(APP_SNAP), (0, 2)))
        calls.append((transport, 50000, 443, rng.randbytes(APP_SNAP), (0, 1), rng.randbytes(APP_SNAP), (0, 2)))
    return calls


def _time_calls(args: list[Call], repeat: int = 5) -> float:
    """Microseconds per identify_connection call (the best of ``repeat`` passes)."""
    if not args:
        return float("nan")
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for a in args:
            identify_connection(*a)
        best = min(best, time.perf_counter() - t0)
    return best / len(args) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    parser.add_argument("--limit", type=int, default=0, help="the first N files (sorted by path) only")
    parser.add_argument("--engine", choices=("pyshark", "tshark"), default="pyshark")
    parser.add_argument("--show", action="append", default=[], choices=KINDS[1:],
                        help="list the conversations of this kind (repeatable)")
    args = parser.parse_args()
    files = _corpus_files(args.corpus)
    if args.limit:
        files = files[:args.limit]
    tally = Tally()
    collected: list[Conversation] = []
    failed = 0
    t0 = time.perf_counter()
    for path in files:
        name = str(path.relative_to(args.corpus))
        try:
            rows = _pyshark_rows(path) if args.engine == "pyshark" else tshark_rows(path)
        except Exception as e:  # a file tshark cannot read: counted, the run goes on
            failed += 1
            print(f"# {name}: {type(e).__name__}", file=sys.stderr)
            continue
        convs = list(conversations(rows))
        collected += convs
        for o in outcomes(name, convs):
            tally.add(o)
    elapsed = time.perf_counter() - t0
    print(f"{'protocol':<12} " + " ".join(f"{k:>14}" for k in KINDS))
    totals: Counter[str] = Counter()
    for proto in sorted(tally.counts):
        c = tally.counts[proto]
        totals.update(c)
        print(f"{proto:<12} " + " ".join(f"{c[k]:>14}" for k in KINDS))
    print(f"{'all':<12} " + " ".join(f"{totals[k]:>14}" for k in KINDS))
    for kind in args.show:
        for o in tally.others.get(kind, []):
            print(f"  {kind}: {o.file} frame {o.frame}: ours {o.ours} ({o.detail!r}), tshark {sorted(o.theirs)}")
    n = sum(1 for c in collected if c.orig or c.resp)
    corpus_mix: list[Call] = [(c.proto, c.orig_port, c.resp_port, c.orig.payload if c.orig else None, (0, 1),
                               c.resp.payload if c.resp else None, (0, 2)) for c in collected if c.orig or c.resp]
    print(f"# {len(files)} files ({failed} unreadable), {n} conversations with payload, engine {args.engine}, "
          f"{elapsed:.0f} s")
    print(f"# identify_connection: {_time_calls(corpus_mix):.2f} µs/call on these conversations, "
          f"{_time_calls(_synthetic_mix()):.2f} µs/call on the synthetic mix (every signature + opaque)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
