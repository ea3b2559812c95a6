"""The bank cache directory: private to this user, with a secret that authenticates entries.

What the cache holds is served as is (scoring tables, landing pages, which
model files the generic workers unpickle), so whoever can write it could
redirect clicks or run code. The directory must therefore be private: created
0700, refused when it belongs to another user or group or others may write it,
and so may nobody but its owner (or root) rename it away (every parent is
judged: owned by this user or root, and not writable by group or others unless
sticky, as ``/tmp`` is).

Every entry is also authenticated: ``secret`` (32 random bytes, 0600, created
on first use) keys an HMAC over each entry's content, so an entry that was
changed, bit-flipped or copied from elsewhere is detected and compiled again.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

from clickrouter.errors import InvalidInput, ModelLoadError
from clickrouter.privatedir import UnsafeDirectory, private_directory, user_directory

SECRET = "secret"
_SECRET_BYTES = 32


class UnsafeCacheDir(ModelLoadError):
    """The bank cache directory could be written by someone else (HTTP 422 on a reload)."""


def private_cache_dir(path: str | Path) -> Path:
    """``path``, created 0700 when missing; :class:`UnsafeCacheDir` if others could write it."""
    try:
        return private_directory(path)
    except UnsafeDirectory as exc:
        raise UnsafeCacheDir(f"bank cache {path}: {exc}; use a directory of your own") from None


def cache_secret(cache_dir: Path) -> bytes:
    """The secret of a private cache directory (judged on every call), created on first use."""
    return _read_or_create_secret(private_cache_dir(cache_dir) / SECRET)


def _read_or_create_secret(path: Path) -> bytes:
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    fd, staging = tempfile.mkstemp(prefix=".secret.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(_SECRET_BYTES))
        os.link(staging, path)  # fails if another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        os.unlink(staging)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        data = fh.read()
    if info.st_uid != os.geteuid() or info.st_mode & 0o077 or len(data) != _SECRET_BYTES:
        raise UnsafeCacheDir(
            f"bank cache secret {path}: not a {_SECRET_BYTES}-byte file readable by this user "
            f"only (mode {stat.S_IMODE(info.st_mode):o}, uid {info.st_uid}); delete it"
        )
    return data


def mac(secret: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA256 of ``parts`` (each length-prefixed: no two part lists collide)."""
    digest = hmac.new(secret, digestmod=hashlib.sha256)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def user_cache_dir() -> Path:
    """This user's bank cache: ``$XDG_CACHE_HOME/clickrouter/bank``, else ``~/.cache/...``.

    Never a fixed name in the shared temp directory, which anyone could create
    first. Without a usable home directory, a fresh private temp directory
    (compiles are then not shared across restarts).
    """
    try:
        return private_cache_dir(user_directory("XDG_CACHE_HOME", ".cache", "clickrouter", "bank"))
    except (RuntimeError, UnsafeCacheDir):  # no home, or one others may write
        return Path(tempfile.mkdtemp(prefix="clickrouter-bank-cache-"))


def checked_cache_dir(path: str | Path, option: str) -> Path:
    """:func:`private_cache_dir` for a command line: the error names ``option``."""
    try:
        return private_cache_dir(path)
    except UnsafeCacheDir as exc:
        raise InvalidInput(f"{option} {path}: {exc.message}") from None
