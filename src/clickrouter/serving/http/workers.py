"""Worker processes with one ``SO_REUSEPORT`` listening socket each.

With one listening socket shared by every worker, whichever worker's event loop
wakes first accepts the connection, and with keep-alive connections the split
is lopsided: one worker saturates its core while the other idles. Here the parent binds N
sockets to the same port with ``SO_REUSEPORT`` and worker i serves socket i
only: the kernel spreads incoming connections over the sockets by a hash of
the connection's addresses. The parent keeps every socket open, so a worker
that dies is replaced on its own socket and the connections queued there wait
for the replacement instead of being refused.

Supervision (health pings, restarts, SIGTERM to every worker) is uvicorn's
:class:`~uvicorn.supervisors.Multiprocess`; only the socket given to each
worker differs, and each worker gets SIGTERM from the kernel when the
supervisor ends without sending it (SIGKILL, a crash): it then shuts down as
on a normal stop (in-flight requests answered, queued events written) instead
of serving on, orphaned, on its socket.
"""

from __future__ import annotations

import logging
import os
import signal
import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from clickrouter.processes import die_with_parent

log = logging.getLogger(__name__)


class SupervisedProcess(Process):
    """A uvicorn worker that stops (SIGTERM) when its supervisor ends.

    The supervisor starts every worker from its main thread, the thread the
    kernel's parent-death signal is tied to.
    """

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.supervisor_pid = os.getpid()
        super().__init__(config, sockets)

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        die_with_parent(self.supervisor_pid, signal.SIGTERM)
        super().target(sockets)


class ReusePortMultiprocess(Multiprocess):
    """uvicorn's supervisor with worker i serving ``sockets[i]`` (one per worker)."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.processes_num = len(sockets)

    def _start(self, index: int) -> Process:
        process = SupervisedProcess(self.config, [self.sockets[index]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._start(i) for i in range(len(self.sockets))]

    def keep_subprocess_alive(self) -> None:
        for index, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung or dead
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # would fail the same way again
                log.error("worker %s failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            log.warning("worker %s died; starting a replacement on its socket", process.pid)
            self.processes[index] = self._start(index)

    def restart_all(self) -> None:
        """SIGHUP: replace each worker, the new one ready before the old one stops."""
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._start(index)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                log.error("replacement worker %s not ready; keeping %s", new.pid, old.pid)
                return
            old.terminate()
            old.join()
            self.processes[index] = new

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: the worker count is fixed (one socket per worker)")

    def handle_ttou(self) -> None:
        log.warning("SIGTTOU ignored: the worker count is fixed (one socket per worker)")
