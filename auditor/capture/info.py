"""What reading the inputs found, besides the packets: per-input facts and mergeable counters."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class InputInfo:
    """One input as read (filled while it is read; complete once iteration has passed it)."""

    path: str
    """The path as given ('-' for standard input)."""
    sha256: str = ""
    """SHA-256 of the bytes as stored (compressed bytes for a compressed file)."""
    size: int = 0
    """Bytes as stored (for standard input: bytes read)."""
    packets: int = 0
    """Frames (records) in the capture, decodable or not."""
    first_ts: float | None = None
    last_ts: float | None = None
    link_types: dict[str, int] = field(default_factory=dict)
    """Link type name -> frames, e.g. {'EN10MB': 1200, 'LINUX_SLL2': 3}."""
    format: str = ""
    """'pcap' or 'pcapng', or captype's name of another capture format ('netmon2', 'snoop'...:
    capture/foreign.py)."""
    compression: str = "none"
    """'none', 'gzip', 'bz2', 'xz' or 'zstd' (detected by magic, not by name)."""
    truncated: bool = False
    """The capture ended (or became unreadable) inside a record: what came before was read."""
    warnings: list[str] = field(default_factory=list)
    """Human-readable notes for the report, e.g. where a truncated file stopped."""
    stopped: tuple[int, str] | None = None
    """Where the walk stopped early (after this many frames) and why; its warning is in ``warnings``."""
    first_frame_unknown: bool = False
    """A chunk that starts inside its input (capture/ranges.py): its frame numbers (``packets``, its
    records, ``stopped``, ReadStats.examples) count from 1 at the chunk's first record, and the merge
    adds the frames of the input's earlier chunks (``renumber``). ``sha256`` is then empty: the
    input's chunk that starts at offset 0 hashes the whole file."""
    end_verified: bool = False
    """A chunk that ends inside its input: its walk ended exactly at the chunk's end, at a record
    boundary, not in a run of malformed frames, after no section header or interface block past the
    file's first blocks (pcapng), and did not stop early; so the next chunk, which starts there, reads
    as one walk of the input would. False: this chunk read on to the end of the input (or stopped
    early) and the input's later chunks are not part of its reading (ranges.join)."""

    def stop(self, frame: int, why: str) -> None:
        """The walk stops early, after ``frame`` frames."""
        self.stopped = (frame, why)
        self.warnings.append(stop_warning(frame, why))

    def renumber(self, by: int) -> None:
        """Frame numbers of a chunk: count them from the input's start (``by`` frames before it)."""
        if self.stopped is not None:
            frame, why = self.stopped
            old = stop_warning(frame, why)
            self.stopped = (frame + by, why)
            self.warnings = [stop_warning(frame + by, why) if w == old else w for w in self.warnings]
        self.first_frame_unknown = False


def stop_warning(frame: int, why: str) -> str:
    return f"{why}: stopped after frame {frame}" if frame else f"{why}: stopped before the first frame"


def _add(dst: dict[str, int], src: dict[str, int]) -> None:
    for k, v in src.items():
        dst[k] = dst.get(k, 0) + v


@dataclass
class ReadStats:
    """Counters over all inputs. Each kind is a stable id; ``examples`` points at evidence."""

    frames: int = 0
    """Frames read."""
    records: int = 0
    """PacketRecords produced."""
    non_ip: int = 0
    """Frames that carry no IP packet (ARP, LLDP, STP...; the breakdown is in ``unsupported``)."""
    malformed: dict[str, int] = field(default_factory=dict)
    """kind -> frames, e.g. 'ipv4-bad-header', 'tcp-short', 'pcapng-bad-block', 'fragment-orphan'.
    Frames counted here were skipped, except 'fragment-orphan' and 'udp-bad-length' (emitted)."""
    unsupported: dict[str, int] = field(default_factory=dict)
    """kind -> frames, e.g. 'linktype:DLT_IEEE802_11', 'ethertype:0x88cc', 'ipproto:47-unknown-gre'."""
    tunnels: dict[str, int] = field(default_factory=dict)
    """Tunnel kind -> packets decapsulated ('vxlan', 'geneve', 'gre', 'erspan2', 'erspan3')."""
    examples: dict[str, tuple[int, int]] = field(default_factory=dict)
    """kind -> (input_index, frame) of its first occurrence (malformed and unsupported kinds)."""

    def count_malformed(self, kind: str, input_index: int, frame: int) -> None:
        """One malformed frame of ``kind``; the first is its example."""
        m = self.malformed
        m[kind] = m.get(kind, 0) + 1
        self.examples.setdefault(kind, (input_index, frame))

    def merge(self, other: ReadStats) -> None:
        self.frames += other.frames
        self.records += other.records
        self.non_ip += other.non_ip
        _add(self.malformed, other.malformed)
        _add(self.unsupported, other.unsupported)
        _add(self.tunnels, other.tunnels)
        for k, v in other.examples.items():
            if k not in self.examples or v < self.examples[k]:
                self.examples[k] = v

    def renumber(self, input_index: int, by: int) -> None:
        """The examples of a chunk of input ``input_index`` (InputInfo.first_frame_unknown): count
        their frames from the input's start (``by`` frames before the chunk)."""
        for k, (ii, frame) in self.examples.items():
            if ii == input_index:
                self.examples[k] = (ii, frame + by)
