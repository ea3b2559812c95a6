"""The predictor's data plane: decide, score and record sales, with no HTTP in sight.

Routes parse a request into plain values and call :class:`PredictorService`;
tests and embedders can call the same object directly. Every decision is
logged as a :class:`~clickrouter.events.ClickEvent` with the propensity of the
choice, every postback as a :class:`~clickrouter.events.SaleEvent`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import msgspec
import numpy as np

from clickrouter.errors import ClickrouterError, InvalidInput
from clickrouter.events import CanonicalProfile, ClickEvent, SaleEvent
from clickrouter.profile import click_id_of, extract_profile, parse_timestamp
from clickrouter.serving.bank import Decision, ModelBank, RankedCampaign
from clickrouter.serving.http.clickids import ClickIds
from clickrouter.serving.http.hotpath import Decider, decider_for
from clickrouter.serving.http.metrics import ServiceMetrics
from clickrouter.serving.http.models import BankHolder, LiveBank
from clickrouter.serving.http.policy import Choice, Policy
from clickrouter.serving.http.postback_auth import PostbackRefused
from clickrouter.serving.http.sink import EventSink

MAX_TOP = 1000
MAX_ID_CHARS = 256


class ServiceUnavailable(ClickrouterError):
    """No model version is loaded yet (HTTP 503)."""

    status = 503


class Ranked(msgspec.Struct):
    campaign_id: str
    probability: float
    expected_value: float


class Outcome(msgspec.Struct, omit_defaults=True):
    """The answer to one decision request (``ranking`` only when asked for)."""

    click_id: str
    campaign_id: str
    landing_page: str
    probability: float
    expected_value: float
    propensity: float
    payout: float
    n_eligible: int
    model_version: str
    policy: str
    ranking: list[Ranked] | None = None


class PredictorService:
    """Decisions, scores and postbacks against the live bank of ``holder``."""

    def __init__(
        self,
        holder: BankHolder,
        policy: Policy,
        sink: EventSink,
        metrics: ServiceMetrics,
        *,
        click_ids: ClickIds | None = None,
        clock_skew_seconds: float = 300.0,
    ) -> None:
        self.holder = holder
        self.policy = policy
        self.sink = sink
        self.metrics = metrics
        # event ids: a per-process random prefix and a counter (unique, cheaper than uuid4)
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count()
        self.click_ids = click_ids if click_ids is not None else ClickIds()
        self.clock_skew_seconds = clock_skew_seconds
        self._decider: Decider | None = None  # of the live bank (one lookup per version)
        self._prepared: Decider | None = None  # built by prepare() for the incoming bank
        holder.prepare = self.prepare

    def live(self) -> LiveBank:
        live = self.holder.live
        if live is None:
            raise ServiceUnavailable("no model version is loaded yet")
        return live

    def decide(self, raw: dict[str, Any], top: int | None = None) -> Outcome:
        """Choose a campaign for one raw profile and log the click event."""
        live = self.live()
        bank = live.bank
        canonical = canonical_profile(raw, self.clock_skew_seconds)
        click_id = self._click_id(raw)
        proba, decision, choice = self._choose(live, self._decider_of(bank), canonical, top or 1)
        campaign = bank.campaigns[choice.column]
        probability = float(proba[choice.column])
        outcome = Outcome(
            click_id=click_id,
            campaign_id=campaign.id,
            landing_page=landing_page(campaign.landing_page, click_id),
            probability=probability,
            expected_value=probability * campaign.payout,
            propensity=choice.propensity,
            payout=campaign.payout,
            n_eligible=decision.n_eligible,
            model_version=bank.version,
            policy=self.policy.name,
            ranking=None if top is None else [_ranked(r) for r in decision.ranking],
        )
        self._log_click(outcome, canonical, raw)
        return outcome

    def _decider_of(self, bank: ModelBank) -> Decider:
        decider = self._decider
        if decider is None or decider.bank is not bank:
            prepared = self._prepared
            if prepared is None or prepared.bank is not bank:
                prepared = decider_for(bank)
            decider = self._decider = prepared
        return decider

    def _choose(
        self, live: LiveBank, decider: Decider, canonical: dict[str, Any], top: int
    ) -> tuple[np.ndarray, Decision, Choice]:
        """Scores, the bank's ranking and the policy's choice for one canonical profile."""
        bank = live.bank
        proba, mask, decision = decider.decide(canonical, bank.space.indices(canonical), top)
        best = bank.column_of(decision.campaign_id)
        choice = self.policy.choose_scored(live, proba, mask, best, decision.n_eligible)
        return proba, decision, choice

    def prepare(self, live: LiveBank) -> None:
        """Run one unlogged decision on a freshly loaded bank, before it is swapped in.

        Called in the loading thread: the decision path's tables are laid out and
        the numba kernels of the decider and the policy are compiled (or read from
        numba's cache) there, not on the event loop. A fresh checkout compiles them
        in ~6 s, which on the first request stalled every connection of the worker.
        """
        decider = decider_for(live.bank)
        # e.g. no campaign eligible for the empty profile: the tables are laid out anyway
        with contextlib.suppress(ClickrouterError):
            self._choose(live, decider, canonical_profile({}), 1)
        self._prepared = decider

    def _log_click(self, outcome: Outcome, canonical: dict[str, Any], raw: dict[str, Any]) -> None:
        self.sink.emit(
            ClickEvent(
                id=self._event_id(),
                click_id=outcome.click_id,
                ts=time.time(),
                profile=CanonicalProfile(**canonical),
                campaign_id=outcome.campaign_id,
                landing_page=outcome.landing_page,
                propensity=outcome.propensity,
                model_version=outcome.model_version,
                raw=raw,
            )
        )
        self.metrics.decisions.add(outcome.campaign_id)

    def score(self, raw: dict[str, Any], top: int | None = None) -> dict[str, Any]:
        """P(sale) of every campaign (or the ``top`` most likely), best first when ``top``."""
        bank = self.live().bank
        canonical = canonical_profile(raw, self.clock_skew_seconds)
        proba = _score_one(bank, canonical, bank.space.indices(canonical))
        ids = bank.campaign_ids
        if top is None:
            scores = dict(zip(ids, proba.tolist(), strict=True))
        else:
            best = np.argsort(-proba, kind="stable")[:top]
            scores = {ids[i]: float(proba[i]) for i in best}
        return {"model_version": bank.version, "probabilities": scores}

    def postback(
        self,
        click_id: Any,
        revenue: Any,
        ts: Any = None,
        campaign_id: Any = None,
        *,
        event_id: str | None = None,
    ) -> SaleEvent:
        """Record a sale for ``click_id``, a click id this predictor issued.

        ``campaign_id``, when given, must be known. The sale's time (``ts``, else
        now) must be within ``clock_skew_seconds`` of the server's clock and not
        before its click was issued. ``event_id`` (e.g. from the postback's
        signature) lets the consumer drop a replay another worker accepted.
        """
        if campaign_id is not None:
            self.live().bank.campaign(checked_id("campaign_id", campaign_id))  # 404 if unknown
        if click_id is None or click_id == "":
            raise InvalidInput("field 'click_id': required")
        click_id = checked_id("click_id", click_id)
        amount = checked_revenue(revenue)
        now = time.time()
        issued = self.click_ids.issued_at(click_id)
        event = SaleEvent(
            id=event_id or self._event_id(),
            click_id=click_id,
            ts=checked_sale_ts(ts, now, issued, self.clock_skew_seconds),
            revenue=amount,
        )
        self.sink.emit(event)
        return event

    def models(self) -> dict[str, Any]:
        """What is in service: version, origin, load time, sizes, manifest metrics."""
        live = self.live()
        bank = live.bank
        metrics = live.manifest.get("metrics")
        return {
            "version": bank.version,
            "store_version": live.store_version,
            "directory": str(live.directory),
            "loaded_at": datetime.fromtimestamp(live.loaded_at, UTC).isoformat(),
            "load_seconds": round(live.load_seconds, 3),
            "n_campaigns": len(bank.campaigns),
            "n_compiled": bank.n_compiled,
            "n_generic": bank.n_generic,
            "skipped": bank.skipped,
            "rejected_version": self.holder.rejected,
            "skipped_versions": self.holder.skipped_versions(),
            "policy": self.policy.name,
            "metrics": metrics if isinstance(metrics, dict) else {},
        }

    def _event_id(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def _click_id(self, raw: dict[str, Any]) -> str:
        """A fresh issued id (see :mod:`.clickids`), or the caller's own, kept as is.

        A caller's own id is logged and echoed, but no postback can name it: a
        sale must name an id the predictor issued.
        """
        given = raw.get("click_id")
        if given is None or given == "":
            return self.click_ids.issue(time.time())
        return checked_id("click_id", click_id_of(raw))


def _score_one(bank: ModelBank, canonical: dict[str, Any], slots: np.ndarray) -> np.ndarray:
    """P(sale) of every campaign for one canonical profile; shape (n_campaigns,).

    The bank's own path behind ``decide``: ``predict_proba`` would extract the
    profile and its slots a second time (a quarter of a decision's cost).
    """
    return bank.predict_proba_slots([canonical], slots[None, :])[0]


def landing_page(template: str, click_id: str) -> str:
    """The landing page URL; the click id is percent-encoded (no header or URL injection)."""
    if not (click_id.isascii() and click_id.isalnum()):  # generated ids need no quoting
        click_id = quote(click_id, safe="-._~")
    return template.replace("{click_id}", click_id)


def _ranked(entry: RankedCampaign) -> Ranked:
    return Ranked(entry.campaign_id, entry.probability, entry.expected_value)


def canonical_profile(raw: Any, max_ahead: float | None = None) -> dict[str, Any]:
    """The canonical profile of a request body; any failure is the caller's bad input.

    ``max_ahead``: a ``ts`` further ahead of the server's clock is refused.
    """
    if not isinstance(raw, dict):
        raise InvalidInput(f"a profile must be a JSON object, got {type(raw).__name__}")
    ts = raw.get("ts")
    if isinstance(ts, int) and not 0 <= ts < 2**63:  # float() would overflow on huge ints
        raise InvalidInput(f"field 'ts': epoch seconds out of range: {str(ts)[:40]}")
    try:
        return extract_profile(raw, max_ahead=max_ahead)
    except ClickrouterError:
        raise
    except (ValueError, TypeError, OverflowError, LookupError) as exc:
        raise InvalidInput(f"invalid profile: {exc}") from None


def checked_id(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"field {name!r}: expected a string, got {value!r}")
    text = str(value)
    if not 0 < len(text) <= MAX_ID_CHARS:
        raise InvalidInput(f"field {name!r}: expected 1 to {MAX_ID_CHARS} characters")
    return text


def checked_revenue(value: Any) -> float:
    if value is None or value == "":
        raise InvalidInput("field 'revenue': required")
    if isinstance(value, bool):
        raise InvalidInput(f"field 'revenue': expected a number, got {value!r}")
    try:
        revenue = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"field 'revenue': expected a number, got {value!r}") from None
    if not math.isfinite(revenue) or revenue < 0:
        raise InvalidInput(f"field 'revenue': expected a finite number >= 0, got {value!r}")
    return revenue


def checked_sale_ts(value: Any, now: float, issued: float, skew: float) -> float:
    """A sale's time: ``now`` when absent, else within ``skew`` seconds of ``now``
    and not before its click was issued (``issued``, whole seconds)."""
    ts = parse_timestamp(value, now=now)
    if not ts <= now + skew:  # NaN too
        raise PostbackRefused(
            400, "ts_future", f"field 'ts': more than {skew:g} s ahead of the server's clock"
        )
    if ts < now - skew:
        raise PostbackRefused(
            400, "ts_expired", f"field 'ts': more than {skew:g} s behind the server's clock"
        )
    if ts < issued:
        raise PostbackRefused(400, "ts_before_click", "field 'ts': before its click was issued")
    return ts


def checked_top(value: str | None) -> int | None:
    """The ``top`` query parameter: None when absent, else an integer 1..MAX_TOP."""
    if value is None:
        return None
    try:
        top = int(value)
    except ValueError:
        raise InvalidInput(f"parameter 'top': expected an integer, got {value!r}") from None
    if not 1 <= top <= MAX_TOP:
        raise InvalidInput(f"parameter 'top': expected 1 to {MAX_TOP}, got {value!r}")
    return top
