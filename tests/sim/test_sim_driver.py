"""TrafficDriver over real HTTP: against `clickrouter serve`, and a scripted stdlib server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from clickrouter.catalogue import write_catalog
from clickrouter.cli import main
from clickrouter.events import ClickEvent, SaleEvent, decode_event
from clickrouter.profile import extract_profile, parse_timestamp
from clickrouter.sim import World
from clickrouter.sim.driver import SimClock, TrafficDriver
from reference.sample_models import campaign_model, template_models

POSTBACK_SECRET = "sim-driver-test-secret-0123456789"  # signs the driver's postbacks


def _model_directory(world: World, path: Path) -> Path:
    """The world's catalogue with one fitted sklearn pipeline per campaign."""
    path.mkdir()
    rng = np.random.default_rng(0)
    template = template_models(rng)[0]
    for campaign, rate in zip(world.campaigns, world.truth.spec.base_rate, strict=True):
        joblib.dump(campaign_model(template, rng, rate), path / f"{campaign.id}.joblib")
    write_catalog(path / "campaigns.json", world.campaigns)
    return path


@pytest.fixture
def served(hot_world: World, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`clickrouter serve` on a free port; yields (base URL, events directory)."""
    models = _model_directory(hot_world, tmp_path / "models")
    port_file, events = tmp_path / "port", tmp_path / "events"
    command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(models)]
    command += ["--port", "0", "--port-file", str(port_file), "--events", str(events)]
    env = {**os.environ, "CLICKROUTER_POSTBACK_SECRET": POSTBACK_SECRET}
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, env=env)
    try:
        url = f"http://127.0.0.1:{_wait_port(process, port_file)}"
        _wait_ready(process, url)
        yield url, events
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _wait_port(process: subprocess.Popen[bytes], port_file: Path) -> int:
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        assert process.poll() is None, "server exited while starting"
        assert time.monotonic() < deadline, "no port file"
        time.sleep(0.05)
    return int(port_file.read_text())


def _wait_ready(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        assert process.poll() is None, "server exited while starting"
        assert time.monotonic() < deadline, "server not ready"
        time.sleep(0.05)


def _events(directory: Path) -> list[Any]:
    lines = b"".join(p.read_bytes() for p in sorted(directory.glob("*.jsonl")))
    return [decode_event(line) for line in lines.splitlines() if line]


@pytest.mark.parametrize(("pipeline", "oracle"), [(1, True), (8, False)])
def test_driver_closes_the_loop_with_the_real_predictor(
    hot_world: World, served: tuple[str, Path], pipeline: int, oracle: bool
) -> None:
    url, events_dir = served
    driver = TrafficDriver(
        hot_world, url, rate=300, speedup=3e6, seed=1, drain_seconds=5, pipeline=pipeline,
        oracle=oracle, postback_secret=POSTBACK_SECRET,
        start_ts=time.time() - 40 * 86_400,  # 35 simulated days, none ahead of the clock
    )  # fmt: skip
    report = driver.run(300)
    assert report.requests == 300 and report.errors == 0
    assert report.decisions + report.no_fill == 300 and report.decisions > 250
    assert report.sales > 5 and report.postbacks_sent == report.sales
    assert report.postbacks_pending == report.postback_errors == 0
    assert report.expected_revenue > 0
    if oracle:
        assert report.efficiency is not None and 0 < report.efficiency <= 1
    else:  # no oracle: no efficiency figure rather than a made-up one
        assert report.oracle_revenue is None and report.efficiency is None
    time.sleep(1.0)  # the server's event sink writes asynchronously
    events = _events(events_dir)
    clicks = {e.click_id: e for e in events if isinstance(e, ClickEvent)}
    sales = [e for e in events if isinstance(e, SaleEvent)]
    assert len(clicks) == report.decisions
    assert all(len(c.click_id) == 56 for c in clicks.values())  # ids the predictor issued
    assert all(extract_profile(c.raw) == c.profile.to_dict() for c in clicks.values() if c.raw)
    assert len(sales) == report.sales
    payout = {c.id: c.payout for c in hot_world.campaigns}
    for sale in sales:
        assert sale.revenue == payout[clicks[sale.click_id].campaign_id]


class _Scripted(BaseHTTPRequestHandler):
    """Decides the first eligible campaign (404 when none); records postback times."""

    world: World
    log: list[tuple[str, float, dict[str, Any]]]

    def do_POST(self) -> None:
        raw = json.loads(self.rfile.read(int(self.headers["content-length"])))
        eligible = np.flatnonzero(self.world.eligible([extract_profile(raw)])[0])
        click_id = f"k{len(self.log):06d}"  # the server issues the click ids
        self.log.append(("decide", time.monotonic(), {**raw, "click_id": click_id}))
        if click_id.endswith("3"):  # a server having a bad moment
            return self._reply(503, {"error": "no model version is loaded yet"})
        if click_id.endswith("7"):  # some requests get no campaign
            eligible = eligible[:0]
        if len(eligible) == 0:
            return self._reply(404, {"error": "no eligible campaign"})
        campaign = self.world.campaigns[int(eligible[0])]
        body = {"click_id": click_id, "campaign_id": campaign.id, "probability": 0.1}
        return self._reply(200, body | {"propensity": 1.0, "model_version": "scripted"})

    def do_GET(self) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        self.log.append(("postback", time.monotonic(), query))
        self._reply(200, {"recorded": "sale"})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted(hot_world: World) -> Iterator[tuple[str, list[tuple[str, float, dict[str, Any]]]]]:
    log: list[tuple[str, float, dict[str, Any]]] = []
    handler = type("Handler", (_Scripted,), {"world": hot_world, "log": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


def test_driver_paces_requests_and_delays_postbacks_on_the_sim_clock(
    hot_world: World, scripted: tuple[str, list[tuple[str, float, dict[str, Any]]]]
) -> None:
    url, log = scripted
    speedup, rate, n = 1e6, 200.0, 200
    driver = TrafficDriver(
        hot_world, url, rate=rate, speedup=speedup, drain_seconds=5, postback_sim_ts=True
    )
    report = driver.run(n)
    ends = [r["click_id"][-1] for kind, _, r in log if kind == "decide"]
    assert report.requests == n and report.errors == ends.count("3") > 0
    assert report.no_fill == ends.count("7") > 0
    assert report.decisions == n - report.errors - report.no_fill
    assert report.wall_seconds >= (n - 1) / rate
    decided = {r["click_id"]: (t, r) for kind, t, r in log if kind == "decide"}
    postbacks = [(t, q) for kind, t, q in log if kind == "postback"]
    assert len(postbacks) == report.sales == report.postbacks_sent > 0
    assert driver.clock is not None
    start = driver.clock.wall_start  # time.monotonic, as the server thread logs
    for t, query in postbacks:
        sent, raw = decided[query["click_id"]]
        sale_ts, click_ts = float(query["ts"]), parse_timestamp(raw["ts"])
        assert 20.0 - 0.01 <= sale_ts - click_ts <= 30 * 86_400 + 0.01  # the delay model
        # posted when the simulated clock reached the sale time: not before, not much after
        due = (sale_ts - driver.start_ts) / speedup
        assert due <= t - start <= due + 1.0
        assert t >= sent and float(query["revenue"]) > 0


def test_same_seed_sends_the_same_requests_whatever_the_server_decides(
    hot_world: World, scripted: tuple[str, list[tuple[str, float, dict[str, Any]]]]
) -> None:
    url, log = scripted
    report = TrafficDriver(hot_world, url, rate=1000, seed=4, drain_seconds=0).run(300)
    assert report.sales > 0  # outcomes were drawn between the batches
    sent = [
        {k: v for k, v in r.items() if k != "click_id"} for kind, _, r in log if kind == "decide"
    ]
    # what the driver plans offline, without any server and without any sale drawn
    planned = TrafficDriver(hot_world, "http://127.0.0.1:1", seed=4, rate=1000)._requests(300)
    assert [p.raw for p in planned] == sent
    other = TrafficDriver(hot_world, "http://127.0.0.1:1", seed=5, rate=1000)._requests(300)
    assert [p.raw for p in other] != sent


def test_sim_clock_maps_both_ways() -> None:
    wall = [100.0]
    clock = SimClock(1_000_000.0, 3600.0, wall=lambda: wall[0])
    wall[0] = 101.5
    assert clock.now() == 1_000_000.0 + 1.5 * 3600
    assert clock.wall_at(1_000_000.0 + 7200) == 102.0


def test_bad_target_is_a_clear_error(hot_world: World) -> None:
    from clickrouter.errors import InvalidInput

    with pytest.raises(InvalidInput, match="target"):
        TrafficDriver(hot_world, "ftp://nowhere")
    with pytest.raises(InvalidInput, match="rate"):
        TrafficDriver(hot_world, "http://127.0.0.1:1", rate=0)
    with pytest.raises(InvalidInput, match="pipeline"):
        TrafficDriver(hot_world, "http://127.0.0.1:1", pipeline=0)


@pytest.mark.skipif(os.name != "posix", reason="uses a closed port on loopback")
def test_unreachable_predictor_counts_errors(hot_world: World) -> None:
    report = TrafficDriver(hot_world, "http://127.0.0.1:9", rate=1000, drain_seconds=0).run(5)
    assert report.requests == 5 and report.errors == 5 and report.decisions == 0


@pytest.mark.parametrize("pipeline", ["1", "4"])
def test_simulate_target_cli_drives_and_reports(
    hot_world: World,
    scripted: tuple[str, list[tuple[str, float, dict[str, Any]]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pipeline: str,
) -> None:
    url, log = scripted  # an HTTP/1.0 server: one answer per connection, then close
    hot_world.save(tmp_path / "world")
    argv = ["simulate", "--world", str(tmp_path / "world"), "--target", url]
    argv += ["--requests", "40", "--rate", "400", "--speedup", "1e7", "--drain-seconds", "2"]
    argv += ["--pipeline", pipeline]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["requests"] == 40 == sum(1 for kind, _, _ in log if kind == "decide")
    assert report["decisions"] > 20 and 0 < report["efficiency"] <= 1
    # nothing listening: a clear error, exit 2
    argv[4] = "http://127.0.0.1:9"
    assert main(argv) == 2
    assert "no request got a decision" in capsys.readouterr().err
