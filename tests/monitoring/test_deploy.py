"""deploy/: the alert rules and example config pass promtool, every metric the
dashboard and the alerts name is one the code exports, and (slow) a real
Prometheus scraping a real predictor, consumer and trainer answers every
dashboard query and loads every alert, one of which fires."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitoring.monitoring_support import SRC, clickrouter, free_port, stop
from serving.http.http_support import PROFILE
from serving.http.postback_support import CLICK_SECRET, GLOBAL_SECRET
from training.conftest import World, write_catalog, write_many

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "clickrouter-dashboard.json"
METRIC = re.compile(r"\bclickrouter_[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def exported_name(name: str) -> str:
    """The name given to prometheus_client (it appends the suffixes itself)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_promtool_accepts_the_alert_rules_and_the_example_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make services installs Debian's prometheus)")
    for command in (["check", "rules", str(ALERTS)], ["check", "config", str(CONFIG)]):
        done = subprocess.run([promtool, *command], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_every_metric_the_dashboard_and_alerts_name_is_exported_by_the_code() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in (SRC / "clickrouter").rglob("*.py"))
    exprs = dashboard_queries() + [rule["expr"] for rule in alert_rules()]
    named = {exported_name(n) for expr in exprs for n in METRIC.findall(expr)}
    assert len(named) > 30
    missing = sorted(n for n in named if f'"{n}"' not in source)
    assert not missing, f"named in deploy/ but exported nowhere: {missing}"
    assert {r["alert"] for r in alert_rules()} >= {
        "ClickrouterPredictorDown",
        "ClickrouterEventsDropped",
        "ClickrouterEventsRefused",
        "ClickrouterConsumerLagging",
        "ClickrouterTrainingCycleFailed",
        "ClickrouterModelVersionRejected",
    }


class Prometheus:
    """A real Prometheus on a loopback port scraping ``targets`` (job -> host:port) every
    second, with deploy/'s alert rules."""

    def __init__(self, tmp_path: Path, targets: dict[str, tuple[str, str]]) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": job, "metrics_path": path, "static_configs": [{"targets": [addr]}]}
                for job, (addr, path) in targets.items()
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def get(self, path: str, **params: str) -> Any:
        answer = httpx.get(self.url + path, params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[Any]:
        return list(self.get("/api/v1/query", query=expr)["result"])


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.TransportError, ValueError):
            last = None
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_prometheus_scrapes_every_stage_and_every_query_returns_data(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (make services installs Debian's prometheus)")
    world = World(seed=5)
    for cid, rate in (("a", 0.08), ("b", 0.05)):
        world.add_campaign(cid, rate)
    write_many(tmp_path / "train-data", {cid: world.records(cid, 3000) for cid in ("a", "b")})
    catalog = write_catalog(tmp_path / "campaigns.json", ["a", "b"])
    store, events = tmp_path / "store", tmp_path / "events"
    ports = {"consumer": free_port(), "trainer": free_port()}
    processes = []
    try:
        trainer = clickrouter(
            "train", "--data", str(tmp_path / "train-data"), "--store", str(store),
            "--catalog", str(catalog), "--watch", "--every", "1s", "--workers", "0",
            "--quiet", "--metrics-port", str(ports["trainer"]),
        )  # fmt: skip
        processes.append(trainer)
        wait_for(lambda: (store / "CURRENT").exists(), 120, "the trainer's first version")
        predictor, url = start_predictor(tmp_path, store, events)
        processes.append(predictor)
        for _ in range(20):
            assert httpx.post(url + "/v1/decide", json=PROFILE).status_code == 200
        refused = httpx.get(url + "/v1/postback", params={"click_id": "forged", "sig": "0"})
        assert refused.status_code in (400, 401, 403)
        consumer = clickrouter(
            "consume", "--source", str(events), "--data", str(tmp_path / "data"),
            "--metrics-port", str(ports["consumer"]), "--quiet", "--no-fsync",
            "--in-process", "--commit-seconds", "0.5",
            module="clickrouter.cli.consume",
        )  # fmt: skip
        processes.append(consumer)
        prometheus = Prometheus(
            tmp_path,
            {
                "clickrouter-predictor": (url.removeprefix("http://"), "/metrics"),
                "clickrouter-consumer": (f"127.0.0.1:{ports['consumer']}", "/metrics"),
                "clickrouter-trainer": (f"127.0.0.1:{ports['trainer']}", "/metrics"),
            },
        )
        processes.append(prometheus.process)
        wait_for(
            lambda: len(prometheus.query("up == 1")) == 3, 60, "all three targets scraped and up"
        )
        time.sleep(3)  # a few samples each, for rate() and increase()
        # after the first scrapes: increase() counts only what a scrape saw happen
        (events / "intruder.00000001.jsonl").write_bytes(b"not an event\n")
        for _ in range(5):  # traffic inside the rate windows
            httpx.post(url + "/v1/decide", json=PROFILE)

        deadline, missing = time.monotonic() + 60, dashboard_queries()
        while missing and time.monotonic() < deadline:
            missing = [q for q in missing if not prometheus.query(q)]
            time.sleep(1)
        assert not missing, f"dashboard queries without data: {missing}"
        names = {n for rule in alert_rules() for n in METRIC.findall(rule["expr"])}
        assert not [n for n in sorted(names) if not prometheus.query(f"count({n})")]
        rules = [
            rule for group in prometheus.get("/api/v1/rules")["groups"] for rule in group["rules"]
        ]
        assert len(rules) == len(alert_rules())
        assert all(r["health"] == "ok" and not r.get("lastError") for r in rules), rules
        firing = wait_for(
            lambda: [
                a
                for a in prometheus.get("/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == "ClickrouterDeadLetters" and a["state"] == "firing"
            ],
            30,
            "the dead-letter alert to fire",
        )
        assert firing[0]["labels"]["reason"] == "malformed_json"
        quiet = {a["labels"]["alertname"] for a in prometheus.get("/api/v1/alerts")["alerts"]}
        assert not quiet & {"ClickrouterPredictorDown", "ClickrouterEventsDropped"}
    finally:
        for process in reversed(processes):
            stop(process)


def start_predictor(tmp_path: Path, store: Path, events: Path) -> tuple[Any, str]:
    port_file = tmp_path / "port"
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "CLICKROUTER_RELOAD_POLL_SECONDS": "0.5",
        "CLICKROUTER_POSTBACK_SECRET": GLOBAL_SECRET,
        "CLICKROUTER_CLICK_SECRET": CLICK_SECRET,
    }
    command = [sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(store)]
    command += ["--port", "0", "--port-file", str(port_file), "--events", str(events)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: port_file.exists() and port_file.read_text(), 60, "the predictor's port")
    url = f"http://127.0.0.1:{int(port_file.read_text())}"
    wait_for(
        lambda: httpx.get(url + "/v2/health/ready").status_code == 200, 60, "a ready predictor"
    )
    return process, url
