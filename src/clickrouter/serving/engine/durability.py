"""Event recorders: how the predictor's click and sale events become durable.

An :class:`EventRecorder` stands between the decision engine and an event
log: it writes through the log's producer side (an
:class:`~clickrouter.eventlog.EventLogWriter`, or a local spool forwarded to
a Redis stream) and adds what answering needs, group commit and refusal.

The contract (``--durability``):

* ``write`` (default): the events of an answer are handed to the OS (one
  ``write(2)`` to the event log, or to the local spool in front of Redis)
  before the answer leaves. A request handler calls :meth:`DurableRecorder.emit`,
  which only buffers; the HTTP layer calls :meth:`DurableRecorder.commit` once per
  group of answers (the inline answers of one read, or one ASGI answer) before
  writing them. A killed process loses no answered event; a machine crash can
  lose what the kernel had not written back yet.
* ``fsync``: the same, plus ``fsync`` before answering (survives a power loss).
* ``async``: events are queued in memory and written by a background thread
  every ``interval`` seconds (the fastest; a kill loses the queue). The queue
  is bounded: once ``max_queue`` events wait, decisions answer 503.

A commit that fails (full disk, unwritable log, spool full) takes back what it
wrote and raises :class:`EventsNotPersisted` (HTTP 503): the answers of that
group are refused, never sent as 200 for an event that is not in the log.
:meth:`problem` then names the reason, which makes ``/v2/health/ready`` fail
until a probe write succeeds again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import Protocol

from clickrouter.errors import ClickrouterError, InvalidInput
from clickrouter.eventlog import EventLogWriter
from clickrouter.events import Event, encode_events
from clickrouter.privatedir import user_directory

log = logging.getLogger(__name__)

DURABILITY_LEVELS = ("write", "fsync", "async")
# largest batch handed to a backend at once: bounds the memory of one write
MAX_BATCH = 4096
DEFAULT_QUEUE_MAX = 100_000
DEFAULT_SPOOL_MAX_BYTES = 1 << 30
PROBE_BYTES = 64 * 1024  # a destination that cannot take this much is not ready
PROBE_INTERVAL = 0.5


class EventsNotPersisted(ClickrouterError):
    """The events of an answer could not be made durable: the answer is refused."""

    status = 503


class EventBackend:
    """A durable destination of events. ``write_batch`` either makes every event
    of the batch durable (to its level) or raises, leaving none of them behind."""

    def write_batch(self, events: list[Event]) -> None:
        raise NotImplementedError

    def problem(self) -> str | None:
        """A lasting reason why new events would be refused (None: none known)."""
        return None

    def probe(self) -> None:
        """Raise ``OSError`` while the destination cannot take writes."""

    def spooled(self) -> int:
        """Events accepted locally but not yet delivered downstream."""
        return 0

    def forward_errors(self) -> int:
        """Failed attempts to deliver spooled events downstream (retried)."""
        return 0

    def close(self) -> None:
        """Flush and release resources; no write follows."""


class EventLogBackend(EventBackend):
    """Appends to a local event-log directory under one writer id (one per process)."""

    def __init__(self, directory: str | Path, writer_id: str, *, sync: bool = False) -> None:
        self.writer = EventLogWriter(directory, writer_id)
        self.sync = sync

    def write_batch(self, events: list[Event]) -> None:
        # one call for the batch: no per-event bytes object, no copy of a buffer
        self.writer.append(encode_events(events), sync=self.sync)

    def probe(self) -> None:
        probe_write(self.writer.directory, self.writer.writer_id)

    def close(self) -> None:
        self.writer.close()


class SpoolBackend(EventBackend):
    """Journals to a local spool that a thread forwards to a Redis stream
    (:class:`~clickrouter.spool.Spool`)."""

    def __init__(
        self,
        url: str,
        writer_id: str,
        *,
        spool_dir: str | None,
        max_bytes: int,
        sync: bool = False,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from clickrouter.redislog import parse_redis_url
        from clickrouter.spool import Spool

        host, port, stream = parse_redis_url(url)

        def client() -> redis.Redis:
            # no retries inside redis-py (~5 s each): the spool's forwarder retries itself
            return redis.Redis(
                host=host,
                port=port,
                socket_timeout=5,
                socket_connect_timeout=2,
                retry=Retry(NoBackoff(), 0),
            )

        root = Path(spool_dir) if spool_dir else default_spool_dir(host, port, stream)
        self.spool = Spool(root, writer_id, client, stream, max_bytes=max_bytes)
        self.sync = sync

    def write_batch(self, events: list[Event]) -> None:
        self.spool.append(encode_events(events), len(events), sync=self.sync)

    def problem(self) -> str | None:
        return self.spool.problem()

    def probe(self) -> None:
        probe_write(self.spool.directory, "spool")

    def spooled(self) -> int:
        return self.spool.spooled_events()

    def forward_errors(self) -> int:
        return self.spool.errors

    def close(self) -> None:
        self.spool.close()


class MemoryBackend(EventBackend):
    """Keeps events in a list (embedding and tests of code that needs no disk)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def write_batch(self, events: list[Event]) -> None:
        self.events.extend(events)


def probe_write(directory: Path, name: str) -> None:
    """Write and delete ``PROBE_BYTES`` in ``directory``: ``OSError`` while it cannot
    take them (full, read-only, gone)."""
    path = directory / f".probe-{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(bytes(PROBE_BYTES))
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def default_spool_dir(host: str, port: int, stream: str) -> Path:
    """This user's spool per broker and stream (``$XDG_STATE_HOME/clickrouter/spool/...``,
    else ``~/.local/state/...``), so a restarted predictor finds what it left behind.
    Never a fixed name in the shared temp directory: whoever created it first could
    forge or drop events."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{host}_{port}_{stream}")
    try:
        return user_directory("XDG_STATE_HOME", ".local/state", "clickrouter", "spool", name)
    except RuntimeError:  # no home directory: the spool must then be named (--spool-dir)
        raise InvalidInput(
            "--spool-dir: no home directory to keep the event spool in; name one"
        ) from None


class EventRecorder(Protocol):
    """What the engine and the HTTP layer see: emit, commit before answering, state,
    drain-on-close."""

    emitted: int  # events emitted so far: an answer whose emit moved it has events

    def emit(self, event: Event) -> None: ...

    def commit(self) -> None:
        """Make every event emitted so far durable, or raise :class:`EventsNotPersisted`."""
        ...

    def problem(self) -> str | None:
        """Why events would be refused now (None: ready)."""
        ...

    def lag(self) -> int:
        """Events accepted but not yet handed to the backend."""
        ...

    def spooled(self) -> int: ...

    def forward_errors(self) -> int: ...

    def close(self) -> None: ...


class _Health:
    """The last failure of a recorder, cleared by a success or a passing probe."""

    def __init__(self, backend: EventBackend) -> None:
        self.backend = backend
        self.failure: str | None = None
        self._probed = 0.0

    def problem(self) -> str | None:
        if self.failure is not None and time.monotonic() - self._probed >= PROBE_INTERVAL:
            self._probed = time.monotonic()
            try:
                self.backend.probe()
            except OSError as exc:
                self.failure = f"event log not writable: {exc}"
            else:
                self.failure = None
        return self.failure or self.backend.problem()


class DurableRecorder:
    """The ``write``/``fsync`` levels: events are buffered per answer group and
    written by :meth:`commit`, on the caller's thread, before the answers leave.

    Counters: ``written`` events the backend accepted, ``refused`` events of
    answers refused because a commit failed, ``errors`` failed commits,
    ``dropped`` events emitted but never committed when the recorder closed on a
    failing backend.
    """

    def __init__(self, backend: EventBackend) -> None:
        self.backend = backend
        self.emitted = 0
        self.written = 0
        self.refused = 0
        self.errors = 0
        self.dropped = 0
        self._pending: list[Event] = []
        self._health = _Health(backend)
        self._closed = False

    def emit(self, event: Event) -> None:
        if self._closed:
            raise RuntimeError("event sink is closed")
        self._pending.append(event)
        self.emitted += 1
        if len(self._pending) >= MAX_BATCH:  # a caller that never commits: bound the memory
            self.commit()

    def commit(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            self.backend.write_batch(batch)
        except Exception as exc:
            self.refused += len(batch)
            self.errors += 1
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)
            self._health.failure = f"event log not writable: {reason}"
            if self.errors == 1 or self.errors % 1000 == 0:
                log.error(
                    "event sink: %d events not persisted, answers refused: %s", len(batch), reason
                )
            raise EventsNotPersisted(
                f"the event could not be persisted ({reason}); nothing was recorded, retry later"
            ) from None
        self.written += len(batch)
        self._health.failure = None

    def problem(self) -> str | None:
        return self._health.problem()

    def lag(self) -> int:
        return len(self._pending)

    def spooled(self) -> int:
        return self.backend.spooled()

    def forward_errors(self) -> int:
        return self.backend.forward_errors()

    def close(self) -> None:
        """Commit what is pending, then close the backend."""
        if self._closed:
            return
        self._closed = True
        pending = len(self._pending)
        try:
            self.commit()
        except EventsNotPersisted:  # emitted for answers that were never sent
            self.dropped += pending
            log.error("event sink: closing, %d unanswered events could not be written", pending)
        self.backend.close()


class QueuedRecorder:
    """The ``async`` level: a bounded queue feeding ``backend`` from a background thread.

    ``emit`` raises :class:`EventsNotPersisted` once ``max_queue`` events wait
    (the backend failing or too slow): back-pressure becomes 503, not memory.
    A batch that fails is retried, with backoff, until it is written; only
    ``close`` on a backend still failing after ``close_timeout`` seconds gives
    up, counting the events in ``dropped`` and logging it. Each counter has a
    single writing thread, so ``lag`` is exact without a lock.
    """

    def __init__(
        self,
        backend: EventBackend,
        *,
        interval: float = 0.02,
        max_queue: int = DEFAULT_QUEUE_MAX,
        close_timeout: float = 10.0,
        name: str = "event-sink",
    ) -> None:
        self.backend = backend
        self.interval = interval
        self.max_queue = max_queue
        self.close_timeout = close_timeout
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._give_up_at: float | None = None
        self.emitted = 0  # written by the emitting thread only
        self.refused = 0  # emitting thread
        self.written = 0  # written by the recorder thread only
        self.dropped = 0  # recorder thread
        self.errors = 0  # recorder thread
        self._health = _Health(backend)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._thread.start()

    def emit(self, event: Event) -> None:
        if self._closed:
            raise RuntimeError("event sink is closed")
        if self.lag() >= self.max_queue:
            self.refused += 1
            raise EventsNotPersisted(
                f"event queue full ({self.max_queue} events waiting to be written; "
                f"{self._health.failure or 'the event log is too slow'}); retry later"
            )
        self.emitted += 1
        self._queue.put(event)

    def commit(self) -> None:
        """Nothing to do: this level answers before writing."""

    def problem(self) -> str | None:
        if self.lag() >= self.max_queue:
            return f"event queue full ({self.lag()} events waiting to be written)"
        return self._health.problem()

    def lag(self) -> int:
        return max(self.emitted - self.written - self.dropped, 0)

    def spooled(self) -> int:
        return self.backend.spooled()

    def forward_errors(self) -> int:
        return self.backend.forward_errors()

    def close(self) -> None:
        """Write everything emitted so far, then close the backend."""
        if self._closed:
            return
        self._closed = True
        self._give_up_at = time.monotonic() + self.close_timeout
        self._stopping.set()
        self._thread.join()
        self.backend.close()

    def _run(self) -> None:
        while True:
            stopping = self._stopping.wait(self.interval)
            while batch := self._next_batch():
                self._write(batch)
            if stopping:  # emit refuses new events once closing: the queue is now empty
                return

    def _next_batch(self) -> list[Event]:
        batch: list[Event] = []
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[Event]) -> None:
        failures = 0
        while True:
            try:
                self.backend.write_batch(batch)
            except Exception as exc:
                failures += 1
                self.errors += 1
                self._health.failure = f"event log not writable: {exc}"
                if failures == 1:
                    log.error("event sink: writing %d events failed, retrying: %s", len(batch), exc)
                give_up = self._give_up_at
                if give_up is not None and time.monotonic() > give_up:
                    self.dropped += len(batch)
                    log.error("event sink: closing, %d events could not be written", len(batch))
                    return
                time.sleep(min(0.01 * 2**failures, 1.0))
            else:
                self.written += len(batch)
                self._health.failure = None
                return


def open_recorder(
    target: str | Path | None,
    writer_id: str,
    *,
    durability: str = "write",
    max_queue: int = DEFAULT_QUEUE_MAX,
    spool_dir: str | None = None,
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
) -> DurableRecorder | QueuedRecorder:
    """The recorder for ``target``: an event-log directory, ``redis://HOST[:PORT]/STREAM``
    (through a local spool), or memory when None."""
    if durability not in DURABILITY_LEVELS:
        raise ValueError(f"durability {durability!r}: expected one of {DURABILITY_LEVELS}")
    sync = durability == "fsync"
    backend: EventBackend
    if target is None:
        backend = MemoryBackend()
    elif str(target).startswith("redis://"):
        backend = SpoolBackend(
            str(target), writer_id, spool_dir=spool_dir, max_bytes=spool_max_bytes, sync=sync
        )
    else:
        backend = EventLogBackend(target, writer_id, sync=sync)
    if durability == "async":
        return QueuedRecorder(backend, max_queue=max_queue)
    return DurableRecorder(backend)
