"""RecordBuffer: records wait per partition until a file's worth, a deadline, or the end."""

from __future__ import annotations

from clickrouter.events import CanonicalProfile, ClickEvent
from clickrouter.stream.attribution import Record
from clickrouter.stream.buffer import RecordBuffer

PROFILE = CanonicalProfile("FR", "mobile", "android", "chrome", "orange", 10, 2)
DAY = 86400.0


def record(n: int, campaign: str, ts: float) -> Record:
    return (ClickEvent(f"e{n}", f"k{n}", ts, PROFILE, campaign, "lp", 0.5, "v1"), 0, 0.0, None)


def test_partition_is_released_when_full() -> None:
    buf = RecordBuffer(min_file_rows=3, max_hold_seconds=60)
    buf.add([record(i, "a", i) for i in range(3)] + [record(9, "b", 0)], now=0.0)
    assert [r[0].click_id for r in buf.take(now=1.0)] == ["k0", "k1", "k2"]
    assert len(buf) == 1 and [r[0].click_id for r in buf.held()] == ["k9"]


def test_days_are_separate_partitions_and_old_ones_leave_after_the_hold() -> None:
    buf = RecordBuffer(min_file_rows=100, max_hold_seconds=10)
    buf.add([record(1, "a", 0.0), record(2, "a", DAY + 1)], now=0.0)
    buf.add([record(3, "a", 5.0)], now=8.0)
    assert buf.take(now=9.0) == []
    assert {r[0].click_id for r in buf.take(now=10.0)} == {"k1", "k2", "k3"}


def test_force_and_overflow_release_everything() -> None:
    buf = RecordBuffer(min_file_rows=100, max_hold_seconds=60, max_records=2)
    buf.add([record(1, "a", 0.0), record(2, "b", 0.0)], now=0.0)
    assert buf.take(now=0.0) == []
    assert len(buf.take(now=0.0, force=True)) == 2
    buf.add([record(i, "a", 0.0) for i in range(3)], now=0.0)
    assert len(buf.take(now=0.0)) == 3 and len(buf) == 0
