"""The predictor's data plane: decide, score and record sales, with no HTTP in sight.

Routes parse a request into plain values and call :class:`PredictorService`;
tests, embedders and any other transport can call the same object. Every
decision chooses an offer (a campaign and one of its landing pages) and is
logged as a :class:`~clickrouter.events.ClickEvent` naming both, with the
propensity of that offer, every postback as a
:class:`~clickrouter.events.SaleEvent`. Scores name offers by
:func:`~clickrouter.catalogue.offer_name`.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from clickrouter.errors import ClickrouterError, InvalidInput
from clickrouter.events import CanonicalProfile, ClickEvent, SaleEvent
from clickrouter.profile import extract_profile, parse_timestamp
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.engine.clickids import ClickIds
from clickrouter.serving.engine.decision import DecisionPath
from clickrouter.serving.engine.decision import Outcome as Outcome  # decide()'s answer
from clickrouter.serving.engine.durability import EventRecorder
from clickrouter.serving.engine.holder import BankHolder, LiveBank
from clickrouter.serving.engine.refusal import PostbackRefused

MAX_TOP = 1000
MAX_ID_CHARS = 256


class ServiceUnavailable(ClickrouterError):
    """No model version is loaded yet (HTTP 503)."""

    status = 503


def _uncounted(campaign_id: str) -> None:
    pass


class PredictorService:
    """Decisions, scores and postbacks against the live bank of ``holder``."""

    def __init__(
        self,
        holder: BankHolder,
        decisions: DecisionPath,
        sink: EventRecorder,
        *,
        click_ids: ClickIds | None = None,
        clock_skew_seconds: float = 300.0,
        on_decision: Callable[[str], None] = _uncounted,
    ) -> None:
        """``holder`` should warm each new bank with ``decisions.prepare`` (its
        ``prepare``); ``on_decision(campaign_id)`` is called for every logged decision."""
        self.holder = holder
        self.decisions = decisions
        self.sink = sink
        # event ids: a per-process random prefix and a counter (unique, cheaper than uuid4)
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count()
        self.click_ids = click_ids if click_ids is not None else ClickIds()
        self.clock_skew_seconds = clock_skew_seconds
        self._on_decision = on_decision

    def live(self) -> LiveBank:
        live = self.holder.live
        if live is None:
            raise ServiceUnavailable("no model version is loaded yet")
        return live

    def decide(self, raw: dict[str, Any], top: int | None = None) -> Outcome:
        """Choose an offer for one raw profile and log the click event."""
        live = self.live()
        canonical = canonical_profile(raw, self.clock_skew_seconds)
        outcome = self.decisions.decide(live, canonical, self._click_id(raw), top)
        self._log_click(outcome, canonical, raw)
        return outcome

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
                landing_page_id=outcome.landing_page_id,
                raw=raw,
            )
        )
        self._on_decision(outcome.campaign_id)

    def score(self, raw: dict[str, Any], top: int | None = None) -> dict[str, Any]:
        """P(sale) of every offer (or the ``top`` most likely), best first when ``top``,
        keyed by :func:`~clickrouter.catalogue.offer_name`."""
        live = self.live()
        bank = live.bank
        canonical = canonical_profile(raw, self.clock_skew_seconds)
        proba = _score_one(bank, canonical, bank.space.indices(canonical))
        ids = bank.offer_names
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
        metrics = live.manifest.metrics
        return {
            "version": bank.version,
            "store_version": live.store_version,
            "directory": str(live.directory),
            "loaded_at": datetime.fromtimestamp(live.loaded_at, UTC).isoformat(),
            "load_seconds": round(live.load_seconds, 3),
            "n_campaigns": len(bank.campaigns),
            "n_offers": len(bank.offers),
            "n_compiled": bank.n_compiled,
            "n_generic": bank.n_generic,
            "skipped": bank.skipped,
            "rejected_version": self.holder.rejected,
            "skipped_versions": self.holder.skipped_versions(),
            "policy": self.decisions.policy.name,
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
        return checked_id("click_id", given)  # refuses a boolean, which str() would accept


def _score_one(bank: ModelBank, canonical: dict[str, Any], slots: np.ndarray) -> np.ndarray:
    """P(sale) of every offer for one canonical profile; shape (n_offers,).

    The bank's own path behind ``decide``: ``predict_proba`` would extract the
    profile and its slots a second time (a quarter of a decision's cost).
    """
    return bank.predict_proba_slots([canonical], slots[None, :])[0]


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
        # well-formed, but in conflict with the click it names (409, not 400)
        raise PostbackRefused(409, "ts_before_click", "field 'ts': before its click was issued")
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
