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
