"""``clickrouter replay`` and ``clickrouter evaluate``: offline answers before a change.

``replay`` runs the learning loop offline on a simulated world, for several
seeds. It writes ``replay.json`` (every number, deterministic for the same world, seeds
and settings), ``replay.png`` (learning curves, one line per seed) and
``replay-timing.json`` (where the seconds went), and prints a one-screen
table. ``evaluate`` estimates a candidate's revenue on logged records
(:mod:`clickrouter.replay.offpolicy`). See docs/explanation/replay.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
from pathlib import Path
from typing import Any

from clickrouter.cli.parser import (
    COLD_AT_PRIOR_HELP,
    add_learner_options,
    add_page_schedule,
    bounded_float,
    bounded_int,
    check_page_schedule,
)
from clickrouter.demo.config import MAX_PAGES, POLICIES, DemoConfig
from clickrouter.errors import InvalidInput

DEFAULTS = DemoConfig()
MAX_SEEDS = 1000


def register(subparsers: Any) -> None:
    register_replay(subparsers)
    register_evaluate(subparsers)


def register_replay(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="run the learning loop offline on a simulated world and report its revenue",
        description=(
            "Replays the real trainer, model store, bank and policy on a simulated world's"
            " traffic in simulated time, for one or several traffic seeds, and reports revenue"
            " per 1,000 clicks against uniform random, the best single offer, the right"
            " campaign on its first or a random page, and the oracle, on the same requests."
            " See docs/explanation/replay.md."
        ),
    )
    world = parser.add_argument_group("world")
    arg = world.add_argument
    arg(
        "--world",
        type=Path,
        default=None,
        metavar="DIR",
        help="a saved world (clickrouter simulate --out DIR); else one is generated",
    )
    arg(
        "--campaigns",
        type=bounded_int(2, 1_000_000),
        default=DEFAULTS.campaigns,
        help="campaigns of a generated world (default %(default)s)",
    )
    arg(
        "--seed",
        type=bounded_int(0, 2**32 - 1),
        default=DEFAULTS.seed,
        help="seed of a generated world, and of the trainer (default %(default)s)",
    )
    arg(
        "--base-rate-min",
        type=bounded_float(1e-9, 0.5),
        default=DEFAULTS.base_rate_min,
        help="lowest campaign sale rate of a generated world (default %(default)s)",
    )
    arg(
        "--base-rate-max",
        type=bounded_float(1e-9, 0.5),
        default=DEFAULTS.base_rate_max,
        help="highest campaign sale rate of a generated world (default %(default)s)",
    )
    arg(
        "--payout-sigma",
        type=bounded_float(0, 3),
        default=DEFAULTS.payout_sigma,
        help="log-normal spread of payouts of a generated world (default %(default)s)",
    )
    arg(
        "--effect-scale",
        type=bounded_float(0, 3),
        default=DEFAULTS.effect_scale,
        help="spread of per-profile effects of a generated world (default %(default)s)",
    )
    arg(
        "--shared-structure",
        type=bounded_float(0, 1),
        default=DEFAULTS.shared_structure,
        help="share of a campaign's profile effects its vertical's carry in a generated"
        " world; 0 = independent campaigns (default %(default)s)",
    )
    arg(
        "--max-pages",
        type=bounded_int(1, MAX_PAGES),
        default=DEFAULTS.max_pages,
        help="landing pages a campaign of a generated world runs at most; most run 1-2,"
        " 1 = one page each (default %(default)s)",
    )
    add_page_schedule(arg, " in a generated world; the catalogue is republished as they do")
    traffic = parser.add_argument_group("traffic and time")
    arg = traffic.add_argument
    arg(
        "--clicks",
        type=bounded_int(1, 10**9),
        default=None,
        help="requests served per seed (default: the demo's 288,000 per simulated day)",
    )
    arg(
        "--days",
        type=bounded_float(0.01, 366),
        default=3.0,
        help="simulated days the clicks are spread over (default %(default)s)",
    )
    arg(
        "--traffic",
        choices=("diurnal", "flat"),
        default="diurnal",
        help="the world's daily arrival pattern, or evenly spread like the demo's drivers",
    )
    arg(
        "--seeds",
        type=_seeds,
        default=[0],
        metavar="LIST",
        help="traffic seeds: 0-9, or 0,3,7 (default 0); each is a full replay",
    )
    arg(
        "--retrain-every",
        type=bounded_float(0.05, 24 * 30),
        default=DEFAULTS.retrain_hours,
        metavar="HOURS",
        help="simulated hours between training cycles (default %(default)s)",
    )
    arg(
        "--attribution-hours",
        type=bounded_float(0.01, 24 * 30),
        default=DEFAULTS.attribution_hours,
        help="attribution window: later sales are lost to the join (default %(default)s)",
    )
    arg(
        "--label-delay",
        type=bounded_float(0, 24 * 30),
        default=None,
        metavar="HOURS",
        help="simulated hours between a label settling and its record reaching the trainer"
        " (default 1.2: the demo's consumer lateness and hold)",
    )
    policy = parser.add_argument_group("policy (as clickrouter serve)")
    arg = policy.add_argument
    arg(
        "--exploration-seed",
        type=bounded_int(0, 2**32 - 1),
        default=0,
        metavar="N",
        help="another random stream for the policy alone, same traffic and outcomes: run one"
        " setting under two exploration seeds to see how far exploration luck alone moves"
        " the numbers (default 0)",
    )
    arg(
        "--policy",
        choices=POLICIES,
        default=DEFAULTS.policy,
        help="decision policy (default %(default)s)",
    )
    arg(
        "--epsilon",
        type=bounded_float(0, 1),
        default=DEFAULTS.epsilon,
        help="epsilon-greedy's exploration share (default %(default)s)",
    )
    arg(
        "--thompson-scale",
        type=bounded_float(0, 3),
        default=DEFAULTS.thompson_scale,
        help="posterior spread multiplier (default %(default)s)",
    )
    arg(
        "--thompson-profile-spread",
        type=bounded_float(0, 1.5),
        default=DEFAULTS.thompson_profile_spread,
        help="log-sd of a profile's deviation no model covers yet (default %(default)s)",
    )
    trainer = parser.add_argument_group("trainer (as clickrouter train)")
    arg = trainer.add_argument
    arg(
        "--min-positives",
        type=bounded_int(1, 10**6),
        default=DEFAULTS.min_positives,
        help="sales before a campaign gets a logistic model (default %(default)s)",
    )
    arg(
        "--prior-positives",
        type=bounded_float(1e-6, 1e6),
        default=DEFAULTS.prior_positives,
        help="strength of the base-rate models' Beta prior (default %(default)s)",
    )
    arg(
        "--recent-prior-sales",
        type=bounded_float(0, 1e6),
        default=DEFAULTS.recent_prior_sales,
        help="prior (in sales) of a logistic model's level on the newest rows; 0 = off",
    )
    arg(
        "--cold-start-rate",
        type=bounded_float(1e-9, 0.999),
        default=DEFAULTS.cold_start_rate,
        help="rate of the cold store's base-rate models (default %(default)s)",
    )
    arg(
        "--cold-at-prior",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.cold_at_prior,
        help=COLD_AT_PRIOR_HELP,
    )
    arg(
        "--train-window",
        type=bounded_float(0.05, 24 * 366),
        default=None,
        metavar="HOURS",
        help="train on the records of the last HOURS simulated hours only, which bounds the"
        " trainer's memory on long replays (default: every record, as the demo)",
    )
    arg(
        "--train-workers",
        type=bounded_int(0, 64),
        default=DEFAULTS.train_workers,
        help="fit processes per seed; 0 = in the replay's process (default %(default)s)",
    )
    add_learner_options(arg, DEFAULTS.learner, DEFAULTS.posterior)
    out = parser.add_argument_group("output")
    arg = out.add_argument
    arg(
        "--out",
        type=Path,
        default=Path("replay-out"),
        metavar="DIR",
        help="where replay.json, replay.png and replay-timing.json go (default %(default)s)",
    )
    arg("--bins", type=bounded_int(2, 500), default=24, help="time bins of the curves")
    arg(
        "--oracle-sample",
        type=bounded_int(0, 10**9),
        default=100_000,
        help="requests per seed scored against every offer for the baselines (0 = all)",
    )
    arg(
        "--jobs",
        type=bounded_int(1, 256),
        default=None,
        help="seeds run at once in worker processes (default: one per core, at most)",
    )
    arg(
        "--scratch",
        type=Path,
        default=None,
        metavar="DIR",
        help=(
            "where each seed's store and dataset live while it runs, created if missing"
            " (default: temp dir)"
        ),
    )
    parser.set_defaults(handler=run)


def _seeds(text: str) -> list[int]:
    """``0-9`` or ``0,3,7`` (or both: ``0-4,9``) -> distinct seeds in order."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            first, last = int(lo), int(hi) if sep else int(lo)
            if not 0 <= first <= last < 2**32 or last - first >= MAX_SEEDS:
                raise ValueError
            seeds.extend(s for s in range(first, last + 1) if s not in seeds)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seeds like 0-9 or 0,3,7 (0..{2**32 - 1}), got {text!r}"
        ) from None
    if len(seeds) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS} seeds, got {len(seeds)}")
    return seeds


def settings_from_args(args: argparse.Namespace) -> Any:
    from clickrouter.replay.settings import DEMO_LABEL_DELAY_HOURS, ReplaySettings

    if args.base_rate_min > args.base_rate_max:
        raise InvalidInput(
            f"--base-rate-min {args.base_rate_min:g} is above --base-rate-max"
            f" {args.base_rate_max:g}"
        )
    check_page_schedule(args)
    if args.policy in ("gamma-thompson", "laplace-thompson") and args.thompson_scale == 0:
        raise InvalidInput(f"--thompson-scale: {args.policy} needs a scale above 0, got 0")
    if args.world is not None and not (args.world / "world.json").is_file():
        raise InvalidInput(
            f"--world {str(args.world)!r}: no world.json (clickrouter simulate --out)"
        )
    demo = DemoConfig(
        campaigns=args.campaigns,
        seed=args.seed,
        base_rate_min=args.base_rate_min,
        base_rate_max=args.base_rate_max,
        payout_sigma=args.payout_sigma,
        effect_scale=args.effect_scale,
        shared_structure=args.shared_structure,
        max_pages=args.max_pages,
        page_launch_share=args.page_launch_share,
        page_retire_share=args.page_retire_share,
        policy=args.policy,
        epsilon=args.epsilon,
        thompson_scale=args.thompson_scale,
        thompson_profile_spread=args.thompson_profile_spread,
        attribution_hours=args.attribution_hours,
        retrain_hours=args.retrain_every,
        min_positives=args.min_positives,
        prior_positives=args.prior_positives,
        recent_prior_sales=args.recent_prior_sales,
        cold_start_rate=args.cold_start_rate,
        cold_at_prior=args.cold_at_prior,
        train_workers=args.train_workers,
        learner=args.learner,
        global_c=args.global_c,
        hierarchy_min_positives=_hierarchy_min_positives(args),
        posterior=args.posterior,
    )
    return ReplaySettings(
        demo=demo,
        world_dir=args.world,
        clicks=args.clicks,
        days=args.days,
        label_delay_hours=DEMO_LABEL_DELAY_HOURS if args.label_delay is None else args.label_delay,
        traffic=args.traffic,
        oracle_sample=args.oracle_sample,
        bins=args.bins,
        train_window_hours=args.train_window,
        exploration_seed=args.exploration_seed,
        # each seed's records go with its temporary directory and the trainer
        # ignores propensities: skip their estimate (the same choices, faster)
        propensities=False,
    )


def _hierarchy_min_positives(args: argparse.Namespace) -> int | None:
    """``--hierarchy-min-positives``, refused above ``--min-positives``."""
    low: int | None = args.hierarchy_min_positives
    if low is not None and low > args.min_positives:
        raise InvalidInput(
            f"--hierarchy-min-positives: expected at most --min-positives "
            f"({args.min_positives}), got {low}"
        )
    return low


def scratch_dir(path: Path) -> Path:
    """``--scratch``: the directory, created if missing, in which a seed's directory can
    be made; a clear error if it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InvalidInput(f"--scratch {str(path)!r}: not a directory") from None
    except OSError as exc:
        raise InvalidInput(
            f"--scratch {str(path)!r}: cannot create the directory: {exc.strerror}"
        ) from None
    try:  # what the run will do in it, before the run starts
        Path(tempfile.mkdtemp(prefix="replay-check-", dir=path)).rmdir()
    except OSError as exc:
        raise InvalidInput(
            f"--scratch {str(path)!r}: cannot create directories in it: {exc.strerror}"
        ) from None
    return path


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from clickrouter.replay.report import (
        replay_report,
        seed_report,
        summary_table,
        write_plot,
        write_report,
    )
    from clickrouter.replay.runner import available_cores, run_seeds

    settings = settings_from_args(args)
    scratch = None if args.scratch is None else scratch_dir(args.scratch)
    jobs = args.jobs or min(len(args.seeds), available_cores())
    # SIGTERM unwinds like Ctrl-C: workers are stopped and scratch directories removed
    signal.signal(signal.SIGTERM, _interrupt)
    console = Console()
    world = f"world {args.world}" if args.world else f"{args.campaigns:,}-campaign world"
    console.print(
        f"replay: {world}, {settings.total_clicks:,} clicks over {settings.days:g} simulated"
        f" days, {settings.cycles} training cycles, {len(args.seeds)} seed(s) on {jobs} process(es)"
    )
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks = {s: bar.add_task(f"seed {s}", total=settings.total_clicks) for s in args.seeds}
        runs, wall = run_seeds(
            settings,
            args.seeds,
            jobs,
            lambda seed, served: bar.update(tasks[seed], completed=served),
            scratch,
        )
    report = replay_report(settings, [seed_report(r) for r in runs])
    path = write_report(args.out, report)
    plot = write_plot(args.out, report)
    timing = {
        "wall_seconds": wall,
        "jobs": jobs,
        "decisions_per_second": len(runs) * settings.total_clicks / wall,
        "per_seed": {r.traffic_seed: r.seconds for r in runs},
    }
    (args.out / "replay-timing.json").write_text(json.dumps(timing, indent=1))
    console.print(summary_table(report))
    console.print(
        f"{timing['decisions_per_second']:,.0f} decisions/s over {wall:.0f} s; {path}, {plot}"
    )
    return 0


def register_evaluate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="estimate a candidate's revenue on logged records (off-policy: IPS, SNIPS, DR)",
        description=(
            "Estimates what a candidate (a model directory or store version, and a policy)"
            " would earn per 1,000 clicks on the decisions the predictor logged, from their"
            " propensities and outcomes, with confidence intervals, the effective sample size"
            " and a plain verdict when the logs cannot support an estimate."
            " See docs/explanation/replay.md."
        ),
    )
    arg = parser.add_argument
    arg(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="the labelled-record dataset (clickrouter consume's output)",
    )
    arg(
        "--models",
        type=Path,
        required=True,
        metavar="PATH",
        help="the candidate's models: a model directory or a model store (its CURRENT)",
    )
    arg("--version", default=None, help="a store version instead of the store's CURRENT")
    arg(
        "--policy",
        choices=POLICIES,
        default="greedy",
        help="the candidate's policy (default %(default)s)",
    )
    arg(
        "--epsilon",
        type=bounded_float(0, 1),
        default=DEFAULTS.epsilon,
        help="epsilon-greedy's exploration share (default %(default)s)",
    )
    arg(
        "--thompson-scale",
        type=bounded_float(0, 3),
        default=DEFAULTS.thompson_scale,
        help="posterior spread multiplier (default %(default)s)",
    )
    arg(
        "--thompson-profile-spread",
        type=bounded_float(0, 1.5),
        default=DEFAULTS.thompson_profile_spread,
        help="log-sd of a profile's deviation no model covers yet (default %(default)s)",
    )
    arg(
        "--draws",
        type=bounded_int(1, 10_000),
        default=32,
        help="policy draws per record estimating a Thompson candidate's choice probabilities",
    )
    arg("--seed", type=bounded_int(0, 2**32 - 1), default=0, help="seed of the candidate's draws")
    arg(
        "--since",
        type=bounded_float(0, 1e11),
        default=None,
        metavar="EPOCH",
        help="only records of clicks at or after this time (epoch seconds)",
    )
    arg(
        "--until",
        type=bounded_float(0, 1e11),
        default=None,
        metavar="EPOCH",
        help="only records of clicks before this time (epoch seconds)",
    )
    arg(
        "--confidence",
        type=bounded_float(0.5, 0.999),
        default=0.95,
        help="level of the intervals (default %(default)s)",
    )
    arg(
        "--min-ess",
        type=bounded_float(1, 1e9),
        default=100.0,
        help="fewer effective records than this: the estimate is unsupported (default %(default)s)",
    )
    arg(
        "--skip-invalid",
        action="store_true",
        help="drop records with a missing, zero or NaN propensity (with a warning) instead of"
        " refusing the dataset",
    )
    arg("--out", type=Path, default=None, metavar="FILE", help="also write the result as JSON")
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from clickrouter.datastore import DataManager
    from clickrouter.modelstore import ModelStore
    from clickrouter.replay.offpolicy import evaluate
    from clickrouter.serving.engine.holder import load_live_bank
    from clickrouter.serving.engine.policy import make_policy

    if args.policy in ("gamma-thompson", "laplace-thompson") and args.thompson_scale == 0:
        raise InvalidInput(f"--thompson-scale: {args.policy} needs a scale above 0, got 0")
    if not args.data.is_dir():
        raise InvalidInput(f"--data {str(args.data)!r}: not a directory")
    if not args.models.exists():
        raise InvalidInput(f"--models {str(args.models)!r}: no such directory")
    frame = DataManager(args.data).read_all(args.since, args.until)
    if not len(frame):
        raise InvalidInput(
            f"--data {str(args.data)!r}: no committed records in the time range"
            " (a dataset written by clickrouter consume?)"
        )
    directory = args.models
    if args.version is not None:
        directory = ModelStore(args.models).path_of(args.version)
    live = load_live_bank(directory, None)
    policy = make_policy(
        args.policy,
        args.epsilon,
        seed=args.seed,
        thompson_scale=args.thompson_scale,
        thompson_profile_spread=args.thompson_profile_spread,
    )
    try:
        result = evaluate(
            frame,
            live,
            policy,
            draws=args.draws,
            confidence=args.confidence,
            min_ess=args.min_ess,
            skip_invalid=args.skip_invalid,
        )
    finally:
        live.bank.close()
    document = {
        "data": str(args.data),
        "models": str(directory),
        "model_version": live.version,
        "policy": args.policy,
        **result.as_dict(),
    }
    if args.out is not None:
        from clickrouter.demo.report import write_json

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, document)
    console = Console()
    level = f"{args.confidence:.0%}"
    table = Table(title=f"{args.policy} on {live.version}: revenue per 1,000 clicks")
    for column in ("estimator", "estimate", f"{level} interval"):
        table.add_column(column, justify="right")
    for name, estimate in (("IPS", result.ips), ("SNIPS", result.snips), ("DR", result.dr)):
        table.add_row(name, f"{estimate.value:.1f}", f"{estimate.low:.1f} .. {estimate.high:.1f}")
    table.add_row("logged policy", f"{result.logged_per_1k:.1f}", "")
    table.add_row("candidate's models", f"{result.direct_per_1k:.1f}", "(their own forecast)")
    console.print(table)
    console.print(
        f"{result.records:,} records, effective sample size {result.ess:,.0f},"
        f" mean weight {result.weight_mean.value:.3f}, largest weight {result.max_weight:.1f}"
    )
    for warning in result.warnings:
        console.print(f"[bold yellow]warning:[/bold yellow] {warning}")
    verdict = (
        "supported" if result.supported else "[bold red]NOT SUPPORTED by these logs[/bold red]"
    )
    console.print(f"estimate: {verdict}")
    return 0
