"""Directories only this user may write: the bank cache and the event spool.

What such a directory holds is acted on as is (the cache's scoring tables and
landing pages, the spool's events forwarded to the broker), so whoever could
write it could redirect clicks, run code or forge events. A private directory
is created 0700 and refused when it belongs to another user or group or
others may write it, and so may nobody but its owner (or root) rename it away:
every parent is judged too, owned by this user or root and not writable by
group or others unless sticky, as ``/tmp`` is (the rule OpenSSH's StrictModes
applies to ``authorized_keys``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeDirectory(Exception):
    """A directory that someone other than this user could write (its message says why)."""


def private_directory(path: str | Path) -> Path:
    """``path``, created 0700 when missing; :class:`UnsafeDirectory` if others could write it."""
    path = Path(path)
    try:
        if not path.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir(mode=0o700, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise UnsafeDirectory(f"cannot create it: {exc.strerror}") from None
    me = os.geteuid()
    if info.st_uid != me:
        raise UnsafeDirectory(f"owned by uid {info.st_uid}, not by this user (uid {me})")
    if info.st_mode & 0o022:
        raise UnsafeDirectory(
            f"writable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run: chmod 700 {path}"
        )
    for parent in path.resolve().parents:
        problem = _parent_problem(parent)
        if problem is not None:
            raise UnsafeDirectory(problem)
    return path


def _parent_problem(parent: Path) -> str | None:
    try:
        info = parent.stat()
    except OSError as exc:
        return f"{parent}: {exc.strerror}"
    if info.st_uid not in (os.geteuid(), 0):
        return f"its parent {parent} is owned by uid {info.st_uid}, who could replace it"
    if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
        return (
            f"its parent {parent} is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):o}), who could replace it"
        )
    return None


def user_directory(env: str, fallback: str, *parts: str) -> Path:
    """``$env/parts`` (an absolute XDG base directory), else ``~/fallback/parts``;
    ``RuntimeError`` when there is neither."""
    base = os.environ.get(env, "")
    root = Path(base) if os.path.isabs(base) else Path.home() / fallback
    return root.joinpath(*parts)
