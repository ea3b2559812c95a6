"""Which model files may be unpickled: trust comes from the file's source, never its content.

Unpickling a ``.joblib`` file runs whatever code its bytes name, so a pickle is
loaded only when one of these vouches for where it came from:

1. **ownership** (the default, as OpenSSH's StrictModes judges
   ``authorized_keys``): the file, its directory and every parent up to the
   model directory's root (the store root for a store version) belong to this
   user or root and are writable by neither group nor others. Nobody else can
   have put the bytes there.
2. **a signed manifest**: ``manifest.json.sig`` is a valid HMAC of
   ``manifest.json`` under the key this process holds, and the file's sha256
   is the one the manifest lists (:mod:`clickrouter.modelstore.signing`).
3. **the operator's switch** (``trust_all``: ``clickrouter serve
   --trust-models``): every file is trusted, for directories whose writers the
   operator vouches for by other means.

``.skops`` files need none of this: skops builds only the types it is told to
trust (see :mod:`clickrouter.serving.loading`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clickrouter.modelstore import read_key_file

if TYPE_CHECKING:
    from clickrouter.config import Settings

HOW_TO_TRUST = (
    "to trust it: make the files and directories owned by this user (or root) and not "
    "writable by group or others (chown/chmod go-w), or publish with a signed manifest "
    "(clickrouter train --signing-key-file, serve --model-signing-key-file), or pass "
    "--trust-models (setting trust_models)"
)


@dataclass(frozen=True)
class ModelTrust:
    """What vouches for a pickle besides ownership: the operator switch, a signing key."""

    trust_all: bool = False
    signing_key: bytes | None = field(default=None, repr=False)


def model_trust(settings: Settings) -> ModelTrust:
    """The trust of ``settings`` (``trust_models``, ``model_signing_key_file``); bad key: 400."""
    key_file = settings.model_signing_key_file
    key = None if key_file is None else read_key_file(key_file, option="--model-signing-key-file")
    return ModelTrust(trust_all=settings.trust_models, signing_key=key)


def ownership_problem(path: Path, info: os.stat_result) -> str | None:
    """Why ``path`` (with its stat ``info``) may hold bytes someone else wrote; None: it may not."""
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        return f"{path} is owned by uid {info.st_uid}, not by this user (uid {me}) or root"
    writable = [who for who, bit in (("group", 0o020), ("others", 0o002)) if info.st_mode & bit]
    if writable:
        mode = stat.S_IMODE(info.st_mode)
        return f"{path} is writable by {' and '.join(writable)} (mode {mode:o})"
    return None


class OwnershipJudge:
    """Judges files of one model directory; each directory is judged once."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._verdicts: dict[Path, str | None] = {}
        self._real_paths: dict[Path, Path] = {}

    def problem(self, path: Path, info: os.stat_result) -> str | None:
        """Why the file at ``path`` (its stat ``info``) is not trusted by ownership."""
        own = ownership_problem(path, info)
        if own is not None:
            return own
        if path.is_symlink():  # judged where its bytes are: the link's target
            return self._directory_problem(path.resolve().parent)
        return self._directory_problem(self._real(path.parent))

    def _real(self, directory: Path) -> Path:
        """``directory`` resolved once (resolving walks every component of the path)."""
        if directory not in self._real_paths:
            self._real_paths[directory] = directory.resolve()
        return self._real_paths[directory]

    def _directory_problem(self, directory: Path) -> str | None:
        if directory not in self._verdicts:
            self._verdicts[directory] = self._judge(directory)
        return self._verdicts[directory]

    def _judge(self, directory: Path) -> str | None:
        try:
            own = ownership_problem(directory, directory.stat())
        except OSError as exc:
            return f"{directory}: {exc.strerror}"
        if own is not None:
            return own
        if directory == self.root or self.root not in directory.parents:
            return None  # the root is the last one judged (a file linked from outside: its dir)
        return self._directory_problem(directory.parent)


def trust_root(directory: Path) -> Path:
    """Up to where parents are judged: the store root for a store version, else the directory."""
    directory = directory.resolve()
    if directory.parent.name == "versions" and (directory.parent.parent / "CURRENT").exists():
        return directory.parent.parent
    return directory
