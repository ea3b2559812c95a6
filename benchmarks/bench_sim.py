"""Simulator throughput: event-log generation vs a naive per-event generator, same run.

Both write the same kind of log (click events with raw requests, uniform
logging policy, oracle sales) for a 5,000-campaign world:

* fast: :class:`clickrouter.sim.eventgen.EventGenerator` (vectorised chunks,
  canonical fields computed in bulk, msgspec structs encoded per block);
* naive: one request at a time, as one would write it first: ``extract_profile``
  the raw request, choose among the (precomputed) eligible campaigns, ask the
  oracle for that one pair, build a ``ClickEvent`` and ``write`` it. Its
  requests are drawn and rendered in bulk beforehand, so the baseline is not
  charged for sampling.

Rates are given per wall second and per CPU second of this process: on a
shared machine the CPU rate is the "one core" figure.

Usage: ``.venv/bin/python benchmarks/bench_sim.py [--clicks N] [--naive N]``
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clickrouter.eventlog import EventLogWriter
from clickrouter.events import CanonicalProfile, ClickEvent
from clickrouter.profile import extract_profile, parse_timestamp
from clickrouter.sim import World
from clickrouter.sim.eventgen import EventGenerator, UniformLoggingPolicy

Timing = tuple[float, float, int]  # wall seconds, CPU seconds, events written


def fast(world: World, out: Path, n: int) -> Timing:
    with EventLogWriter(out, writer_id="fast") as writer:
        wall, cpu = time.perf_counter(), time.process_time()
        report = EventGenerator(world, seed=1).run(writer, n)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, report.clicks + report.sales


def naive(world: World, out: Path, n: int) -> Timing:
    rng = np.random.default_rng(2)
    pairs = world.sample_requests(rng, n)
    policy = UniformLoggingPolicy(world)  # eligible lists precomputed: only per-event work differs
    written = 0
    with EventLogWriter(out, writer_id="naive") as writer:
        wall, cpu = time.perf_counter(), time.process_time()
        for i, (raw, _) in enumerate(pairs):
            raw = raw | {"click_id": f"n-{i}"}
            profile = extract_profile(raw)
            slots = world.slots_of([profile])
            campaign_index, propensity = policy.choose(rng, slots)
            column = int(campaign_index[0])
            if column < 0:
                continue
            campaign = world.campaigns[column]
            event = ClickEvent(
                id=raw["click_id"],
                click_id=raw["click_id"],
                ts=parse_timestamp(raw["ts"]),
                profile=CanonicalProfile(**profile),
                campaign_id=campaign.id,
                landing_page=campaign.landing_page_for(raw["click_id"]),
                propensity=float(propensity[0]),
                model_version="logging-uniform",
                raw=raw,
            )
            _ = rng.random() < world.true_proba_slots(slots, campaign_index)[0]
            writer.write(event)
            written += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=1_000_000)
    parser.add_argument("--naive", type=int, default=10_000)
    parser.add_argument("--campaigns", type=int, default=5000)
    args = parser.parse_args()
    started = time.perf_counter()
    world = World.generate(n_campaigns=args.campaigns, seed=0)
    print(f"world: {args.campaigns} campaigns generated in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fast_wall, fast_cpu, fast_n = fast(world, Path(tmp) / "fast", args.clicks)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = sum(p.stat().st_size for p in (Path(tmp) / "fast").glob("*.jsonl"))
        naive_wall, naive_cpu, naive_n = naive(world, Path(tmp) / "naive", args.naive)
    if not fast_n or not naive_n:
        print("benchmark wrote no events", file=sys.stderr)
        return 1
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    _line("fast", fast_n, fast_wall, fast_cpu)
    print(
        f"       {size / fast_n:.0f} bytes/event; "
        f"peak RSS grew {(rss_after - rss_before) / 1024:.0f} MB"
    )
    _line("naive", naive_n, naive_wall, naive_cpu)
    print(
        f"ratio: {(fast_n / fast_cpu) / (naive_n / naive_cpu):.1f}x per CPU second, "
        f"{(fast_n / fast_wall) / (naive_n / naive_wall):.1f}x per wall second"
    )
    return 0


def _line(name: str, n: int, wall: float, cpu: float) -> None:
    print(
        f"{name:5}: {n:>9,} events; wall {wall:6.2f} s = {n / wall:>9,.0f} events/s; "
        f"CPU {cpu:6.2f} s = {n / cpu:>9,.0f} events/CPU-s"
    )


if __name__ == "__main__":
    sys.exit(main())
