"""``clickrouter consume --metrics-port``: a real consumer process scraped over loopback,
and its backlog measured on real event logs and a real Redis stream."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import redis
from prometheus_client import generate_latest

from clickrouter.eventlog import EventLogWriter
from clickrouter.events import CanonicalProfile, ClickEvent, SaleEvent, encode_event
from clickrouter.redislog import FIELD, parse_redis_url
from clickrouter.stream import metrics as stream_metrics
from clickrouter.stream.local_source import LocalLogSource
from clickrouter.stream.metrics import ConsumerMetrics, LocalBacklog, RedisBacklog
from clickrouter.stream.redis_stream import RedisStreamSource
from monitoring.monitoring_support import clickrouter, free_port, scrape_until, stop, value

PROFILE = CanonicalProfile("FR", "device-1", "android", "chrome mobile", "carrier-2", 10, 2)


def click(n: int, ts: float, campaign: str = "camp1") -> ClickEvent:
    return ClickEvent(f"c{n}", f"k{n}", ts, PROFILE, campaign, "https://lp/", 0.5, "v1")


def write_log(directory: Path, clicks: int, start: float, writer: str = "w1") -> list[float]:
    """``clicks`` clicks, one sale per 4th, one second apart; their times in order."""
    out = EventLogWriter(directory, writer)
    times = []
    for n in range(clicks):
        out.write(click(n, start + n))
        times.append(start + n)
        if n % 4 == 0:
            out.write(SaleEvent(f"s{n}", f"k{n}", start + n + 0.5, 10.0))
            times.append(start + n + 0.5)
    out.close()
    return times


def test_consumer_serves_ingestion_commits_dead_letters_and_lag(tmp_path: Path) -> None:
    log, now = tmp_path / "events", time.time()
    valid = write_log(log, 40, now - 600)
    bad = EventLogWriter(log, "w2")
    bad.write_raw(b'{"type": "click", "id": \n')  # malformed JSON
    bad.write_raw(b"\n")  # empty line
    bad.write_raw(b'{"type": "sale", "id": "x"}\n')  # fails validation: no click_id, ts...
    bad.write_raw(encode_event(click(900, now - 30, campaign="../escape")))
    bad.write_raw(encode_event(click(901, now + 86400)))  # a day in the future
    bad.close()
    port = free_port()
    consumer = clickrouter(
        "consume", "--source", str(log), "--data", str(tmp_path / "data"),
        "--metrics-port", str(port), "--quiet", "--no-fsync", "--in-process",
        "--commit-seconds", "0.2",
        module="clickrouter.cli.consume",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        lines = len(valid) + 5
        samples = scrape_until(
            url,
            lambda s: (
                value(s, "clickrouter_consumer_events_read_total") == lines
                and (value(s, "clickrouter_consumer_dead_letters_committed_total") or 0) >= 5
            ),
            60,
            f"{lines} events read and 5 dead letters committed",
        )
    finally:
        code, stderr = stop(consumer)
    assert code == 0, stderr
    dead = {
        reason: value(samples, "clickrouter_consumer_dead_letters_total", reason=reason)
        for reason in stream_metrics.DEAD_LETTER_REASONS
    }
    assert dead == {
        "empty_line": 1,
        "malformed_json": 1,
        "invalid_event": 1,
        "bad_campaign_id": 1,
        "future_event": 1,
    }
    assert value(samples, "clickrouter_consumer_commits_total") >= 1  # type: ignore[operator]
    assert value(samples, "clickrouter_consumer_commit_duration_seconds_count") >= 1  # type: ignore[operator]
    # every 4th click got its sale (labelled now); the others wait for their window
    assert value(samples, "clickrouter_consumer_sales_labelled_total") == 10
    assert value(samples, "clickrouter_consumer_pending_clicks") == 30
    assert value(samples, "clickrouter_consumer_source_up") == 1
    assert value(samples, "clickrouter_consumer_lag_events") == 0  # caught up
    assert value(samples, "clickrouter_consumer_lag_seconds") == 0
    last_commit = value(samples, "clickrouter_consumer_last_commit_timestamp_seconds")
    assert last_commit is not None and now - 5 < last_commit <= time.time()


def test_local_backlog_counts_unread_lines_and_dates_the_oldest(tmp_path: Path) -> None:
    log, start = tmp_path / "events", time.time() - 3600
    w1, w2 = write_log(log, 100, start), write_log(log, 20, start - 50, writer="w2")
    backlog = LocalBacklog(log)
    assert backlog.measure({}) == (len(w1) + len(w2), start - 50)
    source = LocalLogSource(log, chunk_bytes=4096)
    first, second = (len(chunk.lines) for chunk in source.poll())  # a chunk per writer
    events, oldest = backlog.measure(source.position())
    assert events == len(w1) + len(w2) - first - second > 0
    assert oldest == min(w1[first], w2[second])  # each writer's next line, the older
    while source.poll():
        pass
    assert backlog.measure(source.position()) == (0, None)


def test_local_backlog_beyond_the_scan_limit_is_estimated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = write_log(tmp_path, 2000, time.time())
    monkeypatch.setattr(stream_metrics, "SCAN_LIMIT_BYTES", 16_384)  # a fraction of the log
    events, _ = LocalBacklog(tmp_path).measure({})
    assert abs(events - len(times)) < 0.1 * len(times)


def test_redis_backlog_is_the_groups_lag_and_a_broker_down_is_reported(redis_url: str) -> None:
    host, port, _ = parse_redis_url(redis_url + "/events")
    client = redis.Redis(host=host, port=port)
    source = RedisStreamSource(client, "events", count=20)
    before = time.time()
    for n in range(50):
        client.xadd("events", {FIELD: encode_event(click(n, before))})
    backlog = RedisBacklog(client, "events", "clickrouter")
    events, oldest = backlog.measure({})
    assert events == 50 and oldest is not None and before - 1 < oldest <= time.time()
    source.poll()  # 20 delivered
    assert backlog.measure({})[0] == 30

    with socket.socket() as closed:  # a port where no broker listens
        closed.bind(("127.0.0.1", 0))
        down = redis.Redis(port=closed.getsockname()[1], socket_connect_timeout=1)
        metrics = ConsumerMetrics(RedisBacklog(down, "events", "clickrouter"))
        metrics.after_step({}, {})
        text = generate_latest(metrics.registry).decode()
    assert "clickrouter_consumer_source_up 0.0" in text
    assert "clickrouter_consumer_lag_events" not in text  # no made-up lag
    client.close()
