"""Child processes that do not outlive the process that started them.

A SIGKILLed process runs no cleanup, and its children are re-parented and
keep running, with whatever they hold: memory, a listening socket, or a lock
inherited through fork (a trainer's pool worker keeps the model store's
writer lock, so the next trainer finds the store busy). Each kind of child
calls one of these first thing:

* :func:`die_with_parent`: the kernel's parent-death signal (``prctl
  PR_SET_PDEATHSIG``, Linux). Delivered at once, even while the child is
  busy in C code. The kernel sends it when the *thread* that created the
  child ends, so it suits children started from a thread that outlives them
  (a pool forked by the thread that also shuts it down, a supervisor's main
  loop).
* :func:`exit_with_parent`: a daemon thread in the child waits on a pidfd of
  the parent and ends the process when the parent has ended, whichever
  thread started it. It acts as soon as the child's Python code runs.

Both check the parent is still the one named after arming themselves: a
parent that died in between is noticed, not missed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_POLL_SECONDS = 0.5  # without pidfds: how often the watcher checks its parent
EXIT_STATUS = 70  # a child ended because its parent had ended


def die_with_parent(parent_pid: int, signum: int = signal.SIGKILL) -> None:
    """Have the kernel send ``signum`` to this process when ``parent_pid`` ends.

    Call it in the child. Elsewhere than Linux it falls back to
    :func:`exit_with_parent`.
    """
    if not _set_parent_death_signal(signum):
        exit_with_parent(parent_pid)
        return
    if os.getppid() != parent_pid:  # the parent ended before the request took effect
        os.kill(os.getpid(), signum)


def exit_with_parent(parent_pid: int) -> None:
    """End this process (status :data:`EXIT_STATUS`) once ``parent_pid`` has ended.

    ``parent_pid`` need not be the direct parent (a fork server's child can
    watch the process that asked for it).
    """
    threading.Thread(
        target=_watch, args=(parent_pid,), name=f"exit-with-{parent_pid}", daemon=True
    ).start()


def _set_parent_death_signal(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(pid: int) -> None:
    fd = _pidfd(pid)
    if fd is not None:
        select.select([fd], [], [])  # a pidfd turns readable when its process ends
    else:
        while _alive(pid):
            time.sleep(_POLL_SECONDS)
    os._exit(EXIT_STATUS)


def _pidfd(pid: int) -> int | None:
    """A pidfd of ``pid``, or None when it has ended or pidfds are not available."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd = int(opener(pid))
    except OSError:
        return None  # ended already (the fallback's first check notices), or no pidfds
    if not _alive(pid):  # the pid may have been reused between its end and the open
        os.close(fd)
        return None
    return fd


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
