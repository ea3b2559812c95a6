"""Fixtures of the HTTP predictor tests (defined in http_support and policy_support)."""

from serving.http.http_support import (  # noqa: F401 - pytest finds fixtures by name here
    events_dir,
    other_models,
    sample_models,
    server,
    store,
)
from serving.http.policy_support import live  # noqa: F401
