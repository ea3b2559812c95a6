"""DataManager: atomic commits, recovery, reading, compaction, retention, other readers."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickrouter.datastore import RECORD_COLUMNS, RECORD_SCHEMA, DataManager
from clickrouter.datastore.writer import DatasetLocked
from clickrouter.errors import ClickrouterError, InvalidInput

DAY = 86400.0
T0 = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
MIDNIGHT = 1_779_926_400.0  # 2026-05-28 00:00 UTC


def records(
    n: int, campaign: str = "c1", start: float = T0, step: float = 3600.0, page: str = "default"
) -> pa.Table:
    rows = {
        "click_id": [f"{campaign}-k{i}-{start}" for i in range(n)],
        "campaign_id": [campaign] * n,
        "ts": [start + i * step for i in range(n)],
        "country": ["FR"] * n,
        "device": ["mobile"] * n,
        "os": ["android"] * n,
        "browser": ["chrome"] * n,
        "provider": ["orange"] * n,
        "local_hour": [i % 24 for i in range(n)],
        "local_weekday": [i % 7 for i in range(n)],
        "label": [i % 2 for i in range(n)],
        "revenue": [10.0 * (i % 2) for i in range(n)],
        "sale_ts": [start + i * step + 60 if i % 2 else None for i in range(n)],
        "propensity": [0.5] * n,
        "model_version": ["v1"] * n,
        "landing_page_id": [page] * n,
    }
    return pa.Table.from_pydict(rows, schema=RECORD_SCHEMA)


def test_commit_then_read_training_set(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(30, "c1"), source={"offset": 1})
        dm.commit(records(5, "c2"), source={"offset": 2})
    reader = DataManager(tmp_path)
    assert reader.campaigns() == ["c1", "c2"]
    df = reader.read_training_set("c1")
    assert list(df.columns) == list(RECORD_COLUMNS)
    assert len(df) == 30 and set(df["campaign_id"]) == {"c1"}
    assert df["ts"].is_monotonic_increasing
    window = reader.read_training_set("c1", start=T0 + 3600, end=T0 + 5 * 3600)
    assert window["ts"].tolist() == [T0 + h * 3600 for h in range(1, 5)]
    assert len(reader.read_all()) == 35
    assert reader.manifest().source == {"offset": 2}


def test_lookup_finds_committed_clicks_within_the_window(tmp_path: Path) -> None:
    old, new = records(3, "c1"), records(3, "c2", start=T0 + 10 * DAY)
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(old, source={"offset": 1}, sidecars={"late_sales": [b'{"a":1}']})
        dm.commit(new, source={"offset": 2})
    reader = DataManager(tmp_path)
    wanted = [old["click_id"][1].as_py(), new["click_id"][2].as_py(), "unknown"]
    found = reader.lookup_clicks(wanted).to_pylist()
    assert sorted(found, key=lambda row: row["campaign_id"]) == [
        {"click_id": wanted[0], "campaign_id": "c1", "label": 1, "ts": T0 + 3600},
        {"click_id": wanted[1], "campaign_id": "c2", "label": 0, "ts": T0 + 10 * DAY + 7200},
    ]
    assert [r["campaign_id"] for r in reader.lookup_clicks(wanted, since=T0 + DAY).to_pylist()] == [
        "c2"
    ]
    assert reader.sidecar_length("late_sales") == len(b'{"a":1}\n')
    assert reader.sidecar_length("dead_letters") == 0


def test_empty_reads_have_the_record_columns(tmp_path: Path) -> None:
    df = DataManager(tmp_path).read_training_set("nope")
    assert list(df.columns) == list(RECORD_COLUMNS) and len(df) == 0
    assert DataManager(tmp_path).campaigns() == []
    assert DataManager(tmp_path).data_version("nope") == "0-0"


def test_partitions_are_hive_by_campaign_and_utc_day(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(30, "c1", start=MIDNIGHT), source={})  # 30 hours: two UTC days
    dirs = sorted(p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert dirs == ["campaign_id=c1/date=2026-05-28", "campaign_id=c1/date=2026-05-29"]


def test_files_are_self_describing(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(3), source={"segments": {"w1.00000000.jsonl": 123}})
    (path,) = tmp_path.rglob("*.parquet")
    meta = pq.read_schema(path).metadata
    assert json.loads(meta[b"clickrouter.source_offsets"]) == {
        "segments": {"w1.00000000.jsonl": 123}
    }
    assert meta[b"clickrouter.feature_format_version"] == b"1"
    assert "campaign_id" not in pq.read_schema(path).names  # a partition column


def test_data_version_changes_only_for_the_campaign_that_got_records(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(3, "c1"), source={})
        dm.commit(records(3, "c2"), source={})
        v1, v2 = dm.data_version("c1"), dm.data_version("c2")
        dm.commit(records(2, "c2", start=T0 + 10), source={})
        assert dm.data_version("c1") == v1
        assert dm.data_version("c2") != v2
        before = dm.data_version("c2")
        assert dm.compact() > 0  # two small c2 files in one partition merged
        assert dm.data_version("c2") == before  # same records, no retraining needed
        assert DataManager(tmp_path).data_versions() == {"c1": v1, "c2": before}
        assert len(dm.read_training_set("c2")) == 5


def test_recovery_drops_uncommitted_files_and_truncates_sidecars(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(3), source={"n": 1}, state=b"S1", sidecars={"dead_letters": [b"{}"]})
    # what a crash mid-commit leaves behind
    stray = tmp_path / "campaign_id=c1/date=2026-05-28/part-0000000002-00000.parquet"
    pq.write_table(records(2).drop(["campaign_id"]), stray)
    (tmp_path / "campaign_id=c9/date=2026-05-28").mkdir(parents=True)
    (tmp_path / "campaign_id=c9/date=2026-05-28/x.parquet.tmp").write_bytes(b"half")
    (tmp_path / "_state/state-0000000002.bin").write_bytes(b"S2")
    with open(tmp_path / "_dead_letters.jsonl", "ab") as fh:
        fh.write(b'{"uncommitted": true}\n')
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        assert dm.load_state() == b"S1"
        assert len(dm.read_all()) == 3
    assert not stray.exists()
    assert not list(tmp_path.rglob("*.tmp"))
    assert not (tmp_path / "_state/state-0000000002.bin").exists()
    assert (tmp_path / "_dead_letters.jsonl").read_bytes() == b"{}\n"


def test_a_reader_never_sees_uncommitted_files(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(3), source={})
        stray = tmp_path / "campaign_id=c1/date=2026-05-28/part-9.parquet"
        pq.write_table(records(2).drop(["campaign_id"]), stray)
        assert len(DataManager(tmp_path).read_all()) == 3


def test_only_one_writer_at_a_time(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True), pytest.raises(DatasetLocked):
        DataManager(tmp_path, writable=True)


def test_retention_drops_old_files(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(3, "c1", start=T0), source={})
        dm.commit(records(3, "c1", start=T0 + 10 * DAY), source={})
        version = dm.data_version("c1")
        assert dm.apply_retention(T0 + 5 * DAY) == 1
        assert dm.read_all()["ts"].min() >= T0 + 10 * DAY
        assert dm.data_version("c1") != version


def test_unsafe_campaign_id_is_refused(tmp_path: Path) -> None:
    with (
        DataManager(tmp_path, writable=True, durable=False) as dm,
        pytest.raises(InvalidInput, match="campaign_id"),
    ):
        dm.commit(records(1, "../evil"), source={})


def test_duckdb_and_polars_read_the_dataset_as_it_is(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(30, "c1"), source={})
        dm.commit(records(7, "c2"), source={})
    glob = str(tmp_path / "**" / "*.parquet")
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT campaign_id, count(*), sum(label) FROM read_parquet('{glob}', "
        "hive_partitioning = true) GROUP BY campaign_id ORDER BY campaign_id"
    ).fetchall()
    assert rows == [("c1", 30, 15), ("c2", 7, 3)]
    frame = pl.scan_parquet(glob, hive_partitioning=True).collect()
    assert frame.height == 37
    assert set(frame["campaign_id"].unique().to_list()) == {"c1", "c2"}
    assert {"date", "click_id", "label", "propensity"} <= set(frame.columns)


def test_records_begun_in_the_background_commit_like_a_table(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        pending = dm.begin_records(records(30, "c1"), {"offset": 1})
        dm.commit(pending, source={"offset": 1}, state=b"S1")
        assert len(dm.read_all()) == 30 and dm.load_state() == b"S1"
        stale = dm.begin_records(records(5, "c2"), {"offset": 2})
        with pytest.raises(ClickrouterError, match="another generation or source"):
            dm.commit(stale, source={"offset": 3})
        dm.discard(stale)  # the failed commit's files go; the committed ones stay
        assert {p.parent.parent.name for p in tmp_path.glob("campaign_id=*/*/*")} == {
            "campaign_id=c1"
        }
        empty = dm.begin_records(RECORD_SCHEMA.empty_table(), {"offset": 2})
        assert dm.commit(empty, source={"offset": 2}).generation == 2
    reader = DataManager(tmp_path)
    assert reader.campaigns() == ["c1"] and len(reader.read_all()) == 30
    assert reader.manifest().source == {"offset": 2}
