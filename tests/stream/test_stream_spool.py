"""The local spool in front of Redis: a broker outage loses no answered click and,
after the consumer, duplicates nothing; the spool is bounded and says when full."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from clickrouter.datastore import DataManager
from clickrouter.serving.http import PredictorServer
from clickrouter.spool import Spool, SpoolFull
from clickrouter.stream.consumer import ConsumerManager
from clickrouter.stream.redis_stream import RedisStreamSource
from serving.http.durability_support import (
    ServeProcess,
    Tally,
    no_stray_servers,  # noqa: F401 - an autouse fixture
    run_clients,
    sample_models_fixture,  # noqa: F401 - a fixture
    wait_for,
)
from serving.http.http_support import settings


class RedisProcess:
    """redis-server on a fixed loopback port, stopped and started again by the test;
    the append-only file keeps the stream across restarts."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            pytest.fail("redis-server not found: install it (make services) - never skipped")
        self.binary, self.directory = binary, directory
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, stream: str = "clicks") -> str:
        return f"redis://127.0.0.1:{self.port}/{stream}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, retry=Retry(NoBackoff(), 0))

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "yes", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = self.client()
        wait_for(lambda: _pings(client), 10, "redis-server")
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: redis flushes its append-only file
            self.process.wait(timeout=10)
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    yield server
    server.stop()


def stream_lines(client: redis.Redis, stream: str = "clicks") -> list[bytes]:
    return [fields[b"e"] for _, fields in client.xrange(stream)]


def lines(n: int, start: int = 0) -> bytes:
    return b"".join(b'{"n":%d}\n' % i for i in range(start, start + n))


def open_spool(root: Path, broker: RedisProcess, max_bytes: int = 1 << 20) -> Spool:
    return Spool(root, "w1", broker.client, "clicks", max_bytes=max_bytes, drain_seconds=2.0)


def test_events_spooled_while_the_broker_is_down_arrive_in_order(
    tmp_path: Path, broker: RedisProcess
) -> None:
    spool = open_spool(tmp_path / "spool", broker)  # the broker is not started yet
    for k in range(3):
        spool.append(lines(100, 100 * k), 100)
    time.sleep(0.3)  # the forwarder tries, fails, keeps the events
    assert spool.spooled_events() == 300 and spool.errors > 0
    broker.start()
    wait_for(lambda: spool.spooled_events() == 0, 15, "the spool to drain")
    spool.append(lines(10, 300), 10)
    wait_for(lambda: spool.spooled_events() == 0, 15, "the spool to drain")
    spool.close()
    client = broker.client()
    assert stream_lines(client) == lines(310).splitlines()
    assert not (tmp_path / "spool" / "w1").exists()  # everything forwarded: cleaned up


def test_a_full_spool_refuses_and_says_so(tmp_path: Path, broker: RedisProcess) -> None:
    spool = open_spool(tmp_path / "spool", broker, max_bytes=5_000)
    accepted = 0
    with pytest.raises(SpoolFull, match=r"event spool .* is full"):
        for k in range(1000):
            spool.append(lines(10, 10 * k), 10)
            accepted += 10
    assert 0 < accepted < 10_000 and spool.spooled_events() == accepted
    assert spool.problem() is not None and "full" in spool.problem()  # type: ignore[operator]
    broker.start()
    wait_for(lambda: spool.problem() is None and spool.spooled_events() == 0, 15, "drain")
    spool.append(lines(1, accepted), 1)  # room again
    spool.close()
    assert stream_lines(broker.client()) == lines(accepted + 1).splitlines()


def consumed_clicks(broker: RedisProcess, data_dir: Path) -> list[str]:
    """Click ids of the records the consumer makes of the stream (duplicates dropped)."""
    source = RedisStreamSource.from_url(broker.url())
    with DataManager(data_dir, writable=True, durable=False) as data:
        ConsumerManager(source, data, window_seconds=86400.0).run_once(flush_all=True)
        return list(data.read_all()["click_id"])


def spooled(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(
        float(v) for v in re.findall(r"^clickrouter_events_spooled\{.*\} (\S+)$", text, re.M)
    )


@pytest.mark.parametrize(
    "outage", [5.0, pytest.param(60.0, marks=pytest.mark.slow)], ids=["5s", "60s"]
)
def test_a_redis_outage_under_load_loses_and_duplicates_nothing(
    tmp_path: Path, broker: RedisProcess, sample_models: Path, outage: float
) -> None:
    broker.start()
    tally = Tally()
    spool_dir = tmp_path / "spool"
    served = PredictorServer(settings(spool_dir=str(spool_dir)), sample_models, broker.url())
    with served as server:
        assert server.port is not None
        stop, clients = run_clients(server.port, tally, n=2, depth=4, rate=150.0)
        time.sleep(1.0)
        broker.stop()
        outage_ends = time.monotonic() + outage
        wait_for(lambda: spooled(server.url) > 100, 15, "events to be spooled")
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200  # room to spool
        time.sleep(max(outage_ends - time.monotonic(), 0))
        during = len(tally.clicks)
        broker.start()
        time.sleep(1.0)
        stop.set()
        for client in clients:
            client.join(timeout=30)
        wait_for(lambda: spooled(server.url) == 0, 30, "the spool to drain")
        metrics = httpx.get(server.url + "/metrics").text
    assert set(tally.statuses) == {200} and during > 150 * outage
    assert re.search(r"^clickrouter_event_sink_errors_total\{.*\} 0\.0$", metrics, re.M)
    forward_errors = re.search(
        r"^clickrouter_event_forward_errors_total\{.*\} (\S+)$", metrics, re.M
    )
    assert forward_errors and float(forward_errors[1]) > 0  # the outage was seen and counted
    records = consumed_clicks(broker, tmp_path / "data")
    assert sorted(records) == sorted(tally.clicks)  # every answered click, each once


def test_a_killed_predictor_spool_is_replayed_without_duplicate_records(
    tmp_path: Path, broker: RedisProcess, sample_models: Path
) -> None:
    broker.start()
    spool_dir = tmp_path / "spool"
    tally = Tally()
    first = ServeProcess(tmp_path, sample_models, broker.url(), "--spool-dir", str(spool_dir))
    stop, clients = run_clients(first.port, tally, n=2, depth=4, rate=200.0)
    wait_for(lambda: len(tally.clicks) >= 200, 30, "answers")
    wait_for(lambda: broker.client().xlen("clicks") >= 100, 30, "forwarding")
    broker.stop()  # the rest is spooled only
    before = len(tally.clicks)
    wait_for(lambda: len(tally.clicks) >= before + 200, 30, "answers during the outage")
    first.kill()
    stop.set()
    for client in clients:
        client.join(timeout=30)
    (orphan,) = [p for p in spool_dir.iterdir() if not p.name.startswith(".")]
    (orphan / "position.json").unlink()  # forwarded position lost: everything is sent again
    broker.start()
    with PredictorServer(settings(spool_dir=str(spool_dir)), sample_models, broker.url()) as s:
        wait_for(lambda: not orphan.exists(), 30, "the dead predictor's spool to be replayed")
        assert spooled(s.url) == 0
    entries = broker.client().xlen("clicks")
    assert entries > len(tally.clicks)  # the replay repeated what had been forwarded
    records = consumed_clicks(broker, tmp_path / "data")
    assert sorted(records) == sorted(tally.clicks)  # each answered click exactly once
