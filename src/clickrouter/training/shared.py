"""The hierarchical learner's shared stage: global models on many campaigns' rows.

Runs in the trainer before the per-campaign fits and attaches to each task
the shared profile effects of its group
(:func:`~clickrouter.training.hierarchy.fit_global`); they travel to the
workers with the task. A campaign that will get a logistic model pulls its
coefficients towards them; a campaign below ``logistic_min_positives`` takes
them as they are, around its own smoothed rate (see
:func:`~clickrouter.training.fitting.fit_campaign`): three sales say little
about which profiles buy, its vertical's campaigns say more.

Campaigns share effects by group: with ``shared_by="vertical"`` the
campaigns of one catalogue vertical (a campaign without one shares with the
other campaigns without one), with ``"all"`` every campaign. A group's rows
are the kept rows of its campaigns that will get a logistic model, with the
weights the campaign's own fit gives them. Each campaign has a free level, so
the campaigns' different negative sampling rates only move their levels, not
the shared effects. Landing pages and the hour harmonics are a campaign's
own and stay out of this stage.

The shared stage's inverse L2 strength is ``global_c``, or, by default,
chosen per group and cycle on the campaigns' training parts
(:func:`~clickrouter.training.hierarchy.choose_global_c`: the value whose
effects, fitted on half the group's campaigns, best predict the other half,
if any predicts them reliably better than no shared effect). A group where
none does shares nothing: its campaigns get no prior and are fitted exactly
as the independent learner fits them, and their records say ``global_c`` 0.
Each group is fitted twice: on every kept row (the prior of the published
fits) and on the campaigns' training parts alone (the prior of the fits that
choose C on the held-out slices, which must not have seen those slices
through it).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from clickrouter.training.design import design_matrix
from clickrouter.training.fitting import CampaignTask, population_level
from clickrouter.training.hierarchy import NO_SHARING, choose_global_c, fit_global
from clickrouter.training.settings import TrainingSettings

Traffic = tuple[np.ndarray, np.ndarray, np.ndarray]  # (cols, labels, negative sampling rate)


def attach_shared_effects(
    tasks: list[CampaignTask],
    settings: TrainingSettings,
    n_columns: int,
    verticals: dict[str, str | None],
) -> None:
    """Set ``prior``, ``training_prior`` and ``global_c`` of the tasks of each group.

    A group is fitted on its tasks that get a logistic model; its thin tasks
    share the result (a group without such a task shares nothing). Nothing
    for the independent learner. verticals: each campaign's catalogue
    vertical (a campaign not in it: none).
    """
    if settings.learner != "hierarchical":
        return
    groups: dict[str | None, list[CampaignTask]] = {}
    thin: dict[str | None, list[CampaignTask]] = {}
    for task in tasks:
        key = verticals.get(task.campaign_id) if settings.shared_by == "vertical" else None
        fitted = task.positives >= settings.logistic_min_positives
        (groups if fitted else thin).setdefault(key, []).append(task)
    traffic: Traffic | None = None  # gathered once, when the first group shares effects
    for key, members in groups.items():
        splits = [t.split for t in members]
        C = settings.global_c
        if C is None:  # judged on the training parts: the held-out slices stay unseen
            C = _choose(members, splits, settings, n_columns)
        if C == NO_SHARING:
            for task in members + thin.get(key, []):
                task.global_c = NO_SHARING
            continue
        full = _fit(members, [len(t.labels) for t in members], settings, n_columns, C)
        training = _fit(members, splits, settings, n_columns, C)
        if traffic is None:
            traffic = _traffic(tasks)
        levels = _level(full, traffic, n_columns), _level(training, traffic, n_columns)
        for task in members + thin.get(key, []):
            task.prior, task.training_prior, task.global_c = full, training, C
            task.prior_levels = levels


def _traffic(tasks: list[CampaignTask]) -> Traffic:
    """Every task's kept rows: (cols, labels, each row's negative sampling rate)."""
    kept = [t for t in tasks if len(t.labels)]
    if not kept:
        return np.zeros((0, 0), np.int32), np.zeros(0, np.int8), np.zeros(0)
    cols = np.concatenate([t.cols for t in kept])
    labels = np.concatenate([t.labels for t in kept])
    rate = np.repeat([t.rate for t in kept], [len(t.labels) for t in kept])
    return cols, labels, rate


def _level(prior: np.ndarray, traffic: Traffic, n_columns: int) -> float:
    """``population_level`` over the cycle's traffic, for a campaign without rows of its own."""
    cols, labels, rate = traffic
    if len(labels) == 0:
        return 0.0
    return population_level(prior, cols, labels, rate, n_columns)


def _rows(
    tasks: list[CampaignTask], rows: list[int], settings: TrainingSettings, n_columns: int
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray] | None:
    """(design, labels, campaign index, weights) of the first ``rows[k]`` kept rows of
    task ``k``; None without rows of both classes."""
    labels = [t.labels[:n] for t, n in zip(tasks, rows, strict=True)]
    y = np.concatenate([np.zeros(0), *labels]).astype(np.float64)
    if not 0 < y.sum() < len(y):
        return None
    parts = [design_matrix(t.cols[:n], n_columns) for t, n in zip(tasks, rows, strict=True)]
    X = sp.vstack(parts, format="csr")
    campaign = np.repeat(np.arange(len(tasks)), rows)
    return X, y, campaign, np.where(y > 0, settings.positive_weight, 1.0)


def _fit(
    tasks: list[CampaignTask],
    rows: list[int],
    settings: TrainingSettings,
    n_columns: int,
    C: float,
) -> np.ndarray:
    """The shared coefficients on the first ``rows[k]`` kept rows of task ``k``.

    All zeros without rows of both classes (each campaign's fit is then the
    ordinary one, pulled towards 0).
    """
    found = _rows(tasks, rows, settings, n_columns)
    if found is None:
        return np.zeros(n_columns, dtype=np.float64)
    X, y, campaign, weight = found
    model = fit_global(X, y, campaign, len(tasks), C=C, weight=weight)
    return np.asarray(model.coef, dtype=np.float64)


def _choose(
    tasks: list[CampaignTask], rows: list[int], settings: TrainingSettings, n_columns: int
) -> float:
    """The group's global C: the grid's value whose shared effects best predict the
    group's campaigns they were not fitted on (``NO_SHARING`` when none does reliably)."""
    found = _rows(tasks, rows, settings, n_columns)
    grid = settings.global_c_grid
    if found is None:
        return NO_SHARING
    X, y, campaign, weight = found
    return choose_global_c(X, y, campaign, len(tasks), grid, weight=weight)[0]
