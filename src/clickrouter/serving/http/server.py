"""Composition root and server runners of the HTTP predictor.

:func:`build_app` wires settings, bank holder, policy, event sink, metrics and
routes into one ASGI app (one per worker process). :class:`PredictorServer`
runs it in a background thread for in-process use; :func:`run_server` is the
blocking runner behind ``clickrouter serve`` (N worker processes, one
``SO_REUSEPORT`` socket each on the same port, sharing the compiled weights
through the bank cache).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import msgspec
import uvicorn
import uvloop

from clickrouter.config import Settings
from clickrouter.errors import ClickrouterError
from clickrouter.logs import uvicorn_log_config
from clickrouter.serving.engine.clickids import ClickIds
from clickrouter.serving.engine.decision import DecisionPath
from clickrouter.serving.engine.durability import open_recorder
from clickrouter.serving.engine.holder import BankHolder, ReloadWatcher, load_live_bank
from clickrouter.serving.engine.policy import policy_from_settings
from clickrouter.serving.engine.service import PredictorService
from clickrouter.serving.http.app import PredictorApp, Router
from clickrouter.serving.http.limits import ServerLimits, connection_capacity
from clickrouter.serving.http.metrics import ServiceMetrics
from clickrouter.serving.http.postback_auth import PostbackAuthenticator
from clickrouter.serving.http.routes import admin_routes, meta_routes, v1_routes
from clickrouter.serving.http.v2 import v2_routes
from clickrouter.serving.http.workers import ReusePortMultiprocess
from clickrouter.serving.trust import model_trust

log = logging.getLogger(__name__)

CONFIG_ENV = "CLICKROUTER_HTTP_SERVE_CONFIG"  # how worker processes receive the config
BACKLOG = 4096
INLINE_PROTOCOL = "clickrouter.serving.http.uvicorn_protocols:InlineHttpToolsProtocol"
GUARDED_PROTOCOLS = {
    "httptools-asgi": "clickrouter.serving.http.uvicorn_protocols:GuardedHttpToolsProtocol",
    "h11": "clickrouter.serving.http.uvicorn_protocols:GuardedH11Protocol",
}


class ServeConfig(msgspec.Struct, kw_only=True):
    """Everything a worker process needs to build its app."""

    models: str
    events: str | None
    settings: Settings
    cache_dir: str | None = None
    metrics_dir: str | None = None  # shared Prometheus files of the workers (set by run_server)
    # uvicorn's HTTP protocol: httptools with the hot routes inline (the fastest),
    # httptools-asgi (uvicorn's, every request through ASGI, within the same limits) or h11
    http: str = "httptools"
    loop: str = "uvloop"  # event loop: uvloop (the fastest, docs/benchmarks.md) or asyncio


def build_app(config: ServeConfig) -> PredictorApp:
    """The ASGI app of one worker process (its own sink, watcher and metrics)."""
    settings = config.settings
    # before anything starts: a bad secrets file fails here, naming the setting
    click_ids = ClickIds.from_settings(settings)
    postback_auth = PostbackAuthenticator.from_settings(settings)
    metrics = ServiceMetrics(config.metrics_dir)
    decisions = DecisionPath(policy_from_settings(settings))
    holder = BankHolder(
        config.models,
        cache_dir=config.cache_dir,
        cache_keep=settings.bank_cache_keep,
        on_swap=metrics.model_swapped,
        on_reject=metrics.model_rejected,
        on_skip=metrics.version_skipped,
        prepare=decisions.prepare,  # each new bank's decision path, warmed before the swap
        trust=model_trust(settings),
    )
    sink = open_recorder(
        config.events,
        f"predictor-{os.getpid()}",
        durability=settings.durability,
        max_queue=settings.event_queue_max,
        spool_dir=settings.spool_dir,
        spool_max_bytes=settings.spool_max_bytes,
    )
    metrics.track_sink(sink.lag, lambda: sink.written, lambda: sink.dropped)
    metrics.track_durability(
        sink.spooled, lambda: sink.refused, lambda: sink.errors, sink.forward_errors
    )
    service = PredictorService(
        holder,
        decisions,
        sink,
        click_ids=click_ids,
        clock_skew_seconds=settings.clock_skew_seconds,
        on_decision=metrics.decisions.add,
    )
    watcher = ReloadWatcher(holder, settings.reload_poll_seconds)
    router = Router(
        v1_routes(service, metrics, postback_auth)
        + v2_routes(service)
        + admin_routes(holder, settings.admin_token)
        + meta_routes(metrics)
    )

    async def startup() -> None:
        watcher.start()

    async def shutdown() -> None:
        await watcher.stop()
        sink.close()  # drains the queue: every event emitted so far is written
        holder.close()
        log.info("predictor %d stopped; %d events written", os.getpid(), sink.written)

    return PredictorApp(
        router,
        metrics,
        max_body_bytes=settings.max_body_bytes,
        limits=server_limits(settings),
        events=sink,  # answers commit their events before they leave
        on_startup=startup,
        on_shutdown=shutdown,
    )


def server_limits(settings: Settings) -> ServerLimits:
    """The connection limits of a worker (its descriptor limit raised to fit them)."""
    return ServerLimits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        max_url_bytes=settings.max_url_bytes,
        read_timeout=settings.request_read_timeout_seconds,
        keep_alive=settings.keep_alive_seconds,
        max_connections=connection_capacity(settings.max_connections),
    )


def app_from_env() -> PredictorApp:
    """uvicorn factory for worker processes: the config comes in :data:`CONFIG_ENV`."""
    return build_app(msgspec.json.decode(os.environ[CONFIG_ENV], type=ServeConfig))


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to (host, port); port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ClickrouterError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(
    app: PredictorApp | str, config: ServeConfig, workers: int, *, own_logging: bool = False
) -> uvicorn.Config:
    """uvicorn's settings; ``own_logging``: uvicorn's and the workers' log lines in the
    format of ``settings.log_format`` (else uvicorn's default logging, for embedders)."""
    settings = config.settings
    log_config = (
        uvicorn_log_config(settings.log_format, "serve")
        if own_logging
        else uvicorn.config.LOGGING_CONFIG
    )
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        workers=workers,
        loop=config.loop,
        http=http_protocol(config.http),
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=log_config,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=10,
        backlog=BACKLOG,
        # the protocols enforce the limits themselves (limits.py); h11 bounds a
        # request head by this size, and uvicorn arms its own keep-alive timer too
        timeout_keep_alive=max(1, round(settings.keep_alive_seconds)),
        h11_max_incomplete_event_size=settings.max_url_bytes + settings.max_header_bytes,
        ws="none",  # no WebSocket routes: an upgrade request is refused, not handed over
    )


def http_protocol(name: str) -> str:
    """uvicorn's ``http`` setting for ``ServeConfig.http`` (see ``cli.HTTP_PROTOCOLS``).

    An import string, not the class: uvicorn pickles its config into each worker,
    and a class would be imported while unpickling, before the worker answers the
    supervisor's health pings (under load that import outlasted the 5 s ping
    timeout and the supervisor killed the worker).
    """
    if name == "httptools":
        return INLINE_PROTOCOL
    return GUARDED_PROTOCOLS.get(name, name)


def default_cache_dir() -> Path:
    """This user's private bank cache (see :func:`~clickrouter.serving.cachedir.user_cache_dir`)."""
    from clickrouter.serving.cachedir import user_cache_dir

    return user_cache_dir()


def run_server(config: ServeConfig, *, workers: int = 1, port_file: Path | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain every worker's events (blocking)."""
    settings = config.settings
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; end with status 0 then
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_quietly)
    sockets = reuseport_sockets(settings.host, settings.port, workers)
    if workers > 1 and config.cache_dir is not None:
        _warm_cache(config)  # workers then map one shared copy instead of compiling N
    if port_file is not None:
        _write_atomically(port_file, f"{sockets[0].getsockname()[1]}\n")
    if workers == 1:
        server = uvicorn.Server(_uvicorn_config(build_app(config), config, 1, own_logging=True))
        server.run(sockets=sockets)
        return
    metrics_dir = tempfile.mkdtemp(prefix="clickrouter-metrics-")
    # prometheus_client reads this when a worker imports it: values go to shared files
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    config = msgspec.structs.replace(config, metrics_dir=metrics_dir)
    os.environ[CONFIG_ENV] = msgspec.json.encode(config).decode()
    target = "clickrouter.serving.http.server:app_from_env"
    try:
        uvicorn_config = _uvicorn_config(target, config, workers, own_logging=True)
        ReusePortMultiprocess(uvicorn_config, sockets).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def reuseport_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one (host, port), one per worker (see workers.py).

    Port 0 picks a free port once. They listen at once: connections queue in the
    kernel until their worker accepts.
    """
    if count == 1:
        return [bind_socket(host, port)]
    if port != 0:
        # SO_REUSEPORT would let this server join another's sockets on a busy port
        # and split its traffic; a plain bind first fails as usual when it is taken
        bind_socket(host, port).close()
    sockets = [bind_socket(host, port, reuse_port=True)]
    port = sockets[0].getsockname()[1]
    try:
        while len(sockets) < count:
            sockets.append(bind_socket(host, port, reuse_port=True))
        for sock in sockets:
            sock.listen(BACKLOG)
    except (OSError, ClickrouterError):
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _warm_cache(config: ServeConfig) -> None:
    started = time.perf_counter()
    try:
        trust = model_trust(config.settings)
        load_live_bank(Path(config.models), Path(config.cache_dir or ""), trust=trust).bank.close()
    except ClickrouterError as exc:
        log.warning("could not pre-compile the models (workers will retry): %s", exc)
        return
    log.info("models compiled into the shared cache in %.1f s", time.perf_counter() - started)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class PredictorServer:
    """The predictor on a loopback port, served from a background thread.

    >>> with PredictorServer(settings, "store/", "events/") as server:  # doctest: +SKIP
    ...     httpx.post(server.url + "/v1/decide", json={"country": "FR"})
    """

    def __init__(
        self,
        settings: Settings,
        models_path: str | Path,
        events_dir: str | Path | None,
        *,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.settings = settings
        self.config = ServeConfig(
            models=str(models_path),
            events=None if events_dir is None else str(events_dir),
            settings=settings,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
        self.app: PredictorApp | None = None
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.settings.host}:{self.port}"

    def start(self, *, timeout: float = 120.0, wait_ready: bool = True) -> PredictorServer:
        """Listen, then wait until requests are served (and the bank is loaded)."""
        sock = bind_socket(self.settings.host, self.settings.port)
        self.port = sock.getsockname()[1]
        self.app = build_app(self.config)
        self._server = uvicorn.Server(_uvicorn_config(self.app, self.config, 1))
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="predictor-server", daemon=True
        )
        self._thread.start()
        self._wait(lambda: self._server is not None and self._server.started, timeout)
        if wait_ready:
            self._wait(self.is_ready, timeout)
        return self

    def _run(self, sock: socket.socket) -> None:
        assert self._server is not None
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._server.serve(sockets=[sock]))

    def is_ready(self) -> bool:
        """True when ``/v2/health/ready`` answers 200 (a model version is loaded)."""
        try:
            with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def _wait(self, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self._thread is None or not self._thread.is_alive():
                raise ClickrouterError("the predictor server stopped while starting")
            if time.monotonic() > deadline:
                raise ClickrouterError(f"the predictor server was not ready within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop serving; in-flight requests finish and queued events are written."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> PredictorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
