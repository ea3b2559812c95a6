"""What trusting model files and the bank cache costs, as ratios against a baseline of the same run.

On one sample directory of ``--campaigns`` models:

- read: ``read_directory`` judging each pickle's ownership (the default) and
  with a signed manifest (each file hashed), against the operator switch
  (``trust_all``: no judging at all), runs interleaved; and the judging alone
  (:func:`untrusted_pickles` over every file: stat, and sha256 when signed);
- cache hit: ``load_cached`` (MAC of the entry, sha256 of the mapped table)
  against mapping the same table and decoding the same ``meta.json`` unchecked.

Each figure is the median of ``--repeats`` runs.

    .venv/bin/python benchmarks/bench_trust.py [--campaigns 5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from clickrouter import ModelBank
from clickrouter.modelstore import write_manifest
from clickrouter.modelstore.signing import sign_manifest
from clickrouter.serving.cache import directory_key, load_cached
from clickrouter.serving.directory import read_directory, untrusted_pickles
from clickrouter.serving.trust import ModelTrust
from support import make_sample_directory

KEY = b"bench-key-" + b"x" * 32


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-trust-") as tmp:
        root = make_sample_directory(Path(tmp) / "v1", args.campaigns, seed=0)
        write_manifest(root, {"version": "v1"})
        sign_manifest(root, KEY)
        modes = {
            "read, trust_all (baseline)": ModelTrust(trust_all=True),
            "read, ownership (default)": ModelTrust(),
            "read, signed manifest": ModelTrust(signing_key=KEY),
        }
        times: dict[str, list[float]] = {label: [] for label in modes}
        for _ in range(args.repeats):  # interleaved: load on the shared machine hits all alike
            for label, trust in modes.items():
                times[label].append(
                    median_seconds(lambda t=trust: read_directory(root, trust=t), 1)
                )
        print(f"{args.campaigns} campaigns, median of {args.repeats}")
        baseline = statistics.median(times["read, trust_all (baseline)"])
        for label, runs in times.items():
            seconds = statistics.median(runs)
            print(f"  {label:34s} {seconds:7.3f} s  x{seconds / baseline:.3f}")
        paths = sorted(root.glob("*.joblib"))
        for label, trust in list(modes.items())[1:]:
            judge = label.replace("read", "judging only")
            seconds = median_seconds(
                lambda t=trust: untrusted_pickles(root, paths, t), args.repeats
            )
            print(f"  {judge:34s} {seconds:7.3f} s  ({seconds / baseline:.1%} of a read)")

        cache = Path(tmp) / "cache"
        ModelBank.from_directory(root, cache_dir=cache).close()
        key = directory_key(root)
        entry = cache / key

        def unchecked() -> None:
            msgspec.json.decode((entry / "meta.json").read_bytes())
            np.load(entry / "table.npy", mmap_mode="r", allow_pickle=False)

        plain = median_seconds(unchecked, args.repeats * 5)
        checked = median_seconds(lambda: load_cached(cache, key, root), args.repeats * 5)
        table_mb = (entry / "table.npy").stat().st_size / 1e6
        print(f"  cache hit, unchecked (baseline)    {plain * 1e3:7.1f} ms")
        print(
            f"  cache hit, MAC + table sha256      {checked * 1e3:7.1f} ms  "
            f"x{checked / plain:.2f} (+{(checked - plain) * 1e3:.1f} ms, table {table_mb:.1f} MB)"
        )


if __name__ == "__main__":
    main()
