"""Real captures of the corpus cut into byte ranges, read as chunks and merged as ``-j N`` merges
them: an exact merge gives one read's flows (tests/test_chunk_merge.py holds the same on generated
traffic cut anywhere). A fixed slice of the corpus: TCP sessions with handshakes and teardowns cut
in the middle, UDP exchanges, retransmissions, captures of several interfaces."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from auditor import engine
from auditor.audit import collect
from auditor.capture import open_captures, ranges
from auditor.catalog import load_catalog

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
PARTS = (2, 5, 12)


def _slice() -> list[Path]:
    """Every 15th capture of 20 KB to 3 MB in the corpus, in name order."""
    if not CORPUS.is_dir():
        return []
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng")
                   and 20_000 < p.stat().st_size < 3_000_000)
    return files[::15]


def _flows(conv: Any) -> list[tuple[Any, dict[str, Any]]]:
    return sorted((k, dataclasses.asdict(f)) for k, f in conv.flows.items())


@pytest.mark.corpus
def test_real_captures_cut_into_byte_ranges_merge_into_one_read() -> None:
    files = _slice()
    assert len(files) >= 10, f"the corpus is not at {CORPUS}"
    server_ports = load_catalog().server_ports()
    compared = crossed = 0
    for path in files:
        whole, _ = collect(open_captures([str(path)]), server_ports)
        for parts in PARTS:
            chunks = ranges.plan([str(path)], parts, min_bytes=1)
            if len(chunks) < 2:
                continue
            last = len(chunks) - 1
            merger = engine.Merger()
            for i, chunk in enumerate(chunks):
                merger.add(engine.read_chunk(chunk, server_ports, "fast", True, i == 0, i == last))
            assert merger.acc is not None
            crossed += sum(merger.acc.conv.replays.values())
            got, exact = merger.result()
            if exact:
                assert _flows(got.conv) == _flows(whole), f"{path} in {len(chunks)} byte ranges"
                compared += 1
    assert compared >= 2 * len(files)  # the slice's captures are cut, and their merges are exact
    assert crossed >= 5 * len(files)  # conversations went on across the cuts (chains replayed)
