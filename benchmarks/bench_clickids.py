"""What issuing MAC'd click ids costs a decision, as a ratio against a baseline of the same run.

``PredictorService.decide`` on a sample bank of ``--campaigns`` models, in
process (no HTTP), interleaved rounds of ``--n`` decisions each:

- baseline: the request carries its own ``click_id`` (32 hex digits, like the
  ids issued before they carried a MAC; kept as is);
- issued: the predictor issues the id (prefix, counter, issue time, keyed
  BLAKE2b tag), as for every request without one.

Also the cost of checking an id (what each postback pays). Medians of ``--repeats``.

    .venv/bin/python benchmarks/bench_clickids.py [--campaigns 1000] [--n 5000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from clickrouter.serving.engine.clickids import ClickIds
from clickrouter.serving.engine.decision import DecisionPath
from clickrouter.serving.engine.durability import open_recorder
from clickrouter.serving.engine.holder import BankHolder
from clickrouter.serving.engine.policy import make_policy
from clickrouter.serving.engine.service import PredictorService
from support import make_sample_directory

PROFILE = {"country": "FR", "os": "android", "device": "device-1", "browser": "chrome mobile"}


def per_call(run: object, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        run()  # type: ignore[operator]
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = make_sample_directory(Path(tmp) / "models", args.campaigns)
        decisions = DecisionPath(make_policy("greedy", 0.0))
        holder = BankHolder(models, prepare=decisions.prepare)
        sink = open_recorder(None, "bench-clickids")
        ids = ClickIds(secret="bench-click-secret-0123456789")
        service = PredictorService(holder, decisions, sink, click_ids=ids)
        asyncio.run(holder.reload())
        own, issued = {**PROFILE, "click_id": "0123456789abcdef" * 2}, dict(PROFILE)
        rounds: dict[str, list[float]] = {"baseline": [], "issued": []}
        for _ in range(args.repeats):
            rounds["baseline"].append(per_call(lambda: service.decide(dict(own)), args.n))
            rounds["issued"].append(per_call(lambda: service.decide(dict(issued)), args.n))
        click_id = ids.issue(time.time())
        verify = statistics.median(
            per_call(lambda: ids.issued_at(click_id), args.n) for _ in range(args.repeats)
        )
        sink.close()
        holder.close()
    base, new = (statistics.median(rounds[k]) for k in ("baseline", "issued"))
    print(f"decide, caller's click id : {base * 1e6:8.2f} us")
    print(f"decide, issued click id   : {new * 1e6:8.2f} us  (ratio {new / base:.3f})")
    print(f"check one issued id       : {verify * 1e6:8.2f} us")


if __name__ == "__main__":
    main()
