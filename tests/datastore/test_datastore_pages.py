"""Records carry ``landing_page_id``; files written before pages read as the ``default`` page.

An older clickrouter wrote the same layout without the column. Such a file is
made here by rewriting a committed file without it (its metadata kept), as
the older writer left it; reads, lookups and compaction then see ``default``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clickrouter.datastore import RECORD_COLUMNS, RECORD_SCHEMA, DataManager, as_records

T0 = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC


def records(
    n: int, campaign: str, start: float = T0, step: float = 3600.0, page: str = "default"
) -> pa.Table:
    """``n`` clicks of ``campaign`` sent to ``page``, every other one sold."""
    rows = {
        "click_id": [f"{campaign}-k{i}-{start}" for i in range(n)],
        "campaign_id": [campaign] * n,
        "ts": [start + i * step for i in range(n)],
        **{f: ["x"] * n for f in ("country", "device", "os", "browser", "provider")},
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


def _as_written_before_pages(path: Path) -> None:
    table = pq.read_table(path)
    old = table.drop_columns(["landing_page_id"]).replace_schema_metadata(table.schema.metadata)
    pq.write_table(old, path)


def test_pages_are_stored_and_old_files_read_as_the_default_page(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(6, "c1", page="fr"), source={"offset": 1})
        old_files = set(dm.files())
        dm.commit(records(4, "c1", start=T0 + 10, page="form"), source={"offset": 2})
    for path in old_files:
        _as_written_before_pages(path)
        assert "landing_page_id" not in pq.read_schema(path).names
    frame = DataManager(tmp_path).read_training_set("c1")
    assert list(frame.columns) == list(RECORD_COLUMNS)
    by_click = dict(zip(frame["click_id"], frame["landing_page_id"], strict=True))
    assert sorted(by_click.values()) == ["default"] * 6 + ["form"] * 4
    assert all(by_click[f"c1-k{i}-{T0}"] == "default" for i in range(6))
    table = DataManager(tmp_path).read_table()
    assert table.column("landing_page_id").null_count == 0


def test_compaction_merges_old_and_new_files(tmp_path: Path) -> None:
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(records(3, "c1", step=60.0, page="fr"), source={"offset": 1})
        old_files = set(dm.files())
        dm.commit(records(3, "c1", start=T0 + 1, step=60.0, page="form"), source={"offset": 2})
    for path in old_files:
        _as_written_before_pages(path)
    before = DataManager(tmp_path).read_all()
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        assert dm.compact() == 1  # two files of one partition became one
        [merged] = dm.files()
    assert "landing_page_id" in pq.read_schema(merged).names
    after = DataManager(tmp_path).read_all()
    assert after.equals(before)
    assert sorted(after["landing_page_id"]) == ["default"] * 3 + ["form"] * 3


def test_a_producer_that_knows_no_pages_commits_default_pages(tmp_path: Path) -> None:
    table = records(5, "c2").drop_columns(["landing_page_id"])
    with DataManager(tmp_path, writable=True, durable=False) as dm:
        dm.commit(table, source={"offset": 1})  # the writer fills the column in
        older = records(2, "c2", start=T0 + 1).drop_columns(["landing_page_id"])
        dm.commit(as_records(older), source={"offset": 2})
    pages = DataManager(tmp_path).read_table().column("landing_page_id")
    assert pages.type == pa.string() and pages.to_pylist() == ["default"] * 7
