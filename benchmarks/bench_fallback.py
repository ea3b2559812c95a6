"""What a broken CURRENT costs a starting predictor, as a ratio against a healthy start.

A store holds v1 (``--campaigns`` sample campaigns). Each round starts a
:class:`~clickrouter.serving.engine.holder.BankHolder` (the predictor's first
load: compile in a fork-server child, map the cached table, warm up) on:

- healthy: ``CURRENT`` names v1;
- broken: ``CURRENT`` names v2, a copy of v1 with one model file corrupted, so
  the holder fails on v2 and then serves v1.

Both with a cold bank cache (a new cache directory: a first start) and a warm
one (the cache of the previous start of the same kind: a restart). Rounds
alternate healthy and broken, after one untimed start (the fork server and
numba's compilation are paid once per process); medians of ``--repeats``.

    .venv/bin/python benchmarks/bench_fallback.py [--campaigns 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clickrouter.modelstore.store import ModelStore
from clickrouter.serving.engine.holder import BankHolder
from support import make_sample_directory


def publish(store: ModelStore, directory: Path, version: str) -> None:
    with store.staging(version) as (_, staging):
        for file in directory.iterdir():
            shutil.copy2(file, staging / file.name)


def make_stores(root: Path, campaigns: int) -> tuple[Path, Path]:
    models = make_sample_directory(root / "models", campaigns)
    healthy, broken = ModelStore(root / "healthy"), ModelStore(root / "broken")
    publish(healthy, models, "v1")
    healthy.set_current("v1")
    publish(broken, models, "v1")
    corrupt = root / "corrupt"
    shutil.copytree(models, corrupt)
    next(iter(sorted(corrupt.glob("*.joblib")))).write_bytes(b"not a pickle")
    publish(broken, corrupt, "v2")
    broken.set_current("v2")
    return healthy.root, broken.root


def start(store: Path, cache: Path) -> tuple[float, str]:
    """Seconds until the first load serves a version, and the version served."""

    async def first_load() -> tuple[float, str]:
        holder = BankHolder(store, cache_dir=cache)
        started = time.perf_counter()
        live = await holder.first_load()
        seconds = time.perf_counter() - started
        holder.close()
        return seconds, str(live.store_version)

    return asyncio.run(first_load())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fallback-"))
    try:
        stores = dict(zip(("healthy", "broken"), make_stores(root, args.campaigns), strict=True))
        start(stores["healthy"], root / "cache-warm-up")  # fork server, numba: paid once
        times: dict[tuple[str, str], list[float]] = {}
        for round_no in range(args.repeats):
            for kind, store in stores.items():
                cold = root / f"cache-{kind}-{round_no}"
                for temperature in ("cold", "warm"):  # warm: the same cache again
                    seconds, served = start(store, cold)
                    if served != "v1":
                        sys.exit(f"{kind}: served {served}, expected v1")
                    times.setdefault((kind, temperature), []).append(seconds)
        print(f"{args.campaigns} campaigns, median of {args.repeats} (seconds to serving)")
        for temperature in ("cold", "warm"):
            healthy = statistics.median(times[("healthy", temperature)])
            broken = statistics.median(times[("broken", temperature)])
            print(
                f"  {temperature} cache: healthy {healthy:.2f}  broken CURRENT {broken:.2f}"
                f"  ratio {broken / healthy:.2f}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
