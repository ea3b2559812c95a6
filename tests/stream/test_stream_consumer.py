"""ConsumerManager in-process and the ``consume`` CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from clickrouter.datastore import DataManager
from clickrouter.eventlog import EventLogWriter
from clickrouter.stream.consumer import ConsumerManager
from clickrouter.stream.local_source import LocalLogSource
from reference.sample_events import sample_lines

DAY = 86400.0


def write_log(directory: Path, lines: list[bytes], writers: int = 2) -> None:
    outs = [EventLogWriter(directory, f"w{i}", segment_bytes=64_000) for i in range(writers)]
    for i, line in enumerate(lines):
        outs[i % writers].write_raw(line)
    for out in outs:
        out.close()


def consume(log: Path, data: Path, **kwargs: float) -> dict[str, int]:
    with DataManager(data, writable=True, durable=False) as dm:
        consumer = ConsumerManager(LocalLogSource(log), dm, window_seconds=DAY, **kwargs)
        return consumer.run_once()


def test_restart_continues_where_the_last_commit_ended(tmp_path: Path) -> None:
    lines = list(sample_lines(3000, seed=7, span_seconds=DAY / 2))
    log, data, ref = tmp_path / "log", tmp_path / "data", tmp_path / "ref"
    log.mkdir()
    write_log(log, lines[:1700], writers=1)
    consume(log, data, commit_events=250)
    with EventLogWriter(log, "w0") as late_writer:  # the writer restarts: a new segment
        late_writer.write_raw(b"".join(lines[1700:]))
    stats = consume(log, data, commit_events=250)
    reference = consume(log, ref)
    assert stats["events_read"] == len(lines)
    assert {k: v for k, v in stats.items() if k != "commits"} == {
        k: v for k, v in reference.items() if k != "commits"
    }
    assert DataManager(data).read_all().equals(DataManager(ref).read_all())


def test_dead_letters_and_late_sales_are_recorded_with_reasons(tmp_path: Path) -> None:
    log, data = tmp_path / "log", tmp_path / "data"
    log.mkdir()
    good = list(sample_lines(200, seed=2, bad_rate=0.0))
    write_log(log, [*good[:10], b"{broken\n", b'{"type":"click","id":"x"}\n', *good[10:]], 1)
    stats = consume(log, data)
    assert stats["dead_lettered"] == 2
    dead = [json.loads(line) for line in (data / "_dead_letters.jsonl").read_text().splitlines()]
    assert dead[0]["reason"].startswith("malformed JSON")
    assert dead[0]["position"].startswith("w0.00000000.jsonl:") and dead[0]["line"] == "{broken"
    assert "missing required field" in dead[1]["reason"]


def test_run_forever_follows_new_events_until_stopped(tmp_path: Path) -> None:
    log, data = tmp_path / "log", tmp_path / "data"
    log.mkdir()
    lines = list(sample_lines(500, seed=4, bad_rate=0.0, duplicate_rate=0.0))
    stop = threading.Event()
    with DataManager(data, writable=True, durable=False) as dm:
        consumer = ConsumerManager(
            LocalLogSource(log), dm, window_seconds=600.0, lateness_seconds=0
        )
        thread = threading.Thread(
            target=consumer.run_forever, args=(stop,), kwargs={"idle_seconds": 0.05}
        )
        thread.start()
        with EventLogWriter(log, "live") as writer:
            writer.write_raw(b"".join(lines))
            writer.flush()
            deadline = time.monotonic() + 30
            while dm.manifest().counters.get("events_read", 0) < len(lines):
                assert time.monotonic() < deadline, "consumer did not catch up"
                time.sleep(0.05)
        stop.set()
        thread.join(timeout=30)
    assert DataManager(data).read_all().shape[0] > 400


def run_cli(
    *args: str, module: str = "clickrouter.cli.consume"
) -> subprocess.CompletedProcess[str]:
    """``consume`` in a subprocess; the stream module's own entry skips other stages'
    imports (the full ``clickrouter`` entry is exercised once, below)."""
    command = [sys.executable, "-m", module, "consume", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_cli_prints_a_summary(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    write_log(log, list(sample_lines(300, seed=1)))
    data = str(tmp_path / "d")
    done = run_cli(
        "--source", str(log), "--data", data, "--once", "--flush-all", module="clickrouter.cli"
    )
    assert done.returncode == 0, done.stderr
    assert "events read" in done.stdout and "dead-lettered" in done.stdout
    assert len(DataManager(tmp_path / "d").read_all()) > 250


def test_cli_bad_arguments_exit_2_with_a_message(tmp_path: Path) -> None:
    missing = run_cli("--source", str(tmp_path / "nope"), "--data", str(tmp_path / "d"), "--once")
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    assert "Traceback" not in missing.stderr
    flush = run_cli("--source", str(tmp_path), "--data", str(tmp_path / "d"), "--flush-all")
    assert flush.returncode == 2 and "--flush-all needs --once" in flush.stderr
    url = run_cli("--source", "redis://127.0.0.1:1/a/b", "--data", str(tmp_path / "d"))
    assert url.returncode == 2 and "redis://HOST" in url.stderr
    bad = run_cli("--source", str(tmp_path), "--data", "d", "--commit-events", "zero")
    assert bad.returncode == 2 and "expected a positive integer" in bad.stderr
    both = run_cli("--source", str(tmp_path), "--data", "d", "--decode-worker", "--in-process")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


def test_cli_decodes_in_a_worker_by_default_with_two_cpus() -> None:
    import argparse
    import os

    from clickrouter.cli.consume import use_decode_worker

    def choice(worker: bool = False, in_process: bool = False) -> bool:
        return use_decode_worker(argparse.Namespace(decode_worker=worker, in_process=in_process))

    assert choice() == (len(os.sched_getaffinity(0)) >= 2)
    assert choice(worker=True) and not choice(in_process=True)


def test_retention_drops_data_older_than_the_event_time_horizon(tmp_path: Path) -> None:
    log, data = tmp_path / "log", tmp_path / "data"
    log.mkdir()
    write_log(log, list(sample_lines(2000, seed=9, span_seconds=6 * DAY, max_delay_seconds=DAY)))
    with DataManager(data, writable=True, durable=False) as dm:
        consumer = ConsumerManager(
            LocalLogSource(log), dm, window_seconds=DAY, retention_seconds=2 * DAY
        )
        consumer.run_once()
        newest = consumer.attributor.max_ts
        frame = dm.read_all()
    assert len(frame) > 0
    assert frame["ts"].min() >= newest - 3 * DAY  # whole days older than 2 days are gone


def test_cli_follows_the_log_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    log, data = tmp_path / "log", tmp_path / "data"
    log.mkdir()
    command = [sys.executable, "-m", "clickrouter.cli.consume", "consume", "--source", str(log),
               "--data", str(data), "--commit-seconds", "0.2", "--no-fsync"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = list(sample_lines(400, seed=8))
        write_log(log, lines)
        deadline = time.monotonic() + 60
        while load_counters(data).get("events_read", 0) < len(lines):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "consume did not catch up"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "events read" in out and f"{len(lines):,}" in out
    assert len(DataManager(data).read_all()) > 0  # the final commit flushed held records


def load_counters(data: Path) -> dict[str, int]:
    from clickrouter.datastore.manifest import load_manifest

    return load_manifest(data).counters


def test_a_given_record_buffer_is_used(tmp_path: Path) -> None:
    from clickrouter.stream.buffer import RecordBuffer

    (tmp_path / "log").mkdir()
    buffer = RecordBuffer(min_file_rows=7, max_hold_seconds=0.5)
    with DataManager(tmp_path / "data", writable=True, durable=False) as dm:
        consumer = ConsumerManager(LocalLogSource(tmp_path / "log"), dm, buffer=buffer)
        assert consumer.buffer is buffer  # an empty buffer is falsy: must not be replaced


def test_decode_worker_process_gives_the_in_process_result(tmp_path: Path) -> None:
    lines = list(sample_lines(3000, seed=9, span_seconds=DAY / 2))
    write_log(tmp_path / "log", lines)
    results = []
    for name, worker in (("inproc", False), ("worker", True)):
        with DataManager(tmp_path / name, writable=True, durable=False) as dm:
            consumer = ConsumerManager(
                LocalLogSource(tmp_path / "log"),
                dm,
                window_seconds=DAY,
                commit_events=700,
                batch_events=600,
                decode_worker=worker,
            )
            assert consumer.pipeline.wait_ready(timeout=60) == worker
            stats = consumer.run_once()
            assert (consumer.pipeline.remote_batches > 3) == worker
            consumer.close()
        stats.pop("commits")
        dead = (tmp_path / name / "_dead_letters.jsonl").read_bytes()
        results.append((stats, DataManager(tmp_path / name).read_all(), dead))
    (stats_a, table_a, dead_a), (stats_b, table_b, dead_b) = results
    assert stats_a == stats_b and stats_a["dead_lettered"] > 0
    assert table_a.equals(table_b) and len(table_a) > 2000
    assert dead_a == dead_b


def test_a_dead_decode_worker_stops_the_consumer_without_losing_anything(tmp_path: Path) -> None:
    import os
    import signal

    import pytest

    from clickrouter.stream.decodeworker import DecodeWorkerDied

    lines = list(sample_lines(4000, seed=5, span_seconds=DAY / 2))
    write_log(tmp_path / "log", lines)
    with DataManager(tmp_path / "data", writable=True, durable=False) as dm:
        consumer = ConsumerManager(
            LocalLogSource(tmp_path / "log"),
            dm,
            window_seconds=DAY,
            commit_events=1000,
            batch_events=500,
            decode_worker=True,
        )
        assert consumer.pipeline.wait_ready(timeout=60)
        consumer.step()  # one batch is now with the worker
        assert consumer.pipeline._proc is not None
        os.kill(consumer.pipeline._proc.pid, signal.SIGKILL)
        with pytest.raises(DecodeWorkerDied, match="decode worker exited"):
            consumer.run_once()
        consumer.close()
    consume(tmp_path / "log", tmp_path / "data")  # a restart (in-process) finishes
    consume(tmp_path / "log", tmp_path / "ref")
    assert (
        DataManager(tmp_path / "data").read_all().equals(DataManager(tmp_path / "ref").read_all())
    )
