"""An event stamped in the future cannot move the consumer's watermark there.

The attack: one event with ``ts`` in the year 9999 written into the event log
(by a postback before postbacks were bounded, or by anyone who can write the
log or the Redis stream). The join's watermark would jump to 9999, every later
click would be late, and the committed watermark would keep it so after a
restart. The consumer refuses such an event before the join.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from clickrouter.datastore import DataManager
from clickrouter.eventlog import EventLogWriter
from clickrouter.events import CanonicalProfile, ClickEvent, SaleEvent, encode_event
from clickrouter.stream.consumer import ConsumerManager
from clickrouter.stream.local_source import LocalLogSource

YEAR_9999 = 253_402_300_799.0
PROFILE = CanonicalProfile("FR", "mobile", "android", "chrome", "carrier-1", 12, 3)
WINDOW = 3600.0


def click(i: int, ts: float, tag: str) -> bytes:
    return encode_event(
        ClickEvent(f"{tag}-c{i}", f"{tag}-k{i}", ts, PROFILE, "camp1", "https://x/", 0.5, "v1")
    )


def sale(i: int, ts: float, tag: str) -> bytes:
    return encode_event(SaleEvent(f"{tag}-s{i}", f"{tag}-k{i}", ts, 2.0))


def attack(tag: str, n: int, now: float) -> list[bytes]:
    """``n`` clicks, a year-9999 event in their midst, then a sale for every click."""
    half = n // 2
    lines = [click(i, now - 60 + i * 0.01, tag) for i in range(half)]
    lines.append(sale(10**6, YEAR_9999, tag))  # a sale from the far future
    lines += [click(i, now - 30 + i * 0.01, tag) for i in range(half, n)]
    lines += [sale(i, now, tag) for i in range(n)]
    return lines


def write(log: Path, writer: str, lines: list[bytes]) -> None:
    with EventLogWriter(log, writer) as out:
        out.write_raw(b"".join(lines))


def run(log: Path, data: Path, **kwargs: object) -> tuple[dict[str, int], float]:
    with DataManager(data, writable=True, durable=False) as dm:
        consumer = ConsumerManager(
            LocalLogSource(log), dm, window_seconds=WINDOW, lateness_seconds=60.0, **kwargs
        )
        try:
            stats = consumer.run_once(compact=False)
        finally:
            consumer.close()
        return stats, consumer.attributor.max_ts


def dead_letters(data: Path) -> list[dict[str, str]]:
    path = data / "_dead_letters.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("decode_worker", [False, True], ids=["in-process", "decode-worker"])
def test_future_event_is_dead_lettered_and_later_clicks_labelled_across_restart(
    tmp_path: Path, decode_worker: bool
) -> None:
    log, data = tmp_path / "log", tmp_path / "data"
    log.mkdir()
    now = time.time()
    write(log, "w1", attack("a", 200, now))
    stats, watermark = run(log, data, decode_worker=decode_worker)
    assert stats["future_events"] == stats["dead_lettered"] == 1
    assert stats["positives_labelled"] == 200 and stats["late_clicks"] == 0
    assert stats["late_sales"] == 0
    assert watermark <= time.time() + 300  # the watermark never left the present
    (letter,) = dead_letters(data)
    assert "beyond the consumer's clock" in letter["reason"]
    assert letter["position"].startswith("w1.00000000.jsonl:")
    assert json.loads(letter["line"])["ts"] == YEAR_9999

    # a restart reads the committed state: another attack, and the clicks after it
    write(log, "w2", attack("b", 101, time.time()))
    stats, watermark = run(log, data, decode_worker=decode_worker)
    assert stats["future_events"] == stats["dead_lettered"] == 2
    assert stats["positives_labelled"] == 301 and stats["late_clicks"] == 0
    assert watermark <= time.time() + 300
    assert len(dead_letters(data)) == 2
    labelled = DataManager(data).read_all()
    assert len(labelled) == 301 and set(labelled["label"]) == {1}


def test_a_watermark_committed_in_the_future_is_brought_back_to_the_clock(
    tmp_path: Path,
) -> None:
    """A dataset whose state already holds a year-9999 watermark (joined by a consumer
    whose clock allowed it) resumes at the present: the next clicks are labelled."""
    log, data = tmp_path / "log", tmp_path / "data"
    log.mkdir()
    write(log, "w1", attack("a", 20, time.time()))
    stats, watermark = run(log, data, clock=lambda: YEAR_9999)  # that consumer let it in
    assert stats["future_events"] == 0 and watermark == YEAR_9999
    assert stats["late_clicks"] == 10 and stats["positives_labelled"] == 0  # poisoned

    write(log, "w2", [click(i, time.time(), "b") for i in range(30)])
    write(log, "w3", [sale(i, time.time(), "b") for i in range(30)])
    stats, watermark = run(log, data)
    assert watermark <= time.time() + 300
    assert stats["late_clicks"] == 10  # only the ones before the repair
    assert stats["positives_labelled"] == 30  # every new click got its sale
