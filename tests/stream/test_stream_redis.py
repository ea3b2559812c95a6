"""Redis Streams: writer -> source round trip, acknowledgement, reclaiming after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from clickrouter.datastore import DataManager
from clickrouter.errors import InvalidInput
from clickrouter.eventlog import open_writer
from clickrouter.redislog import RedisStreamWriter, parse_redis_url
from clickrouter.stream.consumer import ConsumerManager
from clickrouter.stream.redis_stream import RedisStreamSource
from reference.sample_events import sample_lines


def lines_of(source: RedisStreamSource) -> list[bytes]:
    out: list[bytes] = []
    while chunks := source.poll():
        out.extend(line for chunk in chunks for line in chunk.lines)
    return out


def test_parse_redis_url() -> None:
    assert parse_redis_url("redis://127.0.0.1:6380/events") == ("127.0.0.1", 6380, "events")
    with pytest.raises(InvalidInput, match="redis://HOST"):
        parse_redis_url("redis://host:1/a/b")


def test_writer_then_source_round_trip_and_ack(redis_url: str) -> None:
    sink = open_writer(f"{redis_url}/ev", "w1")
    assert isinstance(sink, RedisStreamWriter)
    sent = list(sample_lines(50, seed=3))
    sink.write_raw(b"".join(sent))
    sink.close()
    source = RedisStreamSource.from_url(f"{redis_url}/ev", count=7)
    assert lines_of(source) == [line.rstrip(b"\n") for line in sent]
    client = redis.Redis.from_url(redis_url)
    assert client.xpending("ev", "clickrouter")["pending"] == len(sent)
    source.acknowledge()
    assert client.xpending("ev", "clickrouter")["pending"] == 0


def test_acknowledge_up_to_a_position_leaves_entries_read_ahead_pending(redis_url: str) -> None:
    with RedisStreamWriter.from_url(f"{redis_url}/ev") as sink:
        sink.write_raw(b"".join(b"line-%d\n" % i for i in range(10)))
    source = RedisStreamSource.from_url(f"{redis_url}/ev", count=4)
    source.poll()
    committed = source.position()  # lines 0-3 committed
    source.poll()  # lines 4-7 read ahead, in flight
    client = redis.Redis.from_url(redis_url)
    source.acknowledge(committed)
    pending = client.xpending_range("ev", "clickrouter", "-", "+", 100)
    assert [p["message_id"] for p in pending] == [eid for eid, _ in client.xrange("ev")[4:8]]
    source.acknowledge(committed)  # nothing more up to there
    assert client.xpending("ev", "clickrouter")["pending"] == 4
    source.acknowledge()
    assert client.xpending("ev", "clickrouter")["pending"] == 0


def test_restart_reclaims_own_pending_entries_and_skips_committed_ones(redis_url: str) -> None:
    with RedisStreamWriter.from_url(f"{redis_url}/ev") as sink:
        sink.write_raw(b"".join(b"line-%d\n" % i for i in range(10)))
    crashed = RedisStreamSource.from_url(f"{redis_url}/ev", count=4)
    crashed.poll()
    committed = crashed.position()  # lines 0-3 persisted; the XACK was lost in the crash
    crashed.poll()  # lines 4-7 delivered, never persisted
    restarted = RedisStreamSource.from_url(f"{redis_url}/ev", count=4)
    restarted.restore(committed)
    assert lines_of(restarted) == [b"line-%d" % i for i in range(4, 10)]
    restarted.acknowledge()
    assert redis.Redis.from_url(redis_url).xpending("ev", "clickrouter")["pending"] == 0


def test_consumer_ingests_a_redis_stream(redis_url: str, tmp_path: Path) -> None:
    with RedisStreamWriter.from_url(f"{redis_url}/ev") as sink:
        sink.write_raw(b"".join(sample_lines(2000, seed=5)))
    source = RedisStreamSource.from_url(f"{redis_url}/ev")
    with DataManager(tmp_path, writable=True, durable=False) as data:
        stats = ConsumerManager(source, data, window_seconds=86400.0).run_once(flush_all=True)
        assert stats["records_written"] == 2000 - stats["late_clicks"]
        assert len(data.read_all()) == stats["records_written"] > 1900
        assert stats["dead_lettered"] > 0 and stats["positives_labelled"] > 0


def test_a_dataset_cannot_resume_from_another_kind_of_source(redis_url: str) -> None:
    source = RedisStreamSource.from_url(f"{redis_url}/ev")
    with pytest.raises(InvalidInput, match="offsets of a 'local' source"):
        source.restore({"kind": "local", "segments": {}})
    with pytest.raises(InvalidInput, match="offsets of stream 'other'"):
        source.restore({"kind": "redis", "stream": "other", "last_id": "1-0"})
