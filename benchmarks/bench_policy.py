"""Policy benchmark: what a decision policy costs per request, and what it earns.

cost    Per-request cost of ``choose_scored`` for each policy, on the real
        scores of a 5,000-campaign sample bank, with a manifest whose evidence
        looks like a running system's (a few campaigns with logistic models on
        hundreds of sales, the rest base-rate models on a handful). Ratios are
        against the greedy policy of the same run. With ``--offers N`` (more
        than the campaigns) the campaigns run 1-5 landing pages, N offers in
        all (``bench_offers.py``'s directory): Thompson sampling then adds a
        page draw per offer, wider for pages with fewer sales. Each Thompson
        row is followed by the kernel that reads every candidate in every draw
        (``tests/reference/thompson_kernel.py``) on the same tables and the same
        random stream: the baseline of the branch and bound. The last rows
        are ``laplace-thompson`` (``choose_one`` with the request's slots), with
        posterior files written for the 20 fitted campaigns, then for every
        campaign (every offer's logit drawn: its worst case).

What each policy earns with learning is ``clickrouter replay`` (the demo's
loop offline, several seeds, against uniform random, the best single campaign
and the oracle on the same requests: docs/explanation/replay.md), e.g.
``clickrouter replay --policy gamma-thompson --thompson-scale 0.5 --seeds 0-9``.

endstate  What each policy earns on a finished demo's final models
        (``policy_endstate.py``): nothing is learned, so the gap to the greedy
        choice on the same models is the price of the policy's exploration.

    .venv/bin/python benchmarks/bench_policy.py cost [--campaigns 5000] [--requests 20000]
    .venv/bin/python benchmarks/bench_policy.py cost --offers 15000 --requests 2000
    .venv/bin/python benchmarks/bench_policy.py endstate --demo-out DIR [--candidate ...]

A candidate is ``thompson:SCALE:PROFILE_SPREAD[:PROFILE_SALES[:PAGE_SPREAD]]``,
``gamma-thompson:SCALE:PROFILE_SPREAD[:PROFILE_SALES[:PAGE_SPREAD]]`` (exact Gamma draws,
the prior untempered: ``GammaThompson``), ``epsilon-greedy:EPSILON`` or
``greedy``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clickrouter.errors import InvalidInput
from clickrouter.modelstore.manifest import CampaignRecord, Manifest
from clickrouter.posteriors import LaplacePosterior, posterior_path, save_posterior
from clickrouter.serving.engine.holder import LiveBank, load_live_bank
from clickrouter.serving.engine.policy import (
    GammaThompson,
    Policy,
    Thompson,
    choose_one,
    make_policy,
)
from support import make_sample_directory, random_profiles

sys.path.insert(0, str(Path(__file__).parent))
from bench_offers import paged_directory
from policy_endstate import load_end_state
from reference.thompson_kernel import thompson_draw


def parse_candidate(text: str, seed: int = 0) -> tuple[str, Policy]:
    """``name[:knob...]`` -> (label, a fresh policy object drawing from ``seed``)."""
    name, *knobs = text.split(":")
    try:
        values = [float(k) for k in knobs]
        if name in ("thompson", "gamma-thompson"):
            kind = Thompson if name == "thompson" else GammaThompson
            scale, spread, sales, page = (values + [1.0, 0.0, 30.0, 0.5][len(values) :])[:4]
            policy: Policy = kind(
                scale=scale, profile_spread=spread, profile_sales=sales, page_spread=page, seed=seed
            )
        elif name == "epsilon-greedy":
            policy = make_policy(name, values[0] if values else 0.05, seed=seed)
        else:
            policy = make_policy(name, 0.0, seed=seed)
    except (ValueError, IndexError, InvalidInput) as exc:
        sys.exit(f"--candidate {text!r}: {exc}")
    return text, policy


# -- cost ------------------------------------------------------------------------------


def running_manifest(live: LiveBank, rng: np.random.Generator) -> Manifest:
    """Evidence like a system a few cycles in: 20 logistic models, the rest base rates;
    a fitted campaign's first page has most of its sales, its last page none."""
    campaigns = live.bank.campaigns
    fitted = set(rng.choice(len(campaigns), 20, replace=False).tolist())
    records = {}
    for index, campaign in enumerate(campaigns):
        if index in fitted:
            positives = int(rng.integers(50, 2000))
            pages = [page.id for page in campaign.pages]
            split = [positives - 5 * (len(pages) - 1)] + [5] * (len(pages) - 2) + [0]
            records[campaign.id] = CampaignRecord(
                kind="logistic",
                positives=positives,
                page_positives=dict(zip(pages, split[: len(pages)], strict=True)),
            )
        else:
            records[campaign.id] = CampaignRecord(kind="base_rate", positives=int(rng.poisson(1)))
    return Manifest(campaigns=records)


def time_policy(
    policy: Policy, live: LiveBank, proba: np.ndarray, mask: np.ndarray, rounds: int
) -> float:
    """Seconds per ``choose_scored`` call over the request rows, best of ``rounds``.

    The thread's CPU time, not the wall clock: on a shared machine the wall
    clock counts the time slices other processes take.
    """
    payouts = live.bank.payouts_  # per column: one per offer
    best = np.where(mask, proba * payouts, -1.0).argmax(axis=1)
    n_eligible = mask.sum(axis=1)
    policy.choose_scored(live, proba[0], mask[0], int(best[0]), int(n_eligible[0]))  # JIT
    timings = []
    for _ in range(rounds):
        started = time.thread_time()
        for row in range(len(proba)):
            policy.choose_scored(live, proba[row], mask[row], int(best[row]), int(n_eligible[row]))
        timings.append((time.thread_time() - started) / len(proba))
    return min(timings)


def time_reference(
    policy: Thompson, live: LiveBank, proba: np.ndarray, mask: np.ndarray, rounds: int
) -> float:
    """:func:`time_policy` for the kernel that reads every candidate in every draw."""
    t = policy._prepare(live)
    tables = (t.payouts, t.level, t.factors, t.campaign_of, t.page_level, t.page_factors)
    budget = (t.high, t.low, policy.draws, policy.DRAW_BUDGET)
    thompson_draw(proba[0], mask[0], *tables, *budget)  # JIT
    timings = []
    for _ in range(rounds):
        started = time.thread_time()
        for row in range(len(proba)):
            thompson_draw(proba[row], mask[row], *tables, *budget)
        timings.append((time.thread_time() - started) / len(proba))
    return min(timings)


def write_posteriors(live: LiveBank, rng: np.random.Generator, fitted_only: bool) -> int:
    """Posterior files over the bank's space for the campaigns with a logistic record
    (``fitted_only``) or for every campaign; variances like a few hundred sales'."""
    space, written = live.bank.space, 0
    for campaign in live.bank.campaigns:
        record = live.manifest.campaigns.get(campaign.id)
        if fitted_only and (record is None or not record.is_logistic):
            continue
        columns = [(f, tuple(space.vocabularies[f][1:])) for f in space.fields]
        columns.append(("landing_page", tuple(page.id for page in campaign.pages)))
        n_slots = sum(len(categories) for _, categories in columns)
        posterior = LaplacePosterior(tuple(columns), rng.uniform(0.01, 0.5, n_slots), 0.05)
        save_posterior(posterior, posterior_path(live.directory / f"{campaign.id}.joblib"))
        written += 1
    return written


def time_laplace(
    live: LiveBank, proba: np.ndarray, mask: np.ndarray, slots: np.ndarray, rounds: int
) -> float:
    """:func:`time_policy` for ``laplace-thompson`` (a fresh one: it reads the files)."""
    policy = make_policy("laplace-thompson", 0.0, thompson_scale=0.5, seed=0)
    best = np.where(mask, proba * live.bank.payouts_, -1.0).argmax(axis=1)
    n_eligible = mask.sum(axis=1)
    choose_one(policy, live, proba[0], mask[0], int(best[0]), int(n_eligible[0]), slots[0])
    timings = []
    for _ in range(rounds):
        started = time.thread_time()
        for row in range(len(proba)):
            choose_one(
                policy, live, proba[row], mask[row], int(best[row]), int(n_eligible[row]),
                slots[row],
            )  # fmt: skip
        timings.append((time.thread_time() - started) / len(proba))
    return min(timings)


def run_cost(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
        models = Path(tmp) / "models"
        if args.offers > args.campaigns:
            directory = paged_directory(models, args.campaigns, args.offers)
        else:
            directory = make_sample_directory(models, args.campaigns)
        live = load_live_bank(directory, None)
        live = dataclasses.replace(live, manifest=running_manifest(live, rng))
        profiles = random_profiles(rng, args.requests)
        proba = live.bank.predict_proba(profiles)
        slots = live.bank.space.indices_many(live.bank.canonical(profiles))
        mask = rng.random(proba.shape) < 0.9  # eligibility: most offers, not all
        candidates = ["greedy", "epsilon-greedy:0.05", "thompson:1.0:0", "thompson:0.3:0"]
        candidates += ["thompson:0.3:0.5", "thompson:1.0:0.5", "gamma-thompson:0.5:0.5"]
        if len(live.bank.offers) > len(live.bank.campaigns):  # the page draw's own cost
            candidates += ["thompson:0.3:0:30:0", "thompson:0.3:0.5:30:0"]
        print(
            f"{args.campaigns} campaigns, {len(live.bank.offers)} offers, {args.requests} "
            f"requests, best of {args.rounds}"
        )
        baseline = None
        for text in candidates:
            label, policy = parse_candidate(text)
            seconds = time_policy(policy, live, proba, mask, args.rounds)
            baseline = baseline or seconds
            print(
                f"  {label:<20} {seconds * 1e6:8.2f} us/request  {seconds / baseline:6.1f}x greedy"
            )
            if isinstance(policy, Thompson):
                every = time_reference(policy, live, proba, mask, args.rounds)
                print(
                    f"  {'  reading every one':<20} {every * 1e6:8.2f} us/request"
                    f"  {every / baseline:6.1f}x greedy ({every / seconds:.1f}x the kernel)"
                )
        for fitted_only in (True, False):
            written = write_posteriors(live, rng, fitted_only)
            seconds = time_laplace(live, proba, mask, slots, args.rounds)
            label = f"laplace-thompson ({written} posteriors)"
            print(
                f"  {label:<20} {seconds * 1e6:8.2f} us/request"
                f"  {seconds / (baseline or seconds):6.1f}x greedy"
            )
        live.bank.close()


def run_endstate(args: argparse.Namespace) -> None:
    if not (args.demo_out / "report.json").is_file():
        sys.exit(
            f"--demo-out {str(args.demo_out)!r}: no report.json (not a finished demo's output)"
        )
    if args.requests < 1:
        sys.exit(f"--requests: expected a positive count, got {args.requests}")
    state = load_end_state(args.demo_out, args.requests)
    best = state.greedy()
    greedy = state.earned(best)
    print(
        f"{args.demo_out}: final version {state.live.directory.name}, {args.requests} requests; "
        f"greedy {greedy:.0f} per 1k clicks, oracle {state.oracle():.0f}"
    )
    for text in args.candidate:
        label, policy = parse_candidate(text, seed=1)
        chosen = state.choices(policy, best)
        earned = state.earned(chosen)
        share = float((chosen == best).mean())
        print(
            f"  {label:<22} {earned:6.0f}  {earned / greedy - 1:+6.1%} vs greedy"
            f"  (the greedy choice on {share:.0%} of requests)"
        )
    state.live.bank.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    cost = sub.add_parser("cost", help="per-request cost of each policy")
    cost.add_argument("--campaigns", type=int, default=5000)
    cost.add_argument("--offers", type=int, default=0, help="1-5 pages each, N offers in all")
    cost.add_argument("--requests", type=int, default=20_000)
    cost.add_argument("--rounds", type=int, default=3)
    cost.set_defaults(handler=run_cost)
    end = sub.add_parser("endstate", help="each policy's cost on a finished demo's final models")
    end.add_argument("--demo-out", type=Path, required=True, help="a demo's --out directory")
    end.add_argument("--requests", type=int, default=20_000)
    end.add_argument("--candidate", action="append", default=None)
    end.set_defaults(handler=run_endstate)
    args = parser.parse_args()
    if args.part == "endstate":
        args.candidate = args.candidate or ["thompson:0.3:0.5:30", "thompson:0.3:0"]
    args.handler(args)


if __name__ == "__main__":
    main()
