"""IP fragments across a byte-range boundary: the datagrams a chunk's first fragments began.

A later fragment finds its ports through its datagram's first fragment (decode.Decoder.frags), which
may lie in the byte range before. A chunk that starts inside its file does not ask the chunks before
it (they run at the same time, elsewhere): at its first later fragment that it cannot place, its
decoder asks ``table_before`` once, which walks the stretch of the file before the chunk's start
that holds the first fragments still within the reassembly timeout (decode.FRAG_TIMEOUT) and
returns the fragment table one read of the file would have there. The chunk then places its later
fragments, and counts its orphans, exactly as one read does, and nothing crosses to the merge.

The walk starts at a guessed record boundary (ranges.find_boundary, find_block_boundary) some bytes
back and must end exactly at the chunk's start; it goes further back, four times as far each time,
until it reaches a record older than what is asked for (or the file's first record). It hands the
common packets to a lane that drops them, so it costs about what the kernel costs per packet, and
only chunks that meet such a fragment pay it.
"""

from __future__ import annotations

from auditor.capture import native
from auditor.capture.decode import Decoder, FragTable
from auditor.capture.info import InputInfo, ReadStats
from auditor.capture.pcapfile import PCAPNG_MAGIC, walk_pcap
from auditor.capture.pcapng import walk_pcapng
from auditor.capture.ranges import Chunk, ChunkBytes, find_block_boundary, find_boundary, records_start
from auditor.errors import CaptureError

STEP = 1 << 20
"""Bytes before the chunk's start that the first walk back covers."""


class _Stretch(ChunkBytes):
    """A stretch of the file that ends at a chunk's start: never read past it (a walk that does not
    end there says so with InputInfo.end_verified False)."""

    def read_on(self) -> None:
        pass


def table_before(chunk: Chunk, since: float) -> FragTable:
    """The fragment table one read of ``chunk``'s file has at the chunk's start, as far as first
    fragments at or after ``since`` go. Empty when the stretch before cannot be walked (the file
    changed, a boundary the walk does not confirm even from the file's first record)."""
    path = chunk.path
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
        first = records_start(path, head)
    except OSError:
        return {}
    if first is None or chunk.start <= first:
        return {}
    seek = find_block_boundary if head[:4] == PCAPNG_MAGIC else find_boundary
    back = STEP
    while True:
        at = first
        if chunk.start - back > first:
            guess = seek(path, chunk.start - back)
            if guess is not None and guess < chunk.start:
                at = guess
        table, oldest, ok = _walk(chunk._replace(start=at, end=chunk.start))
        if not ok and at > first:
            back = chunk.start - first  # the guessed boundary was not one: from the first record
            continue
        if not ok:
            return {}
        if at <= first or (oldest is not None and oldest < since):
            return {k: v for k, v in table.items() if v[2] >= since}
        back *= 4


def _walk(stretch: Chunk) -> tuple[FragTable, float | None, bool]:
    """Walk ``stretch`` for its fragment table: (table, its earliest time stamp, whether the walk
    ended exactly at the stretch's end)."""
    try:
        data = _Stretch(stretch)
    except (CaptureError, OSError):
        return {}, None, False
    info = InputInfo(path=stretch.path)
    dec = Decoder(ReadStats(), stretch.input_index, verify_checksums=False)
    dec.lane = native.KERNEL.of("auditor.conversations.lane").DropLane()  # no records but fragments'
    complete = False
    try:
        first = data.read(1 << 20)
        if first[:4] == PCAPNG_MAGIC:
            walk = walk_pcapng(data, first, info, dec, _tick, bounded=data, base=data.base,
                               records_at=data.records_at)
        else:
            walk = walk_pcap(data, first, info, dec, _tick, bounded=data, base=data.base)
        for _ in walk:
            pass
        complete = True
    except (CaptureError, OSError):
        pass
    finally:
        dec.close()
        data.close_quietly()
    return dec.frags, info.first_ts, complete and info.end_verified and not info.truncated


def _tick() -> None:
    pass

