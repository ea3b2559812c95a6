"""Reload benchmark: a new version with a few changed files, through the compile memo vs in full.

Version A (``--campaigns`` campaigns) is loaded once with a bank cache,
which fills the per-file compile memo. Its models are ``--models sample``
(pipelines of several kinds: scalers, infrequent categories, SGD; every one
probed) or ``--models trainer`` (what the trainer publishes: one-hot pipelines
read by the one-hot reader, a third of the campaigns with three landing pages,
a fifth still at one shared base rate). Each new version is a copy of A with
``--changed`` files retrained (new intercepts), loaded three ways:

- full: ``ModelBank.from_directory`` without a cache (unpickle and probe every model),
- memo: ``ModelBank.from_directory`` with A's cache (only changed files are unpickled),
- service: ``load_live_bank`` with A's cache, what the predictor's hot reload runs
  (compiles in a spawned child, then maps the cached table).

Every memo bank is checked to score bit-identically to the full bank. Ratios are
full / memo from the same run.

    .venv/bin/python benchmarks/bench_reload.py [--campaigns 5000] [--changed 10] [--repeats 3]
        [--models sample|trainer]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np

from clickrouter import ModelBank
from clickrouter.features import FeatureSpace
from clickrouter.serving.engine.holder import load_live_bank
from clickrouter.training.models import Transformers, base_rate_pipeline, logistic_pipeline
from support import make_sample_directory, random_profiles


def make_trainer_directory(path: Path, n_campaigns: int, seed: int = 0) -> Path:
    """A model directory of the trainer's pipelines over the sample profiles' space."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    transformers = Transformers(FeatureSpace.fit(random_profiles(rng, 5000)))
    base_rate = base_rate_pipeline(transformers(), 0.002)
    catalog = []
    for i in range(n_campaigns):
        cid = f"c{i:05d}"
        pages = (f"{cid}-a", f"{cid}-b", f"{cid}-c") if i % 3 == 0 else ()
        if i % 5 == 4:
            model = base_rate
        else:
            transformer = transformers(pages)
            width = sum(len(c) for _, e, _ in transformer.transformers_ for c in e.categories_)
            coef = np.where(rng.random(width) < 0.3, rng.normal(0, 0.5, width), 0.0)
            model = logistic_pipeline(transformer, coef, float(rng.uniform(-8, -4)))
        write_plain(model, path / f"{cid}.joblib")
        entry: dict[str, object] = {"id": cid, "payout": 1.0}
        if pages:
            urls = [{"id": p, "url": f"https://shop.example/{p}?c={{click_id}}"} for p in pages]
            entry["landing_pages"] = urls
        else:
            entry["landing_page"] = f"https://shop.example/{cid}?c={{click_id}}"
        catalog.append(entry)
    (path / "campaigns.json").write_text(json.dumps(catalog), encoding="utf-8")
    return path


def write_plain(model: object, path: Path) -> None:
    """A model file as the trainer writes it: a plain pickle, which joblib reads."""
    path.write_bytes(pickle.dumps(model, protocol=5))


def new_version(
    base: Path, name: str, changed: int, rng: np.random.Generator, plain: bool = False
) -> Path:
    """A copy of ``base`` with ``changed`` model files retrained (shifted intercepts)."""
    target = base.parent / name
    shutil.copytree(base, target)
    files = sorted(target.glob("*.joblib"))
    for index in rng.choice(len(files), changed, replace=False):
        model = joblib.load(files[index])
        final = model.steps[-1][1]
        final.intercept_ = final.intercept_ + rng.normal(0, 0.5)
        if plain:
            write_plain(model, files[index])
        else:
            joblib.dump(model, files[index])
    return target


def timed_load(path: Path, cache: Path | None) -> tuple[float, ModelBank]:
    started = time.perf_counter()
    bank = ModelBank.from_directory(path, cache_dir=cache)
    return time.perf_counter() - started, bank


def check_identical(full: ModelBank, memo: ModelBank) -> None:
    profiles = random_profiles(np.random.default_rng(1), 200)
    a, b = full.predict_proba(profiles), memo.predict_proba(profiles)
    if not np.array_equal(a.view(np.uint64), b.view(np.uint64)):
        sys.exit(f"memo bank differs from full bank: max |diff| {np.abs(a - b).max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=5000)
    parser.add_argument("--changed", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", choices=("sample", "trainer"), default="sample")
    args = parser.parse_args()
    plain = args.models == "trainer"
    make = make_trainer_directory if plain else make_sample_directory
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        root = Path(tmp)
        base = make(root / "A", args.campaigns)
        cache = root / "cache"
        first_plain, bank = timed_load(base, None)
        bank.close()
        first_memo, bank = timed_load(base, cache)  # also writes every memo entry
        bank.close()
        full, memo, service = [], [], []
        for k in range(args.repeats):
            version = new_version(base, f"B{k}", args.changed, rng, plain)
            t_full, full_bank = timed_load(version, None)
            t_memo, memo_bank = timed_load(version, cache)
            check_identical(full_bank, memo_bank)
            full_bank.close()
            memo_bank.close()
            served = new_version(base, f"S{k}", args.changed, rng, plain)
            live = load_live_bank(served, cache)
            live.bank.close()
            full.append(t_full)
            memo.append(t_memo)
            service.append(live.load_seconds)
        report(args, first_plain, first_memo, full, memo, service)


def report(
    args: argparse.Namespace,
    first_plain: float,
    first_memo: float,
    full: list[float],
    memo: list[float],
    service: list[float],
) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{args.campaigns} {args.models} campaigns, {args.changed} changed files,"
        f" load average {load}"
    )
    print(f"first load of A: {first_plain:.2f} s plain, {first_memo:.2f} s writing the memo")
    row = "{:<42} {:>8} {:>8} {:>8}"
    print(row.format("reload of a new version (s)", "median", "min", "max"))
    for name, values in (
        ("full (no cache)", full),
        ("memo (from_directory)", memo),
        ("service (load_live_bank, child + map)", service),
    ):
        print(
            row.format(
                name,
                f"{statistics.median(values):.2f}",
                f"{min(values):.2f}",
                f"{max(values):.2f}",
            )
        )
    print(f"full / memo: {statistics.median(full) / statistics.median(memo):.1f}x")
    print(f"full / service: {statistics.median(full) / statistics.median(service):.1f}x")


if __name__ == "__main__":
    main()
