"""Fixtures of the monitoring tests: a real redis-server (the stream tests' fixture)."""

from stream.conftest import redis_url  # noqa: F401 - pytest finds fixtures by name here
