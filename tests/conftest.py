"""Suite-wide settings: hypothesis without wall-clock deadlines.

The suite runs on a 2-core machine beside other work; timing-based health checks
would make property tests flaky without making them stricter.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "clickrouter",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("clickrouter")
