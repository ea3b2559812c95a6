"""One traffic-driver process: the sim's TrafficDriver plus client-side latency.

``python -m clickrouter.demo.traffic --world DIR --url URL ...`` loads the
world, touches ``<out>.ready`` and waits for the start time the orchestrator
writes into ``--go-file`` once every driver is ready (so every driver's
simulated clock reads the same time at the same moment), runs the driver and writes its
:class:`~clickrouter.sim.driver.DriverReport` as JSON next to the latency of
every decision request (``<out>.latency.npy``, seconds, float32).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.sim.client import Answer, Request
from clickrouter.sim.driver import DECIDE_PATH


class LatencyRecorder:
    """Wraps a client's ``request_many`` to keep the round trip of every decision
    answered (from the write that carried it to its answer's last byte)."""

    def __init__(self, request_many: Callable[[Sequence[Request]], list[Answer | None]]) -> None:
        self._request_many = request_many
        self.seconds: list[float] = []

    def __call__(self, requests: Sequence[Request]) -> list[Answer | None]:
        answers = self._request_many(requests)
        for (_, path, _), answer in zip(requests, answers, strict=True):
            if path == DECIDE_PATH and answer is not None:
                self.seconds.append(answer.seconds)
        return answers


def wait_for_go(path: Path) -> float:
    """The common start time, once the orchestrator has written it (every driver is loaded)."""
    while True:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return float(text)
        time.sleep(0.02)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clickrouter.demo.traffic")
    p.add_argument("--world", required=True, type=Path)
    p.add_argument("--url", required=True)
    p.add_argument("--requests", required=True, type=int)
    p.add_argument("--rate", required=True, type=float)
    p.add_argument("--speedup", required=True, type=float)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--go-file", required=True, type=Path, help="holds the wall epoch to start")
    p.add_argument("--drain-seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1, help="drivers (connections) in threads")
    p.add_argument("--seconds", type=float, default=None, help="stop sending after this long")
    p.add_argument("--pipeline", type=int, default=1, help="decision requests written at once")
    p.add_argument(
        "--oracle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score every campaign per request for the driver's own efficiency figure",
    )
    p.add_argument("--out", required=True, type=Path)
    return p.parse_args(argv)


def stop_sending_at(driver: Any, deadline: float) -> None:
    """Make ``driver`` stop drawing new requests at wall time ``deadline``.

    The driver sends a number of requests; on a machine too loaded to keep its
    pace that would overrun the demo's time budget, so its request stream is
    cut at the deadline (postbacks already due are still sent while it drains).
    """
    produce = driver._requests

    def limited(n: int) -> Iterator[Any]:
        for item in produce(n):
            if time.time() >= deadline:
                return
            yield item

    driver._requests = limited


def run_threads(drivers: list[Any], n_requests: int) -> tuple[dict[str, Any], np.ndarray]:
    """Run every driver in its own thread on its share of ``n_requests``; merged report."""
    recorders = []
    for driver in drivers:
        recorders.append(LatencyRecorder(driver.client.request_many))
        driver.client.request_many = recorders[-1]
    reports: list[Any] = [None] * len(drivers)

    def work(k: int) -> None:
        share = n_requests // len(drivers) + (k < n_requests % len(drivers))
        reports[k] = drivers[k].run(share)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(drivers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if any(r is None for r in reports):
        raise RuntimeError("a driver thread failed (see the traceback above)")
    latency = np.concatenate([np.asarray(r.seconds, np.float32) for r in recorders])
    return merge_reports([r.as_dict() for r in reports]), latency


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum of the counts; the longest wall and simulated spans; overall efficiency."""
    summed = [k for k in reports[0] if k not in _SPANS and k != "efficiency"]
    merged = {k: _total(r[k] for r in reports) for k in summed}
    for key in _SPANS:
        merged[key] = max(r[key] for r in reports)
    oracle = merged["oracle_revenue"]
    merged["efficiency"] = (
        None if oracle is None else merged["expected_revenue"] / oracle if oracle else 0.0
    )
    return merged


_SPANS = ("wall_seconds", "sim_seconds")


def _total(values: Iterable[Any]) -> Any:
    """Sum, or None when the drivers ran without their oracle."""
    listed = list(values)
    return None if None in listed else sum(listed)


def main(argv: Sequence[str] | None = None) -> int:
    from clickrouter.sim.driver import TrafficDriver
    from clickrouter.sim.world import World

    args = parse_args(argv)
    world = World.load(args.world)
    drivers = [
        TrafficDriver(
            world,
            args.url,
            rate=args.rate / args.threads,
            speedup=args.speedup,
            seed=args.seed * 100 + k,
            drain_seconds=args.drain_seconds,
            pipeline=args.pipeline,
            oracle=args.oracle,
        )
        for k in range(args.threads)
    ]
    args.out.with_suffix(".ready").touch()
    go = wait_for_go(args.go_file)
    if args.seconds is not None:
        for driver in drivers:
            stop_sending_at(driver, go + args.seconds)
    time.sleep(max(0.0, go - time.time()))
    report, latency = run_threads(drivers, args.requests)
    np.save(args.out.with_suffix(".latency.npy"), latency)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
