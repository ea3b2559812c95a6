"""Sale delay model: configured quantiles, bounds, and bad knots rejected."""

from __future__ import annotations

import numpy as np
import pytest

from clickrouter.errors import InvalidInput
from clickrouter.sim import DelayConfig, WorldConfig
from clickrouter.sim.delays import DelayModel

HOUR, DAY = 3600.0, 86400.0


def test_default_delays_third_within_an_hour_half_within_a_day_tail_to_30_days() -> None:
    model = DelayModel(DelayConfig())
    delays = model.sample(np.random.default_rng(0), 200_000)
    se = np.sqrt(0.25 / len(delays))
    assert abs(np.mean(delays <= HOUR) - 1 / 3) < 4.5 * se
    assert abs(np.mean(delays <= DAY) - 0.5) < 4.5 * se
    assert abs(np.mean(delays <= 7 * DAY) - 0.8) < 4.5 * se
    assert delays.min() >= 20.0 and delays.max() <= 30 * DAY
    assert np.mean(delays > 14 * DAY) > 0.05  # a real tail


def test_quantile_and_cdf_are_inverse_at_and_between_knots() -> None:
    config = DelayConfig(seconds=(10.0, 100.0, 1000.0), cdf=(0.0, 0.5, 1.0))
    model = DelayModel(config)
    assert model.quantile(np.array([0.5]))[0] == pytest.approx(100.0)
    assert model.quantile(np.array([0.25]))[0] == pytest.approx(np.sqrt(10.0 * 100.0))
    q = np.linspace(0, 1, 11)
    np.testing.assert_allclose(model.cdf(model.quantile(q)), q, atol=1e-12)
    assert model.max_seconds == 1000.0


@pytest.mark.parametrize(
    "delays",
    [
        DelayConfig(seconds=(10.0, 5.0), cdf=(0.0, 1.0)),
        DelayConfig(seconds=(10.0, 50.0), cdf=(0.2, 1.0)),
        DelayConfig(seconds=(10.0, 50.0, 90.0), cdf=(0.0, 0.7, 0.6)),
        DelayConfig(seconds=(10.0,), cdf=(1.0,)),
    ],
)
def test_bad_knots_are_rejected(delays: DelayConfig) -> None:
    with pytest.raises(InvalidInput, match="delays"):
        WorldConfig(delays=delays).validated()
