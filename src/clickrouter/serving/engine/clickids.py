"""Click ids the predictor issues: unique, stamped with their issue time, and MAC'd.

An issued id is 56 hex digits: a per-process random prefix (20) and counter
(12), the issue time in epoch seconds (8) and a keyed BLAKE2b MAC of those 40
digits (16, a 64-bit tag). A postback can therefore be checked without any
state: the id was issued by a predictor holding the key, and the sale is not
older than its click. Ids stay alphanumeric, so landing pages need no quoting.

The key comes from ``click_secret_file`` (one secret per line: the first signs,
every line verifies, so a key rotates by adding a line on top and removing
the old one once its clicks are past the attribution window; the file is
re-read when it changes) or ``CLICKROUTER_CLICK_SECRET``. Without either, each
process draws a random key: its ids verify in that process only, until it
restarts, and with several workers a postback cannot be checked at all
(refused 503, naming the setting).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clickrouter.errors import InvalidInput
from clickrouter.serving.engine.refusal import PostbackRefused

if TYPE_CHECKING:
    from clickrouter.config import Settings

log = logging.getLogger(__name__)

ID_CHARS = 56
MIN_SECRET_CHARS = 16  # the shortest secret accepted: click id keys and postback secrets
_BODY = 40  # prefix, counter and issue time: what the MAC covers
_HEX = frozenset("0123456789abcdef")
_REFRESH_SECONDS = 1.0  # how often issuing looks at the key file
# a key is a keyed BLAKE2b state, copied per MAC (its key block is hashed once)
Key = hashlib.blake2b


def _key(secret: str | bytes) -> Key:
    raw = secret if isinstance(secret, bytes) else hashlib.sha256(secret.encode()).digest()
    return hashlib.blake2b(key=raw, digest_size=8)


def _mac(key: Key, body: str) -> str:
    state = key.copy()
    state.update(body.encode("ascii"))
    return state.hexdigest()


def read_key_file(path: Path, setting: str = "click_secret_file") -> tuple[Key, ...]:
    try:
        lines = path.read_text("utf-8").split()
    except OSError as exc:
        raise InvalidInput(f"{setting} {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{setting} {str(path)!r}: not UTF-8 text") from None
    if not lines:
        raise InvalidInput(f"{setting} {str(path)!r}: no secret in the file")
    if any(len(line) < MIN_SECRET_CHARS for line in lines):
        raise InvalidInput(f"{setting} {str(path)!r}: a secret shorter than {MIN_SECRET_CHARS}")
    return tuple(_key(line) for line in lines)


class ClickIds:
    """Issues click ids and tells which ones it (or a sibling with the key) issued.

    ``shared`` says whether the key is configured (a file or the environment),
    i.e. whether other processes and restarts verify the same ids.
    """

    def __init__(
        self,
        *,
        secret_file: str | os.PathLike[str] | None = None,
        secret: str | None = None,
        workers: int = 1,
    ) -> None:
        self._file = None if secret_file is None else Path(secret_file)
        self._stamp: tuple[int, int, int] | None = None
        self._checked = time.monotonic()
        if self._file is not None:
            self._keys = read_key_file(self._file)
            self._stamp = self._stat()
        elif secret is not None:
            if len(secret) < MIN_SECRET_CHARS:
                raise InvalidInput(f"click_secret: shorter than {MIN_SECRET_CHARS} characters")
            self._keys = (_key(secret),)
        else:
            self._keys = (_key(os.urandom(32)),)
        self.shared = secret_file is not None or secret is not None
        self.workers = workers
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count()

    @classmethod
    def from_settings(cls, settings: Settings) -> ClickIds:
        ids = cls(
            secret_file=settings.click_secret_file,
            secret=settings.click_secret,
            workers=settings.workers,
        )
        if not ids.shared:
            log.warning(
                "no click secret is configured: click ids issued now verify in this process "
                "only, until it restarts (set --click-secret-file or CLICKROUTER_CLICK_SECRET)"
            )
        return ids

    def _stat(self) -> tuple[int, int, int] | None:
        assert self._file is not None
        try:
            st = self._file.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _refresh(self) -> None:
        if self._file is None:
            return
        self._checked = time.monotonic()
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._keys = read_key_file(self._file)
            log.info("click id keys re-read from %s", self._file)
        except InvalidInput as exc:
            log.error("click secret file unusable, keeping the previous keys: %s", exc)

    def issue(self, now: float) -> str:
        if self._file is not None and time.monotonic() - self._checked >= _REFRESH_SECONDS:
            self._refresh()
        body = f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}{int(now):08x}"
        return body + _mac(self._keys[0], body)

    def issued_at(self, click_id: str) -> float:
        """Issue time of a click id this predictor issued; refuses any other id."""
        if not self.shared and self.workers > 1:
            raise PostbackRefused(
                503,
                "click_key_not_shared",
                "click ids cannot be verified across worker processes: set "
                "--click-secret-file (CLICKROUTER_CLICK_SECRET_FILE) or CLICKROUTER_CLICK_SECRET",
            )
        self._refresh()
        if len(click_id) == ID_CHARS and _HEX.issuperset(click_id):
            body, tag = click_id[:_BODY], click_id[_BODY:]
            if any(hmac.compare_digest(_mac(key, body), tag) for key in self._keys):
                return float(int(body[32:], 16))
        raise PostbackRefused(
            403, "click_id_not_issued", "field 'click_id': not a click id this predictor issued"
        )
