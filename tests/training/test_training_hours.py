"""Hour harmonics: fitted next to the one-hot hours, folded into them exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from clickrouter.features import FeatureSpace
from clickrouter.training.design import build_space, column_offsets, encode_columns
from clickrouter.training.fitting import FitSettings, fit_campaign
from clickrouter.training.hours import fold_harmonics, harmonic_features, hour_columns
from clickrouter.training.settings import TrainingSettings
from clickrouter.training.tasks import campaign_tasks

HOURS = np.arange(24)
T0 = 1.7619e9  # a Sunday, 2025-11-02


def _bump(peak: float, amplitude: float) -> np.ndarray:
    return np.asarray(amplitude * np.cos(2 * np.pi * (HOURS - peak) / 24))


def test_harmonic_features_score_like_the_folded_hour_coefficients(world: Any) -> None:
    space = build_space(world.traffic(500, T0))
    frame = pd.DataFrame({"local_hour": HOURS, "local_weekday": 0}).assign(
        country="FR", device="dev-0", os="ios", browser="opera mini", provider="carrier-a"
    )
    cols = encode_columns(frame, space)
    coef = np.random.default_rng(3).normal(size=4)
    folded = fold_harmonics(coef, 2)
    np.testing.assert_allclose(harmonic_features(cols, space, 2) @ coef, folded, atol=1e-12)
    assert hour_columns(space).tolist() == cols[:, space.fields.index("local_hour")].tolist()
    cols[:3, space.fields.index("local_hour")] = -1  # out of vocabulary: no contribution
    assert not harmonic_features(cols, space, 2)[:3].any()


def _task(world: Any, curve: np.ndarray, n: int, hours: np.ndarray, seed: int) -> Any:
    """A campaign whose logit is a daily curve only, ~70 sales in ``n`` clicks."""
    frame = world.traffic(n, T0)
    frame = frame[np.isin(frame["local_hour"], hours)].reset_index(drop=True)
    p = expit(np.log(70 / n) + curve[frame["local_hour"].to_numpy()])
    frame["label"] = (np.random.default_rng(seed).random(len(frame)) < p).astype(np.int8)
    frame["campaign_id"] = "c"
    space = build_space(frame)
    settings = TrainingSettings(negative_rate=0.1, min_negatives=0)
    (task,) = campaign_tasks(frame, encode_columns(frame, space), ["c"], settings, {})
    return task, space


def _hour_curve(space: FeatureSpace, task: Any, harmonics: int) -> np.ndarray:
    fit_settings = FitSettings(
        space=space.to_dict(),
        n_columns=int(column_offsets(space)[-1]),
        c_grid=(0.01, 0.03, 0.1, 0.3, 1.0),
        positive_weight=1.0,
        min_positives=20,
        prior_positives=2.0,
        pooled_rate=1e-3,
        guard_tolerance=0.02,
        max_iter=300,
        hour_harmonics=harmonics,
    )
    result = fit_campaign(fit_settings, space, task)
    assert result.kind == "logistic" and result.coef is not None
    return np.asarray(result.coef[hour_columns(space)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_daily_bump_is_learnt_better_from_few_sales(world: Any, seed: int) -> None:
    curve = _bump(peak=20.0, amplitude=0.8)
    task, space = _task(world, curve, 300_000, HOURS, seed)
    assert 40 <= task.positives <= 110
    # the shape of the daily curve (its scale is the penalty's business)
    shape = {h: np.corrcoef(_hour_curve(space, task, h), curve)[0, 1] for h in (0, 1)}
    assert shape[1] > 0.9 and shape[1] > shape[0] + 0.1, shape


def test_hours_unseen_in_training_follow_the_fitted_curve(world: Any) -> None:
    curve = _bump(peak=12.0, amplitude=1.0)
    seen = np.arange(6, 18)
    task, space = _task(world, curve, 600_000, seen, seed=5)
    one_hot_only = _hour_curve(space, task, 0)
    unseen = np.setdiff1d(HOURS, seen)
    # without harmonics an unseen hour can only get the field's average effect
    assert np.ptp(one_hot_only[unseen]) == pytest.approx(0.0, abs=1e-9)
    smooth = _hour_curve(space, task, 1)
    # with them, midnight is scored as the trough of the curve fitted by day
    assert smooth[0] < smooth[unseen].mean() < smooth[seen].mean()
    assert np.ptp(smooth[unseen]) > 0.02  # not flat (measured 0.04-0.4 over six draws)
