"""The consumer's live progress line (rich) and final summary table."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table


class ProgressDisplay:
    """A one-line live status on stderr, refreshed at most 4 times a second."""

    def __init__(self, source: str, *, enabled: bool = True) -> None:
        self.source = source
        self.enabled = enabled and sys.stderr.isatty()
        self._console = Console(stderr=True)
        self._live: Live | None = None
        self._started = time.monotonic()
        self._shown = 0.0

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            self._live = Live(console=self._console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, stats: dict[str, int]) -> None:
        now = time.monotonic()
        if self._live is None or now - self._shown < 0.25:
            return
        self._shown = now
        rate = stats["events_read"] / max(now - self._started, 1e-9)
        self._live.update(
            f"[bold]{self.source}[/]  read {stats['events_read']:,} ({rate:,.0f}/s)  "
            f"labelled {stats['records_labelled']:,} (in files {stats['records_written']:,})  "
            f"pending {stats['pending']:,}  "
            f"late {stats['late_sales'] + stats['late_clicks']:,}  "
            f"dead {stats['dead_lettered']:,}"
        )


def print_summary(stats: dict[str, int], rows: Sequence[tuple[str, str]]) -> None:
    table = Table(title="consume: summary", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, key in rows:
        table.add_row(label, f"{stats.get(key, 0):,}")
    Console().print(table)
