"""CloseQueue: every entry due before a time comes out, whatever the insertion order."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from reference.closequeue import CloseQueue


@given(
    st.lists(st.floats(0, 1000, allow_nan=False), max_size=200),
    st.lists(st.floats(0, 1100, allow_nan=False), min_size=1, max_size=10),
    st.integers(1, 4),
)
def test_pop_due_returns_exactly_the_due_entries(
    times: list[float], cuts: list[float], lanes: int
) -> None:
    queue = CloseQueue(max_lanes=lanes)
    for seq, at in enumerate(times):
        queue.push((at, seq, f"k{seq}"))
    remaining = {(at, seq) for seq, at in enumerate(times)}
    for cut in sorted(cuts):
        due = {(at, seq) for at, seq, _ in queue.pop_due(cut)}
        assert due == {item for item in remaining if item[0] < cut}
        remaining -= due
        assert len(queue) == len(remaining)
        assert queue.next_at == min((at for at, _ in remaining), default=float("inf"))


def test_interleaved_sorted_streams_stay_in_lanes() -> None:
    queue = CloseQueue(max_lanes=2)
    rng = random.Random(0)
    a = sorted(rng.uniform(0, 100) for _ in range(500))
    b = sorted(rng.uniform(0, 100) for _ in range(500))
    for i in range(0, 500, 50):  # chunks of 50 from each sorted stream, alternating
        for at in a[i : i + 50] + b[i : i + 50]:
            queue.push((at, i, "k"))
    assert not queue._heap  # two sorted streams need two lanes, never the heap
    assert len(queue.pop_due(101.0)) == 1000
