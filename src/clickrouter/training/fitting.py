"""One campaign's fit, evaluation and promotion decision (runs in a worker).

Everything here is a pure function of picklable inputs so that any executor
(inline, local processes, a Dask cluster) can run it. A task carries the
campaign's records already encoded as feature columns, time-ordered, with
every positive and a sample of the negatives (rate ``rate``), plus the full,
unsampled newest slice for evaluation.

A campaign with several landing pages is still one model: its pages are one
more one-hot field beside the profile's, so they share the profile effects
and each page has an effect of its own, shrunk by the same L2 penalty towards
the campaign's level. A page without records of its own gets no column and
scores at that level (see :class:`_Fit` for why it is the campaign's average
and not an arbitrary page's); so does a page added after the fit.
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from clickrouter.features import FeatureSpace
from clickrouter.training.design import column_offsets, design_matrix, restrict, used_columns
from clickrouter.training.hierarchy import fit_campaign as fit_towards
from clickrouter.training.hours import fold_harmonics, harmonic_features, hour_columns
from clickrouter.training.metrics import evaluate, log_loss
from clickrouter.training.posterior import diagonal_precision
from clickrouter.training.publish import read_model
from clickrouter.training.served import served_proba


@dataclass(frozen=True)
class FitSettings:
    """Per-cycle constants shared by every task of the cycle."""

    space: dict[str, Any]  # FeatureSpace.to_dict() of the cycle
    n_columns: int
    c_grid: tuple[float, ...]
    positive_weight: float
    min_positives: int
    prior_positives: float
    pooled_rate: float
    guard_tolerance: float
    max_iter: int
    guard_min_positives: int = 10
    hour_harmonics: int = 1
    c_regrid_growth: float = 0.0
    recent_prior_sales: float = 0.0
    posterior: bool = False  # also return each logistic fit's diagonal precision


@dataclass
class CampaignTask:
    """One campaign's data. Row arrays are time-ordered.

    cols: (n_kept, n_fields) int32 feature columns (-1 = OOV) of kept rows.
    labels: (n_kept,) int8. ``split``: first kept row of the holdout slice.
    hold_cols / hold_labels: every row of the holdout slice (unsampled).
    rate: probability with which a negative was kept.
    counts: unsampled (rows, positives) of the whole window and of its
        training part (before the holdout slice).
    """

    campaign_id: str
    cols: np.ndarray
    labels: np.ndarray
    split: int
    hold_cols: np.ndarray
    hold_labels: np.ndarray
    rate: float
    rows: int
    positives: int
    train_rows: int
    train_positives: int
    served_model: str | None = None
    served_c: float | None = None  # the C the served logistic model chose...
    served_c_positives: int = 0  # ...on this many sales
    # delayed feedback (late.py): late sales of the window's / training part's
    # clicks, and their exposure in window units (the row counts without it)
    late_positives: int = 0
    train_late_positives: int = 0
    exposure: float = -1.0  # -1: the row counts
    train_exposure: float = -1.0

    pages: PageRows | None = None  # None: one page, nothing known of it
    # the hierarchical learner's shared coefficients over the cycle's
    # ``n_columns`` (None: the independent learner, sklearn's fit towards 0),
    # fitted on every kept row, and on the training parts alone: the C grid
    # is judged on held-out rows the shared effects have not seen
    prior: np.ndarray | None = None
    training_prior: np.ndarray | None = None
    global_c: float | None = None  # the shared stage's C behind ``prior``; 0.0: none (no prior)
    # log mean exp(x . prior) and (x . training_prior) over the cycle's traffic:
    # a base rate's level offset when it has no kept rows of its own
    prior_levels: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.exposure < 0:
            self.exposure = float(self.rows)
        if self.train_exposure < 0:
            self.train_exposure = float(self.train_rows)

    @property
    def model_pages(self) -> tuple[str, ...]:
        """The page ids its model reads as its page input; none for a campaign with one page."""
        if self.pages is None or self.pages.listed < 2:
            return ()
        return self.pages.ids[: self.pages.listed]


@dataclass
class PageRows:
    """Which landing page each row of a task went to, and each page's evidence.

    ids: the campaign's page ids, the catalogue's ``listed`` first (in its
        order), then the other ids its records name (pages since removed).
    kept / hold: (n_kept,) / (n_hold,) int32, each row's index into ``ids``.
    Per page of ``ids``, float64: ``positives`` (labelled sales), ``late``
    (late sales), ``exposure`` over the window; ``train_sales`` (both kinds)
    and ``train_exposure`` over its training part.
    """

    kept: np.ndarray
    hold: np.ndarray
    ids: tuple[str, ...] = ()
    listed: int = 0
    positives: np.ndarray = field(default_factory=lambda: np.zeros(0))
    late: np.ndarray = field(default_factory=lambda: np.zeros(0))
    exposure: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_sales: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_exposure: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def sales(self, *, late: bool) -> dict[str, int]:
        """Sales per catalogue page (``late``: late sales included)."""
        counts = self.positives + self.late if late else self.positives
        return {p: round(float(n)) for p, n in zip(self.ids[: self.listed], counts, strict=False)}


@dataclass
class FitResult:
    """What the publisher needs: parameters in the cycle's column layout and the verdict."""

    campaign_id: str
    kind: str  # "logistic" | "base_rate"
    coef: np.ndarray | None
    intercept: float
    C: float | None
    metrics: dict[str, Any] | None
    served_metrics: dict[str, Any] | None
    decision: str  # "promoted" | "kept" | "failed"
    reason: str
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    pages: tuple[str, ...] = ()  # the model's page input categories (none: no page input)
    # the diagonal Laplace precision of a logistic fit, when asked for: per
    # coefficient of ``coef``, and the intercept's
    precision: tuple[np.ndarray, float] | None = None


def fit_chunk(settings: FitSettings, tasks: list[CampaignTask]) -> list[FitResult]:
    """Fit every task; a failing campaign yields a ``failed`` result, never an exception."""
    space = FeatureSpace.from_dict(settings.space)
    # one BLAS thread per fit: the executor already runs one fit per core, and
    # threaded BLAS on these small problems costs more than it computes
    with threadpool_limits(limits=1):
        return [_fit_safely(settings, space, task) for task in tasks]


def _fit_safely(settings: FitSettings, space: FeatureSpace, task: CampaignTask) -> FitResult:
    started = time.perf_counter()
    try:
        result = fit_campaign(settings, space, task)
    except Exception as exc:  # one bad campaign must not end the cycle
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        result = FitResult(
            task.campaign_id, "failed", None, 0.0, None, None, None, "failed", detail
        )
    result.seconds = time.perf_counter() - started
    result.details.update(rows=task.rows, positives=task.positives)
    return result


def fit_campaign(settings: FitSettings, space: FeatureSpace, task: CampaignTask) -> FitResult:
    if task.positives < settings.min_positives:
        result = _base_rate(settings, task)
    else:
        result = _logistic(settings, task, space)
    result.pages = task.model_pages
    if task.pages is not None:  # the sales the fit rests on, as the record's ``sales`` counts them
        result.details["page_positives"] = task.pages.sales(late=result.kind == "base_rate")
    if int(task.hold_labels.sum()) >= settings.guard_min_positives:
        # below that the guard cannot judge, so the served model is not scored
        # (the bulk of a cycle's campaigns: one-in-a-million labels)
        result.served_metrics = _served_metrics(task, space)
    result.decision, result.reason = guard(result.metrics, result.served_metrics, settings)
    return result


def smoothed_rate(positives: float, rows: float, pooled: float, strength: float) -> float:
    """Posterior mean of a Beta(strength, strength (1 - pooled) / pooled) prior."""
    return float(smoothed_rates(np.float64(positives), np.float64(rows), pooled, strength))


def smoothed_rates(sales: Any, exposure: Any, level: float, strength: float) -> Any:
    """:func:`smoothed_rate` elementwise, over numpy arrays of sales and exposure."""
    beta = strength * (1 - level) / level
    return (sales + strength) / (exposure + strength + beta)


def _base_rate(settings: FitSettings, task: CampaignTask) -> FitResult:
    """The campaign's smoothed sale rate, and for a campaign with several pages
    one per page, shrunk towards the campaign's.

    The campaign's rate is the posterior mean under a prior centred on the
    pooled rate of thin campaigns, worth ``prior_positives`` sales. A page's
    rate is the posterior mean under a prior centred on its campaign's rate,
    worth as many sales: with few sales neither the pooled rate nor a fixed
    split between pages is known, so a page that has shown no sale of its own
    (or no click) scores as its campaign, and a page's own clicks move it away
    only as far as its sales support (a page with three times the sales on
    as many clicks ends up between one and three times its sibling, nearer
    three the more sales). The model is the campaign's rate as its intercept
    plus, per page, the logit difference as that page's coefficient.

    With the hierarchical learner's shared effects (``task.prior``, when its
    group shares any), the profile coefficients are those effects, unfitted,
    and the intercept is lowered so that the campaign's own traffic still
    averages its smoothed rate (:func:`_shared_level`): the rate says how
    much the campaign sells, its vertical says to whom. The held-out slice is
    scored the same way with the effects fitted on the training parts.
    """
    smooth = settings.pooled_rate, settings.prior_positives
    train_sales = task.train_positives + task.train_late_positives
    train_rate = smoothed_rate(train_sales, task.train_exposure, *smooth)
    rate = smoothed_rate(task.positives + task.late_positives, task.exposure, *smooth)
    intercept = math.log(rate / (1 - rate))
    hold_rate = np.full(len(task.hold_labels), train_rate)
    coef = None
    n, strength = len(task.model_pages), settings.prior_positives
    if task.pages is not None and n:
        pages = task.pages
        sales = pages.positives[:n] + pages.late[:n]
        page_rate = smoothed_rates(sales, pages.exposure[:n], rate, strength)
        coef = np.zeros(settings.n_columns + n, dtype=np.float64)
        coef[settings.n_columns :] = np.log(page_rate / (1 - page_rate)) - intercept
        seen = pages.train_sales[:n], pages.train_exposure[:n]
        train_page = smoothed_rates(*seen, train_rate, strength)
        listed = pages.hold < n  # a page no longer listed scores as the campaign
        hold_rate[listed] = train_page[pages.hold[listed]]
    if task.prior is not None:  # the vertical's profile effects, around the campaign's rate
        coef = np.zeros(settings.n_columns + n, dtype=np.float64) if coef is None else coef
        coef[: settings.n_columns] = task.prior
        full, training = task.prior_levels
        intercept -= _shared_level(task.prior, task, len(task.labels), settings.n_columns, full)
        assert task.training_prior is not None  # set together with ``prior``
        shape = design_matrix(task.hold_cols, settings.n_columns) @ task.training_prior
        shape -= _shared_level(task.training_prior, task, task.split, settings.n_columns, training)
        hold_rate = expit(np.log(hold_rate / (1 - hold_rate)) + shape)
    metrics = evaluate(task.hold_labels, hold_rate) if len(task.hold_labels) else None
    details = {
        "rate": rate,
        "pooled_rate": settings.pooled_rate,
        "late_positives": task.late_positives,
        "exposure": round(task.exposure, 2),
    }
    if task.global_c is not None:
        details["global_c"] = task.global_c
    return FitResult(
        task.campaign_id, "base_rate", coef, intercept, None, metrics, None, "", "", 0, details
    )


def _shared_level(
    prior: np.ndarray, task: CampaignTask, rows: int, n_columns: int, default: float
) -> float:
    """log of the mean of ``exp(x . prior)`` over the campaign's first ``rows`` kept rows,
    each weighted by the population it stands for (``default`` without rows).

    Subtracted from the intercept, it keeps the campaign's average rate over
    its own traffic at its smoothed rate while the shared effects move each
    profile around it (exactly in the rare-sale limit, where the odds are the
    rate).
    """
    if rows == 0:
        return default
    return population_level(prior, task.cols[:rows], task.labels[:rows], task.rate, n_columns)


def population_level(
    prior: np.ndarray, cols: np.ndarray, labels: np.ndarray, rate: Any, n_columns: int
) -> float:
    """log of the mean of ``exp(x . prior)`` over kept rows ``cols``, a negative kept
    with probability ``rate`` (a scalar, or one per row) standing for ``1 / rate`` rows."""
    logits = design_matrix(cols, n_columns) @ prior
    population = np.where(labels > 0, 1.0, 1.0 / rate)
    return float(logsumexp(logits, b=population) - math.log(population.sum()))


def _logistic(settings: FitSettings, task: CampaignTask, space: FeatureSpace) -> FitResult:
    harmonics = settings.hour_harmonics
    pages = task.pages if task.model_pages else None
    n_pages = len(pages.ids) if pages is not None else 0
    cols = _with_pages(task.cols, pages.kept if pages else None, settings.n_columns)
    hold_cols = _with_pages(task.hold_cols, pages.hold if pages else None, settings.n_columns)
    used = used_columns(cols)  # a page without kept rows gets no column: the campaign's level
    if task.prior is not None:  # a value the campaign never saw scores the shared effect
        used = np.union1d(used, np.arange(settings.n_columns))
    if harmonics:  # every hour scores the fitted curve, seen in training or not
        used = np.union1d(used, hour_columns(space))
    # page columns lie past the last offset: they form one more field
    field_of = np.searchsorted(column_offsets(space), used, side="right") - 1
    X = design_matrix(restrict(cols, used), len(used))
    X_hold = design_matrix(restrict(hold_cols, used), len(used))
    y = task.labels.astype(np.float64)
    weight = np.where(y > 0, settings.positive_weight, 1.0)
    # sampling negatives at rate r (or weighting positives by w) multiplies the
    # odds by 1/r (w); adding log(r / w) to the intercept undoes it exactly
    shift = math.log(task.rate) - math.log(settings.positive_weight)
    hours = _Hours(harmonic_features(task.cols, space, harmonics), harmonics, used, space)
    priors = (
        _prior_at(task.prior, settings, used, hours),
        _prior_at(task.training_prior, settings, used, hours),
    )
    fit = _Fit(X, y, weight, task.rate, field_of, settings.max_iter, hours, priors)
    grid, chosen_at = c_candidates(settings, task)
    chosen, metrics, scores = _choose_c(grid, task, fit, X_hold, shift)
    if metrics is None:  # no held-out verdict: nothing was chosen, choose again next time
        chosen_at = 0
    coef_used, intercept = fit(chosen, slice(None))
    coef = np.zeros(settings.n_columns + n_pages, dtype=np.float64)
    coef[used] = coef_used
    coef = coef[: settings.n_columns + len(task.model_pages)]  # pages no longer listed: out
    precision = None
    if settings.posterior:  # at the fit's own logits: before the shifts below
        precision = _precision(X, X @ coef_used + intercept, weight, chosen, used, len(coef))
    intercept += shift
    recent = 0.0
    if settings.recent_prior_sales > 0:  # off by default: no scoring of the slice then
        logits = X_hold @ coef_used + intercept
        recent = recent_level_shift(logits, task.hold_labels, settings.recent_prior_sales)
    intercept += recent
    details = {
        "rate": task.rate,
        "recent_shift": recent,
        "grid_log_loss": scores,
        "kept_rows": len(y),
        "c_chosen_at_positives": chosen_at,
    }
    if task.global_c is not None:
        details["global_c"] = task.global_c
    result = FitResult(
        task.campaign_id, "logistic", coef, intercept, chosen, metrics, None, "", "", 0, details
    )
    result.precision = precision
    return result


def _prior_at(
    prior: np.ndarray | None, settings: FitSettings, used: np.ndarray, hours: _Hours
) -> np.ndarray | None:
    """Shared coefficients at the fit's design columns (None: the independent learner).

    Page columns (past ``n_columns``) and the hour harmonics are the
    campaign's own: pulled towards 0.
    """
    if prior is None:
        return None
    shared = used < settings.n_columns
    at_used = np.zeros(len(used), dtype=np.float64)
    at_used[shared] = prior[used[shared]]
    return np.concatenate([at_used, np.zeros(hours.features.shape[1])])


def _precision(
    X: Any, logits: np.ndarray, weight: np.ndarray, C: float, used: np.ndarray, width: int
) -> tuple[np.ndarray, float]:
    """The fit's diagonal Laplace precision over ``width`` model columns.

    A column the fit never saw carries only the prior's precision ``1 / C``.
    """
    on_used, intercept = diagonal_precision(X, logits, weight, C)
    full = np.full(max(width, int(used.max(initial=-1)) + 1), 1.0 / C)
    full[used] = on_used
    return full[:width], intercept


def _with_pages(cols: np.ndarray, pages: np.ndarray | None, n_columns: int) -> np.ndarray:
    """``cols`` and one more field, page ``j`` as column ``n_columns + j`` (None: ``cols``)."""
    if pages is None:
        return cols
    return np.column_stack([cols, pages.astype(np.int32) + n_columns]).astype(np.int32)


class _Fit:
    """Fits on (a time prefix of) one campaign's kept rows; returns centred parameters.

    One-hot coefficients are only identified up to a constant per field (the
    intercept absorbs it), and L2 splits that constant arbitrarily. A value
    absent from training (a new device, a weekday outside the window) scores
    the field's omitted level, so the split would leak into its predictions.
    Centring each field's coefficients on their training-population mean,
    and moving the mean into the intercept, leaves every prediction on seen
    values unchanged and gives unseen values the field's average effect.
    The landing page is such a field: a page without rows scores at the
    campaign's level, its pages' effects averaged over the traffic they had.

    With ``priors`` (the hierarchical learner: shared coefficients fitted on
    every row, and on the training parts), the coefficients are pulled towards
    them instead of towards 0 (:func:`~clickrouter.training.hierarchy.fit_campaign`):
    a fit on every row towards the first, a fit on a prefix towards the second.
    """

    def __init__(
        self,
        X: Any,
        y: np.ndarray,
        weight: np.ndarray,
        rate: float,
        field_of: np.ndarray,
        max_iter: int,
        hours: _Hours,
        priors: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    ) -> None:
        self.X, self.y, self.weight, self.field_of = X, y, weight, field_of
        self.priors = priors
        self.population = np.where(y > 0, 1.0, 1.0 / rate)  # rows each kept row stands for
        self.max_iter = max_iter
        self.hours = hours
        self.design = sp.hstack([X, sp.csr_matrix(hours.features)], format="csr")

    def __call__(self, C: float, rows: slice) -> tuple[np.ndarray, float]:
        coef, intercept = self._raw(C, rows)
        coef = self.hours.fold(coef)
        mass = np.asarray(self.X[rows].T @ self.population[rows]).ravel()
        n_fields = int(self.field_of.max(initial=-1)) + 1
        total = np.bincount(self.field_of, weights=mass * coef, minlength=n_fields)
        count = np.bincount(self.field_of, weights=mass, minlength=n_fields)
        centre = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        return coef - centre[self.field_of], intercept + float(centre.sum())

    def _raw(self, C: float, rows: slice) -> tuple[np.ndarray, float]:
        """Coefficients over [one-hot | harmonics] and the intercept, uncentred."""
        y, weight = self.y[rows], self.weight[rows]
        prior = self.priors[0] if rows == slice(None) else self.priors[1]
        if prior is None:
            model = _fit(self.design[rows], y, weight, C, self.max_iter)
            return model.coef_[0], float(model.intercept_[0])
        fit = fit_towards(self.design[rows], y, prior, C=C, weight=weight)
        return fit.coef, fit.intercept


class _Hours:
    """The hour harmonics next to the one-hot columns, and their folding back.

    features: (n_kept, 2 * harmonics) dense columns (none when harmonics is 0);
    fold() turns a coefficient vector over [one-hot | harmonics] into one over
    the one-hot columns alone, the curve added to the 24 hour columns.
    """

    def __init__(
        self, features: np.ndarray, harmonics: int, used: np.ndarray, space: FeatureSpace
    ) -> None:
        self.features, self.harmonics = features, harmonics
        self.width = len(used)
        self.positions = np.searchsorted(used, hour_columns(space)) if harmonics else None

    def fold(self, coef: np.ndarray) -> np.ndarray:
        one_hot = coef[: self.width].copy()
        if self.positions is not None:
            one_hot[self.positions] += fold_harmonics(coef[self.width :], self.harmonics)
        return one_hot


def c_candidates(settings: FitSettings, task: CampaignTask) -> tuple[tuple[float, ...], int]:
    """The C values to try, and the sales count the chosen one will be recorded as chosen on.

    Re-choosing C costs a fit per grid value; the served model's C stays the
    right choice while the data has not grown much, so it is kept until the
    sales exceed ``(1 + c_regrid_growth)`` times those it was chosen on (and
    while it is still one of the grid's values).
    """
    served_c, chosen_at, growth = task.served_c, task.served_c_positives, settings.c_regrid_growth
    small_growth = growth > 0 and task.positives <= chosen_at * (1 + growth)
    if served_c in settings.c_grid and chosen_at > 0 and small_growth:  # grid still offers it
        return (served_c,), chosen_at
    return settings.c_grid, task.positives


def recent_level_shift(logits: np.ndarray, labels: np.ndarray, prior_sales: float) -> float:
    """Intercept shift that sets the model's level on the newest rows (0 when off or empty).

    ``log((observed + k) / (predicted + k))`` over the held-out slice, ``k`` =
    ``prior_sales``: the Gamma-Poisson posterior mean of the slice's sales
    ratio under a prior that the fit's level is right, so a slice with few
    sales moves the level little. For rare sales, shifting the logit shifts
    the log rate by the same amount.
    """
    if prior_sales <= 0 or len(labels) == 0:
        return 0.0
    observed, predicted = float(labels.sum()), float(expit(logits).sum())
    return math.log((observed + prior_sales) / (predicted + prior_sales))


def _choose_c(
    grid: tuple[float, ...], task: CampaignTask, fit: _Fit, X_hold: Any, shift: float
) -> tuple[float, dict[str, Any] | None, dict[str, float]]:
    """Best C of ``grid`` by held-out log loss when the training part has both classes."""
    part = slice(0, task.split)
    if len(task.hold_labels) == 0 or len(np.unique(fit.y[part])) < 2:
        return grid[len(grid) // 2], None, {}
    best: tuple[float, float, np.ndarray] | None = None
    scores: dict[str, float] = {}
    for C in grid:
        coef, intercept = fit(C, part)
        proba = expit(X_hold @ coef + intercept + shift)
        loss = log_loss(task.hold_labels, proba)
        scores[repr(C)] = loss
        if best is None or loss < best[1]:
            best = (C, loss, proba)
    assert best is not None
    return best[0], evaluate(task.hold_labels, best[2]), scores


def _fit(X: Any, y: np.ndarray, weight: np.ndarray, C: float, max_iter: int) -> LogisticRegression:
    # Newton steps with a Cholesky solve: few iterations on a few hundred
    # one-hot columns, and the intercept is not penalised (unlike liblinear),
    # which the sampling correction relies on
    model = LogisticRegression(C=C, max_iter=max_iter, solver="newton-cholesky")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, sample_weight=weight)


def _served_metrics(task: CampaignTask, space: FeatureSpace) -> dict[str, Any] | None:
    """The served model's metrics on the same slice (None when it cannot tell)."""
    if task.served_model is None or len(task.hold_labels) == 0:
        return None
    pages = None
    if task.pages is not None and task.pages.ids:
        pages = np.asarray(task.pages.ids, dtype=object)[task.pages.hold]
    try:
        proba = served_proba(read_model(task.served_model), task.hold_cols, space, pages)
    except Exception:  # an unreadable served model is simply not a baseline
        return None
    return evaluate(task.hold_labels, proba)


def guard(
    new: dict[str, Any] | None, served: dict[str, Any] | None, settings: FitSettings
) -> tuple[str, str]:
    """("promoted" | "kept", why): keep the served model when the new one is clearly worse."""
    if new is not None and new["positives"] < settings.guard_min_positives:
        return "promoted", f"held-out slice has {new['positives']} sales: too few to judge"
    if served is None or new is None:
        return "promoted", "no served model to compare on the held-out slice"
    new_loss, old_loss = new["log_loss"], served["log_loss"]
    limit = old_loss * (1 + settings.guard_tolerance)
    if new_loss > limit:
        return "kept", f"held-out log loss {new_loss:.6g} > served {old_loss:.6g} (+tolerance)"
    return "promoted", f"held-out log loss {new_loss:.6g} vs served {old_loss:.6g}"
