"""Typed settings: one object, loaded once by the composition root.

Every field can be set from the environment as ``CLICKROUTER_<NAME>`` (upper
case), e.g. ``CLICKROUTER_ADMIN_TOKEN``. Stages take the values they need as
constructor arguments; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from clickrouter.durations import parse_duration
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
    # postbacks: "required" (signed or carrying a shared secret) or "off" (local
    # development only: anyone who can reach the port may record sales)
    postback_auth: Literal["required", "off"] = "required"
    # lines "<advertiser or *> <secret>"; re-read when the file changes (rotation)
    postback_secrets_file: str | None = None
    postback_secret: str | None = None  # one global secret (CLICKROUTER_POSTBACK_SECRET)
    # key of the MAC in issued click ids: lines, the first signs, every one verifies
    # (without it, a random key per process: ids do not verify after a restart)
    click_secret_file: str | None = None
    click_secret: str | None = None  # CLICKROUTER_CLICK_SECRET
    # -- trust: durability of events --
    # when an answered event is persisted: "write" (handed to the OS before the
    # answer leaves; survives a kill), "fsync" (also synced to disk: survives a
    # power loss), "async" (queued, written within ~20 ms: a kill loses the queue)
    durability: Literal["write", "fsync", "async"] = "write"
    # async: events waiting in memory before decisions answer 503
    event_queue_max: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    # redis events: the local spool that holds them while the broker is away
    # (default <tmp>/clickrouter-spool/<host>_<port>_<stream>) and its bound
    spool_dir: str | None = None
    spool_max_bytes: Annotated[int, msgspec.Meta(ge=1 << 20)] = 1 << 30
    # -- trust: server limits --
    # per request: target length (414), header lines and their total size (431)
    max_url_bytes: Annotated[int, msgspec.Meta(ge=256)] = 8 * 1024
    max_headers: Annotated[int, msgspec.Meta(ge=8)] = 100
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 32 * 1024
    # a request must arrive whole within this time of its first byte (else 408)
    request_read_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    # a connection with no request under way is closed after this
    keep_alive_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    # per worker; beyond it the longest-idle connection is closed, or, none idle, 503
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 4096
    # -- trust: model and cache files --
    # unpickle model files whatever their owner and mode (the operator vouches for
    # every writer of the model directory); default: only files owned by this user
    # or root in directories nobody else may write, or listed in a signed manifest
    trust_models: bool = False
    # key (>= 32 bytes, mode 600) of manifest signatures: the trainer signs what it
    # publishes, the predictor trusts the files a valid signature lists
    model_signing_key_file: str | None = None
    reload_poll_seconds: float = 1.0
    # compiled versions the bank cache keeps (most recently used first); a
    # serving predictor deletes the older ones after each reload
    bank_cache_keep: Annotated[int, msgspec.Meta(ge=1)] = BANK_CACHE_KEEP
    # events and data (the dataset and the model store have no setting: consume --data
    # and train --store name them, so a command run elsewhere cannot use a stray ./data)
    events_dir: str = "events"
    attribution_window_seconds: float = 7 * 24 * 3600.0
    # training
    negative_sampling_rate: float = 0.1
    min_positives: int = 20
    keep_versions: int = 5
    # logs of the long-running commands: "text" or "json" (one object per line)
    log_format: Literal["text", "json"] = "text"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``CLICKROUTER_*`` variables, then explicit overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _duration(name, raw) if name.endswith("_seconds") else raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"invalid setting: {exc}") from None


def _duration(name: str, raw: str) -> float:
    """A ``*_seconds`` variable takes the CLI's duration syntax (300, 5m, 7d)."""
    return parse_duration(raw, allow_zero=True, what=ENV_PREFIX + name.upper())
