"""What a worker reads per second, and what merging chunks costs (docs/scale.md):
`python bench/bench_scale.py CAPTURE [--parts 2 4 8 16]`.

CAPTURE (e.g. the shared realistic capture: python3 ../shared/bench/gen_realistic_pcap.py --packets
1000000 --seed 1 --out p1m.pcap) is cut at record boundaries into N files, as a ring buffer would
write them. Each file is read as one chunk (auditor.engine.read_chunk) in this process, one after the
other, and the parts are merged in order (ConversationBuilder.absorb, then finish). Printed per N:

  read     CPU seconds of all chunks together, packets/s and MB/s per worker (one chunk at a time)
  pickle   size of the parts as a worker sends them back, and the CPU to pickle and unpickle them
  merge    CPU seconds of merging N parts (and per part), the chains replayed, and how the merged
           flows compare with one sequential read (they must be equal)

With --range K N (no splitting into files, no sequential read), byte range K of the capture cut into N
ranges is read in a fresh process twice, as a chunk (head chains) and as a plain builder: CPU seconds,
head chains and their log items, and the process's peak RSS (what engine.CHUNK_MAX bounds).

With --runs K, the N files are also read as -j K reads them (engine.group: K runs of consecutive
files, each by one builder) and the last run's costs are printed step by step: read by a plain builder
and as a chunk, settle, pickle, unpickle, merge, finish (docs/scale.md, "where the time goes").

Times are CPU time of this process (time.process_time), so other load on the machine does not
inflate them; wall time on an idle machine is about the same for this single-threaded work.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dpkt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from auditor import engine
from auditor.audit import collect
from auditor.capture import CaptureSet, ranges
from auditor.catalog import load_catalog
from auditor.conversations import merging as chunks_mod  # the build that runs (compiled or not)


def split(src: Path, parts: int, out: Path) -> list[Path]:
    with src.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        lt = reader.datalink()
        frames = list(reader)
    paths = []
    for k in range(parts):
        p = out / f"part{parts:03d}-{k:03d}.pcap"
        with p.open("wb") as f:
            w = dpkt.pcap.Writer(f, linktype=lt)
            for ts, buf in frames[len(frames) * k // parts:len(frames) * (k + 1) // parts]:
                w.writepkt(buf, ts)
        paths.append(p)
    return paths


def flows_of(conv: object) -> list[object]:
    return sorted((k, dataclasses.astuple(f)) for k, f in conv.flows.items())  # type: ignore[attr-defined]


def steps(runs: list[list[engine.ranges.Chunk]], ports: frozenset[tuple[str, int]]) -> None:
    """The last run's costs, step by step, as engine.run_local meets them (CPU s of this process)."""
    clock = time.process_time
    t = clock()
    plain = engine.read_chunk(runs[-1], ports, "fast", True, True)
    read_plain = clock() - t
    t = clock()
    plain.conv.finish()
    finish_plain = clock() - t
    del plain
    merger = engine.Merger()
    for i, run in enumerate(runs[:-1]):  # the runs before it, merged as they come
        part = engine.read_chunk(run, ports, "fast", True, i == 0)
        firsts = chunks_mod.heads(part.conv)
        merger.add(part, (firsts, merger.decide(firsts)))
    t = clock()
    part = engine.read_chunk(runs[-1], ports, "fast", True, False, True)
    read_chunk = clock() - t
    firsts = chunks_mod.heads(part.conv)
    joins = merger.decide(firsts)
    t = clock()
    chunks_mod.settle(part.conv, joins)
    settle = clock() - t
    t = clock()
    blob = pickle.dumps(("part", part), protocol=pickle.HIGHEST_PROTOCOL)
    dump = clock() - t
    del part
    t = clock()
    _, part = pickle.loads(blob)
    load = clock() - t
    t = clock()
    merger.add(part, (firsts, joins))
    merge = clock() - t
    t = clock()
    merger.result()
    finish = clock() - t
    print(f"    as {len(runs)} runs, the last ({len(runs[-1])} files): read {read_plain:.2f} s by a plain builder "
          f"(+{finish_plain:.2f} s to finish), {read_chunk:.2f} s as a chunk ({len(firsts):,} head chains, "
          f"{sum(joins):,} continue); settle {settle:.2f} s; pickle {dump:.2f} s ({len(blob) / 1e6:.1f} MB); "
          f"unpickle {load:.2f} s; merge {merge:.2f} s; finish and renumber {finish:.2f} s")


def one_range(capture: Path, k: int, n: int, as_chunk: bool) -> None:
    """Read byte range ``k`` of ``n`` in this (fresh) process and print what it cost."""
    import resource

    ports = load_catalog(None, []).server_ports()
    chunk = ranges.plan([str(capture)], n, min_bytes=1)[k]
    t = time.process_time()
    part = engine.read_chunk(chunk, ports, "fast", True, not as_chunk)
    cpu = time.process_time() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    logged = sum(len(c.log) for c in part.conv.chains)
    print(f"  range {k} of {n} ({engine._size(chunk) / 1e9:.2f} GB, {part.stats.frames:,} packets) "
          f"{'as a chunk' if as_chunk else 'plainly':>10}: {cpu:.2f} s CPU, {len(part.conv.chains):,} head chains "
          f"({logged:,} log items), peak RSS {peak:.0f} MiB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--parts", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--runs", type=int, default=0, help="also read the files as -j RUNS does, step by step")
    ap.add_argument("--range", type=int, nargs=2, metavar=("K", "N"),
                    help="read byte range K of N as a chunk and plainly, each in a fresh process")
    ap.add_argument("--as", dest="as_", choices=("chunk", "plain"), help=argparse.SUPPRESS)  # the fresh process
    a = ap.parse_args()
    if a.range:
        k, n = a.range
        if a.as_:
            one_range(a.capture, k, n, a.as_ == "chunk")
            return
        for how in ("chunk", "plain"):
            subprocess.run([sys.executable, __file__, str(a.capture), "--range", str(k), str(n), "--as", how],
                           check=True)
        return
    ports = load_catalog(None, []).server_ports()
    size_all = a.capture.stat().st_size
    t = time.process_time()
    cs = CaptureSet([str(a.capture)])
    collect(cs, ports)
    one = time.process_time() - t
    frames = cs.stats.frames
    print(f"one sequential read: {frames:,} packets, {size_all / 1e6:.0f} MB, {one:.2f} s CPU "
          f"({frames / one:,.0f} packets/s, {size_all / one / 1e6:.1f} MB/s)")
    with tempfile.TemporaryDirectory() as d:
        for n in a.parts:
            paths = split(a.capture, n, Path(d))
            chunks = engine.plan([str(p) for p in paths], 1)
            t = time.process_time()
            parts = [engine.read_chunk(c, ports, "fast", True, i == 0) for i, c in enumerate(chunks)]
            read = time.process_time() - t
            # As -j N merges them (engine.run_local): heads looked up, chains settled in the part's own
            # process (here: this one), the part pickled there and unpickled here, merged in order.
            merger = engine.Merger()
            merge = pick = 0.0
            size = heads = kept = 0
            for part in parts:
                t = time.process_time()
                firsts = chunks_mod.heads(part.conv)
                joins = merger.decide(firsts)
                merge += time.process_time() - t
                t = time.process_time()
                chunks_mod.settle(part.conv, joins)
                blob = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
                part = pickle.loads(blob)
                pick += time.process_time() - t
                size += len(blob)
                heads += len(firsts)
                kept += len(part.conv.chains)
                t = time.process_time()
                merger.add(part, (firsts, joins))
                merge += time.process_time() - t
            t = time.process_time()
            got, exact = merger.result()
            merge += time.process_time() - t
            seq = CaptureSet([str(p) for p in paths])  # frames count per file: the same files in one read
            same = flows_of(got.conv) == flows_of(collect(seq, ports)[0])
            print(f"{n:3d} parts: read {read:6.2f} s CPU ({frames / read:,.0f} packets/s, "
                  f"{size_all / read / 1e6:.1f} MB/s per worker); {heads:,} head chains, {kept:,} replayed; "
                  f"parts {size / 1e6:.1f} MB, settle+pickle+unpickle {pick:.2f} s; merge and finish {merge:.2f} s "
                  f"({merge / n * 1000:.0f} ms per part); exact={exact} same flows={same}")
            if a.runs > 1:
                steps(engine.group(chunks, a.runs), ports)
            for p in paths:
                os.unlink(p)


if __name__ == "__main__":
    main()
