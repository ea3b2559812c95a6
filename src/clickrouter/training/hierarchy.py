"""Per-campaign logistic models that borrow strength from a global one (GLMix-style).

Two stages, each an L2-penalised logistic regression on the sparse one-hot
design the trainer builds (any extra dense columns, such as the hour
harmonics, work the same way). With ``l(y, z) = log(1 + e^z) - y z``, sample
weights ``s_i`` and fixed offsets ``o_i``:

**The global model** is fitted on every campaign's records at once. The
profile effects ``beta`` are shared; each campaign ``c`` keeps a level ``a_c``
of its own, unpenalised (a fixed effect), so that campaigns converting at
very different rates, or sampled at different negative rates, only teach the
shared model how the profile *moves* conversion:

    minimise  sum_i s_i l(y_i, o_i + a_c(i) + x_i . beta) + |beta|^2 / (2 C_g).

A campaign whose records are all one class has no finite level (its optimum
lies at infinity) and, with its level free, nothing to say about ``beta``: it
is left out of this stage (level ``-inf`` or ``+inf``).

**A campaign's model** is fitted on its own records, its coefficients pulled
towards the global ones instead of towards zero:

    minimise  sum_{i in c} s_i l(y_i, o_i + b + x_i . w) + |w - beta|^2 / (2 C_d),

its intercept ``b`` free. Writing ``w = beta + d`` this is the GLMix form: the
deviation ``d`` fitted with the global logit ``x_i . beta`` as an offset and
an ordinary L2 penalty. A campaign with three sales ends up with the global
profile effects and its own level; one with thousands of sales moves ``w``
as far from ``beta`` as its data supports, towards its own unpenalised fit
(``C_d -> infinity``); as ``C_d -> 0`` it keeps ``beta`` and, since the global
stage's level solves the same intercept equation, the global stage's level.
Columns the campaign never activates carry no data, so their coefficients
stay exactly at ``beta``: the fit runs on the campaign's active columns
only. Columns of its own (its landing pages, which mean nothing to another
campaign) can be appended; they are pulled towards zero with the same
penalty.

Both stages minimise with scipy's L-BFGS-B, the objective divided by the
total weight (the same minimiser, better scaled tolerances) and each
variable scaled by its curvature at the start, from the global effects and
the campaign's level; a fit stopped by the iteration limit says so
(``converged``). The result is an ordinary coefficient
vector in the design's layout, so :func:`campaign_pipeline` publishes it as
the same sklearn ``Pipeline`` the trainer publishes: the bank compiles it
unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from clickrouter.training.models import logistic_pipeline

# Every public fit runs with one BLAS thread: L-BFGS-B's small dense updates
# and these matrix-vector products are far slower with threads competing for
# the cores (the trainer's executors already run one fit per core).
# L-BFGS-B stops on the weight-normalised objective's largest projected
# gradient entry; the relative-decrease test is made too small to fire first.
# Tight enough to reach sklearn's newton-cholesky optimum to about 1e-6 on
# well-posed problems
_GTOL: Final = 1e-10
_FTOL: Final = 1e-15
_MAX_ITER: Final = 5000
# a design with at most this many cells is multiplied as a dense array
_DENSE_CELLS: Final = 1 << 19
# choose_global_c's answer when no shared effect predicts held-out campaigns
# better than none: the campaigns are fitted on their own
NO_SHARING: Final = 0.0


@dataclass(frozen=True)
class GlobalModel:
    """The shared profile effects and each campaign's level.

    coef: (d,) shared coefficients over the design's columns.
    levels: (n_campaigns,) each campaign's fitted level (its intercept next to
        ``coef``); ``-inf``/``+inf`` for a campaign whose records are all
        negatives/positives (or that has none: ``-inf``).
    iterations: L-BFGS iterations of the fit; converged: False when it
        stopped at the iteration limit rather than at the optimum.
    """

    coef: np.ndarray
    levels: np.ndarray
    iterations: int
    converged: bool


@dataclass(frozen=True)
class CampaignFit:
    """One campaign's model: ``P(sale) = expit(offset + intercept + x . coef)``.

    coef: (d + n_own,) global coefficients plus the campaign's deviation over
        the shared columns, then its own columns' coefficients.
    deviation: (d,) ``coef[:d] - global coef``.
    iterations, converged: as for :class:`GlobalModel`.
    """

    coef: np.ndarray
    intercept: float
    deviation: np.ndarray
    iterations: int
    converged: bool


def fit_global(
    X: Any,
    y: np.ndarray,
    campaign: np.ndarray,
    n_campaigns: int,
    *,
    C: float,
    weight: np.ndarray | None = None,
    offset: np.ndarray | None = None,
) -> GlobalModel:
    """Shared profile effects with a free level per campaign (rows of mixed-label campaigns).

    X: (n, d) design; y: (n,) 0/1 labels; campaign: (n,) int index of each
    row's campaign in ``range(n_campaigns)``; C: inverse L2 penalty on ``coef``.
    """
    with threadpool_limits(limits=1):
        return _global(X, y, campaign, n_campaigns, C, weight, offset)


def _global(
    X: Any,
    y: np.ndarray,
    campaign: np.ndarray,
    n_campaigns: int,
    C: float,
    weight: np.ndarray | None,
    offset: np.ndarray | None,
) -> GlobalModel:
    X, y, weight, offset = _inputs(X, y, weight, offset)
    campaign = _campaign_index(campaign, len(y), n_campaigns)
    _check_C(C)
    levels = _one_class_levels(y, campaign, n_campaigns)
    mixed = ~np.isinf(levels)
    rows = mixed[campaign]
    n_mixed, d = int(mixed.sum()), X.shape[1]
    design = sp.hstack(
        [sp.csr_matrix(X[rows]), _level_columns(campaign[rows], mixed)], format="csr"
    )
    precision = np.concatenate([np.full(d, 1.0 / C), np.zeros(n_mixed)])
    start = np.concatenate([np.zeros(d), _empirical_levels(y[rows], campaign[rows], mixed)])
    theta, iterations, converged = _minimise(
        design, y[rows], weight[rows], offset[rows], np.zeros(d + n_mixed), precision, start
    )
    levels[mixed] = theta[d:]
    return GlobalModel(theta[:d], levels, iterations, converged)


def choose_global_c(
    X: Any,
    y: np.ndarray,
    campaign: np.ndarray,
    n_campaigns: int,
    grid: tuple[float, ...],
    *,
    weight: np.ndarray | None = None,
    folds: int = 2,
) -> tuple[float, dict[float, float]]:
    """The C of ``grid`` whose shared effects best predict campaigns they were not
    fitted on, or 0.0: no shared effects.

    The shared effects exist to tell a campaign with few sales how the
    profile moves a campaign's conversion, so they are judged on campaigns
    they have not seen. The mixed-label campaigns are dealt into ``folds``
    (ranked by sales, so each fold holds large and small ones); for each fold
    and C the global stage is fitted on the other folds' rows, and on the
    fold's rows each campaign keeps only its own level, fitted with the
    shared logit ``x . beta`` as an offset, and scored by its weighted log
    loss (levels free, so only the profile effects are judged). The baseline
    is no shared effect at all (``beta = 0``, scored the same way): a C is
    chosen only when its gain over the baseline, summed over the held-out
    campaigns, exceeds two standard errors of the per-campaign gains
    (:func:`_significant_best`). Where campaigns share nothing, any shared
    effect is another campaign's own and helps none reliably: the answer is
    0.0, and each campaign is fitted on its own. Even the smallest C of the
    grid is not "nothing": on a group with thousands of sales the data
    outweigh a penalty of ``1 / C`` and the large campaigns' effects leak
    into the small ones. Returns (the chosen C, 0.0 for none; each C's total
    held-out loss, the baseline's under 0.0); with fewer mixed campaigns
    than folds there is nothing to judge by: 0.0 with no scores.
    """
    with threadpool_limits(limits=1):
        X, y, weight, _ = _inputs(X, y, weight, None)
        campaign = _campaign_index(campaign, len(y), n_campaigns)
        for C in grid:
            _check_C(C)
        return _choose_global_c(sp.csr_matrix(X), y, campaign, n_campaigns, grid, weight, folds)


def _choose_global_c(
    X: sp.csr_matrix,
    y: np.ndarray,
    campaign: np.ndarray,
    n_campaigns: int,
    grid: tuple[float, ...],
    weight: np.ndarray,
    folds: int,
) -> tuple[float, dict[float, float]]:
    mixed = ~np.isinf(_one_class_levels(y, campaign, n_campaigns))
    sales = np.bincount(campaign, weights=y, minlength=n_campaigns)
    ranked = [c for c in np.argsort(-sales, kind="stable") if mixed[c]]
    if len(ranked) < folds:
        return NO_SHARING, {}
    fold_of = np.full(n_campaigns, -1)
    fold_of[ranked] = np.arange(len(ranked)) % folds
    row_fold = fold_of[campaign]
    # each held-out campaign's loss under each C (every campaign is held out once)
    losses = {C: np.zeros(n_campaigns) for C in (NO_SHARING, *grid)}
    for k in range(folds):
        fit_rows, held = (row_fold >= 0) & (row_fold != k), row_fold == k
        X_held, y_held, w_held = X[held], y[held], weight[held]
        no_columns = sp.csr_matrix((len(y_held), 0))
        for C in losses:
            shared = np.zeros(len(y_held))
            if C != NO_SHARING:
                rows = (X[fit_rows], y[fit_rows], campaign[fit_rows], n_campaigns)
                beta = _global(*rows, C, weight[fit_rows], np.zeros(int(fit_rows.sum()))).coef
                shared = np.asarray(X_held @ beta).ravel()
            levels = _global(
                no_columns, y_held, campaign[held], n_campaigns, 1.0, w_held, shared
            ).levels
            z = shared + levels[campaign[held]]
            row_loss = w_held * (np.logaddexp(0.0, z) - y_held * z)
            losses[C] += np.bincount(campaign[held], weights=row_loss, minlength=n_campaigns)
    return _significant_best(grid, losses, np.asarray(ranked)), {
        C: float(loss.sum()) for C, loss in losses.items()
    }


def _significant_best(
    grid: tuple[float, ...], losses: dict[float, np.ndarray], held: np.ndarray
) -> float:
    """The C with the largest total gain over no sharing, among those whose gain
    exceeds two standard errors of the per-campaign gains; else 0.0 (none).

    A gain that one or two large campaigns carry while the rest lose is
    noise that would then be pulled into every campaign of the group.
    """
    best, best_gain = NO_SHARING, 0.0
    for C in grid:
        gain = losses[NO_SHARING][held] - losses[C][held]
        total = float(gain.sum())
        error = float(np.std(gain, ddof=1)) * math.sqrt(len(gain)) if len(gain) > 1 else np.inf
        if total > 2.0 * error and total > best_gain:
            best, best_gain = C, total
    return best


def fit_campaign(
    X: Any,
    y: np.ndarray,
    prior: np.ndarray,
    *,
    C: float,
    weight: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    own: Any = None,
    level: float | None = None,
) -> CampaignFit:
    """One campaign's coefficients pulled towards ``prior`` (the global coef), intercept free.

    X: (n, d) the campaign's rows over the shared columns; prior: (d,);
    C: inverse L2 penalty on ``coef - prior``; own: optional (n, k) columns
    of the campaign's own, pulled towards 0; level: a starting intercept
    (the global stage's level; default the campaign's empirical level).
    """
    with threadpool_limits(limits=1):
        return _campaign(X, y, prior, C, weight, offset, own, level)


def _campaign(
    X: Any,
    y: np.ndarray,
    prior: np.ndarray,
    C: float,
    weight: np.ndarray | None,
    offset: np.ndarray | None,
    own: Any,
    level: float | None,
) -> CampaignFit:
    X, y, weight, offset = _inputs(X, y, weight, offset)
    _check_C(C)
    if not 0 < y.sum() < len(y):
        raise ValueError("a campaign's fit needs records of both classes")
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (X.shape[1],):
        raise ValueError(f"prior has shape {prior.shape}, the design has {X.shape[1]} columns")
    X = sp.csr_matrix(X)
    active = np.flatnonzero(np.asarray(abs(X).sum(axis=0)).ravel() > 0)
    own = sp.csr_matrix((len(y), 0)) if own is None else sp.csr_matrix(own)
    if own.shape[0] != len(y):
        raise ValueError(f"own has {own.shape[0]} rows, the design has {len(y)}")
    n_own = own.shape[1]
    ones = sp.csr_matrix(np.ones((len(y), 1)))
    design = sp.hstack([X[:, active], own, ones], format="csr")
    mean = np.concatenate([prior[active], np.zeros(n_own), [0.0]])
    precision = np.concatenate([np.full(len(active) + n_own, 1.0 / C), [0.0]])
    start = mean.copy()  # the global effects, and the intercept near its optimum
    start[-1] = level if level is not None and math.isfinite(level) else _start_level(y, offset)
    theta, iterations, converged = _minimise(design, y, weight, offset, mean, precision, start)
    coef = np.concatenate([prior, theta[len(active) : -1]])
    coef[active] = theta[: len(active)]
    deviation = coef[: len(prior)] - prior
    return CampaignFit(coef, float(theta[-1]), deviation, iterations, converged)


@dataclass(frozen=True)
class Hierarchy:
    """The global model and every campaign's fit (None: a campaign with one class only)."""

    shared: GlobalModel
    campaigns: list[CampaignFit | None]


def fit_hierarchy(
    X: Any,
    y: np.ndarray,
    campaign: np.ndarray,
    n_campaigns: int,
    *,
    global_C: float,
    deviation_C: float | np.ndarray,
    weight: np.ndarray | None = None,
    offset: np.ndarray | None = None,
) -> Hierarchy:
    """Both stages: the global model, then each campaign's deviation from it.

    deviation_C: one inverse penalty for every campaign, or (n_campaigns,)
    one each (a C grid's choice per campaign).
    """
    with threadpool_limits(limits=1):
        return _hierarchy(X, y, campaign, n_campaigns, global_C, deviation_C, weight, offset)


def _hierarchy(
    X: Any,
    y: np.ndarray,
    campaign: np.ndarray,
    n_campaigns: int,
    global_C: float,
    deviation_C: float | np.ndarray,
    weight: np.ndarray | None,
    offset: np.ndarray | None,
) -> Hierarchy:
    X, y, weight, offset = _inputs(X, y, weight, offset)
    campaign = _campaign_index(campaign, len(y), n_campaigns)
    shared = _global(X, y, campaign, n_campaigns, global_C, weight, offset)
    penalties = np.broadcast_to(np.asarray(deviation_C, dtype=np.float64), (n_campaigns,))
    X = sp.csr_matrix(X)
    order = np.argsort(campaign, kind="stable")
    bounds = np.searchsorted(campaign[order], np.arange(n_campaigns + 1))
    fits: list[CampaignFit | None] = []
    for c in range(n_campaigns):
        rows = order[bounds[c] : bounds[c + 1]]
        if not math.isfinite(shared.levels[c]):
            fits.append(None)
            continue
        level, C = float(shared.levels[c]), float(penalties[c])
        fits.append(
            _campaign(X[rows], y[rows], shared.coef, C, weight[rows], offset[rows], None, level)
        )
    return Hierarchy(shared, fits)


def campaign_pipeline(
    transformer: ColumnTransformer, fit: CampaignFit, *, C: float, intercept_shift: float = 0.0
) -> Pipeline:
    """The published sklearn pipeline of a campaign's fit.

    The fit's columns must be the transformer's output columns (the trainer's
    layout); intercept_shift: added to the intercept (the trainer's
    negative-sampling correction). C is recorded on the LogisticRegression.
    """
    return logistic_pipeline(transformer, fit.coef, fit.intercept + intercept_shift, C=C)


def penalised_loss(
    design: Any,
    y: np.ndarray,
    weight: np.ndarray,
    offset: np.ndarray,
    mean: np.ndarray,
    precision: np.ndarray,
    theta: np.ndarray,
    transposed: Any = None,
) -> tuple[float, np.ndarray]:
    """``sum s l(y, o + A theta) + sum prec (theta - mean)^2 / 2`` and its gradient.

    transposed: ``design.T`` in a fast row-major form, when the caller keeps one.
    """
    z = offset + design @ theta
    loss = float(weight @ (np.logaddexp(0.0, z) - y * z))
    residual = weight * (expit(z) - y)
    gap = theta - mean
    value = loss + 0.5 * float(precision @ (gap * gap))
    transposed = design.T if transposed is None else transposed
    gradient = np.asarray(transposed @ residual).ravel() + precision * gap
    return value, gradient


def _minimise(
    design: Any,
    y: np.ndarray,
    weight: np.ndarray,
    offset: np.ndarray,
    mean: np.ndarray,
    precision: np.ndarray,
    start: np.ndarray,
) -> tuple[np.ndarray, int, bool]:
    """L-BFGS-B on the penalised loss divided by the total weight, diagonally preconditioned.

    The variables are rescaled by the square root of the Hessian's diagonal
    at the start: a campaign's level has the curvature of its rows, the
    shared effects that of every row, and L-BFGS converges in far fewer
    iterations when they are of one scale. The minimiser is unchanged.
    """
    total = float(weight.sum())
    design, transposed = _operators(design)
    z = offset + design @ start
    p = expit(z)
    squared = design.multiply(design) if sp.issparse(design) else design * design
    curvature = np.asarray(squared.T @ (weight * p * (1 - p))).ravel() + precision
    unit = np.sqrt(np.maximum(curvature, 1e-12 * total) / total)

    def objective(u: np.ndarray) -> tuple[float, np.ndarray]:
        theta = u / unit
        value, gradient = penalised_loss(
            design, y, weight, offset, mean, precision, theta, transposed
        )
        return value / total, gradient / (total * unit)

    result = minimize(
        objective,
        start * unit,
        jac=True,
        method="L-BFGS-B",
        options={"gtol": _GTOL, "ftol": _FTOL, "maxiter": _MAX_ITER, "maxcor": 20},
    )
    # status 1: the iteration limit; 2 (a line search that cannot improve on
    # rounding noise) happens at the optimum
    theta = np.asarray(result.x / unit, dtype=np.float64)
    return theta, int(result.nit), int(result.status) != 1


def _operators(design: Any) -> tuple[Any, Any]:
    """The design and its transpose in the forms fastest to multiply by, many times.

    A campaign's design is small: dense arrays skip the per-product
    bookkeeping of scipy's sparse matrices, which would cost more than the
    products. The global design stays sparse, with a row-major transpose.
    """
    if design.shape[0] * design.shape[1] <= _DENSE_CELLS:
        dense = np.asarray(design.toarray() if sp.issparse(design) else design)
        return dense, np.ascontiguousarray(dense.T)
    csr = sp.csr_matrix(design)
    return csr, csr.T.tocsr()


def _inputs(
    X: Any, y: np.ndarray, weight: np.ndarray | None, offset: np.ndarray | None
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, weights and offsets as float64 arrays of the design's row count."""
    n = X.shape[0]
    y = np.asarray(y, dtype=np.float64)
    weight = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    offset = np.zeros(n) if offset is None else np.asarray(offset, dtype=np.float64)
    for name, array in (("y", y), ("weight", weight), ("offset", offset)):
        if array.shape != (n,):
            raise ValueError(f"{name} has shape {array.shape}, the design has {n} rows")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not (np.isfinite(weight).all() and (weight > 0).all() and np.isfinite(offset).all()):
        raise ValueError("weights must be finite and positive, offsets finite")
    return X, y, weight, offset


def _check_C(C: float) -> None:
    if not (C > 0 and math.isfinite(C)):
        raise ValueError(f"C must be a positive finite number, got {C!r}")


def _level_columns(campaign: np.ndarray, mixed: np.ndarray) -> sp.csr_matrix:
    """One 0/1 column per mixed campaign: its level's column in the global design."""
    index = np.cumsum(mixed) - 1
    n = len(campaign)
    ones = np.ones(n)
    return sp.csr_matrix((ones, (np.arange(n), index[campaign])), shape=(n, int(mixed.sum())))


def _campaign_index(campaign: np.ndarray, n_rows: int, n_campaigns: int) -> np.ndarray:
    index = np.asarray(campaign, dtype=np.int64)
    if index.shape != (n_rows,) or (n_rows and not 0 <= index.min() <= index.max() < n_campaigns):
        raise ValueError("campaign must give each row an index in range(n_campaigns)")
    return index


def _start_level(y: np.ndarray, offset: np.ndarray) -> float:
    """The intercept that would match the rows' sale rate with the offsets at their mean."""
    return float(logit(y.mean()) - offset.mean())


def _one_class_levels(y: np.ndarray, campaign: np.ndarray, n_campaigns: int) -> np.ndarray:
    """0 for a campaign with both classes, else its level at infinity (-inf: no sale)."""
    rows = np.bincount(campaign, minlength=n_campaigns)
    sales = np.bincount(campaign, weights=y, minlength=n_campaigns)
    levels = np.zeros(n_campaigns)
    levels[sales == 0] = -np.inf
    levels[(sales == rows) & (rows > 0)] = np.inf
    return levels


def _empirical_levels(y: np.ndarray, campaign: np.ndarray, mixed: np.ndarray) -> np.ndarray:
    """Logit of each mixed campaign's sale rate: a start near its level."""
    index = np.cumsum(mixed) - 1
    slot = index[campaign]
    rows = np.bincount(slot, minlength=int(mixed.sum()))
    sales = np.bincount(slot, weights=y, minlength=int(mixed.sum()))
    return np.asarray(logit(sales / np.maximum(rows, 1)), dtype=np.float64)
