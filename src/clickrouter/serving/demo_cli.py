"""``clickrouter demo`` (interim): a sample model directory, a few requests, decisions.

The full continuous-loop demo replaces this once every stage exists.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser("demo", help="run the demo on embedded defaults")
    demo.add_argument("--out", type=Path, default=None, help="where to write the model directory")
    demo.add_argument("--campaigns", type=int, default=5000)
    demo.set_defaults(handler=run_demo)


REQUESTS: list[dict[str, Any]] = [
    {
        "country": "France",
        "user_agent": "Mozilla/5.0 (Linux; Android 13; SM-G991B) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0 Mobile Safari/537.36",
        "provider": "carrier-1",
        "ts": "2026-11-26T19:30:00Z",
    },
    {
        "country": "USA",
        "os": "iOS",
        "device": "device-3",
        "browser": "Mobile Safari",
        "provider": "carrier-0",
        "ts": 1780000000,
    },
    {"country": "076", "os": "android", "device": "device-0", "browser": "chrome mobile"},
    {"country": "Narnia", "device": "never-seen-phone"},
]


def run_demo(args: argparse.Namespace) -> int:
    from clickrouter.serving.bank import ModelBank
    from clickrouter.serving.sample import make_sample_directory

    console = Console()
    out = args.out or Path(tempfile.mkdtemp(prefix="clickrouter-demo-"))
    with console.status(f"building {args.campaigns} sample campaign models in {out}"):
        make_sample_directory(out, args.campaigns)
    started = time.perf_counter()
    with console.status("loading and compiling the ModelBank"):
        bank = ModelBank.from_directory(out)
    console.print(f"{bank} loaded in {time.perf_counter() - started:.1f} s")
    table = Table("request", "campaign", "P(sale)", "payout", "expected value", "score time")
    with bank:
        for request in REQUESTS:
            t0 = time.perf_counter()
            decision = bank.decide(request)
            elapsed = (time.perf_counter() - t0) * 1e6
            table.add_row(
                str(request.get("country")),
                decision.campaign_id,
                f"{decision.probability:.2e}",
                f"{decision.payout:.2f}",
                f"{decision.expected_value:.2e}",
                f"{elapsed:.0f} us",
            )
    console.print(table)
    return 0
