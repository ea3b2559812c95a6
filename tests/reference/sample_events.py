"""A reproducible synthetic event stream for tests and benchmarks.

It exercises every path of the consumer: clicks, sales after a random delay
(some after the attribution window), duplicated events, sales that arrive
before their click, sales for unknown clicks and malformed lines.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

from clickrouter.events import CanonicalProfile, ClickEvent, SaleEvent, encode_event

START_TS = 1_780_000_000.0
_COUNTRIES = ("FR", "US", "DE", "BR", "IN", "JP")
_DEVICES = ("mobile", "desktop", "tablet")
_OSES = ("android", "ios", "windows", "macos")
_BROWSERS = ("chrome", "safari", "firefox")
_PROVIDERS = ("carrier-0", "carrier-1", "carrier-2")


def sample_lines(
    n_clicks: int,
    *,
    seed: int = 0,
    campaigns: int = 20,
    span_seconds: float = 3 * 86400.0,
    sale_rate: float = 0.05,
    max_delay_seconds: float = 10 * 86400.0,
    duplicate_rate: float = 0.01,
    bad_rate: float = 0.002,
) -> Iterator[bytes]:
    """Yield event lines (newline-terminated), roughly in event-time order."""
    rng = random.Random(seed)
    step = span_seconds / max(n_clicks, 1)
    sales: list[tuple[float, int, bytes]] = []  # heap: emitted once their ts is reached
    for i in range(n_clicks):
        ts = START_TS + i * step
        while sales and sales[0][0] <= ts:
            yield heapq.heappop(sales)[2]
        click = _click(rng, i, ts, campaigns)
        sale = _sale(rng, click, max_delay_seconds) if rng.random() < sale_rate else None
        if sale is not None and rng.random() < 0.05:
            # out of order: a quick postback overtakes its click's log line
            quick = SaleEvent(sale.id, sale.click_id, ts + rng.uniform(0, 30), sale.revenue)
            yield encode_event(quick)
            sale = None
        yield from _maybe_noise(rng, encode_event(click), duplicate_rate, bad_rate)
        if sale is not None:
            heapq.heappush(sales, (sale.ts, i, encode_event(sale)))
        if rng.random() < bad_rate:  # a postback for a click nobody logged
            yield encode_event(SaleEvent(id=f"ev-u{i}", click_id=f"nobody-{i}", ts=ts, revenue=1.0))
    while sales:
        yield heapq.heappop(sales)[2]


def _click(rng: random.Random, i: int, ts: float, campaigns: int) -> ClickEvent:
    profile = CanonicalProfile(
        country=rng.choice(_COUNTRIES),
        device=rng.choice(_DEVICES),
        os=rng.choice(_OSES),
        browser=rng.choice(_BROWSERS),
        provider=rng.choice(_PROVIDERS),
        local_hour=rng.randrange(24),
        local_weekday=rng.randrange(7),
    )
    return ClickEvent(
        id=f"ev-c{i}",
        click_id=f"click-{i}",
        ts=ts,
        profile=profile,
        campaign_id=f"c{rng.randrange(campaigns):04d}",
        landing_page="https://example.test/landing",
        propensity=rng.uniform(0.01, 1.0),
        model_version="v1",
    )


def _sale(rng: random.Random, click: ClickEvent, max_delay: float) -> SaleEvent:
    delay = rng.expovariate(3.0 / max_delay) if rng.random() > 0.05 else -rng.uniform(0, 60)
    return SaleEvent(
        id=f"ev-s{click.click_id}",
        click_id=click.click_id,
        ts=click.ts + delay,
        revenue=round(rng.uniform(1, 100), 2),
    )


def _maybe_noise(
    rng: random.Random, line: bytes, duplicate_rate: float, bad_rate: float
) -> Iterator[bytes]:
    yield line
    if rng.random() < duplicate_rate:
        yield line
    if rng.random() < bad_rate:
        yield rng.choice((b'{"type": "click", "id": 1}\n', b"not json\n", b'{"type":"view"}\n'))
