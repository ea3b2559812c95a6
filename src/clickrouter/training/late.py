"""Delayed feedback: the sales that arrived after the attribution window count too.

The consumer labels a click 1 only when its sale arrives within the
attribution window ``w``; a later sale goes to the dataset's ``late_sales``
sidecar. In the simulator two thirds of the sales arrive that late, and a
campaign on a handful of sales needs every one of them: a click of age ``a``
has had time to show the share ``F(a)`` of its eventual sales, so the sales a
campaign's clicks showed by the cut-off (within the window or after it)
estimate ``q * sum_i F(max(a_i, w)) / F(w)``, with ``q`` its rate within the
window, the scale every model is on. Base-rate models divide by that
*exposure* instead of the click count (:func:`coverage_weights`).

The curve ``F(a) / F(w)`` is estimated from the data, pooled over campaigns
(delays do not depend on the campaign): among the clicks at least ``a`` old,
the sales with a delay of at most ``a`` over the sales within the window.
Both counts come from the same clicks, so a mix of campaigns that changes
over time (the cold start's clicks are the oldest) does not bias it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import numpy as np
import pandas as pd

from clickrouter.errors import InvalidInput

SIDECAR = "late_sales"
FEEDBACK_COLUMNS = ("click_id", "sale_ts")  # record columns it reads beside the training ones
CURVE_POINTS = 48
# a curve point needs this many window sales among clicks old enough; older
# ages hold the last reliable value (it is never allowed to fall)
MIN_CURVE_SALES = 30
# a late sale whose click is not (yet) among the records of the training
# window is looked up again this many cycles, then dropped and counted as
# unmatched (a sale for an unknown click, or for one the window has left)
RESOLVE_ATTEMPTS = 3


class Feedback(NamedTuple):
    """Per record of a cycle's frame: a late sale seen by the cut-off (0/1), and its exposure."""

    late: np.ndarray
    exposure: np.ndarray


class _Sale(msgspec.Struct):
    click_id: str
    ts: float


class _LateLine(msgspec.Struct):
    event: _Sale


_decoder = msgspec.json.Decoder(_LateLine)


class LateSales:
    """The committed late sales of a dataset, each resolved to its click's campaign.

    Read incrementally: :meth:`update` reads the sidecar's lines committed
    since the last call and looks their clicks up among the records. A late
    sale counts only for a click labelled 0 (a second sale of a sold click
    does not), and only the first late sale of a click.
    """

    def __init__(self, data: Any) -> None:
        for method in ("sidecar_path", "sidecar_length", "lookup_clicks"):
            if not callable(getattr(data, method, None)):
                raise InvalidInput(
                    "training setting 'attribution_seconds': late sales need a"
                    f" DataManager dataset (its data has no {method})"
                )
        self.data = data
        self.offset = 0
        self.pending: dict[str, tuple[float, int]] = {}  # click_id -> (sale ts, attempts)
        self.campaign: dict[str, str] = {}  # click_id -> campaign of its resolved late sale
        self.sale_ts: dict[str, float] = {}  # click_id -> its first late sale's ts
        self.click_ts: dict[str, float] = {}  # click_id -> the click's ts (to forget it)
        self.unmatched = 0
        self.malformed = 0

    def update(self, since: float | None = None) -> None:
        """Read the newly committed lines and find their clicks among the records
        (only in files with clicks at or after ``since``: the training window)."""
        self._read_new_lines()
        self._resolve(since)
        if since is not None:
            self._forget_before(since)

    def counts(self, end: float) -> dict[str, int]:
        """Late sales per campaign seen by ``end``."""
        out: dict[str, int] = {}
        for click_id, ts in self.sale_ts.items():
            if ts <= end:
                cid = self.campaign[click_id]
                out[cid] = out.get(cid, 0) + 1
        return out

    def sale_times(self, click_ids: pd.Series, end: float) -> np.ndarray:
        """Per click: its late sale's ts when one arrived by ``end``, else NaN."""
        ts = click_ids.map(self.sale_ts).to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(ts <= end, ts, np.nan)

    def _read_new_lines(self) -> None:
        committed = self.data.sidecar_length(SIDECAR)
        if committed <= self.offset:
            return
        with open(self.data.sidecar_path(SIDECAR), "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(committed - self.offset)
        self.offset += len(chunk)
        for line in chunk.splitlines():
            try:
                sale = _decoder.decode(line).event
            except msgspec.DecodeError:
                self.malformed += 1  # the consumer writes whole lines: a foreign file
                continue
            known = self.pending.get(sale.click_id)
            if sale.click_id not in self.sale_ts and (known is None or sale.ts < known[0]):
                self.pending[sale.click_id] = (sale.ts, 0)

    def _resolve(self, since: float | None) -> None:
        if not self.pending:
            return
        found = self.data.lookup_clicks(list(self.pending), since)
        for click_id, campaign_id, label, click_ts in zip(
            found["click_id"].to_pylist(),
            found["campaign_id"].to_pylist(),
            found["label"].to_pylist(),
            found["ts"].to_pylist(),
            strict=True,
        ):
            ts, _ = self.pending.pop(click_id, (None, 0))
            if ts is not None and label == 0:
                self.campaign[click_id], self.sale_ts[click_id] = campaign_id, ts
                self.click_ts[click_id] = click_ts
        for click_id, (ts, attempts) in list(self.pending.items()):
            if attempts + 1 >= RESOLVE_ATTEMPTS:
                del self.pending[click_id]
                self.unmatched += 1
            else:
                self.pending[click_id] = (ts, attempts + 1)

    def _forget_before(self, since: float) -> None:
        """Drop the late sales of clicks the training window has left (bounded memory)."""
        for click_id in [c for c, ts in self.click_ts.items() if ts < since]:
            del self.campaign[click_id], self.sale_ts[click_id], self.click_ts[click_id]


def coverage_weights(
    age: np.ndarray, window_delay: np.ndarray, late_delay: np.ndarray, window: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """Per click, ``F(max(age, w)) / F(w)``: its expected sales by the cut-off in window units.

    ``age``: cut-off minus click ts; ``window_delay`` / ``late_delay``: the
    delay of its sale within the window / of its late sale seen by the
    cut-off (NaN when none). Also returns the estimated curve (for the
    version's manifest).
    """
    weights = np.ones(len(age))
    old = age > window
    if not old.any():
        return weights, {"ages": [], "ratios": []}
    grid = window * np.geomspace(1.0, float(age.max()) / window, CURVE_POINTS)
    ratio = _delay_ratios(grid, age, window_delay, late_delay)
    weights[old] = np.interp(np.log(age[old]), np.log(grid), ratio)
    every = max(1, CURVE_POINTS // 8)
    curve = {"ages": grid[::every].round(3).tolist(), "ratios": ratio[::every].round(4).tolist()}
    return weights, curve


def _delay_ratios(
    grid: np.ndarray, age: np.ndarray, window_delay: np.ndarray, late_delay: np.ndarray
) -> np.ndarray:
    """``F(g) / F(w)`` at each ``g`` of ``grid`` (ascending, ``grid[0] == w``)."""
    window_ages = np.sort(age[~np.isnan(window_delay)])
    in_window = len(window_ages) - np.searchsorted(window_ages, grid, side="left")
    sold_late = ~np.isnan(late_delay)
    late_age, delay = age[sold_late], late_delay[sold_late]
    # late sales of the clicks at least g old, with a delay of at most g
    seen_late = ((late_age >= grid[:, None]) & (delay <= grid[:, None])).sum(axis=1)
    reliable = in_window >= MIN_CURVE_SALES
    reliable[0] = True  # F(w) / F(w)
    ratio = np.where(reliable, 1.0 + seen_late / np.maximum(in_window, 1), 1.0)
    last = np.maximum.accumulate(np.where(reliable, np.arange(len(grid)), 0))
    return np.maximum.accumulate(ratio[last])


class DelayedFeedback:
    """What a training cycle needs of the late sales (one per TrainingManager: incremental).

    ``window``: the consumer's attribution window, in the records' time unit.
    """

    def __init__(self, data: Any, window: float) -> None:
        self.sales = LateSales(data)
        self.window = window
        self.curve: dict[str, Any] = {"ages": [], "ratios": []}

    def versions(
        self, versions: dict[str, str | None], start: float | None, end: float
    ) -> dict[str, str | None]:
        """Data versions that also change when a campaign's late sales do (it is
        retrained), for the training window [start, end)."""
        self.sales.update(start)
        counts = self.sales.counts(end)
        return {
            cid: f"{v}+{counts[cid]}late" if v is not None and cid in counts else v
            for cid, v in versions.items()
        }

    def feedback(self, frame: pd.DataFrame, end: float) -> Feedback:
        """Late sales and exposures of ``frame``'s records at the cut-off ``end``."""
        ts = frame["ts"].to_numpy(dtype=np.float64)
        labels = frame["label"].to_numpy()
        age = np.maximum(end - ts, 0.0)
        late_ts = self.sales.sale_times(frame["click_id"], end)
        late_ts[labels != 0] = np.nan
        sale_ts = frame["sale_ts"].to_numpy(dtype=np.float64, na_value=np.nan)
        window_delay = np.where(labels == 1, sale_ts - ts, np.nan)
        exposure, self.curve = coverage_weights(age, window_delay, late_ts - ts, self.window)
        return Feedback((~np.isnan(late_ts)).astype(np.int8), exposure)

    def summary(self) -> dict[str, Any]:
        """For the version's manifest: the counts and the coverage curve used."""
        return {
            "window_seconds": self.window,
            "late_sales": len(self.sales.sale_ts),
            "unmatched": self.sales.unmatched,
            "malformed": self.sales.malformed,
            "coverage": self.curve,
        }
