"""``clickrouter serve``: the HTTP predictor over a model directory or a model store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clickrouter.cli.parser import add_log_format, setting_overrides, settings_epilog
from clickrouter.durations import duration_type
from clickrouter.errors import InvalidInput

# httptools: the hot routes answered inline by our protocol (the fastest, docs/benchmarks.md);
# httptools-asgi: uvicorn's protocol, every request through ASGI; h11: pure Python
HTTP_PROTOCOLS = ("httptools", "httptools-asgi", "h11")


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve decisions over HTTP (hot-reloads the model store's CURRENT)",
        description="Serve decisions over HTTP. Every option that names a CLICKROUTER_*"
        " variable overrides it; durations take 30s, 5m, 3h, 7d (a plain number: seconds).",
        epilog=settings_epilog(SECRET_SETTINGS),
    )
    serve.add_argument("--models", required=True, type=Path, help="model directory or model store")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=None, help="TCP port; 0 = any free port")
    serve.add_argument("--workers", type=_positive_int, default=None, help="worker processes")
    serve.add_argument(
        "--events",
        dest="events_dir",
        default=None,
        help="event log directory, or redis://HOST[:PORT]/STREAM",
    )
    serve.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=(
            "compiled-bank cache: workers share it, reloads compile into it in a child"
            " process and reuse unchanged model files (default: a temp dir)"
        ),
    )
    serve.add_argument("--port-file", type=Path, default=None, help="write the bound port here")
    serve.add_argument(
        "--http",
        choices=HTTP_PROTOCOLS,
        default="httptools",
        help="HTTP implementation: httptools (hot routes answered inline, fastest),"
        " httptools-asgi (every request through ASGI) or h11 (pure Python)",
    )
    serve.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="asyncio event loop"
    )
    add_log_format(serve)
    _register_decisions(serve)
    # -- trust: postback authentication --
    serve.add_argument(
        "--postback-auth",
        dest="postback_auth",
        choices=("required", "off"),
        default=None,
        help="required (default): postbacks carry a secret or a signature; "
        "off: anyone may record sales (local development only)",
    )
    serve.add_argument(
        "--postback-secrets-file",
        dest="postback_secrets_file",
        default=None,
        help="lines '<advertiser or *> <secret>'; re-read when it changes",
    )
    serve.add_argument(
        "--click-secret-file",
        dest="click_secret_file",
        default=None,
        help="key of the MAC in issued click ids (first line signs, every line verifies)",
    )
    # -- trust: durability of events --
    serve.add_argument(
        "--durability",
        dest="durability",
        choices=("write", "fsync", "async"),
        default=None,
        help="write (default): events reach the OS before the answer leaves; fsync: and the"
        " disk; async: queued, written within ~20 ms (a killed process loses the queue)",
    )
    serve.add_argument(
        "--event-queue-max",
        dest="event_queue_max",
        type=_positive_int,
        default=None,
        help="async: events queued in memory before decisions answer 503 (default 100000)",
    )
    serve.add_argument(
        "--spool-dir",
        dest="spool_dir",
        default=None,
        help="redis events: local spool kept while the broker is unreachable"
        " (default <tmp>/clickrouter-spool/<host>_<port>_<stream>)",
    )
    serve.add_argument(
        "--spool-max-bytes",
        dest="spool_max_bytes",
        type=_spool_bytes,
        default=None,
        help="bound of the spool; when full the predictor is unready and answers 503"
        " (default 1073741824, at least 1048576)",
    )
    # -- trust: server limits --
    limit = serve.add_argument_group("server limits (per worker)")
    limit.add_argument(
        "--max-url-bytes",
        dest="max_url_bytes",
        type=_positive_int,
        default=None,
        help="longest request target, else 414 (default 8192)",
    )
    limit.add_argument(
        "--max-headers",
        dest="max_headers",
        type=_positive_int,
        default=None,
        help="most header lines per request, else 431 (default 100)",
    )
    limit.add_argument(
        "--max-header-bytes",
        dest="max_header_bytes",
        type=_positive_int,
        default=None,
        help="largest total of a request's header lines, else 431 (default 32768)",
    )
    limit.add_argument(
        "--request-read-timeout",
        dest="request_read_timeout_seconds",
        type=duration_type(),
        default=None,
        help="time for a request to arrive whole from its first byte, else 408",
    )
    limit.add_argument(
        "--keep-alive",
        dest="keep_alive_seconds",
        type=duration_type(),
        default=None,
        help="time an idle connection is kept open",
    )
    limit.add_argument(
        "--max-connections",
        dest="max_connections",
        type=_positive_int,
        default=None,
        help="open connections per worker; beyond, the longest idle is closed (default 4096)",
    )
    # -- trust: model and cache files --
    serve.add_argument(
        "--trust-models",
        dest="trust_models",
        action="store_const",
        const=True,
        default=None,
        help="unpickle .joblib files whatever their owner and mode (default: only files of"
        " this user or root in directories others cannot write, or listed in a signed manifest)",
    )
    serve.add_argument(
        "--model-signing-key-file",
        dest="model_signing_key_file",
        default=None,
        help="key (mode 600) of manifest signatures: trust .joblib files a manifest signed"
        " with it lists",
    )
    serve.set_defaults(handler=run_serve)


# secrets: environment only, never flags (a command line is visible to every local user)
SECRET_SETTINGS = {
    "admin_token": "bearer token of the /admin routes (unset: they answer 404)",
    "postback_secret": "one shared secret every postback may carry",
    "click_secret": "key of the MAC in click ids (or --click-secret-file)",
}


def _register_decisions(serve: argparse.ArgumentParser) -> None:
    """Flags of the settings that shape each decision and the predictor's upkeep."""
    from clickrouter.serving.engine.policy import POLICIES

    group = serve.add_argument_group("decisions and upkeep")
    group.add_argument(
        "--policy", dest="policy", choices=POLICIES, default=None, help="how a campaign is chosen"
    )
    group.add_argument(
        "--epsilon",
        dest="epsilon",
        type=_probability,
        default=None,
        help="epsilon-greedy: share of requests given a random eligible campaign",
    )
    group.add_argument(
        "--thompson-scale",
        dest="thompson_scale",
        type=_non_negative_float,
        default=None,
        help="thompson: multiplies the posterior spread (< 1: tempered)",
    )
    group.add_argument(
        "--thompson-profile-spread",
        dest="thompson_profile_spread",
        type=_non_negative_float,
        default=None,
        help="thompson: log-sd of a profile's deviation no model covers (0 = off)",
    )
    group.add_argument(
        "--top-k",
        dest="top_k_default",
        type=_positive_int,
        default=None,
        help="campaigns ranked in an answer when the request does not say",
    )
    group.add_argument(
        "--max-body-bytes",
        dest="max_body_bytes",
        type=_positive_int,
        default=None,
        help="largest request body in bytes, else 413",
    )
    group.add_argument(
        "--clock-skew",
        dest="clock_skew_seconds",
        type=duration_type(allow_zero=True),
        default=None,
        help="how far an event's time may run ahead of this server's clock",
    )
    group.add_argument(
        "--reload-poll",
        dest="reload_poll_seconds",
        type=duration_type(),
        default=None,
        help="how often the model store's CURRENT is checked for a new version",
    )
    group.add_argument(
        "--bank-cache-keep",
        dest="bank_cache_keep",
        type=_positive_int,
        default=None,
        help="compiled versions kept in --cache-dir (older ones deleted after a reload)",
    )


def _probability(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1e9:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _spool_bytes(text: str) -> int:
    if not text.isdigit() or int(text) < 1 << 20:
        raise argparse.ArgumentTypeError(f"expected a byte count >= 1048576, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return int(text)


def run_serve(args: argparse.Namespace) -> int:
    from clickrouter.config import Settings
    from clickrouter.logs import configure_logging
    from clickrouter.modelstore.store import resolve_model_dir
    from clickrouter.serving.cachedir import checked_cache_dir
    from clickrouter.serving.engine.policy import policy_from_settings
    from clickrouter.serving.http.server import ServeConfig, default_cache_dir, run_server
    from clickrouter.serving.trust import model_trust

    # a flag whose dest names a Settings field overrides it (None: not given)
    settings = Settings.from_env(**setting_overrides(args))
    # bad settings fail here, not in each worker
    policy_from_settings(settings)
    directory, _ = resolve_model_dir(args.models)  # fails early on a store without CURRENT
    if not (directory / "campaigns.json").is_file():
        raise InvalidInput(f"--models {args.models}: no campaigns.json in {directory}")
    cache_dir = checked_cache_dir(args.cache_dir or default_cache_dir(), "--cache-dir")
    model_trust(settings)  # an unusable signing key file fails here, not at each load
    events = str(settings.events_dir)
    if events.startswith("redis://"):  # an unsafe spool fails here, not in each worker
        _check_spool_dir(events, settings.spool_dir)
    config = ServeConfig(
        models=str(args.models),
        events=events,
        settings=settings,
        cache_dir=None if cache_dir is None else str(cache_dir),
        http=args.http,
        loop=args.loop,
    )
    configure_logging(settings.log_format, "serve")
    run_server(config, workers=settings.workers, port_file=args.port_file)
    return 0


def _check_spool_dir(target: str, spool_dir: str | None) -> None:
    from clickrouter.redislog import parse_redis_url
    from clickrouter.serving.engine.durability import default_spool_dir
    from clickrouter.spool import UnsafeSpoolDir, private_spool_dir

    root = spool_dir or default_spool_dir(*parse_redis_url(target))
    try:
        private_spool_dir(root)
    except UnsafeSpoolDir as exc:
        raise InvalidInput(f"--spool-dir {root}: {exc.message}") from None
