"""Records carry the landing page of their click, and data from before pages reads as ``default``.

A click line names its page (``landing_page_id``); a line written before
campaigns had several pages has no such field. Both go through the real
consumer (local event log, decode worker or not) into the real Parquet
dataset; the consumer's saved join state of an older clickrouter (click
blocks and held records without the column) restores as the same records.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import pyarrow as pa
import pytest

from clickrouter.datastore import DataManager
from clickrouter.eventlog import EventLogWriter
from clickrouter.events import CanonicalProfile, ClickEvent, SaleEvent, encode_event
from clickrouter.stream.arrowio import ipc_to_table, table_to_ipc
from clickrouter.stream.consumer import ConsumerManager
from clickrouter.stream.local_source import LocalLogSource
from clickrouter.stream.state import PartFile

DAY = 86400.0
T0 = 1_780_000_000.0
PROFILE = CanonicalProfile("FR", "mobile", "android", "chrome", "orange", 10, 2)
PAGES = ("fr", "form", "default")


def click_lines(
    n: int, *, seed: int, with_page: bool, tag: str = ""
) -> tuple[list[bytes], dict[str, str]]:
    """``n`` clicks over a day (a fifth of them sold an hour later) and the page of each click
    id; without ``with_page`` the lines have no ``landing_page_id``, as before pages."""
    rng = random.Random(seed)
    lines, page_of, sales = [], {}, []
    for i in range(n):
        ts = T0 + i * DAY / n
        page = rng.choice(PAGES) if with_page else "default"
        campaign = f"c{i % 3}"
        click = ClickEvent(
            f"{tag}e{i}", f"{tag}k{i}", ts, PROFILE, campaign, "https://x/", 0.5, "v1", page
        )
        line = encode_event(click)
        if not with_page:  # the line an older predictor wrote
            fields = json.loads(line)
            del fields["landing_page_id"]
            line = json.dumps(fields).encode() + b"\n"
        lines.append(line)
        page_of[click.click_id] = page
        if rng.random() < 0.2:
            sales.append(encode_event(SaleEvent(f"{tag}s{i}", click.click_id, ts + 3600.0, 5.0)))
    return by_time(lines + sales), page_of


def lines_ts(line: bytes) -> float:
    return float(json.loads(line)["ts"])


def by_time(lines: list[bytes]) -> list[bytes]:
    return sorted(lines, key=lines_ts)


def write_log(directory: Path, lines: list[bytes]) -> None:
    with EventLogWriter(directory, "w0", segment_bytes=64_000) as writer:
        for line in lines:
            writer.write_raw(line)


def consume(log: Path, data: Path, *, decode_worker: bool = False) -> dict[str, int]:
    with DataManager(data, writable=True, durable=False) as dm:
        consumer = ConsumerManager(
            LocalLogSource(log),
            dm,
            window_seconds=DAY / 4,
            commit_events=300,
            batch_events=200,
            decode_worker=decode_worker,
        )
        stats = consumer.run_once()
        consumer.close()
        return stats


@pytest.mark.parametrize("decode_worker", [False, True])
def test_each_record_keeps_the_page_its_click_was_sent_to(
    tmp_path: Path, decode_worker: bool
) -> None:
    new, pages = click_lines(1500, seed=1, with_page=True)
    old, old_pages = click_lines(300, seed=2, with_page=False, tag="old-")
    pages.update(old_pages)
    write_log(tmp_path / "log", by_time(old + new))  # two predictor versions, one log
    consume(tmp_path / "log", tmp_path / "data", decode_worker=decode_worker)
    records = DataManager(tmp_path / "data").read_all()
    got = dict(zip(records["click_id"], records["landing_page_id"], strict=True))
    assert len(got) > 1200  # the clicks whose window closed
    assert got == {click_id: pages[click_id] for click_id in got}
    assert {page for click_id, page in got.items() if click_id.startswith("old-")} == {"default"}
    sold = records[records["label"] == 1]
    assert set(sold["landing_page_id"]) == set(PAGES)  # sales join to clicks of every page


def _strip_pages(part: bytes) -> bytes:
    """A state part as the consumer wrote it before records had a landing_page_id."""
    content = msgspec.msgpack.decode(part, type=PartFile)

    def old(ipc: bytes) -> bytes:
        table: pa.Table = ipc_to_table(ipc)
        return table_to_ipc(table.drop_columns(["landing_page_id"]))

    clicks = [old(ipc) for ipc in content.clicks]
    return msgspec.msgpack.encode(
        PartFile(clicks, content.accepted, content.ids, content.ids_ts, old(content.held))
    )


def test_a_join_state_saved_before_pages_restores_as_default_pages(tmp_path: Path) -> None:
    lines, _ = click_lines(2000, seed=3, with_page=False)
    log, data, reference = tmp_path / "log", tmp_path / "data", tmp_path / "ref"
    write_log(log, lines[:1200])
    consume(log, data)
    manifest = DataManager(data).manifest()
    assert manifest.state_parts  # the state this test rewrites exists
    stored = 0
    for rel in manifest.state_parts:
        path = data / rel
        content = msgspec.msgpack.decode(path.read_bytes(), type=PartFile)
        stored += sum(ipc_to_table(ipc).num_rows for ipc in content.clicks)
        path.write_bytes(_strip_pages(path.read_bytes()))
    # the clicks whose window is still open come back from that older state
    assert stored > 0 and DataManager(data).read_all()["ts"].max() < lines_ts(lines[1199])
    with EventLogWriter(log, "w0") as writer:  # the writer restarts: a new segment
        writer.write_raw(b"".join(lines[1200:]))
    consume(log, data)
    write_log(tmp_path / "log2", lines)
    consume(tmp_path / "log2", reference)
    got, want = DataManager(data).read_all(), DataManager(reference).read_all()
    assert set(got["landing_page_id"]) == {"default"}
    assert got.equals(want)
