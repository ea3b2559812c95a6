"""Traffic driver: the world's requests to a running predictor, its sales posted back.

Closes the loop over HTTP: each raw request goes to ``POST /v1/decide``; the
oracle decides whether the chosen offer (the answer's ``campaign_id`` and
``landing_page_id``; an answer without a page id names the ``default`` page)
converts; the sale's postback
(``GET /v1/postback?click_id=...&revenue=...``, signed with the postback
secret: HMAC-SHA256 with a timestamp, see
:mod:`clickrouter.serving.http.postback_auth`) is sent when its delay has
elapsed on a simulated clock that runs ``speedup`` times faster than the wall
clock (a day of delay is 24 s at speedup 3600). Request ``i`` is stamped with
the simulated time of its planned send slot, so the traffic a run sends is
deterministic for a seed whatever the server's latency.
"""

from __future__ import annotations

import heapq
import itertools
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from clickrouter.catalogue import DEFAULT_PAGE_ID
from clickrouter.config import Settings
from clickrouter.errors import InvalidInput
from clickrouter.serving.http import signed_query
from clickrouter.sim.client import Answer, PredictorClient
from clickrouter.sim.truth import sigmoid
from clickrouter.sim.world import World

_SAMPLE_BATCH = 256
MAX_PIPELINE = 64  # decision requests written at once (HTTP/1.1 pipelining)
DECIDE_PATH = "/v1/decide"


@dataclass
class DriverReport:
    """Outcome of a driver run; revenues in payout units, expected values from the oracle."""

    requests: int = 0
    decisions: int = 0
    no_fill: int = 0  # 404: no eligible offer
    errors: int = 0  # any other failed decision request
    sales: int = 0
    revenue: float = 0.0
    postbacks_sent: int = 0
    postback_errors: int = 0
    postbacks_pending: int = 0  # due after the drain budget ran out (not sent)
    expected_revenue: float = 0.0  # sum of true P(sale) x payout of the chosen offers
    oracle_revenue: float | None = 0.0  # same for the best eligible offer (None: no oracle)
    wall_seconds: float = 0.0
    sim_seconds: float = 0.0

    @property
    def efficiency(self) -> float | None:
        """Expected revenue of the predictor's choices / the oracle's (1 = optimal)."""
        if self.oracle_revenue is None:
            return None
        return self.expected_revenue / self.oracle_revenue if self.oracle_revenue else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "efficiency": self.efficiency}


@dataclass
class Planned:
    """One request to send: the raw body, its simulated time and what the truth needs."""

    raw: dict[str, Any]
    ts: float  # simulated epoch seconds (the raw ``ts`` in whatever spelling)
    columns: dict[str, np.ndarray]  # vocabulary indices of its sample batch, per field
    row: int  # its row in ``columns``
    best_value: float | None  # best eligible expected value (0: none eligible; None: no oracle)


class SimClock:
    """Simulated time running ``speedup`` times faster than ``wall`` from ``start_ts``."""

    def __init__(
        self, start_ts: float, speedup: float, wall: Callable[[], float] = time.monotonic
    ) -> None:
        if not speedup > 0:
            raise InvalidInput(f"speedup must be > 0, got {speedup!r}")
        self.start_ts = start_ts
        self.speedup = speedup
        self._wall = wall
        self.wall_start = wall()

    def now(self) -> float:
        return self.start_ts + (self._wall() - self.wall_start) * self.speedup

    def wall_at(self, sim_ts: float) -> float:
        """Wall-clock (monotonic) time at which the simulated clock reads ``sim_ts``."""
        return self.wall_start + (sim_ts - self.start_ts) / self.speedup

    def wall(self) -> float:
        return self._wall()


class TrafficDriver:
    """Sends ``n`` requests at ``rate`` per second and posts the resulting sales back.

    ``pipeline`` > 1 writes that many consecutive decision requests at once on
    the connection (HTTP/1.1 pipelining; a batch leaves at its last request's
    send slot, so none leaves early), which saves both sides a system call or
    two per decision. ``oracle=False`` skips scoring every offer for each
    request (the report's ``oracle_revenue`` and ``efficiency`` are then None):
    the demo computes its baselines itself, and this was a third of the
    driver's CPU. ``postback_secret`` signs the postbacks (default: the
    ``CLICKROUTER_POSTBACK_SECRET`` the predictor reads too; None: unsigned,
    for a predictor running with ``--postback-auth off``).
    """

    def __init__(
        self,
        world: World,
        base_url: str,
        *,
        rate: float = 50.0,
        speedup: float = 3600.0,
        seed: int = 0,
        start_ts: float | None = None,
        drain_seconds: float = 10.0,
        timeout: float = 5.0,
        postback_sim_ts: bool = False,
        pipeline: int = 1,
        oracle: bool = True,
        postback_secret: str | None = None,
    ) -> None:
        if not rate > 0:
            raise InvalidInput(f"rate must be > 0 requests/s, got {rate!r}")
        if not 1 <= pipeline <= MAX_PIPELINE:
            raise InvalidInput(f"pipeline must be 1..{MAX_PIPELINE} requests, got {pipeline!r}")
        self.world = world
        self.client = PredictorClient(base_url, timeout)
        self.rate = rate
        self.speedup = speedup
        self.seed = seed
        self.start_ts = world.start_ts if start_ts is None else start_ts
        self.drain_seconds = drain_seconds
        self.postback_sim_ts = postback_sim_ts  # else the server stamps the arrival time
        self.pipeline = pipeline
        self.oracle = oracle
        if postback_secret is None:
            postback_secret = Settings.from_env().postback_secret
        self.postback_secret = postback_secret
        # separate streams: the traffic sent must not depend on the server's choices
        self.traffic_rng = np.random.default_rng([world.seed, seed, 4])
        self.outcome_rng = np.random.default_rng([world.seed, seed, 5])
        self._pending: list[tuple[float, int, str, float, float]] = []
        self.clock: SimClock | None = None  # the last run's clock (monotonic wall time)

    def run(self, n_requests: int) -> DriverReport:
        """Send ``n_requests`` decisions, then wait (up to ``drain_seconds``) for postbacks."""
        report = DriverReport(oracle_revenue=0.0 if self.oracle else None)
        requests = self._requests(n_requests)
        first = next(requests, None)  # sample the first batch before the clock starts
        clock = self.clock = SimClock(self.start_ts, self.speedup)
        stream = itertools.chain([first] if first else [], requests)
        try:
            sent = 0
            while batch := list(itertools.islice(stream, self.pipeline)):
                sent += len(batch)
                self._send_due(clock, report, until=clock.wall_start + (sent - 1) / self.rate)
                self._decide(batch, report)
            self._send_due(clock, report, until=clock.wall() + self.drain_seconds, drain=True)
        finally:
            self.client.close()
        report.postbacks_pending = len(self._pending)
        report.wall_seconds = clock.wall() - clock.wall_start
        report.sim_seconds = report.wall_seconds * self.speedup
        return report

    def _requests(self, n: int) -> Iterator[Planned]:
        """Request i at the simulated time of its send slot, sampled in small batches.

        With the oracle, the best eligible expected value of each batch's
        requests is computed in one vectorised pass.
        """
        step_ms = 1000.0 * self.speedup / self.rate
        world = self.world
        for lo in range(0, n, _SAMPLE_BATCH):
            slots = np.arange(lo, min(n, lo + _SAMPLE_BATCH))
            ts_ms = (self.start_ts * 1000 + slots * step_ms).astype(np.int64)
            draw = world.draw_at(self.traffic_rng, ts_ms)
            # no click_id of the driver's own: the predictor issues one, the only kind
            # a postback may name
            pairs = world.render(self.traffic_rng, draw)
            columns = world.audience.slots(draw)
            best: list[float | None] = [None] * len(pairs)
            if self.oracle:
                proba = sigmoid(world.truth.logits(columns))
                eligible = world.eligible_slots(columns, ts=ts_ms / 1000.0)
                values = np.where(eligible, proba * world.payouts, 0.0)
                best = values.max(axis=1).tolist()
            for row, (raw, _) in enumerate(pairs):
                yield Planned(raw, int(ts_ms[row]) / 1000.0, columns, row, best[row])

    def _decide(self, batch: list[Planned], report: DriverReport) -> None:
        report.requests += len(batch)
        requests = [("POST", DECIDE_PATH, json.dumps(p.raw).encode()) for p in batch]
        chosen: list[tuple[Planned, int, str]] = []
        for planned, answer in zip(batch, self.client.request_many(requests), strict=True):
            index = self._chosen_index(answer, report)
            if index is not None:
                report.decisions += 1
                body = answer.body if answer is not None else {}
                chosen.append((planned, index, str(body.get("click_id", ""))))
        if chosen:
            self._score(chosen, report)

    def _chosen_index(self, answer: Answer | None, report: DriverReport) -> int | None:
        """The offer index of the decision; failures are counted."""
        if answer is None:
            report.errors += 1
            return None
        if answer.status == 404:
            report.no_fill += 1
            return None
        body = answer.body
        ok = answer.status == 200 and isinstance(body, dict)
        index = -1
        if ok:
            page = str(body.get("landing_page_id", DEFAULT_PAGE_ID))
            index = int(self.world.offer_index([str(body.get("campaign_id"))], [page])[0])
        if index < 0:
            report.errors += 1
            return None
        return index

    def _score(self, chosen: list[tuple[Planned, int, str]], report: DriverReport) -> None:
        """Book the expected values and draw the sales of the chosen offers, in order."""
        fields = chosen[0][0].columns
        slots = {f: np.array([p.columns[f][p.row] for p, _, _ in chosen]) for f in fields}
        offers = np.array([index for _, index, _ in chosen])
        proba = self.world.true_proba_slots(slots, offers)
        for (planned, index, click_id), p in zip(chosen, proba.tolist(), strict=True):
            payout = float(self.world.payouts[index])
            report.expected_revenue += p * payout
            if report.oracle_revenue is not None and planned.best_value is not None:
                report.oracle_revenue += planned.best_value
            if self.outcome_rng.random() < p:
                sale_ts = planned.ts + float(self.world.delays.sample(self.outcome_rng, 1)[0])
                heapq.heappush(self._pending, (sale_ts, report.sales, click_id, payout, sale_ts))
                report.sales += 1
                report.revenue += payout

    def _send_due(
        self, clock: SimClock, report: DriverReport, *, until: float, drain: bool = False
    ) -> None:
        """Post every sale due by wall time ``until``, sleeping until then."""
        while True:
            next_due = clock.wall_at(self._pending[0][0]) if self._pending else None
            if next_due is not None and next_due <= until:
                _sleep_until(clock, next_due)
                self._post(heapq.heappop(self._pending), report)
            elif drain:  # nothing more is due within the drain budget
                return
            else:
                _sleep_until(clock, until)
                return

    def _post(self, sale: tuple[float, int, str, float, float], report: DriverReport) -> None:
        _, _, click_id, revenue, sale_ts = sale
        query = {"click_id": click_id, "revenue": f"{revenue:.2f}"}
        if self.postback_sim_ts:
            query["ts"] = f"{sale_ts:.3f}"
        if self.postback_secret is not None:
            query = signed_query(self.postback_secret, query)
        try:
            status, _ = self.client.request("GET", "/v1/postback?" + urllib.parse.urlencode(query))
        except OSError:
            status = 0
        if status == 200:
            report.postbacks_sent += 1
        else:
            report.postback_errors += 1


def _sleep_until(clock: SimClock, wall_time: float) -> None:
    delay = wall_time - clock.wall()
    if delay > 0:
        time.sleep(delay)
