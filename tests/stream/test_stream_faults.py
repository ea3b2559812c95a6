"""SIGKILL the consumer process at random moments; the final dataset must not notice.

Each run kills a real ``consume`` subprocess several times while it ingests,
restarts it, lets the last restart finish, and compares everything it
produced (records, dead letters, late events, counters) with a run that was
never interrupted: same records, none lost, none doubled.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clickrouter.datastore import DataManager
from clickrouter.datastore.manifest import load_manifest
from clickrouter.eventlog import EventLogWriter
from clickrouter.redislog import RedisStreamWriter
from reference.sample_events import sample_lines

DAY = 86400.0
SIDECARS = ("_dead_letters.jsonl", "_late_sales.jsonl", "_late_clicks.jsonl")


def consume_command(source: str, data: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "clickrouter.cli.consume", "consume",
        "--source", source, "--data", str(data), "--once", "--quiet",
        "--window-seconds", str(DAY), "--lateness-seconds", "21600", *extra,
    ]  # fmt: skip


def run_to_end(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr


def generation(data: Path) -> int:
    try:
        return load_manifest(data).generation
    except Exception:  # mid-replace on a slow disk: try again later
        return -1


def kill_while_ingesting(command: list[str], data: Path, rng: random.Random) -> bool:
    """Start ``command``, SIGKILL it after some commits; True if it died mid-run."""
    before = generation(data)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while generation(data) <= before and proc.poll() is None:
        assert time.monotonic() < deadline, "consumer made no commit"
        time.sleep(0.01)
    # kill soon after a commit: on a fast machine the whole run takes well
    # under a second, and a kill after it finished proves nothing
    time.sleep(rng.uniform(0.0, 0.05))
    if proc.poll() is not None:
        _, err = proc.communicate()
        assert proc.returncode == 0, err
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    if proc.stderr:
        proc.stderr.close()
    return True


def snapshot(data: Path) -> tuple[set[tuple[object, ...]], int, dict[str, int], list[bytes]]:
    table = DataManager(data).read_table()  # Arrow: nulls stay None (NaN != NaN in a set)
    rows = {tuple(row.values()) for row in table.to_pylist()}
    counters = {k: v for k, v in load_manifest(data).counters.items() if k != "commits"}
    sidecars = [(data / name).read_bytes() for name in SIDECARS]
    return rows, table.num_rows, counters, sidecars


def assert_fault_run_matches(
    command_ref: list[str], command: list[str], data_ref: Path, data: Path, kills: int, seed: int
) -> None:
    run_to_end(command_ref)
    rng = random.Random(seed)
    landed = sum(kill_while_ingesting(command, data, rng) for _ in range(kills))
    run_to_end(command)
    assert landed >= 2, f"only {landed} kills landed mid-ingestion"
    rows_ref, n_ref, counters_ref, sidecars_ref = snapshot(data_ref)
    rows, n, counters, sidecars = snapshot(data)
    assert n == len(rows) == n_ref == len(rows_ref) > 0  # no duplicates on either side
    assert rows == rows_ref
    assert counters == counters_ref
    assert sidecars == sidecars_ref
    assert not list(data.rglob("*.tmp"))


def write_log(directory: Path, n_clicks: int, seed: int) -> None:
    writers = [EventLogWriter(directory, f"w{i}", segment_bytes=400_000) for i in range(2)]
    for i, line in enumerate(sample_lines(n_clicks, seed=seed, span_seconds=DAY)):
        writers[i % 2].write_raw(line)
    for writer in writers:
        writer.close()


def fill_stream(url: str, n_clicks: int, seed: int) -> None:
    with RedisStreamWriter.from_url(url, batch_size=2000) as sink:
        sink.write_raw(b"".join(sample_lines(n_clicks, seed=seed, span_seconds=DAY)))


FAST = (
    "--no-fsync",
    "--commit-events",
    "400",
    "--min-file-rows",
    "60",
    "--max-hold-seconds",
    "0.3",
)


def test_sigkill_local_log_yields_the_uninterrupted_dataset(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write_log(log, 20_000, seed=11)
    assert_fault_run_matches(
        consume_command(str(log), tmp_path / "ref", "--no-fsync", "--in-process"),
        # the killed runs decode in a worker process, the reference in-process
        consume_command(str(log), tmp_path / "data", *FAST, "--decode-worker"),
        tmp_path / "ref",
        tmp_path / "data",
        kills=4,
        seed=1,
    )


def test_sigkill_redis_stream_yields_the_uninterrupted_dataset(
    tmp_path: Path, redis_url: str
) -> None:
    fill_stream(f"{redis_url}/events", 20_000, seed=12)
    assert_fault_run_matches(
        consume_command(
            f"{redis_url}/events", tmp_path / "ref", "--group", "ref", "--no-fsync", "--in-process"
        ),
        # killed with batches in flight: only what was committed may be acknowledged
        consume_command(
            f"{redis_url}/events", tmp_path / "data", "--group", "live", *FAST, "--decode-worker"
        ),
        tmp_path / "ref",
        tmp_path / "data",
        kills=4,
        seed=2,
    )


@pytest.mark.slow
@pytest.mark.parametrize("source", ["local", "redis"])
def test_sigkill_many_times_with_fsync(tmp_path: Path, redis_url: str, source: str) -> None:
    if source == "local":
        write_log(tmp_path / "log", 60_000, seed=21)
        spec = str(tmp_path / "log")
    else:
        spec = f"{redis_url}/events"
        fill_stream(spec, 60_000, seed=22)
    assert_fault_run_matches(
        consume_command(spec, tmp_path / "ref", "--group", "ref"),
        consume_command(
            spec,
            tmp_path / "data",
            "--group",
            "live",
            "--commit-events",
            "1500",
            "--min-file-rows",
            "200",
        ),
        tmp_path / "ref",
        tmp_path / "data",
        kills=12,
        seed=3,
    )
