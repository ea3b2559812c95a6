"""The replay loop on a tiny world: the consumer's dataset format, settled labels, slots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tests.replay.conftest import TINY

from clickrouter.datastore import RECORD_COLUMNS, DataManager
from clickrouter.modelstore import ModelStore
from clickrouter.replay.loop import ReplayLoop, load_world
from clickrouter.replay.outcomes import PendingRecords, record_columns
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
    data.close()
