"""Delayed feedback: late sales read from a real dataset, the coverage curve, base rates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickrouter.datastore import RECORD_SCHEMA, DataManager, as_records
from clickrouter.errors import InvalidInput
from clickrouter.modelstore import ModelStore
from clickrouter.sim.config import DelayConfig
from clickrouter.sim.delays import DelayModel
from clickrouter.training import TrainingManager, TrainingSettings
from clickrouter.training.data import ParquetTrainingData
from clickrouter.training.late import SIDECAR, LateSales, coverage_weights
from training.conftest import T0, World, write_catalog

HOUR = 3600.0
DELAYS = DelayModel(DelayConfig())  # the simulator's: a third of the sales within the hour


def late_line(click_id: str, ts: float, event_id: str = "") -> bytes:
    event = {"type": "sale", "id": event_id or f"s-{click_id}", "click_id": click_id}
    event.update(ts=ts, revenue=10.0)
    reason = "sale after the attribution window"
    return json.dumps({"reason": reason, "watermark": ts, "event": event}).encode()


def commit(root: Path, frames: dict[str, pd.DataFrame], late: list[bytes], tag: str) -> None:
    """One real DataManager commit: records of several campaigns and late-sale lines."""
    parts = [f.assign(campaign_id=cid) for cid, f in frames.items()]
    table = pa.Table.from_pandas(pd.concat(parts), preserve_index=False)
    with DataManager(root, writable=True, durable=False) as manager:
        manager.commit(as_records(table), source={"t": tag}, sidecars={SIDECAR: late})


def unsold(world: World, n: int, start: float, hours: float) -> pd.DataFrame:
    frame = world.traffic(n, start, days=hours / 24)
    return frame.assign(
        label=np.int8(0), revenue=0.0, sale_ts=np.nan, propensity=1.0, model_version="v0"
    )


# -- reading late sales ----------------------------------------------------


def test_late_sales_resolve_to_unsold_clicks_of_committed_records(tmp_path: Path) -> None:
    world = World(seed=1)
    a, b = unsold(world, 5, T0, 1.0), unsold(world, 5, T0, 1.0)
    b.loc[0, ["label", "revenue", "sale_ts"]] = (1, 10.0, b.loc[0, "ts"] + 60)
    late = [
        late_line(a.click_id[0], T0 + 2 * HOUR),
        late_line(a.click_id[0], T0 + 3 * HOUR, "again"),  # a second sale: the first counts
        late_line(b.click_id[0], T0 + 2 * HOUR),  # its click sold within the window
        late_line("never-clicked", T0 + 2 * HOUR),
        b"not json at all",
    ]
    commit(tmp_path, {"ca": a, "cb": b}, late, "1")
    sales = LateSales(DataManager(tmp_path))
    sales.update()
    assert sales.sale_ts == {a.click_id[0]: T0 + 2 * HOUR}
    assert sales.counts(T0 + 2 * HOUR) == {"ca": 1} and sales.counts(T0 + HOUR) == {}
    assert sales.malformed == 1 and list(sales.pending) == ["never-clicked"]
    for _ in range(2):  # looked up again on later cycles, then given up
        sales.update()
    assert sales.pending == {} and sales.unmatched == 1
    # later commits are read from where the last read stopped
    commit(tmp_path, {"ca": unsold(world, 3, T0 + HOUR, 1.0)}, [late_line(a.click_id[1], T0)], "2")
    sales.update()
    assert sales.counts(T0 + 9 * HOUR) == {"ca": 2} and sales.malformed == 1


def test_late_sales_of_clicks_the_window_has_left_are_forgotten(tmp_path: Path) -> None:
    world = World(seed=6)
    old, new = unsold(world, 3, T0, 1.0), unsold(world, 3, T0 + 48 * HOUR, 1.0)
    late = [late_line(old.click_id[0], T0 + 5 * HOUR), late_line(new.click_id[0], T0 + 50 * HOUR)]
    commit(tmp_path, {"ca": old, "cb": new}, late, "1")
    sales = LateSales(DataManager(tmp_path))
    sales.update()
    assert sales.counts(T0 + 60 * HOUR) == {"ca": 1, "cb": 1}
    sales.update(since=T0 + 24 * HOUR)  # the window moved past the old click
    assert sales.counts(T0 + 60 * HOUR) == {"cb": 1}
    assert list(sales.click_ts) == list(sales.campaign) == [new.click_id[0]]


def test_uncommitted_sidecar_bytes_are_not_read(tmp_path: Path) -> None:
    frame = unsold(World(seed=2), 4, T0, 1.0)
    commit(tmp_path, {"ca": frame}, [late_line(frame.click_id[0], T0 + HOUR)], "1")
    manager = DataManager(tmp_path)
    with manager.sidecar_path(SIDECAR).open("ab") as fh:  # a writer killed mid-commit
        fh.write(late_line(frame.click_id[1], T0 + HOUR) + b"\n")
    sales = LateSales(manager)
    sales.update()
    assert list(sales.sale_ts) == [frame.click_id[0]]


def test_sale_times_are_those_seen_by_the_cut_off(tmp_path: Path) -> None:
    frame = unsold(World(seed=3), 3, T0, 1.0)
    late = [
        late_line(frame.click_id[0], T0 + 2 * HOUR),
        late_line(frame.click_id[1], T0 + 9 * HOUR),
    ]
    commit(tmp_path, {"ca": frame}, late, "1")
    sales = LateSales(DataManager(tmp_path))
    sales.update()
    seen = sales.sale_times(frame["click_id"], T0 + 5 * HOUR)
    assert seen[0] == T0 + 2 * HOUR and np.isnan(seen[1:]).all()


# -- the coverage curve ----------------------------------------------------


def observed(rng: np.random.Generator, rates: np.ndarray, ts: np.ndarray, end: float) -> Any:
    """What the consumer and the sidecar show at ``end`` of clicks at ``ts`` with these rates."""
    sold = rng.random(len(ts)) < rates
    delay = np.where(sold, DELAYS.sample(rng, len(ts)), np.inf)
    window_delay = np.where(delay <= HOUR, delay, np.nan)
    late_delay = np.where((delay > HOUR) & (ts + delay <= end), delay, np.nan)
    return end - ts, window_delay, late_delay


def true_ratio(age: np.ndarray) -> np.ndarray:
    return DELAYS.cdf(np.maximum(age, HOUR)) / DELAYS.cdf(np.array([HOUR]))


def test_the_curve_recovers_the_delay_distribution() -> None:
    rng = np.random.default_rng(0)
    ts = np.sort(rng.uniform(0, 3 * 86400, 400_000))
    age, window_delay, late_delay = observed(rng, np.full(len(ts), 0.02), ts, 3 * 86400)
    weights, curve = coverage_weights(age, window_delay, late_delay, HOUR)
    ages = np.array(curve["ages"])
    assert ages[0] == HOUR and len(ages) >= 6
    np.testing.assert_allclose(curve["ratios"], true_ratio(ages), rtol=0.05)
    np.testing.assert_allclose(weights, true_ratio(age), rtol=0.06)


def test_a_mix_that_changes_over_time_does_not_bias_the_curve() -> None:
    """The oldest clicks (a cold start) convert ten times less than the newest."""
    rng = np.random.default_rng(1)
    ts = np.sort(rng.uniform(0, 3 * 86400, 400_000))
    rates = np.where(ts < 86400, 0.003, 0.03)
    age, window_delay, late_delay = observed(rng, rates, ts, 3 * 86400)
    _, curve = coverage_weights(age, window_delay, late_delay, HOUR)
    np.testing.assert_allclose(curve["ratios"], true_ratio(np.array(curve["ages"])), rtol=0.06)


def test_exposure_makes_all_the_sales_seen_an_unbiased_window_rate() -> None:
    rng = np.random.default_rng(2)
    ts = np.sort(rng.uniform(0, 2 * 86400, 400_000))
    age, window_delay, late_delay = observed(rng, np.full(len(ts), 0.03), ts, 2 * 86400)
    weights, _ = coverage_weights(age, window_delay, late_delay, HOUR)
    sales = np.sum(~np.isnan(window_delay)) + np.sum(~np.isnan(late_delay))  # ~11,000
    window_rate = 0.03 * DELAYS.cdf(np.array([HOUR]))[0]
    assert sales / weights.sum() == pytest.approx(window_rate, rel=0.04)
    assert sales > 1.4 * np.sum(~np.isnan(window_delay))  # the evidence it adds


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 3000),
    rate=st.floats(0.0, 0.2),
    span_hours=st.floats(0.5, 200.0),
)
def test_weights_are_one_inside_the_window_and_never_fall_with_age(
    seed: int, n: int, rate: float, span_hours: float
) -> None:
    rng = np.random.default_rng(seed)
    end = span_hours * HOUR
    ts = rng.uniform(0, end, n)
    age, window_delay, late_delay = observed(rng, np.full(n, rate), ts, end)
    weights, curve = coverage_weights(age, window_delay, late_delay, HOUR)
    assert weights.shape == (n,) and np.all(weights >= 1.0)
    assert np.all(weights[age <= HOUR] == 1.0)
    order = np.argsort(age)
    assert np.all(np.diff(weights[order]) >= -1e-12)
    assert np.all(np.diff(curve["ratios"]) >= 0)


# -- in a training cycle ---------------------------------------------------


def late_settings(**overrides: Any) -> TrainingSettings:
    knobs: dict[str, Any] = {"min_positives": 5, "prior_positives": 1.0, "workers": 0}
    return TrainingSettings(**(knobs | overrides))


def converting(world: World, n: int, rate: float, end: float) -> tuple[pd.DataFrame, list[bytes]]:
    """A day of clicks converting at ``rate`` with the simulator's delays, as seen at ``end``."""
    frame = unsold(world, n, T0, 24.0)
    ts = frame["ts"].to_numpy()
    _, window_delay, late_delay = observed(world.rng, np.full(n, rate), ts, end)
    sold = ~np.isnan(window_delay)
    frame["label"] = sold.astype(np.int8)
    frame["revenue"] = np.where(sold, 10.0, 0.0)
    frame["sale_ts"] = ts + window_delay
    late = [late_line(c, t) for c, t in zip(frame.click_id, ts + late_delay, strict=True) if t == t]
    return frame, late


def test_a_campaign_whose_sales_came_late_gets_a_higher_rate(tmp_path: Path) -> None:
    world = World(seed=4)
    now = T0 + 26 * HOUR
    busy, busy_late = converting(world, 12_000, 0.05, now)  # enough sales to see the curve
    frames = {c: unsold(world, 2000, T0, 24.0) for c in ("late", "none")}
    early = frames["late"].click_id[:3]
    late = [late_line(cid, T0 + 25 * HOUR) for cid in early]
    commit(tmp_path / "data", frames | {"busy": busy}, late + busy_late, "1")
    catalog = write_catalog(tmp_path / "campaigns.json", ["late", "none", "busy"])
    records = {}
    for name, window in (("with", HOUR), ("without", None)):
        settings_ = late_settings(attribution_seconds=window)
        manager = TrainingManager(
            DataManager(tmp_path / "data"), tmp_path / name, catalog, settings_
        )
        manager.run_cycle(now=now)
        store = ModelStore(tmp_path / name)
        records[name] = store.manifest(store.current())
    with_late = records["with"]["campaigns"]
    assert with_late["late"]["late_positives"] == 3 and with_late["none"]["late_positives"] == 0
    assert with_late["late"]["rate"] > 2 * records["without"]["campaigns"]["late"]["rate"]
    # exposure: each click counts the share of its sales its age has shown
    assert with_late["none"]["exposure"] > 1.2 * with_late["none"]["rows"]
    assert records["with"]["delayed_feedback"]["late_sales"] == 3 + len(busy_late)
    assert "delayed_feedback" not in records["without"]
    plain = records["without"]["campaigns"]["late"]
    assert plain["late_positives"] == 0 and plain["exposure"] == plain["rows"]


def test_a_new_late_sale_alone_retrains_its_campaign(tmp_path: Path) -> None:
    world = World(seed=5)
    frames = {c: unsold(world, 500, T0, 12.0) for c in ("a", "b")}
    commit(tmp_path / "data", frames, [], "1")
    catalog = write_catalog(tmp_path / "campaigns.json", ["a", "b"])
    data = DataManager(tmp_path / "data")
    manager = TrainingManager(
        data, tmp_path / "store", catalog, late_settings(attribution_seconds=HOUR)
    )
    manager.run_cycle(now=T0 + 13 * HOUR)
    with DataManager(tmp_path / "data", writable=True, durable=False) as writer:
        line = late_line(frames["a"].click_id[0], T0 + 13.5 * HOUR)
        writer.commit(RECORD_SCHEMA.empty_table(), source={"t": "2"}, sidecars={SIDECAR: [line]})
    report = manager.run_cycle(now=T0 + 14 * HOUR)
    assert report.trained == 1 and report.unchanged == 1
    record = manager.store.manifest(report.version)["campaigns"]["a"]
    assert record["late_positives"] == 1 and record["data_version"].endswith("+1late")


def test_late_sales_need_a_dataset_that_keeps_them(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    catalog = write_catalog(tmp_path / "campaigns.json", ["a"])
    data = ParquetTrainingData(tmp_path / "data")
    manager = TrainingManager(
        data, tmp_path / "store", catalog, late_settings(attribution_seconds=HOUR)
    )
    with pytest.raises(InvalidInput, match="attribution_seconds"):
        manager.run_cycle(now=T0)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_attribution_windows_are_refused(bad: float) -> None:
    with pytest.raises(InvalidInput, match="attribution_seconds"):
        TrainingSettings(attribution_seconds=bad)
