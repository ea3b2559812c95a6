"""The generated event log: decodable, time-ordered, faithful to the oracle and delays."""

from __future__ import annotations

import itertools
import tracemalloc
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pytest

from clickrouter.errors import InvalidInput
from clickrouter.eventlog import EventLogWriter
from clickrouter.events import ClickEvent, SaleEvent, decode_event
from clickrouter.profile import extract_profile
from clickrouter.sim import World
from clickrouter.sim.eventgen import EventGenerator, generate_events

CLICKS = 60_000


def _read(directory: Path) -> list[ClickEvent | SaleEvent]:
    events = []
    for segment in sorted(directory.glob("*.jsonl")):
        with segment.open("rb") as fh:
            events.extend(decode_event(line) for line in fh)
    return events


@pytest.fixture(scope="module")
def log(hot_world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("events")
    report = generate_events(hot_world, out, CLICKS, seed=1, chunk=7_000)
    events = _read(out / "events")
    return {"out": out, "report": report, "events": events}


def _clicks(log: dict[str, object]) -> list[ClickEvent]:
    return [e for e in log["events"] if isinstance(e, ClickEvent)]  # type: ignore[attr-defined]


def _sales(log: dict[str, object]) -> list[SaleEvent]:
    return [e for e in log["events"] if isinstance(e, SaleEvent)]  # type: ignore[attr-defined]


def test_every_line_decodes_and_counts_match(log: dict[str, object]) -> None:
    report = log["report"]
    assert len(_clicks(log)) == report.clicks == CLICKS  # type: ignore[attr-defined]
    assert len(_sales(log)) == report.sales > 2000  # type: ignore[attr-defined]
    assert report.pending_sales_dropped == 0  # type: ignore[attr-defined]


def test_raw_requests_round_trip_through_extraction(log: dict[str, object]) -> None:
    for click in _clicks(log):
        assert click.raw is not None and click.raw["click_id"] == click.click_id
        assert extract_profile(click.raw) == click.profile.to_dict()


def test_log_is_in_event_time_order_and_sales_follow_their_clicks(
    log: dict[str, object], hot_world: World
) -> None:
    ts = [e.ts for e in log["events"]]  # type: ignore[attr-defined]
    assert all(a <= b for a, b in itertools.pairwise(ts))
    clicks = {c.click_id: c for c in _clicks(log)}
    assert len(clicks) == CLICKS and len({c.id for c in clicks.values()}) == CLICKS
    payout = {c.id: c.payout for c in hot_world.campaigns}
    sold = Counter(s.click_id for s in _sales(log))
    assert max(sold.values()) == 1
    for sale in _sales(log):
        click = clicks[sale.click_id]
        assert sale.ts > click.ts
        assert sale.revenue == payout[click.campaign_id]
        assert click.click_id in click.landing_page


def test_uniform_logging_policy_with_propensities(log: dict[str, object], hot_world: World) -> None:
    clicks = _clicks(log)
    profiles = [c.profile.to_dict() for c in clicks]
    eligible = hot_world.eligible(profiles)
    chosen = np.array([hot_world.campaign_index[c.campaign_id] for c in clicks])
    assert eligible[np.arange(len(clicks)), chosen].all()
    np.testing.assert_allclose([c.propensity for c in clicks], 1 / eligible.sum(axis=1))
    assert {c.model_version for c in clicks} == {"logging-uniform"}
    # within one eligibility set, every campaign is chosen equally often
    key = [(p["country"], p["os"]) for p in profiles]
    common = Counter(key).most_common(1)[0][0]
    rows = [i for i, k in enumerate(key) if k == common]
    counts = np.bincount(chosen[rows], minlength=len(hot_world.campaigns))
    counts = counts[eligible[rows[0]]]
    expected = len(rows) / len(counts)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < len(counts) + 5 * np.sqrt(2 * len(counts))


def test_sale_rate_per_campaign_matches_the_oracle(
    log: dict[str, object], hot_world: World
) -> None:
    clicks = _clicks(log)
    sold = {s.click_id for s in _sales(log)}
    proba = hot_world.true_proba([c.profile.to_dict() for c in clicks])
    chosen = np.array([hot_world.campaign_index[c.campaign_id] for c in clicks])
    p = proba[np.arange(len(clicks)), chosen]
    y = np.array([c.click_id in sold for c in clicks])
    z = []
    for campaign in np.unique(chosen):
        rows = chosen == campaign
        expected, variance = p[rows].sum(), (p[rows] * (1 - p[rows])).sum()
        z.append((y[rows].sum() - expected) / np.sqrt(variance))
    assert len(z) >= 10
    assert np.abs(z).max() < 4.5, z
    assert float(np.sum(np.square(z))) < 3 * len(z) + 10  # chi-square, far above its mean


def test_delay_quantiles_in_the_log(log: dict[str, object], hot_world: World) -> None:
    clicks = {c.click_id: c.ts for c in _clicks(log)}
    delays = np.array([s.ts - clicks[s.click_id] for s in _sales(log)])
    n = len(delays)
    for seconds, share in ((3600, 1 / 3), (86_400, 0.5), (7 * 86_400, 0.8)):
        se = np.sqrt(share * (1 - share) / n)
        assert abs(np.mean(delays <= seconds) - share) < 4.5 * se, seconds
    assert delays.max() <= 30 * 86_400 + 0.002
    assert delays.min() >= 19.99


def test_same_seed_same_bytes(hot_world: World, tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate_events(hot_world, tmp_path / name, 3_000, seed=seed, chunk=1_000)

    def content(name: str) -> bytes:
        return b"".join(
            p.read_bytes() for p in sorted((tmp_path / name / "events").glob("*.jsonl"))
        )

    assert content("a") == content("b") != content("c")


def test_horizon_drops_sales_not_yet_due(hot_world: World, tmp_path: Path) -> None:
    report = generate_events(hot_world, tmp_path, 3_000, seed=5, horizon_seconds=0.0)
    sales = [e for e in _read(tmp_path / "events") if isinstance(e, SaleEvent)]
    assert report.pending_sales_dropped > 0
    assert all(s.ts <= report.last_ts for s in sales)


def test_memory_does_not_grow_with_the_number_of_clicks(hot_world: World, tmp_path: Path) -> None:
    peaks = []
    for n in (8_000, 32_000):
        tracemalloc.start()
        with EventLogWriter(tmp_path / str(n), writer_id="sim") as writer:
            EventGenerator(hot_world, seed=2, chunk=2_000).run(writer, n)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.3 * peaks[0], peaks


def test_a_world_without_eligible_campaigns_is_refused(hot_world: World) -> None:
    dead = [msgspec.structs.replace(c, active=False) for c in hot_world.campaigns]
    world = World(hot_world.config, 0, hot_world.population, dead, hot_world.truth.spec)
    with pytest.raises(InvalidInput, match="no offer is eligible"):
        EventGenerator(world)
