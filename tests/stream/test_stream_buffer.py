"""RecordBuffer: records wait per partition until a file's worth, a deadline, or the end."""

from __future__ import annotations

import pyarrow as pa

from clickrouter.events import CanonicalProfile, ClickEvent
from clickrouter.stream.buffer import RecordBuffer
from clickrouter.stream.records import records_table

PROFILE = CanonicalProfile("FR", "mobile", "android", "chrome", "orange", 10, 2)
DAY = 86400.0


def table(*rows: tuple[int, str, float]) -> pa.Table:
    return records_table(
        [
            (ClickEvent(f"e{n}", f"k{n}", ts, PROFILE, campaign, "lp", 0.5, "v1"), 0, 0.0, None)
            for n, campaign, ts in rows
        ]
    )


def ids(t: pa.Table) -> set[str]:
    return set(t["click_id"].to_pylist())


def test_partition_is_released_when_full() -> None:
    buf = RecordBuffer(min_file_rows=3, max_hold_seconds=60)
    buf.add(table((0, "a", 0), (1, "a", 1), (9, "b", 0)), now=0.0)
    buf.add(table((2, "a", 2)), now=0.0)
    assert ids(buf.take(now=1.0)) == {"k0", "k1", "k2"}
    assert len(buf) == 1 and ids(buf.held()) == {"k9"}


def test_days_are_separate_partitions_and_old_ones_leave_after_the_hold() -> None:
    buf = RecordBuffer(min_file_rows=100, max_hold_seconds=10)
    buf.add(table((1, "a", 0.0), (2, "a", DAY + 1)), now=0.0)
    buf.add(table((3, "a", 5.0)), now=8.0)
    buf.add(table((4, "a", 2 * DAY)), now=8.0)
    assert buf.take(now=9.0).num_rows == 0
    assert ids(buf.take(now=10.0)) == {"k1", "k2", "k3"}
    assert ids(buf.held()) == {"k4"}


def test_force_and_overflow_release_everything() -> None:
    buf = RecordBuffer(min_file_rows=100, max_hold_seconds=60, max_records=2)
    buf.add(table((1, "a", 0.0), (2, "b", 0.0)), now=0.0)
    assert buf.take(now=0.0).num_rows == 0
    assert buf.take(now=0.0, force=True).num_rows == 2
    buf.add(table((3, "a", 0.0), (4, "a", 0.0), (5, "c", 0.0)), now=0.0)
    assert buf.take(now=0.0).num_rows == 3 and len(buf) == 0


def test_held_records_survive_a_round_trip_through_the_state() -> None:
    buf = RecordBuffer()
    buf.add(table((1, "a", 0.0), (2, "b", DAY)), now=0.0)
    restored = RecordBuffer()
    restored.add_ipc(buf.to_ipc(), now=0.0)
    assert restored.held().equals(buf.held())
    assert ids(restored.take(now=0.0, force=True)) == {"k1", "k2"}
