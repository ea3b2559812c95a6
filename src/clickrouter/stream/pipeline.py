"""The consumer's side of the decode worker (:mod:`clickrouter.stream.decodeworker`).

A two-stage pipeline: the consumer keeps up to ``depth`` batches in flight
(submitted, not yet joined; commits do not wait for them, see
:mod:`clickrouter.stream.consumer`), threads move frames through widened
pipes in both directions, and when the worker already holds
``steal_after`` unanswered batches the consumer decodes the next one itself
(decoding a batch costs the worker about as much as the consumer's join of
it, so the consumer has room for a share). Answers are read as they come:
a worker whose answer waits unread blocks on a full 64 KiB pipe and idles
through every commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from typing import IO

import msgspec

from clickrouter.stream.batch import EventBatch
from clickrouter.stream.decode import ChunkDecoder
from clickrouter.stream.decodeworker import (
    READY,
    DecodeWorkerDied,
    decode_answer,
    read_frame,
    write_frame,
)
from clickrouter.stream.source import Chunk

Dead = tuple[int, int, str]  # (chunk number, line, reason)
DEFAULT_DEPTH = 3  # batches submitted beyond the one being joined
DEFAULT_STEAL_AFTER = 2  # the consumer decodes a batch itself when the worker has this many
_PIPE_BYTES = 1 << 20  # a batch's answer crosses in one or two reads, not ~25


def _grow_pipe(pipe: IO[bytes] | None) -> None:
    """Widen the pipe (Linux): a 64 KiB pipe moves a 2 MB frame in ~30 wake-ups,
    each needing the GIL while the consumer's main thread holds it."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is not None and setsize is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), setsize, _PIPE_BYTES)


class DecodePipeline:
    """Batches decoded in order, by a worker process once it is up, else here.

    The consumer submits up to ``depth`` batches beyond the one it joins, so
    the worker always has work while the consumer joins. A sender thread
    writes the batches and a receiver thread reads the answers as they come,
    so the worker never waits on a full pipe for the consumer to ask.
    """

    def __init__(
        self,
        decoder: ChunkDecoder,
        *,
        use_worker: bool = True,
        depth: int = DEFAULT_DEPTH,
        steal_after: int = DEFAULT_STEAL_AFTER,
    ) -> None:
        self.decoder = decoder
        self.depth = depth if use_worker else 1
        self.steal_after = steal_after
        self._queue: deque[tuple[list[Chunk], EventBatch | None, list[Dead]]] = deque()
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = threading.Event()
        self._start_failed = False
        self.remote_batches = 0  # batches sent to the worker
        self._answered = 0  # answers the receiver has read
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._answers: queue.Queue[bytes | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        if use_worker:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "clickrouter.stream.decodeworker", str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C is the consumer's to handle; it
            )  # stops the worker by closing its input
            _grow_pipe(self._proc.stdin)
            _grow_pipe(self._proc.stdout)
            for loop in (self._send_loop, self._receive_loop):
                self._threads.append(threading.Thread(target=loop, daemon=True))
                self._threads[-1].start()

    def __len__(self) -> int:
        return len(self._queue)

    def _send_loop(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        stdin = self._proc.stdin
        try:
            while (body := self._outbox.get()) is not None:
                write_frame(stdin, body)
        except (BrokenPipeError, ValueError):
            pass  # the worker died: the receiver reports it
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    def _receive_loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        try:
            self._start_failed = stdout.read(1) != READY
            self._started.set()
            while not self._start_failed and (body := read_frame(stdout)) is not None:
                self._answers.put(body)
                self._answered += 1
        except (OSError, ValueError):
            pass  # closed under us: the answers end here
        finally:
            self._started.set()
            self._answers.put(None)  # the worker exited: next() says so

    def wait_ready(self, timeout: float) -> bool:
        """Block until the worker is up (tests); False without a worker."""
        return self._worker_ready(timeout)

    def _worker_ready(self, timeout: float = 0.0) -> bool:
        if self._proc is None or not self._started.wait(timeout):
            return False
        if self._start_failed:
            raise DecodeWorkerDied("the decode worker failed to start")
        return True

    def submit(self, chunks: list[Chunk]) -> None:
        """Decode ``chunks`` here when the worker is not up or is busy with
        ``steal_after`` batches already (decoding costs the worker more than the
        join costs the consumer, so the consumer takes a share); else send them."""
        # dead letters are added as batches are taken, so they stay in order
        # wherever each batch was decoded
        busy = self.remote_batches - self._answered >= self.steal_after
        if busy or not self._worker_ready():
            batch, _, dead = self.decoder.parse(chunks)
            self._queue.append((chunks, batch, dead))
            return
        frame = [(c.data, []) if c.data is not None else (None, list(c.lines)) for c in chunks]
        self._outbox.put(msgspec.msgpack.encode(frame))
        self._queue.append((chunks, None, []))
        self.remote_batches += 1

    def next(self) -> EventBatch:
        """The oldest submitted batch, decoded (waits for the worker's answer)."""
        chunks, batch, dead = self._queue.popleft()
        if batch is None:
            body = self._answers.get()
            if body is None:
                self._answers.put(None)  # every later call fails the same way
                status = self._proc.poll() if self._proc is not None else None
                raise DecodeWorkerDied(f"the decode worker exited (status {status})")
            batch, dead = decode_answer(body, chunks)
        self.decoder.add_dead_letters(chunks, dead)
        return batch

    def worker_cpu_seconds(self) -> float:
        """CPU time the worker used so far (0 without a worker)."""
        if self._proc is None:
            return 0.0
        try:
            with open(f"/proc/{self._proc.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self._proc is None:
            return
        self._outbox.put(None)
        # the receiver ends when the worker closes its output, i.e. exits: join
        # it first, since Popen.wait(timeout) polls with sleeps of up to 50 ms
        for thread in self._threads:
            thread.join(timeout=10)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None
