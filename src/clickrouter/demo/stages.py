"""Building the demo's inputs and starting each stage as its own process.

Directory layout under the output directory ``out``::

    world/        campaigns.json + world.json (the simulated world, with its truth)
    store/        the model store (cold start, then one version per training cycle)
    events/       the predictor's event log (the source of truth of the report)
    data/         the consumer's labelled-record Parquet datasets
    drivers/      per-driver reports and client-side latencies
    logs/         one log file per process
    cycles.jsonl  one line per training cycle

The run's postback and click-id secrets are drawn for each run
(:func:`run_secrets`) and reach the predictor and the drivers through
their environment only: never the command line, the code or a file.
"""

from __future__ import annotations

import functools
import json
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickrouter.demo.config import DemoConfig
from clickrouter.demo.processes import (
    ManagedProcess,
    python_module,
    wait_for_port_file,
    wait_ready,
)

RUN_DIRS = ("world", "store", "events", "data", "drivers", "logs", "bank-cache")
RUN_FILES = ("cycles.jsonl", "run.json", "report.json", "report.html")
TEN_YEARS = 10 * 365 * 86400.0


@functools.cache
def run_secrets(out: Path) -> dict[str, str]:
    """The secrets of the run writing to ``out``, as environment variables (the
    predictor reads both; the drivers sign their postbacks with the first)."""
    return {
        "CLICKROUTER_POSTBACK_SECRET": secrets.token_urlsafe(32),
        "CLICKROUTER_CLICK_SECRET": secrets.token_urlsafe(32),
    }


@dataclass(frozen=True)
class Paths:
    out: Path

    def __getattr__(self, name: str) -> Path:
        if name in RUN_DIRS:
            return self.out / name
        raise AttributeError(name)

    @property
    def cycles(self) -> Path:
        return self.out / "cycles.jsonl"


def prepare(out: Path) -> Paths:
    """A clean output directory (only what a previous demo run wrote is removed)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_DIRS:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (*RUN_FILES, "img"):
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for name in RUN_DIRS:
        (out / name).mkdir()
    return Paths(out)


def world_config(config: DemoConfig) -> Any:
    from clickrouter.sim.config import WorldConfig

    return WorldConfig(
        base_rate_min=config.base_rate_min,
        base_rate_max=config.base_rate_max,
        payout_sigma=config.payout_sigma,
        effect_scale=config.effect_scale,
        shared_structure=config.shared_structure,
        max_pages=config.max_pages,
        page_launch_share=config.page_launch_share,
        page_retire_share=config.page_retire_share,
    )


def build_world(config: DemoConfig, paths: Paths) -> Any:
    from clickrouter.sim.world import World

    world = World.generate(config.campaigns, seed=config.seed, config=world_config(config))
    world.save(paths.world)
    return world


def training_settings(config: DemoConfig) -> dict[str, Any]:
    """The trainer's settings (the cold store records the same, so no cycle 'resettles')."""
    return {
        "min_positives": config.min_positives,
        "prior_positives": config.prior_positives,
        "recent_prior_sales": config.recent_prior_sales,
        "attribution_seconds": config.attribution_wall if config.late_sales else None,
        "cold_start_rate": config.cold_start_rate,
        "cold_at_prior": config.cold_at_prior,
        "workers": config.train_workers,
        "learner": config.learner,
        "global_c": config.global_c,
        "hierarchy_min_positives": config.hierarchy_min_positives,
        "posterior": config.posterior or config.policy == "laplace-thompson",
        "window_seconds": TEN_YEARS,
        "keep_versions": 5,
        "seed": config.seed,
    }


def publish_cold_store(config: DemoConfig, paths: Paths) -> str | None:
    from clickrouter.modelstore import ModelStore
    from clickrouter.training import TrainingManager, TrainingSettings

    settings = TrainingSettings(**training_settings(config))
    manager = TrainingManager(
        None, ModelStore(paths.store), paths.world / "campaigns.json", settings
    )
    return manager.publish_cold_start().version


def start_predictor(config: DemoConfig, paths: Paths) -> tuple[ManagedProcess, str]:
    port_file = paths.logs / "predictor.port"
    argv = python_module(
        "clickrouter.cli",
        "serve",
        "--models",
        str(paths.store),
        "--events",
        str(paths.events),
        "--port",
        "0",
        "--port-file",
        str(port_file),
        # versions compile in a child process into this cache, and unchanged model
        # files are reused from its per-file memo: a reload takes ~1-5 s, not 16-50 s
        "--cache-dir",
        str(paths.out / "bank-cache"),
    )
    env = {
        "CLICKROUTER_POLICY": config.policy,
        "CLICKROUTER_EPSILON": str(config.epsilon),
        "CLICKROUTER_THOMPSON_SCALE": str(config.thompson_scale),
        "CLICKROUTER_THOMPSON_PROFILE_SPREAD": str(config.thompson_profile_spread),
        "CLICKROUTER_RELOAD_POLL_SECONDS": "0.5",
        # the world's clock is simulated (and runs x speedup): bound time by it, not by now
        "CLICKROUTER_CLOCK_SKEW_SECONDS": str(TEN_YEARS),
        **run_secrets(paths.out),
    }
    process = ManagedProcess("predictor", argv, paths.logs, env)
    port = wait_for_port_file(process, port_file, timeout=180.0)
    url = f"http://127.0.0.1:{port}"
    wait_ready(process, url + "/v2/health/ready", timeout=180.0)
    return process, url


def start_consumer(config: DemoConfig, paths: Paths) -> ManagedProcess:
    argv = python_module(
        "clickrouter.cli.consume",
        "consume",
        "--source",
        str(paths.events),
        "--data",
        str(paths.data),
        "--window-seconds",
        repr(config.attribution_wall),
        "--lateness-seconds",
        repr(config.lateness_wall),
        "--commit-seconds",
        "1.0",
        "--min-file-rows",
        "5000",
        "--max-hold-seconds",
        repr(config.hold_seconds),
        "--no-fsync",
        # the demo's ~1,000 events/s need no decode worker, and on a box the whole
        # demo saturates, the worker's extra process costs CPU the predictor needs
        "--in-process",
        "--quiet",
    )
    # the world's clock is simulated: bound event time by it, not by now
    env = {"CLICKROUTER_CLOCK_SKEW_SECONDS": str(TEN_YEARS)}
    return ManagedProcess("consumer", argv, paths.logs, env)


def start_trainer(config: DemoConfig, paths: Paths) -> ManagedProcess:
    argv = python_module(
        "clickrouter.demo.trainer",
        "--data",
        str(paths.data),
        "--store",
        str(paths.store),
        "--catalog",
        str(paths.world / "campaigns.json"),
        "--every",
        repr(config.retrain_wall),
        "--label-delay",
        repr(config.label_delay_wall),
        "--settings",
        json.dumps(training_settings(config)),
        "--log",
        str(paths.cycles),
    )
    return ManagedProcess("trainer", argv, paths.logs)


def start_drivers(config: DemoConfig, paths: Paths, url: str) -> list[ManagedProcess]:
    """The driver processes, each with its share of the requests and the rate."""
    go_file = paths.drivers / "go"
    drivers = []
    for i in range(config.drivers):
        share = config.requests // config.drivers + (i < config.requests % config.drivers)
        argv = python_module(
            "clickrouter.demo.traffic",
            "--world",
            str(paths.world),
            "--url",
            url,
            "--requests",
            str(share),
            "--rate",
            repr(config.rate / config.drivers),
            "--speedup",
            repr(config.speedup),
            "--seed",
            str(config.seed * 1000 + i),
            "--go-file",
            str(go_file),
            "--threads",
            str(config.threads),
            "--pipeline",
            str(config.pipeline),
            "--no-oracle",  # the report scores its own sample against the oracle
            "--seconds",
            repr(config.traffic_seconds),
            "--drain-seconds",
            repr(config.attribution_wall + 2.0),
            "--out",
            str(paths.drivers / f"driver-{i}.json"),
        )
        env = {"CLICKROUTER_POSTBACK_SECRET": run_secrets(paths.out)["CLICKROUTER_POSTBACK_SECRET"]}
        drivers.append(ManagedProcess(f"driver-{i}", argv, paths.logs, env))
    return drivers


def release_drivers(paths: Paths, drivers: list[ManagedProcess], timeout: float = 180.0) -> float:
    """Wait until every driver has loaded the world, then give them one start time."""
    deadline = time.monotonic() + timeout
    while not all((paths.drivers / f"{d.name}.ready").exists() for d in drivers):
        for driver in drivers:
            driver.check()
        if time.monotonic() > deadline:
            raise TimeoutError("traffic drivers did not load the world in time")
        time.sleep(0.05)
    start = time.time() + 0.3
    tmp = paths.drivers / "go.tmp"
    tmp.write_text(repr(start))
    tmp.replace(paths.drivers / "go")
    return start
