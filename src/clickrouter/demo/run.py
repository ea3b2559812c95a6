"""The demo's orchestrator: build, start, watch, stop, report.

Order: world -> cold store -> predictor (waits until ready) -> consumer and
trainer -> traffic drivers (released together once all have loaded the
world). While traffic runs, every stage is checked each second: a stage that
dies ends the demo with its log's tail. Then the trainer, the predictor
(which drains its event queue on SIGTERM) and the consumer are stopped, and
the report is built from the event log.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live

from clickrouter.demo import stages
from clickrouter.demo.config import DemoConfig
from clickrouter.demo.live import LiveMonitor
from clickrouter.demo.oracle import OracleScorer
from clickrouter.demo.processes import ManagedProcess, StageFailed
from clickrouter.demo.scrape import quantile, scrape
from clickrouter.errors import InvalidInput

PLAIN_PROGRESS_SECONDS = 15.0


def run_demo(config: DemoConfig, console: Console) -> dict[str, Any]:
    """Run the whole loop on ``config`` and return the report (also written to disk)."""
    from clickrouter.demo.report import build_report, write_json

    if config.page_launch_share or config.page_retire_share:
        # its predictor serves the catalogue the world was generated with
        raise InvalidInput(
            "demo settings 'page_launch_share'/'page_retire_share': the demo does not"
            " republish pages as they launch or retire; replay them with clickrouter replay"
        )
    began = time.time()
    paths = stages.prepare(config.out)
    with console.status(f"generating a world of {config.campaigns:,} campaigns"):
        world = stages.build_world(config, paths)
        stages.publish_cold_store(config, paths)
    scorer = OracleScorer(world)
    processes: list[ManagedProcess] = []
    try:
        with console.status("starting the predictor on the cold store"):
            predictor, url = stages.start_predictor(config, paths)
        processes.append(predictor)
        processes += [stages.start_consumer(config, paths), stages.start_trainer(config, paths)]
        drivers = stages.start_drivers(config, paths, url)
        processes += drivers
        with console.status("traffic drivers loading the world"):
            traffic_start = stages.release_drivers(paths, drivers)
        monitor = LiveMonitor(paths.events, paths.data, paths.cycles, scorer)
        watch(config, console, monitor, processes, drivers, url)
        server = final_server_state(url)
        traffic_end = time.time()
        with console.status("stopping the trainer, the predictor and the consumer"):
            stop_all(processes)
    finally:
        for process in processes:
            process.stop(timeout=5.0)
    run = {
        "started_at": began,
        "traffic_start": traffic_start,
        "traffic_end": traffic_end,
        "world_start_ts": world.start_ts,
        "server": server,
        "url": url,
    }
    with console.status("building the report (oracle over every campaign)"):
        report = build_report(paths, config, scorer, run)
    report["run"]["report_seconds"] = time.time() - traffic_end
    report["run"]["total_seconds"] = time.time() - began
    write_json(paths.out / "report.json", report)
    return report


def watch(
    config: DemoConfig,
    console: Console,
    monitor: LiveMonitor,
    processes: list[ManagedProcess],
    drivers: list[ManagedProcess],
    url: str,
) -> None:
    """Refresh the view every second until every driver is done; fail on a dead stage."""

    def step() -> None:
        time.sleep(1.0)
        for process in processes:
            process.check(must_run=process not in drivers)
        monitor.refresh(url)

    if config.live and console.is_terminal:
        with Live(
            monitor.render(processes, "traffic"), console=console, refresh_per_second=2
        ) as live:
            while any(d.running() for d in drivers):
                step()
                live.update(monitor.render(processes, "traffic"))
        return
    last_print = time.monotonic()
    while any(d.running() for d in drivers):
        step()
        if config.live and time.monotonic() - last_print >= PLAIN_PROGRESS_SECONDS:
            console.print(monitor.render(processes, "traffic"))
            last_print = time.monotonic()


def final_server_state(url: str) -> dict[str, Any]:
    snap = scrape(url)
    return {
        "decisions": snap.decisions,
        "failed_5xx": snap.failed,
        "reloads_ok": snap.reloads_ok,
        "reloads_rejected": snap.reloads_rejected,
        "version": snap.version,
        "latency_p50_ms": 1000 * quantile(snap.buckets, 0.5),
        "latency_p99_ms": 1000 * quantile(snap.buckets, 0.99),
        "latency_buckets": {repr(k): v for k, v in sorted(snap.buckets.items())},
    }


def stop_all(processes: list[ManagedProcess]) -> None:
    """Trainer first (it may be mid-cycle), then the predictor, then the consumer."""
    order = {"trainer": 0, "predictor": 1, "consumer": 2}
    for process in sorted(processes, key=lambda p: order.get(p.name, -1)):
        code = process.stop(timeout=60.0 if process.name == "trainer" else 15.0)
        if code not in (0, None, -15) and not process.name.startswith("driver"):
            raise StageFailed(f"{process.name} exited with {code}:\n{process.log_tail()}")
