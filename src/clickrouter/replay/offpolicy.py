"""Off-policy evaluation: what a candidate would have earned on the traffic that was logged.

Each labelled record is a logged decision: the profile x, the offer a the
logging policy showed (its campaign and ``landing_page_id``; records without
that column were sent to the campaign's ``default`` page) with its propensity
p = P(a | x) (the predictor logs it), and the reward r (the record's revenue:
the payout when a sale came inside the attribution window, else 0). A
candidate (a model version plus a policy) chooses with probabilities
pi(. | x): exactly for greedy and epsilon-greedy, by repeated draws of the
policy object itself for Thompson sampling. With the importance weight w = pi(a | x) / p:

* IPS: mean(w r), unbiased when every offer the candidate may choose had
  a positive logging propensity (support), with a variance that grows with
  the weights;
* self-normalised IPS: sum(w r) / sum(w), slightly biased, much steadier;
* doubly robust: mean(sum_a pi(a | x) q(x, a) + w (r - q(x, a))): a reward
  model q forecasts, the weights correct only what it gets wrong. q is the
  candidate's own expected value P(sale) x payout, recalibrated per offer
  on the logs (what the offer's records earned over what the models
  forecast for them, shrunk towards the overall ratio): models chosen for
  their high forecasts are the ones that over-forecast, and an unbiased
  estimate must not rest on that.

Intervals are normal approximations over the per-record terms (delta method
for SNIPS). The effective sample size (sum w)^2 / sum w^2 says how many
records the estimate really rests on; the mean weight, which is 1 when the
logs cover the candidate's choices, says how much of the candidate's choice
mass the logs never showed. Anchors: the Open Bandit Pipeline's estimators
(Saito et al., 2021) and the Decision Service papers (Agarwal et al., 2016).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from clickrouter.catalogue import DEFAULT_PAGE_ID
from clickrouter.errors import InvalidInput
from clickrouter.profile import CANONICAL_FIELDS
from clickrouter.serving.engine import (
    EpsilonGreedy,
    Greedy,
    LiveBank,
    Policy,
    Thompson,
    choose_many,
    decider_for,
)

CHUNK = 2048
MIN_ESS = 100.0  # fewer effective records: no estimate is supported
MIN_WEIGHT_MEAN = 0.9  # below (beyond noise): the logs miss the candidate's choices
CALIBRATION_PRIOR = 20.0  # records' worth of shrinkage of an offer's calibration ratio
PAGE_COLUMN = "landing_page_id"


@dataclass(frozen=True)
class Estimate:
    """Revenue per 1,000 clicks with a two-sided interval."""

    value: float
    low: float
    high: float
    stderr: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "stderr": self.stderr}


@dataclass
class Evaluation:
    """Every number of one evaluation, and what may make them untrustworthy."""

    records: int
    logged_per_1k: float
    ips: Estimate
    snips: Estimate
    dr: Estimate
    direct_per_1k: float  # the candidate's models' own forecast (the DR's first term)
    ess: float
    weight_mean: Estimate  # not per 1k: a plain mean, 1 under full support
    max_weight: float
    confidence: float
    warnings: list[str] = field(default_factory=list)

    @property
    def supported(self) -> bool:
        return not any(w.startswith("unsupported") for w in self.warnings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "supported": self.supported,
            "warnings": self.warnings,
            "confidence": self.confidence,
            "logged_per_1k": self.logged_per_1k,
            "ips": self.ips.as_dict(),
            "snips": self.snips.as_dict(),
            "dr": self.dr.as_dict(),
            "direct_per_1k": self.direct_per_1k,
            "effective_sample_size": self.ess,
            "weight_mean": self.weight_mean.as_dict(),
            "max_weight": self.max_weight,
        }


def check_records(frame: pd.DataFrame, *, skip_invalid: bool) -> tuple[pd.DataFrame, list[str]]:
    """The records an estimate may use; bad propensities are an error (or, asked, skipped)."""
    missing = [
        c for c in ("campaign_id", "propensity", "revenue", *CANONICAL_FIELDS) if c not in frame
    ]
    if missing:
        raise InvalidInput(f"the records have no {', '.join(missing)} column: not logged decisions")
    if not len(frame):
        raise InvalidInput("no records to evaluate on (empty dataset or time range)")
    p = pd.to_numeric(frame["propensity"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(p) & (p > 0) & (p <= 1))
    revenue = pd.to_numeric(frame["revenue"], errors="coerce").to_numpy(dtype=np.float64)
    bad |= ~(np.isfinite(revenue) & (revenue >= 0))
    warnings: list[str] = []
    if bad.any():
        examples = (
            ", ".join(map(str, frame.loc[bad, "click_id"].head(3))) if "click_id" in frame else ""
        )
        what = (
            f"{int(bad.sum())} of {len(frame)} records have a missing, zero, NaN or"
            f" out-of-range propensity or revenue (e.g. {examples})"
        )
        if not skip_invalid:
            raise InvalidInput(
                f"{what}: an importance weight needs 0 < propensity <= 1"
                " (--skip-invalid drops them, biasing the estimate)"
            )
        warnings.append(f"skipped {what}; the estimate covers the rest only")
        frame = frame[~bad]
        if not len(frame):
            raise InvalidInput("no record left with a valid propensity")
    return frame.reset_index(drop=True), warnings


def bank_slots(live: LiveBank, frame: pd.DataFrame) -> np.ndarray:
    """(n, fields) slots of the records' canonical profiles in the candidate bank's space."""
    space = live.bank.space
    columns = []
    for i, name in enumerate(space.fields):
        values = frame[name]
        if name in ("local_hour", "local_weekday"):
            values = values.astype(np.int64)
        lookup = {v: space.local_index(name, v) for v in pd.unique(values)}
        columns.append(values.map(lookup).to_numpy(dtype=np.intp) + int(space.offsets[i]))
    return np.stack(columns, axis=1)


class CandidateChoices:
    """pi(logged offer | x) and the model's value of pi's choices, per record."""

    def __init__(self, live: LiveBank, policy: Policy, draws: int) -> None:
        self.live, self.draws = live, draws
        self.policy = _winner_only(policy)
        self.decider = decider_for(live.bank)
        self.payouts = np.asarray(live.bank.payouts_, dtype=np.float64)  # per offer column
        self.ratio = np.ones(len(self.payouts))  # per column: see :func:`calibration`

    def forecast(self, slots: np.ndarray, logged: np.ndarray) -> np.ndarray:
        """The models' expected value of the logged column per record (0: not in the bank)."""
        out = np.zeros(len(slots))
        for lo in range(0, len(slots), CHUNK):
            proba = self.decider.decide_many(slots[lo : lo + CHUNK]).proba
            column = logged[lo : lo + CHUNK]
            known = column >= 0
            rows = np.flatnonzero(known)
            out[lo + rows] = proba[rows, column[known]] * self.payouts[column[known]]
        return out

    def score(self, slots: np.ndarray, logged: np.ndarray) -> dict[str, np.ndarray]:
        """Per record: ``pi`` of the logged column (-1: not in the bank), the reward
        model's ``q_logged`` and ``q_policy`` (E_pi q), and ``eligible`` (any eligible
        offer). The reward model is the bank's expected value times ``self.ratio``."""
        parts = [
            self._chunk(slots[lo : lo + CHUNK], logged[lo : lo + CHUNK])
            for lo in range(0, len(slots), CHUNK)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _chunk(self, slots: np.ndarray, logged: np.ndarray) -> dict[str, np.ndarray]:
        batch = self.decider.decide_many(slots)
        n = len(slots)
        value = batch.proba * (self.payouts * self.ratio)
        known = logged >= 0
        column = np.where(known, logged, 0)
        out = {
            "pi": np.zeros(n),
            "q_logged": np.where(known, value[np.arange(n), column], 0.0),
            "q_policy": np.zeros(n),
            "eligible": batch.n_eligible > 0,
        }
        rows = np.flatnonzero(out["eligible"])
        if not len(rows):
            return out
        kept = type(batch)(*(a[rows] for a in batch))
        pi, q = self._distribution(kept, column[rows], value[rows])
        out["pi"][rows] = np.where(known[rows], pi, 0.0)
        out["q_policy"][rows] = q
        return out

    def _distribution(
        self, batch: Any, logged: np.ndarray, value: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(pi(logged | x), E_pi value) per row: exact for greedy and epsilon-greedy."""
        n = len(logged)
        rows = np.arange(n)
        best_value = value[rows, batch.best]
        if isinstance(self.policy, Greedy):
            return (logged == batch.best).astype(np.float64), best_value
        if isinstance(self.policy, EpsilonGreedy):
            eps = self.policy.epsilon
            eligible_logged = batch.mask[rows, logged]
            uniform = eps / batch.n_eligible
            pi = np.where(eligible_logged, uniform, 0.0) + np.where(
                logged == batch.best, 1 - eps, 0.0
            )
            mean_value = np.where(batch.mask, value, 0.0).sum(axis=1) / batch.n_eligible
            return pi, (1 - eps) * best_value + eps * mean_value
        hits = np.zeros(n)
        total = np.zeros(n)
        for _ in range(self.draws):  # the policy's own draws: its choice distribution
            columns, _ = choose_many(self.policy, self.live, *batch)
            hits += columns == logged
            total += value[rows, columns]
        return hits / self.draws, total / self.draws


def calibration(
    logged: np.ndarray, reward: np.ndarray, forecast: np.ndarray, n_offers: int
) -> np.ndarray:
    """Per bank column: logged revenue over the models' forecast, shrunk to the overall ratio."""
    known = logged >= 0
    earned = np.bincount(logged[known], weights=reward[known], minlength=n_offers)
    forecast_sum = np.bincount(logged[known], weights=forecast[known], minlength=n_offers)
    shown = np.bincount(logged[known], minlength=n_offers)
    overall = earned.sum() / forecast_sum.sum() if forecast_sum.sum() > 0 else 1.0
    mean_forecast = forecast_sum / np.maximum(shown, 1)
    prior = CALIBRATION_PRIOR * mean_forecast
    ratio = (earned + overall * prior) / np.maximum(forecast_sum + prior, 1e-300)
    return np.where(shown > 0, ratio, overall)


def _winner_only(policy: Policy) -> Policy:
    """A Thompson policy's choices without its propensity estimate's extra draws.

    Which offer a Thompson draw shows does not depend on ``draws`` (the
    draws after the winner's only estimate its propensity), so a shallow copy
    with one draw chooses from the same distribution (same pools, same
    generator) at a fraction of the cost.
    """
    if isinstance(policy, Thompson):
        policy = copy.copy(policy)
        policy.draws = 1
    return policy


def evaluate(
    frame: pd.DataFrame,
    live: LiveBank,
    policy: Policy,
    *,
    draws: int = 32,
    confidence: float = 0.95,
    min_ess: float = MIN_ESS,
    skip_invalid: bool = False,
) -> Evaluation:
    """IPS, SNIPS and DR estimates of ``policy`` on ``live``'s models over logged ``frame``."""
    frame, warnings = check_records(frame, skip_invalid=skip_invalid)
    bank = live.bank
    logged = logged_columns(bank.campaign_ids, bank.page_ids, frame)
    unknown = int((logged < 0).sum())
    if unknown == len(frame):
        raise InvalidInput(
            "none of the logged offers (campaign and landing page) is in the candidate's"
            " models: nothing to compare"
        )
    if unknown:
        warnings.append(
            f"{unknown} records show offers (campaign and landing page) the candidate does"
            " not have (weight 0)"
        )
    choices = CandidateChoices(live, policy, draws)
    slots = bank_slots(live, frame)
    reward = frame["revenue"].to_numpy(dtype=np.float64)
    forecast = choices.forecast(slots, logged)
    choices.ratio = calibration(logged, reward, forecast, len(bank.campaign_ids))  # per column
    scored = choices.score(slots, logged)
    p = frame["propensity"].to_numpy(dtype=np.float64)
    w = scored["pi"] / p
    z = float(norm.ppf(0.5 + confidence / 2))
    ips = _mean(w * reward, z)
    dr = _mean(scored["q_policy"] + w * (reward - scored["q_logged"]), z)
    snips = _self_normalised(w, reward, z)
    weight_mean = _mean(w, z, per_1k=False)
    ess = float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0
    ineligible = int((~scored["eligible"]).sum())
    if ineligible:
        warnings.append(f"{ineligible} records have no offer the candidate may show (weight 0)")
    warnings += _support_warnings(ess, weight_mean, len(frame), min_ess, live, logged)
    return Evaluation(
        records=len(frame),
        logged_per_1k=1000.0 * float(reward.mean()),
        ips=ips,
        snips=snips,
        dr=dr,
        direct_per_1k=1000.0 * float(scored["q_policy"].mean()),  # recalibrated
        ess=ess,
        weight_mean=weight_mean,
        max_weight=float(w.max()),
        confidence=confidence,
        warnings=warnings,
    )


def _support_warnings(
    ess: float, weight_mean: Estimate, n: int, min_ess: float, live: LiveBank, logged: np.ndarray
) -> list[str]:
    out = []
    if ess < min_ess:
        out.append(
            f"unsupported: the estimate rests on {ess:.1f} effective records of {n} (minimum"
            f" {min_ess:g}): the logging policy almost never made the candidate's choices"
        )
    if weight_mean.high < MIN_WEIGHT_MEAN:
        out.append(
            f"unsupported: the importance weights average {weight_mean.value:.2f} (1 when the"
            " logs cover the candidate): the candidate often chooses offers the logs never"
            " show for such requests, and IPS/SNIPS miss what those would earn"
        )
    ids = live.bank.campaign_ids
    shown_campaigns = {ids[j] for j in np.unique(logged[logged >= 0])}
    never = sorted(set(ids) - shown_campaigns)
    if never:
        out.append(f"{len(never)} of the candidate's {len(set(ids))} campaigns appear in no record")
    pages_never = len(ids) - len(np.unique(logged[logged >= 0]))
    if len(ids) > len(set(ids)) and pages_never:
        out.append(
            f"{pages_never} of the candidate's {len(ids)} offers (campaign and landing page)"
            " appear in no record"
        )
    return out


def logged_columns(campaign_ids: list[str], page_ids: list[str], frame: pd.DataFrame) -> np.ndarray:
    """The candidate bank's column of each record's offer (-1: the candidate has none).

    Records without a ``landing_page_id`` column, or with a null in it, were
    sent to the campaign's ``default`` page.
    """
    index = {(c, p): j for j, (c, p) in enumerate(zip(campaign_ids, page_ids, strict=True))}
    pages = (
        frame[PAGE_COLUMN].fillna(DEFAULT_PAGE_ID)
        if PAGE_COLUMN in frame
        else pd.Series(DEFAULT_PAGE_ID, index=frame.index)
    )
    keys = zip(frame["campaign_id"], pages, strict=True)
    return np.fromiter((index.get(key, -1) for key in keys), dtype=np.int64, count=len(frame))


def _mean(terms: np.ndarray, z: float, *, per_1k: bool = True) -> Estimate:
    scale = 1000.0 if per_1k else 1.0
    value = float(terms.mean())
    se = float(terms.std(ddof=1) / math.sqrt(len(terms))) if len(terms) > 1 else float("inf")
    return Estimate(scale * value, scale * (value - z * se), scale * (value + z * se), scale * se)


def _self_normalised(w: np.ndarray, reward: np.ndarray, z: float) -> Estimate:
    total = w.sum()
    if total <= 0:
        nan = float("nan")
        return Estimate(nan, nan, nan, nan)
    value = float((w * reward).sum() / total)
    se = float(math.sqrt(((w * (reward - value)) ** 2).sum()) / total)  # delta method
    return Estimate(1000 * value, 1000 * (value - z * se), 1000 * (value + z * se), 1000 * se)
