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
