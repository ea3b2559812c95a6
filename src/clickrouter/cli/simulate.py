"""``clickrouter simulate``: write a synthetic event log, or drive a running predictor.

* ``--out DIR --clicks M`` generates a world (``--campaigns N --seed S``,
  ``--max-pages P`` landing pages per campaign at most, ``--shared-structure
  S`` share of a campaign's profile effects its vertical's carry,
  ``--page-launch-share``/``--page-retire-share`` extra pages that go live or
  are retired during the first week, or loads ``--world``),
  saves it into DIR (``campaigns.json`` + ``world.json``)
  and writes the logged clicks and their sales to ``DIR/events``.
* ``--world DIR --target http://127.0.0.1:PORT --requests N --rate R`` sends
  the world's traffic to a predictor and posts the oracle's sales back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from clickrouter.cli.parser import (
    add_page_schedule,
    bounded_float,
    bounded_int,
    check_page_schedule,
)
from clickrouter.durations import duration_type
from clickrouter.errors import InvalidInput
from clickrouter.sim.config import MAX_PAGES
from clickrouter.sim.driver import MAX_PIPELINE

MAX_CLICKS = 1_000_000_000
MAX_REQUESTS = 10_000_000
MAX_RATE = 100_000.0


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "simulate", help="synthetic ad world: write an event log or drive a predictor"
    )
    sim.add_argument("--world", type=Path, default=None, help="load this saved world")
    sim.add_argument(
        "--campaigns",
        type=bounded_int(1, 1_000_000),
        default=5000,
        help="campaigns of a generated world (ignored with --world)",
    )
    sim.add_argument(
        "--max-pages",
        type=bounded_int(1, MAX_PAGES),
        default=1,
        help="landing pages per campaign at most, most campaigns having 1-2 "
        "(1: one page each; ignored with --world)",
    )
    sim.add_argument(
        "--shared-structure",
        type=bounded_float(0, 1),
        default=0.0,
        help="share of a campaign's profile effects its vertical's carry "
        "(0: independent campaigns; ignored with --world)",
    )
    add_page_schedule(sim.add_argument, " (ignored with --world)")
    sim.add_argument(
        "--seed",
        type=bounded_int(0, 2**63 - 1),
        default=0,
        help="random seed of the world and its traffic (same seed, same output)",
    )
    sim.add_argument("--out", type=Path, default=None, help="write world + events/ here")
    sim.add_argument(
        "--clicks",
        type=bounded_int(1, MAX_CLICKS),
        default=None,
        help="with --out: logged clicks to write (their sales follow)",
    )
    sim.add_argument("--no-raw", action="store_true", help="omit raw requests from clicks")
    sim.add_argument("--target", default=None, help="predictor base URL, http://HOST:PORT")
    sim.add_argument(
        "--requests",
        type=bounded_int(1, MAX_REQUESTS),
        default=None,
        help="with --target: decision requests to send",
    )
    sim.add_argument(
        "--rate",
        type=bounded_float(0.001, MAX_RATE),
        default=50.0,
        help="with --target: requests per wall-clock second",
    )
    sim.add_argument(
        "--speedup",
        type=bounded_float(1e-3, 1e9),
        default=3600.0,
        help="simulated seconds per wall-clock second (sales arrive sooner)",
    )
    sim.add_argument(
        "--drain-seconds",
        type=_bounded_duration(3600.0),
        default=10.0,
        help="with --target: wait this long after the last request for pending sales",
    )
    sim.add_argument(
        "--pipeline",
        type=bounded_int(1, MAX_PIPELINE),
        default=1,
        help="decision requests written at once on the connection (HTTP/1.1 pipelining)",
    )
    sim.set_defaults(handler=run_simulate)


def _bounded_duration(high: float) -> Any:
    parse_seconds = duration_type(allow_zero=True)

    def duration(text: str) -> float:
        seconds = parse_seconds(text)
        if seconds > high:
            raise argparse.ArgumentTypeError(f"expected at most {high:g}s, got {text!r}")
        return seconds

    return duration


def run_simulate(args: argparse.Namespace) -> int:
    if args.target is not None:
        return _drive(args)
    if args.out is None or args.clicks is None:
        raise InvalidInput("give --out DIR --clicks M (event log) or --target URL --requests N")
    return _generate(args)


def _world(args: argparse.Namespace) -> Any:
    from clickrouter.sim.config import WorldConfig
    from clickrouter.sim.world import World

    if args.world is not None:
        return World.load(args.world)
    check_page_schedule(args)
    config = WorldConfig(
        max_pages=args.max_pages,
        shared_structure=args.shared_structure,
        page_launch_share=args.page_launch_share,
        page_retire_share=args.page_retire_share,
    )
    return World.generate(n_campaigns=args.campaigns, seed=args.seed, config=config)


def _generate(args: argparse.Namespace) -> int:
    from clickrouter.sim.eventgen import generate_events

    world = _world(args)
    world.save(args.out)
    started = time.perf_counter()
    report = generate_events(
        world, args.out, args.clicks, seed=args.seed, include_raw=not args.no_raw
    )
    elapsed = time.perf_counter() - started
    summary = {
        **report.__dict__,
        "seconds": round(elapsed, 3),
        "events_per_second": round((report.clicks + report.sales) / elapsed),
        "out": str(args.out),
    }
    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def _drive(args: argparse.Namespace) -> int:
    from clickrouter.sim.driver import TrafficDriver

    if args.world is None or args.requests is None:
        raise InvalidInput("--target needs --world DIR and --requests N")
    driver = TrafficDriver(
        _world(args),
        args.target,
        rate=args.rate,
        speedup=args.speedup,
        seed=args.seed,
        drain_seconds=args.drain_seconds,
        pipeline=args.pipeline,
    )
    report = driver.run(args.requests)
    json.dump(report.as_dict(), sys.stdout, indent=1)
    sys.stdout.write("\n")
    if not report.decisions:
        raise InvalidInput(
            f"--target {args.target}: no request got a decision "
            f"({report.errors} errors, {report.no_fill} without an eligible campaign)"
        )
    return 0
