"""The replay loop on a tiny world: the consumer's dataset format, settled labels, slots."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tests.replay.conftest import TINY

from clickrouter.datastore import RECORD_COLUMNS, DataManager
from clickrouter.errors import InvalidInput
from clickrouter.modelstore import ModelStore
from clickrouter.replay.loop import ReplayLoop, load_world
from clickrouter.replay.outcomes import PendingRecords, record_columns
from clickrouter.replay.report import seed_report
from clickrouter.replay.settings import HOUR
from clickrouter.replay.traffic import SlotMap, canonical_columns
from clickrouter.serving.bank import ModelBank


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    workdir = tmp_path_factory.mktemp("replay") / "work"
    workdir.mkdir()
    world = load_world(TINY)
    run = ReplayLoop(TINY, world, workdir, traffic_seed=0).run()
    return workdir, run


def test_the_trainer_reads_the_consumers_record_format(finished: tuple[Path, object]) -> None:
    workdir, run = finished
    records = DataManager(workdir / "data").read_all()
    assert tuple(records.columns) == RECORD_COLUMNS
    assert records["click_id"].is_unique
    assert set(records["label"].unique()) <= {0, 1}
    sales = records[records["label"] == 1]
    assert len(sales) > 0
    window = TINY.demo.attribution_hours * HOUR
    assert ((sales["sale_ts"] - sales["ts"]).between(0, window)).all()
    assert (records.loc[records["label"] == 0, "sale_ts"].isna()).all()
    assert (records["propensity"].between(0, 1, inclusive="right")).all()
    # every record reached the dataset after its label settled (+ the label delay)
    end = float(run.cycles[-1]["sim_ts"])
    settled = np.where(records["label"] == 1, records["sale_ts"], records["ts"] + window)
    assert (settled + TINY.label_delay_hours * HOUR <= end).all()
    assert sum(c["records_committed"] for c in run.cycles) == len(records)


def test_every_cycle_published_a_version_the_next_cycle_served(
    finished: tuple[Path, object],
) -> None:
    workdir, run = finished
    store = ModelStore(workdir / "store")
    assert len(run.cycles) == TINY.cycles
    served = [c["served_version"] for c in run.cycles]
    assert served == list(range(len(served)))  # cold start, then each cycle's new version
    manifest = store.manifest(store.current())
    assert manifest["settings"]["min_positives"] == TINY.demo.min_positives
    kinds = [r["kind"] for r in manifest["campaigns"].values()]
    assert "logistic" in kinds  # the loop learned something on the tiny world
    # the campaigns exploration has reached: none in the cold start, then those whose
    # served model rests on records (the version the last cycle served: the one before)
    reached = [c["campaigns_with_records"] for c in run.cycles]
    assert reached[0] == 0 and reached == sorted(reached) and reached[-1] > 0
    last_served = store.manifest(sorted(store.versions())[-2])["campaigns"]
    assert reached[-1] == sum(r["data_version"] is not None for r in last_served.values())


def test_the_oracle_among_reached_campaigns_is_bounded_by_the_oracle(
    finished: tuple[Path, object],
) -> None:
    _, run = finished
    ts, _, values = run.sampled
    reached, oracle = values["oracle_reached"], values["oracle"]
    assert (reached <= oracle).all()
    # the cold start's version rests on no record: nothing is reached during the first cycle
    first_cycle = ts < run.cycles[0]["sim_ts"]
    assert first_cycle.any() and (reached[first_cycle] == 0).all()
    # later the campaigns with records hold some, and in this small world most, of its value
    late = ts >= run.cycles[-2]["sim_ts"]
    assert 0.5 * oracle[late].sum() < reached[late].sum() <= oracle[late].sum()


def test_world_slots_map_to_the_banks_own_slots(finished: tuple[Path, object]) -> None:
    workdir, _ = finished
    store = ModelStore(workdir / "store")
    world = load_world(TINY)
    with ModelBank.from_directory(store.path_of(store.current())) as bank:
        slots = world.audience.slots(world.draw(np.random.default_rng(1), 500))
        columns = canonical_columns(world, slots)
        profiles = [{k: v[i] for k, v in columns.items()} for i in range(500)]
        for profile in profiles:  # the service's profiles carry plain ints
            profile["local_hour"] = int(profile["local_hour"])
            profile["local_weekday"] = int(profile["local_weekday"])
        expected = bank.space.indices_many(profiles)
        assert (expected > bank.space.offsets[:-1]).any()  # known values, not all OOV
        assert np.array_equal(SlotMap(world, bank.space).bank_slots(slots), expected)


def test_a_train_window_bounds_what_the_trainer_reads(tmp_path: Path) -> None:
    settings = dataclasses.replace(TINY, train_window_hours=30.0)
    loop = ReplayLoop(settings, load_world(settings), tmp_path, traffic_seed=0)
    assert loop.trainer.settings.window_seconds == 30 * HOUR
    assert settings.to_dict()["train_window_hours"] == 30.0
    loop.data.close()


def test_pending_records_are_committed_when_ready(tmp_path: Path) -> None:
    data = DataManager(tmp_path / "data", writable=True, durable=False)
    pending = PendingRecords(data)
    n = 5
    canonical = {
        "country": np.array(["de"] * n, dtype=object),
        "device": np.array(["d"] * n, dtype=object),
        "os": np.array(["android"] * n, dtype=object),
        "browser": np.array(["chrome"] * n, dtype=object),
        "provider": np.array(["p"] * n, dtype=object),
        "local_hour": np.zeros(n, np.int8),
        "local_weekday": np.zeros(n, np.int8),
    }
    ts = 1.79e9 + np.arange(n, dtype=np.float64)
    columns = record_columns(
        np.array([f"k{i}" for i in range(n)]),
        np.array(["c1"] * n, dtype=object),
        np.array(["default", "fr", "default", "fr", "default"], dtype=object),
        ts,
        canonical,
        np.array([1, 0, 0, 1, 0], np.int8),
        np.array([2.0, 0, 0, 2.0, 0]),
        np.array([ts[0] + 5, np.nan, np.nan, ts[3] + 9, np.nan]),
        np.full(n, 0.5),
        "v1",
    )
    pending.add(columns, ready=ts + np.array([10, 50, 20, 30, 40.0]))
    assert pending.commit_until(ts[0] + 25) == 2
    assert sorted(data.read_all()["click_id"]) == ["k0", "k2"]
    assert pending.commit_until(ts[0] + 100) == 3
    table = data.read_table()
    assert table.num_rows == 5
    assert pa.compute.sum(table.column("label")).as_py() == 2
    assert data.read_all().set_index("click_id")["landing_page_id"]["k1"] == "fr"
    data.close()


def test_the_loop_chooses_and_records_offers(finished: tuple[Path, object]) -> None:
    workdir, _ = finished
    world = load_world(TINY)
    records = DataManager(workdir / "data").read_all()
    pages = {c.id: {p.id for p in c.pages} for c in world.campaigns}
    assert all(
        page in pages[cid]
        for cid, page in zip(records["campaign_id"], records["landing_page_id"], strict=True)
    )
    per_campaign = records.groupby("campaign_id")["landing_page_id"].nunique()
    assert (per_campaign > 1).any()  # the policy chooses pages, not only campaigns
    # the bank's columns are the world's offers, each mapped to its own campaign and page
    store = ModelStore(workdir / "store")
    with ModelBank.from_directory(store.path_of(store.current())) as bank:
        offers = np.asarray(world.offer_index(bank.campaign_ids, bank.page_ids))
        assert len(bank.campaign_ids) == len(world.offers) > len(world.campaigns)
        named = [(world.offers[i].campaign.id, world.offers[i].page.id) for i in offers]
        assert named == list(zip(bank.campaign_ids, bank.page_ids, strict=True))


def test_every_baseline_is_valued_on_the_same_sampled_requests(
    finished: tuple[Path, object],
) -> None:
    _, run = finished
    ts, shown, values = run.sampled
    oracle = values["oracle"]
    for name in ("live", "greedy", "random", "single", "campaign_first_page"):
        assert len(values[name]) == len(ts) == len(shown)
        assert (values[name] <= oracle * (1 + 1e-6) + 1e-12).all(), name
    assert (values["campaign_random_page"] <= values["oracle"] * (1 + 1e-6)).all()
    # choosing the page matters in this world: a fixed first page leaves value behind
    assert values["campaign_first_page"].mean() < oracle.mean()
    report = seed_report(run)  # type: ignore[arg-type]
    for label in ("final", "overall"):
        per_1k = report[label]["per_1k"]
        assert per_1k["campaign_first_page"] <= per_1k["oracle"]
        ratio = per_1k["live"] / per_1k["campaign_first_page"] - 1
        assert report[label]["uplift_over_first_page"] == pytest.approx(ratio)


def test_an_exploration_seed_changes_the_choices_alone(
    finished: tuple[Path, object], tmp_path: Path
) -> None:
    """The same traffic, shown the same baselines; only the policy's draws differ."""
    _, run = finished
    settings = dataclasses.replace(TINY, exploration_seed=7)
    other = ReplayLoop(settings, load_world(settings), tmp_path, traffic_seed=0).run()
    ts, _, values = run.sampled
    other_ts, _, other_values = other.sampled
    assert np.array_equal(ts, other_ts)
    for name in ("oracle", "single", "campaign_first_page", "random"):
        assert np.array_equal(values[name], other_values[name]), name
    assert not np.array_equal(values["live"], other_values["live"])
    assert settings.to_dict()["exploration_seed"] == 7
    for bad in (-1, 1.5, 2**32, True):  # the Python API refuses what the CLI refuses
        with pytest.raises(InvalidInput, match="--exploration-seed"):
            dataclasses.replace(TINY, exploration_seed=bad)


def test_a_replay_without_propensities_makes_the_same_choices(
    finished: tuple[Path, object], tmp_path: Path
) -> None:
    """The CLI's setting: the same values on the same requests; NaN in the records."""
    workdir, run = finished
    settings = dataclasses.replace(TINY, propensities=False)
    other = ReplayLoop(settings, load_world(settings), tmp_path, traffic_seed=0).run()
    ts, shown, values = run.sampled
    other_ts, other_shown, other_values = other.sampled
    assert np.array_equal(ts, other_ts) and np.array_equal(shown, other_shown)
    for name, value in values.items():
        assert np.array_equal(value, other_values[name]), name
    logged = DataManager(workdir / "data").read_all()["propensity"]
    skipped = DataManager(tmp_path / "data").read_all()["propensity"]
    assert len(skipped) == len(logged)
    assert logged.between(0, 1, inclusive="right").all()
    assert skipped.isna().sum() > len(skipped) / 2  # 1.0 where the choice was greedy
    with pytest.raises(InvalidInput, match="--propensities"):
        dataclasses.replace(TINY, propensities=1)  # type: ignore[arg-type]


def test_deciding_in_blocks_makes_the_choices_of_whole_chunks(
    finished: tuple[Path, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache-sized blocks change no choice: one block per chunk gives the same run."""
    from clickrouter.replay import loop

    _, run = finished
    assert loop.BLOCK < loop.CHUNK
    monkeypatch.setattr(loop, "BLOCK", loop.CHUNK)
    whole = ReplayLoop(TINY, load_world(TINY), tmp_path, traffic_seed=0).run()
    for ours, theirs in zip(run.sampled, whole.sampled, strict=True):
        if isinstance(ours, dict):
            assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
        else:
            assert np.array_equal(ours, theirs)
    assert all(np.array_equal(run.all_sums[k], whole.all_sums[k]) for k in run.all_sums)
    assert run.no_fill == whole.no_fill
