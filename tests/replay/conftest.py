"""A tiny world for the replay tests: 40 campaigns, 8,000 clicks, one day."""

from __future__ import annotations

from clickrouter.demo.config import DemoConfig
from clickrouter.replay.settings import ReplaySettings

TINY = ReplaySettings(
    demo=DemoConfig(campaigns=40, seed=3), clicks=8000, days=1.0, oracle_sample=1000, bins=6
)
TINY_ARGS = [
    "replay", "--campaigns", "40", "--seed", "3", "--clicks", "8000", "--days", "1",
    "--oracle-sample", "1000", "--bins", "6",
]  # fmt: skip
