"""Typed settings: one object, loaded once by the composition root.

Every field can be set from the environment as ``CLICKROUTER_<NAME>`` (upper
case), e.g. ``CLICKROUTER_ADMIN_TOKEN``. Stages take the values they need as
constructor arguments; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from clickrouter.errors import InvalidInput

ENV_PREFIX = "CLICKROUTER_"


# compiled versions a serving predictor keeps in its bank cache by default
BANK_CACHE_KEEP = 8


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every tunable of the system, with its embedded default."""

    # serving
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    admin_token: str | None = None
    policy: str = "greedy"  # or "epsilon-greedy", "thompson", "gamma-thompson"
    epsilon: float = 0.05
    thompson_scale: float = 1.0  # multiplies the Thompson posterior spread (< 1: tempered)
    thompson_profile_spread: float = 0.5  # Thompson: log-sd of a profile's unmodelled deviation
    top_k_default: int = 10
    max_body_bytes: int = 64 * 1024
    # how far an event's time may run ahead of the server's clock (decide, click,
    # postback, and the consumer's check of every event it reads)
    clock_skew_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    # -- trust: postback authentication --
    # -- trust: durability of events --
    # -- trust: server limits --
    # -- trust: model and cache files --
    reload_poll_seconds: float = 1.0
    # compiled versions the bank cache keeps (most recently used first); a
    # serving predictor deletes the older ones after each reload
    bank_cache_keep: Annotated[int, msgspec.Meta(ge=1)] = BANK_CACHE_KEEP
    # events and data
    events_dir: str = "events"
    data_dir: str = "data"
    attribution_window_seconds: float = 7 * 24 * 3600.0
    # training
    store_dir: str = "store"
    negative_sampling_rate: float = 0.1
    min_positives: int = 20
    keep_versions: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``CLICKROUTER_*`` variables, then explicit overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"invalid setting: {exc}") from None
