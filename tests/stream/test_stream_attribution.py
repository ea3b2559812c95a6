"""Attribution edge cases: out of order, after the window, duplicates, clock skew."""

from __future__ import annotations

import random

from clickrouter.events import CanonicalProfile, ClickEvent, Event, SaleEvent, encode_event
from reference.attribution import Attributor

DAY = 86400.0
T0 = 1_780_000_000.0
PROFILE = CanonicalProfile("FR", "mobile", "android", "chrome", "orange", 10, 2)


def click(n: int, ts: float, campaign: str = "c1") -> ClickEvent:
    return ClickEvent(f"c-{n}", f"k-{n}", ts, PROFILE, campaign, "https://lp", 0.5, "v1")


def sale(n: int, ts: float, revenue: float = 10.0, *, sale_id: str | None = None) -> SaleEvent:
    return SaleEvent(sale_id or f"s-{n}", f"k-{n}", ts, revenue)


def feed(attr: Attributor, events: list[Event]) -> Attributor:
    for event in events:
        attr.add(event, encode_event(event).rstrip(b"\n"))
    return attr


def labels(attr: Attributor) -> dict[str, int]:
    return {c.click_id: label for c, label, _, _ in attr.records}


def test_sale_within_window_labels_click_positive_immediately() -> None:
    attr = feed(Attributor(7 * DAY, 60), [click(1, T0), sale(1, T0 + 3 * DAY, 42.0)])
    assert attr.records == [(click(1, T0), 1, 42.0, T0 + 3 * DAY)]
    assert not attr.pending


def test_window_closes_in_event_time_only() -> None:
    attr = feed(Attributor(7 * DAY, 60), [click(1, T0), click(2, T0 + 7 * DAY)])
    assert attr.records == []  # the watermark (T0 + 7d - 60 s) has not passed T0 + 7d
    feed(attr, [click(3, T0 + 7 * DAY + 61)])
    assert labels(attr) == {"k-1": 0}
    assert set(attr.pending) == {"k-2", "k-3"}


def test_sale_after_window_is_late_and_click_closes_negative() -> None:
    attr = feed(Attributor(1 * DAY, 3600), [click(1, T0), sale(1, T0 + DAY + 10)])
    assert [b'"sale after the attribution window"' in line for line in attr.late_sales] == [True]
    feed(attr, [click(2, T0 + 2 * DAY)])
    assert labels(attr) == {"k-1": 0}


def test_sale_before_its_click_out_of_order_is_attributed() -> None:
    attr = feed(Attributor(DAY, 600), [sale(1, T0 + 5), click(9, T0 + 100), click(1, T0)])
    assert labels(attr) == {"k-1": 1}
    assert attr.late_sales == [] and not attr.orphans


def test_orphan_sale_expires_to_late_when_watermark_passes_it() -> None:
    attr = feed(Attributor(DAY, 600), [sale(1, T0), click(2, T0 + 599)])
    assert attr.late_sales == [] and "k-1" in attr.orphans
    feed(attr, [click(3, T0 + 601)])
    assert len(attr.late_sales) == 1 and b"unknown or closed click" in attr.late_sales[0]
    feed(attr, [click(1, T0 - 10)])  # the click finally shows up: too late for its sale
    assert labels(attr) == {}
    assert "k-1" in attr.pending


def test_sale_for_closed_click_is_late_not_lost() -> None:
    events: list[Event] = [click(1, T0), click(2, T0 + 2 * DAY), sale(1, T0 + 2 * DAY)]
    attr = feed(Attributor(DAY, 60), events)
    assert labels(attr) == {"k-1": 0}
    assert attr.late_sales == []  # closed clicks are not remembered: it waits as an orphan
    feed(attr, [click(3, T0 + 2 * DAY + 61)])
    assert len(attr.late_sales) == 1


def test_duplicate_events_are_dropped_and_counted() -> None:
    events: list[Event] = [click(1, T0), click(1, T0), sale(1, T0 + 5), sale(1, T0 + 5)]
    attr = feed(Attributor(DAY, 60), events)
    assert labels(attr) == {"k-1": 1}
    assert attr.duplicates == 2
    assert attr.late_sales == []


def test_second_distinct_sale_for_attributed_click_goes_late() -> None:
    events: list[Event] = [click(1, T0), sale(1, T0 + 5), sale(1, T0 + 9, sale_id="other")]
    attr = feed(Attributor(DAY, 60), events)
    feed(attr, [click(2, T0 + 1000)])
    assert labels(attr) == {"k-1": 1}
    assert len(attr.late_sales) == 1


def test_clock_skew_sale_stamped_before_click_is_attributed() -> None:
    # the postback source's clock runs 2 minutes behind the predictor's
    attr = feed(Attributor(DAY, 600), [click(1, T0), sale(1, T0 - 120)])
    assert labels(attr) == {"k-1": 1}


def test_clock_skew_between_sources_within_lateness_loses_nothing() -> None:
    # writer A runs 5 minutes ahead of writer B; their lines interleave on arrival
    skew = 300.0
    a = [click(n, T0 + n * 10 + skew) for n in range(0, 100, 2)]
    b = [click(n, T0 + n * 10) for n in range(1, 100, 2)]
    sales = [sale(n, T0 + n * 10 + 50) for n in range(1, 100, 2)]
    events: list[Event] = [e for trio in zip(a, b, sales, strict=True) for e in trio]
    attr = feed(Attributor(DAY, 600), events)
    assert attr.late_sales == [] and attr.late_clicks == []
    assert labels(attr) == {f"k-{n}": 1 for n in range(1, 100, 2)}


def test_click_older_than_window_behind_watermark_is_late() -> None:
    attr = feed(Attributor(DAY, 60), [click(1, T0 + 3 * DAY), click(2, T0)])
    assert len(attr.late_clicks) == 1 and b'"k-2"' in attr.late_clicks[0]


def test_flush_all_closes_every_window() -> None:
    attr = feed(Attributor(DAY, 60), [click(1, T0), click(2, T0 + 1), sale(3, T0 + 2)])
    attr.flush_all()
    assert labels(attr) == {"k-1": 0, "k-2": 0}
    assert len(attr.late_sales) == 1


def _random_events(seed: int, n: int = 400) -> list[Event]:
    rng = random.Random(seed)
    events: list[Event] = []
    for i in range(n):
        ts = T0 + i * 300 + rng.uniform(-900, 900)  # out of order by up to 15 minutes
        events.append(click(i, ts, f"c{i % 3}"))
        if rng.random() < 0.3:
            events.append(sale(i, ts + rng.expovariate(1 / (0.5 * DAY))))
        if rng.random() < 0.1:
            events.append(events[rng.randrange(len(events))])
    rng.shuffle(events)  # plus wholesale disorder
    return sorted(events, key=lambda e: e.ts + rng.uniform(0, 3600))


def _key(record: tuple[ClickEvent, int, float, float | None]) -> str:
    return record[0].click_id


def test_snapshot_restore_at_any_point_gives_identical_outcome() -> None:
    for seed in range(3):
        events = _random_events(seed)
        full = feed(Attributor(DAY, 1800), events)
        cut = random.Random(seed).randrange(1, len(events))
        first = feed(Attributor(DAY, 1800), events[:cut])
        second = Attributor(DAY, 1800)
        second.restore(first.snapshot())
        feed(second, events[cut:])
        # the same records (closings due together may come out in any order)
        assert sorted(first.records + second.records, key=_key) == sorted(full.records, key=_key)
        assert first.late_sales + second.late_sales == full.late_sales
        assert first.duplicates + second.duplicates == full.duplicates
        assert set(second.pending) == set(full.pending)
        assert len(full.records) > 100 and any(r[1] == 1 for r in full.records)


def test_a_click_id_yields_one_record_even_under_two_event_ids() -> None:
    again = ClickEvent("other-id", "k-1", T0 + 10, PROFILE, "c1", "https://lp", 0.5, "v1")
    attr = feed(Attributor(DAY, 60), [click(1, T0), sale(1, T0 + 5), again])
    attr.flush_all()
    assert labels(attr) == {"k-1": 1} and len(attr.records) == 1
    assert len(attr.late_clicks) == 1 and b"already seen" in attr.late_clicks[0]
