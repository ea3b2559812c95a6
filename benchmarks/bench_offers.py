"""Offers benchmark: per-request latency of a bank whose columns are (campaign, page) offers.

Two model directories of 5,000 campaigns each, measured in the same run and
interleaved (so the machine's load shifts both alike):

* **one page**: every campaign has one landing page (the short form) and its
  model reads the profile only: the bank as it was before pages;
* **offers**: the campaigns have 1 to 5 pages, 15,000 offers in all, some pages
  targeted, and every model reads the ``landing_page`` input through a
  one-hot encoder beside the profile's.

For each: the scoring kernel alone (slots given), ``predict_proba`` of one
canonical profile end to end, ``decide`` (eligibility, top-10 ranking), the
compiled table's memory and the cold compile. Prints the medians and the ratio
offers / one page. ``--clock thread`` times each call in the calling thread's
CPU time instead of wall time, which other processes on a loaded machine
disturb less.

    .venv/bin/python benchmarks/bench_offers.py [--campaigns 5000] [--offers 15000] [--clock thread]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from clickrouter import ModelBank
from clickrouter.catalogue import PAGE_INPUT
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS, profile_frame
from clickrouter.serving import kernel
from support import make_sample_directory, random_profiles

PAGE_IDS = ("en", "fr", "lite", "form", "billing")


def page_counts(rng: np.random.Generator, campaigns: int, offers: int) -> np.ndarray:
    """1 to 5 pages per campaign summing to ``offers`` (most campaigns near the mean)."""
    if not campaigns <= offers <= 5 * campaigns:
        raise SystemExit(f"--offers must be between {campaigns} and {5 * campaigns}")
    counts = np.ones(campaigns, dtype=np.int64)
    while counts.sum() < offers:
        room = np.flatnonzero(counts < 5)
        grow = rng.choice(room, min(len(room), int(offers - counts.sum())), replace=False)
        counts[grow] += 1
    return counts


def paged_template(rng: np.random.Generator) -> Any:
    """A fitted pipeline reading the profile and the page id."""
    frame = profile_frame(random_profiles(rng, 2000))
    frame[PAGE_INPUT] = pd.Series(rng.choice(PAGE_IDS, len(frame)), dtype=object)
    labels = rng.random(len(frame)) < 0.2
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), [*CATEGORICAL_FIELDS, PAGE_INPUT]),
            (StandardScaler(), list(NUMERIC_FIELDS)),
        ),
        LogisticRegression(max_iter=500),
    )
    return model.fit(frame, labels)


def paged_directory(path: Path, campaigns: int, offers: int, seed: int = 0) -> Path:
    """``campaigns`` models reading the page, with ``offers`` pages in their catalogue."""
    if (path / "campaigns.json").exists():
        return path
    started = time.perf_counter()
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    template = paged_template(rng)
    counts = page_counts(rng, campaigns, offers)
    catalog = []
    for i, n_pages in enumerate(counts):
        cid = f"c{i:05d}"
        model = copy.deepcopy(template)
        final = model.steps[-1][1]
        coef = np.zeros_like(final.coef_)
        active = rng.random(coef.shape[1]) < 0.15
        coef[0, active] = rng.normal(0.0, 1.0, int(active.sum()))
        final.coef_ = coef
        base_rate = float(10 ** rng.uniform(-6, -3))
        final.intercept_ = np.array([np.log(base_rate / (1 - base_rate))])
        joblib.dump(model, path / f"{cid}.joblib")
        pages = []
        for page_id in rng.choice(PAGE_IDS, int(n_pages), replace=False):
            page: dict[str, Any] = {
                "id": str(page_id),
                "url": f"https://shop.example/{cid}/{page_id}?k={{click_id}}",
            }
            if rng.random() < 0.2:
                page["targeting"] = {"countries": {"allow": ["FR", "DE", "ES"]}}
            pages.append(page)
        pages[0].pop("targeting", None)  # one page every request may see
        catalog.append(
            {"id": cid, "landing_pages": pages, "payout": round(float(rng.uniform(1, 50)), 2)}
        )
    (path / "campaigns.json").write_text(json.dumps(catalog), encoding="utf-8")
    print(f"  built {campaigns} paged models in {time.perf_counter() - started:.0f} s", flush=True)
    return path


class Subject:
    """One bank and the request-sized calls measured on it."""

    def __init__(self, name: str, path: Path, profiles: list[dict[str, Any]], cache: Path) -> None:
        self.name = name
        started = time.perf_counter()
        self.bank = ModelBank.from_directory(path, cache_dir=cache)
        self.load_s = time.perf_counter() - started
        self.canonical = self.bank.canonical(profiles)
        self.slots = [self.bank.space.indices(p) for p in self.canonical]
        self.out = np.empty(len(self.bank.offers))
        self.table = np.asarray(self.bank.assembly_.table)
        self.times: dict[str, list[float]] = {"kernel": [], "predict_proba": [], "decide": []}
        self._i = 0

    def calls(self) -> dict[str, Callable[[], Any]]:
        i = self._i = (self._i + 1) % len(self.canonical)
        profile, slots = self.canonical[i], self.slots[i]
        return {
            "kernel": lambda: kernel.probabilities_one(self.table, slots, self.out),
            "predict_proba": lambda: self.bank.predict_proba([profile]),
            "decide": lambda: self.bank.decide(profile),
        }

    def summary(self) -> dict[str, Any]:
        medians = {k: statistics.median(v) * 1e6 for k, v in self.times.items()}
        return {
            "campaigns": len(self.bank.campaigns),
            "offers": len(self.bank.offers),
            "slots": self.bank.space.n_slots,
            "memory_mb": self.bank.memory_bytes / 1e6,
            "load_s": self.load_s,
            **{f"{k}_us": v for k, v in medians.items()},
        }


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": time.thread_time}


def measure(subjects: list[Subject], rounds: int, per_round: int, clock: str = "wall") -> None:
    """Interleave the subjects round by round; every call timed on its own by ``clock``."""
    now = CLOCKS[clock]
    for subject in subjects:  # warm: numba dispatch, caches
        for call in subject.calls().values():
            call()
    for _ in range(rounds):
        for subject in subjects:
            for _ in range(per_round):
                for name, call in subject.calls().items():
                    started = now()
                    call()
                    subject.times[name].append(now() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--campaigns", type=int, default=5000)
    parser.add_argument("--offers", type=int, default=15000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--out", type=Path, default=Path("bench-out/offers"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    profiles = random_profiles(np.random.default_rng(123), 5000)
    one_page_dir = args.out / f"one-page-{args.campaigns}"
    if not (one_page_dir / "campaigns.json").exists():
        make_sample_directory(one_page_dir, args.campaigns, seed=args.campaigns)
    paged_dir = paged_directory(
        args.out / f"offers-{args.campaigns}-{args.offers}", args.campaigns, args.offers
    )
    cache = args.out / "cache"
    subjects = [
        Subject("one page", one_page_dir, profiles, cache),
        Subject("offers", paged_dir, profiles, cache),
    ]
    measure(subjects, args.rounds, args.per_round, args.clock)
    results = {s.name: s.summary() for s in subjects}
    one, paged = results["one page"], results["offers"]
    results["ratio offers / one page"] = {
        k: paged[k] / one[k] for k in ("kernel_us", "predict_proba_us", "decide_us", "memory_mb")
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\ntimes: medians, {args.clock} clock")
    print(f"| what | one page ({one['offers']:,} offers) | offers ({paged['offers']:,}) | ratio |")
    print("|---|---:|---:|---:|")
    for key, label in (
        ("kernel_us", "kernel alone, us (median)"),
        ("predict_proba_us", "predict_proba one profile, us (median)"),
        ("decide_us", "decide one profile, us (median)"),
        ("memory_mb", "compiled bank, MB"),
    ):
        ratio = results["ratio offers / one page"][key]
        print(f"| {label} | {one[key]:.1f} | {paged[key]:.1f} | {ratio:.2f}x |")
    loads = f"{one['load_s']:.1f} | {paged['load_s']:.1f}"
    print(f"| load, s (first run: compile; then: cache) | {loads} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
