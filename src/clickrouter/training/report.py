"""What a training cycle did (:class:`CycleReport`) and how the CLI shows it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from clickrouter.training.fitting import FitResult


@dataclass
class CycleReport:
    """Counts of one cycle. ``version`` is the live version after it.

    trained: campaigns fitted from data this cycle (logistic or base-rate);
    promoted: new models published (the guard let them through);
    kept: the guard kept the served model; base_rate: published base-rate
    models; failed: fits that raised (served model kept, else base rate);
    unchanged: campaigns whose data did not change (file carried over).
    """

    version: str | None
    published: bool
    campaigns: int = 0
    trained: int = 0
    promoted: int = 0
    kept: int = 0
    base_rate: int = 0
    failed: int = 0
    unchanged: int = 0
    rows: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Stopwatch:
    """Seconds spent in each named stage of a cycle."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def cycle_report(
    version: str, ids: list[str], results: list[FitResult], carried: int, rows: int
) -> CycleReport:
    decisions = [r.decision for r in results]
    return CycleReport(
        version,
        True,
        campaigns=len(ids),
        trained=len(results),
        promoted=decisions.count("promoted"),
        kept=decisions.count("kept"),
        base_rate=sum(r.kind == "base_rate" and r.decision == "promoted" for r in results),
        failed=decisions.count("failed"),
        unchanged=carried,
        rows=rows,
        failures={r.campaign_id: r.reason for r in results if r.decision == "failed"},
    )


def summary_table(report: CycleReport) -> Table:
    title = f"training cycle -> {report.version or '(nothing published)'}"
    if not report.published:
        title += " (no change)"
    table = Table(title=title)
    for name in ("campaigns", "trained", "promoted", "kept", "base-rate", "failed", "unchanged"):
        table.add_column(name, justify="right")
    table.add_column("rows", justify="right")
    table.add_column("time", justify="right")
    table.add_row(
        *(
            str(v)
            for v in (
                report.campaigns,
                report.trained,
                report.promoted,
                report.kept,
                report.base_rate,
                report.failed,
                report.unchanged,
            )
        ),
        f"{report.rows:,}",
        f"{report.seconds:.1f} s",
    )
    return table


class ProgressSink(Protocol):
    def advance(self, n: int) -> None: ...


class _Silent:
    def advance(self, n: int) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)


@contextmanager
def progress_bar(console: Console | None, total: int) -> Iterator[ProgressSink]:
    """A campaigns-fitted bar on ``console`` (silent when None)."""
    if console is None:
        yield _Silent()
        return
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress("fitting campaigns", *columns, console=console, transient=True) as progress:
        yield _Bar(progress, progress.add_task("fit", total=total))
