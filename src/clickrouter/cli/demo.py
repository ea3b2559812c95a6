"""``clickrouter demo``: the whole system on embedded defaults, with a revenue report."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import Any

from clickrouter.cli.parser import (
    COLD_AT_PRIOR_HELP,
    add_learner_options,
    add_log_format,
    bounded_float,
)
from clickrouter.demo.config import POLICIES, DemoConfig
from clickrouter.durations import duration_type

DEFAULTS = DemoConfig()
MINUTE, HOUR = 60.0, 3600.0


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run world, predictor, traffic, consumer and trainer; write a revenue report",
        description="Runs the continuous loop on embedded defaults (see docs/how-to/tune-demo.md).",
    )
    arg = demo.add_argument
    arg("--out", type=Path, default=DEFAULTS.out, help="output directory (default demo-out)")
    arg("--campaigns", type=int, default=DEFAULTS.campaigns, help="campaigns in the world")
    arg(
        "--minutes",
        type=duration_type(unit=MINUTE),
        default=DEFAULTS.minutes * MINUTE,
        help="wall-clock time of traffic (a plain number: minutes)",
    )
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
    arg("--seed", type=int, default=DEFAULTS.seed, help="random seed of world and traffic")
    arg(
        "--base-rate-min",
        type=float,
        default=DEFAULTS.base_rate_min,
        help="lowest campaign sale rate (rates are log-uniform in [min, max])",
    )
    arg("--base-rate-max", type=float, default=DEFAULTS.base_rate_max, help="highest sale rate")
    arg(
        "--payout-sigma",
        type=float,
        default=DEFAULTS.payout_sigma,
        help="log-normal spread of campaign payouts",
    )
    arg(
        "--effect-scale",
        type=float,
        default=DEFAULTS.effect_scale,
        help="spread of the per-profile logit effects (how much targeting matters)",
    )
    arg(
        "--shared-structure",
        type=bounded_float(0, 1),
        default=DEFAULTS.shared_structure,
        help="share of a campaign's profile effects its vertical's carry (0 = independent)",
    )
    arg(
        "--max-pages",
        type=int,
        default=DEFAULTS.max_pages,
        help="landing pages a campaign runs at most (most run 1-2; 1 = one page each)",
    )
    arg(
        "--policy",
        default=DEFAULTS.policy,
        help="one of: " + ", ".join(POLICIES),
    )
    arg("--epsilon", type=float, default=DEFAULTS.epsilon, help="epsilon-greedy's exploration")
    arg("--thompson-scale", type=float, default=DEFAULTS.thompson_scale, help="posterior spread")
    arg(
        "--thompson-profile-spread",
        type=float,
        default=DEFAULTS.thompson_profile_spread,
        help="log-sd of a profile's deviation no model covers yet (0 = off)",
    )
    arg(
        "--attribution-hours",
        type=duration_type(unit=HOUR),
        default=DEFAULTS.attribution_hours * HOUR,
        help="simulated attribution window (a plain number: hours)",
    )
    arg(
        "--retrain-hours",
        type=duration_type(unit=HOUR),
        default=DEFAULTS.retrain_hours * HOUR,
        help="simulated time between training cycles (a plain number: hours)",
    )
    arg(
        "--min-positives",
        type=int,
        default=DEFAULTS.min_positives,
        help="sales a campaign needs for a logistic model (below: base rate)",
    )
    arg(
        "--prior-positives",
        type=float,
        default=DEFAULTS.prior_positives,
        help="strength (in sales) of the Beta prior of base-rate models",
    )
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
    arg(
        "--cold-start-rate",
        type=float,
        default=DEFAULTS.cold_start_rate,
        help="sale rate of every model in the cold-start store",
    )
    arg(
        "--cold-at-prior",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.cold_at_prior,
        help=COLD_AT_PRIOR_HELP,
    )
    arg(
        "--train-workers",
        type=int,
        default=DEFAULTS.train_workers,
        help="fit processes (0 = in the trainer process)",
    )
    add_learner_options(arg, DEFAULTS.learner, DEFAULTS.posterior)
    arg(
        "--oracle-sample",
        type=int,
        default=DEFAULTS.oracle_sample,
        help="clicks the oracle scores against every offer for the report (0 = every click)",
    )
    arg("--bins", type=int, default=DEFAULTS.bins, help="time bins of the report's curves")
    arg("--no-live", action="store_true", help="no live view (logs and CI)")
    add_log_format(demo)
    demo.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    return DemoConfig(
        out=args.out,
        campaigns=args.campaigns,
        minutes=args.minutes / MINUTE,
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
        shared_structure=args.shared_structure,
        max_pages=args.max_pages,
        policy=args.policy,
        epsilon=args.epsilon,
        thompson_scale=args.thompson_scale,
        thompson_profile_spread=args.thompson_profile_spread,
        attribution_hours=args.attribution_hours / HOUR,
        retrain_hours=args.retrain_hours / HOUR,
        min_positives=args.min_positives,
        prior_positives=args.prior_positives,
        recent_prior_sales=args.recent_prior_sales,
        late_sales=args.late_sales,
        cold_start_rate=args.cold_start_rate,
        cold_at_prior=args.cold_at_prior,
        train_workers=args.train_workers,
        learner=args.learner,
        global_c=args.global_c,
        hierarchy_min_positives=args.hierarchy_min_positives,
        posterior=args.posterior,
        oracle_sample=args.oracle_sample,
        bins=args.bins,
        live=not args.no_live,
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _log_stages_as(log_format: str | None) -> None:
    """Log this process, and the stage processes (they inherit the variable), in one format."""
    from clickrouter.config import Settings
    from clickrouter.logs import configure_logging

    log_format = Settings.from_env(log_format=log_format).log_format
    os.environ["CLICKROUTER_LOG_FORMAT"] = log_format
    configure_logging(log_format, "demo")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from clickrouter.demo.html import summary_table, uplift_table
    from clickrouter.demo.run import run_demo

    config = config_from_args(args)  # bad knob -> InvalidInput -> exit 2 naming it
    _log_stages_as(args.log_format)
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
