"""``clickrouter demo``: the whole system on embedded defaults, with a revenue report."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

from clickrouter.demo.config import DemoConfig

DEFAULTS = DemoConfig()


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run world, predictor, traffic, consumer and trainer; write a revenue report",
        description="Runs the continuous loop on embedded defaults (see docs/operations.md).",
    )
    arg = demo.add_argument
    arg("--out", type=Path, default=DEFAULTS.out, help="output directory (default demo-out)")
    arg("--campaigns", type=int, default=DEFAULTS.campaigns, help="campaigns in the world")
    arg("--minutes", type=float, default=DEFAULTS.minutes, help="wall minutes of traffic")
    arg("--rate", type=float, default=DEFAULTS.rate, help="requests/s over all drivers")
    arg("--drivers", type=int, default=DEFAULTS.drivers, help="traffic driver processes")
    arg("--threads", type=int, default=DEFAULTS.threads, help="connections per driver")
    arg(
        "--pipeline",
        type=int,
        default=DEFAULTS.pipeline,
        help="decision requests each connection writes at once (HTTP/1.1 pipelining)",
    )
    arg("--speedup", type=float, default=DEFAULTS.speedup, help="simulated s per wall s")
    arg("--seed", type=int, default=DEFAULTS.seed)
    arg("--base-rate-min", type=float, default=DEFAULTS.base_rate_min)
    arg("--base-rate-max", type=float, default=DEFAULTS.base_rate_max)
    arg("--payout-sigma", type=float, default=DEFAULTS.payout_sigma)
    arg("--effect-scale", type=float, default=DEFAULTS.effect_scale)
    arg(
        "--policy",
        default=DEFAULTS.policy,
        help="thompson, gamma-thompson, epsilon-greedy or greedy",
    )
    arg("--epsilon", type=float, default=DEFAULTS.epsilon, help="epsilon-greedy's exploration")
    arg("--thompson-scale", type=float, default=DEFAULTS.thompson_scale, help="posterior spread")
    arg(
        "--thompson-profile-spread",
        type=float,
        default=DEFAULTS.thompson_profile_spread,
        help="log-sd of a profile's deviation no model covers yet (0 = off)",
    )
    arg("--attribution-hours", type=float, default=DEFAULTS.attribution_hours)
    arg("--retrain-hours", type=float, default=DEFAULTS.retrain_hours)
    arg("--min-positives", type=int, default=DEFAULTS.min_positives)
    arg("--prior-positives", type=float, default=DEFAULTS.prior_positives)
    arg(
        "--recent-prior-sales",
        type=float,
        default=DEFAULTS.recent_prior_sales,
        help="prior (in sales) of a logistic model's level on the newest rows (0 = off)",
    )
    arg(
        "--late-sales",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.late_sales,
        help="base-rate models also count sales after the attribution window",
    )
    arg("--cold-start-rate", type=float, default=DEFAULTS.cold_start_rate)
    arg("--train-workers", type=int, default=DEFAULTS.train_workers)
    arg("--oracle-sample", type=int, default=DEFAULTS.oracle_sample, help="0 = every click")
    arg("--bins", type=int, default=DEFAULTS.bins)
    arg("--no-live", action="store_true", help="no live view (logs and CI)")
    demo.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(
        out=args.out,
        campaigns=args.campaigns,
        minutes=args.minutes,
        rate=args.rate,
        drivers=args.drivers,
        threads=args.threads,
        pipeline=args.pipeline,
        speedup=args.speedup,
        seed=args.seed,
        base_rate_min=args.base_rate_min,
        base_rate_max=args.base_rate_max,
        payout_sigma=args.payout_sigma,
        effect_scale=args.effect_scale,
        policy=args.policy,
        epsilon=args.epsilon,
        thompson_scale=args.thompson_scale,
        thompson_profile_spread=args.thompson_profile_spread,
        attribution_hours=args.attribution_hours,
        retrain_hours=args.retrain_hours,
        min_positives=args.min_positives,
        prior_positives=args.prior_positives,
        recent_prior_sales=args.recent_prior_sales,
        late_sales=args.late_sales,
        cold_start_rate=args.cold_start_rate,
        train_workers=args.train_workers,
        oracle_sample=args.oracle_sample,
        bins=args.bins,
        live=not args.no_live,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from clickrouter.demo.html import summary_table, uplift_table
    from clickrouter.demo.run import run_demo

    config = config_from_args(args)  # bad knob -> InvalidInput -> exit 2 naming it
    # SIGTERM unwinds like Ctrl-C, so the stage processes are stopped, not orphaned
    signal.signal(signal.SIGTERM, _interrupt)
    console = Console()
    console.print(
        f"demo: {config.campaigns:,} campaigns, {config.minutes:g} min at {config.rate:g} req/s "
        f"= {config.simulated_days:.1f} simulated days (x{config.speedup:g}); out: {config.out}"
    )
    report = run_demo(config, console)
    console.print(summary_table(report))
    uplift = uplift_table(report)
    if uplift is not None:
        console.print(uplift)
    console.print(f"report: {(config.out / 'report.html').resolve()}")
    return 0
