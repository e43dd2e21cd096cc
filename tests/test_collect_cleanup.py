"""A reader left suspended by a stop or an error is closed by audit.collect at once, so that its
clean-up (temporary copies of other capture formats, converting processes) runs before the process
exits, not whenever the traceback holding it is released."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from auditor.audit import collect
from tests.test_cases import build_records


def test_reader_is_closed_when_reading_stops() -> None:
    closed: list[bool] = []
    records = build_records([{"from": "10.0.0.1", "to": "10.0.0.2", "proto": "tcp", "port": 80}])

    def reader() -> Iterator[Any]:
        try:
            yield from records
            yield None  # not a record: collect fails on it, as a stop would interrupt it
            yield from records
        finally:
            closed.append(True)

    stream = reader()
    with pytest.raises(AttributeError):
        collect(stream, frozenset())
    assert closed == [True]


def test_reader_is_closed_after_a_normal_end() -> None:
    records = build_records([{"from": "10.0.0.1", "to": "10.0.0.2", "proto": "udp", "port": 53, "kind": "udp"}])
    conv, _ = collect(iter(records), frozenset())
    assert sum(f.connections for f in conv.flows.values()) == 1


def test_a_reader_stopped_before_its_thread_started_closes(tmp_path: Any) -> None:
    # A stop (SIGTERM) can land inside Thread.start(): closing must not join a thread that never ran
    # (that raised RuntimeError, and a clean stop became "internal error", exit 2).
    import threading

    from auditor.capture.source import HashingReader

    path = tmp_path / "x.bin"
    path.write_bytes(b"x" * 100)
    with open(path, "rb") as fh:
        reader = HashingReader(fh)
        reader._thread = threading.Thread(target=lambda: None)  # created, never started
        reader.close()
        assert fh.closed
