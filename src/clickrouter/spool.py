"""A local spool in front of a Redis stream: events are journaled on disk first,
then forwarded in order by a background thread.

The predictor must not answer for a click it has not persisted, and a Redis
round trip on the response path would stall every connection whenever the
broker is slow. So a producer appends each batch of event lines to its own
spool directory (an :class:`~clickrouter.eventlog.EventLogWriter`, one
``write(2)``), and a forwarder thread reads the spool back as a consumer reads
an event log (:func:`~clickrouter.eventlog.read_lines`) and ``XADD`` s each
chunk in a ``MULTI``/``EXEC`` pipeline. While
the broker is down, the spool grows; a chunk that failed is sent again, from
the same lines, until it goes through, and the forwarded position is saved
after each chunk (``position.json``: ``{"kind": "local", "segments": {segment
file name: byte offset}}``), so a restart resumes there.

Delivery is at least once: a chunk whose ``EXEC`` reached Redis but whose reply
was lost (or whose position was not saved before a kill) is sent again. The
consumer drops repeated event ids, so a repeat has no effect downstream.

Layout: ``<root>/<writer_id>/`` per producer process, holding an exclusive
``flock`` on its ``lock`` file for as long as the process lives. A directory
whose lock nobody holds belongs to a process that died (e.g. SIGKILL): the
next forwarder to see it adopts it, forwards what is left, and deletes it.

The spool is bounded: :meth:`Spool.append` refuses a batch that would take
the unforwarded bytes past ``max_bytes`` (:class:`SpoolFull`), and the
predictor turns that into 503 and unready instead of dropping anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from clickrouter.errors import InvalidInput
from clickrouter.eventlog import SEGMENT_RE, EventLogWriter, read_lines, writer_segments
from clickrouter.privatedir import UnsafeDirectory, private_directory
from clickrouter.redislog import FIELD

log = logging.getLogger(__name__)

LOCK = "lock"
POSITION = "position.json"
WRITER = "spool"
SEGMENT_BYTES = 8 * 1024 * 1024  # forwarded segments are deleted: the disk follows the backlog
READ_BYTES = 1 << 18  # forwarded per chunk (more when one line is longer)
ORPHAN_SCAN_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 1.0


class SpoolFull(OSError):
    """The spool holds ``max_bytes`` of events the broker has not taken yet."""


class _Lane:
    """One spool directory being forwarded: its lock, its position, what is in flight.

    ``offsets`` maps each segment to the byte after its last forwarded line;
    ``finished`` are the segments forwarded to their end that will never grow.
    """

    def __init__(self, directory: Path, lock_fd: int) -> None:
        self.directory = directory
        self.lock_fd = lock_fd
        self.offsets: dict[str, int] = _read_position(directory)
        self.finished: set[str] = set()
        self.held = b""  # lines read, not yet accepted by the broker

    def read(self) -> bytes:
        """The next lines to forward, oldest segment first (``b""``: nothing new);
        the offsets move past them at once, the position is saved once sent."""
        for name, complete in writer_segments(self.directory).get(WRITER, []):
            if name in self.finished:
                continue
            start = self.offsets.get(name, 0)
            data = read_lines(self.directory / name, start, READ_BYTES, complete=complete)
            if data:
                self.offsets[name] = start + len(data)
                return data
            if not complete:
                return b""  # the segment being written has nothing new yet
            self.finished.add(name)
        return b""

    def unforwarded(self) -> tuple[int, int]:
        """(bytes, events) in the spool after the forwarded position (reads the files)."""
        total_bytes = total_events = 0
        for path in sorted(self.directory.glob(f"{WRITER}.*.jsonl")):
            offset = self.offsets.get(path.name, 0)
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                fh.seek(offset)
                while block := fh.read(1 << 20):
                    total_bytes += len(block)
                    total_events += block.count(b"\n")
        return total_bytes, total_events

    def save_position(self) -> None:
        tmp = self.directory / f".{POSITION}.tmp"
        try:
            position = {"kind": "local", "segments": self.offsets}
            tmp.write_text(json.dumps(position), encoding="utf-8")
            os.replace(tmp, self.directory / POSITION)
        except OSError as exc:  # e.g. full disk: a restart repeats a little (deduplicated)
            log.warning("spool %s: could not save the forwarded position: %s", self.directory, exc)

    def release_finished(self) -> None:
        """Delete the segments forwarded to their end that will never grow."""
        for name in sorted(self.finished):
            try:
                (self.directory / name).unlink(missing_ok=True)
                (self.directory / f"{name}.done").unlink(missing_ok=True)
            except OSError:
                continue
            self.finished.discard(name)
            self.offsets.pop(name, None)

    def close(self) -> None:
        os.close(self.lock_fd)


def _read_position(directory: Path) -> dict[str, int]:
    """The saved offsets; none (forward from the start) when missing or unreadable:
    what is sent again is deduplicated downstream."""
    try:
        value = json.loads((directory / POSITION).read_text(encoding="utf-8"))
        return {str(k): int(v) for k, v in value["segments"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _lock(path: Path, *, create: bool) -> int | None:
    """An fd holding an exclusive lock on ``path``; None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class UnsafeSpoolDir(InvalidInput):
    """A spool directory someone else could write: they could forge events or drop them."""


def private_spool_dir(root: str | Path) -> Path:
    """``root``, created 0700 when missing; :class:`UnsafeSpoolDir` if others could write it
    (what the spool holds is forwarded to the broker as the predictor's own events)."""
    try:
        return private_directory(root)
    except UnsafeDirectory as exc:
        raise UnsafeSpoolDir(f"event spool {root}: {exc}") from None


class Spool:
    """Journals event lines under ``root/writer_id`` and forwards them to ``stream``.

    :meth:`append` runs on the producer's thread; forwarding runs on a thread of
    its own. ``client_factory`` makes the Redis client (one per forwarder).
    """

    def __init__(
        self,
        root: str | Path,
        writer_id: str,
        client_factory: Callable[[], redis.Redis],
        stream: str,
        *,
        max_bytes: int,
        segment_bytes: int = SEGMENT_BYTES,
        interval: float = 0.02,
        drain_seconds: float = 5.0,
        batch_size: int = 1000,
    ) -> None:
        self.root = private_spool_dir(root)
        self.stream, self.max_bytes = stream, max_bytes
        self.interval, self.drain_seconds, self.batch_size = interval, drain_seconds, batch_size
        self.directory, lock_fd = self._claim(writer_id)
        self._own = _Lane(self.directory, lock_fd)
        self.writer = EventLogWriter(self.directory, WRITER, segment_bytes=segment_bytes)
        backlog_bytes, backlog_events = self._own.unforwarded()
        # counters, each written by one thread only: no lock needed to read a total
        self.appended_bytes = backlog_bytes  # producer thread (a previous run's backlog first)
        self.appended_events = backlog_events
        self.forwarded_bytes = 0  # forwarder thread: own lane
        self.forwarded_events = 0
        self.adopted_bytes = 0  # forwarder thread: other (dead) producers' spools
        self.adopted_events = 0
        self.forwarded_total = 0  # every event the broker accepted, own or adopted
        self.errors = 0  # failed forwarding attempts
        self.last_error: str | None = None
        self._full = False  # a batch was refused and nothing has been forwarded since
        self._orphans: list[_Lane] = []
        self._client_factory = client_factory
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-spool", daemon=True)
        self._thread.start()

    def _claim(self, writer_id: str) -> tuple[Path, int]:
        """A new directory of this process's, and the fd locking it. It is created
        and locked under a hidden name (never scanned), then renamed: a forwarder
        looking for orphans never sees it unlocked."""
        directory = self.root / writer_id
        if directory.exists():  # a dead process had this pid: adopted like any orphan
            directory = self.root / f"{writer_id}-{time.time_ns()}"
        staging = self.root / f".{directory.name}.new"
        staging.mkdir(exist_ok=True)
        lock_fd = _lock(staging / LOCK, create=True)
        if lock_fd is None:
            raise OSError(f"spool {staging} is in use by another process")
        os.replace(staging, directory)  # the lock follows the file
        return directory, lock_fd

    # ------------------------------------------------------------ producer side

    def append(self, lines: bytes, n_events: int, *, sync: bool = False) -> None:
        """Journal ``lines`` (whole lines, ``n_events`` of them) before returning;
        :class:`SpoolFull` or another ``OSError`` when they were not."""
        if self.spooled_bytes() + len(lines) > self.max_bytes:
            self._full = True  # until the forwarder makes room
            raise SpoolFull(
                f"event spool {self.directory} is full ({self.spooled_bytes():,} bytes waiting "
                f"for redis stream {self.stream!r}; limit {self.max_bytes:,})"
            )
        self.writer.append(lines, sync=sync)
        self.appended_bytes += len(lines)
        self.appended_events += n_events

    def spooled_bytes(self) -> int:
        return self.appended_bytes - self.forwarded_bytes + self.adopted_bytes

    def spooled_events(self) -> int:
        return max(self.appended_events - self.forwarded_events + self.adopted_events, 0)

    def problem(self) -> str | None:
        """Why the spool cannot take more events now (None: it can)."""
        if self._full or self.spooled_bytes() >= self.max_bytes:
            return (
                f"event spool full: {self.spooled_bytes():,} bytes waiting for redis stream "
                f"{self.stream!r} (limit {self.max_bytes:,}); last error: {self.last_error}"
            )
        return None

    def close(self) -> None:
        """Forward what the broker takes within ``drain_seconds``; the rest stays in
        the spool for the next producer started on the same root."""
        with contextlib.suppress(OSError):
            self.writer.close()
        self._stop.set()
        self._thread.join()
        remaining = self.spooled_events()
        for lane in [*self._orphans, self._own]:
            lane.close()
        if remaining:
            log.warning(
                "event spool %s keeps %d events for redis stream %r: the next predictor "
                "started with this spool directory forwards them",
                self.root,
                remaining,
                self.stream,
            )
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    # ----------------------------------------------------------- forwarder side

    def _run(self) -> None:
        client: redis.Redis | None = None
        next_scan = 0.0
        failures = 0
        drain_until: float | None = None
        while True:
            if time.monotonic() >= next_scan:
                self._adopt_orphans()
                next_scan = time.monotonic() + ORPHAN_SCAN_SECONDS
            moved = False
            try:
                if client is None:
                    client = self._client_factory()
                moved = self._forward_once(client)
                failures = 0
                if moved:
                    self._full = False
            except (redis.RedisError, OSError) as exc:
                failures += 1
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if failures == 1 or failures % 100 == 0:
                    log.warning("event spool: forwarding to redis failed (%s)", self.last_error)
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
                client = None
            if self._stop.is_set():
                if drain_until is None:
                    drain_until = time.monotonic() + self.drain_seconds
                done = not moved and failures == 0
                if done or time.monotonic() > drain_until:
                    break
            if failures:
                self._stop.wait(min(0.05 * 2 ** min(failures, 5), MAX_BACKOFF_SECONDS))
            elif not moved:
                self._stop.wait(self.interval)
        if client is not None:
            client.close()

    def _forward_once(self, client: redis.Redis) -> bool:
        """Forward one read of the oldest lane with something to send; False when idle."""
        for lane in [*self._orphans, self._own]:
            if not lane.held:
                lane.held = lane.read()
            if not lane.held:
                if lane is not self._own:
                    self._retire(lane)
                continue
            lines = lane.held.split(b"\n")
            if not lines[-1]:  # after the final newline (a torn tail has none)
                lines.pop()
            self._send(client, lines)
            events, size = len(lines), len(lane.held)
            lane.held = b""
            lane.save_position()
            lane.release_finished()
            if lane is self._own:
                self.forwarded_bytes += size
                self.forwarded_events += events
            else:
                self.adopted_bytes -= size
                self.adopted_events -= events
            self.forwarded_total += events
            return True
        return False

    def _send(self, client: redis.Redis, lines: Sequence[bytes]) -> None:
        for lo in range(0, len(lines), self.batch_size):
            pipe = client.pipeline(transaction=True)  # a batch lands whole or not at all
            for line in lines[lo : lo + self.batch_size]:
                pipe.xadd(self.stream, {FIELD: line})
            pipe.execute()

    def _adopt_orphans(self) -> None:
        """Take over the spool directories whose producer died."""
        try:
            entries = [p for p in self.root.iterdir() if p.is_dir()]
        except OSError:
            return
        known = {lane.directory for lane in self._orphans} | {self.directory}
        for directory in sorted(entries):
            if directory.name.startswith(".") or directory in known:
                continue
            lock_fd = _lock(directory / LOCK, create=False)
            if lock_fd is None:
                continue  # alive, or not a spool directory
            try:
                lane = _Lane(directory, lock_fd)
                size, events = lane.unforwarded()
            except OSError:
                os.close(lock_fd)
                continue
            self._orphans.append(lane)
            self.adopted_bytes += size
            self.adopted_events += events
            log.info("event spool: forwarding %d events left in %s", events, directory)

    def _retire(self, lane: _Lane) -> None:
        """An adopted spool forwarded to its end (a torn last line, never answered,
        stays behind): delete it."""
        size, events = lane.unforwarded()
        self.adopted_bytes -= size
        self.adopted_events -= events
        self._orphans.remove(lane)
        shutil.rmtree(lane.directory, ignore_errors=True)
        lane.close()


def segment_names(directory: Path) -> list[str]:
    """The spool's segment files, oldest first (for tests and tools)."""
    return sorted(p.name for p in directory.iterdir() if SEGMENT_RE.match(p.name))
