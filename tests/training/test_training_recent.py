"""A logistic model's level is set on the newest rows, so drift does not leave it behind."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logit

from clickrouter.datastore import DataManager
from clickrouter.errors import InvalidInput
from clickrouter.profile import profile_frame
from clickrouter.training import TrainingManager, TrainingSettings
from clickrouter.training.fitting import recent_level_shift
from training.conftest import DAY, T0, Truth
from training.test_training_cycle import canonical


def test_the_shift_is_the_shrunk_log_ratio_of_observed_to_predicted_sales() -> None:
    labels = np.zeros(1000, dtype=np.int8)
    labels[:50] = 1
    logits = np.full(1000, float(logit(0.1)))  # 100 sales predicted, 50 observed
    assert recent_level_shift(logits, labels, 20.0) == pytest.approx(math.log(70 / 120))
    assert recent_level_shift(logits, labels, 0.0) == 0.0  # off
    assert recent_level_shift(logits[:0], labels[:0], 20.0) == 0.0  # no held-out slice


@given(
    observed=st.integers(0, 500),
    predicted=st.floats(0.5, 500),
    prior=st.floats(0.5, 100),
)
def test_the_shift_moves_towards_the_observed_level_and_never_past_it(
    observed: int, predicted: float, prior: float
) -> None:
    n = 2000
    labels = np.zeros(n, dtype=np.int8)
    labels[:observed] = 1
    logits = np.full(n, float(logit(predicted / n)))
    shift = recent_level_shift(logits, labels, prior)
    full = math.log(max(observed, 1e-12) / predicted)  # where the newest rows alone put it
    assert min(0.0, full) - 1e-9 <= shift <= max(0.0, full) + 1e-9
    more = recent_level_shift(logits, labels, prior * 2)  # a stronger prior moves it less
    assert abs(more) <= abs(shift) + 1e-12


@pytest.mark.parametrize("prior_sales", [0.0, 20.0])
def test_a_model_fitted_before_a_drop_in_conversion_follows_it(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any, prior_sales: float
) -> None:
    # three days at one level, then a day at a third of it that no feature
    # explains (a tired creative; the weekday field is kept the same, as within
    # one day): the newest day is what the model will be served on next
    before = world.add_campaign("drift", 0.04)
    after = Truth(before.intercept - math.log(3), before.effects)
    world.truths["drift-after"] = after
    old = world.records("drift", 30_000, start=T0, days=3.0)
    new = world.records("drift-after", 10_000, start=T0 + 3 * DAY, days=1.0)
    old["local_weekday"] = new["local_weekday"] = 2
    write_dataset(tmp_path / "data", "drift", old, tag="0")
    write_dataset(tmp_path / "data", "drift", new, tag="1")
    catalog = catalog_file(tmp_path / "campaigns.json", ["drift"])
    settings = TrainingSettings(workers=0, recent_prior_sales=prior_sales)
    manager = TrainingManager(DataManager(tmp_path / "data"), tmp_path / "store", catalog, settings)
    report = manager.run_cycle()
    record = manager.store.manifest(report.version)["campaigns"]["drift"]
    assert record["kind"] == "logistic"

    traffic = world.traffic(20_000, T0 + 4 * DAY, days=1.0).assign(local_weekday=2)
    model = joblib.load(manager.store.current_path() / record["file"])
    predicted = model.predict_proba(profile_frame(canonical(traffic)))[:, 1].mean()
    level = predicted / after.proba(traffic).mean()  # 1 = the level after the drop
    if prior_sales:
        assert record["recent_shift"] < -0.5  # most of the way to log(1/3) of the window's mean
        assert 0.8 < level < 1.3
    else:
        assert record["recent_shift"] == 0.0
        assert level > 1.4  # the window's average: three days at three times the rate


def test_a_negative_prior_is_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match=r"recent_prior_sales.*-1"):
        TrainingSettings(recent_prior_sales=-1.0)
    for endless in (math.inf, math.nan):  # would make every shifted intercept NaN
        with pytest.raises(InvalidInput, match="recent_prior_sales"):
            TrainingSettings(recent_prior_sales=endless)
