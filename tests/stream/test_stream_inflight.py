"""Commits while batches read ahead are still in flight (decode worker)."""

from __future__ import annotations

from pathlib import Path

from clickrouter.datastore import DataManager
from clickrouter.eventlog import EventLogWriter
from clickrouter.stream.consumer import ConsumerManager
from clickrouter.stream.local_source import LocalLogSource
from reference.sample_events import sample_lines

DAY = 86400.0


def write_log(directory: Path, lines: list[bytes]) -> None:
    outs = [EventLogWriter(directory, f"w{i}", segment_bytes=64_000) for i in range(2)]
    for i, line in enumerate(lines):
        outs[i % 2].write_raw(line)
    for out in outs:
        out.close()


def consume(log: Path, data: Path) -> dict[str, int]:
    with DataManager(data, writable=True, durable=False) as dm:
        stats = ConsumerManager(LocalLogSource(log), dm, window_seconds=DAY).run_once()
    stats.pop("commits")
    return stats


def test_a_crash_after_commits_with_batches_in_flight_resumes_exactly(tmp_path: Path) -> None:
    log, data, ref = tmp_path / "log", tmp_path / "data", tmp_path / "ref"
    write_log(log, list(sample_lines(5000, seed=11, span_seconds=DAY / 2)))
    in_flight_at_commits = []
    with DataManager(data, writable=True, durable=False) as dm:
        consumer = ConsumerManager(
            LocalLogSource(log), dm, window_seconds=DAY, commit_events=900, decode_worker=True
        )
        assert consumer.pipeline.wait_ready(timeout=60)
        while consumer.counters["commits"] < 3:
            commits = consumer.counters["commits"]
            assert consumer.step(), "the log ran out before three commits"
            if consumer.counters["commits"] > commits:
                in_flight_at_commits.append(len(consumer.pipeline))
        committed = dm.manifest().source
        read = consumer.source.position()
        consumer.close()  # a crash: what was read ahead is never committed
    assert max(in_flight_at_commits) > 0
    assert committed != read  # the commit covered only what had been joined
    stats = consume(log, data)  # restart (in-process) from the committed position
    assert stats == consume(log, ref)
    assert stats["dead_lettered"] > 0 and stats["events_read"] > 5000
    assert DataManager(data).read_all().equals(DataManager(ref).read_all())
    dead = (data / "_dead_letters.jsonl").read_bytes()
    assert dead == (ref / "_dead_letters.jsonl").read_bytes()
