"""``clickrouter serve``: the HTTP predictor over a model directory or a model store."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from clickrouter.errors import InvalidInput

# httptools: the hot routes answered inline by our protocol (fastest measured);
# httptools-asgi: uvicorn's protocol, every request through ASGI; h11: pure Python
HTTP_PROTOCOLS = ("httptools", "httptools-asgi", "h11")


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve decisions over HTTP (hot-reloads the model store's CURRENT)"
    )
    serve.add_argument("--models", required=True, type=Path, help="model directory or model store")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=None, help="TCP port; 0 = any free port")
    serve.add_argument("--workers", type=_positive_int, default=None, help="worker processes")
    serve.add_argument(
        "--events", default=None, help="event log directory, or redis://HOST[:PORT]/STREAM"
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
    serve.add_argument("--http", choices=HTTP_PROTOCOLS, default="httptools")
    serve.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    # -- trust: postback authentication --
    # -- trust: durability of events --
    # -- trust: server limits --
    # -- trust: model and cache files --
    serve.set_defaults(handler=run_serve)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return int(text)


def run_serve(args: argparse.Namespace) -> int:
    from clickrouter.config import Settings
    from clickrouter.modelstore.store import resolve_model_dir
    from clickrouter.serving.http.policy import policy_from_settings
    from clickrouter.serving.http.server import ServeConfig, default_cache_dir, run_server

    # a flag whose dest names a Settings field overrides it (None: not given)
    overrides = {k: v for k, v in vars(args).items() if k in Settings.__struct_fields__}
    settings = Settings.from_env(**overrides)
    # bad settings fail here, not in each worker
    policy_from_settings(settings)
    directory, _ = resolve_model_dir(args.models)  # fails early on a store without CURRENT
    if not (directory / "campaigns.json").is_file():
        raise InvalidInput(f"--models {args.models}: no campaigns.json in {directory}")
    cache_dir = args.cache_dir or default_cache_dir()
    config = ServeConfig(
        models=str(args.models),
        events=str(args.events or settings.events_dir),
        settings=settings,
        cache_dir=None if cache_dir is None else str(cache_dir),
        http=args.http,
        loop=args.loop,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_server(config, workers=settings.workers, port_file=args.port_file)
    return 0
