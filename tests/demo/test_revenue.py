"""Splitting the final quarter's uplift over the best single campaign by the campaign shown."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from clickrouter.demo.html import uplift_table
from clickrouter.demo.revenue import final_rows, uplift_by_campaign


def test_contributions_name_the_campaigns_and_add_up_to_the_uplift() -> None:
    shown = np.array(["a", "a", "b", "c", "c", "c", "d"], dtype=object)
    live = np.array([3.0, 3.0, 1.0, 2.0, 2.0, 2.0, 0.5])
    single = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 1.0])
    rows = uplift_by_campaign(shown, live, single, top=2)
    # a: (6 - 2) / 11, b: (1 - 2) / 11, c: 0, d: (0.5 - 1) / 11 -> top two by size, then the rest
    assert [r["campaign_id"] for r in rows] == ["a", "b", None]
    assert [r["uplift_points"] for r in rows] == pytest.approx([4 / 11, -1 / 11, -0.5 / 11])
    assert sum(r["uplift_points"] for r in rows) == pytest.approx(live.sum() / single.sum() - 1)
    assert rows[0]["live_per_1k"] == pytest.approx(3000) and rows[0]["single_per_1k"] == 1000
    assert rows[2]["campaigns"] == 2 and rows[2]["click_share"] == pytest.approx(4 / 7)
    assert rows[2]["live_per_1k"] == pytest.approx(1000 * 6.5 / 4)


def test_nothing_to_split() -> None:
    empty = np.array([], dtype=float)
    assert uplift_by_campaign(np.array([], dtype=object), empty, empty, top=3) == []
    zero = np.zeros(2)
    assert uplift_by_campaign(np.array(["a", "b"], dtype=object), zero + 1, zero, top=3) == []


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefg"), st.floats(0, 100), st.floats(0.01, 100)),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 8),
)
def test_rows_always_add_up_to_the_uplift_and_the_clicks(
    clicks: list[tuple[str, float, float]], top: int
) -> None:
    shown = np.array([c for c, _, _ in clicks], dtype=object)
    live = np.array([v for _, v, _ in clicks])
    single = np.array([s for _, _, s in clicks])
    rows = uplift_by_campaign(shown, live, single, top)
    total = live.sum() / single.sum() - 1
    assert sum(r["uplift_points"] for r in rows) == pytest.approx(total, abs=1e-9)
    assert sum(r["click_share"] for r in rows) == pytest.approx(1.0)
    assert sum(r["campaigns"] for r in rows) == len(set(shown))
    named = [r for r in rows if r["campaign_id"] is not None]
    n = len(set(shown))  # a single campaign left over is named, not summed
    assert len(named) == (n if n <= top + 1 else top)
    sizes = [abs(r["uplift_points"]) for r in named]
    assert sizes == sorted(sizes, reverse=True)


def test_final_rows_are_the_last_share_of_the_time_span() -> None:
    ts = np.array([0.0, 10.0, 74.0, 75.0, 100.0])
    assert final_rows(ts, 0.25).tolist() == [False, False, False, True, True]


def test_terminal_table_shows_the_top_campaigns_and_sums_the_rest() -> None:
    shown = np.array(["a", "a", "b", "c", "c", "c", "d"], dtype=object)
    live = np.array([3.0, 3.0, 1.0, 2.0, 2.0, 2.0, 0.5])
    single = np.array([1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 1.0])
    split = uplift_by_campaign(shown, live, single, top=3)
    for row in split:
        row["kind"] = "logistic"
    report = {"revenue": {"final_by_campaign": split, "final": {"uplift_over_single": 2.5 / 11}}}
    console = Console(record=True, width=120)
    table = uplift_table(report, rows=1)
    assert table is not None
    console.print(table)
    text = console.export_text()
    assert "+22.7%" in text and "a " in text and "3 other campaigns" in text
    assert "-13.6" in text  # b, c and d: (-1 + 0 - 0.5) / 11, in points
    assert uplift_table({"revenue": {"final_by_campaign": []}}) is None
