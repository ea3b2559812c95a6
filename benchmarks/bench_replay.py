"""Replay benchmark: simulated decisions per second of ``clickrouter replay``, end to end.

One seed's replay in this process (training cycles, version loads, dataset
commits and the baselines included) on the demo's world and policy, timed per
stage, and the process's peak resident memory: first as the command runs it
(no propensity estimate: its records go with its temporary directory), then
with the estimate the predictor logs (the same choices), and the ratio.
``--legacy PATH`` also runs the per-request offline replay that ``clickrouter
replay`` replaced (``benchmarks/policy_replay.py`` as of its last commit: ``git
show <commit>:benchmarks/policy_replay.py > /tmp/policy_replay.py``) on the same
world, requests and span, and prints the ratio.

    .venv/bin/python benchmarks/bench_replay.py [--campaigns 5000] [--clicks 60000] \\
        [--days 0.5] [--legacy /tmp/policy_replay.py]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import resource
import sys
import tempfile
import time
from pathlib import Path

from clickrouter.demo.config import DemoConfig
from clickrouter.replay.loop import load_world, run_seed
from clickrouter.replay.settings import ReplaySettings


def run_new(settings: ReplaySettings) -> tuple[float, dict[str, float]]:
    world = load_world(settings)  # not timed, as in the legacy replay
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        started = time.perf_counter()
        run = run_seed(settings, 0, Path(tmp) / "run", world=world)
        return time.perf_counter() - started, run.seconds


def run_legacy(path: Path, settings: ReplaySettings) -> float:
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("policy_replay_legacy", path)
    assert spec is not None and spec.loader is not None
    legacy = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = legacy  # its dataclasses look their module up
    spec.loader.exec_module(legacy)
    from clickrouter.serving.engine.policy import Thompson

    demo = settings.demo
    config = legacy.ReplayConfig(demo=demo, requests=settings.total_clicks, days=settings.days)
    policy = Thompson(
        scale=demo.thompson_scale, profile_spread=demo.thompson_profile_spread, seed=0
    )
    started = time.perf_counter()
    legacy.replay(config, policy, lambda index, batch: None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=5000)
    parser.add_argument("--clicks", type=int, default=60_000)
    parser.add_argument("--days", type=float, default=0.5)
    parser.add_argument("--legacy", type=Path, default=None, help="the old policy_replay.py")
    args = parser.parse_args()
    settings = ReplaySettings(
        demo=DemoConfig(campaigns=args.campaigns), clicks=args.clicks, days=args.days
    )
    print(
        f"{args.campaigns} campaigns, {settings.total_clicks} clicks over {args.days:g} days,"
        f" {settings.cycles} training cycles"
    )
    seconds, stages = run_new(dataclasses.replace(settings, propensities=False))
    rate = settings.total_clicks / seconds
    per_stage = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    print(f"  clickrouter replay   {seconds:7.1f} s  {rate:8.0f} decisions/s  ({per_stage})")
    cycle = (stages["train"] + stages["load"]) / settings.cycles
    print(f"  per training cycle   {cycle:7.2f} s  (training, publishing and loading the version)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(f"  peak memory          {peak:7.0f} MB  (resident, this process)")
    logged, stages = run_new(settings)
    per_stage = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    with_rate = settings.total_clicks / logged
    print(f"  with propensities    {logged:7.1f} s  {with_rate:8.0f} decisions/s  ({per_stage})")
    print(f"  ratio: {rate / with_rate:.2f}x the decisions per second without the estimate")
    if args.legacy is not None:
        legacy = run_legacy(args.legacy, settings)
        old = settings.total_clicks / legacy
        print(f"  policy_replay.py     {legacy:7.1f} s  {old:8.0f} decisions/s")
        print(f"  ratio: {rate / old:.1f}x the decisions per second")


if __name__ == "__main__":
    main()
